//! The single writer: owns every redb write transaction and group-commits.
//!
//! Requests arrive over a bounded channel. The writer takes what is waiting (up to a
//! bound), stages all of it into one write transaction, commits once (one fsync with
//! `--fsync always`), then publishes the new high watermarks and answers every request.
//! Each request is validated completely before any of its rows is staged, so a refused
//! request leaves nothing behind and an accepted one commits whole or not at all.
//!
//! # Kinds of change
//! Each kind of change is a type implementing [`Change`] in a module of its own: `topics`
//! (create, change, delete), `append` (records with idempotency keys), `offsets` (consumer
//! group commits and deletions), `retention` (deleting old batches). A change validates
//! against [`LogState`], stages its rows into the shared [`Tables`] and keeps its answer
//! until the commit settles. The loop below (batching, durability, failure) never looks
//! inside a change, so a new kind is one new module and the method that sends it.
//!
//! # Failure
//! A commit that fails answers its whole group with the error and reloads the writer's
//! state from disk. A panic inside redb (it may panic on a damaged file), or a reload that
//! fails, leaves the log *failed*, and so does a read that finds the file damaged:
//! [`Health`] says why (the readiness probe reports it), the reason is logged once, and
//! every later change is refused as unavailable. A failed writer never writes again, not
//! even its shutdown sync, so it cannot make a damaged file worse. (After a panic inside a
//! write, redb itself records nothing at close, and the next start recovers from the last
//! commit.)
//!
//! # Room
//! Changes that grow the database are refused with [`LogError::StorageFull`] while the
//! disk is short of room (`space`). A write that meets a full disk anyway (or any other
//! I/O failure) leaves redb refusing reads and writes alike until it is opened again, so
//! the writer opens it again at once (`recover`), and while that fails, once a second,
//! answering what comes meanwhile as unavailable; nothing waits for a restart.

mod append;
mod offsets;
mod retention;
mod topics;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableDatabase, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

pub(super) use append::Append;
pub(super) use offsets::{CommitOffsets, DeleteOffsets};
pub(super) use retention::Retention;
pub(super) use topics::{TopicAdmin, TopicChange};

use super::Fsync;
use super::catalog::{Catalog, PartitionEntry, TopicEntry};
use super::codec::BatchBuilder;
use super::error;
use super::file::{self, SyncMode};
use super::space::Space;
use super::store::{
    self, BATCHES, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, OFFSETS, PARTITION_BYTES, PARTITIONS, TOPICS,
};
use crate::log::{LogError, Offset, TopicConfig, TopicName};
use crate::metrics::LogMetrics;
use crate::panics;

/// Most requests staged into one transaction; bounds a commit's latency and memory.
const MAX_COMMANDS_PER_COMMIT: usize = 4096;
/// Most record payload bytes staged into one transaction.
const MAX_BYTES_PER_COMMIT: usize = 64 << 20;
/// How long non-durable commits (every one under `--fsync never`, those of changes that
/// may be durable later under `--fsync always`) may pile up before one is synced.
const NON_DURABLE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// With `--fsync never`, how many record payload bytes may pile up before a commit is
/// synced. The sync itself runs behind the writer (`file`), but the commit that starts it
/// writes out every page the non-durable ones left in memory, about 1 ms per megabyte of
/// payload, and every publish waits meanwhile. Measured with 100-record batches from 16
/// connections (BENCHMARKS.md, "Performance round"): 1 MiB kept p99 at 3.6× p50 at full throughput; 8 MiB
/// gave 8×, and syncing only once a second 5.5× with stalls of 120 ms.
const NON_DURABLE_FLUSH_BYTES: usize = 1 << 20;
/// How often a database that failed at I/O is tried again while it cannot be opened.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// Waits of 10 ms for reads to let go of a failed database before it is opened again.
const RECOVERY_DRAIN_ATTEMPTS: usize = 100;

/// What changes are told while the database is being opened again.
pub(super) const REOPENING: &str =
    "the database is being opened again after a storage failure; retry shortly";

pub(super) type Reply<T> = oneshot::Sender<Result<T, LogError>>;

