//! The Kafka backend (`--backend kafka`): the same [`EventLog`] and [`OffsetStore`] in
//! front of an Apache Kafka cluster, which brings brokers, partition leaders and followers,
//! in-sync replicas and failover. This gateway keeps no state of its own that matters:
//! records, group offsets and idempotency keys are all in the cluster.
//!
//! # Layout
//! - [`KafkaLog`] (here): the traits, topics (CreateTopics, CreatePartitions,
//!   IncrementalAlterConfigs, DeleteTopics) and group offsets.
//! - `clients`: the librdkafka clients and their settings, one per job.
//! - `cluster`: metadata (partition counts, topic identities) in memory, readiness,
//!   ListOffsets.
//! - `producer`: the transactional producer, one transaction per group of requests, and
//!   the idempotency keys.
//! - `tails`: live records of watched partitions, one tail per partition, waking watchers.
//! - `readers`: the pool of readers for older records.
//! - `decode`: Kafka records as the API shows them (other clients' bytes included).
//! - `names`: API names and their prefixed Kafka twins.
//! - `ffi`: the few librdkafka calls rust-rdkafka does not wrap.
//!
//! # What differs from redb
//! Offsets may skip (transaction markers take offsets); the high watermark is the last
//! stable offset; `size_bytes` is unknown (librdkafka cannot describe log dirs); retention
//! is Kafka's own, by segment; timestamps are the broker's (`LogAppendTime` on topics
//! tidegate creates).

mod clients;
mod cluster;
mod decode;
mod ffi;
mod import;
mod names;
mod producer;
mod readers;
mod replicas;
mod tails;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use cluster::{Cluster, EARLIEST, LATEST, unavailable};
use names::Names;
use producer::Publisher;
use readers::{ReadError, Readers};
use tails::Tails;

pub use import::{ImportedRecord, Importer, PLACEHOLDER_HEADER};
pub use replicas::{Directory, OwnershipChange, Replicas, join as join_replicas};

use crate::metrics::LogMetrics;

use super::{
    AppendOutcome, AppendRequest, ClusterView, CommittedOffset, EventLog, FetchRequest,
    FetchResult, GroupId, LogError, Offset, OffsetStore, PartitionBounds, PartitionId,
    PartitionOffsets, RecordRun, TimestampOffset, TopicConfig, TopicDescription, TopicListing,
    TopicMeta, TopicName, TopicUpdate,
};

/// Readers for older records: concurrent fetches beyond them wait.
const READERS: usize = 4;
/// The fewest records a read for the push cache asks for; it gets fewer when the reader
/// has no more at hand (see `clients::reader`'s queue).
const RUN_RECORDS: usize = 4096;
/// How often the cluster's metadata is read (readiness, partition counts, deletions).
const METADATA_REFRESH: Duration = Duration::from_secs(2);
/// How long a tailed partition's log start is trusted before it is read again.
const LOG_START_TTL: Duration = Duration::from_secs(5);
/// Kafka's "no committed offset" in a group offsets answer.
const NO_OFFSET: i64 = -1001;

/// How to reach the cluster, from the configuration.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    pub bootstrap: String,
    pub properties: Vec<(String, String)>,
    pub replication_factor: Option<i16>,
    /// Bounds every call to the cluster.
    pub timeout: Duration,
    pub prefix: String,
    /// Unique among the replicas, kept across restarts.
    pub replica_id: String,
    pub idempotency_window: Duration,
    /// Values of other clients nested deeper than this are shown as text.
    pub max_value_depth: usize,
}

impl KafkaOptions {
    /// Stable across restarts, so a restarted replica fences its own zombie.
    pub fn transactional_id(&self) -> String {
        format!("{}tidegate-{}", self.prefix, self.replica_id)
    }
}

/// Why the backend could not be set up; one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(String);

