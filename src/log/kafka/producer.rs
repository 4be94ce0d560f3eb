//! Publishing: one transactional producer per gateway and one transaction per drained
//! group of requests (group commit, as redb's writer does), with `acks=all`; readers read
//! committed records only, so a request's records appear together or not at all.
//!
//! Idempotency keys live in a compacted internal topic (`__tidegate_idempotency`), written
//! in the same transaction as the records they answer for, and in memory: loaded from the
//! topic at start, kept for `--idempotency-window-ms`. A repeat is answered from memory.
//!
//! # Failure
//! A group whose delivery or commit fails is aborted. Requests whose own records failed
//! get that error; the others are tried once more in the next group. A producer that
//! cannot abort, or that was fenced (another gateway started with this `transactional.id`:
//! a restarted replica fences its zombie), is dropped and made anew; until then every
//! request is answered `kafka_unavailable` at once.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset as KafkaOffset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::cluster::{Cluster, LATEST, unavailable};
use super::names::Names;
use super::{KafkaOptions, clients, ffi};
use crate::log::{
    AppendOutcome, AppendRequest, LogError, Offset, PartitionId, RecordPosition, TopicName,
};
use crate::metrics::LogMetrics;

/// Requests that may wait for the producer before publishers feel back-pressure.
const QUEUE: usize = 8192;
/// Most requests and records in one transaction; bounds its latency and librdkafka's queue.
const MAX_REQUESTS: usize = 4096;
const MAX_RECORDS: usize = 20_000;
/// How often expired idempotency keys leave memory.
const EXPIRY_SWEEP: Duration = Duration::from_secs(60);

/// The answer kept for an idempotency key (the internal topic's values).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Answer {
    created_ms: i64,
    positions: Vec<RecordPosition>,
    /// Hex SHA-256 of the request.
    digest: String,
}

type Reply<T> = oneshot::Sender<Result<T, LogError>>;

enum Job {
    Append {
        topic: TopicName,
        request: AppendRequest,
        reply: Reply<AppendOutcome>,
        /// Set once a group failed for another request's sake: it is not tried again.
        retried: bool,
    },
    /// A topic was deleted: its keys must not replay on a new topic of the same name.
    ForgetKeys(TopicName),
    /// Another replica may have answered keys since they were loaded (their owner moved
    /// here): read them again before answering any.
    ReloadKeys(Reply<()>),
}

/// The sending side: the gateway's handle on the producer task.
pub(super) struct Publisher {
    jobs: mpsc::Sender<Job>,
    /// Why the producer cannot take requests now; `None` while it can.
    unready: Arc<Mutex<Option<String>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    timeout: Duration,
}

impl Publisher {
    /// Starts the producer task; it sets itself up (internal topic, keys, producer) in the
    /// background and again after every loss, so a cluster that is down at start only
    /// delays publishing.
    pub fn start(
        options: KafkaOptions,
        admin: Arc<AdminClient<DefaultClientContext>>,
        cluster: Arc<Cluster>,
        metrics: LogMetrics,
        shutdown: CancellationToken,
    ) -> Publisher {
        let (jobs, receiver) = mpsc::channel(QUEUE);
        let unready = Arc::new(Mutex::new(Some("the producer is starting".to_owned())));
        let timeout = options.timeout;
        let task = Task {
            names: Names::new(&options.prefix),
            window_ms: i64::try_from(options.idempotency_window.as_millis()).unwrap_or(i64::MAX),
            options,
            admin,
            producer: None,
            keys: HashMap::new(),
            unready: unready.clone(),
            carried: VecDeque::new(),
            metrics,
            cluster,
        };
        let task = tokio::spawn(task.run(receiver, shutdown));
        Publisher {
            jobs,
            unready,
            task: Mutex::new(Some(task)),
            timeout,
        }
    }

