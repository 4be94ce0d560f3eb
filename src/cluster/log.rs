//! [`ClusterLog`]: the Kafka log of a replica among others. Everything goes to the cluster
//! as on a lone gateway, except a publish with an `Idempotency-Key`: that one is decided by
//! the replica owning the key's share (`murmur2(topic "\n" key)`), so that a retry through
//! any replica meets the first attempt's answer, and two attempts racing through two
//! replicas meet in one producer, which appends once.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::ClusterCoordinator;
use super::wire::{Call, Reply};
use crate::groups::GroupError;
use crate::log::kafka::KafkaLog;
use crate::log::{
    AppendOutcome, AppendRequest, ClusterView, EventLog, FetchRequest, FetchResult, LogError,
    Offset, PartitionBounds, PartitionId, RecordRun, TimestampOffset, TopicConfig,
    TopicDescription, TopicListing, TopicMeta, TopicName, TopicUpdate,
};

pub struct ClusterLog {
    kafka: Arc<KafkaLog>,
    cluster: Arc<ClusterCoordinator>,
}

impl ClusterLog {
    pub fn new(kafka: Arc<KafkaLog>, cluster: Arc<ClusterCoordinator>) -> ClusterLog {
        ClusterLog { kafka, cluster }
    }
}

#[async_trait]
impl EventLog for ClusterLog {
    async fn create_topic(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, LogError> {
        self.kafka.create_topic(name, config).await
    }

    async fn list_topics(&self) -> Result<Vec<TopicListing>, LogError> {
        self.kafka.list_topics().await
    }

    async fn describe_topic(&self, name: &TopicName) -> Result<TopicDescription, LogError> {
        self.kafka.describe_topic(name).await
    }

    async fn update_topic(
        &self,
        name: &TopicName,
        update: TopicUpdate,
    ) -> Result<TopicDescription, LogError> {
        self.kafka.update_topic(name, update).await
    }

    async fn delete_topic(&self, name: &TopicName) -> Result<(), LogError> {
        self.kafka.delete_topic(name).await
    }

    async fn topic_meta(&self, name: &TopicName) -> Result<TopicMeta, LogError> {
        self.kafka.topic_meta(name).await
    }

    async fn bounds(
        &self,
        topic: &TopicName,
        partitions: &[PartitionId],
    ) -> Result<Vec<PartitionBounds>, LogError> {
        self.kafka.bounds(topic, partitions).await
    }

    async fn append(
        &self,
        topic: &TopicName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, LogError> {
        if request.idempotency.is_none() {
            return self.kafka.append(topic, request).await;
        }
        let call = Call::Append {
            topic: topic.clone(),
            request,
        };
        match self.cluster.dispatch(call).await {
            Ok(Reply::Appended(outcome)) => Ok(outcome),
            Ok(other) => Err(LogError::Unavailable(format!(
                "a replica answered a publish with {other:?}; are all replicas the same version?"
            ))),
            Err(GroupError::Log(err)) => Err(err),
            Err(other) => Err(LogError::Unavailable(other.to_string())),
        }
    }

    async fn fetch(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        request: FetchRequest,
    ) -> Result<FetchResult, LogError> {
        self.kafka.fetch(topic, partition, request).await
    }

    async fn read_runs(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        from: Offset,
        min_records: usize,
    ) -> Result<Vec<RecordRun>, LogError> {
        self.kafka
            .read_runs(topic, partition, from, min_records)
            .await
    }

    async fn offset_for_timestamp(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        timestamp: i64,
    ) -> Result<TimestampOffset, LogError> {
        self.kafka
            .offset_for_timestamp(topic, partition, timestamp)
            .await
    }

    async fn watch_high_watermark(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<watch::Receiver<Offset>, LogError> {
        self.kafka.watch_high_watermark(topic, partition).await
    }

    fn readiness(&self) -> Result<(), LogError> {
        self.kafka.readiness()
    }

    async fn cluster(&self) -> Result<ClusterView, LogError> {
        self.kafka.cluster().await
    }

    async fn shutdown(&self) {
        self.kafka.shutdown().await;
    }
}
