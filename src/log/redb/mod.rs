//! The embedded backend: one redb file, one writer thread that group-commits every change,
//! lock-free reads over snapshots. The default; `tidegate check` inspects its file.
//!
//! # Layout
//! - `codec`: the on-disk batch encoding.
//! - `store`: redb tables and the read paths.
//! - `writer`: the single writer thread that group-commits every change (appends, topic
//!   changes, group offsets, retention).
//! - `catalog`: committed topic state in memory, with a `watch` channel per partition.
//! - `check`: [`check`], the read-only integrity check behind `tidegate check`.
//! - `error`: redb's errors as backend-neutral [`Fault`](crate::log::Fault)s.
//! - `file`: the database file, whose periodic sync under `--fsync never` runs behind the
//!   writer.
//! - [`RedbLog`] (here): opening, the trait implementations, and the retention task.
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
pub(crate) mod codec;
mod error;
mod file;
mod space;
mod store;
mod writer;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use check::check;

use catalog::{Catalog, TopicEntry};
use space::Space;
use writer::{
    Append, Change, CommitOffsets, DAMAGED, DbSlot, DeleteOffsets, Health, Message, REOPENING,
    Retention, Storage, TopicAdmin, TopicChange, WRITER_STOPPED, Writer,
};

use super::{
    AppendOutcome, AppendRequest, ClusterNode, ClusterView, CommittedOffset, EMBEDDED_NODE,
    EventLog, FetchRequest, FetchResult, GroupId, LogError, Offset, OffsetStore, PartitionBounds,
    PartitionId, PartitionOffsets, PartitionReplicas, RecordRun, TimestampOffset, TopicConfig,
    TopicDescription, TopicId, TopicListing, TopicMeta, TopicName, TopicUpdate,
};
use crate::metrics::LogMetrics;
use crate::{panics, private_fs};

/// Name of the database file inside the data directory.
pub const DATABASE_FILE: &str = "tidegate.redb";
/// Requests that may wait for the writer before publishers feel back-pressure.
const WRITER_QUEUE: usize = 8192;
/// How many 10 ms waits shutdown grants reads in flight before it stops waiting.
const READ_DRAIN_ATTEMPTS: usize = 500;

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

/// How to open the embedded log.
#[derive(Clone, Debug)]
pub struct LogOptions {
    pub data_dir: PathBuf,
    pub fsync: Fsync,
    /// How long an `Idempotency-Key` is remembered per topic.
    pub idempotency_window: Duration,
    /// How often the retention task deletes what retention no longer keeps.
    pub retention_check_interval: Duration,
    /// Publishes are refused while the disk has less free space (0: never).
    pub min_free_bytes: u64,
}

/// Why the log could not be opened; one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(String);

/// The embedded log: one redb file, one writer thread, lock-free reads.
pub struct RedbLog {
    /// Taken at shutdown so the file lock is released before `shutdown` returns, and by
    /// the writer while it opens the database again after an I/O failure.
    db: Arc<DbSlot>,
    space: Arc<Space>,
    catalog: Arc<Catalog>,
    messages: mpsc::Sender<Message>,
    /// Ends long polls at shutdown so the server can drain quickly.
    shutdown: CancellationToken,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The retention task, awaited at shutdown (it ends with the shutdown token).
    retention: Mutex<Option<JoinHandle<()>>>,
    health: Arc<Health>,
}