    pub fn readiness(&self) -> Result<(), LogError> {
        match &*self.unready.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Ok(()),
            Some(reason) => Err(LogError::ClusterUnavailable(reason.clone())),
        }
    }

    /// Appends one request's records in the next group's transaction; answers after its
    /// commit, or with `kafka_unavailable` within the timeout.
    pub async fn append(
        &self,
        topic: &TopicName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, LogError> {
        let job = |reply| Job::Append {
            topic: topic.clone(),
            request,
            reply,
            retried: false,
        };
        self.ask(job, "the publish was not committed").await
    }

    /// Queues the job `make` builds around its reply channel and waits for the answer,
    /// within the timeout (`late` says what did not happen in time).
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Job, late: &str) -> Result<T, LogError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(make(reply))
            .await
            .map_err(|_| LogError::ShuttingDown)?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(LogError::ShuttingDown),
            Err(_) => Err(LogError::ClusterUnavailable(format!(
                "{late} within --kafka-timeout-ms"
            ))),
        }
    }

    /// Forgets the idempotency keys of a deleted topic (best effort: it is logged when
    /// the cluster cannot take the tombstones now).
    pub async fn forget_keys(&self, topic: &TopicName) {
        let _ = self.jobs.send(Job::ForgetKeys(topic.clone())).await;
    }

    /// Reads every idempotency answer again from the internal topic; jobs queued after it
    /// see them.
    pub async fn reload_keys(&self) -> Result<(), LogError> {
        self.ask(Job::ReloadKeys, "the idempotency keys were not read again")
            .await
    }

    /// Answers what is queued, then stops the task (its transaction finishes first).
    pub async fn shutdown(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The producer task's state.
struct Task {
    options: KafkaOptions,
    names: Names,
    admin: Arc<AdminClient<DefaultClientContext>>,
    producer: Option<FutureProducer>,
    /// Idempotency keys within the window: (topic, key) → the first answer.
    keys: HashMap<(TopicName, String), Answer>,
    window_ms: i64,
    unready: Arc<Mutex<Option<String>>>,
    /// Jobs put off to the next group (a key already in this one, or a retry).
    carried: VecDeque<Job>,
    metrics: LogMetrics,
    cluster: Arc<Cluster>,
}

/// An append staged in the open transaction.
struct Staged {
    topic: TopicName,
    request: AppendRequest,
    reply: Reply<AppendOutcome>,
    retried: bool,
    positions: Vec<RecordPosition>,
    failed: Option<LogError>,
    /// The producer did not know one of its partitions yet (added moments ago): its
    /// metadata is read again before the request is tried once more.
    unknown_partition: bool,
}

impl Task {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>, shutdown: CancellationToken) {
        let mut last_sweep = Instant::now();
        loop {
            if self.producer.is_none() && !self.set_up().await {
                // Not ready: whatever arrives meanwhile is refused at once, and the set-up
                // is tried again every second.
                let retry = tokio::time::sleep(Duration::from_secs(1));
                tokio::pin!(retry);
                loop {
                    tokio::select! {
                        job = jobs.recv() => match job {
                            Some(job) => self.refuse(job),
                            None => return,
                        },
                        _ = &mut retry => break,
                        _ = shutdown.cancelled() => return self.drain(&mut jobs),
                    }
                }
                continue;
            }
            let first = match self.carried.pop_front() {
                Some(job) => job,
                None => tokio::select! {
                    job = jobs.recv() => match job {
                        Some(job) => job,
                        None => return,
                    },
                    _ = tokio::time::sleep(EXPIRY_SWEEP) => {
                        self.sweep();
                        continue;
                    }
                    _ = shutdown.cancelled() => return self.drain(&mut jobs),
                },
            };
            let mut group = vec![first];
            let mut records = 0usize;
            while group.len() < MAX_REQUESTS && records < MAX_RECORDS {
                let next = self.carried.pop_front().or_else(|| jobs.try_recv().ok());
                let Some(job) = next else { break };
                if let Job::Append { request, .. } = &job {
                    records += request.records.len();
                }
                group.push(job);
            }
            self.commit_group(group).await;
            if last_sweep.elapsed() > EXPIRY_SWEEP {
                last_sweep = Instant::now();
                self.sweep();
            }
        }
    }

    /// At shutdown: what is still queued is refused as shutting down.
    fn drain(&mut self, jobs: &mut mpsc::Receiver<Job>) {
        jobs.close();
        while let Some(job) = self.carried.pop_front().or_else(|| jobs.try_recv().ok()) {
            if let Job::Append { reply, .. } = job {
                let _ = reply.send(Err(LogError::ShuttingDown));
            }
        }
    }

    fn refuse(&self, job: Job) {
        let reason = || {
            let reason = self
                .unready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            LogError::ClusterUnavailable(reason.unwrap_or_default())
        };
        match job {
            Job::Append { reply, .. } => drop(reply.send(Err(reason()))),
            Job::ReloadKeys(reply) => drop(reply.send(Err(reason()))),
            Job::ForgetKeys(_) => {}
        }
    }

    fn set_unready(&self, reason: Option<String>) {
        *self.unready.lock().unwrap_or_else(|e| e.into_inner()) = reason;
    }

    /// Makes the internal topic, loads the keys and starts a transactional producer; false
    /// (with the reason kept for readiness) when the cluster is not there yet.
    async fn set_up(&mut self) -> bool {
        let result = async {
            self.create_internal_topic().await?;
            self.keys = self.load_keys().await?;
            let producer = clients::producer(&self.options)?;
            let timeout = self.options.timeout;
            let producer = tokio::task::spawn_blocking(move || {
                producer.init_transactions(timeout).map(|()| producer)
            })
            .await
            .map_err(|err| unavailable("starting the producer", err))?
            .map_err(|err| unavailable("starting the transactional producer", err))?;
            Ok::<_, LogError>(producer)
        }
        .await;
        match result {
            Ok(producer) => {
                self.producer = Some(producer);
                self.set_unready(None);
                tracing::info!(
                    transactional_id = %self.options.transactional_id(),
                    keys = self.keys.len(),
                    "the Kafka producer is ready"
                );
                true
            }
            Err(err) => {
                tracing::warn!(%err, "the Kafka producer is not ready; retrying");
                self.set_unready(Some(err.to_string()));
                false
            }
        }
    }

    async fn create_internal_topic(&self) -> Result<(), LogError> {
        let window = self.options.idempotency_window.as_millis().to_string();
        // Compacted for the newest answer per key, deleted once past the window.
        let configs = [
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", &window),
        ];
        let name = self.names.idempotency_topic();
        clients::create_internal_topic(&self.admin, &self.options, &name, 1, &configs).await
    }

    /// Reads the internal topic from its start to its end: the newest answer per key,
    /// tombstones removing keys.
    async fn load_keys(&self) -> Result<HashMap<(TopicName, String), Answer>, LogError> {
        let consumer = clients::reader(&self.options)?;
        let topic = self.names.idempotency_topic();
        let timeout = self.options.timeout;
        let window_ms = self.window_ms;
        tokio::task::spawn_blocking(move || load(&consumer, &topic, timeout, window_ms))
            .await
            .map_err(|err| unavailable("loading idempotency keys", err))?
    }

    fn sweep(&mut self) {
        let cutoff = now_ms().saturating_sub(self.window_ms);
        self.keys.retain(|_, answer| answer.created_ms >= cutoff);
    }

    async fn commit_group(&mut self, group: Vec<Job>) {
        let now = now_ms();
        let mut staged = Vec::new();
        let mut in_group = HashSet::new();
        let mut forgotten = Vec::new();
        for job in group {
            match job {
                Job::ForgetKeys(topic) => forgotten.push(topic),
                Job::ReloadKeys(reply) => {
                    let loaded = self.load_keys().await.map(|keys| self.keys = keys);
                    let _ = reply.send(loaded);
                }
                Job::Append {
                    topic,
                    request,
                    reply,
                    retried,
                } => {
                    if reply.is_closed() {
                        // Its caller gave up (timed out): appending it would only surprise.
                        continue;
                    }
                    if let Some(key) = &request.idempotency {
                        let id = (topic.clone(), key.key.clone());
                        if !in_group.insert(id.clone()) {
                            // The same key twice in one group: the second waits for the
                            // first's answer, to replay it.
                            self.carried.push_back(Job::Append {
                                topic,
                                request,
                                reply,
                                retried,
                            });
                            continue;
                        }
                        if let Some(answer) = self.keys.get(&id)
                            && now.saturating_sub(answer.created_ms) < self.window_ms
                        {
                            let outcome = if answer.digest == hex::encode(key.digest) {
                                Ok(AppendOutcome {
                                    positions: answer.positions.clone(),
                                    replayed: true,
                                })
                            } else {
                                Err(LogError::IdempotencyKeyReused)
                            };
                            let _ = reply.send(outcome);
                            continue;
                        }
                    }
                    staged.push(Staged {
                        topic,
                        request,
                        reply,
                        retried,
                        positions: Vec::new(),
                        failed: None,
                        unknown_partition: false,
                    });
                }
            }
        }
        let tombstones: Vec<(TopicName, String)> = forgotten
            .iter()
            .flat_map(|topic| {
                self.keys
                    .keys()
                    .filter(move |(t, _)| t == topic)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        if staged.is_empty() && tombstones.is_empty() {
            return;
        }
        let started = Instant::now();
        match self.transact(&mut staged, &tombstones, now).await {
            Ok(()) => {
                self.await_visible(&staged).await;
                self.metrics.commit_requests.observe(staged.len() as f64);
                self.metrics
                    .commit_duration
                    .observe(started.elapsed().as_secs_f64());
                for id in &tombstones {
                    self.keys.remove(id);
                }
                for staged in staged {
                    if let Some(key) = &staged.request.idempotency {
                        self.keys.insert(
                            (staged.topic.clone(), key.key.clone()),
                            Answer {
                                created_ms: now,
                                positions: staged.positions.clone(),
                                digest: hex::encode(key.digest),
                            },
                        );
                    }
                    let _ = staged.reply.send(Ok(AppendOutcome {
                        positions: staged.positions,
                        replayed: false,
                    }));
                }
            }
            Err(err) => {
                self.metrics.transaction_aborts.inc();
                tracing::warn!(%err, requests = staged.len(), "a Kafka transaction failed");
                if !tombstones.is_empty() {
                    tracing::warn!(%err, "the keys of a deleted topic could not be forgotten");
                }
                self.refresh_partitions(&staged).await;
                for staged in staged {
                    match staged.failed {
                        Some(own) => drop(staged.reply.send(Err(own))),
                        None if !staged.retried && self.producer.is_some() => {
                            self.carried.push_back(Job::Append {
                                topic: staged.topic,
                                request: staged.request,
                                reply: staged.reply,
                                retried: true,
                            });
                        }
                        None => drop(staged.reply.send(Err(err.clone()))),
                    }
                }
            }
        }
    }

    /// One transaction: the records of every staged request, then their idempotency
    /// answers (which name the offsets), then the commit. On failure the transaction is
    /// aborted (or the producer dropped).
    async fn transact(
        &mut self,
        staged: &mut [Staged],
        tombstones: &[(TopicName, String)],
        now: i64,
    ) -> Result<(), LogError> {
        let Some(producer) = self.producer.clone() else {
            return Err(LogError::ClusterUnavailable(
                "the producer is not ready".into(),
            ));
        };
        if let Err(err) = producer.begin_transaction() {
            self.lose_producer(&err);
            return Err(unavailable("beginning a transaction", err));
        }
        let result = self.produce(&producer, staged, tombstones, now).await;
        let result = match result {
            Ok(()) => {
                let timeout = self.options.timeout;
                let committing = producer.clone();
                tokio::task::spawn_blocking(move || {
                    ffi::commit_transaction(committing.client().native_ptr(), timeout)
                })
                .await
                .map_err(|err| unavailable("committing a transaction", err))
                .and_then(|committed| {
                    committed.map_err(|err| {
                        if err.fatal {
                            self.producer = None;
                        }
                        unavailable("committing a transaction", err)
                    })
                })
            }
            Err(err) => Err(err),
        };
        if result.is_err() && self.producer.is_some() {
            let timeout = self.options.timeout;
            let aborting = producer.clone();
            let aborted = tokio::task::spawn_blocking(move || aborting.abort_transaction(timeout))
                .await
                .map_err(|err| err.to_string())
                .and_then(|aborted| aborted.map_err(|err| err.to_string()));
            if let Err(err) = aborted {
                tracing::warn!(%err, "a failed transaction could not be aborted; the producer starts over");
                self.producer = None;
            }
        }
        if self.producer.is_none() {
            self.set_unready(Some("the producer is starting over after a failure".into()));
        }
        result
    }

    async fn produce(
        &self,
        producer: &FutureProducer,
        staged: &mut [Staged],
        tombstones: &[(TopicName, String)],
        now: i64,
    ) -> Result<(), LogError> {
        let mut deliveries = Vec::new();
        let mut enqueue_failure = None;
        for (index, staged) in staged.iter().enumerate() {
            if enqueue_failure.is_some() {
                break;
            }
            let kafka_topic = self.names.topic(&staged.topic);
            for record in &staged.request.records {
                let headers =
                    record
                        .headers
                        .iter()
                        .fold(OwnedHeaders::new(), |headers, (name, value)| {
                            headers.insert(Header {
                                key: name.as_str(),
                                value: Some(value.as_bytes()),
                            })
                        });
                let mut future = FutureRecord::to(&kafka_topic)
                    .partition(record.partition.get() as i32)
                    .payload(record.value.get().as_bytes())
                    .headers(headers);
                if let Some(key) = &record.key {
                    future = future.key(key.as_bytes());
                }
                match producer.send_result(future) {
                    Ok(delivery) => deliveries.push((index, delivery)),
                    Err((err, _)) => {
                        enqueue_failure = Some((index, err));
                        break;
                    }
                }
            }
        }
        let timeout = self.options.timeout;
        let mut failure = None;
        if let Some((index, err)) = enqueue_failure {
            failure = Some(blame(&mut staged[index], &err));
        }
        for (index, delivery) in deliveries {
            let outcome = tokio::time::timeout(timeout, delivery).await;
            let staged = &mut staged[index];
            match outcome {
                Ok(Ok(Ok(delivered))) => staged.positions.push(RecordPosition {
                    partition: PartitionId::new(delivered.partition.max(0) as u32),
                    offset: Offset::new(delivered.offset.max(0) as u64),
                }),
                Ok(Ok(Err((err, _)))) => {
                    let err = blame(staged, &err);
                    failure.get_or_insert(err);
                }
                Ok(Err(_)) | Err(_) => {
                    failure.get_or_insert(LogError::ClusterUnavailable(
                        "a record was not delivered within --kafka-timeout-ms".into(),
                    ));
                }
            }
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        // The answers name the offsets just delivered; same transaction, so a key is
        // known exactly when its records are.
        let internal = self.names.idempotency_topic();
        let mut answers = Vec::new();
        for staged in staged.iter() {
            let Some(key) = &staged.request.idempotency else {
                continue;
            };
            let answer = Answer {
                created_ms: now,
                positions: staged.positions.clone(),
                digest: hex::encode(key.digest),
            };
            let value = serde_json::to_vec(&answer).unwrap_or_default();
            let id = key_id(&staged.topic, &key.key);
            let delivery = producer
                .send_result(
                    FutureRecord::to(&internal)
                        .partition(0)
                        .key(&id)
                        .payload(&value),
                )
                .map_err(|(err, _)| unavailable("recording an idempotency key", err))?;
            answers.push(delivery);
        }
        for (topic, key) in tombstones {
            let id = key_id(topic, key);
            let delivery = producer
                .send_result(FutureRecord::<_, [u8]>::to(&internal).partition(0).key(&id))
                .map_err(|(err, _)| unavailable("forgetting an idempotency key", err))?;
            answers.push(delivery);
        }
        for delivery in answers {
            match tokio::time::timeout(timeout, delivery).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err((err, _)))) => {
                    return Err(unavailable("recording an idempotency key", err));
                }
                Ok(Err(_)) | Err(_) => {
                    return Err(LogError::ClusterUnavailable(
                        "an idempotency key was not recorded within --kafka-timeout-ms".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Waits until read_committed readers see what the transaction wrote: a commit returns
    /// before its markers reach the partitions, and a publish is acknowledged only once
    /// its records are readable. One ListOffsets per topic, rarely more.
    async fn await_visible(&self, staged: &[Staged]) {
        let mut ends: BTreeMap<&TopicName, BTreeMap<PartitionId, Offset>> = BTreeMap::new();
        for staged in staged {
            for position in &staged.positions {
                let end = ends
                    .entry(&staged.topic)
                    .or_default()
                    .entry(position.partition)
                    .or_insert(Offset::ZERO);
                *end = (*end).max(position.offset.next());
            }
        }
        let deadline = Instant::now() + self.options.timeout;
        for (topic, ends) in ends {
            let partitions: Vec<PartitionId> = ends.keys().copied().collect();
            loop {
                let visible = match self.cluster.list_offsets(topic, &partitions, LATEST).await {
                    Ok(offsets) => offsets
                        .iter()
                        .zip(ends.values())
                        .all(|(offset, end)| offset.is_some_and(|o| o >= *end)),
                    // Deleted meanwhile, or the cluster is gone: the commit stands.
                    Err(_) => true,
                };
                if visible || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Reads the metadata of topics whose partitions the producer did not know, so their
    /// requests' second try can find them.
    async fn refresh_partitions(&self, staged: &[Staged]) {
        let Some(producer) = self.producer.clone() else {
            return;
        };
        let topics: HashSet<String> = staged
            .iter()
            .filter(|s| s.unknown_partition)
            .map(|s| self.names.topic(&s.topic))
            .collect();
        let timeout = self.options.timeout;
        for topic in topics {
            let producer = producer.clone();
            let _ = tokio::task::spawn_blocking(move || {
                producer.client().fetch_metadata(Some(&topic), timeout)
            })
            .await;
        }
    }

    fn lose_producer(&mut self, err: &KafkaError) {
        tracing::warn!(%err, "the Kafka producer failed; it starts over");
        self.producer = None;
    }
}

/// What a record's failure means for its request: its own error, kept for its answer, or
/// a partition the producer does not know yet (the request is tried again).
fn blame(staged: &mut Staged, err: &KafkaError) -> LogError {
    if err.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownPartition) {
        staged.unknown_partition = true;
        return unavailable(
            "publishing to a partition the producer does not know yet",
            err,
        );
    }
    let err = produce_error(&staged.topic, err);
    staged.failed.get_or_insert(err.clone());
    err
}

/// The internal topic's key of an idempotency key: topic names hold no newline, and
/// idempotency keys are printable ASCII.
fn key_id(topic: &TopicName, key: &str) -> String {
    format!("{topic}\n{key}")
}

fn produce_error(topic: &TopicName, err: &KafkaError) -> LogError {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            LogError::TopicNotFound(topic.clone())
        }
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            LogError::InvalidArgument(format!(
                "the cluster refused a record of topic '{topic}' as too large (its max.message.bytes)"
            ))
        }
        // What a broker answers when its log directory fails, a full disk most often: the
        // SPEC's 507, as on the embedded store; it passes once the broker has room again.
        Some(RDKafkaErrorCode::KafkaStorageError) => LogError::StorageFull(format!(
            "a broker of the Kafka cluster could not store records of topic '{topic}' (KAFKA_STORAGE_ERROR: its log directory failed, usually for lack of space)"
        )),
        _ => unavailable("publishing", err),
    }
}

/// Reads every answer of the internal topic (blocking), keeping those within the window.
fn load(
    consumer: &BaseConsumer<clients::ReaderContext>,
    topic: &str,
    timeout: Duration,
    window_ms: i64,
) -> Result<HashMap<(TopicName, String), Answer>, LogError> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, KafkaOffset::Beginning)
        .and_then(|()| consumer.assign(&list))
        .map_err(|err| unavailable("reading idempotency keys", err))?;
    let cutoff = now_ms().saturating_sub(window_ms);
    let mut keys = HashMap::new();
    let mut last_progress = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let Some(id) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    continue;
                };
                let Some((topic, key)) = id.split_once('\n') else {
                    continue;
                };
                let Ok(topic) = TopicName::parse(topic) else {
                    continue;
                };
                let id = (topic, key.to_owned());
                match message.payload().map(serde_json::from_slice::<Answer>) {
                    None => {
                        keys.remove(&id);
                    }
                    Some(Ok(answer)) if answer.created_ms >= cutoff => {
                        keys.insert(id, answer);
                    }
                    Some(_) => {
                        keys.remove(&id);
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(keys),
            Some(Err(err)) if last_progress.elapsed() > timeout => {
                return Err(unavailable("reading idempotency keys", err));
            }
            Some(Err(_)) => {}
            None if last_progress.elapsed() > timeout => {
                return Err(LogError::ClusterUnavailable(
                    "the idempotency keys could not be read within --kafka-timeout-ms".into(),
                ));
            }
            None => {}
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_out_of_room_is_a_full_disk_and_a_lost_broker_is_unavailable() {
        let topic = TopicName::parse("t").unwrap();
        let full = KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError);
        assert!(matches!(
            produce_error(&topic, &full),
            LogError::StorageFull(_)
        ));
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert!(matches!(
            produce_error(&topic, &down),
            LogError::ClusterUnavailable(_)
        ));
    }
}
