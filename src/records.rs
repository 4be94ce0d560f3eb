//! What a producer may publish, whatever the transport: the limits on a request and on each
//! record, the values no consumer could read back, and the shape of idempotency keys. HTTP
//! publish calls this now; WebSocket publish will call the same, so both accept and refuse
//! exactly the same records.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::config::Limits;
use crate::log::{NewRecord, PartitionChoice, PartitionId};

/// One record to publish.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRecord {
    /// Records with the same key go to the same partition (Kafka's murmur2 partitioner).
    key: Option<String>,
    /// Any JSON value, stored and served exactly as sent (numbers keep every digit). Arrays
    /// and objects may nest up to `--max-value-depth` levels (64 by default); escapes of
    /// unpaired UTF-16 surrogates (`"\ud800"`) are refused.
    #[schema(value_type = Value)]
    value: Box<RawValue>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Explicit partition; overrides the key.
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(minimum = 0, maximum = 1023)]
    partition: Option<u32>,
}

impl From<PublishRecord> for NewRecord {
    fn from(record: PublishRecord) -> Self {
        NewRecord {
            partition: record.partition.map_or(PartitionChoice::Default, |p| {
                PartitionChoice::Explicit(PartitionId::new(p))
            }),
            key: record.key,
            value: record.value,
            headers: record.headers.into_iter().collect(),
        }
    }
}

/// Why a publish request was refused. `index` is the record's position in the request;
/// each transport names it its own way (`records[3]`, `line 4`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("a publish needs at least one record")]
    NoRecords,
    #[error("{count} records in one request; the limit is {limit}")]
    TooManyRecords { count: usize, limit: usize },
    #[error("{size} bytes of key, value and headers; the limit is {limit}")]
    RecordTooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
    #[error("value is nested deeper than {limit} levels of arrays and objects")]
    ValueTooDeep { index: usize, limit: usize },
    /// The JSON grammar allows `"\ud800"`, but it encodes no Unicode text: strict parsers
    /// (Python's `json` with surrogates aside, serde_json, Go) fail on every page holding it.
    #[error("value holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which is not text")]
    LoneSurrogate { index: usize },
}

impl PublishError {
    /// The record at fault, for errors about one record.
    pub fn record_index(&self) -> Option<usize> {
        match self {
            PublishError::RecordTooLarge { index, .. }
            | PublishError::ValueTooDeep { index, .. }
            | PublishError::LoneSurrogate { index } => Some(*index),
            PublishError::NoRecords | PublishError::TooManyRecords { .. } => None,
        }
    }
}

/// Checks a whole request against the limits, and every value for what breaks consumers.
pub fn validate(records: &[NewRecord], limits: &Limits) -> Result<(), PublishError> {
    if records.is_empty() {
        return Err(PublishError::NoRecords);
    }
    if records.len() > limits.max_records_per_request {
        return Err(PublishError::TooManyRecords {
            count: records.len(),
            limit: limits.max_records_per_request,
        });
    }
    for (index, record) in records.iter().enumerate() {
        let size = record.payload_len();
        if size > limits.max_record_bytes {
            return Err(PublishError::RecordTooLarge {
                index,
                size,
                limit: limits.max_record_bytes,
            });
        }
        match scan_value(record.value.get(), limits.max_value_depth) {
            Ok(()) => {}
            Err(ValueProblem::TooDeep) => {
                return Err(PublishError::ValueTooDeep {
                    index,
                    limit: limits.max_value_depth,
                });
            }
            Err(ValueProblem::LoneSurrogate) => return Err(PublishError::LoneSurrogate { index }),
        }
    }
    Ok(())
}

/// Why an `Idempotency-Key` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("Idempotency-Key must not be empty")]
    Empty,
    #[error("Idempotency-Key is longer than {0} bytes")]
    TooLong(usize),
    #[error("Idempotency-Key must be printable ASCII: letters, digits, punctuation and spaces")]
    NotPrintable,
}

/// An idempotency key as sent: 1 to `max_idempotency_key_bytes` bytes of printable ASCII
/// (0x20–0x7E). Tabs and other control bytes are refused, as are non-ASCII bytes, so a key
/// reads the same in every client, log and language.
pub fn idempotency_key(raw: &[u8], limits: &Limits) -> Result<String, IdempotencyKeyError> {
    if raw.is_empty() {
        return Err(IdempotencyKeyError::Empty);
    }
    if raw.len() > limits.max_idempotency_key_bytes {
        return Err(IdempotencyKeyError::TooLong(
            limits.max_idempotency_key_bytes,
        ));
    }
    if !raw.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(IdempotencyKeyError::NotPrintable);
    }
    Ok(String::from_utf8_lossy(raw).into_owned())
}

#[derive(Debug, PartialEq, Eq)]
enum ValueProblem {
    TooDeep,
    LoneSurrogate,
}

/// One pass over valid JSON text: nesting depth (arrays and objects) and `\u` escapes of
/// surrogates that are not a high-low pair. Multi-byte UTF-8 never contains the ASCII
/// bytes looked at here, so scanning bytes is exact.
fn scan_value(json: &str, max_depth: usize) -> Result<(), ValueProblem> {
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
                        let low = (bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u'))
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
        assert_eq!(scan_value("1", 0), Ok(()));
        assert_eq!(scan_value(&nested(64), 64), Ok(()));
        assert_eq!(scan_value(&nested(65), 64), Err(ValueProblem::TooDeep));
        assert_eq!(scan_value(&nested(100_000), 64), Err(ValueProblem::TooDeep));
        assert_eq!(scan_value(r#"{"a":{"b":[{}]}}"#, 4), Ok(()));
        assert_eq!(
            scan_value(r#"{"a":{"b":[{}]}}"#, 3),
            Err(ValueProblem::TooDeep)
        );
        assert_eq!(scan_value(r#"["[[[[\"[[["]"#, 1), Ok(()));
        assert_eq!(scan_value(r#"[1,[2],[3],[4]]"#, 2), Ok(()));
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
            assert_eq!(scan_value(ok, 64), Ok(()), "{ok}");
        }
        for bad in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800x""#,
            r#"{"\udfff":1}"#,
            r#"["a", "\uDBFF"]"#,
        ] {
            assert_eq!(
                scan_value(bad, 64),
                Err(ValueProblem::LoneSurrogate),
                "{bad}"
            );
        }
    }

    #[test]
    fn idempotency_keys_are_printable_ascii() {
        let limits = crate::config::Config::from_args(Vec::<String>::new())
            .expect("defaults")
            .limits;
        assert_eq!(
            idempotency_key(b"order 1234-a_b", &limits),
            Ok("order 1234-a_b".into())
        );
        assert_eq!(
            idempotency_key(b"", &limits),
            Err(IdempotencyKeyError::Empty)
        );
        assert_eq!(
            idempotency_key(b"a\tb", &limits),
            Err(IdempotencyKeyError::NotPrintable)
        );
        assert_eq!(
            idempotency_key("é".as_bytes(), &limits),
            Err(IdempotencyKeyError::NotPrintable)
        );
        assert_eq!(
            idempotency_key(&[b'k'; 256], &limits),
            Err(IdempotencyKeyError::TooLong(255))
        );
    }
}
