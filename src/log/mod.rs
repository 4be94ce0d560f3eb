//! The durable, partitioned log. No HTTP here: the web layer, and later consumer groups,
//! WebSocket and SSE, all go through the [`EventLog`] trait.
//!
//! # Layout
//! - `types`: newtypes and plain data at the boundary (`TopicName`, records, fetch bounds).
//! - `codec`: the on-disk batch encoding.
//! - `partitioner`: Kafka's murmur2 default partitioner.
//! - `store`: redb tables and the read paths.
//! - `writer`: the single writer thread that group-commits every change.
//! - `catalog`: committed topic state in memory, with a `watch` channel per partition.
//! - `redb_log`: [`RedbLog`], the embedded implementation of [`EventLog`].
//! - `encoded`: committed batches encoded once for push delivery, in a byte-bounded cache.
//! - `check`: [`check`], the read-only integrity check behind `tidegate check`.
//!
//! # Invariants
//! - Only the writer thread opens write transactions; reads use redb snapshots and never
//!   wait for it.
//! - A record is visible to readers (its offset is below the published high watermark)
//!   only after the transaction holding it committed.
//! - Offsets of a partition are dense from its log start: each batch key is the previous
//!   batch's base offset plus its record count.

mod catalog;
mod check;
mod codec;
mod encoded;
mod error;
mod partitioner;
mod redb_log;
mod store;
mod types;
mod writer;

use async_trait::async_trait;
use tokio::sync::watch;

pub use check::{CheckError, CheckReport, check};
pub use encoded::{EncodedRead, EncodedSlice};
pub use error::LogError;
pub use error::StorageFault;
pub use partitioner::{kafka_murmur2, partition_for_key};
pub use redb_log::{DATABASE_FILE, LogOptions, OpenError, RedbLog};
pub use types::{
    AppendOutcome, AppendRequest, CommittedOffset, DEFAULT_RETENTION_MS, FetchRequest, FetchResult,
    GroupId, IdempotencyKey, MAX_PARTITIONS, MAX_TOPIC_NAME_LEN, NewRecord, Offset,
    PartitionChoice, PartitionId, PartitionOffsets, RecordPosition, StoredRecord, TimestampOffset,
    TopicConfig, TopicDescription, TopicName, TopicUpdate,
};

/// When an append is acknowledged relative to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Acknowledge after the commit is synced to disk (the default).
    Always,
    /// Acknowledge after the commit reaches the OS; a crash can lose about the last second.
    Never,
}

impl Fsync {
    /// The names `--fsync` takes.
    pub const NAMES: [&str; 2] = ["always", "never"];
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(name: &str) -> Result<Fsync, String> {
        match name {
            "always" => Ok(Fsync::Always),
            "never" => Ok(Fsync::Never),
            other => Err(format!("unknown fsync mode {other:?} (always or never)")),
        }
    }
}

/// Consumer groups' committed offsets, kept by the log beside its records (a Kafka backend
/// keeps them in Kafka's group offsets). Fencing (generations, assignment) is the group
/// coordinator's job; a store only keeps what it is told, all or none per call.
#[async_trait]
pub trait OffsetStore: Send + Sync + 'static {
    /// Stores `offsets` for `group` durably (as durable as a publish), all or none. Each
    /// offset must lie within `[0, high watermark]` of its partition.
    async fn commit_offsets(
        &self,
        group: &GroupId,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), LogError>;

    /// Every committed offset of `group`, in (topic, partition) order.
    async fn committed_offsets(&self, group: &GroupId) -> Result<Vec<CommittedOffset>, LogError>;

    /// Every group with at least one committed offset, sorted.
    async fn offset_groups(&self) -> Result<Vec<GroupId>, LogError>;

    /// Forgets every committed offset of `group`; false when it had none.
    async fn delete_offsets(&self, group: &GroupId) -> Result<bool, LogError>;
}

/// Whether a log can serve, for the readiness probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    ShuttingDown,
    /// It cannot take writes any more; the reason is for the operator.
    Failed(String),
}

/// Everything the gateway needs from a log. The embedded redb log implements it today; a
/// Kafka-backed implementation will sit behind the same trait.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    async fn create_topic(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, LogError>;

    /// Every topic, sorted by name.
    async fn list_topics(&self) -> Result<Vec<TopicDescription>, LogError>;

    async fn describe_topic(&self, name: &TopicName) -> Result<TopicDescription, LogError>;

    async fn update_topic(
        &self,
        name: &TopicName,
        update: TopicUpdate,
    ) -> Result<TopicDescription, LogError>;

    async fn delete_topic(&self, name: &TopicName) -> Result<(), LogError>;

    /// Appends all records of one request atomically; answers after the commit.
    async fn append(
        &self,
        topic: &TopicName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, LogError>;

    /// Reads committed records, waiting up to `request.wait` when none is there yet. The
    /// bounds in the result come from the same snapshot as the records.
    async fn fetch(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        request: FetchRequest,
    ) -> Result<FetchResult, LogError>;

    async fn offset_for_timestamp(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        timestamp: i64,
    ) -> Result<TimestampOffset, LogError>;

    /// Committed records of a partition from `from` on, as the JSON every push transport
    /// sends, shared between readers: each batch is read and encoded once (see
    /// `encoded.rs`). Up to `max_records` records and about `max_bytes` bytes; `from`
    /// outside `[log start, high watermark]` is [`LogError::OffsetOutOfRange`].
    async fn read_encoded(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<EncodedRead, LogError>;

    /// The partition's high watermark, as it moves: the receiver sees each commit that
    /// appends to the partition (readers then read the log themselves), and closes when
    /// the topic is deleted.
    fn watch_high_watermark(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<watch::Receiver<Offset>, LogError>;

    /// Whether the log takes requests; the readiness probe reports it.
    fn readiness(&self) -> Readiness;

    /// Commits everything already accepted, refuses the rest and syncs to disk.
    async fn shutdown(&self);
}
