//! Room on the data directory's file system. Publishes are refused while the free space is
//! below `--min-free-bytes`, before redb ever meets a full disk: after a failed write redb
//! refuses reads too, until it is opened again, and deletions, retention and offset
//! commits need room to free any.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::log::LogError;

pub(super) struct Space {
    dir: PathBuf,
    min_free: u64,
    /// The free bytes when a write last met a full disk; until there are more, changes
    /// that need room are refused without trying (each failure costs opening the
    /// database again).
    exhausted_at: Mutex<Option<u64>>,
}

/// More free bytes than at the failure that count as room come back.
const ROOM_BACK: u64 = 1 << 20;

impl Space {
    pub fn new(dir: PathBuf, min_free: u64) -> Space {
        Space {
            dir,
            min_free,
            exhausted_at: Mutex::new(None),
        }
    }

    /// Why a change that grows the database cannot be taken now, if it cannot.
    pub fn shortage(&self) -> Option<LogError> {
        // A file system that cannot say is not taken for a full one.
        let free = fs4::available_space(&self.dir).ok()?;
        {
            let mut exhausted_at = self.exhausted_at.lock().unwrap_or_else(|e| e.into_inner());
            match *exhausted_at {
                Some(at) if free < at.saturating_add(ROOM_BACK) => {
                    return Some(LogError::StorageFull(
                        "the disk of the data directory is full; publishes resume by themselves once there is room".into(),
                    ));
                }
                Some(_) => *exhausted_at = None,
                None => {}
            }
        }
        (free < self.min_free).then(|| {
            LogError::StorageFull(format!(
                "the disk of the data directory has {free} bytes free, less than the {} kept for deletions and commits (--min-free-bytes); publishes resume by themselves once there is room",
                self.min_free
            ))
        })
    }

    /// A write met a full disk.
    pub fn set_exhausted(&self) {
        let free = fs4::available_space(&self.dir).unwrap_or(0);
        *self.exhausted_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(free);
    }
}
