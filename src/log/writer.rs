//! The single writer: owns every redb write transaction and group-commits.
//!
//! Requests arrive over a bounded channel. The writer takes what is waiting (up to a
//! bound), stages all of it into one write transaction, commits once (one fsync with
//! `--fsync always`), then publishes the new high watermarks and answers every request.
//! Each request is validated completely before any of its records is staged, so a
//! rejected request leaves nothing behind and an accepted one commits whole or not at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::catalog::{Catalog, PartitionEntry, TopicEntry};
use super::codec::BatchBuilder;
use super::partitioner::partition_for_key;
use super::store::{
    self, BATCHES, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, IdempotentReply, PARTITIONS, TOPICS,
};
use super::types::{
    AppendOutcome, AppendRequest, PartitionChoice, RecordPosition, TopicConfig, TopicName,
    TopicUpdate,
};
use super::{Fsync, LogError};

/// Most requests staged into one transaction; bounds a commit's latency and memory.
const MAX_COMMANDS_PER_COMMIT: usize = 4096;
/// Most record payload bytes staged into one transaction.
const MAX_BYTES_PER_COMMIT: usize = 64 << 20;
/// With `--fsync never`, how long non-durable commits may pile up before one is synced.
const NON_DURABLE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Expired idempotency keys removed per commit, so expiry never makes one commit slow.
const IDEMPOTENCY_PRUNE_PER_COMMIT: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, LogError>>;

/// A change to a topic's existence or configuration.
pub(super) enum TopicChange {
    Create(TopicConfig),
    Update(TopicUpdate),
    Delete,
}

pub(super) enum Command {
    Admin {
        topic: TopicName,
        change: TopicChange,
        reply: Reply<()>,
    },
    Append {
        topic: TopicName,
        request: AppendRequest,
        reply: Reply<AppendOutcome>,
    },
    /// Commit what came before, refuse what comes after, make everything durable, exit.
    Stop { done: oneshot::Sender<()> },
}

impl Command {
    fn payload_len(&self) -> usize {
        match self {
            Command::Append { request, .. } => {
                request.records.iter().map(|r| r.payload_len()).sum()
            }
            _ => 0,
        }
    }
}

struct WriterPartition {
    next_offset: u64,
    last_timestamp: i64,
}

impl WriterPartition {
    const EMPTY: WriterPartition = WriterPartition {
        next_offset: 0,
        last_timestamp: i64::MIN,
    };
}

struct WriterTopic {
    incarnation: u64,
    config: TopicConfig,
    partitions: Vec<WriterPartition>,
    /// Keyless requests rotate over partitions, one partition per request.
    next_keyless: u32,
}

/// Answers owed once the transaction commits.
enum Pending {
    Append(Reply<AppendOutcome>, AppendOutcome),
    Done(Reply<()>),
}

impl Pending {
    /// Answers with the staged outcome, or with the commit's failure.
    fn resolve(self, failure: Option<&str>) {
        fn answer<T>(ok: T, failure: Option<&str>) -> Result<T, LogError> {
            failure.map_or(Ok(ok), |message| Err(LogError::Storage(message.to_owned())))
        }
        // A requester that gave up (client disconnected) is not an error for the writer.
        match self {
            Pending::Append(reply, outcome) => drop(reply.send(answer(outcome, failure))),
            Pending::Done(reply) => drop(reply.send(answer((), failure))),
        }
    }
}

struct Tables<'txn> {
    topics: Table<'txn, &'static str, &'static [u8]>,
    partitions: Table<'txn, (&'static str, u32), u64>,
    batches: Table<'txn, (&'static str, u32, u64), &'static [u8]>,
    idempotency: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    idempotency_expiry: Table<'txn, (i64, &'static str, &'static str), ()>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, LogError> {
        Ok(Tables {
            topics: txn.open_table(TOPICS)?,
            partitions: txn.open_table(PARTITIONS)?,
            batches: txn.open_table(BATCHES)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            idempotency_expiry: txn.open_table(IDEMPOTENCY_EXPIRY)?,
        })
    }
}

/// Batches being built in the current transaction, one per partition touched, keyed by
/// topic then partition so lookups need no allocation.
#[derive(Default)]
struct OpenBatches(BTreeMap<String, BTreeMap<u32, (u64, BatchBuilder)>>);

