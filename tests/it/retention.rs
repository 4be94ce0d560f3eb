//! Retention: whole batches past a topic's `retention_ms` or `retention_bytes` are
//! deleted and `log_start_offset` advances; every reader below the start is told so.

use crate::harness::redb_only;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestApp, expect_error, json_body, records};
use crate::metrics::{scrape, value as metric};
use crate::process::{Process, open_server_args};
use crate::push::client::{WAIT, Ws};

/// Retention passes run this often in these tests.
const FAST_RETENTION: [&str; 2] = ["--retention-check-interval-ms", "50"];
/// Longest wait for a retention pass to show.
const DEADLINE: Duration = Duration::from_secs(20);

/// A value of about `len` bytes, numbered so its offset can be checked.
fn value(n: u64, len: usize) -> Value {
    json!({"n": n, "pad": "x".repeat(len)})
}

/// Publishes `count` single-record requests (each its own batch) to partition 0.
async fn publish_batches(app: &TestApp, topic: &str, first: u64, count: u64, len: usize) {
    for n in first..first + count {
        let offsets = app
            .publish_ok(topic, json!([{"value": value(n, len), "partition": 0}]))
            .await;
        assert_eq!(offsets, vec![(0, n)]);
    }
}

/// Partition 0's bounds and size once `done` holds for them; panics after [`DEADLINE`].
async fn wait_for_partition(
    app: &TestApp,
    topic: &str,
    done: impl Fn(&Value) -> bool,
) -> (u64, u64, u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let details = app.describe(topic).await;
        let partition = &details["partition_offsets"][0];
        if done(partition) {
            return (
                partition["log_start_offset"].as_u64().expect("start"),
                partition["high_watermark"].as_u64().expect("hwm"),
                partition["size_bytes"].as_u64().expect("size"),
            );
        }
        assert!(
            Instant::now() < deadline,
            "retention never got to {partition}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn log_start_at_least(start: u64) -> impl Fn(&Value) -> bool {
    move |partition| partition["log_start_offset"].as_u64() >= Some(start)
}

/// Retention by bytes is done with a partition of equal-sized batches: it moved the start,
/// keeps at least `keep` bytes, and would fall below them without its oldest batch.
fn trimmed_to(keep: u64) -> impl Fn(&Value) -> bool {
    move |partition| {
        let number = |field: &str| partition[field].as_u64().unwrap_or(0);
        let (start, size) = (number("log_start_offset"), number("size_bytes"));
        let kept = number("high_watermark") - start;
        start > 0 && kept > 0 && size >= keep && size - size / kept < keep
    }
}

/// Records from the log start on are intact: dense, in order, with their values.
async fn assert_intact_from(app: &TestApp, topic: &str, start: u64, high_watermark: u64) {
    let mut next = start;
    while next < high_watermark {
        let body = app
            .fetch_ok(topic, 0, &format!("offset={next}&limit=100"))
            .await;
        assert_eq!(body["log_start_offset"], start);
        for record in records(&body) {
            assert_eq!(record["offset"], next);
            assert_eq!(record["value"]["n"], next, "record {next} intact");
            next += 1;
        }
    }
}

#[tokio::test]
async fn retention_bytes_keeps_the_newest_bytes_and_advances_the_start() {
    redb_only!(
        "redb's retention passes and their timing; Kafka retains by segment, by itself (gaps below the start are in the conformance suite)"
    );
    let app = TestApp::spawn_with(&FAST_RETENTION).await;
    app.create_topic_with(json!({"name": "sized", "partitions": 1, "retention_bytes": 2000}))
        .await;
    publish_batches(&app, "sized", 0, 40, 200).await;

    // Every batch is one ~230-byte record: Kafka's rule keeps the fewest newest batches
    // holding at least retention_bytes, so about 9 of 40 remain.
    let (start, high_watermark, _) = wait_for_partition(&app, "sized", trimmed_to(2000)).await;
    assert_eq!(high_watermark, 40);
    assert!(start > 20, "most batches went: the start is {start}");
    assert_intact_from(&app, "sized", start, high_watermark).await;
    // The counters move after the commit that the bounds come from.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let metrics = scrape(&app).await;
        let deleted = |name: &str| metric(&metrics, name, &[]);
        if deleted("tidegate_retention_deleted_records_total") == start as f64 {
            assert_eq!(
                deleted("tidegate_retention_deleted_batches_total"),
                start as f64
            );
            assert!(deleted("tidegate_retention_deleted_bytes_total") > 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention counters never reached {start}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let below = app
        .fetch("sized", 0, &format!("offset={}", start - 1))
        .await;
    let body = expect_error(below, 416, "offset_out_of_range").await;
    let message = body["message"].as_str().expect("message");
    assert!(message.contains(&start.to_string()), "{message}");
}

#[tokio::test]
async fn retention_ms_deletes_old_batches_and_the_start_survives_a_restart() {
    redb_only!(
        "redb's retention passes and their timing; Kafka retains by segment, by itself (gaps below the start are in the conformance suite)"
    );
    let app = TestApp::spawn_with(&FAST_RETENTION).await;
    app.create_topic_with(json!({"name": "aging", "partitions": 1, "retention_ms": 600_000}))
        .await;
    publish_batches(&app, "aging", 0, 5, 10).await;
    // Nothing is old enough yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        wait_for_partition(&app, "aging", |_| true).await.0,
        0,
        "young records stay"
    );

    let patched = app.patch_topic("aging", json!({"retention_ms": 200})).await;
    assert_eq!(patched.status(), 200);
    let (start, high_watermark, size) =
        wait_for_partition(&app, "aging", log_start_at_least(5)).await;
    assert_eq!(
        (start, high_watermark, size),
        (5, 5, 0),
        "all five aged out"
    );

    // New records are kept until they age too; retention off keeps them for good.
    let patched = app.patch_topic("aging", json!({"retention_ms": -1})).await;
    assert_eq!(patched.status(), 200);
    publish_batches(&app, "aging", 5, 3, 10).await;
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, &FAST_RETENTION).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (start, high_watermark, size) = wait_for_partition(&app, "aging", |_| true).await;
    assert_eq!(
        (start, high_watermark),
        (5, 8),
        "the start survives a restart"
    );
    assert!(size > 0);
    assert_intact_from(&app, "aging", 5, 8).await;
    expect_error(
        app.fetch("aging", 0, "offset=0").await,
        416,
        "offset_out_of_range",
    )
    .await;
}

#[tokio::test]
async fn websocket_and_group_readers_below_the_start_are_told_and_go_on() {
    redb_only!(
        "redb's retention passes and their timing; Kafka retains by segment, by itself (gaps below the start are in the conformance suite)"
    );
    let app = TestApp::spawn_with(&FAST_RETENTION).await;
    app.create_topic_with(json!({"name": "trimmed", "partitions": 1, "retention_bytes": 500}))
        .await;
    publish_batches(&app, "trimmed", 0, 2, 50).await;
    // A group commits offset 1, then retention deletes past it.
    let from_earliest = json!({"topics": ["trimmed"], "auto_offset_reset": "earliest", "limit": 1});
    let poll = app.poll_group("lagging", from_earliest.clone()).await;
    app.commit_as(
        "lagging",
        &poll,
        json!([{"topic": "trimmed", "partition": 0, "offset": 1}]),
    )
    .await;
    let leave = app
        .request(
            reqwest::Method::DELETE,
            &format!(
                "/v1/groups/lagging/members/{}",
                poll["member_id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .expect("leave");
    assert_eq!(leave.status(), 204);
    publish_batches(&app, "trimmed", 2, 20, 50).await;
    let (start, high_watermark, _) = wait_for_partition(&app, "trimmed", trimmed_to(500)).await;
    assert!(
        start >= 2,
        "the committed offset 1 lies below the start {start}"
    );

    // The group's lag counts from its committed offset, below the start.
    let group = json_body(app.get("/v1/groups/lagging").send().await.expect("group")).await;
    let progress = &group["partitions"][0];
    assert_eq!(progress["committed_offset"], 1);
    assert_eq!(progress["lag"], high_watermark - 1);
    assert_eq!(progress["log_start_offset"], start);

    // A new member restarts per auto_offset_reset: earliest is the new start.
    let poll = app.poll_group("lagging", from_earliest).await;
    assert_eq!(poll["records"][0]["offset"], start, "{poll}");

    // A WebSocket subscriber asking for offset 0 hears where the log starts, then gets it.
    let mut ws = Ws::connect(&app.base_url, &app.admin_token).await;
    ws.send(
        json!({"op": "subscribe", "req": 1, "topic": "trimmed", "from": {"offsets": {"0": 0}}}),
    )
    .await;
    let mut told = false;
    let mut first_offset = None;
    let deadline = Instant::now() + WAIT;
    while first_offset.is_none() {
        assert!(Instant::now() < deadline, "no records after the notice");
        let message = ws.next().await.expect("the socket stays open");
        match message["type"].as_str() {
            Some("error") => {
                let text = message["error"]["message"].as_str().unwrap_or_default();
                assert!(text.contains(&format!("log start {start}")), "{message}");
                told = true;
            }
            Some("records") => first_offset = message["records"][0]["offset"].as_u64(),
            _ => {}
        }
    }
    assert!(told, "the gap was reported before delivery");
    assert_eq!(first_offset, Some(start));
}

/// The database file of a data directory.
fn database_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("tidegate.redb"))
        .expect("database file")
        .len()
}

#[tokio::test]
async fn the_database_file_stops_growing_under_a_steady_load_with_small_retention() {
    redb_only!(
        "redb's retention passes and their timing; Kafka retains by segment, by itself (gaps below the start are in the conformance suite)"
    );
    let app = TestApp::spawn_with(&FAST_RETENTION).await;
    app.create_topic_with(json!({"name": "steady", "partitions": 1, "retention_bytes": 65536}))
        .await;
    let round = |n: u64| {
        let records: Vec<Value> = (0..10)
            .map(|i| json!({"value": value(n * 10 + i, 1000), "partition": 0}))
            .collect();
        json!(records)
    };
    let mut sizes = Vec::new();
    for n in 0..1600 {
        app.publish_ok("steady", round(n)).await;
        if n % 100 == 99 {
            // Let retention catch up, so each sample sees the same retained size.
            tokio::time::sleep(Duration::from_millis(100)).await;
            sizes.push(database_len(app.data_dir()));
        }
    }
    // 16 MB were published; 64 KiB are kept. Freed pages are reused, so the file settles
    // within the first megabytes (redb allocates in regions, so it moves up and down by a
    // megabyte or two); without retention the second half alone would add 8 MB.
    let (first, second) = sizes.split_at(sizes.len() / 2);
    let peak = |sizes: &[u64]| sizes.iter().copied().max().unwrap_or(0);
    assert!(
        peak(second) <= peak(first) + 2_000_000,
        "the file kept growing: {sizes:?} bytes after each 1 MB"
    );
    assert!(
        peak(&sizes) < 6_000_000,
        "retention freed nothing: {sizes:?}"
    );
}

/// The JSON body of `GET url`.
async fn get_json(client: &reqwest::Client, url: String) -> Value {
    let response = client.get(&url).send().await;
    let response = response.unwrap_or_else(|err| panic!("GET {url}: {err}"));
    response.json().await.expect("a JSON body")
}

#[tokio::test]
async fn a_kill_during_retention_loses_no_record_above_the_start() {
    redb_only!(
        "redb's retention passes and their timing; Kafka retains by segment, by itself (gaps below the start are in the conformance suite)"
    );
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    let args = open_server_args(data, &FAST_RETENTION);
    let client = reqwest::Client::new();
    let mut server = Process::spawn(&args, "warn");
    let post = |url: String, body: Value| client.post(url).json(&body).send();
    let created = post(
        server.url("/v1/topics"),
        json!({"name": "killed", "partitions": 1}),
    )
    .await
    .expect("create");
    assert_eq!(created.status(), 201);
    // 3000 batches: retention needs several bounded passes to delete most of them.
    const BATCHES: u64 = 3000;
    for n in 0..BATCHES {
        let published = post(
            server.url("/v1/topics/killed/records"),
            json!({"records": [{"value": value(n, 20), "partition": 0}]}),
        )
        .await
        .expect("publish");
        assert_eq!(published.status(), 200);
    }
    let patched = client
        .patch(server.url("/v1/topics/killed"))
        .json(&json!({"retention_bytes": 1000}))
        .send()
        .await
        .expect("patch");
    assert_eq!(patched.status(), 200);
    // SIGKILL as soon as a pass has committed: the later passes (3 000 batches take three)
    // are then running or due. Either way nothing above the start may be lost.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let details = get_json(&client, server.url("/v1/topics/killed")).await;
        if details["partition_offsets"][0]["log_start_offset"].as_u64() > Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "retention never started");
    }
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status();
    server.stop();

    let server = Process::spawn(&args, "warn");
    let deadline = Instant::now() + DEADLINE;
    let (start, high_watermark) = loop {
        let details = get_json(&client, server.url("/v1/topics/killed")).await;
        let partition = &details["partition_offsets"][0];
        let start = partition["log_start_offset"].as_u64().expect("start");
        let high_watermark = partition["high_watermark"].as_u64().expect("hwm");
        assert_eq!(
            high_watermark, BATCHES,
            "every acknowledged record is counted"
        );
        if partition["size_bytes"].as_u64().expect("size") < 2000 {
            break (start, high_watermark);
        }
        assert!(
            Instant::now() < deadline,
            "retention did not finish: {partition}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut next = start;
    while next < high_watermark {
        let path = format!("/v1/topics/killed/partitions/0/records?offset={next}");
        let body = get_json(&client, server.url(&path)).await;
        for record in records(&body) {
            assert_eq!(record["value"]["n"], next, "record {next} intact");
            next += 1;
        }
    }
    assert!(start > 0 && start < BATCHES, "start {start}");
}
