//! The partitioned log's contract: what the gateway needs from a backend, and the types
//! that cross it. No backend here, and no HTTP: the gateway above speaks only these traits.
//!
//! # Layout
//! - `types`: newtypes and plain data at the boundary (`TopicName`, records, bounds).
//! - `error`: [`LogError`], with a backend-neutral [`Fault`] for what failed underneath.
//! - [`redb`]: the embedded backend, one redb file (the default).
//! - [`kafka`]: the gateway in front of an Apache Kafka cluster (`--backend kafka`).
//! - `conformance` (tests): what every backend must do, run against each.
//!
//! # What every backend guarantees
//! - A record is readable (below the high watermark) only once its request committed, and
//!   an append is answered only then; all records of one append commit or none does.
//! - Offsets of a partition increase; on redb they are dense, on Kafka they may skip
//!   (transaction markers take offsets). Readers continue from `next_offset` or a run's
//!   `end`, never from "last + 1".
//! - A read returns bounds and records of one snapshot; a start below the log start or
//!   above the high watermark is [`LogError::OffsetOutOfRange`], never a silent skip.
//! - [`EventLog::watch_high_watermark`] moves after each commit that appended to the
//!   partition, and closes when the topic is deleted.
//! - Partition choice, waiting for records, offset range checks for commits and the push
//!   cache are the gateway's, above these traits, the same for every backend.

#[cfg(test)]
mod conformance;
mod error;
pub mod kafka;
pub mod redb;
mod types;

use async_trait::async_trait;
use tokio::sync::watch;

pub use error::{Fault, FaultKind, LogError};
pub use types::Encoding;
pub(crate) use types::payload_len;
pub use types::{
    AppendOutcome, AppendRecord, AppendRequest, ClusterNode, ClusterView, CommittedOffset,
    DEFAULT_RETENTION_MS, EMBEDDED_NODE, FetchRequest, FetchResult, GroupId, IdempotencyKey,
    MAX_PARTITIONS, MAX_TOPIC_NAME_LEN, Offset, PartitionBounds, PartitionId, PartitionOffsets,
    PartitionReplicas, RecordPosition, RecordRun, StoredRecord, TimestampOffset, TopicConfig,
    TopicDescription, TopicId, TopicListing, TopicMeta, TopicName, TopicUpdate,
};

/// Consumer groups' committed offsets, kept beside the records: redb in its own table,
/// written in the same group commits; Kafka as the group's offsets in the cluster, where
/// Kafka's tools see them. Fencing (generations, assignment) and range checks are the
/// group coordinator's; a store keeps what it is told, all or none per call.
#[async_trait]
pub trait OffsetStore: Send + Sync + 'static {
    /// Stores `offsets` for `group` durably (as durable as a publish), all or none.
    async fn commit_offsets(
        &self,
        group: &GroupId,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), LogError>;

    /// Stores `offsets` like `commit_offsets`, but may answer before they are durable:
    /// they are visible at once and durable within a second. For auto-commits, where a
    /// crash that loses them only delivers those records again (at-least-once, as Kafka's
    /// consumers auto-commit every few seconds). Kafka commits them as any other.
    async fn commit_offsets_lazily(
        &self,
        group: &GroupId,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), LogError> {
        self.commit_offsets(group, offsets).await
    }

    /// Every committed offset of `group`, in (topic, partition) order.
    async fn committed_offsets(&self, group: &GroupId) -> Result<Vec<CommittedOffset>, LogError>;

    /// Every group with at least one committed offset, sorted.
    async fn offset_groups(&self) -> Result<Vec<GroupId>, LogError>;

    /// Forgets every committed offset of `group`; false when it had none.
    async fn delete_offsets(&self, group: &GroupId) -> Result<bool, LogError>;
}

/// Everything the gateway needs from a log.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    async fn create_topic(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, LogError>;

    /// Every topic, sorted by name.
    async fn list_topics(&self) -> Result<Vec<TopicListing>, LogError>;

    /// Configuration and bounds of every partition; not for hot paths (on Kafka it costs
    /// round trips).
    async fn describe_topic(&self, name: &TopicName) -> Result<TopicDescription, LogError>;

    async fn update_topic(
        &self,
        name: &TopicName,
        update: TopicUpdate,
    ) -> Result<TopicDescription, LogError>;

    async fn delete_topic(&self, name: &TopicName) -> Result<(), LogError>;

    /// The topic's identity and partition count, from memory once the backend knows the
    /// topic: hot paths call this for every request.
    async fn topic_meta(&self, name: &TopicName) -> Result<TopicMeta, LogError>;

    /// Bounds of `partitions` of `topic`, in the order asked: from memory on redb, and on
    /// Kafka from the partition tails or at most one batched round trip.
    async fn bounds(
        &self,
        topic: &TopicName,
        partitions: &[PartitionId],
    ) -> Result<Vec<PartitionBounds>, LogError>;

    /// Appends all records of one request atomically, each to the partition it names;
    /// answers after the commit.
    async fn append(
        &self,
        topic: &TopicName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, LogError>;

    /// Committed records from `request.offset` on, without waiting; the bounds in the
    /// result come from the same snapshot as the records.
    async fn fetch(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        request: FetchRequest,
    ) -> Result<FetchResult, LogError>;

    /// Whole runs of committed records, from the one holding `from` on, until at least
    /// `min_records` records at or after `from` are read or the high watermark is reached;
    /// for the push cache, which keeps them whole so that every subscriber shares them.
    /// `from` outside `[log start, high watermark]` is [`LogError::OffsetOutOfRange`].
    async fn read_runs(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        from: Offset,
        min_records: usize,
    ) -> Result<Vec<RecordRun>, LogError>;

    async fn offset_for_timestamp(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        timestamp: i64,
    ) -> Result<TimestampOffset, LogError>;

    /// The partition's high watermark, as it moves: the receiver sees each commit that
    /// appends to the partition (readers then read the log themselves), and closes when
    /// the topic is deleted. On Kafka, watching a partition keeps its tail running.
    async fn watch_high_watermark(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<watch::Receiver<Offset>, LogError>;

    /// `Ok` while the log takes requests; otherwise why not, for the readiness probe.
    fn readiness(&self) -> Result<(), LogError>;

    /// The nodes holding the log and where each partition's replicas are, from the
    /// backend's metadata (cached briefly where that costs a round trip).
    async fn cluster(&self) -> Result<ClusterView, LogError>;

    /// Commits everything already accepted, refuses the rest, stops the backend's own
    /// background tasks and releases its storage or connections.
    async fn shutdown(&self);
}