impl OpenBatches {
    /// The batch of `partition`, started at `offset` if this commit has none yet.
    fn for_partition(
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

    fn flush(&mut self, tables: &mut Tables<'_>) -> Result<(), LogError> {
        for (topic, partitions) in std::mem::take(&mut self.0) {
            for (partition, (base_offset, builder)) in partitions {
                tables.batches.insert(
                    (topic.as_str(), partition, base_offset),
                    builder.finish().as_slice(),
                )?;
            }
        }
        Ok(())
    }
}

pub(super) struct Writer {
    db: Arc<Database>,
    catalog: Arc<Catalog>,
    topics: HashMap<String, WriterTopic>,
    next_incarnation: u64,
    fsync: Fsync,
    idempotency_window_ms: i64,
    /// Set while commits exist that `--fsync never` has not synced yet.
    unsynced_since: Option<Instant>,
}

impl Writer {
    /// Loads committed state from disk and publishes it to the catalog.
    pub fn open(
        db: Arc<Database>,
        catalog: Arc<Catalog>,
        fsync: Fsync,
        idempotency_window: Duration,
    ) -> Result<Writer, LogError> {
        let txn = db.begin_write()?;
        // Create every table up front so read transactions never find one missing.
        drop(Tables::open(&txn)?);
        txn.commit()?;
        let mut writer = Writer {
            db,
            catalog,
            topics: HashMap::new(),
            next_incarnation: 0,
            fsync,
            idempotency_window_ms: i64::try_from(idempotency_window.as_millis())
                .unwrap_or(i64::MAX),
            unsynced_since: None,
        };
        writer.reload()?;
        Ok(writer)
    }

    /// Rebuilds the writer's state from disk: at start, and after a failed commit.
    fn reload(&mut self) -> Result<(), LogError> {
        let loaded = store::load_topics(&self.db.begin_read()?)?;
        self.topics.clear();
        for topic in loaded {
            let incarnation = match self.catalog.topic(&topic.name) {
                Ok(entry) => entry.incarnation,
                Err(_) => self.new_incarnation(),
            };
            let entry = TopicEntry {
                incarnation,
                config: topic.config,
                partitions: topic
                    .partitions
                    .iter()
                    .map(|t| PartitionEntry::new(t.log_start_offset, t.high_watermark))
                    .collect(),
            };
            self.catalog.insert(topic.name.clone(), Arc::new(entry));
            self.topics.insert(
                topic.name,
                WriterTopic {
                    incarnation,
                    config: topic.config,
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|t| WriterPartition {
                            next_offset: t.high_watermark,
                            last_timestamp: t.last_timestamp,
                        })
                        .collect(),
                    next_keyless: 0,
                },
            );
        }
        Ok(())
    }

