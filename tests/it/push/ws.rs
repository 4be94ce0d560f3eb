//! Plain WebSocket subscriptions, publish over WebSocket, auth, origins, slow consumers.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{Ws, refused_status};
use crate::harness::{TEST_SECRET, TestApp, offsets_of, token};

/// (partition, offset) of records.
fn positions(records: &[Value]) -> Vec<(u64, u64)> {
    records
        .iter()
        .map(|r| {
            (
                r["partition"].as_u64().unwrap(),
                r["offset"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Records of each partition must come in offset order with no gap.
fn assert_ordered(records: &[Value]) {
    let mut last: std::collections::BTreeMap<u64, u64> = Default::default();
    for (partition, offset) in positions(records) {
        if let Some(previous) = last.insert(partition, offset) {
            assert_eq!(
                offset,
                previous + 1,
                "partition {partition}: {offset} after {previous}"
            );
        }
    }
}

async fn publish_n(app: &TestApp, topic: &str, from: u64, count: u64) {
    let records: Vec<Value> = (from..from + count)
        .map(|n| json!({"key": format!("k{n}"), "value": n}))
        .collect();
    offsets_of(app.publish(topic, json!(records)).await).await;
}

#[tokio::test]
async fn subscribing_from_earliest_delivers_stored_then_live_records() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 3).await;
    publish_n(&app, "t", 0, 30).await;
    let mut ws = Ws::connect(&app.base_url, &app.admin_token).await;
    let subscribed = ws
        .subscribe(json!({"req": 7, "topic": "t", "from": "earliest"}))
        .await;
    assert_eq!(subscribed["req"], 7);
    assert_eq!(subscribed["assignment"], json!([0, 1, 2]));
    let (stored, _) = ws.records(30).await;
    assert_eq!(stored.len(), 30);
    assert_ordered(&stored);
    for partition in 0..3u64 {
        let first = stored.iter().find(|r| r["partition"] == partition);
        assert!(
            first.is_none_or(|r| r["offset"] == 0),
            "partition {partition} from 0"
        );
    }
    publish_n(&app, "t", 30, 10).await;
    let (live, _) = ws.records(10).await;
    let values: BTreeSet<u64> = live.iter().map(|r| r["value"].as_u64().unwrap()).collect();
    assert_eq!(values, (30..40).collect());
    assert!(
        ws.silent_for(Duration::from_millis(300)).await,
        "nothing more"
    );
}

#[tokio::test]
async fn every_subscriber_gets_every_record_and_unsubscribe_stops_delivery() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = Ws::connect(&app.base_url, &app.admin_token).await;
        ws.subscribe(json!({"topic": "t"})).await;
        clients.push(ws);
    }
    publish_n(&app, "t", 0, 20).await;
    for ws in &mut clients {
        let (records, _) = ws.records(20).await;
        assert_eq!(records.len(), 20);
        assert_ordered(&records);
    }
    clients[0]
        .send(json!({"op": "unsubscribe", "sub": "s1"}))
        .await;
    // An unknown subscription is an error message, not a close.
    clients[0]
        .send(json!({"op": "unsubscribe", "req": "x", "sub": "s9"}))
        .await;
    let error = clients[0].expect("error").await;
    assert_eq!(error["req"], "x");
    assert_eq!(error["error"]["code"], "not_found");
    publish_n(&app, "t", 20, 5).await;
    for ws in &mut clients[1..] {
        assert_eq!(ws.records(5).await.0.len(), 5);
    }
    assert!(
        clients[0].silent_for(Duration::from_millis(500)).await,
        "unsubscribed"
    );
}

#[tokio::test]
async fn a_cursor_resumes_exactly_after_a_disconnect() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 3).await;
    publish_n(&app, "t", 0, 40).await;
    let mut ws = Ws::connect(&app.base_url, &app.admin_token).await;
    ws.subscribe(json!({"topic": "t", "from": "earliest"}))
        .await;
    // Read one message only, then drop the connection mid-stream.
    let first = ws.expect("records").await;
    let mut seen: Vec<(u64, u64)> = positions(first["records"].as_array().unwrap());
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    ws.close().await;
    publish_n(&app, "t", 40, 20).await;

    let mut ws = Ws::connect(&app.base_url, &app.admin_token).await;
    let subscribed = ws
        .subscribe(json!({"topic": "t", "from": {"cursor": cursor}}))
        .await;
    assert_eq!(subscribed["cursor"], cursor);
    let (rest, _) = ws.records(60 - seen.len()).await;
    seen.extend(positions(&rest));
    let unique: BTreeSet<(u64, u64)> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicate");
    assert_eq!(unique.len(), 60, "no loss");
    assert!(ws.silent_for(Duration::from_millis(300)).await);

    // Explicit offsets per partition: partition 1 from 2, the others from now on.
    let mut ws = Ws::connect(&app.base_url, &app.admin_token).await;
    ws.subscribe(json!({"topic": "t", "from": {"offsets": {"1": 2}}}))
        .await;
    let stored = app.fetch_ok("t", 1, "offset=2&limit=1000").await;
    let (records, _) = ws.records(crate::harness::records(&stored).len()).await;
    assert!(records.iter().all(|r| r["partition"] == 1));
    assert_eq!(records[0]["offset"], 2);
}

