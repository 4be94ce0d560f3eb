//! Many publishers at once against one topic: offsets stay unique and dense per
//! partition, one request's records stay together, and every acknowledged record reads
//! back exactly as it was published.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::harness::{TestApp, bounds, json_body, offsets_in, offsets_of};

/// A record as a publisher sent it.
#[derive(Clone, Debug)]
struct Sent {
    publisher: usize,
    seq: usize,
    key: Option<String>,
    value: Value,
    headers: BTreeMap<String, String>,
}

impl Sent {
    fn to_json(&self) -> Value {
        let mut record = json!({ "value": self.value });
        if let Some(key) = &self.key {
            record["key"] = json!(key);
        }
        if !self.headers.is_empty() {
            record["headers"] = json!(self.headers);
        }
        record
    }
}

/// One acknowledged request: its records with the (partition, offset) each got.
type Acked = Vec<(u32, u64, Sent)>;

/// Publishes `records` as JSON or, for variety, as NDJSON; returns the acknowledged
/// positions in request order.
async fn publish(app: &TestApp, topic: &str, records: &[Sent], ndjson: bool) -> Vec<(u32, u64)> {
    let response = if ndjson {
        let mut body = String::new();
        for record in records {
            body.push_str(&record.to_json().to_string());
            body.push('\n');
        }
        app.publish_raw(topic, Some("application/x-ndjson"), &body)
            .await
    } else {
        app.publish(topic, records.iter().map(Sent::to_json).collect())
            .await
    };
    let positions = offsets_of(response).await;
    assert_eq!(
        positions.len(),
        records.len(),
        "one offset per record: {positions:?}"
    );
    positions
}

/// One publisher: `count` records in requests of 1–4 records, keyless, keyed or mixed,
/// each value carrying the publisher id and sequence number.
async fn run_publisher(
    app: Arc<TestApp>,
    topic: &'static str,
    publisher: usize,
    count: usize,
) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut seq = 0;
    let mut request = 0;
    while seq < count {
        let size = (1 + (publisher + request) % 4).min(count - seq);
        // 0: all keyless, 1: all keyed, 2: keyed and keyless mixed in one request.
        let style = (publisher + request) % 3;
        let records: Vec<Sent> = (seq..seq + size)
            .map(|s| {
                let keyed = match style {
                    0 => false,
                    1 => true,
                    _ => s % 2 == 0,
                };
                let mut headers = BTreeMap::new();
                if s % 2 == 1 {
                    headers.insert("publisher".to_owned(), publisher.to_string());
                    headers.insert("seq".to_owned(), s.to_string());
                }
                Sent {
                    publisher,
                    seq: s,
                    key: keyed.then(|| format!("user-{}", (publisher * 31 + s) % 50)),
                    value: json!({
                        "publisher": publisher,
                        "seq": s,
                        "text": format!("p{publisher}-s{s} \"quoted\" é ✓"),
                        "pad": "x".repeat(s % 23),
                        "nested": [s, {"even": s % 2 == 0}, null],
                    }),
                    headers,
                }
            })
            .collect();
        let positions = publish(&app, topic, &records, request % 5 == 4).await;
        acked.push(
            positions
                .into_iter()
                .zip(records)
                .map(|((p, o), sent)| (p, o, sent))
                .collect(),
        );
        seq += size;
        request += 1;
    }
    acked
}

