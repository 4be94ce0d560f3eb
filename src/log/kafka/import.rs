//! Writing records at given offsets, for `tidegate export --to-kafka`: an idempotent
//! producer without transactions writes no commit markers, so records written in order to
//! a partition take consecutive offsets, the embedded store's. Nothing here serves the
//! gateway.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::Offset as KafkaOffset;

use super::cluster::unavailable;
use super::names::Names;
use super::{KafkaLog, KafkaOptions, clients, ffi};
use crate::log::{LogError, Offset, PartitionId, TopicName};

/// Marks the records that stand for offsets retention had removed from the embedded store;
/// DeleteRecords removes them again once the partition is written.
pub const PLACEHOLDER_HEADER: &str = "tidegate-export-placeholder";

/// One record to write, with the embedded store's time.
pub struct ImportedRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Writes records at the offsets they had; one per export.
pub struct Importer {
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
    names: Names,
    timeout: Duration,
}

impl KafkaLog {
    pub fn importer(&self) -> Result<Importer, LogError> {
        Ok(Importer {
            producer: import_producer(&self.options)?,
            admin: self.admin.clone(),
            names: self.names.clone(),
            timeout: self.options.timeout,
        })
    }

    /// Whether the broker stamps records (`LogAppendTime`, what the gateway creates) or
    /// keeps the producer's time (`CreateTime`, what an export needs while it copies).
    pub async fn set_timestamp_type(
        &self,
        topic: &TopicName,
        log_append_time: bool,
    ) -> Result<(), LogError> {
        let kafka_name = self.names.topic(topic);
        let kind = if log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        };
        let changes = vec![("message.timestamp.type", kind.to_owned())];
        let timeout = self.options.timeout;
        self.native(move |rk| ffi::set_topic_configs(rk, &kafka_name, &changes, timeout))
            .await?
            .map_err(|err| unavailable("changing a topic's timestamp type", err))
    }
}

impl Importer {
    /// Writes `records` to the end of a partition, in order, and checks that they took
    /// the offsets from `first` on: another producer writing meanwhile is an error, never
    /// a silent shift.
    pub async fn write(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        first: Offset,
        records: &[ImportedRecord],
    ) -> Result<(), LogError> {
        let kafka_name = self.names.topic(topic);
        let kafka_partition = i32::try_from(partition.get())
            .map_err(|_| LogError::InvalidArgument("partition out of range".into()))?;
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value),
                });
            }
            let mut future = FutureRecord::<[u8], [u8]>::to(&kafka_name)
                .partition(kafka_partition)
                .timestamp(record.timestamp)
                .headers(headers);
            if let Some(key) = &record.key {
                future = future.key(key);
            }
            if let Some(value) = &record.value {
                future = future.payload(value);
            }
            let delivery = self
                .producer
                .send_result(future)
                .map_err(|(err, _)| unavailable("exporting a record", err))?;
            deliveries.push(delivery);
        }
        let mut expected = first;
        for delivery in deliveries {
            match tokio::time::timeout(self.timeout, delivery).await {
                Ok(Ok(Ok(delivered))) => {
                    let offset = u64::try_from(delivered.offset).unwrap_or(u64::MAX);
                    if offset != expected.get() {
                        return Err(LogError::InvalidArgument(format!(
                            "topic '{topic}' partition {partition}: the cluster gave offset \
                             {offset} where {expected} was expected (is something else \
                             writing to it?)"
                        )));
                    }
                    expected = expected.next();
                }
                Ok(Ok(Err((err, _)))) => return Err(unavailable("exporting a record", err)),
                Ok(Err(_)) | Err(_) => {
                    return Err(LogError::ClusterUnavailable(
                        "a record was not delivered within --kafka-timeout-ms".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Moves the partition's log start to `offset` (DeleteRecords), removing placeholders.
    pub async fn delete_before(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        offset: Offset,
    ) -> Result<(), LogError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(
            &self.names.topic(topic),
            i32::try_from(partition.get()).unwrap_or(i32::MAX),
            KafkaOffset::Offset(i64::try_from(offset.get()).unwrap_or(i64::MAX)),
        )
        .map_err(|err| unavailable("moving a log start", err))?;
        let options = AdminOptions::new().request_timeout(Some(self.timeout));
        let results = self
            .admin
            .delete_records(&list, &options)
            .await
            .map_err(|err| unavailable("moving a log start", err))?;
        for element in results.elements() {
            if let Err(err) = element.error() {
                return Err(unavailable("moving a log start", err));
            }
        }
        Ok(())
    }
}

/// Idempotent (a retried send is never written twice, order kept), `acks=all`, and not
/// transactional: no commit markers take offsets.
fn import_producer(options: &KafkaOptions) -> Result<FutureProducer, LogError> {
    let mut config = clients::common(options);
    let timeout = options.timeout.as_millis();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", timeout.to_string())
        .set("request.timeout.ms", timeout.min(30_000).to_string());
    config
        .create()
        .map_err(|err| LogError::InvalidArgument(format!("the export producer: {err}")))
}
