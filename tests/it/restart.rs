//! A graceful stop and a start on the same data directory lose nothing: records,
//! offsets, topics with their settings, and idempotency keys all come back.

use crate::harness::redb_only;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestApp, json_body, offsets_in, offsets_of, records, replayed};

/// The raw body of a fetch of a whole (small) partition: compared byte for byte.
async fn raw_partition(app: &TestApp, topic: &str, partition: u32) -> String {
    let response = app
        .fetch(topic, partition, "offset=0&limit=1000&max_bytes=8388608")
        .await;
    assert_eq!(response.status(), 200, "fetch {topic}/{partition}");
    response.text().await.expect("body")
}

/// The records of a [`raw_partition`] body.
fn records_of(raw: &str) -> Vec<Value> {
    let body: Value = serde_json::from_str(raw).expect("fetch body is JSON");
    records(&body).clone()
}

/// Records with keys, headers and values of every JSON shape.
fn varied_records() -> Vec<Value> {
    let values = [
        json!({"order": 1, "items": [{"sku": "A-1", "qty": 2}], "total": 19.99}),
        json!("text with \"quotes\", \\ backslash, \n newline, \t tab, é 中文 🎉"),
        json!(42),
        json!(-7),
        json!(-1234.5678e-3),
        json!(12_345_678_901_234_567_890u64),
        json!(1e300),
        json!(true),
        json!(false),
        json!(null),
        json!([]),
        json!({}),
        json!([[[[[1, "deep"]]]]]),
        json!("x".repeat(100_000)),
        json!({"unicode-key-ü": "\u{0}\u{1f}", "empty": ""}),
    ];
    let keys = [None, Some("k1"), Some("ключ-ü"), Some(""), Some("k1")];
    let headers = [
        json!({}),
        json!({"content-type": "application/json", "trace-id": "abc-123"}),
        json!({"ünïcödé": "välue ✓", "empty": ""}),
    ];
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let mut record = json!({ "value": value, "headers": headers[i % headers.len()] });
            if let Some(key) = keys[i % keys.len()] {
                record["key"] = json!(key);
            }
            if i % 4 == 3 {
                record["partition"] = json!(2);
            }
            record
        })
        .collect()
}

