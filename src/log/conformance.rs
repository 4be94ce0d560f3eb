//! What every backend must do, run against each (`redb`'s tests, and `kafka`'s against a
//! real broker): bounds and data from one snapshot, increasing offsets, gaps below the log
//! start, wake-ups, idempotency, group offsets, and fencing of a second instance.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::value::RawValue;

use super::{
    AppendOutcome, AppendRecord, AppendRequest, CommittedOffset, EventLog, FetchRequest, GroupId,
    IdempotencyKey, LogError, Offset, OffsetStore, PartitionId, TopicConfig, TopicName,
    TopicUpdate,
};

/// How long anything a backend promises may take to happen (a wake-up, a retention pass,
/// a remote cluster's metadata).
const PATIENCE: Duration = Duration::from_secs(20);

/// Starts moving a partition's log start to at least an offset (the suite waits until
/// the bounds show it).
pub(crate) type AdvanceLogStart =
    Box<dyn Fn(TopicName, PartitionId, Offset) -> BoxFuture<'static, ()> + Send + Sync>;

/// Opens a second instance of a backend over the same storage and identity.
pub(crate) type OpenTwin =
    Box<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn EventLog>, String>> + Send + Sync>;

/// A backend under test, with what the suite cannot do through the traits.
pub(crate) struct Backend {
    pub log: Arc<dyn EventLog>,
    pub offsets: Arc<dyn OffsetStore>,
    /// Retention on redb, DeleteRecords on Kafka.
    pub advance_log_start: AdvanceLogStart,
    /// `Err` when the backend refuses a second instance (redb's file lock), else the twin,
    /// which fences this one (Kafka's transactional id).
    pub open_twin: OpenTwin,
    /// Topic names of this run start with it, so runs sharing a cluster never meet.
    pub prefix: String,
}

impl Backend {
    fn topic(&self, name: &str) -> TopicName {
        TopicName::parse(&format!("{}{name}", self.prefix)).expect("topic name")
    }
}

fn config(partitions: u32) -> TopicConfig {
    TopicConfig {
        partitions,
        retention_ms: -1,
        retention_bytes: -1,
    }
}

fn records(partition: u32, values: &[&str]) -> Vec<AppendRecord> {
    values
        .iter()
        .map(|value| AppendRecord {
            partition: PartitionId::new(partition),
            key: Some(format!("k-{value}")),
            value: RawValue::from_string((*value).to_owned()).expect("json"),
            headers: vec![("h".into(), (*value).to_owned())],
        })
        .collect()
}

async fn append(
    log: &dyn EventLog,
    topic: &TopicName,
    partition: u32,
    values: &[&str],
) -> AppendOutcome {
    log.append(
        topic,
        AppendRequest {
            records: records(partition, values),
            idempotency: None,
        },
    )
    .await
    .expect("append")
}

async fn fetch_all(
    log: &dyn EventLog,
    topic: &TopicName,
    partition: u32,
    from: Offset,
) -> Vec<(Offset, String)> {
    let mut found = Vec::new();
    let mut next = from;
    loop {
        let page = log
            .fetch(
                topic,
                PartitionId::new(partition),
                FetchRequest {
                    offset: Some(next),
                    max_records: 2,
                    max_bytes: 1 << 20,
                },
            )
            .await
            .expect("fetch");
        assert!(
            page.next_offset <= page.bounds.high_watermark,
            "next within bounds"
        );
        assert!(
            page.bounds.log_start_offset <= next,
            "read from within the bounds"
        );
        for record in &page.records {
            assert!(record.offset >= next, "offsets increase");
            found.push((record.offset, record.value.to_string()));
        }
        if page.next_offset == next {
            return found;
        }
        next = page.next_offset;
    }
}

/// Runs every check; each names what it found wrong.
pub(crate) async fn run(backend: &Backend) {
    topics(backend).await;
    appends_and_reads(backend).await;
    runs_cover_the_log(backend).await;
    watches_wake(backend).await;
    idempotency(backend).await;
    gaps_below_the_start(backend).await;
    group_offsets(backend).await;
    fencing(backend).await;
}