/// One kind of change to the log, staged by the writer into a group commit.
pub(super) trait Change: Send {
    /// Record payload bytes, to bound the size of one commit.
    fn payload_len(&self) -> usize {
        0
    }

    /// Validates against the writer's state, then stages rows into the transaction.
    ///
    /// Any error but [`LogError::Storage`] is a refusal and must leave the transaction and
    /// the state as they were; the rest of the group goes on. A storage error fails the
    /// whole transaction.
    fn stage(&mut self, staging: &mut Staging<'_, '_>) -> Result<(), LogError>;

    /// Answers the requester once the outcome is known: `Ok` after its commit (the change
    /// then sends what it staged), the error otherwise.
    fn answer(self: Box<Self>, result: Result<(), LogError>);

    /// Whether it grows the database, and so waits while the disk is short of room
    /// (`--min-free-bytes`); what frees room or barely takes any goes on.
    fn needs_room(&self) -> bool {
        false
    }

    /// Whether its requester may be answered before it is durable under `--fsync always`:
    /// then it is committed like under `--fsync never`, visible at once and durable with
    /// the next durable commit, within `NON_DURABLE_FLUSH_INTERVAL`.
    fn durable_later(&self) -> bool {
        false
    }

    /// Whether staging it wrote rows. A group in which no change wrote any (retention
    /// passes with nothing due) is not committed, so an idle log never syncs.
    fn wrote(&self) -> bool {
        true
    }
}

/// What travels over the writer's channel.
pub(super) enum Message {
    Change(Box<dyn Change>),
    /// Commit what came before, refuse what comes after, make everything durable, exit.
    Stop {
        done: oneshot::Sender<()>,
    },
}

/// Whether the log still takes changes; shared by the writer, the readers and the probes.
#[derive(Default)]
pub(super) struct Health {
    failure: OnceLock<&'static str>,
}

/// Why the log stopped taking writes, in words fit for clients; the details (paths, panic
/// messages, redb errors) go to the log only.
pub(super) const DAMAGED: &str =
    "the database file is damaged; writes are refused until the server is restarted";
pub(super) const WRITER_STOPPED: &str = "the log writer stopped after a storage failure; writes are refused until the server is restarted";

impl Health {
    /// Why the log failed, if it did.
    pub fn failure(&self) -> Option<&'static str> {
        self.failure.get().copied()
    }

    /// Stops all writes for good. The first failure is kept, logged once with its
    /// `detail`, and served by readiness; later ones are dropped.
    pub fn fail(&self, summary: &'static str, detail: &str) {
        if self.failure.set(summary).is_ok() {
            tracing::error!(
                detail = %crate::echo::sanitize(detail, 2048),
                "{summary}; check the data directory with `tidegate check --data-dir DIR` first"
            );
        }
    }
}

/// The tables every change stages into, opened once per transaction.
pub(super) struct Tables<'txn> {
    pub topics: Table<'txn, &'static str, &'static [u8]>,
    pub partitions: Table<'txn, (&'static str, u32), u64>,
    pub partition_bytes: Table<'txn, (&'static str, u32), u64>,
    pub batches: Table<'txn, (&'static str, u32, u64), &'static [u8]>,
    pub idempotency: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub idempotency_expiry: Table<'txn, (i64, &'static str, &'static str), ()>,
    pub offsets: Table<'txn, (&'static str, &'static str, u32), (u64, i64)>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, LogError> {
        Ok(Tables {
            topics: txn.open_table(TOPICS)?,
            partitions: txn.open_table(PARTITIONS)?,
            partition_bytes: txn.open_table(PARTITION_BYTES)?,
            batches: txn.open_table(BATCHES)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            idempotency_expiry: txn.open_table(IDEMPOTENCY_EXPIRY)?,
            offsets: txn.open_table(OFFSETS)?,
        })
    }
}

/// One partition as the writer tracks it.
pub(super) struct WriterPartition {
    pub log_start_offset: u64,
    pub next_offset: u64,
    pub last_timestamp: i64,
    /// Bytes of its stored batches, as `partition_bytes` holds them.
    pub size_bytes: u64,
    /// Its oldest batch, so a retention pass decides without reading; `None` when empty.
    pub head: Option<BatchHead>,
}

