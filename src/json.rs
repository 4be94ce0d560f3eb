//! Reading client JSON as the schemas describe it, for every transport.
//!
//! - [`whole`]: JSON Schema's `integer` is any whole number, `3.0` included, and some clients
//!   send it that way (Python's `json.dumps(3.0)`, numbers that went through a double).
//!   serde refuses `3.0` where an integer is expected; these readers take any whole number
//!   in range, so every body valid by the documents is read as the client meant it.
//! - [`Object`]: serde builds a struct from an array of its fields in order too (`[null, 1]`
//!   as a record), which no client means and the schemas forbid.
//! - [`value`]: what in valid JSON text would break consumers' parsers (nesting too deep,
//!   unpaired surrogate escapes), checked on publish and on records other Kafka clients
//!   wrote.

/// `T` read from a JSON object only, never from an array of its fields.
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for OnlyMaps<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(OnlyMaps(std::marker::PhantomData))
            .map(Object)
    }
}

/// Whole numbers written with or without a zero fraction.
pub mod whole {
    use serde::de::{Error, Unexpected};
    use serde::{Deserialize, Deserializer};

    /// A whole number of type `T`, written with or without a zero fraction.
    pub fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64> + TryFrom<i64>,
    {
        whole(serde_json::Number::deserialize(deserializer)?)
    }

    /// [`number`] for optional fields (use with `#[serde(default)]`); `null` is absent.
    pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64> + TryFrom<i64>,
    {
        Option::<serde_json::Number>::deserialize(deserializer)?
            .map(whole)
            .transpose()
    }

    fn whole<T, E>(number: serde_json::Number) -> Result<T, E>
    where
        T: TryFrom<u64> + TryFrom<i64>,
        E: Error,
    {
        let out_of_range =
            || E::invalid_value(Unexpected::Other(&number.to_string()), &"a number in range");
        if let Some(unsigned) = number.as_u64() {
            return T::try_from(unsigned).map_err(|_| out_of_range());
        }
        if let Some(signed) = number.as_i64() {
            return T::try_from(signed).map_err(|_| out_of_range());
        }
        let float = number.as_f64().unwrap_or(f64::NAN);
        if float.fract() != 0.0 || !float.is_finite() {
            return Err(E::invalid_type(Unexpected::Float(float), &"a whole number"));
        }
        // Past 2^53 a double no longer holds every whole number, so which one the client meant
        // is unknown (a number beyond 64 bits is read as a double, too).
        const EXACT: f64 = 9_007_199_254_740_992.0;
        if !(-EXACT..=EXACT).contains(&float) {
            return Err(out_of_range());
        }
        if float >= 0.0 {
            T::try_from(float as u64).map_err(|_| out_of_range())
        } else {
            T::try_from(float as i64).map_err(|_| out_of_range())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Fields {
        #[serde(deserialize_with = "super::whole::number")]
        count: u32,
        #[serde(default, deserialize_with = "super::whole::optional")]
        limit: Option<i64>,
    }

    fn parse(json: &str) -> Result<Fields, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn whole_numbers_with_or_without_a_fraction() {
        let expect = |count, limit| Fields { count, limit };
        assert_eq!(parse(r#"{"count": 3}"#), Ok(expect(3, None)));
        assert_eq!(
            parse(r#"{"count": 3.0, "limit": -1.0}"#),
            Ok(expect(3, Some(-1)))
        );
        assert_eq!(
            parse(r#"{"count": 2e2, "limit": null}"#),
            Ok(expect(200, None))
        );
        assert_eq!(
            parse(r#"{"count": 4294967295, "limit": 9007199254740992.0}"#),
            Ok(expect(u32::MAX, Some(1 << 53)))
        );
        for bad in [
            r#"{"count": 3.5}"#,
            r#"{"count": -1}"#,
            r#"{"count": 4294967296}"#,
            r#"{"count": 1e300}"#,
            r#"{"count": "3"}"#,
            r#"{"count": 1, "limit": 1e19}"#,
            r#"{"count": 1, "limit": -9223372036854775809}"#,
            r#"{"count": 1, "limit": 9007199254740994.0}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

pub mod value {
    /// Why a value would break consumers.
    #[derive(Debug, PartialEq, Eq)]
    pub enum ValueProblem {
        TooDeep,
        LoneSurrogate,
    }

    /// One pass over valid JSON text: nesting depth (arrays and objects) and `\u` escapes of
    /// surrogates that are not a high-low pair. Multi-byte UTF-8 never contains the ASCII
    /// bytes looked at here, so scanning bytes is exact.
    pub fn scan(json: &str, max_depth: usize) -> Result<(), ValueProblem> {
        let bytes = json.as_bytes();
        let mut depth = 0usize;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    i = skip_string(bytes, i + 1)?;
                    continue;
                }
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max_depth {
                        return Err(ValueProblem::TooDeep);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            i += 1;
        }
        Ok(())
    }

    /// From just inside an opening quote to just past the closing one.
    fn skip_string(bytes: &[u8], mut i: usize) -> Result<usize, ValueProblem> {
        while let Some(&b) = bytes.get(i) {
            match b {
                b'"' => return Ok(i + 1),
                b'\\' if bytes.get(i + 1) == Some(&b'u') => {
                    let unit = hex4(bytes, i + 2);
                    i += 6;
                    match unit {
                        Some(0xD800..=0xDBFF) => {
                            let low = (bytes.get(i) == Some(&b'\\')
                                && bytes.get(i + 1) == Some(&b'u'))
                            .then(|| hex4(bytes, i + 2))
                            .flatten();
                            if !matches!(low, Some(0xDC00..=0xDFFF)) {
                                return Err(ValueProblem::LoneSurrogate);
                            }
                            i += 6;
                        }
                        Some(0xDC00..=0xDFFF) => return Err(ValueProblem::LoneSurrogate),
                        _ => {}
                    }
                }
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        Ok(i)
    }

    fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
        let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn nested(depth: usize) -> String {
            format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
        }

        #[test]
        fn depth_counts_arrays_and_objects_not_brackets_in_strings() {
            assert_eq!(scan("1", 0), Ok(()));
            assert_eq!(scan(&nested(64), 64), Ok(()));
            assert_eq!(scan(&nested(65), 64), Err(ValueProblem::TooDeep));
            assert_eq!(scan(&nested(100_000), 64), Err(ValueProblem::TooDeep));
            assert_eq!(scan(r#"{"a":{"b":[{}]}}"#, 4), Ok(()));
            assert_eq!(scan(r#"{"a":{"b":[{}]}}"#, 3), Err(ValueProblem::TooDeep));
            assert_eq!(scan(r#"["[[[[\"[[["]"#, 1), Ok(()));
            assert_eq!(scan(r#"[1,[2],[3],[4]]"#, 2), Ok(()));
        }

        #[test]
        fn surrogates_must_pair() {
            for ok in [
                r#""\ud83d\ude00""#,
                r#""\uD83D\uDE00 and \u00e9""#,
                r#"["\\ud800"]"#,
                r#""😀""#,
                r#"{"k\ud83d\ude00":1}"#,
            ] {
                assert_eq!(scan(ok, 64), Ok(()), "{ok}");
            }
            for bad in [
                r#""\ud800""#,
                r#""\udc00""#,
                r#""\ud800\u0041""#,
                r#""\ud800x""#,
                r#"{"\udfff":1}"#,
                r#"["a", "\uDBFF"]"#,
            ] {
                assert_eq!(scan(bad, 64), Err(ValueProblem::LoneSurrogate), "{bad}");
            }
        }
    }
}
