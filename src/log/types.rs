//! Newtypes and plain data that cross the log's boundary, whatever the backend.

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
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
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
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
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

// Serde goes through the parsers, so a name read from another replica is checked as one
// read from a client.
macro_rules! serde_through_parse {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = LogError;
            fn try_from(name: String) -> Result<$name, LogError> {
                $name::parse(&name)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }
    };
}

serde_through_parse!(TopicName);
serde_through_parse!(GroupId);

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
            return Err(LogError::InvalidOffset { given: offset });
        }
        Ok(Offset(offset))
    }

    /// An offset a backend produced or stored (Kafka's are non-negative `i64`s).
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

/// Which topic, as opposed to an earlier one of the same name: a topic deleted and created
/// again reuses its name and its offsets, so whatever is cached by offset is keyed by this.
/// Opaque: backends make them (redb a counter per created topic, Kafka one per topic seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(u64);

impl TopicId {
    pub(crate) const fn new(id: u64) -> TopicId {
        TopicId(id)
    }
}

/// What hot paths need of a topic, known without a round trip once the backend has seen it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: TopicId,
    pub partitions: u32,
}

/// Where one partition's log starts and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionBounds {
    /// First offset still stored.
    pub log_start_offset: Offset,
    /// Offset the next record will get (on Kafka: the last stable offset); every offset
    /// below it is committed.
    pub high_watermark: Offset,
}

impl PartitionBounds {
    /// Whether a reader may start at `offset`: from the log start up to the high watermark
    /// (the end, where it waits for the next record).
    pub fn contains(&self, offset: Offset) -> bool {
        (self.log_start_offset..=self.high_watermark).contains(&offset)
    }

    /// [`LogError::OffsetOutOfRange`] for `offset`, naming these bounds.
    pub fn out_of_range(&self, offset: Offset) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset,
            high_watermark: self.high_watermark,
        }
    }
}

/// The bounds of one partition's log, with its size where the backend knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: PartitionId,
    pub bounds: PartitionBounds,
    /// Bytes the partition's stored records take (what `retention_bytes` bounds); `None`
    /// where the backend cannot tell (librdkafka cannot describe Kafka's log dirs).
    pub size_bytes: Option<u64>,
    pub replicas: PartitionReplicas,
}

/// The node every partition of the embedded log lives on: the one there is.
pub const EMBEDDED_NODE: i32 = 0;

/// Where a partition's copies are, by node id: its leader (`None` while it has none), the
/// assigned replicas (Kafka's AR) and those in sync with the leader (ISR).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionReplicas {
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl PartitionReplicas {
    /// A partition of the embedded log: this node leads it and is its only replica.
    pub fn embedded() -> PartitionReplicas {
        PartitionReplicas {
            leader: Some(EMBEDDED_NODE),
            replicas: vec![EMBEDDED_NODE],
            isr: vec![EMBEDDED_NODE],
        }
    }

    /// Fewer replicas in sync than assigned (Kafka's under-replicated partitions).
    pub fn is_under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }
}

/// One node of the cluster holding the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: i32,
    /// `host:port`; `None` for the embedded log's node, which is this server itself.
    pub address: Option<String>,
}

/// The cluster as its metadata shows it now.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub nodes: Vec<ClusterNode>,
    /// The node that runs the cluster's metadata (Kafka's active controller), if known.
    pub controller: Option<i32>,
    /// Every partition of every topic of this deployment, sorted by topic and partition.
    pub partitions: Vec<(TopicName, PartitionId, PartitionReplicas)>,
}

/// A topic's configuration and the bounds of each partition.
#[derive(Clone, Debug)]
pub struct TopicDescription {
    pub name: TopicName,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionOffsets>,
}

/// A topic as listed: its name and configuration.
#[derive(Clone, Debug)]
pub struct TopicListing {
    pub name: TopicName,
    pub config: TopicConfig,
}

/// A record to append, its partition already chosen (the gateway chooses, so that every
/// backend places keys where a Java producer would).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct AppendRecord {
    pub partition: PartitionId,
    pub key: Option<String>,
    /// Valid JSON text, stored and served byte for byte.
    pub value: Box<RawValue>,
    pub headers: Vec<(String, String)>,
}