#[tokio::test]
async fn publishing_over_websocket_follows_the_http_rules() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    let mut ws = Ws::connect(&app.base_url, &app.admin_token).await;
    ws.send(json!({"op": "publish", "req": "p1", "topic": "t",
                   "records": [{"key": "a", "value": {"n": 1}}, {"value": [1, 2], "partition": 1}]}))
        .await;
    let published = ws.expect("published").await;
    assert_eq!(published["req"], "p1");
    assert_eq!(published["offsets"].as_array().unwrap().len(), 2);
    assert_eq!(
        published["offsets"][1],
        json!({"partition": 1, "offset": 0})
    );
    assert_eq!(app.record_counts("t").await.iter().sum::<u64>(), 2);

    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let text = format!(
        r#"{{"op": "publish", "req": 2, "topic": "t", "records": [{{"value": 1}}, {{"value": {deep}}}]}}"#
    );
    ws.send_text(&text).await;
    let error = ws.expect("error").await;
    assert_eq!(error["req"], 2);
    assert_eq!(error["error"]["code"], "invalid_body");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("records[1]: value is nested"),
        "{error}"
    );

    for (records, code) in [
        (json!([]), "invalid_body"),
        (json!([{"value": 1, "partition": 9}]), "partition_not_found"),
        (json!([[null, 1]]), "invalid_body"),
    ] {
        ws.send(json!({"op": "publish", "topic": "t", "records": records}))
            .await;
        let error = ws.expect("error").await;
        assert_eq!(error["error"]["code"], code, "{records}: {error}");
    }
    for key in ["k-1", "k-1"] {
        ws.send(json!({"op": "publish", "topic": "t", "idempotency_key": key, "records": [{"value": 5}]})).await;
        ws.expect("published").await;
    }
    ws.send(
        json!({"op": "publish", "topic": "t", "idempotency_key": "k-1", "records": [{"value": 6}]}),
    )
    .await;
    assert_eq!(
        ws.expect("error").await["error"]["code"],
        "idempotency_key_reused"
    );
    assert_eq!(app.record_counts("t").await.iter().sum::<u64>(), 3);
}

#[tokio::test]
async fn scopes_are_checked_on_every_operation_and_bad_messages_get_errors() {
    let app = TestApp::spawn().await;
    app.create_topic("a", 1).await;
    app.create_topic("b", 1).await;
    let mut ws = Ws::connect(&app.base_url, &token("reader", "subscribe:a")).await;
    ws.subscribe(json!({"topic": "a"})).await;
    ws.send(json!({"op": "subscribe", "req": 1, "topic": "b"}))
        .await;
    let error = ws.expect("error").await;
    assert_eq!(
        (error["req"].clone(), error["error"]["code"].clone()),
        (json!(1), json!("forbidden"))
    );
    ws.send(json!({"op": "publish", "topic": "a", "records": [{"value": 1}]}))
        .await;
    assert_eq!(ws.expect("error").await["error"]["code"], "forbidden");
    ws.send(json!({"op": "subscribe", "topic": "a", "group": "g"}))
        .await;
    assert_eq!(ws.expect("error").await["error"]["code"], "forbidden");
    for bad in [
        "not json",
        "{}",
        r#"{"op": "dance"}"#,
        r#"{"op": "subscribe"}"#,
        "[1]",
    ] {
        ws.send_text(bad).await;
        let error = ws.expect("error").await;
        assert_eq!(error["error"]["code"], "invalid_body", "{bad}: {error}");
    }
    ws.send(json!({"op": "subscribe", "topic": "a", "from": {"cursor": "zz"}}))
        .await;
    assert_eq!(
        ws.expect("error").await["error"]["code"],
        "invalid_argument"
    );
    ws.send(json!({"op": "subscribe", "topic": "nope"})).await;
    assert_eq!(ws.expect("error").await["error"]["code"], "forbidden");
    // Still open and serving.
    publish_n(&app, "a", 0, 1).await;
    assert_eq!(ws.records(1).await.0.len(), 1);
}

