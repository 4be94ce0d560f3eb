//! Live records: one tail per watched partition per gateway, shared by every local
//! subscriber. One consumer (on a thread of its own) reads every watched partition from
//! the end it had when the first watch began; after each drained poll it turns what it
//! read into a run covering the offsets it passed (transaction markers included: they move
//! its position, not its records), keeps the newest runs in memory, and moves the
//! partition's watch channel, which wakes the waiters as redb's commits do. A partition
//! nobody has watched for a while is released.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::watch;

use super::decode;
use crate::log::{Offset, PartitionId, RecordRun, StoredRecord, TopicName};

/// How long the tail waits for a new topic's metadata before assigning it anyway.
const TOPIC_METADATA: Duration = Duration::from_secs(2);
/// Bytes of the newest runs kept per tailed partition, for readers just behind the end.
const RECENT_BYTES: usize = 1 << 20;
/// Records read in one go before they are handed on, so a busy partition cannot hold the
/// others' wake-ups back.
const DRAIN_RECORDS: usize = 1000;
/// How long a partition nobody watches stays tailed (a reconnecting client finds it warm).
const IDLE_RELEASE: Duration = Duration::from_secs(30);

/// One tailed partition, shared by the tail thread and the readers.
pub(super) struct Tailed {
    watch: watch::Sender<Offset>,
    recent: Mutex<Recent>,
}

struct Recent {
    runs: VecDeque<RecordRun>,
    /// Where the tail stands: every offset below it was read (or the tail started there).
    end: Offset,
    bytes: usize,
}