impl AppendRecord {
    /// Key, value and header bytes.
    pub fn payload_len(&self) -> usize {
        payload_len(
            self.key.as_deref(),
            self.value.get(),
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// All records of one publish request; they commit together or not at all.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct AppendRequest {
    pub records: Vec<AppendRecord>,
    /// A repeat of a key seen within the idempotency window appends nothing.
    pub idempotency: Option<IdempotencyKey>,
}

/// An `Idempotency-Key` and the digest of the request it came with.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct IdempotencyKey {
    pub key: String,
    /// SHA-256 of the request as the producer sent it (`records::request_digest`): a
    /// repeat with another digest is a reuse, refused.
    pub digest: [u8; 32],
}

/// Where one appended record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RecordPosition {
    pub partition: PartitionId,
    pub offset: Offset,
}

/// The answer to an append: positions in request order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AppendOutcome {
    pub positions: Vec<RecordPosition>,
    /// True when this is the stored answer to an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// How a key, value or header that is not what tidegate writes is shown: records written
/// by other Kafka clients may hold any bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Encoding {
    /// UTF-8 text that is not JSON, shown as a JSON string.
    Text,
    /// Bytes that are not UTF-8, shown as a base64 JSON string.
    Base64,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Text => "text",
            Encoding::Base64 => "base64",
        }
    }
}

/// A committed record read back from the log.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct StoredRecord {
    pub partition: PartitionId,
    pub offset: Offset,
    pub timestamp: i64,
    pub key: Option<String>,
    /// `Some(Base64)` when the stored key was not UTF-8 and `key` is its base64.
    pub key_encoding: Option<Encoding>,
    /// JSON text to splice in: the producer's, validated at publish and never parsed again,
    /// or a JSON string standing for a value that is not JSON (`value_encoding` says how).
    pub value: Box<str>,
    pub value_encoding: Option<Encoding>,
    pub headers: Vec<(String, String)>,
    /// Names of headers whose stored value was not UTF-8 and is shown in base64.
    pub headers_base64: Vec<String>,
}

impl StoredRecord {
    /// A record as tidegate writes them, for tests: no key, no headers, JSON `value`.
    #[cfg(test)]
    pub(crate) fn sample(partition: u32, offset: u64, value: &str) -> StoredRecord {
        StoredRecord {
            partition: PartitionId::new(partition),
            offset: Offset::new(offset),
            timestamp: 1_700_000_000_123,
            key: None,
            key_encoding: None,
            value: value.into(),
            value_encoding: None,
            headers: Vec::new(),
            headers_base64: Vec::new(),
        }
    }

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
pub(crate) fn payload_len<'a>(
    key: Option<&str>,
    value: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> usize {
    key.map_or(0, str::len) + value.len() + headers.map(|(k, v)| k.len() + v.len()).sum::<usize>()
}

/// What a fetch asks for. Waiting for records is the caller's (the gateway waits on the
/// high-watermark watch, the same on every backend).
#[derive(Clone, Copy, Debug)]
pub struct FetchRequest {
    /// First offset wanted; `None` starts at the log start.
    pub offset: Option<Offset>,
    pub max_records: usize,
    /// Soft cap on payload bytes; the first record is returned even when larger.
    pub max_bytes: usize,
}

/// Records as a backend stores them together, for the push cache, which keeps such runs
/// whole: a redb batch, or what one Kafka read returned. Records carry their own offsets:
/// on Kafka they may skip (transaction markers take offsets).
#[derive(Clone, Debug)]
pub struct RecordRun {
    /// The first offset the run stands for (its first record's, or earlier when offsets
    /// before that record hold no records).
    pub start: Offset,
    /// The offset after the run: where the next run starts.
    pub end: Offset,
    /// In offset order, within `[start, end)`.
    pub records: Vec<StoredRecord>,
}

/// Records read from one partition plus its bounds at the time of the read.
#[derive(Clone, Debug)]
pub struct FetchResult {
    pub records: Vec<StoredRecord>,
    /// Where the next fetch starts; past the last record, and past offsets that hold none.
    pub next_offset: Offset,
    pub bounds: PartitionBounds,
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
