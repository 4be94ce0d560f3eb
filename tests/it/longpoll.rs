//! Long polls (`wait_ms`): woken by a commit, ended by their time-out, by the topic
//! going away, and by a graceful shutdown, never left hanging.

use std::time::{Duration, Instant};

use reqwest::Response;
use serde_json::{Value, json};

use crate::harness::{TestApp, json_body};

/// Far beyond anything a healthy server needs, so a hang fails instead of stalling.
const HANG: Duration = Duration::from_secs(20);
/// Generous bound for "promptly" on a shared, noisy machine.
const PROMPT: Duration = Duration::from_secs(5);

/// Long-polls `topic/partition?query` while `meanwhile` runs, failing if either hangs.
/// Returns the poll's response, how long after `started` it came, and what `meanwhile`
/// returned.
async fn poll_while<T>(
    app: &TestApp,
    topic: &str,
    partition: u32,
    query: &str,
    started: Instant,
    meanwhile: impl Future<Output = T>,
) -> (Response, Duration, T) {
    let poll = async {
        let response = app.fetch(topic, partition, query).await;
        (response, started.elapsed())
    };
    let ((response, elapsed), result) =
        tokio::time::timeout(HANG, async { tokio::join!(poll, meanwhile) })
            .await
            .unwrap_or_else(|_| panic!("long poll of {topic}/{partition}?{query} hung"));
    (response, elapsed, result)
}

#[tokio::test]
async fn long_poll_returns_promptly_when_a_record_is_published() {
    let app = TestApp::spawn().await;
    app.create_topic("waiting", 2).await;
    let response = app
        .publish("waiting", json!([{"value": "before", "partition": 1}]))
        .await;
    assert_eq!(response.status(), 200);

    // Where the next record of partition 1 lands (1 on redb; on Kafka past a marker).
    let from = app.next_offset("waiting", 1).await;
    let started = Instant::now();
    let publish = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // A record on the other partition must not wake the poll with nothing.
        let other = app
            .publish("waiting", json!([{"value": "elsewhere", "partition": 0}]))
            .await;
        assert_eq!(other.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let published_at = started.elapsed();
        let response = app
            .publish(
                "waiting",
                json!([{"value": {"n": 2}, "key": "k", "partition": 1}]),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body = json_body(response).await;
        assert_eq!(body["offsets"], json!([{"partition": 1, "offset": from}]));
        published_at
    };
    let query = format!("offset={from}&wait_ms=10000");
    let (response, elapsed, published_at) =
        poll_while(&app, "waiting", 1, &query, started, publish).await;

    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert!(
        elapsed < PROMPT,
        "long poll took {elapsed:?} after a publish at {published_at:?}"
    );
    assert!(
        elapsed >= published_at,
        "long poll returned before the publish"
    );
    let records = body["records"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{body}");
    assert_eq!(records[0]["offset"], from);
    assert_eq!(records[0]["partition"], 1);
    assert_eq!(records[0]["value"], json!({"n": 2}));
    assert_eq!(records[0]["key"], "k");
    assert_eq!(body["next_offset"], body["high_watermark"], "{body}");
    assert!(body["next_offset"].as_u64().unwrap() > from, "{body}");
}

/// A `wait_ms=300` long poll of partition 0 of `topic` whose high watermark is `hwm`, from
/// `offset` (or, without one, the log start): it waits out the 300 ms, then answers an
/// empty list.
async fn assert_times_out_empty(app: &TestApp, topic: &str, offset: Option<u64>, hwm: u64) {
    let query = match offset {
        Some(offset) => format!("offset={offset}&wait_ms=300"),
        None => "wait_ms=300".to_owned(),
    };
    let started = Instant::now();
    let response = tokio::time::timeout(HANG, app.fetch(topic, 0, &query))
        .await
        .expect("long poll hung");
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200, "{query}");
    let body = json_body(response).await;
    assert_eq!(body["records"], json!([]), "{body}");
    assert_eq!(body["next_offset"], hwm, "{query}");
    assert_eq!(body["high_watermark"], hwm, "{query}");
    assert!(
        elapsed >= Duration::from_millis(250),
        "returned after only {elapsed:?} for {query}"
    );
    assert!(elapsed < PROMPT, "took {elapsed:?} for {query}");
}

#[tokio::test]
async fn long_poll_times_out_with_an_empty_list() {
    let app = TestApp::spawn().await;
    app.create_topic("quiet", 1).await;

    // On an empty partition (offset defaults to the log start, which is the hwm).
    assert_times_out_empty(&app, "quiet", None, 0).await;

    // At the high watermark of a partition that has records.
    let response = app
        .publish("quiet", json!([{"value": 1}, {"value": 2}]))
        .await;
    assert_eq!(response.status(), 200);
    let end = app.next_offset("quiet", 0).await;
    assert_times_out_empty(&app, "quiet", Some(end), end).await;

    // Below the high watermark a long poll does not wait at all.
    let started = Instant::now();
    let response = app.fetch("quiet", 0, "offset=0&wait_ms=10000").await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["records"].as_array().map(Vec::len), Some(2), "{body}");
    assert!(started.elapsed() < PROMPT, "waited with records available");
}