impl WriterPartition {
    pub const EMPTY: WriterPartition = WriterPartition {
        log_start_offset: 0,
        next_offset: 0,
        last_timestamp: i64::MIN,
        size_bytes: 0,
        head: None,
    };
}

/// What retention weighs of a stored batch.
#[derive(Clone, Copy, Debug)]
pub(super) struct BatchHead {
    pub len: u64,
    pub newest_timestamp: i64,
}

/// One topic as the writer tracks it.
pub(super) struct WriterTopic {
    pub incarnation: u64,
    pub config: TopicConfig,
    pub partitions: Vec<WriterPartition>,
}

/// The writer's view of the log, including changes staged but not yet committed.
pub(super) struct LogState {
    pub topics: HashMap<String, WriterTopic>,
    next_incarnation: u64,
    pub idempotency_window_ms: i64,
}

impl LogState {
    pub fn new_incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }
}

/// Everything a change may touch while it is staged.
pub(super) struct Staging<'a, 'txn> {
    pub tables: &'a mut Tables<'txn>,
    pub batches: &'a mut OpenBatches,
    pub state: &'a mut LogState,
    /// Milliseconds since the epoch, one reading for the whole commit.
    pub now: i64,
    /// Topics created, changed or deleted: the catalog is updated after the commit.
    pub reshaped: &'a mut Vec<String>,
    /// Partitions that got or lost records: their bounds and sizes are published after
    /// the commit, and new high watermarks wake their waiters.
    pub touched: &'a mut Vec<(String, u32)>,
}

impl Staging<'_, '_> {
    /// Writes every open batch into the table and counts its bytes; changes that read
    /// batches or bounds call it first so they see the appends staged before them in the
    /// same commit.
    pub fn flush_batches(&mut self) -> Result<(), LogError> {
        for (topic, partitions) in std::mem::take(&mut self.batches.0) {
            let state =
                self.state.topics.get_mut(&topic).ok_or_else(|| {
                    match TopicName::parse(&topic) {
                        Ok(name) => LogError::TopicNotFound(name),
                        Err(err) => err,
                    }
                })?;
            for (partition, (base_offset, builder)) in partitions {
                let newest_timestamp = builder.newest_timestamp();
                let batch = builder.finish();
                let stored = &mut state.partitions[partition as usize];
                stored.size_bytes += batch.len() as u64;
                if stored.head.is_none() {
                    stored.head = Some(BatchHead {
                        len: batch.len() as u64,
                        newest_timestamp,
                    });
                }
                let key = (topic.as_str(), partition);
                self.tables
                    .batches
                    .insert((topic.as_str(), partition, base_offset), batch.as_slice())?;
                self.tables.partition_bytes.insert(key, stored.size_bytes)?;
            }
        }
        Ok(())
    }
}

/// Batches being built in the current transaction, one per partition touched, keyed by
/// topic then partition so lookups need no allocation.
#[derive(Default)]
pub(super) struct OpenBatches(BTreeMap<String, BTreeMap<u32, (u64, BatchBuilder)>>);

impl OpenBatches {
    /// The batch of `partition`, started at `offset` if this commit has none yet.
    pub fn for_partition(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
        timestamp: i64,
    ) -> &mut BatchBuilder {
        if !self.0.contains_key(topic) {
            self.0.insert(topic.to_owned(), BTreeMap::new());
        }
        let partitions = self.0.get_mut(topic).expect("inserted above");
        &mut partitions
            .entry(partition)
            .or_insert_with(|| (offset, BatchBuilder::new(timestamp)))
            .1
    }
}

/// The database handle readers take theirs from; empty while the writer opens it again
/// (and at shutdown).
pub(super) type DbSlot = std::sync::RwLock<Option<Arc<Database>>>;

/// Where the writer's database lives.
pub(super) struct Storage {
    pub path: PathBuf,
    pub slot: Arc<DbSlot>,
    pub space: Arc<Space>,
    pub sync_mode: Arc<SyncMode>,
}

