//! redb's errors as backend-neutral faults: redb has one error type per operation family,
//! and every one of them is a storage fault to the layers above, its source kept for the
//! operator's log.

use crate::log::{Fault, FaultKind, LogError};

macro_rules! storage_errors {
    ($($ty:ty),*) => {$(
        impl From<$ty> for LogError {
            fn from(err: $ty) -> Self {
                Fault::new(FaultKind::Backend, redb::Error::from(err)).into()
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