#[tokio::test]
async fn long_poll_on_a_deleted_topic_returns_instead_of_hanging() {
    let app = TestApp::spawn().await;
    app.create_topic("doomed", 2).await;

    let started = Instant::now();
    let delete = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let deleted_at = started.elapsed();
        assert_eq!(app.delete_topic("doomed").await.status(), 204);
        deleted_at
    };
    let query = "offset=0&wait_ms=30000";
    let (response, elapsed, deleted_at) =
        poll_while(&app, "doomed", 1, query, started, delete).await;

    assert!(
        elapsed >= deleted_at,
        "long poll ended before the delete: {elapsed:?}"
    );
    assert!(
        elapsed < PROMPT,
        "long poll took {elapsed:?} after a delete at {deleted_at:?}"
    );
    let status = response.status().as_u16();
    let body = json_body(response).await;
    match status {
        404 => assert_eq!(body["error"]["code"], "topic_not_found", "{body}"),
        200 => assert_eq!(body["records"], json!([]), "{body}"),
        other => panic!("long poll on a deleted topic answered {other}: {body}"),
    }
}

#[tokio::test]
async fn long_poll_survives_a_partition_increase_and_still_wakes() {
    let app = TestApp::spawn().await;
    app.create_topic("growing", 1).await;

    let started = Instant::now();
    let grow_then_publish = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let response = app.patch_topic("growing", json!({"partitions": 3})).await;
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let published_at = started.elapsed();
        let response = app
            .publish("growing", json!([{"value": "after", "partition": 0}]))
            .await;
        assert_eq!(response.status(), 200);
        published_at
    };
    let query = "offset=0&wait_ms=10000";
    let (response, elapsed, published_at) =
        poll_while(&app, "growing", 0, query, started, grow_then_publish).await;

    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert!(
        elapsed >= published_at,
        "long poll returned before the publish: {body}"
    );
    assert!(
        elapsed < PROMPT,
        "long poll took {elapsed:?} after a publish at {published_at:?}"
    );
    assert_eq!(body["records"][0]["value"], "after", "{body}");
}