pub(super) struct Writer {
    /// `None` after an I/O failure until the database is open again.
    db: Option<Arc<Database>>,
    /// An old handle some read still held when the database was to be opened again.
    failed_db: Option<Arc<Database>>,
    storage: Storage,
    catalog: Arc<Catalog>,
    state: LogState,
    fsync: Fsync,
    /// Set while commits exist that `--fsync never` has not synced yet.
    unsynced_since: Option<Instant>,
    /// Record payload bytes of those commits.
    unsynced_bytes: usize,
    health: Arc<Health>,
    metrics: LogMetrics,
}

impl Writer {
    /// Loads committed state from disk and publishes it to the catalog.
    pub fn open(
        storage: Storage,
        catalog: Arc<Catalog>,
        fsync: Fsync,
        idempotency_window: Duration,
        health: Arc<Health>,
        metrics: LogMetrics,
    ) -> Result<Writer, LogError> {
        let db = storage
            .slot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(LogError::ShuttingDown)?;
        let txn = begin_write(&db, true)?;
        // Create every table up front so read transactions never find one missing.
        drop(Tables::open(&txn)?);
        txn.commit()?;
        let mut writer = Writer {
            db: Some(db),
            failed_db: None,
            storage,
            catalog,
            state: LogState {
                topics: HashMap::new(),
                next_incarnation: 0,
                idempotency_window_ms: i64::try_from(idempotency_window.as_millis())
                    .unwrap_or(i64::MAX),
            },
            fsync,
            unsynced_since: None,
            unsynced_bytes: 0,
            health,
            metrics,
        };
        let unrecorded = writer.reload()?;
        if !unrecorded.is_empty() {
            // A database from before `partition_bytes`: store the sizes counted at load.
            let txn = begin_write(writer.database()?, true)?;
            {
                let mut sizes = txn.open_table(PARTITION_BYTES)?;
                for (topic, partition, size) in &unrecorded {
                    sizes.insert((topic.as_str(), *partition), size)?;
                }
            }
            txn.commit()?;
        }
        Ok(writer)
    }

