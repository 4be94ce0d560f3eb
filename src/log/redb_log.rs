use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, TopicEntry};
use super::store;
use super::types::{
    AppendOutcome, AppendRequest, FetchRequest, FetchResult, PartitionOffsets, TimestampOffset,
    TopicConfig, TopicDescription, TopicName, TopicUpdate,
};
use super::writer::{Command, TopicChange, Writer};
use super::{EventLog, Fsync, LogError};

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
}

/// The embedded log: one redb file, one writer thread, lock-free reads.
pub struct RedbLog {
    /// Taken at shutdown so the file lock is released before `shutdown` returns.
    db: RwLock<Option<Arc<Database>>>,
    catalog: Arc<Catalog>,
    commands: mpsc::Sender<Command>,
    /// Ends long polls at shutdown so the server can drain quickly.
    shutdown: CancellationToken,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl RedbLog {
    /// Opens (or creates) the log in `options.data_dir` and starts the writer thread.
    pub fn open(options: &LogOptions, shutdown: CancellationToken) -> Result<RedbLog, LogError> {
        std::fs::create_dir_all(&options.data_dir).map_err(|err| {
            LogError::Storage(format!(
                "cannot create data directory {}: {err}",
                options.data_dir.display()
            ))
        })?;
        let path = options.data_dir.join(DATABASE_FILE);
        let db = Database::create(&path).map_err(|err| match err {
            redb::DatabaseError::DatabaseAlreadyOpen => LogError::Storage(format!(
                "{} is already in use by another tidegate process",
                path.display()
            )),
            err => LogError::Storage(format!("cannot open {}: {err}", path.display())),
        })?;
        let db = Arc::new(db);
        let catalog = Arc::new(Catalog::default());
        let writer = Writer::open(
            db.clone(),
            catalog.clone(),
            options.fsync,
            options.idempotency_window,
        )?;
        let (commands, receiver) = mpsc::channel(WRITER_QUEUE);
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run(receiver))?;
        Ok(RedbLog {
            db: RwLock::new(Some(db)),
            catalog,
            commands,
            shutdown,
            writer: Mutex::new(Some(thread)),
        })
    }

    async fn submit<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Command,
    ) -> Result<T, LogError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| LogError::ShuttingDown)?;
        answer.await.map_err(|_| LogError::ShuttingDown)?
    }

    async fn change_topic(&self, topic: &TopicName, change: TopicChange) -> Result<(), LogError> {
        let topic = topic.clone();
        self.submit(|reply| Command::Admin {
            topic,
            change,
            reply,
        })
        .await
    }

    /// Runs blocking redb reads off the async workers.
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
        tokio::task::spawn_blocking(move || read(&db.begin_read()?))
            .await
            .map_err(|err| LogError::Storage(format!("read task failed: {err}")))?
    }

    fn bounds(&self, topic: &TopicName, partition: u32) -> Result<PartitionOffsets, LogError> {
        Ok(self
            .catalog
            .partition(topic.as_str(), partition)?
            .offsets(partition))
    }
}

fn describe(name: &str, entry: &TopicEntry) -> Result<TopicDescription, LogError> {
    Ok(TopicDescription {
        name: TopicName::parse(name)?,
        config: entry.config,
        partitions: (0u32..)
            .zip(&entry.partitions)
            .map(|(p, partition)| partition.offsets(p))
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
        self.change_topic(name, TopicChange::Delete).await
    }

    async fn append(
        &self,
        topic: &TopicName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, LogError> {
        // Fail fast without queueing behind other writes.
        self.catalog.topic(topic.as_str())?;
        let topic = topic.clone();
        self.submit(|reply| Command::Append {
            topic,
            request,
            reply,
        })
        .await
    }

    async fn fetch(
        &self,
        topic: &TopicName,
        partition: u32,
        request: FetchRequest,
    ) -> Result<FetchResult, LogError> {
        let bounds = self.bounds(topic, partition)?;
        let offset = request.offset.unwrap_or(bounds.log_start_offset);
        if offset < bounds.log_start_offset || offset > bounds.high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: bounds.log_start_offset,
                high_watermark: bounds.high_watermark,
            });
        }
        if offset == bounds.high_watermark && !request.wait.is_zero() {
            // Hold only a receiver while waiting: a deleted topic drops its sender, which
            // wakes the wait instead of keeping the partition alive.
            let mut high_watermark = self
                .catalog
                .partition(topic.as_str(), partition)?
                .high_watermark
                .subscribe();
            tokio::select! {
                _ = tokio::time::timeout(request.wait, high_watermark.wait_for(|hwm| *hwm > offset)) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        let bounds = self.bounds(topic, partition)?;
        let records = if offset >= bounds.high_watermark {
            Vec::new()
        } else {
            let topic = topic.as_str().to_owned();
            self.read(move |txn| {
                store::read_records(
                    txn,
                    &topic,
                    partition,
                    offset,
                    bounds.high_watermark,
                    request.max_records,
                    request.max_bytes,
                )
            })
            .await?
        };
        Ok(FetchResult {
            next_offset: records.last().map_or(offset, |r| r.offset + 1),
            records,
            high_watermark: bounds.high_watermark,
            log_start_offset: bounds.log_start_offset,
        })
    }

    async fn offset_for_timestamp(
        &self,
        topic: &TopicName,
        partition: u32,
        timestamp: i64,
    ) -> Result<TimestampOffset, LogError> {
        let bounds = self.bounds(topic, partition)?;
        let topic = topic.as_str().to_owned();
        let found = self
            .read(move |txn| {
                store::offset_for_timestamp(
                    txn,
                    &topic,
                    partition,
                    bounds.log_start_offset,
                    bounds.high_watermark,
                    timestamp,
                )
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
                offset: bounds.high_watermark,
                timestamp: None,
            },
        })
    }

    fn is_ready(&self) -> bool {
        !self.shutdown.is_cancelled()
    }

    async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Stop { done }).await.is_ok() {
            let _ = stopped.await;
        }
        let thread = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // The writer dropped its handle; wait out reads still running so the database is
        // closed (and its lock released) when this returns, whoever else still holds us.
        let taken = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        let mut db = match taken {
            Some(db) => db,
            None => return,
        };
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