fn short_token(scopes: &str, ttl: Duration) -> String {
    tidegate::auth::mint_hs256(TEST_SECRET.as_bytes(), "short", scopes, ttl, None, None)
        .expect("mint")
}

#[tokio::test]
async fn an_expired_token_closes_with_4001_and_a_refreshed_one_keeps_the_socket() {
    let app = TestApp::spawn_with(&["--jwt-leeway-secs", "0", "--ws-auth-timeout-ms", "500"]).await;
    app.create_topic("t", 1).await;
    let mut expiring = Ws::connect(
        &app.base_url,
        &short_token("subscribe:t", Duration::from_secs(2)),
    )
    .await;
    expiring.subscribe(json!({"topic": "t"})).await;
    assert_eq!(
        expiring.close_code(Duration::from_secs(6)).await,
        Some(4001)
    );

    let mut refreshed = Ws::connect(
        &app.base_url,
        &short_token("subscribe:t", Duration::from_secs(2)),
    )
    .await;
    refreshed.subscribe(json!({"topic": "t"})).await;
    refreshed
        .send(json!({"op": "auth", "req": "r", "token": token("long", "subscribe:t")}))
        .await;
    let authenticated = refreshed.expect("authenticated").await;
    assert_eq!(authenticated["req"], "r");
    assert!(
        refreshed.silent_for(Duration::from_secs(3)).await,
        "still open past the first expiry"
    );
    publish_n(&app, "t", 0, 1).await;
    assert_eq!(
        refreshed.records(1).await.0.len(),
        1,
        "the subscription lives on"
    );

    // A refreshed token with fewer scopes ends what it no longer covers.
    refreshed
        .send(json!({"op": "auth", "token": token("other", "subscribe:other")}))
        .await;
    let ended = refreshed.expect("error").await;
    assert_eq!(
        (ended["sub"].clone(), ended["error"]["code"].clone()),
        (json!("s1"), json!("forbidden"))
    );
    refreshed.expect("authenticated").await;

    // Without a token in the request, the first message must be `auth`.
    let mut late = Ws::open(&app.base_url, "", None, None)
        .await
        .expect("opens");
    late.send(json!({"op": "subscribe", "topic": "t"})).await;
    assert_eq!(late.expect("error").await["error"]["code"], "missing_token");
    late.send(json!({"op": "auth", "token": token("x", "subscribe:t")}))
        .await;
    late.expect("authenticated").await;
    late.subscribe(json!({"topic": "t"})).await;
    let mut silent = Ws::open(&app.base_url, "", None, None)
        .await
        .expect("opens");
    assert_eq!(
        silent.close_code(Duration::from_secs(5)).await,
        Some(4001),
        "no auth in time"
    );
    // A token in the query string works too; a bad one is refused before the upgrade.
    let query = format!("?access_token={}", token("x", "subscribe:t"));
    Ws::open(&app.base_url, &query, None, None)
        .await
        .expect("opens");
    let refused = Ws::open(&app.base_url, "?access_token=garbage", None, None).await;
    assert_eq!(refused.err().as_ref().and_then(refused_status), Some(401));
}

