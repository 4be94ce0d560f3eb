//! The librdkafka clients of one gateway and their settings. Each has one job, so that none
//! waits behind another's traffic (ListOffsets behind a fetching consumer waits for its
//! fetch, about 500 ms): the admin client (topics, configs, group offsets), the metadata
//! client (cluster metadata, offsets by time), the transactional producer, the tail (live
//! records of watched partitions) and a few readers (fetches of older records).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaOptions;
use super::cluster::unavailable;
use crate::log::LogError;

/// What every client of this gateway shares: the brokers, the user's properties, and
/// timeouts within `--kafka-timeout-ms`.
pub(super) fn common(options: &KafkaOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &options.bootstrap);
    let timeout_ms = options.timeout.as_millis().to_string();
    config.set("socket.timeout.ms", &timeout_ms);
    // librdkafka backs off up to 10 s between reconnects by default: a broker that comes
    // back would then be noticed long after `--kafka-timeout-ms`.
    config.set("reconnect.backoff.max.ms", "1000");
    config.set("topic.metadata.refresh.interval.ms", "10000");
    for (key, value) in &options.properties {
        config.set(key, value);
    }
    // Warnings reach the log callback (and so `tracing`) only with a level set.
    config.set_log_level(RDKafkaLogLevel::Warning);
    config
}

pub(super) fn created<T>(
    what: &str,
    result: rdkafka::error::KafkaResult<T>,
) -> Result<T, LogError> {
    result.map_err(|err| {
        LogError::InvalidArgument(format!("the Kafka {what} could not be set up: {err}"))
    })
}

pub(super) fn admin(options: &KafkaOptions) -> Result<AdminClient<DefaultClientContext>, LogError> {
    created("admin client", common(options).create())
}

/// Creates one of tidegate's own topics unless it exists.
pub(super) async fn create_internal_topic(
    admin: &AdminClient<DefaultClientContext>,
    options: &KafkaOptions,
    name: &str,
    partitions: u32,
    configs: &[(&str, &str)],
) -> Result<(), LogError> {
    let replication = match options.replication_factor {
        Some(factor) => TopicReplication::Fixed(i32::from(factor)),
        None => TopicReplication::Fixed(-1),
    };
    let mut topic = NewTopic::new(name, partitions as i32, replication);
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let what = format!("creating the internal topic {name}");
    let admin_options = AdminOptions::new().request_timeout(Some(options.timeout));
    let results = admin
        .create_topics([&topic], &admin_options)
        .await
        .map_err(|err| unavailable(&what, err))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(unavailable(&what, code)),
        }
    }
    Ok(())
}

/// A consumer that never joins a group (partitions are assigned by hand) and reads only
/// committed records; librdkafka wants a `group.id` even so.
pub(super) fn consumer(options: &KafkaOptions, role: &str) -> ClientConfig {
    let mut config = common(options);
    config
        .set("group.id", format!("{}__tidegate-{role}", options.prefix))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100");
    config
}

/// For metadata and ListOffsets: assigned nothing, so it never fetches.
pub(super) fn metadata(options: &KafkaOptions) -> Result<BaseConsumer, LogError> {
    created("metadata client", consumer(options, "metadata").create())
}

/// The tail of the watched partitions: starts at their end; a position that retention
/// removed goes on from the end.
pub(super) fn tail(options: &KafkaOptions) -> Result<BaseConsumer, LogError> {
    let mut config = consumer(options, "tail");
    config.set("auto.offset.reset", "latest");
    created("tail consumer", config.create())
}

/// Makes a consumer know `topic` before it is assigned a partition of it. librdkafka
/// (2.12) otherwise looks the partition's leader up on its one-second timer: every first
/// read of a topic by a consumer waited 0.9–1.0 s (measured; under 1 ms for this
/// metadata request, then 2–6 ms for the read). On failure the assignment goes on and the
/// consumer finds the leader by itself.
pub(super) fn know_topic<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) {
    if let Err(err) = consumer.fetch_metadata(Some(topic), timeout) {
        tracing::debug!(topic, %err, "no metadata for a topic before assigning it");
    }
}

/// The context of readers: the end of a partition, which they ask to be told about, is
/// news for the read, not an error for the operator's log.
pub(super) struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::warn!(%error, reason, "a Kafka reader reported an error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// A reader of older records: reports the end of a partition, and an offset outside it
/// as an error rather than jumping elsewhere.
pub(super) fn reader(options: &KafkaOptions) -> Result<BaseConsumer<ReaderContext>, LogError> {
    let mut config = consumer(options, "reader");
    config
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "true")
        // The end is known only from a fetch at it, which the broker holds this long: a
        // read of the newest records would otherwise wait 100 ms for its end.
        .set("fetch.wait.max.ms", "5")
        // A reader stays assigned between reads (see `readers`) and prefetches meanwhile:
        // this much per reader, fetched again soon after a read takes it.
        .set("queued.max.messages.kbytes", "2048")
        .set("fetch.queue.backoff.ms", "10");
    created("reader consumer", config.create_with_context(ReaderContext))
}

/// The transactional producer: all records of a group commit commit together, with
/// `acks=all`; tidegate picks every partition itself.
pub(super) fn producer(options: &KafkaOptions) -> Result<FutureProducer, LogError> {
    let mut config = common(options);
    let timeout = options.timeout.as_millis();
    config
        .set("transactional.id", options.transactional_id())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", timeout.to_string())
        .set("request.timeout.ms", timeout.min(30_000).to_string())
        // Longer than a group commit can take, so the coordinator never aborts one that
        // is still being delivered.
        .set(
            "transaction.timeout.ms",
            (timeout * 3)
                .max(Duration::from_secs(60).as_millis())
                .to_string(),
        );
    created("producer", config.create())
}
