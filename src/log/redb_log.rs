use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, TopicEntry};
use super::encoded::{BatchCache, EncodedBatch, EncodedRead};
use super::store;
use super::types::{
    AppendOutcome, AppendRequest, CommittedOffset, FetchRequest, FetchResult, GroupId, Offset,
    PartitionId, TimestampOffset, TopicConfig, TopicDescription, TopicName, TopicUpdate,
};
use super::writer::{
    Append, Change, CommitOffsets, DAMAGED, DeleteOffsets, Health, Message, Retention, TopicAdmin,
    TopicChange, WRITER_STOPPED, Writer,
};
use super::{EventLog, Fsync, LogError, OffsetStore, Readiness};
use crate::metrics::LogMetrics;
use crate::{panics, private_fs};

/// Name of the database file inside the data directory.
pub const DATABASE_FILE: &str = "tidegate.redb";
/// Requests that may wait for the writer before publishers feel back-pressure.
const WRITER_QUEUE: usize = 8192;
/// How many 10 ms waits shutdown grants reads in flight before it stops waiting.
const READ_DRAIN_ATTEMPTS: usize = 500;

/// How to open the embedded log.
#[derive(Clone, Debug)]
pub struct LogOptions {
    pub data_dir: PathBuf,
    pub fsync: Fsync,
    /// How long an `Idempotency-Key` is remembered per topic.
    pub idempotency_window: Duration,
    /// Bytes of encoded batches kept for push delivery.
    pub push_cache_bytes: usize,
    /// How often [`RedbLog::run_retention`] deletes what retention no longer keeps.
    pub retention_check_interval: Duration,
}

/// Why the log could not be opened; one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(String);

/// The embedded log: one redb file, one writer thread, lock-free reads.
pub struct RedbLog {
    /// Taken at shutdown so the file lock is released before `shutdown` returns.
    db: RwLock<Option<Arc<Database>>>,
    catalog: Arc<Catalog>,
    messages: mpsc::Sender<Message>,
    /// Ends long polls at shutdown so the server can drain quickly.
    shutdown: CancellationToken,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    health: Arc<Health>,
    cache: Arc<BatchCache>,
    retention_check_interval: Duration,
    metrics: LogMetrics,
}