/// Awaits every task, re-raising a task's panic so its message reaches the test output.
async fn join_all<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(result) => results.push(result),
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("task failed: {err}"),
        }
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_get_unique_dense_offsets_and_exact_content() {
    const TOPIC: &str = "concurrent";
    const PARTITIONS: u32 = 4;
    const PUBLISHERS: usize = 32;
    const PER_PUBLISHER: usize = 200;

    let app = Arc::new(TestApp::spawn().await);
    app.create_topic(TOPIC, PARTITIONS).await;

    let handles = (0..PUBLISHERS)
        .map(|p| tokio::spawn(run_publisher(app.clone(), TOPIC, p, PER_PUBLISHER)))
        .collect();
    let per_publisher = join_all(handles).await;

    let mut by_position: HashMap<(u32, u64), Sent> = HashMap::new();
    let mut key_partition: HashMap<String, u32> = HashMap::new();
    for (publisher, requests) in per_publisher.iter().enumerate() {
        let sent: usize = requests.iter().map(Vec::len).sum();
        assert_eq!(sent, PER_PUBLISHER, "publisher {publisher} acks");
        // A publisher waits for each ack before sending again, so within a partition its
        // records must appear in the order it sent them.
        let mut last_offset: HashMap<u32, u64> = HashMap::new();
        for request in requests {
            for (partition, offset, sent) in request {
                assert!(
                    *partition < PARTITIONS,
                    "partition {partition} out of range"
                );
                if let Some(previous) = last_offset.insert(*partition, *offset) {
                    assert!(
                        previous < *offset,
                        "publisher {publisher}: offset {offset} after {previous} in partition {partition}"
                    );
                }
                if let Some(key) = &sent.key {
                    let first = *key_partition.entry(key.clone()).or_insert(*partition);
                    assert_eq!(first, *partition, "key {key} moved between partitions");
                }
                let duplicate = by_position.insert((*partition, *offset), sent.clone());
                assert!(
                    duplicate.is_none(),
                    "({partition}, {offset}) acknowledged twice: {duplicate:?} and {sent:?}"
                );
            }
            // One request's records that share a partition are contiguous and in order.
            let mut previous: HashMap<u32, u64> = HashMap::new();
            for (partition, offset, _) in request {
                if let Some(before) = previous.insert(*partition, *offset) {
                    assert_eq!(
                        *offset,
                        before + 1,
                        "records of one request split in partition {partition}: {request:?}"
                    );
                }
            }
            if request.len() > 1 && request.iter().all(|(_, _, s)| s.key.is_none()) {
                assert!(
                    request.iter().all(|(p, _, _)| *p == request[0].0),
                    "a keyless request spread over partitions: {request:?}"
                );
            }
        }
    }
    assert_eq!(by_position.len(), PUBLISHERS * PER_PUBLISHER);

    let bounds = bounds(&app.describe(TOPIC).await);
    assert_eq!(bounds.len(), PARTITIONS as usize);
    let mut total = 0;
    for (partition, (log_start, high_watermark)) in (0u32..).zip(&bounds) {
        let acked = by_position.keys().filter(|(p, _)| *p == partition).count() as u64;
        assert_eq!(*log_start, 0, "partition {partition} log start");
        assert!(acked > 0, "partition {partition} got no records");
        total += acked;

        // Every offset below the high watermark holds an acknowledged record (on Kafka
        // the others hold transaction markers), and nothing else is stored.
        let records = app.fetch_all(TOPIC, partition, *high_watermark, 500).await;
        assert_eq!(
            records.len() as u64,
            acked,
            "partition {partition}: stored vs acked records"
        );
        let mut last_timestamp = i64::MIN;
        for record in &records {
            let offset = record["offset"].as_u64().expect("offset");
            let sent = &by_position[&(partition, offset)];
            assert_eq!(record["value"], sent.value, "value at {partition}/{offset}");
            assert_eq!(record["value"]["publisher"], sent.publisher);
            assert_eq!(record["value"]["seq"], sent.seq);
            assert_eq!(
                record["key"],
                json!(sent.key),
                "key at {partition}/{offset}"
            );
            assert_eq!(
                record["headers"],
                json!(sent.headers),
                "headers at {partition}/{offset}"
            );
            let timestamp = record["timestamp"].as_i64().expect("timestamp");
            assert!(
                timestamp >= last_timestamp,
                "timestamps go back at {partition}/{offset}"
            );
            last_timestamp = timestamp;
        }
    }
    assert_eq!(total, (PUBLISHERS * PER_PUBLISHER) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_requests_stay_contiguous_and_rotate_over_partitions() {
    const TOPIC: &str = "keyless";
    const PARTITIONS: u32 = 3;
    const TASKS: usize = 12;
    const REQUESTS: usize = 15;
    const PER_REQUEST: usize = 8;

    let app = Arc::new(TestApp::spawn().await);
    app.create_topic(TOPIC, PARTITIONS).await;

    let handles = (0..TASKS)
        .map(|task| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut placed = Vec::new();
                for request in 0..REQUESTS {
                    let records: Vec<Value> = (0..PER_REQUEST)
                        .map(|i| json!({"value": {"task": task, "request": request, "i": i}}))
                        .collect();
                    let offsets = app.publish_ok(TOPIC, Value::Array(records)).await;
                    assert_eq!(offsets.len(), PER_REQUEST);
                    let (partition, base) = offsets[0];
                    for (i, (p, o)) in offsets.iter().enumerate() {
                        assert_eq!(*p, partition, "keyless request split: {offsets:?}");
                        assert_eq!(
                            *o,
                            base + i as u64,
                            "keyless request not contiguous: {offsets:?}"
                        );
                    }
                    placed.push((task, request, partition, base));
                }
                placed
            })
        })
        .collect();
    let placed: Vec<_> = join_all(handles).await.into_iter().flatten().collect();

    // Round-robin per request: every partition gets the same number of requests (±1).
    let mut requests_per_partition = vec![0usize; PARTITIONS as usize];
    for (_, _, partition, _) in &placed {
        requests_per_partition[*partition as usize] += 1;
    }
    let (min, max) = (
        requests_per_partition.iter().min().copied().unwrap_or(0),
        requests_per_partition.iter().max().copied().unwrap_or(0),
    );
    assert!(
        max - min <= 1,
        "keyless requests not rotated evenly: {requests_per_partition:?}"
    );

    let bounds = bounds(&app.describe(TOPIC).await);
    let mut contents = Vec::new();
    for (partition, (_, high_watermark)) in (0u32..).zip(&bounds) {
        let stored = app.fetch_all(TOPIC, partition, *high_watermark, 64).await;
        assert_eq!(
            stored.len(),
            requests_per_partition[partition as usize] * PER_REQUEST,
            "partition {partition}: records stored"
        );
        let by_offset: HashMap<u64, Value> = stored
            .into_iter()
            .map(|record| (record["offset"].as_u64().expect("offset"), record))
            .collect();
        contents.push(by_offset);
    }
    for (task, request, partition, base) in placed {
        for i in 0..PER_REQUEST {
            // A request's records are contiguous: offsets base, base + 1, ….
            let record = &contents[partition as usize][&(base + i as u64)];
            assert_eq!(
                record["value"],
                json!({"task": task, "request": request, "i": i}),
                "request ({task}, {request}) at {partition}/{}",
                base as usize + i
            );
            assert_eq!(record["key"], Value::Null);
        }
    }
}