async fn topics(backend: &Backend) {
    let log = &*backend.log;
    let topic = backend.topic("c-topics");
    let created = log
        .create_topic(topic.clone(), config(2))
        .await
        .expect("create");
    assert_eq!(created.partitions.len(), 2);
    for p in &created.partitions {
        assert_eq!(p.bounds.log_start_offset, p.bounds.high_watermark, "empty");
    }
    assert!(matches!(
        log.create_topic(topic.clone(), config(2)).await,
        Err(LogError::TopicExists(_))
    ));
    assert!(
        log.list_topics()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == topic)
    );
    let meta = log.topic_meta(&topic).await.unwrap();
    assert_eq!(meta.partitions, 2);
    let raised = log
        .update_topic(
            &topic,
            TopicUpdate {
                partitions: Some(3),
                ..TopicUpdate::default()
            },
        )
        .await
        .expect("raise partitions");
    assert_eq!(raised.config.partitions, 3);
    assert_eq!(log.topic_meta(&topic).await.unwrap().partitions, 3);
    assert!(matches!(
        log.update_topic(
            &topic,
            TopicUpdate {
                partitions: Some(1),
                ..TopicUpdate::default()
            }
        )
        .await,
        Err(LogError::PartitionsCannotShrink { .. })
    ));
    log.delete_topic(&topic).await.expect("delete");
    assert!(matches!(
        log.topic_meta(&topic).await,
        Err(LogError::TopicNotFound(_))
    ));
    let recreated = log
        .create_topic(topic.clone(), config(1))
        .await
        .expect("again");
    assert_ne!(
        log.topic_meta(&topic).await.unwrap().id,
        meta.id,
        "a new identity"
    );
    assert_eq!(recreated.partitions[0].bounds.high_watermark, Offset::ZERO);
}

async fn appends_and_reads(backend: &Backend) {
    let log = &*backend.log;
    let topic = backend.topic("c-reads");
    log.create_topic(topic.clone(), config(2)).await.unwrap();
    let first = append(log, &topic, 1, &["1", "2", "3"]).await;
    let second = append(log, &topic, 1, &["4"]).await;
    let offsets: Vec<Offset> = first
        .positions
        .iter()
        .chain(&second.positions)
        .map(|p| p.offset)
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "{offsets:?} increase"
    );
    assert!(first.positions.iter().all(|p| p.partition.get() == 1));
    let bounds = log.bounds(&topic, &[PartitionId::new(1)]).await.unwrap()[0];
    assert!(
        bounds.high_watermark > *offsets.last().unwrap(),
        "all visible"
    );
    let read = fetch_all(log, &topic, 1, Offset::ZERO).await;
    assert_eq!(
        read,
        offsets
            .iter()
            .zip(["1", "2", "3", "4"])
            .map(|(o, v)| (*o, v.to_owned()))
            .collect::<Vec<_>>()
    );
    let page = log
        .fetch(
            &topic,
            PartitionId::new(1),
            FetchRequest {
                offset: None,
                max_records: 10,
                max_bytes: 1 << 20,
            },
        )
        .await
        .unwrap();
    let record = &page.records[0];
    assert_eq!(record.key.as_deref(), Some("k-1"));
    assert_eq!(record.headers, [("h".to_owned(), "1".to_owned())]);
    assert!(record.timestamp > 0);
    let end = log
        .fetch(
            &topic,
            PartitionId::new(1),
            FetchRequest {
                offset: Some(bounds.high_watermark),
                max_records: 10,
                max_bytes: 1 << 20,
            },
        )
        .await
        .unwrap();
    assert!(end.records.is_empty());
    assert_eq!(end.next_offset, bounds.high_watermark);
    let beyond = Offset::new(bounds.high_watermark.get() + 1);
    match log
        .fetch(
            &topic,
            PartitionId::new(1),
            FetchRequest {
                offset: Some(beyond),
                max_records: 10,
                max_bytes: 1 << 20,
            },
        )
        .await
    {
        Err(LogError::OffsetOutOfRange { high_watermark, .. }) => {
            assert_eq!(high_watermark, bounds.high_watermark)
        }
        other => panic!("beyond the high watermark: {other:?}"),
    }
    assert!(matches!(
        log.append(
            &topic,
            AppendRequest {
                records: records(7, &["1"]),
                idempotency: None
            }
        )
        .await,
        Err(LogError::PartitionNotFound { .. })
    ));
    let at = log
        .offset_for_timestamp(&topic, PartitionId::new(1), 0)
        .await
        .unwrap();
    assert_eq!(at.offset, offsets[0], "the first record is after time 0");
    let later = log
        .offset_for_timestamp(&topic, PartitionId::new(1), i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        (later.offset, later.timestamp),
        (bounds.high_watermark, None)
    );
}