#[tokio::test]
async fn origins_are_checked_on_the_upgrade() {
    let app = TestApp::spawn_with(&["--allowed-origins", "https://app.example"]).await;
    let token = app.admin_token.clone();
    let evil = Ws::open(
        &app.base_url,
        "",
        Some(&token),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(evil.err().as_ref().and_then(refused_status), Some(403));
    Ws::open(&app.base_url, "", Some(&token), Some("https://app.example"))
        .await
        .expect("allowed origin");
    Ws::open(&app.base_url, "", Some(&token), Some(&app.base_url))
        .await
        .expect("same origin");
    Ws::open(&app.base_url, "", Some(&token), None)
        .await
        .expect("no origin: not a browser");
    // The same list answers CORS preflights for the HTTP API.
    let preflight = app
        .anonymous(reqwest::Method::OPTIONS, "/v1/topics")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let denied = app
        .anonymous(reqwest::Method::OPTIONS, "/v1/topics")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001() {
    let app = TestApp::spawn().await;
    let mut ws = Ws::connect(&app.base_url, &app.admin_token).await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(ws.close_code(Duration::from_secs(10)).await, Some(1001));
    stopping.await.expect("stopped");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_4008_and_stalls_nobody() {
    const SLOW_CONSUMER_MS: u64 = 1000;
    let slow_consumer_ms = SLOW_CONSUMER_MS.to_string();
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8");
    let server = crate::process::Process::spawn(
        &crate::process::open_server_args(
            data,
            &[
                "--fsync",
                "never",
                "--ws-outbound-bytes",
                "65536",
                "--ws-slow-consumer-ms",
                &slow_consumer_ms,
                "--push-frame-bytes",
                "16384",
                "--push-cache-bytes",
                "8388608",
                // Long enough for the client to come back and read its close (the release
                // of a socket that is never read again is `overload`'s test).
                "--ws-close-timeout-ms",
                "120000",
            ],
        ),
        "warn",
    );
    let client = reqwest::Client::new();
    server.create_topic("t", 2).await;
    let mut slow = Ws::open_with_receive_buffer(&server.base_url, 256 * 1024).await;
    slow.subscribe(json!({"topic": "t"})).await;
    let mut fast = Ws::open(&server.base_url, "", None, None)
        .await
        .expect("opens");
    fast.subscribe(json!({"topic": "t"})).await;
    // 40 MB of records per phase. Phase 1: both read, to see what the server's caches take.
    // Phase 2: `slow` reads nothing; buffering for it would show as extra growth.
    const REQUESTS: u64 = 400;
    const PER_REQUEST: u64 = 100;
    let value = "x".repeat(1000);
    let publish = |phase: u64| {
        let (client, server, value) = (&client, &server, &value);
        async move {
            for n in 0..REQUESTS {
                let records: Vec<Value> = (0..PER_REQUEST)
                    .map(|i| json!({"value": {"n": (phase * REQUESTS + n) * PER_REQUEST + i, "pad": value}}))
                    .collect();
                let response = client
                    .post(server.url("/v1/topics/t/records"))
                    .json(&json!({"records": records}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }
    };
    async fn read_all(ws: &mut Ws) -> u64 {
        let mut count = 0u64;
        while count < REQUESTS * PER_REQUEST {
            let message = ws.expect("records").await;
            count += message["records"].as_array().unwrap().len() as u64;
        }
        count
    }
    let rss_start = crate::process::rss_kib(server.pid());
    let ((), fast_count, slow_count) =
        tokio::join!(publish(0), read_all(&mut fast), read_all(&mut slow));
    assert_eq!(
        (fast_count, slow_count),
        (REQUESTS * PER_REQUEST, REQUESTS * PER_REQUEST)
    );
    let rss_phase1 = crate::process::rss_kib(server.pid());
    let ((), delivered) = tokio::join!(publish(1), read_all(&mut fast));
    assert_eq!(
        delivered,
        REQUESTS * PER_REQUEST,
        "the reading subscriber saw everything"
    );
    let rss_phase2 = crate::process::rss_kib(server.pid());
    let (baseline, with_slow) = (
        rss_phase1.saturating_sub(rss_start),
        rss_phase2.saturating_sub(rss_phase1),
    );
    assert!(
        with_slow < baseline + 24 * 1024,
        "RSS grew {with_slow} KiB with a stalled client, {baseline} KiB without ({rss_start} → {rss_phase1} → {rss_phase2} KiB)"
    );
    // Given --ws-slow-consumer-ms to notice (if the publishes outran it), the slow client,
    // reading now, finds what fit in the buffers, then a 4008 close.
    tokio::time::sleep(Duration::from_millis(SLOW_CONSUMER_MS * 3 / 2)).await;
    let code = slow.close_code(Duration::from_secs(20)).await;
    assert_eq!(code, Some(4008));
}