/// The gateway's view of one Kafka cluster.
pub struct KafkaLog {
    options: KafkaOptions,
    names: Names,
    admin: Arc<AdminClient<DefaultClientContext>>,
    cluster: Arc<Cluster>,
    publisher: Publisher,
    tails: Arc<Tails>,
    readers: Arc<Readers>,
    /// When each tailed partition's log start was last read, and what it was.
    log_starts: Mutex<HashMap<(TopicName, PartitionId), (Offset, Instant)>>,
    shutdown: CancellationToken,
    refresher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl KafkaLog {
    /// Sets up the clients and starts the background tasks (metadata refresh, the
    /// producer, the tail); call within a Tokio runtime. Never waits for the cluster: one
    /// that is down makes the gateway unready until it answers.
    pub fn open(
        options: KafkaOptions,
        metrics: LogMetrics,
        shutdown: CancellationToken,
    ) -> Result<Arc<KafkaLog>, OpenError> {
        let failed = |err: LogError| OpenError(err.to_string());
        // Its own token below the caller's, so that `shutdown` stops this instance alone.
        let shutdown = shutdown.child_token();
        let names = Names::new(&options.prefix);
        let admin = Arc::new(clients::admin(&options).map_err(failed)?);
        let cluster = Arc::new(Cluster::new(
            Arc::new(clients::metadata(&options).map_err(failed)?),
            names.clone(),
            options.timeout,
        ));
        let tails = Tails::start(
            clients::tail(&options).map_err(failed)?,
            options.max_value_depth,
        )
        .map_err(OpenError)?;
        let readers = (0..READERS)
            .map(|_| clients::reader(&options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let readers = Arc::new(Readers::new(
            readers,
            options.timeout,
            options.max_value_depth,
        ));
        let publisher = Publisher::start(
            options.clone(),
            admin.clone(),
            cluster.clone(),
            metrics,
            shutdown.clone(),
        );
        let log = Arc::new(KafkaLog {
            options,
            names,
            admin,
            cluster,
            publisher,
            tails,
            readers,
            log_starts: Mutex::default(),
            shutdown,
            refresher: Mutex::new(None),
        });
        let refresher = tokio::spawn(log.clone().refresh_metadata());
        *lock(&log.refresher) = Some(refresher);
        Ok(log)
    }

    /// Reads the idempotency answers again (another replica may have given some since):
    /// before this replica decides keys it did not decide until now.
    pub async fn reload_idempotency_keys(&self) -> Result<(), LogError> {
        self.publisher.reload_keys().await
    }

    /// Reads the cluster's metadata every few seconds until shutdown: readiness follows
    /// it, and topics deleted elsewhere close their tails.
    async fn refresh_metadata(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(METADATA_REFRESH);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            match self.cluster.refresh().await {
                Ok(gone) => {
                    for topic in gone {
                        let kafka_topic = self.names.topic(&topic);
                        self.tails.forget_topic(&topic, &kafka_topic);
                        self.readers.forget_topic(&kafka_topic);
                    }
                }
                Err(err) => {
                    tracing::debug!(%err, "the Kafka cluster did not answer a metadata request")
                }
            }
        }
    }

    fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.options.timeout))
            .operation_timeout(Some(self.options.timeout))
    }

    /// Group offsets go to the group's coordinator, and librdkafka 2.12 aborts the process
    /// when such an admin request meets a dropped connection (an assertion on a freed
    /// `eonce`; confluentinc/librdkafka#3663, fix proposed in #5397): one sent while the
    /// cluster was down brought the gateway down when the broker returned. So none is
    /// sent while the last metadata request went unanswered; those answer 503 at once.
    fn coordinator_ready(&self) -> Result<(), LogError> {
        self.cluster.readiness()
    }

    /// Runs a blocking call of the admin client on a blocking thread.
    async fn native<T: Send + 'static>(
        &self,
        call: impl FnOnce(*mut rdkafka::bindings::rd_kafka_t) -> T + Send + 'static,
    ) -> Result<T, LogError> {
        let admin = self.admin.clone();
        tokio::task::spawn_blocking(move || call(admin.inner().native_ptr()))
            .await
            .map_err(|err| unavailable("an admin call failed", err))
    }

    /// Retention settings of topics, by their Kafka names, in one DescribeConfigs.
    async fn configs(
        &self,
        topics: &[(TopicName, TopicMeta)],
    ) -> Result<Vec<TopicConfig>, LogError> {
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let kafka_names: Vec<String> = topics
            .iter()
            .map(|(name, _)| self.names.topic(name))
            .collect();
        let resources: Vec<ResourceSpecifier<'_>> = kafka_names
            .iter()
            .map(|name| ResourceSpecifier::Topic(name))
            .collect();
        let answers = self
            .admin
            .describe_configs(&resources, &self.admin_options())
            .await
            .map_err(|err| unavailable("reading topic configurations", err))?;
        topics
            .iter()
            .zip(answers)
            .map(|((name, meta), answer)| {
                let resource = answer.map_err(|code| match code {
                    RDKafkaErrorCode::UnknownTopicOrPartition => {
                        LogError::TopicNotFound(name.clone())
                    }
                    code => unavailable("reading a topic's configuration", code),
                })?;
                let number = |key: &str, default: i64| {
                    resource
                        .get(key)
                        .and_then(|entry| entry.value.as_deref())
                        .and_then(|value| value.parse::<i64>().ok())
                        .unwrap_or(default)
                };
                Ok(TopicConfig {
                    partitions: meta.partitions,
                    retention_ms: number("retention.ms", -1),
                    retention_bytes: number("retention.bytes", -1),
                })
            })
            .collect()
    }

    /// The log start of a tailed partition, read again when older than [`LOG_START_TTL`].
    async fn tailed_log_start(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<Offset, LogError> {
        let key = (topic.clone(), partition);
        if let Some((start, read)) = lock(&self.log_starts).get(&key)
            && read.elapsed() < LOG_START_TTL
        {
            return Ok(*start);
        }
        let start = self
            .cluster
            .list_offsets(topic, &[partition], EARLIEST)
            .await?
            .first()
            .copied()
            .flatten()
            .unwrap_or(Offset::ZERO);
        lock(&self.log_starts).insert(key, (start, Instant::now()));
        Ok(start)
    }

    /// Checks a partition exists before a call that would wait on it.
    async fn check_partition(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<(), LogError> {
        let meta = self.cluster.meta(topic).await?;
        check_partition(topic, &meta, partition)
    }

    /// Bounds read from the cluster now: two ListOffsets.
    async fn fresh_bounds(
        &self,
        topic: &TopicName,
        partitions: &[PartitionId],
    ) -> Result<Vec<PartitionBounds>, LogError> {
        let (starts, ends) = tokio::try_join!(
            self.cluster.list_offsets(topic, partitions, EARLIEST),
            self.cluster.list_offsets(topic, partitions, LATEST),
        )?;
        Ok(starts
            .into_iter()
            .zip(ends)
            .map(|(start, end)| {
                let start = start.unwrap_or(Offset::ZERO);
                PartitionBounds {
                    log_start_offset: start,
                    high_watermark: end.unwrap_or(start).max(start),
                }
            })
            .collect())
    }

    /// Records from `from` on, from a tail's memory when it reaches back that far, else
    /// from a reader; with the bounds the read saw.
    async fn read(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        from: Option<Offset>,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<(RecordRun, PartitionBounds), LogError> {
        self.check_partition(topic, partition).await?;
        let tailed = self.tails.get(topic, partition);
        let from = match from {
            Some(from) => from,
            None => self.bounds_of(topic, partition).await?.log_start_offset,
        };
        if let Some(tailed) = &tailed
            && let Some(runs) = tailed.runs_from(from, max_records)
        {
            let log_start = self.tailed_log_start(topic, partition).await?;
            let bounds = PartitionBounds {
                log_start_offset: log_start,
                high_watermark: tailed.end(),
            };
            if from < log_start {
                return Err(bounds.out_of_range(from));
            }
            return Ok((
                joined(from, runs, max_records, max_bytes, tailed.end()),
                bounds,
            ));
        }
        // Beyond what the tail saw (or no tail): the cluster's end decides.
        let known_end = tailed.as_ref().map(|t| t.end());
        let end = match known_end {
            Some(end) if from <= end => None,
            _ => Some(self.fresh_bounds(topic, &[partition]).await?[0]),
        };
        if let Some(bounds) = end {
            if !bounds.contains(from) {
                return Err(bounds.out_of_range(from));
            }
            if from == bounds.high_watermark {
                let empty = RecordRun {
                    start: from,
                    end: from,
                    records: Vec::new(),
                };
                return Ok((empty, bounds));
            }
        }
        let kafka_topic = self.names.topic(topic);
        let read = self
            .readers
            .read(
                &kafka_topic,
                partition.get() as i32,
                from,
                max_records,
                max_bytes,
            )
            .await;
        let read = match read {
            Ok(read) => read,
            Err(ReadError::OutOfRange) => {
                let bounds = self.fresh_bounds(topic, &[partition]).await?[0];
                return Err(bounds.out_of_range(from));
            }
            Err(ReadError::Failed(err)) => return Err(err),
        };
        let high_watermark = match (read.at_end, tailed.map(|t| t.end())) {
            (true, _) => read.next,
            (false, Some(end)) if end >= read.next => end,
            (false, _) => self
                .cluster
                .list_offsets(topic, &[partition], LATEST)
                .await?
                .first()
                .copied()
                .flatten()
                .unwrap_or(read.next)
                .max(read.next),
        };
        let bounds = PartitionBounds {
            log_start_offset: read.log_start.unwrap_or(from).min(from),
            high_watermark,
        };
        let run = RecordRun {
            start: from,
            end: read.next,
            records: read.records,
        };
        Ok((run, bounds))
    }

    async fn bounds_of(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<PartitionBounds, LogError> {
        Ok(self.bounds(topic, &[partition]).await?[0])
    }
}

/// One run from the tail's runs, from `from` on, within the limits (at least one record);
/// it ends where the reader goes on.
fn joined(
    from: Offset,
    runs: Vec<RecordRun>,
    max_records: usize,
    max_bytes: usize,
    end: Offset,
) -> RecordRun {
    let mut records = Vec::new();
    let mut bytes = 0;
    let mut next = runs.last().map_or(from, |run| run.end).min(end).max(from);
    'runs: for run in runs {
        for record in run.records.into_iter().filter(|r| r.offset >= from) {
            let size = record.payload_len();
            if records.len() >= max_records || (!records.is_empty() && bytes + size > max_bytes) {
                next = record.offset;
                break 'runs;
            }
            bytes += size;
            records.push(record);
        }
    }
    RecordRun {
        start: from,
        end: next,
        records,
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn create_topic(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, LogError> {
        config.validate()?;
        let kafka_name = self.names.topic(&name);
        if kafka_name.len() > super::MAX_TOPIC_NAME_LEN {
            return Err(LogError::InvalidTopicName {
                name: name.to_string(),
                reason: "too long with --kafka-topic-prefix in front (249 characters in all)",
            });
        }
        let replication = match self.options.replication_factor {
            Some(factor) => TopicReplication::Fixed(i32::from(factor)),
            // Kafka 2.4+ takes -1 as "the broker's default".
            None => TopicReplication::Fixed(-1),
        };
        let (retention_ms, retention_bytes) = (
            config.retention_ms.to_string(),
            config.retention_bytes.to_string(),
        );
        let topic = NewTopic::new(&kafka_name, config.partitions as i32, replication)
            .set("retention.ms", &retention_ms)
            .set("retention.bytes", &retention_bytes)
            .set("message.timestamp.type", "LogAppendTime");
        let results = self
            .admin
            .create_topics([&topic], &self.admin_options())
            .await
            .map_err(|err| unavailable("creating a topic", err))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    return Err(LogError::TopicExists(name));
                }
                Err((
                    _,
                    code @ (RDKafkaErrorCode::InvalidReplicationFactor
                    | RDKafkaErrorCode::InvalidPartitions
                    | RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::PolicyViolation
                    | RDKafkaErrorCode::InvalidTopic),
                )) => {
                    return Err(LogError::InvalidArgument(format!(
                        "the cluster refused the topic: {code}"
                    )));
                }
                Err((_, code)) => return Err(unavailable("creating a topic", code)),
            }
        }
        let (_, replicas) = self.cluster.wait_for(&name, config.partitions).await?;
        Ok(TopicDescription {
            name,
            config,
            partitions: (0u32..)
                .zip(replicas)
                .map(|(p, replicas)| PartitionOffsets {
                    partition: PartitionId::new(p),
                    bounds: PartitionBounds {
                        log_start_offset: Offset::ZERO,
                        high_watermark: Offset::ZERO,
                    },
                    size_bytes: None,
                    replicas,
                })
                .collect(),
        })
    }

    async fn list_topics(&self) -> Result<Vec<TopicListing>, LogError> {
        let topics = self.cluster.all().await?;
        let configs = self.configs(&topics).await?;
        Ok(topics
            .into_iter()
            .zip(configs)
            .map(|((name, _), config)| TopicListing { name, config })
            .collect())
    }

    async fn describe_topic(&self, name: &TopicName) -> Result<TopicDescription, LogError> {
        let (meta, replicas) = self.cluster.fetch_topic_replicas(name).await?;
        let config = self.configs(&[(name.clone(), meta)]).await?.remove(0);
        let partitions: Vec<PartitionId> = (0..meta.partitions).map(PartitionId::new).collect();
        let bounds = self.fresh_bounds(name, &partitions).await?;
        Ok(TopicDescription {
            name: name.clone(),
            config,
            partitions: partitions
                .into_iter()
                .zip(bounds)
                .zip(replicas)
                .map(|((partition, bounds), replicas)| PartitionOffsets {
                    partition,
                    bounds,
                    size_bytes: None,
                    replicas,
                })
                .collect(),
        })
    }

    async fn update_topic(
        &self,
        name: &TopicName,
        update: TopicUpdate,
    ) -> Result<TopicDescription, LogError> {
        let current = self.describe_topic(name).await?.config;
        let config = TopicConfig {
            partitions: update.partitions.unwrap_or(current.partitions),
            retention_ms: update.retention_ms.unwrap_or(current.retention_ms),
            retention_bytes: update.retention_bytes.unwrap_or(current.retention_bytes),
        };
        config.validate()?;
        if config.partitions < current.partitions {
            return Err(LogError::PartitionsCannotShrink {
                current: current.partitions,
                requested: config.partitions,
            });
        }
        let kafka_name = self.names.topic(name);
        if config.partitions > current.partitions {
            let more = NewPartitions::new(&kafka_name, config.partitions as usize);
            let results = self
                .admin
                .create_partitions([&more], &self.admin_options())
                .await
                .map_err(|err| unavailable("adding partitions", err))?;
            for result in results {
                if let Err((_, code)) = result {
                    return Err(unavailable("adding partitions", code));
                }
            }
            self.cluster.wait_for(name, config.partitions).await?;
        }
        let mut changes = Vec::new();
        if config.retention_ms != current.retention_ms {
            changes.push(("retention.ms", config.retention_ms.to_string()));
        }
        if config.retention_bytes != current.retention_bytes {
            changes.push(("retention.bytes", config.retention_bytes.to_string()));
        }
        if !changes.is_empty() {
            let timeout = self.options.timeout;
            self.native(move |rk| ffi::set_topic_configs(rk, &kafka_name, &changes, timeout))
                .await?
                .map_err(|err| unavailable("changing a topic's retention", err))?;
        }
        // Brokers apply a change a moment after its answer: describe what was asked for.
        let deadline = Instant::now() + self.options.timeout;
        loop {
            let described = self.describe_topic(name).await?;
            if described.config == config || Instant::now() > deadline {
                return Ok(described);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn delete_topic(&self, name: &TopicName) -> Result<(), LogError> {
        let kafka_name = self.names.topic(name);
        let results = self
            .admin
            .delete_topics(&[&kafka_name], &self.admin_options())
            .await
            .map_err(|err| unavailable("deleting a topic", err))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    self.cluster.forget(name);
                    return Err(LogError::TopicNotFound(name.clone()));
                }
                Err((_, code)) => return Err(unavailable("deleting a topic", code)),
            }
        }
        self.cluster.forget(name);
        self.tails.forget_topic(name, &kafka_name);
        self.readers.forget_topic(&kafka_name);
        let gone = self.cluster.wait_gone(name).await;
        lock(&self.log_starts).retain(|(topic, _), _| topic != name);
        self.publisher.forget_keys(name).await;
        gone
    }

    async fn topic_meta(&self, name: &TopicName) -> Result<TopicMeta, LogError> {
        self.cluster.meta(name).await
    }

    async fn bounds(
        &self,
        topic: &TopicName,
        partitions: &[PartitionId],
    ) -> Result<Vec<PartitionBounds>, LogError> {
        let meta = self.cluster.meta(topic).await?;
        if let Some(missing) = partitions.iter().find(|p| p.get() >= meta.partitions) {
            return Err(LogError::PartitionNotFound {
                topic: topic.clone(),
                partition: *missing,
            });
        }
        let tailed: Vec<_> = partitions
            .iter()
            .map(|p| self.tails.get(topic, *p))
            .collect();
        if tailed.iter().all(Option::is_some) {
            let mut bounds = Vec::with_capacity(partitions.len());
            for (partition, tailed) in partitions.iter().zip(tailed.into_iter().flatten()) {
                bounds.push(PartitionBounds {
                    log_start_offset: self.tailed_log_start(topic, *partition).await?,
                    high_watermark: tailed.end(),
                });
            }
            return Ok(bounds);
        }
        self.fresh_bounds(topic, partitions).await
    }

    async fn append(
        &self,
        topic: &TopicName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, LogError> {
        let meta = self.cluster.meta(topic).await?;
        for record in &request.records {
            check_partition(topic, &meta, record.partition)?;
        }
        self.publisher.append(topic, request).await
    }

    async fn fetch(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        request: FetchRequest,
    ) -> Result<FetchResult, LogError> {
        let (run, bounds) = self
            .read(
                topic,
                partition,
                request.offset,
                request.max_records,
                request.max_bytes,
            )
            .await?;
        Ok(FetchResult {
            next_offset: run.end,
            records: run.records,
            bounds,
        })
    }

    async fn read_runs(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        from: Offset,
        min_records: usize,
    ) -> Result<Vec<RecordRun>, LogError> {
        if let Some(tailed) = self.tails.get(topic, partition)
            && let Some(runs) = tailed.runs_from(from, min_records)
            && from >= self.tailed_log_start(topic, partition).await?
        {
            return Ok(runs);
        }
        // All a reader has at hand, not only what was asked for: the next subscriber's
        // page is then in the push cache, not in another read.
        let (run, _) = self
            .read(
                topic,
                partition,
                Some(from),
                min_records.max(RUN_RECORDS),
                usize::MAX,
            )
            .await?;
        Ok(if run.end > run.start {
            vec![run]
        } else {
            Vec::new()
        })
    }

    async fn offset_for_timestamp(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        timestamp: i64,
    ) -> Result<TimestampOffset, LogError> {
        self.check_partition(topic, partition).await?;
        let found = self
            .cluster
            .list_offsets(topic, &[partition], timestamp.max(0))
            .await?
            .first()
            .copied()
            .flatten();
        let end = self.bounds_of(topic, partition).await?.high_watermark;
        let Some(offset) = found.filter(|offset| *offset < end) else {
            return Ok(TimestampOffset {
                partition,
                offset: end,
                timestamp: None,
            });
        };
        let (run, _) = self.read(topic, partition, Some(offset), 1, 1).await?;
        Ok(match run.records.first() {
            Some(record) => TimestampOffset {
                partition,
                offset: record.offset,
                timestamp: Some(record.timestamp),
            },
            None => TimestampOffset {
                partition,
                offset: end,
                timestamp: None,
            },
        })
    }

    async fn watch_high_watermark(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<watch::Receiver<Offset>, LogError> {
        self.check_partition(topic, partition).await?;
        if let Some(watching) = self.tails.subscribe(topic, partition) {
            return Ok(watching);
        }
        let end = self
            .cluster
            .list_offsets(topic, &[partition], LATEST)
            .await?
            .first()
            .copied()
            .flatten()
            .unwrap_or(Offset::ZERO);
        Ok(self
            .tails
            .watch(topic, self.names.topic(topic), partition, end))
    }

    async fn cluster(&self) -> Result<ClusterView, LogError> {
        if let Some(view) = self.cluster.cached_view() {
            return Ok(view);
        }
        let timeout = self.options.timeout;
        let controller = self
            .native(move |rk| ffi::describe_cluster_controller(rk, timeout))
            .await?
            .map_err(|err| unavailable("describing the cluster", err))?;
        self.cluster.read_view(controller).await
    }

    fn readiness(&self) -> Result<(), LogError> {
        if self.shutdown.is_cancelled() {
            return Err(LogError::ShuttingDown);
        }
        self.cluster.readiness()?;
        self.publisher.readiness()
    }

    async fn shutdown(&self) {
        self.shutdown.cancel();
        let refresher = lock(&self.refresher).take();
        if let Some(refresher) = refresher {
            let _ = refresher.await;
        }
        self.publisher.shutdown().await;
        self.tails.shutdown().await;
    }
}

#[async_trait]
impl OffsetStore for KafkaLog {
    async fn commit_offsets(
        &self,
        group: &GroupId,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), LogError> {
        let mut list = TopicPartitionList::with_capacity(offsets.len());
        for committed in &offsets {
            list.add_partition_offset(
                &self.names.topic(&committed.topic),
                committed.partition.get() as i32,
                KafkaOffset::Offset(committed.offset.get() as i64),
            )
            .map_err(|err| unavailable("committing offsets", err))?;
        }
        self.coordinator_ready()?;
        let (kafka_group, timeout) = (self.names.group(group), self.options.timeout);
        let answer = self
            .native(move |rk| ffi::alter_group_offsets(rk, &kafka_group, &list, timeout))
            .await?
            .map_err(|err| group_error(group, "committing offsets", &err))?;
        for (_, _, _, err) in answer {
            if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let code: RDKafkaErrorCode = err.into();
                return Err(group_code_error(group, "committing offsets", code));
            }
        }
        Ok(())
    }

    async fn committed_offsets(&self, group: &GroupId) -> Result<Vec<CommittedOffset>, LogError> {
        self.coordinator_ready()?;
        let (kafka_group, timeout) = (self.names.group(group), self.options.timeout);
        let answer = self
            .native(move |rk| ffi::list_group_offsets(rk, &kafka_group, timeout))
            .await?
            .map_err(|err| group_error(group, "reading committed offsets", &err))?;
        let mut committed: Vec<CommittedOffset> = answer
            .into_iter()
            .filter(|(_, _, offset, _)| *offset >= 0 && *offset != NO_OFFSET)
            .filter_map(|(topic, partition, offset, _)| {
                Some(CommittedOffset {
                    topic: self.names.api_topic(&topic)?,
                    partition: PartitionId::new(u32::try_from(partition).ok()?),
                    offset: Offset::new(offset as u64),
                    committed_at_ms: 0,
                })
            })
            .collect();
        committed.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(committed)
    }

    async fn offset_groups(&self) -> Result<Vec<GroupId>, LogError> {
        let timeout = self.options.timeout;
        let listed = self
            .cluster
            .call(move |client| {
                client.fetch_group_list(None, timeout).map(|list| {
                    list.groups()
                        .iter()
                        .map(|group| group.name().to_owned())
                        .collect::<Vec<_>>()
                })
            })
            .await?
            .map_err(|err| unavailable("listing consumer groups", err))?;
        let mut groups: Vec<GroupId> = listed
            .iter()
            .filter(|name| !name.contains("__tidegate-"))
            .filter_map(|name| self.names.api_group(name))
            .collect();
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    async fn delete_offsets(&self, group: &GroupId) -> Result<bool, LogError> {
        self.coordinator_ready()?;
        let kafka_group = self.names.group(group);
        let results = self
            .admin
            .delete_groups(&[&kafka_group], &self.admin_options())
            .await
            .map_err(|err| unavailable("deleting a group", err))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::GroupIdNotFound)) => return Ok(false),
                Err((_, code)) => return Err(group_code_error(group, "deleting a group", code)),
            }
        }
        Ok(true)
    }
}

