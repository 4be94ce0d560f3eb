//! `tidegate export --to-kafka`: moves an embedded data directory into a Kafka cluster so
//! that clients' offsets, cursors and committed group offsets stay valid. Per topic: the
//! topic and its retention; its records at the same offsets (written with their own times
//! while the topic keeps `CreateTime`, then switched to the gateway's `LogAppendTime`);
//! placeholders where retention had removed the head, then DeleteRecords to the embedded
//! log start; and the groups' committed offsets. A second run continues where the cluster's
//! partitions end, after checking that what is there is the embedded records.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::ExportArgs;
use crate::log::kafka::{ImportedRecord, KafkaLog, KafkaOptions, PLACEHOLDER_HEADER};
use crate::log::redb::{Fsync, LogOptions, RedbLog};
use crate::log::{
    EventLog, FetchRequest, LogError, Offset, OffsetStore, PartitionBounds, PartitionId,
    StoredRecord, TopicName, TopicUpdate,
};
use crate::metrics::{LabelCaps, Metrics};

/// Records read from the embedded store and written per round.
const PAGE_RECORDS: usize = 2_000;
const PAGE_BYTES: usize = 4 << 20;
/// Retention must not remove records while they are copied: its task never runs.
const NO_RETENTION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What an export copied, for its last line.
#[derive(Debug, Default)]
pub struct Exported {
    pub topics: usize,
    pub records: u64,
    pub groups: usize,
}

