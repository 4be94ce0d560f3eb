//! The cluster as this gateway knows it: topics of this deployment with their partition
//! counts and identities (from metadata, refreshed every few seconds and after every change
//! made here), whether the cluster answers, and ListOffsets. Hot paths read the topics from
//! memory; only a topic never seen costs a round trip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::{Metadata, MetadataTopic};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use super::names::Names;
use crate::log::{
    ClusterNode, ClusterView, LogError, Offset, PartitionId, PartitionReplicas, TopicId, TopicMeta,
    TopicName,
};

/// ListOffsets' stand-ins for "the end" (for a read_committed client, the last stable
/// offset) and "the start".
pub(super) const LATEST: i64 = -1;
pub(super) const EARLIEST: i64 = -2;

/// What a broker takes per partition to set up a new one: about 5 ms (1024 partitions in
/// 5 s) on an idle broker, twice that on a busy one.
const PARTITION_SETUP: Duration = Duration::from_millis(10);

/// How long a [`Cluster::view`] is served from memory.
const VIEW_TTL: Duration = Duration::from_secs(1);

/// The topics of this deployment the cluster has, and whether it answers.
pub(super) struct Cluster {
    client: Arc<BaseConsumer>,
    names: Names,
    timeout: Duration,
    topics: RwLock<HashMap<TopicName, TopicMeta>>,
    next_id: AtomicU64,
    /// The last [`Cluster::view`] and when it was read.
    view: Mutex<Option<(Instant, ClusterView)>>,
    /// Why the last metadata request failed; `None` while the cluster answers.
    unreachable: Mutex<Option<String>>,
}

/// A failure to reach the cluster, in the words the API reports.
pub(super) fn unavailable(what: &str, err: impl std::fmt::Display) -> LogError {
    LogError::ClusterUnavailable(format!("{what}: {err}"))
}

impl Cluster {
    pub fn new(client: Arc<BaseConsumer>, names: Names, timeout: Duration) -> Cluster {
        Cluster {
            client,
            names,
            timeout,
            topics: RwLock::default(),
            next_id: AtomicU64::new(1),
            view: Mutex::default(),
            unreachable: Mutex::new(Some("the cluster has not answered yet".into())),
        }
    }