fn group_error(group: &GroupId, what: &str, err: &ffi::NativeError) -> LogError {
    in_use(group, err.code).unwrap_or_else(|| unavailable(what, err))
}

fn group_code_error(group: &GroupId, what: &str, code: RDKafkaErrorCode) -> LogError {
    in_use(group, code).unwrap_or_else(|| unavailable(what, code))
}

/// Whether a refusal of the group coordinator says native Kafka consumers hold the group
/// (commits and deletions are refused while they are members).
fn in_use(group: &GroupId, code: RDKafkaErrorCode) -> Option<LogError> {
    matches!(
        code,
        RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::NonEmptyGroup
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::RebalanceInProgress
    )
    .then(|| LogError::GroupInUseByKafkaConsumers(group.clone()))
}

fn check_partition(
    topic: &TopicName,
    meta: &TopicMeta,
    partition: PartitionId,
) -> Result<(), LogError> {
    if partition.get() >= meta.partitions {
        return Err(LogError::PartitionNotFound {
            topic: topic.clone(),
            partition,
        });
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rdkafka::admin::AdminOptions;
    use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

    use super::{KafkaLog, KafkaOptions};
    use crate::log::conformance::{self, Backend};
    use crate::log::{EventLog, Offset, PartitionId, TopicName};

    /// The broker of `TIDEGATE_TEST_KAFKA_BOOTSTRAP`; without one the test is skipped,
    /// unless `TIDEGATE_REQUIRE_KAFKA=1` (CI) makes that a failure.
    fn bootstrap() -> Option<String> {
        let bootstrap = std::env::var("TIDEGATE_TEST_KAFKA_BOOTSTRAP").ok();
        if bootstrap.is_none() {
            assert!(
                std::env::var("TIDEGATE_REQUIRE_KAFKA").as_deref() != Ok("1"),
                "TIDEGATE_REQUIRE_KAFKA=1 needs TIDEGATE_TEST_KAFKA_BOOTSTRAP"
            );
            eprintln!("skipped: no TIDEGATE_TEST_KAFKA_BOOTSTRAP (scripts/test sets it)");
        }
        bootstrap
    }

    fn open(options: &KafkaOptions) -> Arc<KafkaLog> {
        KafkaLog::open(
            options.clone(),
            conformance::log_metrics(),
            Default::default(),
        )
        .expect("open")
    }

    #[tokio::test]
    async fn conforms() {
        let Some(bootstrap) = bootstrap() else { return };
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis()
        );
        let options = KafkaOptions {
            bootstrap,
            properties: Vec::new(),
            replication_factor: None,
            timeout: Duration::from_secs(10),
            prefix: format!("conformance-{unique}."),
            replica_id: "conformance".into(),
            idempotency_window: Duration::from_secs(3600),
            max_value_depth: 64,
        };
        let kafka = open(&options);
        let trimmed = kafka.clone();
        let backend = Backend {
            log: kafka.clone(),
            offsets: kafka.clone(),
            // DeleteRecords, as an operator's tool would do it.
            advance_log_start: Box::new(
                move |topic: TopicName, partition: PartitionId, to: Offset| {
                    let kafka = trimmed.clone();
                    Box::pin(async move {
                        let mut list = TopicPartitionList::new();
                        list.add_partition_offset(
                            &kafka.names.topic(&topic),
                            partition.get() as i32,
                            KafkaOffset::Offset(to.get() as i64),
                        )
                        .expect("partition offset");
                        kafka
                            .admin
                            .delete_records(&list, &AdminOptions::new())
                            .await
                            .expect("delete records");
                    })
                },
            ),
            // The same replica id: the twin's producer takes the transactional id over.
            open_twin: Box::new(move || {
                let twin: Arc<dyn EventLog> = open(&options);
                Box::pin(async move { Ok(twin) })
            }),
            prefix: String::new(),
        };
        conformance::run(&backend).await;
        kafka.shutdown().await;
    }
}