pub async fn run(args: &ExportArgs) -> Result<Exported, String> {
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new(LabelCaps {
        topics: 1,
        groups: 1,
    })
    .map_err(|err| format!("metrics: {err}"))?;
    let embedded = RedbLog::open(
        &LogOptions {
            data_dir: args.data_dir.clone(),
            fsync: Fsync::Never,
            idempotency_window: Duration::from_secs(60),
            retention_check_interval: NO_RETENTION,
            // The export only reads.
            min_free_bytes: 0,
        },
        metrics.log.clone(),
        shutdown.clone(),
    )
    .map_err(|err| err.to_string())?;
    let kafka = KafkaLog::open(kafka_options(args), metrics.log.clone(), shutdown.clone())
        .map_err(|err| err.to_string())?;
    let result = copy(args, &embedded, &kafka).await;
    // The backends' background tasks end with the token; their shutdowns wait for them.
    shutdown.cancel();
    kafka.shutdown().await;
    embedded.shutdown().await;
    let exported = result?;
    progress(format_args!(
        "done in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(exported)
}

fn kafka_options(args: &ExportArgs) -> KafkaOptions {
    let kafka = &args.kafka;
    KafkaOptions {
        bootstrap: args.to_kafka.clone(),
        properties: kafka.kafka_properties.clone(),
        replication_factor: kafka.kafka_replication_factor,
        timeout: Duration::from_millis(kafka.kafka_timeout_ms),
        prefix: kafka.kafka_topic_prefix.clone(),
        // Its own transactional id unless told: an export never fences a running gateway.
        replica_id: kafka
            .replica_id
            .clone()
            .unwrap_or_else(|| format!("export-{:016x}", rand::random::<u64>())),
        idempotency_window: Duration::from_secs(60),
        // Foreign values deeper than this are shown as text: records of an export are
        // only compared, never served.
        max_value_depth: 64,
    }
}

fn progress(message: std::fmt::Arguments<'_>) {
    eprintln!("export: {message}");
}

async fn copy(args: &ExportArgs, embedded: &RedbLog, kafka: &KafkaLog) -> Result<Exported, String> {
    wait_until_ready(kafka, Duration::from_millis(args.kafka.kafka_timeout_ms)).await?;
    let listed = embedded.list_topics().await.map_err(|e| e.to_string())?;
    let wanted: BTreeSet<&str> = args.topics.iter().map(String::as_str).collect();
    for name in &wanted {
        if !listed.iter().any(|t| t.name.as_str() == *name) {
            return Err(format!(
                "--topics: no topic '{name}' in {}",
                args.data_dir.display()
            ));
        }
    }
    let topics: Vec<TopicName> = listed
        .into_iter()
        .map(|t| t.name)
        .filter(|name| wanted.is_empty() || wanted.contains(name.as_str()))
        .collect();
    let mut exported = Exported::default();
    for topic in &topics {
        exported.records += copy_topic(embedded, kafka, topic)
            .await
            .map_err(|err| format!("topic '{topic}': {err}"))?;
        exported.topics += 1;
    }
    for group in embedded.offset_groups().await.map_err(|e| e.to_string())? {
        let offsets: Vec<_> = embedded
            .committed_offsets(&group)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|committed| topics.contains(&committed.topic))
            .collect();
        if offsets.is_empty() {
            continue;
        }
        let count = offsets.len();
        kafka
            .commit_offsets(&group, offsets)
            .await
            .map_err(|err| format!("group '{group}': {err}"))?;
        progress(format_args!("group {group}: {count} committed offsets"));
        exported.groups += 1;
    }
    Ok(exported)
}

async fn wait_until_ready(kafka: &KafkaLog, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match kafka.readiness() {
            Ok(()) => return Ok(()),
            Err(err) if Instant::now() > deadline => {
                return Err(format!("the cluster is not reachable: {err}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Copies one topic; returns how many records it wrote this run.
async fn copy_topic(
    embedded: &RedbLog,
    kafka: &KafkaLog,
    topic: &TopicName,
) -> Result<u64, LogError> {
    let source = embedded.describe_topic(topic).await?;
    let target = match kafka.describe_topic(topic).await {
        Ok(target) => {
            if target.config.partitions != source.config.partitions {
                return Err(LogError::InvalidArgument(format!(
                    "the cluster's topic has {} partitions, the embedded one {}",
                    target.config.partitions, source.config.partitions
                )));
            }
            kafka
                .update_topic(
                    topic,
                    TopicUpdate {
                        partitions: None,
                        retention_ms: Some(source.config.retention_ms),
                        retention_bytes: Some(source.config.retention_bytes),
                    },
                )
                .await?
        }
        Err(LogError::TopicNotFound(_)) => kafka.create_topic(topic.clone(), source.config).await?,
        Err(err) => return Err(err),
    };
    kafka.set_timestamp_type(topic, false).await?;
    let importer = kafka.importer()?;
    let mut written = 0;
    for (from, to) in source.partitions.iter().zip(&target.partitions) {
        written += copy_partition(
            embedded,
            kafka,
            &importer,
            topic,
            from.partition,
            from.bounds,
            to.bounds,
        )
        .await?;
    }
    kafka.set_timestamp_type(topic, true).await?;
    Ok(written)
}

#[allow(clippy::too_many_arguments)]
async fn copy_partition(
    embedded: &RedbLog,
    kafka: &KafkaLog,
    importer: &crate::log::kafka::Importer,
    topic: &TopicName,
    partition: PartitionId,
    source: PartitionBounds,
    target: PartitionBounds,
) -> Result<u64, LogError> {
    let (start, end) = (source.log_start_offset, source.high_watermark);
    let mut next = target.high_watermark;
    if next > end {
        return Err(LogError::InvalidArgument(format!(
            "partition {partition} holds offsets up to {next} in the cluster, past the \
             embedded end {end}: it holds other records"
        )));
    }
    if next > Offset::ZERO {
        check_resumable(embedded, kafka, topic, partition, start, next).await?;
    }
    let mut written = 0u64;
    // Offsets retention had removed: records that DeleteRecords removes again below.
    while next < start {
        let count = (start.get() - next.get()).min(PAGE_RECORDS as u64) as usize;
        let placeholders: Vec<ImportedRecord> = (0..count)
            .map(|_| ImportedRecord {
                timestamp: 0,
                key: None,
                value: None,
                headers: vec![(PLACEHOLDER_HEADER.to_owned(), b"1".to_vec())],
            })
            .collect();
        importer
            .write(topic, partition, next, &placeholders)
            .await?;
        next = Offset::new(next.get() + count as u64);
    }
    while next < end {
        let page = embedded
            .fetch(
                topic,
                partition,
                FetchRequest {
                    offset: Some(next),
                    max_records: PAGE_RECORDS,
                    max_bytes: PAGE_BYTES,
                },
            )
            .await?;
        if page.records.first().map(|r| r.offset) != Some(next) {
            return Err(LogError::InvalidArgument(format!(
                "partition {partition}: the embedded store has no record at offset {next}"
            )));
        }
        let records: Vec<ImportedRecord> = page.records.iter().map(imported).collect();
        importer.write(topic, partition, next, &records).await?;
        written += records.len() as u64;
        next = page.next_offset;
        progress(format_args!(
            "{topic}/{partition}: {next} of {end} ({:.0}%)",
            100.0 * next.get() as f64 / end.get().max(1) as f64
        ));
    }
    if target.log_start_offset < start {
        importer.delete_before(topic, partition, start).await?;
    }
    Ok(written)
}

/// A partition that already holds records in the cluster continues only when its last
/// record is the embedded one at that offset (or a placeholder where the embedded store
/// has none): an interrupted export of the same data, not another topic of that name.
async fn check_resumable(
    embedded: &RedbLog,
    kafka: &KafkaLog,
    topic: &TopicName,
    partition: PartitionId,
    embedded_start: Offset,
    cluster_end: Offset,
) -> Result<(), LogError> {
    let last = Offset::new(cluster_end.get() - 1);
    let one = FetchRequest {
        offset: Some(last),
        max_records: 1,
        max_bytes: 1,
    };
    let there = match kafka.fetch(topic, partition, one).await {
        Ok(page) => page.records.into_iter().next(),
        // Below the cluster's log start: nothing left to compare.
        Err(LogError::OffsetOutOfRange { .. }) => return Ok(()),
        Err(err) => return Err(err),
    };
    // An export leaves no offset without a record; a gap is another producer's marker.
    let Some(there) = there.filter(|record| record.offset == last) else {
        return Err(LogError::InvalidArgument(format!(
            "partition {partition}: the cluster holds no record at offset {last}, so other \
             producers wrote it; refusing to mix two topics' records"
        )));
    };
    let matches = if last < embedded_start {
        there
            .headers
            .iter()
            .any(|(name, _)| name == PLACEHOLDER_HEADER)
    } else {
        let ours = embedded.fetch(topic, partition, one).await?;
        ours.records
            .first()
            .is_some_and(|ours| same_record(ours, &there))
    };
    if matches {
        Ok(())
    } else {
        Err(LogError::InvalidArgument(format!(
            "partition {partition}: the cluster's record at offset {} is not the embedded \
             one; refusing to mix two topics' records",
            there.offset
        )))
    }
}

fn same_record(ours: &StoredRecord, theirs: &StoredRecord) -> bool {
    ours.offset == theirs.offset
        && ours.timestamp == theirs.timestamp
        && ours.key == theirs.key
        && ours.value == theirs.value
        && ours.headers == theirs.headers
}

fn imported(record: &StoredRecord) -> ImportedRecord {
    ImportedRecord {
        timestamp: record.timestamp,
        key: record.key.as_ref().map(|key| key.as_bytes().to_vec()),
        value: Some(record.value.as_bytes().to_vec()),
        headers: record
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.as_bytes().to_vec()))
            .collect(),
    }
}