/// Several keys, each sent many times at once: every copy is answered 200 with the same
/// offsets, exactly one copy per key appends and answers without `Idempotency-Replayed`
/// (all others say `true`), and each request's two keyless records and keyed one are
/// stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_of_one_idempotency_key_append_once() {
    const TOPIC: &str = "idempotent";
    const KEYS: usize = 8;
    const REPEATS: usize = 16;
    const PER_REQUEST: usize = 3;

    let app = Arc::new(TestApp::spawn().await);
    app.create_topic(TOPIC, 2).await;

    // Every key is sent REPEATS times at once, all copies racing into the writer.
    let handles = (0..KEYS * REPEATS)
        .map(|n| {
            let app = app.clone();
            let key = n % KEYS;
            tokio::spawn(async move {
                let records = json!([
                    {"value": {"key": key, "i": 0}},
                    {"value": {"key": key, "i": 1}},
                    {"value": {"key": key, "i": 2}, "key": format!("k{key}")},
                ]);
                let response = app
                    .publish_with_key(TOPIC, &format!("order-{key}"), records)
                    .await;
                assert_eq!(response.status(), 200);
                let replayed = response
                    .headers()
                    .get("Idempotency-Replayed")
                    .map(|v| v.to_str().unwrap_or("<not ASCII>").to_owned());
                let body = json_body(response).await;
                (key, replayed, body["offsets"].clone())
            })
        })
        .collect();
    let answers = join_all(handles).await;

    let mut first: HashMap<usize, Value> = HashMap::new();
    let mut appended = vec![0usize; KEYS];
    for (key, replayed, offsets) in &answers {
        let same = first.entry(*key).or_insert_with(|| offsets.clone());
        assert_eq!(
            offsets, same,
            "key {key}: repeats answered different offsets"
        );
        match replayed.as_deref() {
            None => appended[*key] += 1,
            Some("true") => {}
            Some(other) => panic!("key {key}: Idempotency-Replayed: {other}"),
        }
    }
    assert_eq!(
        appended,
        vec![1; KEYS],
        "per key, exactly one repeat may append (and answer without Idempotency-Replayed)"
    );

    let total: u64 = app.record_counts(TOPIC).await.iter().sum();
    assert_eq!(
        total,
        (KEYS * PER_REQUEST) as u64,
        "repeats appended records"
    );
    for (key, offsets) in &first {
        let positions = offsets_in(&json!({ "offsets": offsets }));
        assert_eq!(positions.len(), PER_REQUEST, "key {key}: {offsets}");
        for (i, (partition, offset)) in positions.into_iter().enumerate() {
            let body = app
                .fetch_ok(TOPIC, partition, &format!("offset={offset}&limit=1"))
                .await;
            assert_eq!(body["records"][0]["value"], json!({"key": key, "i": i}));
        }
    }
}