#[tokio::test]
async fn graceful_shutdown_releases_a_waiting_long_poll() {
    let app = TestApp::spawn().await;
    app.create_topic("closing", 1).await;
    // Two polls at once leave two pooled connections, one of them idle during shutdown.
    let (first, second) = tokio::join!(
        app.fetch("closing", 0, "wait_ms=100"),
        app.fetch("closing", 0, "wait_ms=100")
    );
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );

    // Owned request futures, so they outlive `app` being consumed by `stop`.
    let url = "/v1/topics/closing/partitions/0/records?offset=0&wait_ms=30000";
    let started = Instant::now();
    let poll = tokio::spawn(app.get(url).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "long poll returned before shutdown");

    let stop_started = Instant::now();
    tokio::time::timeout(HANG, app.stop())
        .await
        .expect("graceful shutdown hung behind a long poll");
    let stop_took = stop_started.elapsed();
    assert!(
        stop_took < PROMPT,
        "shutdown took {stop_took:?} with a long poll waiting"
    );

    let answer = tokio::time::timeout(HANG, poll)
        .await
        .expect("long poll still waiting after shutdown")
        .expect("poll task");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "long poll ended after {elapsed:?}"
    );
    // The poll is answered (an empty list, or "shutting down"), not cut off mid-request.
    let response = answer.expect("long poll got an HTTP answer during graceful shutdown");
    let status = response.status().as_u16();
    let body: Value = json_body(response).await;
    match status {
        200 => assert_eq!(body["records"], json!([]), "{body}"),
        503 => assert_eq!(body["error"]["code"], "shutting_down", "{body}"),
        other => panic!("long poll answered {other} at shutdown: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_long_pollers_follow_every_record_in_order() {
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: usize = 100;
    const FOLLOWERS: usize = 4;
    const TOTAL: usize = PUBLISHERS * PER_PUBLISHER;

    let app = std::sync::Arc::new(TestApp::spawn().await);
    app.create_topic("tail", 1).await;

    // Followers start first, at offset 0 of an empty partition, and long-poll forward.
    let followers: Vec<_> = (0..FOLLOWERS)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(TOTAL);
                let mut next = 0u64;
                let mut polls = 0;
                while seen.len() < TOTAL {
                    polls += 1;
                    assert!(polls <= 10 * TOTAL, "follower made no progress");
                    let response = app
                        .fetch("tail", 0, &format!("offset={next}&limit=37&wait_ms=5000"))
                        .await;
                    assert_eq!(response.status(), 200);
                    let body = json_body(response).await;
                    for record in body["records"].as_array().expect("records") {
                        let offset = record["offset"].as_u64().expect("offset");
                        if crate::harness::dense_offsets() {
                            assert_eq!(offset, next, "follower skipped or repeated");
                        } else {
                            assert!(offset >= next, "follower repeated");
                        }
                        seen.push(record["value"].clone());
                        next = offset + 1;
                    }
                    let after = body["next_offset"].as_u64().expect("next_offset");
                    assert!(after >= next, "next_offset past the records");
                    next = after;
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let app = app.clone();
            tokio::spawn(async move {
                for s in 0..PER_PUBLISHER {
                    let response = app
                        .publish("tail", json!([{"value": {"p": p, "s": s}}]))
                        .await;
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for publisher in publishers {
        tokio::time::timeout(HANG, publisher)
            .await
            .expect("publisher hung")
            .expect("publisher");
    }

    // What the log holds, in order, is what every follower must have seen.
    let mut log = Vec::new();
    let mut next = 0;
    while log.len() < TOTAL {
        let response = app
            .fetch("tail", 0, &format!("offset={next}&limit=1000"))
            .await;
        let body = json_body(response).await;
        let page = body["records"].as_array().expect("records");
        assert!(!page.is_empty(), "log shorter than {TOTAL}: {body}");
        log.extend(page.iter().map(|r| r["value"].clone()));
        next = body["next_offset"].as_u64().expect("next_offset");
    }
    for follower in followers {
        let seen = tokio::time::timeout(HANG, follower)
            .await
            .expect("follower still waiting for records that were committed")
            .expect("follower");
        assert_eq!(
            seen, log,
            "a follower saw a different sequence than the log"
        );
    }
    // Each publisher's records are in the order it sent them.
    for p in 0..PUBLISHERS {
        let sequence: Vec<u64> = log
            .iter()
            .filter(|v| v["p"] == p)
            .map(|v| v["s"].as_u64().expect("s"))
            .collect();
        assert_eq!(sequence, (0..PER_PUBLISHER as u64).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn abandoned_long_polls_release_their_sockets_at_once() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8");
    let server =
        crate::process::Process::spawn(&crate::process::open_server_args(data, &[]), "warn");
    let created = reqwest::Client::new()
        .post(server.url("/v1/topics"))
        .json(&json!({"name": "quiet", "partitions": 1}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let idle = crate::process::open_fds(server.pid());
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    let mut polls = Vec::new();
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        stream
            .write_all(
                b"GET /v1/topics/quiet/partitions/0/records?offset=0&wait_ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n",
            )
            .await
            .expect("send");
        polls.push(stream);
    }
    let deadline = Instant::now() + PROMPT;
    // The client that created the topic may have closed its connection meanwhile.
    while crate::process::open_fds(server.pid()) < idle + 190 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = crate::process::open_fds(server.pid());
    assert!(
        held >= idle + 190,
        "{held} descriptors, idle {idle}: the polls are not held"
    );
    drop(polls);
    let released = Instant::now();
    while crate::process::open_fds(server.pid()) > idle + 10 && released.elapsed() < PROMPT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = crate::process::open_fds(server.pid());
    assert!(
        left <= idle + 10,
        "{left} descriptors open {:?} after the clients left (idle: {idle})",
        released.elapsed()
    );
}
