//! The database file as redb sees it: redb's own file backend, except that under
//! `--fsync never` its syncs run behind the writer instead of stalling it.
//!
//! Under `--fsync never` the writer makes the commits durable every few megabytes or once
//! a second, and that commit's fsync takes tens to hundreds of milliseconds, during which
//! no publish could commit. Non-durable commits only touch memory (redb keeps their pages
//! in its write buffer), so nothing needs the disk while that fsync runs. So here a sync
//! returns at once and runs on a thread of its own, and the next write, shrink, or sync
//! that must not pass it (a sync the writer waits for, at shutdown; closing) waits for it
//! first. The disk therefore sees the same writes and barriers, in the same order, as
//! with synchronous syncs, and a crash at any moment leaves what redb's commit protocol
//! expects; only the moment a commit becomes durable moves past `commit()`, which
//! `--fsync never` allows. Growing the file need not wait: it changes no byte that an
//! earlier commit refers to. A background sync that fails fails the next operation on
//! the file, which makes the writer open the database again as after any I/O failure.

use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::backends::FileBackend;
use redb::{BackendError, Database, DatabaseError, StorageBackend};

/// Whether syncs run behind; shared by the writer and the open file.
#[derive(Debug)]
pub(super) struct SyncMode {
    behind: AtomicBool,
}

impl SyncMode {
    pub fn new(behind: bool) -> SyncMode {
        SyncMode {
            behind: AtomicBool::new(behind),
        }
    }

    /// Makes every later sync complete before it returns (at shutdown).
    pub fn wait_for_syncs(&self) {
        self.behind.store(false, Ordering::Release);
    }
}

/// Opens the database at `path`, syncing as `mode` says.
pub(super) fn open(path: &Path, mode: &Arc<SyncMode>) -> Result<Database, DatabaseError> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let path_display = path.display().to_string();
    let backend = SyncBehind {
        file: Arc::new(FileBackend::new(file)?),
        mode: mode.clone(),
        running: Mutex::new(None),
    };
    let warned = AtomicBool::new(false);
    // The caller made sure the file holds a database, so this only opens it.
    Database::builder()
        .set_repair_callback(move |_| {
            // Only a crash during a commit that recorded no allocator state (see
            // `writer::begin_write`) leads here; the tests look for this line.
            if !warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    path = %path_display,
                    "the log was not shut down cleanly after its last commit: full repair, \
                     reading every page to rebuild the allocator state"
                );
            }
        })
        .create_with_backend(backend)
}

type Running = JoinHandle<io::Result<()>>;

#[derive(Debug)]
struct SyncBehind {
    file: Arc<FileBackend>,
    mode: Arc<SyncMode>,
    /// The last sync started behind; it waits for the one before it, if any.
    running: Mutex<Option<Running>>,
}

impl SyncBehind {
    fn take_running(&self) -> Option<Running> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Waits for the syncs running behind, and fails with their error.
    fn settle(&self) -> io::Result<()> {
        join(self.take_running())
    }
}

fn join(running: Option<Running>) -> io::Result<()> {
    match running.map(JoinHandle::join) {
        None => Ok(()),
        Some(Ok(result)) => result,
        Some(Err(_)) => Err(io::Error::other("the background sync of the log panicked")),
    }
}

impl StorageBackend for SyncBehind {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if len < self.file.len()? {
            self.settle()?;
        }
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        if !self.mode.behind.load(Ordering::Acquire) {
            self.settle()?;
            return self.file.sync_data();
        }
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let before = running.take();
        let file = self.file.clone();
        let spawned = std::thread::Builder::new()
            .name("log-sync".into())
            .spawn(move || {
                join(before)?;
                let result = file.sync_data();
                if let Err(err) = &result {
                    tracing::error!(%err, "syncing the log in the background failed");
                }
                result
            });
        match spawned {
            Ok(handle) => {
                *running = Some(handle);
                Ok(())
            }
            // The failed spawn dropped the closure, which lets the earlier sync go on
            // unwatched; this one runs here and covers all it would have.
            Err(_) => self.file.sync_data(),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.settle()?;
        self.file.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        let settled = self.settle();
        let closed = self.file.close();
        settled.and(closed)
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}
