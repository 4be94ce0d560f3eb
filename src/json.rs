//! Reading client JSON as the schemas describe it, for every transport.
//!
//! - [`whole`]: JSON Schema's `integer` is any whole number, `3.0` included, and some clients
//!   send it that way (Python's `json.dumps(3.0)`, numbers that went through a double).
//!   serde refuses `3.0` where an integer is expected; these readers take any whole number
//!   in range, so every body valid by the documents is read as the client meant it.
//! - [`Object`]: serde builds a struct from an array of its fields in order too (`[null, 1]`
//!   as a record), which no client means and the schemas forbid.

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