    fn new_incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }

    /// The writer loop; runs on its own thread until `Stop` or until every sender is gone.
    pub fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                tracing::error!(%err, "log writer could not start its timer");
                return;
            }
        };
        loop {
            let flush_after = self
                .unsynced_since
                .map(|since| NON_DURABLE_FLUSH_INTERVAL.saturating_sub(since.elapsed()));
            let first = runtime.block_on(async {
                match flush_after {
                    Some(delay) => tokio::time::timeout(delay, commands.recv()).await.ok(),
                    None => Some(commands.recv().await),
                }
            });
            let first = match first {
                None => {
                    self.sync();
                    continue;
                }
                Some(None) => break,
                Some(Some(command)) => command,
            };
            let mut group = Vec::new();
            let mut bytes = first.payload_len();
            let mut stop = None;
            match first {
                Command::Stop { done } => stop = Some(done),
                command => group.push(command),
            }
            while stop.is_none()
                && group.len() < MAX_COMMANDS_PER_COMMIT
                && bytes < MAX_BYTES_PER_COMMIT
            {
                match commands.try_recv() {
                    Ok(Command::Stop { done }) => stop = Some(done),
                    Ok(command) => {
                        bytes += command.payload_len();
                        group.push(command);
                    }
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit_group(group);
            }
            if let Some(done) = stop {
                commands.close();
                while let Ok(command) = commands.try_recv() {
                    refuse(command);
                }
                self.sync();
                let _ = done.send(());
                return;
            }
        }
        self.sync();
    }

    fn commit_group(&mut self, group: Vec<Command>) {
        let started = Instant::now();
        let count = group.len();
        let mut pending = Vec::with_capacity(count);
        let mut reshaped = Vec::new();
        let mut appended = Vec::new();
        let outcome = self.stage_and_commit(group, &mut pending, &mut reshaped, &mut appended);
        match outcome {
            Ok(()) => {
                self.publish(&reshaped, &appended);
                for reply in pending {
                    reply.resolve(None);
                }
            }
            Err(err) => {
                let message = format!("commit failed: {err}");
                tracing::error!(%message, "log commit failed; reloading state from disk");
                for reply in pending {
                    reply.resolve(Some(&message));
                }
                if let Err(err) = self.reload() {
                    tracing::error!(%err, "reloading log state failed");
                }
            }
        }
        tracing::debug!(
            requests = count,
            elapsed_us = started.elapsed().as_micros() as u64,
            "group commit"
        );
    }

    fn stage_and_commit(
        &mut self,
        group: Vec<Command>,
        pending: &mut Vec<Pending>,
        reshaped: &mut Vec<String>,
        appended: &mut Vec<(String, u32)>,
    ) -> Result<(), LogError> {
        let now = now_ms();
        let mut txn = self.db.begin_write()?;
        let durable = match self.fsync {
            Fsync::Always => true,
            Fsync::Never => self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= NON_DURABLE_FLUSH_INTERVAL),
        };
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut tables = Tables::open(&txn)?;
            let mut batches = OpenBatches::default();
            for command in group {
                match command {
                    Command::Append {
                        topic,
                        request,
                        reply,
                    } => match self.stage_append(&mut tables, &mut batches, &topic, request, now) {
                        Ok(outcome) => {
                            if !outcome.replayed {
                                let mut touched: Vec<u32> =
                                    outcome.positions.iter().map(|p| p.partition).collect();
                                touched.sort_unstable();
                                touched.dedup();
                                appended.extend(
                                    touched.into_iter().map(|p| (topic.as_str().to_owned(), p)),
                                );
                            }
                            pending.push(Pending::Append(reply, outcome));
                        }
                        Err(err) => reject(reply, err)?,
                    },
                    Command::Admin {
                        topic,
                        change,
                        reply,
                    } => {
                        // Admin changes see every earlier append of the group already staged.
                        batches.flush(&mut tables)?;
                        self.stage_admin(&mut tables, topic, change, reply, pending, reshaped)?;
                    }
                    Command::Stop { done } => drop(done.send(())),
                }
            }
            batches.flush(&mut tables)?;
            self.prune_idempotency(&mut tables, now)?;
        }
        txn.commit()?;
        self.unsynced_since = match (durable, self.unsynced_since) {
            (true, _) => None,
            (false, Some(since)) => Some(since),
            (false, None) => Some(Instant::now()),
        };
        Ok(())
    }

    fn stage_append(
        &mut self,
        tables: &mut Tables<'_>,
        batches: &mut OpenBatches,
        topic_name: &TopicName,
        request: AppendRequest,
        now: i64,
    ) -> Result<AppendOutcome, LogError> {
        let topic = self
            .topics
            .get_mut(topic_name.as_str())
            .ok_or_else(|| LogError::TopicNotFound(topic_name.to_string()))?;
        let name = topic_name.as_str();
        if let Some(key) = &request.idempotency_key
            && let Some(stored) = tables.idempotency.get((name, key.as_str()))?
        {
            let stored: IdempotentReply = serde_json::from_slice(stored.value())
                .map_err(|err| LogError::Storage(format!("corrupt idempotency entry: {err}")))?;
            if now.saturating_sub(stored.created_ms) < self.idempotency_window_ms {
                return Ok(AppendOutcome {
                    positions: stored.positions,
                    replayed: true,
                });
            }
        }

        // Decide every record's partition before changing anything.
        let partitions = topic.config.partitions;
        let keyless_partition = topic.next_keyless % partitions;
        let mut uses_keyless = false;
        let targets = request
            .records
            .iter()
            .map(|record| match (record.partition, &record.key) {
                (PartitionChoice::Explicit(p), _) if p < partitions => Ok(p),
                (PartitionChoice::Explicit(p), _) => Err(LogError::PartitionNotFound {
                    topic: name.to_owned(),
                    partition: p,
                }),
                (PartitionChoice::Default, Some(key)) => {
                    Ok(partition_for_key(key.as_bytes(), partitions))
                }
                (PartitionChoice::Default, None) => {
                    uses_keyless = true;
                    Ok(keyless_partition)
                }
            })
            .collect::<Result<Vec<u32>, LogError>>()?;
        if uses_keyless {
            topic.next_keyless = topic.next_keyless.wrapping_add(1);
        }

        let mut positions = Vec::with_capacity(targets.len());
        for (record, partition) in request.records.iter().zip(targets) {
            let state = &mut topic.partitions[partition as usize];
            let offset = state.next_offset;
            state.next_offset += 1;
            // Timestamps never go backwards within a partition, even if the clock does;
            // offset-by-timestamp lookups rely on it.
            state.last_timestamp = state.last_timestamp.max(now);
            let timestamp = state.last_timestamp;
            batches
                .for_partition(name, partition, offset, timestamp)
                .push(
                    timestamp,
                    record.key.as_deref(),
                    record.value.get(),
                    &record.headers,
                );
            positions.push(RecordPosition { partition, offset });
        }

        if let Some(key) = &request.idempotency_key {
            let reply = IdempotentReply {
                created_ms: now,
                positions: positions.clone(),
            };
            let encoded = serde_json::to_vec(&reply)
                .map_err(|err| LogError::Storage(format!("encoding idempotency entry: {err}")))?;
            tables
                .idempotency
                .insert((name, key.as_str()), encoded.as_slice())?;
            tables
                .idempotency_expiry
                .insert((now, name, key.as_str()), ())?;
        }
        Ok(AppendOutcome {
            positions,
            replayed: false,
        })
    }

    fn stage_admin(
        &mut self,
        tables: &mut Tables<'_>,
        topic: TopicName,
        change: TopicChange,
        reply: Reply<()>,
        pending: &mut Vec<Pending>,
        reshaped: &mut Vec<String>,
    ) -> Result<(), LogError> {
        let result = match &change {
            TopicChange::Create(config) => self.stage_create(tables, &topic, *config),
            TopicChange::Update(update) => self.stage_update(tables, &topic, *update),
            TopicChange::Delete => self.stage_delete(tables, &topic),
        };
        match result {
            Ok(()) => {
                reshaped.push(topic.as_str().to_owned());
                pending.push(Pending::Done(reply));
            }
            Err(err) => reject(reply, err)?,
        }
        Ok(())
    }

    fn stage_create(
        &mut self,
        tables: &mut Tables<'_>,
        name: &TopicName,
        config: TopicConfig,
    ) -> Result<(), LogError> {
        config.validate()?;
        if self.topics.contains_key(name.as_str()) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        write_config(tables, name, &config)?;
        for partition in 0..config.partitions {
            tables.partitions.insert((name.as_str(), partition), 0)?;
        }
        let incarnation = self.new_incarnation();
        self.topics.insert(
            name.as_str().to_owned(),
            WriterTopic {
                incarnation,
                config,
                partitions: (0..config.partitions)
                    .map(|_| WriterPartition::EMPTY)
                    .collect(),
                next_keyless: 0,
            },
        );
        Ok(())
    }

    fn stage_update(
        &mut self,
        tables: &mut Tables<'_>,
        name: &TopicName,
        update: TopicUpdate,
    ) -> Result<(), LogError> {
        let topic = self
            .topics
            .get_mut(name.as_str())
            .ok_or_else(|| LogError::TopicNotFound(name.to_string()))?;
        let old = topic.config;
        let config = TopicConfig {
            partitions: update.partitions.unwrap_or(old.partitions),
            retention_ms: update.retention_ms.unwrap_or(old.retention_ms),
            retention_bytes: update.retention_bytes.unwrap_or(old.retention_bytes),
        };
        config.validate()?;
        if config.partitions < old.partitions {
            return Err(LogError::InvalidArgument(format!(
                "partitions can only be raised (topic has {}, asked for {})",
                old.partitions, config.partitions
            )));
        }
        write_config(tables, name, &config)?;
        for partition in old.partitions..config.partitions {
            tables.partitions.insert((name.as_str(), partition), 0)?;
            topic.partitions.push(WriterPartition::EMPTY);
        }
        topic.config = config;
        Ok(())
    }

    fn stage_delete(&mut self, tables: &mut Tables<'_>, name: &TopicName) -> Result<(), LogError> {
        let topic = self
            .topics
            .remove(name.as_str())
            .ok_or_else(|| LogError::TopicNotFound(name.to_string()))?;
        let name = name.as_str();
        tables.topics.remove(name)?;
        for partition in 0..topic.config.partitions {
            tables.partitions.remove((name, partition))?;
        }
        tables
            .batches
            .retain_in((name, 0, 0)..=(name, u32::MAX, u64::MAX), |_, _| false)?;
        // Keys of a deleted topic must not replay against a new topic of the same name;
        // their expiry entries are dropped by pruning once they age out.
        let mut keys = Vec::new();
        for entry in tables.idempotency.range((name, "")..)? {
            let (key, _) = entry?;
            let (topic, key) = key.value();
            if topic != name {
                break;
            }
            keys.push(key.to_owned());
        }
        for key in keys {
            tables.idempotency.remove((name, key.as_str()))?;
        }
        Ok(())
    }

    fn prune_idempotency(&self, tables: &mut Tables<'_>, now: i64) -> Result<(), LogError> {
        let cutoff = now.saturating_sub(self.idempotency_window_ms);
        let mut expired = Vec::new();
        for entry in tables
            .idempotency_expiry
            .range((i64::MIN, "", "")..(cutoff, "", ""))?
            .take(IDEMPOTENCY_PRUNE_PER_COMMIT)
        {
            let (key, _) = entry?;
            let (created, topic, key) = key.value();
            expired.push((created, topic.to_owned(), key.to_owned()));
        }
        for (created, topic, key) in expired {
            tables
                .idempotency_expiry
                .remove((created, topic.as_str(), key.as_str()))?;
            // The key may have been reused after it expired; only drop the entry it indexes.
            let same_entry = match tables.idempotency.get((topic.as_str(), key.as_str()))? {
                Some(stored) => serde_json::from_slice::<IdempotentReply>(stored.value())
                    .is_ok_and(|stored| stored.created_ms == created),
                None => false,
            };
            if same_entry {
                tables.idempotency.remove((topic.as_str(), key.as_str()))?;
            }
        }
        Ok(())
    }

    /// Makes committed changes visible to readers: reshaped topics first, then new high
    /// watermarks, which wake every waiter of those partitions.
    fn publish(&self, reshaped: &[String], appended: &[(String, u32)]) {
        for name in reshaped {
            let Some(topic) = self.topics.get(name) else {
                self.catalog.remove(name);
                continue;
            };
            let existing = self
                .catalog
                .topic(name)
                .ok()
                .filter(|entry| entry.incarnation == topic.incarnation);
            let partitions = (0..topic.partitions.len())
                .map(
                    |p| match existing.as_ref().and_then(|e| e.partitions.get(p)) {
                        Some(entry) => entry.clone(),
                        None => PartitionEntry::new(0, 0),
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
        for (name, partition) in appended {
            let (Some(topic), Ok(entry)) = (
                self.topics.get(name),
                self.catalog.partition(name, *partition),
            ) else {
                continue;
            };
            let next = topic.partitions[*partition as usize].next_offset;
            entry.high_watermark.send_if_modified(|hwm| {
                let advanced = *hwm < next;
                *hwm = next.max(*hwm);
                advanced
            });
        }
    }

    /// Makes every earlier non-durable commit durable (`--fsync never`).
    fn sync(&mut self) {
        if self.unsynced_since.is_none() {
            return;
        }
        let result = self
            .db
            .begin_write()
            .map_err(LogError::from)
            .and_then(|mut txn| {
                txn.set_durability(Durability::Immediate)?;
                txn.commit()?;
                Ok(())
            });
        match result {
            Ok(()) => self.unsynced_since = None,
            Err(err) => tracing::error!(%err, "syncing the log failed"),
        }
    }
}

fn write_config(
    tables: &mut Tables<'_>,
    name: &TopicName,
    config: &TopicConfig,
) -> Result<(), LogError> {
    let encoded = serde_json::to_vec(config)
        .map_err(|err| LogError::Storage(format!("encoding topic config: {err}")))?;
    tables.topics.insert(name.as_str(), encoded.as_slice())?;
    Ok(())
}

/// Answers a request that failed while being staged. A validation failure touched nothing,
/// so the rest of the group goes on; a storage failure may have staged part of the request,
/// so it fails the whole transaction.
fn reject<T>(reply: Reply<T>, err: LogError) -> Result<(), LogError> {
    match err {
        LogError::Storage(message) => {
            let _ = reply.send(Err(LogError::Storage(message.clone())));
            Err(LogError::Storage(message))
        }
        err => {
            let _ = reply.send(Err(err));
            Ok(())
        }
    }
}

fn refuse(command: Command) {
    match command {
        Command::Admin { reply, .. } => drop(reply.send(Err(LogError::ShuttingDown))),
        Command::Append { reply, .. } => drop(reply.send(Err(LogError::ShuttingDown))),
        Command::Stop { done } => drop(done.send(())),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
