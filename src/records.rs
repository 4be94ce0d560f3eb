//! What a producer may publish, whatever the transport: the limits on a request and on each
//! record, the values no consumer could read back, and the shape of idempotency keys. HTTP
//! and WebSocket publish both come through here (via the gateway's publish path), so both
//! accept and refuse exactly the same records.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::config::Limits;
use crate::json::value::{self, ValueProblem};
use crate::log::PartitionId;

/// Where a record should go, as the producer asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionChoice {
    Explicit(PartitionId),
    /// No partition given: keyed records hash, keyless ones rotate per request.
    Default,
}

/// A record as a producer hands it in, before its partition is chosen.
#[derive(Clone, Debug)]
pub struct NewRecord {
    pub partition: PartitionChoice,
    pub key: Option<String>,
    /// Valid JSON text, stored and served byte for byte.
    pub value: Box<RawValue>,
    pub headers: Vec<(String, String)>,
}

impl NewRecord {
    /// Bytes this record contributes to a batch, for the per-record limit.
    pub fn payload_len(&self) -> usize {
        crate::log::payload_len(
            self.key.as_deref(),
            self.value.get(),
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// SHA-256 over every record's partition choice, key, value text and headers, framed with
/// lengths so that no two different requests hash the same input: what tells a repeat of an
/// idempotent publish from a reuse of its key.
pub fn request_digest(records: &[NewRecord]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    fn field(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let mut h = Sha256::new();
    h.update((records.len() as u64).to_le_bytes());
    for record in records {
        match record.partition {
            PartitionChoice::Explicit(p) => field(&mut h, &p.get().to_le_bytes()),
            PartitionChoice::Default => field(&mut h, &[]),
        }
        match &record.key {
            Some(key) => {
                h.update([1]);
                field(&mut h, key.as_bytes());
            }
            None => h.update([0]),
        }
        field(&mut h, record.value.get().as_bytes());
        h.update((record.headers.len() as u64).to_le_bytes());
        for (name, value) in &record.headers {
            field(&mut h, name.as_bytes());
            field(&mut h, value.as_bytes());
        }
    }
    h.finalize().into()
}

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
        match value::scan(record.value.get(), limits.max_value_depth) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