impl RedbLog {
    /// Opens the log in `options.data_dir`, creating the directory (mode 0700) and a new
    /// database (mode 0600) when there is none, and starts the writer thread and the
    /// retention task (so it must be called within a Tokio runtime).
    ///
    /// Only a missing file means a new database: an empty or damaged one is refused, so a
    /// truncated file is never silently replaced by an empty log.
    pub fn open(
        options: &LogOptions,
        metrics: LogMetrics,
        shutdown: CancellationToken,
    ) -> Result<Arc<RedbLog>, OpenError> {
        let dir = &options.data_dir;
        private_fs::create_dir(dir).map_err(|err| {
            OpenError(format!(
                "cannot create data directory {}: {err}",
                dir.display()
            ))
        })?;
        let path = dir.join(DATABASE_FILE);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == 0 => {
                return Err(OpenError(format!(
                    "{} is empty (0 bytes) where a database is expected; refusing to start \
                     rather than replace it with an empty log. Restore it from a backup, or \
                     delete it to start with no data",
                    path.display()
                )));
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => create_database(&path)
                .map_err(|err| OpenError(format!("cannot create {}: {err}", path.display())))?,
            Err(err) => return Err(OpenError(format!("cannot read {}: {err}", path.display()))),
        }
        let damaged = |what: String| {
            OpenError(format!(
                "{} cannot be opened: {what}; run `tidegate check --data-dir {}` to inspect it",
                path.display(),
                dir.display()
            ))
        };
        let sync_mode = Arc::new(file::SyncMode::new(options.fsync == Fsync::Never));
        let db = match panics::catch(|| file::open(&path, &sync_mode)) {
            Ok(Ok(db)) => Arc::new(db),
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(OpenError(format!(
                    "{} is already in use by another tidegate process",
                    path.display()
                )));
            }
            Ok(Err(err)) => return Err(damaged(err.to_string())),
            Err(panic) => return Err(damaged(format!("redb panicked ({panic})"))),
        };
        let catalog = Arc::new(Catalog::default());
        let health = Arc::new(Health::default());
        let slot = Arc::new(RwLock::new(Some(db)));
        let space = Arc::new(Space::new(dir.clone(), options.min_free_bytes));
        let storage = Storage {
            path: path.clone(),
            slot: slot.clone(),
            space: space.clone(),
            sync_mode,
        };
        let writer = panics::catch_mut(|| {
            Writer::open(
                storage,
                catalog.clone(),
                options.fsync,
                options.idempotency_window,
                health.clone(),
                metrics.clone(),
            )
        })
        .map_err(|panic| damaged(format!("redb panicked while loading it ({panic})")))?
        .map_err(|err| damaged(err.to_string()))?;
        let (messages, receiver) = mpsc::channel(WRITER_QUEUE);
        let writer_health = health.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                // Panics inside a commit are handled there; this catches the loop itself.
                if let Err(panic) = panics::catch_mut(|| writer.run(receiver)) {
                    writer_health
                        .fail(WRITER_STOPPED, &format!("the log writer panicked: {panic}"));
                }
            })
            .map_err(|err| OpenError(format!("cannot start the log writer thread: {err}")))?;
        let log = Arc::new(RedbLog {
            db: slot,
            space,
            catalog,
            messages,
            shutdown,
            writer: Mutex::new(Some(thread)),
            retention: Mutex::new(None),
            health,
        });
        let retention = tokio::spawn(
            log.clone()
                .run_retention(options.retention_check_interval, metrics),
        );
        *log.retention.lock().unwrap_or_else(|e| e.into_inner()) = Some(retention);
        Ok(log)
    }

    /// Deletes, every `period`, the batches that their topics' retention no longer keeps;
    /// each pass is one bounded change through the writer, repeated at once while work
    /// remains. Ends with the shutdown token.
    async fn run_retention(self: Arc<Self>, period: Duration, metrics: LogMetrics) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            while self.health.failure().is_none() && !self.shutdown.is_cancelled() {
                match self.submit(|reply| Box::new(Retention::new(reply))).await {
                    Ok(outcome) => {
                        metrics.retention_batches.inc_by(outcome.batches);
                        metrics.retention_records.inc_by(outcome.records);
                        metrics.retention_bytes.inc_by(outcome.bytes);
                        if outcome.batches > 0 {
                            tracing::debug!(
                                batches = outcome.batches,
                                records = outcome.records,
                                bytes = outcome.bytes,
                                "retention deleted batches"
                            );
                        }
                        if !outcome.more {
                            break;
                        }
                    }
                    Err(LogError::ShuttingDown) => return,
                    Err(err) => {
                        tracing::warn!(%err, "a retention pass failed; the next one retries");
                        break;
                    }
                }
            }
        }
    }

    /// Sends a change to the writer and waits for its answer.
    async fn submit<T>(
        &self,
        change: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Box<dyn Change>,
    ) -> Result<T, LogError> {
        let (reply, answer) = oneshot::channel();
        if self
            .messages
            .send(Message::Change(change(reply)))
            .await
            .is_err()
        {
            return Err(self.writer_gone());
        }
        answer.await.map_err(|_| self.writer_gone())?
    }

    /// Stores a group's committed offsets; `lazy` lets the writer answer before they are
    /// durable.
    async fn submit_offsets(
        &self,
        group: &GroupId,
        offsets: Vec<CommittedOffset>,
        lazy: bool,
    ) -> Result<(), LogError> {
        let group = group.clone();
        self.submit(|reply| {
            Box::new(CommitOffsets {
                group,
                offsets,
                lazy,
                reply,
                staged: false,
            })
        })
        .await
    }

    /// Why the writer no longer answers.
    fn writer_gone(&self) -> LogError {
        match self.health.failure() {
            Some(reason) => LogError::Unavailable(reason.to_owned()),
            None if self.shutdown.is_cancelled() => LogError::ShuttingDown,
            None => LogError::Unavailable("the log writer stopped".into()),
        }
    }

    async fn change_topic(&self, topic: &TopicName, change: TopicChange) -> Result<(), LogError> {
        let topic = topic.clone();
        self.submit(|reply| {
            Box::new(TopicAdmin {
                topic,
                change,
                reply,
                staged: false,
            })
        })
        .await
    }

    /// Runs blocking redb reads off the async workers. A panic in redb or bytes that do not
    /// decode (a damaged file) become a storage error, and the log stops taking writes.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let db = self
            .db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| match self.shutdown.is_cancelled() {
                true => LogError::ShuttingDown,
                false => LogError::Unavailable(REOPENING.into()),
            })?;
        let result = tokio::task::spawn_blocking(move || {
            panics::catch_mut(|| read(&db.begin_read()?))
                .unwrap_or_else(|panic| Err(LogError::panicked(panic)))
        })
        .await
        .unwrap_or_else(|err| Err(LogError::panicked(format!("read task failed: {err}"))));
        if let Err(err) = &result
            && err.is_damage()
        {
            // Writing on into a file that reads back damaged could only make it worse.
            self.health.fail(
                DAMAGED,
                &format!("a read found the database damaged: {err}"),
            );
        }
        result
    }
}

