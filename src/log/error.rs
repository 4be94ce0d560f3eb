use thiserror::Error;

/// Everything the log can refuse or fail at. The HTTP layer maps each variant to a status
/// in one place (`http::error`).
#[derive(Debug, Error)]
pub enum LogError {
    #[error("invalid topic name {0}")]
    InvalidTopicName(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
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
    #[error("the log is shutting down")]
    ShuttingDown,
    #[error("storage error: {0}")]
    Storage(String),
}

impl From<redb::Error> for LogError {
    fn from(err: redb::Error) -> Self {
        LogError::Storage(err.to_string())
    }
}

/// redb has one error type per operation family; they all end up as a storage failure here.
macro_rules! storage_errors {
    ($($ty:ty),*) => {$(
        impl From<$ty> for LogError {
            fn from(err: $ty) -> Self {
                LogError::Storage(err.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    std::io::Error
);
