//! redb's errors as backend-neutral faults: redb has one error type per operation family,
//! and every one of them is a storage fault to the layers above, its source kept for the
//! operator's log. I/O failures are told apart: after one, redb refuses every operation
//! until the database is opened again (the writer does that, `writer::recover`).

use crate::log::{Fault, FaultKind, LogError};

macro_rules! storage_errors {
    ($($ty:ty),*) => {$(
        impl From<$ty> for LogError {
            fn from(err: $ty) -> Self {
                let err = redb::Error::from(err);
                let kind = match err {
                    redb::Error::Io(_) | redb::Error::PreviousIo => FaultKind::Io,
                    _ => FaultKind::Backend,
                };
                Fault::new(kind, err).into()
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

/// Whether redb failed for want of room on the disk (a full file system, or a quota).
pub(super) fn out_of_space(err: &LogError) -> bool {
    let LogError::Storage(fault) = err else {
        return false;
    };
    let io = std::error::Error::source(&**fault)
        .and_then(|source| source.downcast_ref::<redb::Error>())
        .and_then(|err| match err {
            redb::Error::Io(io) => Some(io),
            _ => None,
        });
    io.is_some_and(|io| {
        io.kind() == std::io::ErrorKind::StorageFull
            || io.kind() == std::io::ErrorKind::QuotaExceeded
    })
}

/// Whether redb failed at I/O: it then refuses everything until it is opened again.
pub(super) fn io_failed(err: &LogError) -> bool {
    matches!(err, LogError::Storage(fault) if fault.kind() == FaultKind::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_from_other_io_failures() {
        let enospc = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let full: LogError = redb::StorageError::Io(enospc).into();
        assert!(out_of_space(&full));
        assert!(io_failed(&full));
        let other: LogError = redb::StorageError::Io(std::io::Error::other("bad sector")).into();
        assert!(!out_of_space(&other));
        assert!(io_failed(&other));
        let previous: LogError = redb::StorageError::PreviousIo.into();
        assert!(io_failed(&previous));
        let not_io: LogError = redb::StorageError::ValueTooLarge(1).into();
        assert!(!io_failed(&not_io));
    }
}