#[tokio::test]
async fn records_offsets_and_topics_survive_a_graceful_restart() {
    let app = TestApp::spawn().await;
    app.create_topic_with(json!({"name": "orders", "partitions": 3, "retention_ms": 3_600_000, "retention_bytes": 10_485_760})).await;
    app.create_topic_with(json!({"name": "forever", "partitions": 1, "retention_ms": -1}))
        .await;
    app.create_topic_with(json!({"name": "idle", "partitions": 2}))
        .await;
    app.create_topic_with(json!({"name": "grown", "partitions": 1}))
        .await;
    app.create_topic_with(json!({"name": "gone", "partitions": 1}))
        .await;

    // What was published, by position, to check content after the restart.
    let mut published: BTreeMap<(u32, u64), Value> = BTreeMap::new();
    let records = varied_records();
    for chunk in records.chunks(4) {
        for (position, record) in app
            .publish_ok("orders", Value::Array(chunk.to_vec()))
            .await
            .into_iter()
            .zip(chunk)
        {
            assert!(published.insert(position, record.clone()).is_none());
        }
    }
    // One record per request too, so the partitions hold many batches.
    for record in records.iter().take(9) {
        let position = app.publish_ok("orders", json!([record])).await;
        assert!(published.insert(position[0], record.clone()).is_none());
    }

    // Values are served exactly as sent, down to the formatting of numbers.
    let raw_body = r#"{"records": [{"value": {"price" : 1.50, "list":[1,2 ,3], "big": 1e2}, "key": "raw"}, {"value": -0.0}]}"#;
    let response = app
        .publish_raw("forever", Some("application/json"), raw_body)
        .await;
    assert_eq!(offsets_of(response).await, vec![(0, 0), (0, 1)]);

    // A topic whose settings change before the restart.
    app.publish_ok("grown", json!([{"value": "p0 before"}]))
        .await;
    let response = app
        .patch_topic(
            "grown",
            json!({"partitions": 4, "retention_ms": 60_000, "retention_bytes": 4096}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.publish_ok("grown", json!([{"value": "p3 after", "partition": 3}]))
            .await,
        vec![(3, 0)]
    );

    // A deleted topic stays deleted.
    app.publish_ok("gone", json!([{"value": 1}])).await;
    assert_eq!(app.delete_topic("gone").await.status(), 204);

    let topics = [("orders", 3), ("forever", 1), ("idle", 2), ("grown", 4)];
    let mut before = BTreeMap::new();
    for (topic, partitions) in topics {
        let raw: Vec<String> = {
            let mut raw = Vec::new();
            for p in 0..partitions {
                raw.push(raw_partition(&app, topic, p).await);
            }
            raw
        };
        before.insert(topic, (app.describe(topic).await, raw));
    }
    let list_before = app.list_body().await;
    assert!(records_of(&before["forever"].1[0])[0]["value"].is_object());
    assert!(
        before["forever"].1[0].contains(r#""value":{"price" : 1.50, "list":[1,2 ,3], "big": 1e2}"#),
        "value not served verbatim: {}",
        before["forever"].1[0]
    );

    // Storage: one redb database file in the data directory (on Kafka, none).
    let databases = std::fs::read_dir(app.data_dir())
        .expect("read data dir")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "redb"))
        .count();
    let expected = usize::from(crate::harness::dense_offsets());
    assert_eq!(
        databases,
        expected,
        "redb files in {}",
        app.data_dir().display()
    );

    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, &[]).await;

    assert_eq!(
        app.list_body().await,
        list_before,
        "topic list after restart"
    );
    for (topic, (description, raw)) in &before {
        assert_eq!(
            &app.describe(topic).await,
            description,
            "{topic} after restart"
        );
        for (p, raw) in (0u32..).zip(raw) {
            let now = raw_partition(&app, topic, p).await;
            assert_eq!(&now, raw, "{topic}/{p} not byte-identical after restart");
        }
    }
    let orders = &before["orders"].0;
    assert_eq!(orders["partitions"], 3);
    assert_eq!(orders["retention_ms"], 3_600_000);
    assert_eq!(orders["retention_bytes"], 10_485_760);
    assert_eq!(before["forever"].0["retention_ms"], -1);
    let grown = &before["grown"].0;
    assert_eq!(
        (grown["partitions"].clone(), grown["retention_ms"].clone()),
        (json!(4), json!(60_000))
    );
    assert_eq!(grown["retention_bytes"], 4096);
    assert_eq!(
        app.get_topic("gone").await.status(),
        404,
        "deleted topic came back"
    );

    // Every record is there with what was published.
    let mut old_hwm = Vec::new();
    let mut old_count = Vec::new();
    let mut last_timestamp = Vec::new();
    for (p, raw) in (0u32..).zip(&before["orders"].1) {
        let records = records_of(raw);
        for record in &records {
            let offset = record["offset"].as_u64().expect("offset");
            let sent = &published[&(p, offset)];
            assert_eq!(
                record["value"], sent["value"],
                "value at orders/{p}/{offset}"
            );
            assert_eq!(
                record["key"],
                sent.get("key").cloned().unwrap_or(Value::Null),
                "key at {p}/{offset}"
            );
            assert_eq!(
                record["headers"], sent["headers"],
                "headers at {p}/{offset}"
            );
        }
        let expected = published
            .keys()
            .filter(|(partition, _)| *partition == p)
            .count();
        assert_eq!(records.len(), expected, "orders/{p} record count");
        let high_watermark = orders["partition_offsets"][p as usize]["high_watermark"]
            .as_u64()
            .expect("high_watermark");
        if crate::harness::dense_offsets() {
            assert_eq!(high_watermark, expected as u64);
        }
        old_count.push(expected as u64);
        old_hwm.push(high_watermark);
        last_timestamp.push(
            records
                .last()
                .map_or(i64::MIN, |r| r["timestamp"].as_i64().expect("ts")),
        );
    }

    assert_eq!(old_count.iter().sum::<u64>(), published.len() as u64);
    assert!(
        old_count.iter().all(|count| *count > 0),
        "every partition got records: {old_count:?}"
    );

    // New records continue at the old high watermarks: no offset is reused.
    for p in 0..3u32 {
        let position = app
            .publish_ok("orders", json!([{"value": {"after": p}, "partition": p}]))
            .await;
        assert_eq!(
            position,
            vec![(p, old_hwm[p as usize])],
            "first offset after restart"
        );
        let response = app
            .fetch("orders", p, &format!("offset={}", old_hwm[p as usize]))
            .await;
        let body = json_body(response).await;
        assert_eq!(body["records"][0]["value"], json!({"after": p}));
        let timestamp = body["records"][0]["timestamp"].as_i64().expect("timestamp");
        assert!(
            timestamp >= last_timestamp[p as usize],
            "timestamp went back after restart"
        );
    }
    let next = app.next_offset("grown", 3).await;
    let position = app
        .publish_ok("grown", json!([{"value": "p3 again", "partition": 3}]))
        .await;
    assert_eq!(position, vec![(3, next)]);
    let mut new_hwm = Vec::new();
    for p in 0..3u32 {
        new_hwm.push(app.next_offset("orders", p).await);
    }

    // And once more: what was written after the first restart survives the second.
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, &[]).await;
    let orders = app.describe("orders").await;
    for p in 0..3usize {
        assert_eq!(orders["partition_offsets"][p]["high_watermark"], new_hwm[p]);
        let records = records_of(&raw_partition(&app, "orders", p as u32).await);
        assert_eq!(records.len() as u64, old_count[p] + 1);
        assert_eq!(
            records[..records.len() - 1],
            records_of(&before["orders"].1[p])[..]
        );
        assert_eq!(records[records.len() - 1]["value"], json!({"after": p}));
    }
    assert_eq!(records_of(&raw_partition(&app, "grown", 3).await).len(), 2);
}