async fn runs_cover_the_log(backend: &Backend) {
    let log = &*backend.log;
    let topic = backend.topic("c-runs");
    log.create_topic(topic.clone(), config(1)).await.unwrap();
    let mut offsets = Vec::new();
    for value in ["1", "2", "3", "4", "5"] {
        offsets.extend(
            append(log, &topic, 0, &[value, value])
                .await
                .positions
                .iter()
                .map(|p| p.offset),
        );
    }
    let runs = log
        .read_runs(&topic, PartitionId::new(0), offsets[3], 100)
        .await
        .unwrap();
    assert!(!runs.is_empty());
    assert!(
        runs[0].start <= offsets[3] && offsets[3] < runs[0].end,
        "the first run holds `from`"
    );
    for pair in runs.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "runs are contiguous");
    }
    let read: Vec<Offset> = runs
        .iter()
        .flat_map(|run| {
            assert!(
                run.records
                    .iter()
                    .all(|r| run.start <= r.offset && r.offset < run.end)
            );
            run.records.iter().map(|r| r.offset)
        })
        .filter(|o| *o >= offsets[3])
        .collect();
    assert_eq!(read, offsets[3..]);
    let high_watermark =
        log.bounds(&topic, &[PartitionId::new(0)]).await.unwrap()[0].high_watermark;
    assert!(matches!(
        log.read_runs(
            &topic,
            PartitionId::new(0),
            Offset::new(high_watermark.get() + 1),
            1
        )
        .await,
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

async fn watches_wake(backend: &Backend) {
    let log = &*backend.log;
    let topic = backend.topic("c-watch");
    log.create_topic(topic.clone(), config(1)).await.unwrap();
    let mut watch = log
        .watch_high_watermark(&topic, PartitionId::new(0))
        .await
        .unwrap();
    let before = *watch.borrow_and_update();
    let appended = append(log, &topic, 0, &["1"]).await.positions[0].offset;
    assert!(appended >= before);
    tokio::time::timeout(PATIENCE, watch.wait_for(|hwm| *hwm > appended))
        .await
        .expect("woken within the patience")
        .expect("the channel stays open");
    log.delete_topic(&topic).await.unwrap();
    tokio::time::timeout(PATIENCE, watch.changed())
        .await
        .expect("a deleted topic closes its watches")
        .expect_err("closed");
}

async fn idempotency(backend: &Backend) {
    let log = &*backend.log;
    let topic = backend.topic("c-idem");
    log.create_topic(topic.clone(), config(1)).await.unwrap();
    let request = |digest: u8| AppendRequest {
        records: records(0, &["1", "2"]),
        idempotency: Some(IdempotencyKey {
            key: "order-1".into(),
            digest: [digest; 32],
        }),
    };
    let first = log.append(&topic, request(1)).await.unwrap();
    assert!(!first.replayed);
    let high_watermark =
        log.bounds(&topic, &[PartitionId::new(0)]).await.unwrap()[0].high_watermark;
    let again = log.append(&topic, request(1)).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.positions, first.positions);
    assert!(matches!(
        log.append(&topic, request(2)).await,
        Err(LogError::IdempotencyKeyReused)
    ));
    let after = log.bounds(&topic, &[PartitionId::new(0)]).await.unwrap()[0].high_watermark;
    assert_eq!(after, high_watermark, "a replay or a reuse appends nothing");
    // Keys belong to their topic: the same key on a new topic of the same name is new.
    log.delete_topic(&topic).await.unwrap();
    log.create_topic(topic.clone(), config(1)).await.unwrap();
    assert!(!log.append(&topic, request(2)).await.unwrap().replayed);
}

async fn gaps_below_the_start(backend: &Backend) {
    let log = &*backend.log;
    let topic = backend.topic("c-gaps");
    log.create_topic(topic.clone(), config(1)).await.unwrap();
    let mut last = Offset::ZERO;
    for value in ["1", "2", "3", "4"] {
        last = append(log, &topic, 0, &[value]).await.positions[0].offset;
    }
    (backend.advance_log_start)(topic.clone(), PartitionId::new(0), last).await;
    let moved = tokio::time::timeout(PATIENCE, async {
        loop {
            let bounds = log.bounds(&topic, &[PartitionId::new(0)]).await.unwrap()[0];
            if bounds.log_start_offset >= last {
                return bounds;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let bounds = moved
        .await
        .expect("the log start moved within the patience");
    assert!(
        bounds.log_start_offset > Offset::ZERO,
        "the start moved: {bounds:?}"
    );
    for read in [
        log.fetch(
            &topic,
            PartitionId::new(0),
            FetchRequest {
                offset: Some(Offset::ZERO),
                max_records: 10,
                max_bytes: 1 << 20,
            },
        )
        .await
        .map(drop),
        log.read_runs(&topic, PartitionId::new(0), Offset::ZERO, 10)
            .await
            .map(drop),
    ] {
        match read {
            Err(LogError::OffsetOutOfRange {
                log_start_offset, ..
            }) => assert_eq!(log_start_offset, bounds.log_start_offset, "named the start"),
            other => panic!("a read below the log start: {other:?}"),
        }
    }
    let rest = fetch_all(log, &topic, 0, bounds.log_start_offset).await;
    assert_eq!(
        rest.last().map(|(o, _)| *o),
        Some(last),
        "the newest record stays"
    );
}

async fn group_offsets(backend: &Backend) {
    let (log, offsets) = (&*backend.log, &*backend.offsets);
    let topic = backend.topic("c-offsets");
    log.create_topic(topic.clone(), config(2)).await.unwrap();
    append(log, &topic, 0, &["1", "2"]).await;
    let group = GroupId::parse(&format!("{}c-group", backend.prefix)).unwrap();
    let commit = |partition: u32, offset: u64| CommittedOffset {
        topic: topic.clone(),
        partition: PartitionId::new(partition),
        offset: Offset::new(offset),
        committed_at_ms: 0,
    };
    offsets
        .commit_offsets(&group, vec![commit(0, 2), commit(1, 0)])
        .await
        .expect("commit");
    let read: Vec<(u32, u64)> = offsets
        .committed_offsets(&group)
        .await
        .unwrap()
        .iter()
        .map(|c| (c.partition.get(), c.offset.get()))
        .collect();
    assert_eq!(read, [(0, 2), (1, 0)]);
    assert!(offsets.offset_groups().await.unwrap().contains(&group));
    offsets
        .commit_offsets(&group, vec![commit(0, 1)])
        .await
        .unwrap();
    assert_eq!(
        offsets.committed_offsets(&group).await.unwrap()[0].offset,
        Offset::new(1)
    );
    assert!(offsets.delete_offsets(&group).await.unwrap());
    assert!(offsets.committed_offsets(&group).await.unwrap().is_empty());
    assert!(!offsets.delete_offsets(&group).await.unwrap());
}

async fn fencing(backend: &Backend) {
    let log = &*backend.log;
    let topic = backend.topic("c-fence");
    log.create_topic(topic.clone(), config(1)).await.unwrap();
    append(log, &topic, 0, &["1"]).await;
    let twin = match (backend.open_twin)().await {
        // The backend refuses a second instance outright.
        Err(_) => return,
        Ok(twin) => twin,
    };
    let by_twin = append(&*twin, &topic, 0, &["2"]).await.positions[0].offset;
    // Fenced: whatever this instance does now is refused, never half-done.
    let fenced = log
        .append(
            &topic,
            AppendRequest {
                records: records(0, &["3"]),
                idempotency: None,
            },
        )
        .await;
    let read = fetch_all(&*twin, &topic, 0, Offset::ZERO).await;
    let values: Vec<&str> = read.iter().map(|(_, v)| v.as_str()).collect();
    match fenced {
        Err(_) => assert_eq!(values, ["1", "2"], "a fenced append leaves nothing"),
        // Recovered by taking the identity back: then what it acknowledged is there.
        Ok(outcome) => {
            assert!(outcome.positions[0].offset > by_twin);
            assert_eq!(values, ["1", "2", "3"]);
        }
    }
    twin.shutdown().await;
}

/// Metrics for a backend under test.
pub(crate) fn log_metrics() -> crate::metrics::LogMetrics {
    let caps = crate::metrics::LabelCaps {
        topics: 10,
        groups: 10,
    };
    crate::metrics::Metrics::new(caps)
        .expect("metrics")
        .log
        .clone()
}
