use std::sync::Arc;

use thiserror::Error;

use crate::echo::quoted;

/// Everything the log can refuse or fail at. The HTTP layer maps each variant to a status
/// in one place (`http::error`).
///
/// Cloneable so the writer can answer every request of a failed group commit with the same
/// error, its source included.
#[derive(Clone, Debug, Error)]
pub enum LogError {
    #[error("invalid topic name {}: {reason}", quoted(.name))]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid consumer group name {}: {reason}", quoted(.name))]
    InvalidGroupId { name: String, reason: &'static str },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    /// Kafka cannot take partitions away either: keys would move between partitions.
    #[error("partitions can only be raised (the topic has {current}, asked for {requested})")]
    PartitionsCannotShrink { current: u32, requested: u32 },
    #[error("topic {} does not exist", quoted(.0))]
    TopicNotFound(String),
    #[error("topic '{topic}' has no partition {partition}")]
    PartitionNotFound { topic: String, partition: u32 },
    #[error(
        "offset {offset} is out of range: valid offsets are {log_start_offset} to {high_watermark}"
    )]
    OffsetOutOfRange {
        offset: u64,
        log_start_offset: u64,
        high_watermark: u64,
    },
    /// An `Idempotency-Key` seen within the window came back with a different request.
    #[error(
        "this Idempotency-Key was used for a different request within the idempotency window; \
         use a new key for a new request"
    )]
    IdempotencyKeyReused,
    #[error("the log is shutting down")]
    ShuttingDown,
    /// The log cannot take writes (its writer failed) or cannot be reached (a remote
    /// backend); retrying elsewhere or later may help, retrying here at once will not.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    /// The storage failed underneath; the details are for the operator's log, not the client.
    #[error("storage failure: {0}")]
    Storage(#[source] Arc<StorageFault>),
}

/// What went wrong below the log: the source error is kept for the log line.
#[derive(Debug, Error)]
pub enum StorageFault {
    #[error(transparent)]
    Redb(#[from] redb::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Bytes on disk that do not decode: the file was damaged outside redb.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A storage call panicked (redb may on a damaged file); the panic message.
    #[error("a storage operation panicked: {0}")]
    Panicked(String),
}

impl LogError {
    pub(crate) fn corrupt(what: impl Into<String>) -> LogError {
        LogError::Storage(Arc::new(StorageFault::Corrupt(what.into())))
    }

    pub(crate) fn panicked(message: String) -> LogError {
        LogError::Storage(Arc::new(StorageFault::Panicked(message)))
    }

    /// Whether this says the file is damaged (bytes that do not decode, a panic inside
    /// redb), as opposed to a failure that may pass (I/O, a full disk).
    pub(crate) fn is_damage(&self) -> bool {
        matches!(self, LogError::Storage(fault)
            if matches!(**fault, StorageFault::Panicked(_) | StorageFault::Corrupt(_)))
    }
}

impl From<StorageFault> for LogError {
    fn from(fault: StorageFault) -> Self {
        LogError::Storage(Arc::new(fault))
    }
}

/// redb has one error type per operation family; all of them are a storage fault here, with
/// the original error kept as the source.
macro_rules! storage_errors {
    ($($ty:ty),*) => {$(
        impl From<$ty> for LogError {
            fn from(err: $ty) -> Self {
                StorageFault::Redb(redb::Error::from(err)).into()
            }
        }
    )*};
}
storage_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<std::io::Error> for LogError {
    fn from(err: std::io::Error) -> Self {
        StorageFault::Io(err).into()
    }
}