    /// Rebuilds the writer's state from disk: at start, and after a failed commit. Returns
    /// the partition sizes that were counted rather than read (see `store::PartitionTail`).
    fn reload(&mut self) -> Result<Vec<(String, u32, u64)>, LogError> {
        let loaded = store::load_topics(&self.database()?.begin_read()?)?;
        self.state.topics.clear();
        let mut unrecorded = Vec::new();
        for topic in loaded {
            for (partition, tail) in (0u32..).zip(&topic.partitions) {
                if !tail.size_recorded {
                    unrecorded.push((topic.name.clone(), partition, tail.size_bytes));
                }
            }
            let incarnation = match self.catalog.get(&topic.name) {
                Some(entry) => entry.incarnation,
                None => self.state.new_incarnation(),
            };
            let entry = TopicEntry {
                incarnation,
                config: topic.config,
                partitions: topic
                    .partitions
                    .iter()
                    .map(|t| {
                        PartitionEntry::new(
                            Offset::new(t.log_start_offset),
                            Offset::new(t.high_watermark),
                            t.size_bytes,
                        )
                    })
                    .collect(),
            };
            self.catalog.insert(topic.name.clone(), Arc::new(entry));
            self.state.topics.insert(
                topic.name,
                WriterTopic {
                    incarnation,
                    config: topic.config,
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|t| WriterPartition {
                            log_start_offset: t.log_start_offset,
                            next_offset: t.high_watermark,
                            last_timestamp: t.last_timestamp,
                            size_bytes: t.size_bytes,
                            head: t.head.map(|(len, summary)| BatchHead {
                                len,
                                newest_timestamp: summary.newest_timestamp,
                            }),
                        })
                        .collect(),
                },
            );
        }
        Ok(unrecorded)
    }

    /// The writer loop; runs on its own thread until `Stop` or until every sender is gone.
    pub fn run(mut self, mut messages: mpsc::Receiver<Message>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                self.health.fail(
                    WRITER_STOPPED,
                    &format!("the log writer could not start its timer: {err}"),
                );
                return;
            }
        };
        loop {
            let flush_after = match self.db {
                None => Some(RECOVERY_INTERVAL),
                Some(_) => self
                    .unsynced_since
                    .map(|since| NON_DURABLE_FLUSH_INTERVAL.saturating_sub(since.elapsed())),
            };
            let first = runtime.block_on(async {
                match flush_after {
                    Some(delay) => tokio::time::timeout(delay, messages.recv()).await.ok(),
                    None => Some(messages.recv().await),
                }
            });
            let first = match first {
                None if self.db.is_none() => {
                    self.recover();
                    continue;
                }
                None => {
                    self.sync();
                    continue;
                }
                Some(None) => break,
                Some(Some(message)) => message,
            };
            let mut group = Vec::new();
            let mut bytes = 0;
            let mut stop = None;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Stop { done } => stop = Some(done),
                    Message::Change(change) => {
                        bytes += change.payload_len();
                        group.push(change);
                    }
                }
                if stop.is_none()
                    && group.len() < MAX_COMMANDS_PER_COMMIT
                    && bytes < MAX_BYTES_PER_COMMIT
                {
                    next = messages.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit_group(group);
            }
            if let Some(done) = stop {
                messages.close();
                while let Ok(message) = messages.try_recv() {
                    match message {
                        Message::Change(change) => change.answer(Err(LogError::ShuttingDown)),
                        Message::Stop { done } => drop(done.send(())),
                    }
                }
                self.sync_before_exit();
                let _ = done.send(());
                return;
            }
        }
        self.sync_before_exit();
    }

    fn commit_group(&mut self, group: Vec<Box<dyn Change>>) {
        let refusal = match self.health.failure() {
            Some(reason) => Some(LogError::Unavailable(reason.to_owned())),
            None if self.db.is_none() && !self.recover() => {
                Some(LogError::Unavailable(REOPENING.into()))
            }
            None => None,
        };
        if let Some(refusal) = refusal {
            for change in group {
                change.answer(Err(refusal.clone()));
            }
            return;
        }
        let shortage = match group.iter().any(|change| change.needs_room()) {
            true => self.storage.space.shortage(),
            false => None,
        };
        let group: Vec<Box<dyn Change>> = match shortage {
            None => group,
            Some(shortage) => group
                .into_iter()
                .filter_map(|change| match change.needs_room() {
                    true => {
                        change.answer(Err(shortage.clone()));
                        None
                    }
                    false => Some(change),
                })
                .collect(),
        };
        if group.is_empty() {
            return;
        }
        let started = Instant::now();
        let count = group.len();
        let mut queue = VecDeque::from(group);
        let mut staged = Vec::with_capacity(count);
        let mut reshaped = Vec::new();
        let mut touched = Vec::new();
        // redb may panic on a damaged file. The change being staged at that moment is lost
        // with its reply (its requester sees the writer gone); every other one is answered.
        let outcome = panics::catch_mut(|| {
            self.stage_and_commit(&mut queue, &mut staged, &mut reshaped, &mut touched)
        });
        let failure = match outcome {
            Ok(Ok(committed)) => {
                self.publish(&reshaped, &touched);
                for change in staged {
                    change.answer(Ok(()));
                }
                if committed {
                    self.metrics.commit_requests.observe(count as f64);
                    self.metrics
                        .commit_duration
                        .observe(started.elapsed().as_secs_f64());
                }
                tracing::debug!(
                    requests = count,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "group commit"
                );
                return;
            }
            Ok(Err(err)) if err.is_damage() => {
                // Bytes the writer read back (a batch retention weighed) do not decode.
                self.health
                    .fail(DAMAGED, &format!("the log writer read damaged data: {err}"));
                LogError::Unavailable(DAMAGED.into())
            }
            Ok(Err(err)) if error::io_failed(&err) => {
                let full = error::out_of_space(&err);
                tracing::error!(error = %err, source = ?std::error::Error::source(&err), "log commit failed at I/O; opening the database again");
                if full {
                    self.storage.space.set_exhausted();
                }
                self.recover();
                match full {
                    true => LogError::StorageFull(
                        "the disk of the data directory is full; nothing of this request was stored".into(),
                    ),
                    false => err,
                }
            }
            Ok(Err(err)) => {
                tracing::error!(error = %err, source = ?std::error::Error::source(&err), "log commit failed; reloading state from disk");
                let reloaded = match panics::catch_mut(|| self.reload()) {
                    Ok(result) => result.map(drop).map_err(|reload| reload.to_string()),
                    Err(panic) => Err(format!("panicked: {panic}")),
                };
                if let Err(reload) = reloaded {
                    self.health.fail(
                        WRITER_STOPPED,
                        &format!(
                            "a commit failed ({err}) and the state could not be reloaded ({reload})"
                        ),
                    );
                }
                err
            }
            Err(panic) => {
                self.health
                    .fail(DAMAGED, &format!("the log writer panicked: {panic}"));
                LogError::Unavailable(DAMAGED.into())
            }
        };
        for change in staged.into_iter().chain(queue) {
            change.answer(Err(failure.clone()));
        }
    }

    fn stage_and_commit(
        &mut self,
        queue: &mut VecDeque<Box<dyn Change>>,
        staged: &mut Vec<Box<dyn Change>>,
        reshaped: &mut Vec<String>,
        touched: &mut Vec<(String, u32)>,
    ) -> Result<bool, LogError> {
        let now = now_ms();
        let bytes: usize = queue.iter().map(|change| change.payload_len()).sum();
        let waited_for =
            self.fsync == Fsync::Always && queue.iter().any(|change| !change.durable_later());
        let durable = waited_for
            || self.unsynced_bytes + bytes >= NON_DURABLE_FLUSH_BYTES
            || self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= NON_DURABLE_FLUSH_INTERVAL);
        let txn = begin_write(self.database()?, durable)?;
        {
            let mut tables = Tables::open(&txn)?;
            let mut batches = OpenBatches::default();
            let mut staging = Staging {
                tables: &mut tables,
                batches: &mut batches,
                state: &mut self.state,
                now,
                reshaped,
                touched,
            };
            while let Some(mut change) = queue.pop_front() {
                match change.stage(&mut staging) {
                    Ok(()) => staged.push(change),
                    Err(err @ LogError::Storage(_)) => {
                        change.answer(Err(err.clone()));
                        return Err(err);
                    }
                    Err(refusal) => change.answer(Err(refusal)),
                }
            }
            if !staged.iter().any(|change| change.wrote()) {
                drop(tables);
                txn.abort()?;
                return Ok(false);
            }
            staging.flush_batches()?;
            append::prune_idempotency(&mut staging)?;
        }
        txn.commit()?;
        if durable {
            self.metrics.fsyncs.inc();
        }
        self.unsynced_since = match (durable, self.unsynced_since) {
            (true, _) => None,
            (false, Some(since)) => Some(since),
            (false, None) => Some(Instant::now()),
        };
        self.unsynced_bytes = match durable {
            true => 0,
            false => self.unsynced_bytes + bytes,
        };
        Ok(true)
    }

    fn database(&self) -> Result<&Database, LogError> {
        self.db
            .as_deref()
            .ok_or_else(|| LogError::Unavailable(REOPENING.into()))
    }

    /// Opens the database again after redb failed at I/O, and reloads the state from it;
    /// whether the log is back. redb opens a file once per process, so every read's
    /// handle must be let go of first: the slot is emptied, and reads still running get
    /// a moment to end (a handle still held is kept, to try again next time).
    fn recover(&mut self) -> bool {
        let taken = self
            .storage
            .slot
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut old = self.failed_db.take().or(self.db.take()).or(taken);
        for _ in 0..RECOVERY_DRAIN_ATTEMPTS {
            match old.map(Arc::try_unwrap) {
                None | Some(Ok(_)) => {
                    old = None;
                    break;
                }
                Some(Err(shared)) => old = Some(shared),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if old.is_some() {
            self.failed_db = old;
            tracing::warn!("reads still hold the failed database; opening it again later");
            return false;
        }
        let path = self.storage.path.clone();
        let db = match panics::catch(|| file::open(&path, &self.storage.sync_mode)) {
            Ok(Ok(db)) => Arc::new(db),
            Ok(Err(err)) => {
                tracing::warn!(%err, "the database could not be opened again yet; retrying in a second");
                return false;
            }
            Err(panic) => {
                self.health.fail(
                    DAMAGED,
                    &format!("redb panicked opening the database again: {panic}"),
                );
                return false;
            }
        };
        *self.storage.slot.write().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
        self.db = Some(db);
        match panics::catch_mut(|| self.reload()) {
            Ok(Ok(_)) => {
                tracing::info!("the database is open again");
                true
            }
            Ok(Err(err)) => {
                tracing::warn!(%err, "reloading the database failed; retrying in a second");
                self.db = None;
                false
            }
            Err(panic) => {
                self.health.fail(
                    DAMAGED,
                    &format!("redb panicked reloading the database: {panic}"),
                );
                false
            }
        }
    }

    /// Makes committed changes visible to readers: reshaped topics first, then the bounds
    /// of touched partitions; new high watermarks wake every waiter of those partitions.
    fn publish(&self, reshaped: &[String], touched: &[(String, u32)]) {
        for name in reshaped {
            let Some(topic) = self.state.topics.get(name) else {
                self.catalog.remove(name);
                continue;
            };
            let existing = self
                .catalog
                .get(name)
                .filter(|entry| entry.incarnation == topic.incarnation);
            let partitions = (0..topic.partitions.len())
                .map(
                    |p| match existing.as_ref().and_then(|e| e.partitions.get(p)) {
                        Some(entry) => entry.clone(),
                        None => PartitionEntry::new(Offset::ZERO, Offset::ZERO, 0),
                    },
                )
                .collect();
            self.catalog.insert(
                name.clone(),
                Arc::new(TopicEntry {
                    incarnation: topic.incarnation,
                    config: topic.config,
                    partitions,
                }),
            );
        }
        for (name, partition) in touched {
            let (Some(topic), Some(entry)) = (
                self.state.topics.get(name),
                self.catalog
                    .get(name)
                    .and_then(|entry| entry.partitions.get(*partition as usize).cloned()),
            ) else {
                continue;
            };
            let state = &topic.partitions[*partition as usize];
            entry
                .log_start_offset
                .store(state.log_start_offset, Ordering::Release);
            entry.size_bytes.store(state.size_bytes, Ordering::Release);
            let next = Offset::new(state.next_offset);
            entry.high_watermark.send_if_modified(|hwm| {
                let advanced = *hwm < next;
                *hwm = next.max(*hwm);
                advanced
            });
        }
    }

    /// At shutdown, makes every commit durable before the writer exits, including those
    /// whose sync is still running behind it (`--fsync never`).
    fn sync_before_exit(&mut self) {
        self.storage.sync_mode.wait_for_syncs();
        if self.fsync == Fsync::Never {
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        self.sync();
    }

    /// Makes every earlier non-durable commit durable (`--fsync never`). A failed writer
    /// does not touch the file again.
    fn sync(&mut self) {
        if self.unsynced_since.is_none() || self.health.failure().is_some() {
            return;
        }
        let result = panics::catch_mut(|| -> Result<(), LogError> {
            begin_write(self.database()?, true)?.commit()?;
            Ok(())
        });
        match result {
            Ok(Ok(())) => {
                self.metrics.fsyncs.inc();
                self.unsynced_since = None;
                self.unsynced_bytes = 0;
            }
            Ok(Err(err)) => tracing::error!(%err, "syncing the log failed"),
            Err(panic) => self.health.fail(
                DAMAGED,
                &format!("the log writer panicked while syncing: {panic}"),
            ),
        }
    }
}

/// Answers a reply-holding change: its staged value once committed, or the error.
pub(super) fn settle<T>(reply: Reply<T>, staged: Option<T>, result: Result<(), LogError>) {
    let answer = result.and_then(|()| {
        staged.ok_or_else(|| LogError::Unavailable("the change was never staged".into()))
    });
    // A requester that gave up (client disconnected) is not an error for the writer.
    let _ = reply.send(answer);
}

/// A write transaction. Every durable commit records redb's allocator state (quick
/// repair, which also makes it commit in two phases: a second fsync), so that opening the
/// file after a crash loads that state instead of walking every page to rebuild it:
/// restart time does not grow with the log (SPEC, Storage). A non-durable commit is never
/// what a crash leaves on disk, so it skips the record. BENCHMARKS.md ("Performance
/// round") has what the second fsync costs and what it buys.
fn begin_write(db: &Database, durable: bool) -> Result<WriteTransaction, LogError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    txn.set_quick_repair(durable);
    Ok(txn)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
