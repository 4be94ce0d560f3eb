//! Newtypes and plain data that cross the log's boundary.

use std::fmt;

use serde::Serialize;
use serde_json::value::RawValue;

use super::LogError;

/// Longest topic name Kafka accepts; kept so names move to a Kafka backend unchanged.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// Partition counts are bounded so a single request cannot allocate without limit.
pub const MAX_PARTITIONS: u32 = 1024;
/// Default retention: 7 days, as Kafka's `log.retention.hours=168`.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// A validated topic name: 1–249 chars of `[A-Za-z0-9._-]`, not `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

impl TopicName {
    pub fn parse(name: &str) -> Result<TopicName, LogError> {
        check_name(name).map_err(|reason| LogError::InvalidTopicName {
            name: name.to_owned(),
            reason,
        })?;
        Ok(TopicName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Kafka's rule for topic names, which consumer group names follow here too (so both fit
/// in a URL path segment and a scope pattern unescaped).
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_TOPIC_NAME_LEN {
        return Err("must be 1 to 249 characters");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only A-Z, a-z, 0-9, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// A consumer group's name: the same rules as a topic name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GroupId(String);

impl GroupId {
    pub fn parse(name: &str) -> Result<GroupId, LogError> {
        check_name(name).map_err(|reason| LogError::InvalidGroupId {
            name: name.to_owned(),
            reason,
        })?;
        Ok(GroupId(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A partition's number within its topic. Any number is well formed; whether the topic
/// has it is the log's question.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct PartitionId(u32);

impl PartitionId {
    pub const fn new(partition: u32) -> PartitionId {
        PartitionId(partition)
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A record's position in its partition, Kafka's int64: 0 to 2^63-1, never negative.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Offset(u64);

impl Offset {
    /// The largest offset: Kafka's offsets are signed 64-bit.
    pub const MAX: Offset = Offset(i64::MAX as u64);
    pub const ZERO: Offset = Offset(0);

    /// An offset a client sent; beyond [`Offset::MAX`] it is no offset at all.
    pub fn parse(offset: u64) -> Result<Offset, LogError> {
        if offset > Self::MAX.0 {
            return Err(LogError::InvalidArgument(format!(
                "offset {offset} is beyond the largest offset, {}",
                Self::MAX.0
            )));
        }
        Ok(Offset(offset))
    }

    /// An offset the log itself produced or stored.
    pub(crate) const fn new(offset: u64) -> Offset {
        Offset(offset)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The offset after this one.
    pub const fn next(self) -> Offset {
        Offset(self.0 + 1)
    }

    /// How many offsets lie between `earlier` and this one (0 if `earlier` is later).
    pub fn distance_from(self, earlier: Offset) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Retention and partitioning settings of a topic, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    pub partitions: u32,
    /// Milliseconds a batch is kept; -1 keeps it forever.
    pub retention_ms: i64,
    /// Bytes kept per partition; -1 means unlimited.
    pub retention_bytes: i64,
}

impl TopicConfig {
    /// Checks every field against the SPEC's bounds.
    pub fn validate(&self) -> Result<(), LogError> {
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(LogError::InvalidArgument(format!(
                "partitions must be between 1 and {MAX_PARTITIONS}, got {}",
                self.partitions
            )));
        }
        for (field, value) in [
            ("retention_ms", self.retention_ms),
            ("retention_bytes", self.retention_bytes),
        ] {
            if value != -1 && value <= 0 {
                return Err(LogError::InvalidArgument(format!(
                    "{field} must be positive or -1 (unlimited), got {value}"
                )));
            }
        }
        Ok(())
    }
}

/// Requested changes to a topic; absent fields stay as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct TopicUpdate {
    pub partitions: Option<u32>,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
}

/// The bounds of one partition's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionOffsets {
    pub partition: PartitionId,
    /// First offset still stored.
    pub log_start_offset: Offset,
    /// Offset the next record will get; every offset below it is committed.
    pub high_watermark: Offset,
    /// Bytes the partition's stored batches take (what `retention_bytes` bounds).
    pub size_bytes: u64,
}

/// A topic's configuration and the bounds of each partition.
#[derive(Clone, Debug)]
pub struct TopicDescription {
    pub name: TopicName,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionOffsets>,
}

/// Where a record should go, as the producer asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionChoice {
    Explicit(PartitionId),
    /// No partition given: keyed records hash, keyless ones rotate per request.
    Default,
}

/// A record as a producer hands it in, before it has an offset.
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
        payload_len(
            self.key.as_deref(),
            self.value.get(),
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// All records of one publish request; they commit together or not at all.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub records: Vec<NewRecord>,
    /// A repeat of a key seen within the idempotency window appends nothing.
    pub idempotency: Option<IdempotencyKey>,
}

impl AppendRequest {
    /// A request; with a key, the digest that tells a repeat from a reuse is computed here,
    /// on the caller's thread, not on the writer's.
    pub fn new(records: Vec<NewRecord>, idempotency_key: Option<String>) -> AppendRequest {
        let idempotency = idempotency_key.map(|key| IdempotencyKey {
            digest: digest(&records),
            key,
        });
        AppendRequest {
            records,
            idempotency,
        }
    }
}

/// An `Idempotency-Key` and the digest of the request it came with.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    pub key: String,
    /// SHA-256 over every record's partition choice, key, value text and headers, framed
    /// with lengths so that no two different requests hash the same input.
    pub digest: [u8; 32],
}

fn digest(records: &[NewRecord]) -> [u8; 32] {
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

/// Where one appended record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RecordPosition {
    pub partition: PartitionId,
    pub offset: Offset,
}

/// The answer to an append: positions in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    pub positions: Vec<RecordPosition>,
    /// True when this is the stored answer to an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// A committed record read back from the log.
#[derive(Clone, Debug)]
pub struct StoredRecord {
    pub partition: PartitionId,
    pub offset: Offset,
    pub timestamp: i64,
    pub key: Option<String>,
    /// The producer's JSON text, validated at publish and never parsed again.
    pub value: Box<str>,
    pub headers: Vec<(String, String)>,
}

impl StoredRecord {
    /// Bytes of its key, value and headers, as [`NewRecord::payload_len`] counts them.
    pub fn payload_len(&self) -> usize {
        payload_len(
            self.key.as_deref(),
            &self.value,
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// What a record weighs for limits and metrics: its key, value and header bytes.
pub(super) fn payload_len<'a>(
    key: Option<&str>,
    value: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> usize {
    key.map_or(0, str::len) + value.len() + headers.map(|(k, v)| k.len() + v.len()).sum::<usize>()
}

/// What a fetch asks for.
#[derive(Clone, Copy, Debug)]
pub struct FetchRequest {
    /// First offset wanted; `None` starts at the log start.
    pub offset: Option<Offset>,
    pub max_records: usize,
    /// Soft cap on payload bytes; the first record is returned even when larger.
    pub max_bytes: usize,
    /// How long to wait for a record at `offset` when there is none yet.
    pub wait: std::time::Duration,
}

/// Records read from one partition plus its bounds at the time of the read.
#[derive(Clone, Debug)]
pub struct FetchResult {
    pub records: Vec<StoredRecord>,
    pub next_offset: Offset,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
}

/// A consumer group's committed offset for one partition: the next offset to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: TopicName,
    pub partition: PartitionId,
    pub offset: Offset,
    /// When it was committed, in milliseconds since the epoch (0 when being committed).
    pub committed_at_ms: i64,
}

/// The first offset whose timestamp is at or after a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub partition: PartitionId,
    pub offset: Offset,
    /// Timestamp of the record at `offset`; `None` when no record is that recent yet and
    /// `offset` is the high watermark.
    pub timestamp: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "orders", "a.b_c-D9", &"x".repeat(249)] {
            assert!(TopicName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            assert!(TopicName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retention_must_be_positive_or_unlimited() {
        let base = TopicConfig {
            partitions: 1,
            retention_ms: -1,
            retention_bytes: -1,
        };
        assert!(base.validate().is_ok());
        for bad in [
            TopicConfig {
                partitions: 0,
                ..base
            },
            TopicConfig {
                partitions: 1025,
                ..base
            },
            TopicConfig {
                retention_ms: 0,
                ..base
            },
            TopicConfig {
                retention_bytes: -2,
                ..base
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
