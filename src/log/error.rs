use std::sync::Arc;

use thiserror::Error;

use super::types::{GroupId, Offset, PartitionId, TopicName};
use crate::echo::quoted;

/// Everything a log can refuse or fail at, whatever the backend. The gateway gives each
/// variant its error code (`gateway::error`), and each transport its status.
///
/// Cloneable so a backend can answer every request of a failed group commit with the same
/// error, its source included.
#[derive(Clone, Debug, Error)]
pub enum LogError {
    #[error("invalid topic name {}: {reason}", quoted(.name))]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid consumer group name {}: {reason}", quoted(.name))]
    InvalidGroupId { name: String, reason: &'static str },
    /// An offset beyond Kafka's largest (2^63 - 1): no partition can hold it.
    #[error("offset {given} is beyond the largest offset, {}", Offset::MAX)]
    InvalidOffset { given: u64 },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("topic '{0}' already exists")]
    TopicExists(TopicName),
    /// Kafka cannot take partitions away either: keys would move between partitions.
    #[error("partitions can only be raised (the topic has {current}, asked for {requested})")]
    PartitionsCannotShrink { current: u32, requested: u32 },
    #[error("topic '{0}' does not exist")]
    TopicNotFound(TopicName),
    #[error("topic '{topic}' has no partition {partition}")]
    PartitionNotFound {
        topic: TopicName,
        partition: PartitionId,
    },
    #[error(
        "offset {offset} is out of range: valid offsets are {log_start_offset} to {high_watermark}"
    )]
    OffsetOutOfRange {
        offset: Offset,
        log_start_offset: Offset,
        high_watermark: Offset,
    },
    /// An `Idempotency-Key` seen within the window came back with a different request.
    #[error(
        "this Idempotency-Key was used for a different request within the idempotency window; \
         use a new key for a new request"
    )]
    IdempotencyKeyReused,
    /// The cluster refused a group's offsets because native Kafka consumers hold the group.
    #[error(
        "consumer group '{0}' has active Kafka consumers; tidegate members and native consumers \
         cannot share a group"
    )]
    GroupInUseByKafkaConsumers(GroupId),
    #[error("the log is shutting down")]
    ShuttingDown,
    /// The log cannot take writes (its writer failed); retrying elsewhere or after an
    /// operator's restart may help, retrying here at once will not.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    /// The cluster behind a remote backend cannot be reached now; it recovers by itself.
    #[error("the Kafka cluster is unavailable: {0}")]
    ClusterUnavailable(String),
    /// No room to store what was asked (a full disk, or less free space than the server
    /// keeps for deletions and commits); nothing of the request was stored. It passes once
    /// there is room.
    #[error("no room to store it: {0}")]
    StorageFull(String),
    /// The storage failed underneath; the details are for the operator's log, not the client.
    #[error("storage failure: {0}")]
    Storage(#[source] Arc<Fault>),
}

/// What went wrong below the log, whatever the backend: its kind (which decides whether
/// the log may go on writing) and the backend's own error, kept for the log line.
#[derive(Debug, Error)]
#[error("{source}")]
pub struct Fault {
    kind: FaultKind,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// Kinds of [`Fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The backend's own error (a database or client library failure).
    Backend,
    /// The operating system refused (I/O).
    Io,
    /// Stored bytes that do not decode: the data was damaged outside the backend.
    Corrupt,
    /// A backend call panicked (redb may on a damaged file).
    Panicked,
}

impl Fault {
    pub fn new(
        kind: FaultKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Fault {
        Fault {
            kind,
            source: source.into(),
        }
    }

    pub fn kind(&self) -> FaultKind {
        self.kind
    }
}

impl LogError {
    pub(crate) fn corrupt(what: impl Into<String>) -> LogError {
        Fault::new(FaultKind::Corrupt, what.into()).into()
    }

    pub(crate) fn panicked(message: String) -> LogError {
        Fault::new(FaultKind::Panicked, message).into()
    }

    /// Whether this says the stored data is damaged (bytes that do not decode, a panic
    /// inside the backend), as opposed to a failure that may pass (I/O, a full disk).
    pub(crate) fn is_damage(&self) -> bool {
        matches!(self, LogError::Storage(fault)
            if matches!(fault.kind(), FaultKind::Panicked | FaultKind::Corrupt))
    }
}

impl From<Fault> for LogError {
    fn from(fault: Fault) -> Self {
        LogError::Storage(Arc::new(fault))
    }
}

impl From<std::io::Error> for LogError {
    fn from(err: std::io::Error) -> Self {
        Fault::new(FaultKind::Io, err).into()
    }
}