    /// Runs a blocking librdkafka call of the metadata client on a blocking thread.
    pub async fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&BaseConsumer) -> T + Send + 'static,
    ) -> Result<T, LogError> {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || call(&client))
            .await
            .map_err(|err| unavailable("a metadata call failed", err))
    }

    /// `Ok` while the last metadata request was answered.
    pub fn readiness(&self) -> Result<(), LogError> {
        match &*lock(&self.unreachable) {
            None => Ok(()),
            Some(reason) => Err(LogError::ClusterUnavailable(reason.clone())),
        }
    }

    fn answered(&self, result: Result<(), String>) {
        *lock(&self.unreachable) = result.err();
    }

    fn fetch_metadata(
        &self,
        topic: Option<String>,
    ) -> impl Future<Output = Result<Metadata, LogError>> + '_ {
        let timeout = self.timeout;
        async move {
            let metadata = self
                .call(move |client| client.fetch_metadata(topic.as_deref(), timeout))
                .await?;
            match metadata {
                Ok(metadata) => {
                    self.answered(Ok(()));
                    Ok(metadata)
                }
                Err(err) => {
                    self.answered(Err(format!("metadata request failed: {err}")));
                    Err(unavailable("reading the cluster's metadata", err))
                }
            }
        }
    }

    /// Reads every topic from the cluster; returns the topics of this deployment that are
    /// gone since the last refresh (deleted by someone else).
    pub async fn refresh(&self) -> Result<Vec<TopicName>, LogError> {
        let metadata = self.fetch_metadata(None).await?;
        let mut seen = HashMap::new();
        for topic in metadata.topics() {
            if topic.error().is_some() {
                continue;
            }
            if let Some(name) = self.names.api_topic(topic.name()) {
                seen.insert(name, topic.partitions().len() as u32);
            }
        }
        let mut topics = write(&self.topics);
        let gone: Vec<TopicName> = topics
            .keys()
            .filter(|name| !seen.contains_key(*name))
            .cloned()
            .collect();
        for name in &gone {
            topics.remove(name);
        }
        for (name, partitions) in seen {
            let id = topics.get(&name).map(|meta| meta.id);
            let id = id.unwrap_or_else(|| self.new_id());
            topics.insert(name, TopicMeta { id, partitions });
        }
        Ok(gone)
    }

    fn new_id(&self) -> TopicId {
        TopicId::new(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Every topic of this deployment, fresh from the cluster, sorted by name.
    pub async fn all(&self) -> Result<Vec<(TopicName, TopicMeta)>, LogError> {
        self.refresh().await?;
        let mut topics: Vec<_> = read(&self.topics)
            .iter()
            .map(|(name, meta)| (name.clone(), *meta))
            .collect();
        topics.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(topics)
    }

    /// The topic's identity and partition count: from memory, or one metadata request
    /// for a topic not seen yet.
    pub async fn meta(&self, topic: &TopicName) -> Result<TopicMeta, LogError> {
        if let Some(meta) = read(&self.topics).get(topic) {
            return Ok(*meta);
        }
        self.fetch_topic(topic).await
    }

    /// Reads one topic from the cluster into memory.
    pub async fn fetch_topic(&self, topic: &TopicName) -> Result<TopicMeta, LogError> {
        self.fetch_topic_replicas(topic).await.map(|(meta, _)| meta)
    }

    /// [`Cluster::fetch_topic`], with each partition's leader, replicas and ISR.
    pub async fn fetch_topic_replicas(
        &self,
        topic: &TopicName,
    ) -> Result<(TopicMeta, Vec<PartitionReplicas>), LogError> {
        let metadata = self.fetch_metadata(Some(self.names.topic(topic))).await?;
        let found = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty());
        let Some(found) = found else {
            write(&self.topics).remove(topic);
            return Err(LogError::TopicNotFound(topic.clone()));
        };
        let partitions = found.partitions().len() as u32;
        let replicas = replicas_of(found);
        let mut topics = write(&self.topics);
        let id = topics.get(topic).map(|meta| meta.id);
        let meta = TopicMeta {
            id: id.unwrap_or_else(|| self.new_id()),
            partitions,
        };
        topics.insert(topic.clone(), meta);
        Ok((meta, replicas))
    }

    /// The last [`Cluster::read_view`] while younger than `VIEW_TTL`: a console page
    /// refreshing every few seconds costs the cluster no more than one view a second.
    pub fn cached_view(&self) -> Option<ClusterView> {
        match &*lock(&self.view) {
            Some((at, view)) if at.elapsed() < VIEW_TTL => Some(view.clone()),
            _ => None,
        }
    }

    /// The brokers and every partition of this deployment's topics, from one metadata
    /// request, with the `controller` DescribeCluster named.
    pub async fn read_view(&self, controller: Option<i32>) -> Result<ClusterView, LogError> {
        let metadata = self.fetch_metadata(None).await?;
        let mut nodes: Vec<ClusterNode> = metadata
            .brokers()
            .iter()
            .map(|broker| ClusterNode {
                id: broker.id(),
                address: Some(format!("{}:{}", broker.host(), broker.port())),
            })
            .collect();
        nodes.sort_by_key(|node| node.id);
        let mut partitions = Vec::new();
        for topic in metadata.topics() {
            if topic.error().is_some() {
                continue;
            }
            if let Some(name) = self.names.api_topic(topic.name()) {
                for (p, replicas) in (0u32..).zip(replicas_of(topic)) {
                    partitions.push((name.clone(), PartitionId::new(p), replicas));
                }
            }
        }
        partitions.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let view = ClusterView {
            nodes,
            controller,
            partitions,
        };
        *lock(&self.view) = Some((Instant::now(), view.clone()));
        Ok(view)
    }

    /// Waits until the cluster's metadata shows the topic with at least `partitions`
    /// partitions, each with a leader (metadata can lag a CreateTopics or CreatePartitions
    /// answer by a few ms, leaders a little more). A broker sets partitions up one by one,
    /// so a wide topic gets `PARTITION_SETUP` per partition longer than `--kafka-timeout-ms`.
    pub async fn wait_for(
        &self,
        topic: &TopicName,
        partitions: u32,
    ) -> Result<(TopicMeta, Vec<PartitionReplicas>), LogError> {
        let deadline = Instant::now() + self.timeout + PARTITION_SETUP * partitions;
        loop {
            let seen = match self.fetch_topic_replicas(topic).await {
                Ok((meta, replicas)) => {
                    let led = replicas.iter().all(|p| p.leader.is_some());
                    if led && meta.partitions >= partitions {
                        return Ok((meta, replicas));
                    }
                    format!(
                        "{} partitions, {}",
                        meta.partitions,
                        if led {
                            "all led"
                        } else {
                            "some without a leader"
                        }
                    )
                }
                Err(LogError::TopicNotFound(_)) => "no such topic".to_owned(),
                Err(err) => return Err(err),
            };
            if Instant::now() >= deadline {
                return Err(LogError::ClusterUnavailable(format!(
                    "topic '{topic}' did not show {partitions} partitions with leaders in the cluster's metadata in time (last seen: {seen})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the cluster's metadata no longer shows a deleted topic (brokers learn
    /// of a deletion a moment after its answer), then forgets it.
    pub async fn wait_gone(&self, topic: &TopicName) -> Result<(), LogError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.fetch_topic(topic).await {
                Err(LogError::TopicNotFound(_)) => return Ok(()),
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(_) => {
                    self.forget(topic);
                    return Err(LogError::ClusterUnavailable(format!(
                        "topic '{topic}' still showed in the cluster's metadata after its deletion"
                    )));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Forgets a topic deleted here, so one created again gets a new identity.
    pub fn forget(&self, topic: &TopicName) {
        write(&self.topics).remove(topic);
    }

    /// ListOffsets for `partitions` of `topic`, each at `spec` ([`LATEST`], [`EARLIEST`]
    /// or a timestamp): one request per partition leader. `None` for a timestamp later
    /// than every record.
    pub async fn list_offsets(
        &self,
        topic: &TopicName,
        partitions: &[PartitionId],
        spec: i64,
    ) -> Result<Vec<Option<Offset>>, LogError> {
        let kafka_topic = self.names.topic(topic);
        let at = match spec {
            LATEST => KafkaOffset::End,
            EARLIEST => KafkaOffset::Beginning,
            timestamp => KafkaOffset::Offset(timestamp),
        };
        let deadline = Instant::now() + self.timeout;
        loop {
            let mut request = TopicPartitionList::with_capacity(partitions.len());
            for partition in partitions {
                request
                    .add_partition_offset(&kafka_topic, partition.get() as i32, at)
                    .map_err(|err| unavailable("ListOffsets", err))?;
            }
            let timeout = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .call(move |client| client.offsets_for_times(request, timeout))
                .await?;
            let found = answer
                .map_err(|err| (err.rdkafka_error_code(), err.to_string()))
                .and_then(|answer| {
                    partitions
                        .iter()
                        .map(|partition| {
                            let element = answer
                                .find_partition(&kafka_topic, partition.get() as i32)
                                .ok_or((None, format!("no answer for partition {partition}")))?;
                            element
                                .error()
                                .map_err(|err| (err.rdkafka_error_code(), err.to_string()))?;
                            Ok(match element.offset() {
                                KafkaOffset::Offset(offset) if offset >= 0 => {
                                    Some(Offset::new(offset as u64))
                                }
                                _ => None,
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                });
            match found {
                Ok(found) => return Ok(found),
                // A new topic's or a moved partition's leader is not known everywhere yet.
                Err((Some(code), _)) if is_leader_moving(code) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err((Some(RDKafkaErrorCode::UnknownTopicOrPartition), _)) => {
                    self.forget(topic);
                    return Err(LogError::TopicNotFound(topic.clone()));
                }
                Err((_, err)) => return Err(unavailable("ListOffsets", err)),
            }
        }
    }
}

/// Errors that say a partition's leader is being elected or moved: they pass by
/// themselves.
/// Each partition's leader, replicas and ISR, in partition order (a partition the
/// metadata reports an error for has no leader).
fn replicas_of(topic: &MetadataTopic) -> Vec<PartitionReplicas> {
    let mut partitions: Vec<_> = topic.partitions().iter().collect();
    partitions.sort_by_key(|p| p.id());
    partitions
        .into_iter()
        .map(|p| PartitionReplicas {
            leader: (p.error().is_none() && p.leader() >= 0).then_some(p.leader()),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
        })
        .collect()
}

fn is_leader_moving(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::FencedLeaderEpoch
            | RDKafkaErrorCode::UnknownLeaderEpoch
            | RDKafkaErrorCode::OffsetNotAvailable
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