impl RedbLog {
    /// Opens the log in `options.data_dir`, creating the directory (mode 0700) and a new
    /// database (mode 0600) when there is none, and starts the writer thread.
    ///
    /// Only a missing file means a new database: an empty or damaged one is refused, so a
    /// truncated file is never silently replaced by an empty log.
    pub fn open(
        options: &LogOptions,
        metrics: LogMetrics,
        shutdown: CancellationToken,
    ) -> Result<RedbLog, OpenError> {
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
        let db = match panics::catch(|| Database::open(&path)) {
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
        let cache = Arc::new(BatchCache::new(options.push_cache_bytes));
        let writer = panics::catch_mut(|| {
            Writer::open(
                db.clone(),
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
        Ok(RedbLog {
            db: RwLock::new(Some(db)),
            catalog,
            messages,
            shutdown,
            writer: Mutex::new(Some(thread)),
            health,
            cache,
            retention_check_interval: options.retention_check_interval,
            metrics,
        })
    }

    /// Deletes, every `retention_check_interval`, the batches that their topics' retention
    /// no longer keeps; each pass is one bounded change through the writer, repeated at
    /// once while work remains. Ends with the shutdown token.
    pub async fn run_retention(self: Arc<Self>) {
        let period = self.retention_check_interval;
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
                        self.metrics.retention_batches.inc_by(outcome.batches);
                        self.metrics.retention_records.inc_by(outcome.records);
                        self.metrics.retention_bytes.inc_by(outcome.bytes);
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
            .ok_or(LogError::ShuttingDown)?;
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

fn describe(name: &str, entry: &TopicEntry) -> Result<TopicDescription, LogError> {
    Ok(TopicDescription {
        name: TopicName::parse(name)?,
        config: entry.config,
        partitions: (0u32..)
            .zip(&entry.partitions)
            .map(|(p, partition)| partition.offsets(PartitionId::new(p)))
            .collect(),
    })
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

    async fn list_topics(&self) -> Result<Vec<TopicDescription>, LogError> {
        self.catalog
            .all()
            .iter()
            .map(|(name, entry)| describe(name, entry))
            .collect()
    }

    async fn describe_topic(&self, name: &TopicName) -> Result<TopicDescription, LogError> {
        describe(name.as_str(), &*self.catalog.topic(name.as_str())?)
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
        let incarnation = self.catalog.topic(name.as_str())?.incarnation;
        self.change_topic(name, TopicChange::Delete).await?;
        self.cache.forget(incarnation);
        Ok(())
    }

    async fn append(
        &self,
        topic: &TopicName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, LogError> {
        // Fail fast without queueing behind other writes.
        self.catalog.topic(topic.as_str())?;
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
        let entry = self.catalog.partition(topic.as_str(), partition)?;
        let offset = request.offset.unwrap_or_else(|| entry.log_start_offset());
        if offset == entry.high_watermark() && !request.wait.is_zero() {
            // Hold only a receiver while waiting: a deleted topic drops its sender, which
            // wakes the wait instead of keeping the partition alive.
            let mut high_watermark = entry.high_watermark.subscribe();
            drop(entry);
            tokio::select! {
                _ = tokio::time::timeout(request.wait, high_watermark.wait_for(|hwm| *hwm > offset)) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        // Published before the snapshot opens, so the snapshot holds every offset below it.
        let high_watermark = self
            .catalog
            .partition(topic.as_str(), partition)?
            .high_watermark()
            .get();
        let topic = topic.as_str().to_owned();
        self.read(move |txn| {
            store::read_partition(
                txn,
                &store::ReadRequest {
                    topic: &topic,
                    partition: partition.get(),
                    from: request.offset.map(Offset::get),
                    high_watermark,
                    max_records: request.max_records,
                    max_bytes: request.max_bytes,
                },
            )
        })
        .await
    }

    async fn read_encoded(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<EncodedRead, LogError> {
        let entry = self.catalog.topic(topic.as_str())?;
        let bounds = self.catalog.partition(topic.as_str(), partition)?;
        let high_watermark = bounds.high_watermark().get();
        let key = (entry.incarnation, partition.get());
        let log_start = bounds.log_start_offset().get();
        // The cache may still hold batches retention deleted: a reader below the published
        // start is told where the log starts instead.
        if from.get() > high_watermark || from.get() < log_start {
            return Err(LogError::OffsetOutOfRange {
                offset: from.get(),
                log_start_offset: log_start,
                high_watermark,
            });
        }
        drop((entry, bounds));
        let read = |cache: &BatchCache| {
            cache.read(key, from.get(), high_watermark, max_records, max_bytes)
        };
        let mut slices = read(&self.cache);
        let covered =
            |slices: &[super::EncodedSlice]| slices.last().map_or(from, |s| s.next_offset()).get();
        let count = |slices: &[super::EncodedSlice]| slices.iter().map(|s| s.len()).sum::<usize>();
        if covered(&slices) < high_watermark && count(&slices) < max_records {
            // One load per partition at a time: the readers behind it find the cache filled.
            let loader = self.cache.loader(key);
            let _loading = loader.lock().await;
            slices = read(&self.cache);
            let start = covered(&slices);
            if start < high_watermark && count(&slices) < max_records {
                let wanted = max_records - count(&slices);
                let name = topic.as_str().to_owned();
                let batches = self
                    .read(move |txn| {
                        store::read_batches(
                            txn,
                            &name,
                            partition.get(),
                            start,
                            high_watermark,
                            wanted,
                        )
                    })
                    .await?;
                let encoded = batches
                    .iter()
                    .map(|records| Arc::new(EncodedBatch::encode(records)))
                    .collect();
                self.cache.insert(key, encoded);
                slices = read(&self.cache);
            }
        }
        Ok(EncodedRead {
            next_offset: Offset::new(covered(&slices)),
            slices,
            high_watermark: Offset::new(high_watermark),
        })
    }

    async fn offset_for_timestamp(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        timestamp: i64,
    ) -> Result<TimestampOffset, LogError> {
        let high_watermark = self
            .catalog
            .partition(topic.as_str(), partition)?
            .high_watermark();
        let topic = topic.as_str().to_owned();
        let found = self
            .read(move |txn| {
                store::offset_for_timestamp(
                    txn,
                    &topic,
                    partition.get(),
                    high_watermark.get(),
                    timestamp,
                )
            })
            .await?;
        Ok(match found {
            Some((offset, timestamp)) => TimestampOffset {
                partition,
                offset: Offset::new(offset),
                timestamp: Some(timestamp),
            },
            None => TimestampOffset {
                partition,
                offset: high_watermark,
                timestamp: None,
            },
        })
    }

    fn watch_high_watermark(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<watch::Receiver<Offset>, LogError> {
        Ok(self
            .catalog
            .partition(topic.as_str(), partition)?
            .high_watermark
            .subscribe())
    }

    fn readiness(&self) -> Readiness {
        let writer_ended = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|thread| thread.is_finished());
        match self.health.failure() {
            Some(reason) => Readiness::Failed(reason.to_owned()),
            None if self.shutdown.is_cancelled() => Readiness::ShuttingDown,
            None if writer_ended => Readiness::Failed(WRITER_STOPPED.to_owned()),
            None => Readiness::Ready,
        }
    }

    async fn shutdown(&self) {
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
        let group = group.clone();
        self.submit(|reply| {
            Box::new(CommitOffsets {
                group,
                offsets,
                reply,
                staged: false,
            })
        })
        .await
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
