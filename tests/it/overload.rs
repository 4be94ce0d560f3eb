//! SPEC "Overload, quotas and faults": every resource a client can hold is bounded, and
//! the server stays responsive for everyone else while one client misbehaves.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestApp, expect_error, json_body, token};
use crate::process::{Process, connection_fds, open_server_args};
use crate::push::client::Ws;

async fn connect(app_url: &str) -> TcpStream {
    TcpStream::connect(app_url.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection; what it sent, and whether it closed
/// within `wait`.
async fn read_to_close(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&received).into(), true),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into(), false),
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_and_closed_while_the_others_are_served() {
    let app = TestApp::spawn_with(&["--max-connections", "3"]).await;
    // The harness's own pooled connection may hold a place (it waited for readiness):
    // open connections, each answered, until one is refused.
    let mut held = Vec::new();
    let (answer, closed) = loop {
        let mut stream = connect(&app.base_url).await;
        stream.write_all(HEALTHZ).await.unwrap();
        let mut buffer = [0u8; 1024];
        let n = stream.read(&mut buffer).await.unwrap();
        if buffer[..n].starts_with(b"HTTP/1.1 503") {
            let (rest, closed) = read_to_close(&mut stream, Duration::from_secs(10)).await;
            break (
                String::from_utf8_lossy(&buffer[..n]).into_owned() + &rest,
                closed,
            );
        }
        assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
        assert!(held.len() <= 3, "more than --max-connections served");
    };
    assert!(!held.is_empty());
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains(r#""code":"too_many_connections""#),
        "{answer}"
    );
    assert!(closed, "the refused connection is closed");
    // The connections within the cap are served, and keep being served.
    for stream in &mut held {
        for _ in 0..2 {
            stream.write_all(HEALTHZ).await.unwrap();
            let mut buffer = [0u8; 1024];
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
        }
    }
    // One gone, one more may come.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect(&app.base_url).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_to_close(&mut again, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn idle_and_slowloris_connections_are_cut_at_the_header_timeout_while_healthz_answers() {
    const TIMEOUT: Duration = Duration::from_millis(600);
    let app = TestApp::spawn_with(&["--header-timeout-ms", "600"]).await;
    let started = Instant::now();
    // Idle: never sends a byte.
    let mut idle = connect(&app.base_url).await;
    // Slowloris: a request head that never ends, one header line every 100 ms.
    let mut slow = connect(&app.base_url).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The same after a first request answered: the deadline counts for every request.
    let mut kept_alive = connect(&app.base_url).await;
    kept_alive.write_all(HEALTHZ).await.unwrap();
    let mut buffer = [0u8; 1024];
    let n = kept_alive.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let trickle = async {
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let line = format!("X-Slow-{i}: y\r\n");
            if slow.write_all(line.as_bytes()).await.is_err()
                || kept_alive.write_all(line.as_bytes()).await.is_err()
            {
                break;
            }
        }
    };
    let healthy = async {
        // Served all along, by fresh connections.
        for _ in 0..5 {
            let response = app.anonymous(Method::GET, "/healthz").send().await.unwrap();
            assert_eq!(response.status(), 200);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    tokio::join!(trickle, healthy);
    for (name, stream) in [
        ("idle", &mut idle),
        ("slowloris", &mut slow),
        ("kept alive", &mut kept_alive),
    ] {
        let (_, closed) = read_to_close(stream, Duration::from_secs(5)).await;
        assert!(closed, "the {name} connection is closed");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= TIMEOUT, "{elapsed:?}");
    let scrape = crate::metrics::scrape(&app).await;
    let cut = crate::metrics::value(
        &scrape,
        "tidegate_connections_cut_total",
        &[("reason", "header")],
    );
    assert!(cut >= 3.0, "{cut} connections cut at the header timeout");
}

#[tokio::test]
async fn websockets_closed_by_the_server_give_back_their_sockets_even_if_never_read() {
    const CLIENTS: usize = 20;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8");
    let server = Process::spawn(
        &open_server_args(
            data,
            &[
                "--fsync",
                "never",
                "--ws-outbound-bytes",
                "65536",
                "--ws-slow-consumer-ms",
                "500",
                "--ws-close-timeout-ms",
                "1000",
                "--push-frame-bytes",
                "16384",
            ],
        ),
        "warn",
    );
    let client = reqwest::Client::new();
    // Created through `client`, whose pooled connection then stays open (counted once
    // in `before`), unlike one that would be closing while the sockets are counted.
    let created = client
        .post(server.url("/v1/topics"))
        .json(&json!({"name": "t", "partitions": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let port: u16 = server.base_url.rsplit(':').next().unwrap().parse().unwrap();
    let sockets = || connection_fds(server.pid(), port);
    // The HTTP client's pooled connection is open from here on.
    let before = sockets();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut ws = Ws::open_with_receive_buffer(&server.base_url, 16 * 1024).await;
        ws.subscribe(json!({"topic": "t", "from": "earliest"}))
            .await;
        clients.push(ws);
    }
    let opened = sockets();
    assert!(
        opened >= before + CLIENTS,
        "{before} → {opened} descriptors"
    );
    // 8 MB of records: far more than the sockets' buffers, which nobody reads.
    let pad = "x".repeat(1000);
    for n in 0..80 {
        let records: Vec<Value> = (0..100)
            .map(|i| json!({"value": {"n": n * 100 + i, "pad": pad}}))
            .collect();
        let response = client
            .post(server.url("/v1/topics/t/records"))
            .json(&json!({"records": records}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Slow consumer (0.5 s), then the close timeout (1 s): every socket is released,
    // while the clients still hold theirs open and read nothing.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut now_open = sockets();
    while now_open > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        now_open = sockets();
    }
    assert!(
        now_open <= before,
        "{before} descriptors before, {opened} with {CLIENTS} stalled WebSockets, {now_open} after they were closed"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(&format!(
            "tidegate_websocket_slow_consumer_closes_total {CLIENTS}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tidegate_connections_cut_total{reason="close"}"#),
        "the close deadline ended them: {metrics}"
    );
    drop(clients);
}

/// `tidegate_rate_limited_total{quota}`.
async fn rate_limited(app: &TestApp, quota: &str) -> f64 {
    let scrape = crate::metrics::scrape(app).await;
    crate::metrics::value(&scrape, "tidegate_rate_limited_total", &[("quota", quota)])
}

#[tokio::test]
async fn the_request_quota_counts_per_principal_over_http_and_websocket() {
    let app = TestApp::spawn_with(&["--quota-requests-per-sec", "5"]).await;
    app.create_topic("q", 1).await;
    let alice = token("alice", "subscribe:q publish:q");
    let bob = token("bob", "subscribe:q");
    let fetch = |who: &str| {
        app.anonymous(Method::GET, "/v1/topics/q/partitions/0/records")
            .bearer_auth(who.to_owned())
            .send()
    };
    let mut refused = None;
    for _ in 0..10 {
        let response = fetch(&alice).await.unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), 200);
    }
    let refused = refused.expect("alice went over 5 requests per second");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "whole seconds, at least 1");
    let error = expect_error(refused, 429, "rate_limited").await;
    let wait_ms = error["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((1..=1000).contains(&wait_ms), "{error}");
    // Bob is not slowed by Alice.
    assert_eq!(fetch(&bob).await.unwrap().status(), 200);
    // After the wait, Alice passes again.
    tokio::time::sleep(Duration::from_millis(wait_ms + 50)).await;
    assert_eq!(fetch(&alice).await.unwrap().status(), 200);
    // Over WebSocket: the op gets an error with retry_after_ms, the socket stays open.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ws = Ws::connect(&app.base_url, &alice).await;
    let mut limited = None;
    for n in 0..10 {
        ws.send(json!({"op": "publish", "req": n, "topic": "q", "records": [{"value": n}]}))
            .await;
        let answer = ws.next().await.expect("an answer");
        if answer["type"] == "error" {
            limited = Some(answer);
            break;
        }
        assert_eq!(answer["type"], "published", "{answer}");
    }
    let limited = limited.expect("alice's ops went over the quota");
    assert_eq!(limited["error"]["code"], "rate_limited", "{limited}");
    let wait_ms = limited["error"]["retry_after_ms"]
        .as_u64()
        .expect("retry_after_ms");
    let refused_req = limited["req"].as_u64().expect("req echoed");
    tokio::time::sleep(Duration::from_millis(wait_ms + 50)).await;
    ws.send(
        json!({"op": "publish", "req": "after", "topic": "q", "records": [{"value": "after"}]}),
    )
    .await;
    let answer = ws.expect("published").await;
    assert_eq!(answer["req"], "after");
    // Nothing refused was appended: the upgrade and the ops before the refusal went
    // through, the refused one did not.
    let page = app.fetch_ok("q", 0, "offset=0&limit=100").await;
    let values: Vec<Value> = crate::harness::records(&page)
        .iter()
        .map(|r| r["value"].clone())
        .collect();
    assert!(!values.contains(&json!(refused_req)), "{values:?}");
    assert_eq!(values.last(), Some(&json!("after")));
    assert!(rate_limited(&app, "requests").await >= 2.0);
}

#[tokio::test]
async fn the_publish_byte_quota_refuses_whole_requests_and_says_when_to_retry() {
    let app = TestApp::spawn_with(&["--quota-publish-bytes-per-sec", "3000"]).await;
    app.create_topic("bytes", 1).await;
    let record = json!({"value": "x".repeat(1400)});
    let publish = || app.publish("bytes", json!([record.clone()]));
    assert_eq!(publish().await.status(), 200);
    assert_eq!(publish().await.status(), 200);
    let refused = publish().await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let error = expect_error(refused, 429, "rate_limited").await;
    assert!(retry_after >= 1);
    // Nothing of the refused request was appended.
    assert_eq!(app.high_watermarks("bytes").await.len(), 1);
    let page = app.fetch_ok("bytes", 0, "offset=0").await;
    assert_eq!(crate::harness::records(&page).len(), 2);
    // Honouring Retry-After is enough.
    tokio::time::sleep(Duration::from_millis(
        error["retry_after_ms"].as_u64().unwrap() + 50,
    ))
    .await;
    assert_eq!(publish().await.status(), 200);
    // More than a second's worth at once can never pass: told to split it.
    let oversized = app
        .publish("bytes", json!([{"value": "y".repeat(3500)}]))
        .await;
    expect_error(oversized, 413, "body_too_large").await;
    // Another principal publishes meanwhile.
    let other = app
        .anonymous(Method::POST, "/v1/topics/bytes/records")
        .bearer_auth(token("other", "publish:bytes"))
        .json(&json!({"records": [record.clone(), record.clone()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert!(rate_limited(&app, "publish_bytes").await >= 1.0);
}

#[tokio::test]
async fn a_poll_that_would_create_one_group_too_many_is_refused() {
    let app = TestApp::spawn_with(&["--max-groups", "2"]).await;
    app.create_topic("g", 1).await;
    let join = |group: &'static str| {
        let app = &app;
        async move {
            app.post_group(group, "poll", &json!({"topics": ["g"], "wait_ms": 0}))
                .await
        }
    };
    let first = json_body(join("first").await).await;
    assert_eq!(join("second").await.status(), 200);
    expect_error(join("third").await, 429, "too_many_groups").await;
    // A group that exists takes new members.
    assert_eq!(join("second").await.status(), 200);
    // A manual commit that would create a third is refused as well.
    let commit = app
        .post_group(
            "third",
            "commit",
            &json!({"offsets": [{"topic": "g", "partition": 0, "offset": 0}]}),
        )
        .await;
    expect_error(commit, 429, "too_many_groups").await;
    // Once a group is gone, there is room again.
    let member = first["member_id"].as_str().expect("member id");
    let left = app
        .request(
            Method::DELETE,
            &format!("/v1/groups/first/members/{member}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 204);
    assert_eq!(join("third").await.status(), 200);
}

#[tokio::test]
async fn two_thousand_idle_subscribed_websockets_cost_under_40_kib_each() {
    crate::harness::redb_only!(
        "what a socket costs is the transport's; the backend adds nothing per socket"
    );
    const SOCKETS: usize = 2000;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8");
    let server = Process::spawn(&open_server_args(data, &[]), "warn");
    let client = reqwest::Client::new();
    server.create_topic("idle", 4).await;
    // Warm-up: the first sockets pay for buffers every later one reuses.
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let mut ws = Ws::open(&server.base_url, "", None, None)
            .await
            .expect("opens");
        ws.subscribe(json!({"topic": "idle"})).await;
        sockets.push(ws);
    }
    let before = crate::process::rss_kib(server.pid());
    for _ in 0..SOCKETS {
        let mut ws = Ws::open(&server.base_url, "", None, None)
            .await
            .expect("opens");
        ws.subscribe(json!({"topic": "idle"})).await;
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = crate::process::rss_kib(server.pid());
    let per_socket = after.saturating_sub(before) as f64 / SOCKETS as f64;
    eprintln!(
        "{SOCKETS} idle subscribed WebSockets: {before} → {after} KiB, {per_socket:.1} KiB each"
    );
    assert!(
        per_socket < 40.0,
        "{per_socket:.1} KiB per idle subscribed WebSocket"
    );
    // Still served: one more subscriber gets a record published now.
    let mut last = Ws::open(&server.base_url, "", None, None)
        .await
        .expect("opens");
    last.subscribe(json!({"topic": "idle", "partitions": [0]}))
        .await;
    let published = client
        .post(server.url("/v1/topics/idle/records"))
        .json(&json!({"records": [{"value": 1, "partition": 0}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    let (records, _) = last.records(1).await;
    assert_eq!(records[0]["value"], 1);
    drop(sockets);
}

/// A tmpfs of its own (the tests run as root in CI), unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` where mounting is not allowed (not root): the caller says it skipped.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "remount to {size}");
    }

    fn data_dir(&self) -> String {
        self.dir
            .path()
            .join("data")
            .to_str()
            .expect("utf-8")
            .to_owned()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Polls `check` every 100 ms until it holds or `wait` passes.
async fn eventually(wait: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_of(client: &reqwest::Client, url: String) -> u16 {
    client
        .get(url)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

async fn publish_padded(client: &reqwest::Client, server: &Process, n: u64) -> reqwest::Response {
    let pad = "x".repeat(10_000);
    let records: Vec<Value> = (0..10)
        .map(|i| json!({"value": {"n": n * 10 + i, "pad": pad}}))
        .collect();
    client
        .post(server.url("/v1/topics/t/records"))
        .json(&json!({"records": records}))
        .send()
        .await
        .unwrap()
}

/// Every record of partition 0 of `t`, as their `n`.
async fn stored_ns(client: &reqwest::Client, server: &Process) -> Vec<u64> {
    let mut ns = Vec::new();
    let mut offset = 0;
    loop {
        let page: Value = client
            .get(server.url(&format!(
                "/v1/topics/t/partitions/0/records?offset={offset}&limit=500"
            )))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let records = page["records"].as_array().expect("records");
        if records.is_empty() {
            return ns;
        }
        ns.extend(records.iter().map(|r| r["value"]["n"].as_u64().unwrap()));
        offset = page["next_offset"].as_u64().unwrap();
    }
}

#[tokio::test]
async fn below_min_free_bytes_publishes_are_507_reads_go_on_and_publishing_resumes_by_itself() {
    crate::harness::redb_only!("the free space of the data directory is the embedded store's");
    let Some(disk) = SmallDisk::mount("24m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let data = disk.data_dir();
    // The default --min-free-bytes, 64 MiB, is more than the disk has.
    let server = Process::spawn(&open_server_args(&data, &[]), "warn");
    let client = reqwest::Client::new();
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    // Topics and reads go on; publishes are refused whole.
    server.create_topic("t", 1).await;
    let refused = publish_padded(&client, &server, 0).await;
    assert_eq!(refused.status(), 507);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    assert!(stored_ns(&client, &server).await.is_empty());
    // Over WebSocket, the same code.
    let mut ws = Ws::open(&server.base_url, "", None, None)
        .await
        .expect("opens");
    ws.send(json!({"op": "publish", "req": 1, "topic": "t", "records": [{"value": 1}]}))
        .await;
    let answer = ws.expect("error").await;
    assert_eq!(answer["error"]["code"], "insufficient_storage", "{answer}");
    // The disk grows: publishing resumes by itself.
    disk.resize("96m");
    assert!(
        eventually(Duration::from_secs(10), async || {
            status_of(&client, server.url("/readyz")).await == 200
        })
        .await,
        "ready again once there is room"
    );
    assert_eq!(publish_padded(&client, &server, 1).await.status(), 200);
    assert_eq!(
        stored_ns(&client, &server).await,
        (10..20).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_disk_that_fills_up_answers_507_loses_nothing_acknowledged_and_recovers_without_a_restart()
 {
    crate::harness::redb_only!("a full disk under the embedded store; Kafka's brokers own theirs");
    let Some(disk) = SmallDisk::mount("24m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let data = disk.data_dir();
    // No reserve: the writes run into the full disk itself.
    let args = open_server_args(&data, &["--min-free-bytes", "0"]);
    let server = Process::spawn(&args, "warn");
    let client = reqwest::Client::new();
    server.create_topic("t", 1).await;
    let mut acknowledged = Vec::new();
    let mut refusals = 0;
    for n in 0..400 {
        let response = publish_padded(&client, &server, n).await;
        match response.status().as_u16() {
            200 => acknowledged.extend(n * 10..n * 10 + 10),
            507 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
                refusals += 1;
                if refusals == 5 {
                    break;
                }
            }
            other => panic!("publish {n}: {other} {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(refusals, 5, "the disk filled up");
    assert!(
        acknowledged.len() > 100,
        "{} records acknowledged",
        acknowledged.len()
    );
    assert_eq!(
        status_of(&client, server.url("/readyz")).await,
        503,
        "not ready while the disk is full"
    );
    // Every acknowledged record is readable, and nothing refused was stored.
    assert_eq!(stored_ns(&client, &server).await, acknowledged);
    // Room again: publishing resumes by itself.
    disk.resize("96m");
    assert!(
        eventually(Duration::from_secs(10), async || {
            status_of(&client, server.url("/readyz")).await == 200
        })
        .await,
        "ready again once there is room"
    );
    let response = publish_padded(&client, &server, 1000).await;
    assert_eq!(response.status(), 200);
    acknowledged.extend(10_000..10_010);
    // A crash now loses nothing that was acknowledged.
    drop(server);
    let server = Process::spawn(&args, "warn");
    assert_eq!(stored_ns(&client, &server).await, acknowledged);
}