/// Creates a new, empty database at `path`, readable by its owner only. It is built under a
/// temporary name and renamed into place, so a crash midway never leaves an empty file
/// where the database belongs (which the next start would refuse).
fn create_database(path: &Path) -> std::io::Result<()> {
    let temp = path.with_extension("redb.new");
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    Database::create(&temp)
        .and_then(|db| db.close())
        .map_err(std::io::Error::other)?;
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn describe(name: &TopicName, entry: &TopicEntry) -> TopicDescription {
    TopicDescription {
        name: name.clone(),
        config: entry.config,
        partitions: (0u32..)
            .zip(&entry.partitions)
            .map(|(p, partition)| PartitionOffsets {
                partition: PartitionId::new(p),
                bounds: partition.bounds(),
                size_bytes: Some(partition.size_bytes()),
                replicas: PartitionReplicas::embedded(),
            })
            .collect(),
    }
}

#[async_trait]
impl EventLog for RedbLog {
    async fn create_topic(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, LogError> {
        self.change_topic(&name, TopicChange::Create(config))
            .await?;
        self.describe_topic(&name).await
    }

    async fn list_topics(&self) -> Result<Vec<TopicListing>, LogError> {
        Ok(self
            .catalog
            .all()
            .into_iter()
            .map(|(name, entry)| TopicListing {
                name,
                config: entry.config,
            })
            .collect())
    }

    async fn describe_topic(&self, name: &TopicName) -> Result<TopicDescription, LogError> {
        Ok(describe(name, &*self.catalog.topic(name)?))
    }

    async fn update_topic(
        &self,
        name: &TopicName,
        update: TopicUpdate,
    ) -> Result<TopicDescription, LogError> {
        self.change_topic(name, TopicChange::Update(update)).await?;
        self.describe_topic(name).await
    }

    async fn delete_topic(&self, name: &TopicName) -> Result<(), LogError> {
        self.change_topic(name, TopicChange::Delete).await
    }

    async fn topic_meta(&self, name: &TopicName) -> Result<TopicMeta, LogError> {
        let entry = self.catalog.topic(name)?;
        Ok(TopicMeta {
            id: TopicId::new(entry.incarnation),
            partitions: entry.config.partitions,
        })
    }

    async fn bounds(
        &self,
        topic: &TopicName,
        partitions: &[PartitionId],
    ) -> Result<Vec<PartitionBounds>, LogError> {
        let entry = self.catalog.topic(topic)?;
        partitions
            .iter()
            .map(|partition| Ok(entry.partition(topic, *partition)?.bounds()))
            .collect()
    }

    async fn append(
        &self,
        topic: &TopicName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, LogError> {
        // Fail fast without queueing behind other writes.
        self.catalog.topic(topic)?;
        let topic = topic.clone();
        self.submit(|reply| {
            Box::new(Append {
                topic,
                request,
                reply,
                outcome: None,
            })
        })
        .await
    }

    async fn fetch(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        request: FetchRequest,
    ) -> Result<FetchResult, LogError> {
        // Published before the snapshot opens, so the snapshot holds every offset below it.
        let high_watermark = self.catalog.partition(topic, partition)?.high_watermark();
        let name = topic.clone();
        self.read(move |txn| {
            store::read_partition(
                txn,
                &store::ReadRequest {
                    topic: &name,
                    partition,
                    from: request.offset,
                    high_watermark,
                    max_records: request.max_records,
                    max_bytes: request.max_bytes,
                },
            )
        })
        .await
    }

    async fn read_runs(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        from: Offset,
        min_records: usize,
    ) -> Result<Vec<RecordRun>, LogError> {
        let high_watermark = self.catalog.partition(topic, partition)?.high_watermark();
        let name = topic.clone();
        self.read(move |txn| {
            store::read_batches(txn, &name, partition, from, high_watermark, min_records)
        })
        .await
    }

    async fn offset_for_timestamp(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        timestamp: i64,
    ) -> Result<TimestampOffset, LogError> {
        let high_watermark = self.catalog.partition(topic, partition)?.high_watermark();
        let name = topic.clone();
        let found = self
            .read(move |txn| {
                store::offset_for_timestamp(txn, &name, partition, high_watermark, timestamp)
            })
            .await?;
        Ok(match found {
            Some((offset, timestamp)) => TimestampOffset {
                partition,
                offset,
                timestamp: Some(timestamp),
            },
            None => TimestampOffset {
                partition,
                offset: high_watermark,
                timestamp: None,
            },
        })
    }

    async fn watch_high_watermark(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<watch::Receiver<Offset>, LogError> {
        Ok(self
            .catalog
            .partition(topic, partition)?
            .high_watermark
            .subscribe())
    }

    fn readiness(&self) -> Result<(), LogError> {
        let writer_ended = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|thread| thread.is_finished());
        match self.health.failure() {
            Some(reason) => Err(LogError::Unavailable(reason.to_owned())),
            None if self.shutdown.is_cancelled() => Err(LogError::ShuttingDown),
            None if writer_ended => Err(LogError::Unavailable(WRITER_STOPPED.to_owned())),
            None => match self.space.shortage() {
                Some(shortage) => Err(shortage),
                None if self.db.read().unwrap_or_else(|e| e.into_inner()).is_none() => {
                    Err(LogError::Unavailable(REOPENING.into()))
                }
                None => Ok(()),
            },
        }
    }

    async fn cluster(&self) -> Result<ClusterView, LogError> {
        let partitions = self
            .catalog
            .all()
            .into_iter()
            .flat_map(|(name, entry)| {
                (0..entry.partitions.len() as u32).map(move |p| {
                    (
                        name.clone(),
                        PartitionId::new(p),
                        PartitionReplicas::embedded(),
                    )
                })
            })
            .collect();
        Ok(ClusterView {
            nodes: vec![ClusterNode {
                id: EMBEDDED_NODE,
                address: None,
            }],
            controller: Some(EMBEDDED_NODE),
            partitions,
        })
    }

    async fn shutdown(&self) {
        let retention = self
            .retention
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(retention) = retention {
            // It ends with the shutdown token, which the caller cancelled.
            let _ = retention.await;
        }
        let (done, stopped) = oneshot::channel();
        if self.messages.send(Message::Stop { done }).await.is_ok() {
            let _ = stopped.await;
        }
        let thread = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let taken = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        let mut db = match taken {
            Some(db) => db,
            None => return,
        };
        // The writer dropped its handle; wait out reads still running so the database is
        // closed (and its lock released) when this returns, whoever else still holds us.
        for _ in 0..READ_DRAIN_ATTEMPTS {
            match Arc::try_unwrap(db) {
                Ok(db) => return drop(db),
                Err(shared) => db = shared,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!("reads still running at shutdown; the database closes when they end");
    }
}

#[async_trait]
impl OffsetStore for RedbLog {
    async fn commit_offsets(
        &self,
        group: &GroupId,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), LogError> {
        self.submit_offsets(group, offsets, false).await
    }

    async fn commit_offsets_lazily(
        &self,
        group: &GroupId,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), LogError> {
        self.submit_offsets(group, offsets, true).await
    }

    async fn committed_offsets(&self, group: &GroupId) -> Result<Vec<CommittedOffset>, LogError> {
        let group = group.as_str().to_owned();
        self.read(move |txn| store::committed_offsets(txn, &group))
            .await
    }

    async fn offset_groups(&self) -> Result<Vec<GroupId>, LogError> {
        self.read(store::offset_groups).await
    }

    async fn delete_offsets(&self, group: &GroupId) -> Result<bool, LogError> {
        let group = group.clone();
        self.submit(|reply| {
            Box::new(DeleteOffsets {
                group,
                reply,
                deleted: None,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Fsync, LogOptions, RedbLog};
    use crate::log::conformance::{self, Backend};
    use crate::log::{EventLog, Offset, PartitionId, TopicName, TopicUpdate};

    fn options(dir: &std::path::Path) -> LogOptions {
        LogOptions {
            data_dir: dir.to_owned(),
            fsync: Fsync::Never,
            idempotency_window: Duration::from_secs(3600),
            retention_check_interval: Duration::from_millis(20),
            min_free_bytes: 0,
        }
    }

    #[tokio::test]
    async fn conforms() {
        let dir = tempfile::tempdir().expect("temp dir");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let redb = RedbLog::open(
            &options(dir.path()),
            conformance::log_metrics(),
            shutdown.clone(),
        )
        .expect("open");
        let log: Arc<dyn EventLog> = redb.clone();
        let trimmed = log.clone();
        let path = dir.path().to_owned();
        let backend = Backend {
            log,
            offsets: redb.clone(),
            // Retention keeping one byte deletes every batch but the newest, which is the
            // one the suite moves the start to.
            advance_log_start: Box::new(move |topic: TopicName, _: PartitionId, _: Offset| {
                let log = trimmed.clone();
                Box::pin(async move {
                    let keep_one_byte = TopicUpdate {
                        retention_bytes: Some(1),
                        ..TopicUpdate::default()
                    };
                    log.update_topic(&topic, keep_one_byte)
                        .await
                        .expect("retention");
                })
            }),
            open_twin: Box::new(move || {
                let path = path.clone();
                Box::pin(async move {
                    let twin = RedbLog::open(
                        &options(&path),
                        conformance::log_metrics(),
                        Default::default(),
                    );
                    twin.map(|twin| twin as Arc<dyn EventLog>)
                        .map_err(|err| err.to_string())
                })
            }),
            prefix: String::new(),
        };
        conformance::run(&backend).await;
        shutdown.cancel();
        redb.shutdown().await;
    }
}