impl Tailed {
    fn new(from: Offset) -> Arc<Tailed> {
        Arc::new(Tailed {
            watch: watch::Sender::new(from),
            recent: Mutex::new(Recent {
                runs: VecDeque::new(),
                end: from,
                bytes: 0,
            }),
        })
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the tail stands: the high watermark as this gateway knows it.
    pub fn end(&self) -> Offset {
        *self.watch.borrow()
    }

    /// Runs from the one holding `from` on, until `min_records` records at or after it;
    /// `None` when the memory does not reach back to `from`. At the end: no runs.
    pub fn runs_from(&self, from: Offset, min_records: usize) -> Option<Vec<RecordRun>> {
        let recent = self.recent();
        if from == recent.end {
            return Some(Vec::new());
        }
        let first = recent.runs.front()?;
        if from < first.start || from > recent.end {
            return None;
        }
        let mut runs = Vec::new();
        let mut records = 0;
        for run in recent.runs.iter().filter(|run| run.end > from) {
            records += run.records.iter().filter(|r| r.offset >= from).count();
            runs.push(run.clone());
            if records >= min_records {
                break;
            }
        }
        Some(runs)
    }

    /// The tail read up to `end`, with `records` since the last time.
    fn advance(&self, end: Offset, records: Vec<StoredRecord>) {
        let mut recent = self.recent();
        if end <= recent.end {
            return;
        }
        let bytes: usize = records.iter().map(|r| r.value.len() + 64).sum();
        let start = recent.end;
        recent.runs.push_back(RecordRun {
            start,
            end,
            records,
        });
        recent.bytes += bytes;
        recent.end = end;
        while recent.bytes > RECENT_BYTES && recent.runs.len() > 1 {
            if let Some(old) = recent.runs.pop_front() {
                recent.bytes -= old
                    .records
                    .iter()
                    .map(|r| r.value.len() + 64)
                    .sum::<usize>();
            }
        }
        drop(recent);
        self.watch.send_replace(end);
    }
}

type Key = (String, i32);

enum Command {
    Start {
        key: Key,
        from: Offset,
        tailed: Arc<Tailed>,
    },
    Stop(Key),
    Shutdown,
}

/// Every tail of this gateway.
pub(super) struct Tails {
    partitions: Mutex<HashMap<(TopicName, PartitionId), Arc<Tailed>>>,
    commands: Sender<Command>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Tails {
    pub fn start(consumer: BaseConsumer, max_value_depth: usize) -> Result<Arc<Tails>, String> {
        let (commands, received) = channel();
        let tails = Arc::new(Tails {
            partitions: Mutex::default(),
            commands,
            thread: Mutex::new(None),
        });
        let weak = Arc::downgrade(&tails);
        let thread = std::thread::Builder::new()
            .name("kafka-tail".into())
            .spawn(move || run(&consumer, &received, max_value_depth, &weak))
            .map_err(|err| format!("cannot start the tail thread: {err}"))?;
        *tails.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(tails)
    }

    fn partitions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(TopicName, PartitionId), Arc<Tailed>>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tail of a partition, if one runs.
    pub fn get(&self, topic: &TopicName, partition: PartitionId) -> Option<Arc<Tailed>> {
        self.partitions().get(&(topic.clone(), partition)).cloned()
    }

    /// A receiver of the partition's high watermark, if its tail runs.
    pub fn subscribe(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Option<watch::Receiver<Offset>> {
        self.partitions()
            .get(&(topic.clone(), partition))
            .map(|tailed| tailed.watch.subscribe())
    }

    /// A receiver of the partition's high watermark, starting its tail at `from` (its end
    /// now) when none runs.
    pub fn watch(
        &self,
        topic: &TopicName,
        kafka_topic: String,
        partition: PartitionId,
        from: Offset,
    ) -> watch::Receiver<Offset> {
        let mut partitions = self.partitions();
        if let Some(tailed) = partitions.get(&(topic.clone(), partition)) {
            return tailed.watch.subscribe();
        }
        let tailed = Tailed::new(from);
        let receiver = tailed.watch.subscribe();
        partitions.insert((topic.clone(), partition), tailed.clone());
        let key = (kafka_topic, partition.get() as i32);
        let _ = self.commands.send(Command::Start { key, from, tailed });
        receiver
    }

    /// Stops the tails of a deleted topic: their watches close.
    pub fn forget_topic(&self, topic: &TopicName, kafka_topic: &str) {
        let gone: Vec<PartitionId> = {
            let mut partitions = self.partitions();
            let gone: Vec<PartitionId> = partitions
                .keys()
                .filter(|(t, _)| t == topic)
                .map(|(_, p)| *p)
                .collect();
            for partition in &gone {
                partitions.remove(&(topic.clone(), *partition));
            }
            gone
        };
        for partition in gone {
            let _ = self.commands.send(Command::Stop((
                kafka_topic.to_owned(),
                partition.get() as i32,
            )));
        }
    }

    /// Releases a partition nobody watches; false when someone started watching again.
    fn release_if_unwatched(&self, tailed: &Arc<Tailed>) -> bool {
        let mut partitions = self.partitions();
        if tailed.watch.receiver_count() > 0 {
            return false;
        }
        partitions.retain(|_, other| !Arc::ptr_eq(other, tailed));
        true
    }

    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// A partition the tail thread reads.
struct Assigned {
    tailed: Arc<Tailed>,
    pending: Vec<StoredRecord>,
    unwatched_since: Option<Instant>,
}

/// The tail thread: assigns and releases partitions as told, polls, hands runs on.
fn run(
    consumer: &BaseConsumer,
    commands: &Receiver<Command>,
    max_value_depth: usize,
    tails: &std::sync::Weak<Tails>,
) {
    let mut assigned: HashMap<Key, Assigned> = HashMap::new();
    let mut last_reap = Instant::now();
    loop {
        let next = if assigned.is_empty() {
            match commands.recv_timeout(Duration::from_millis(200)) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            commands.try_recv().ok()
        };
        if let Some(command) = next {
            match command {
                Command::Shutdown => return,
                Command::Start { key, from, tailed } => {
                    if !assigned.keys().any(|(topic, _)| *topic == key.0) {
                        super::clients::know_topic(consumer, &key.0, TOPIC_METADATA);
                    }
                    let mut list = TopicPartitionList::new();
                    let added = list.add_partition_offset(
                        &key.0,
                        key.1,
                        KafkaOffset::Offset(from.get() as i64),
                    );
                    match added.and_then(|()| consumer.incremental_assign(&list)) {
                        Ok(()) => {
                            assigned.insert(
                                key,
                                Assigned {
                                    tailed,
                                    pending: Vec::new(),
                                    unwatched_since: None,
                                },
                            );
                        }
                        Err(err) => {
                            tracing::warn!(topic = %key.0, partition = key.1, %err, "could not tail a partition")
                        }
                    }
                }
                Command::Stop(key) => unassign(consumer, &mut assigned, &key),
            }
            continue;
        }
        if assigned.is_empty() {
            continue;
        }
        poll(consumer, &mut assigned, max_value_depth);
        if last_reap.elapsed() > Duration::from_secs(1) {
            last_reap = Instant::now();
            let Some(tails) = tails.upgrade() else { return };
            let idle: Vec<Key> = assigned
                .iter_mut()
                .filter_map(|(key, a)| {
                    if a.tailed.watch.receiver_count() > 0 {
                        a.unwatched_since = None;
                        return None;
                    }
                    let since = *a.unwatched_since.get_or_insert_with(Instant::now);
                    (since.elapsed() > IDLE_RELEASE && tails.release_if_unwatched(&a.tailed))
                        .then(|| key.clone())
                })
                .collect();
            for key in idle {
                unassign(consumer, &mut assigned, &key);
            }
        }
    }
}

fn unassign(consumer: &BaseConsumer, assigned: &mut HashMap<Key, Assigned>, key: &Key) {
    if assigned.remove(key).is_none() {
        return;
    }
    let mut list = TopicPartitionList::new();
    list.add_partition(&key.0, key.1);
    if let Err(err) = consumer.incremental_unassign(&list) {
        tracing::warn!(topic = %key.0, partition = key.1, %err, "could not release a partition");
    }
}

/// One round: waits briefly for records, drains what is there, then hands every
/// partition's records on with the position the consumer reached.
fn poll(consumer: &BaseConsumer, assigned: &mut HashMap<Key, Assigned>, max_value_depth: usize) {
    let mut wait = Duration::from_millis(50);
    for _ in 0..DRAIN_RECORDS {
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                use rdkafka::Message;
                let key = (message.topic().to_owned(), message.partition());
                if let Some(a) = assigned.get_mut(&key) {
                    a.pending.push(decode::record(&message, max_value_depth));
                }
                wait = Duration::ZERO;
            }
            Some(Err(err)) => {
                tracing::debug!(%err, "the tail consumer reported an error");
                break;
            }
            None => break,
        }
    }
    let positions = match consumer.position() {
        Ok(positions) => positions,
        Err(err) => {
            tracing::debug!(%err, "the tail could not read its positions");
            return;
        }
    };
    for element in positions.elements() {
        let key = (element.topic().to_owned(), element.partition());
        let (Some(a), KafkaOffset::Offset(position)) = (assigned.get_mut(&key), element.offset())
        else {
            continue;
        };
        let end = Offset::new(position.max(0) as u64);
        if end > a.tailed.end() || !a.pending.is_empty() {
            let records = std::mem::take(&mut a.pending);
            a.tailed.advance(end, records);
        }
    }
}