#[tokio::test]
async fn idempotency_key_survives_a_restart() {
    let app = TestApp::spawn().await;
    app.create_topic("payments", 2).await;
    app.publish_ok("payments", json!([{"value": "warm-up", "partition": 1}]))
        .await;
    let records = json!([
        {"value": {"amount": 10}, "key": "alice"},
        {"value": {"amount": 20}, "partition": 1},
        {"value": {"amount": 30}},
    ]);

    let first = app
        .publish_with_key("payments", "pay-0001", records.clone())
        .await;
    assert!(!replayed(&first), "first publish marked as replayed");
    let first = offsets_of(first).await;
    assert_eq!(first.len(), 3);
    let stored = app.record_counts("payments").await;
    let hwm = app.high_watermarks("payments").await;

    // Replay before the restart, as a baseline.
    let again = app
        .publish_with_key("payments", "pay-0001", records.clone())
        .await;
    assert!(replayed(&again), "repeat before restart not replayed");
    assert_eq!(offsets_of(again).await, first);

    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, &[]).await;

    let after = app
        .publish_with_key("payments", "pay-0001", records.clone())
        .await;
    assert!(
        replayed(&after),
        "repeat after restart not marked Idempotency-Replayed: true"
    );
    assert_eq!(
        offsets_of(after).await,
        first,
        "replay after restart changed offsets"
    );
    assert_eq!(
        app.record_counts("payments").await,
        stored,
        "replay after restart appended"
    );

    // A new key appends, right at the high watermark.
    let fresh = app
        .publish_with_key(
            "payments",
            "pay-0002",
            json!([{"value": 40, "partition": 1}]),
        )
        .await;
    assert!(!replayed(&fresh));
    assert_eq!(offsets_of(fresh).await, vec![(1, hwm[1])]);
}

/// What happened to one publish sent while the server was stopping.
enum Outcome {
    Acked(Vec<(u32, u64)>),
    /// Refused with 503: must have appended nothing.
    Refused,
    /// The connection went away: may or may not have been committed.
    Unknown,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_under_load_keeps_every_acknowledged_record() {
    const PUBLISHERS: usize = 8;
    const REQUESTS: usize = 150;
    const PER_REQUEST: usize = 2;

    let app = TestApp::spawn().await;
    app.create_topic("busy", 3).await;

    // Requests are built through the harness up front (so they carry its credentials),
    // then sent while `stop` runs and takes `app` away.
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let requests: Vec<_> = (0..REQUESTS)
                .map(|r| {
                    let ids: Vec<String> = (0..PER_REQUEST).map(|i| format!("p{p}-r{r}-i{i}")).collect();
                    let records: Vec<Value> = ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| json!({"value": {"id": id}, "key": (i == 0).then(|| format!("k{r}"))}))
                        .collect();
                    let builder = app.post("/v1/topics/busy/records").json(&json!({ "records": records }));
                    (builder, ids)
                })
                .collect();
            let acked = acked.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for (builder, ids) in requests {
                    let outcome = match builder.send().await {
                        Ok(response) if response.status() == 200 => match response.json::<Value>().await {
                            Ok(body) => {
                                let positions = offsets_in(&body);
                                assert_eq!(positions.len(), ids.len());
                                acked.fetch_add(ids.len(), std::sync::atomic::Ordering::SeqCst);
                                Outcome::Acked(positions)
                            }
                            Err(_) => Outcome::Unknown,
                        },
                        Ok(response) => {
                            let status = response.status();
                            let body = response.text().await.unwrap_or_default();
                            assert_eq!(status, 503, "publish during shutdown answered {status}: {body}");
                            Outcome::Refused
                        }
                        Err(_) => Outcome::Unknown,
                    };
                    let last = !matches!(outcome, Outcome::Acked(_));
                    outcomes.push((ids, outcome));
                    if last {
                        break;
                    }
                }
                outcomes
            })
        })
        .collect();

    let started = Instant::now();
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 300 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "publishers made no progress"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stopping = Instant::now();
    let dir = tokio::time::timeout(Duration::from_secs(40), app.stop())
        .await
        .expect("graceful stop hung while publishers were busy");
    let stop_took = stopping.elapsed();
    assert!(
        stop_took < Duration::from_secs(10),
        "graceful stop under load took {stop_took:?}"
    );

    let mut outcomes = Vec::new();
    for publisher in publishers {
        let finished = tokio::time::timeout(Duration::from_secs(30), publisher)
            .await
            .expect("publisher still running after the stop");
        match finished {
            Ok(result) => outcomes.extend(result),
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("publisher failed: {err}"),
        }
    }

    let app = TestApp::spawn_in(dir, &[]).await;
    let mut stored: BTreeMap<String, (u32, u64)> = BTreeMap::new();
    let high_watermarks = app.high_watermarks("busy").await;
    for partition in 0..3u32 {
        let high_watermark = high_watermarks[partition as usize];
        // `fetch_all` checks that the pages are dense (on Kafka, increasing).
        let stored_here = app.fetch_all("busy", partition, high_watermark, 1000).await;
        for record in &stored_here {
            let offset = record["offset"].as_u64().expect("offset");
            let id = record["value"]["id"].as_str().expect("id").to_owned();
            let twice = stored.insert(id.clone(), (partition, offset));
            assert!(twice.is_none(), "{id} stored twice");
        }
    }
    let mut acked_count = 0;
    for (ids, outcome) in &outcomes {
        match outcome {
            Outcome::Acked(positions) => {
                acked_count += ids.len();
                for (id, position) in ids.iter().zip(positions) {
                    assert_eq!(
                        stored.get(id),
                        Some(position),
                        "acknowledged {id} lost or moved by a graceful stop"
                    );
                }
            }
            Outcome::Refused => {
                assert!(
                    ids.iter().all(|id| !stored.contains_key(id)),
                    "refused request {ids:?} was stored"
                );
            }
            Outcome::Unknown => {
                let present = ids.iter().filter(|id| stored.contains_key(*id)).count();
                assert!(
                    present == 0 || present == ids.len(),
                    "request {ids:?} partly stored"
                );
            }
        }
    }
    assert!(acked_count >= 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_can_be_reopened_as_soon_as_stop_returns() {
    redb_only!("the database file's lock");
    const CYCLES: usize = 30;
    let mut app = TestApp::spawn().await;
    app.create_topic("reopen", 2).await;
    for cycle in 0..CYCLES {
        // Several connections at once, so every worker has served something.
        let publishes: Vec<_> = (0..8)
            .map(|i| {
                app.post("/v1/topics/reopen/records")
                    .json(&json!({"records": [{"value": {"cycle": cycle, "i": i}}]}))
                    .send()
            })
            .collect();
        for publish in publishes {
            assert_eq!(publish.await.expect("publish").status(), 200);
        }
        let dir = app.stop().await;
        // `stop` has returned, so the database must be closed and free to open again;
        // the harness panics with "already in use by another tidegate process" if not.
        app = TestApp::spawn_in(dir, &[]).await;
    }
    let total: u64 = app.high_watermarks("reopen").await.iter().sum();
    assert_eq!(total, (CYCLES * 8) as u64);
}
