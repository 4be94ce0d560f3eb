//! Starting servers and talking to them.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tempfile::TempDir;
use tidegate::config::Config;
use tidegate::startup::Application;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A server running in this process on an ephemeral port, with its own data directory.
pub struct TestApp {
    pub base_url: String,
    /// An admin token every harness request carries.
    pub admin_token: String,
    pub client: reqwest::Client,
    /// Always `Some` until `stop` hands it back.
    data_dir: Option<TempDir>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _broker: Option<BrokerShare>,
}

/// The suite's Kafka broker, shared by every server of the suite except one that needs it
/// alone: creating 1024 partitions keeps a broker's metadata seconds behind, and other
/// tests' calls would time out meanwhile.
static BROKER: LazyLock<Arc<tokio::sync::RwLock<()>>> = LazyLock::new(Default::default);

enum BrokerShare {
    Shared {
        _guard: tokio::sync::OwnedRwLockReadGuard<()>,
    },
    Alone {
        _guard: tokio::sync::OwnedRwLockWriteGuard<()>,
    },
}

impl BrokerShare {
    async fn take(alone: bool) -> Option<BrokerShare> {
        kafka_bootstrap()?;
        if !alone {
            let _guard = BROKER.clone().read_owned().await;
            return Some(BrokerShare::Shared { _guard });
        }
        // Polled rather than queued for: a queued writer would hold up every new reader,
        // among them a second server of a test already holding a share.
        loop {
            if let Ok(_guard) = BROKER.clone().try_write_owned() {
                return Some(BrokerShare::Alone { _guard });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl TestApp {
    /// A server with default settings on a fresh data directory.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(&[]).await
    }

    /// A server with extra `tidegate serve` flags, e.g. `["--max-body-bytes", "100"]`.
    pub async fn spawn_with(args: &[&str]) -> TestApp {
        TestApp::spawn_in(TempDir::new().expect("temp dir"), args).await
    }

    /// A server on an existing data directory (to test restarts).
    pub async fn spawn_in(data_dir: TempDir, args: &[&str]) -> TestApp {
        TestApp::start(data_dir, args, false).await
    }

    /// A server with the suite's Kafka broker to itself while it runs.
    pub async fn spawn_alone() -> TestApp {
        TestApp::start(TempDir::new().expect("temp dir"), &[], true).await
    }

    async fn start(data_dir: TempDir, args: &[&str], alone: bool) -> TestApp {
        let broker = BrokerShare::take(alone).await;
        let config = test_config(data_dir.path(), args);
        let app = Application::build(&config).expect("server starts");
        let base_url = format!("http://{}", app.local_addr());
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run());
        let app = TestApp {
            base_url,
            admin_token: token("admin", "admin"),
            client: reqwest::Client::new(),
            data_dir: Some(data_dir),
            shutdown,
            server: Some(server),
            _broker: broker,
        };
        if kafka_bootstrap().is_some() {
            app.wait_until_ready().await;
        }
        app
    }

    /// Waits for `/readyz` to say ready, as a load balancer would before sending traffic
    /// (the Kafka backend starts its producer in the background).
    pub async fn wait_until_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ready = self.anonymous(Method::GET, "/readyz").send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server never got ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Shuts down gracefully (all accepted writes committed) and hands back the data dir.
    pub async fn stop(mut self) -> TempDir {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
        self.data_dir.take().expect("data dir")
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.as_ref().expect("data dir").path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// A request to `path` with the admin token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.anonymous(method, path).bearer_auth(&self.admin_token)
    }

    /// A request to `path` without any token.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// `POST /v1/topics` with `body`, whatever the answer.
    pub async fn post_topic(&self, body: Value) -> Response {
        self.post("/v1/topics")
            .json(&body)
            .send()
            .await
            .expect("create topic")
    }

    /// Creates a topic with `partitions` and default settings; asserts 201.
    pub async fn create_topic(&self, name: &str, partitions: u32) {
        self.create_topic_with(json!({"name": name, "partitions": partitions}))
            .await;
    }

    /// Creates a topic from a full request `body`; asserts 201 and returns the description.
    pub async fn create_topic_with(&self, body: Value) -> Value {
        let response = self.post_topic(body.clone()).await;
        let status = response.status();
        let answer = json_body(response).await;
        assert_eq!(status, 201, "creating {body}: {answer}");
        answer
    }

    /// `GET /v1/topics/{topic}`, whatever the answer.
    pub async fn get_topic(&self, topic: &str) -> Response {
        self.get(&format!("/v1/topics/{topic}"))
            .send()
            .await
            .expect("describe topic")
    }

    /// The description of `topic`; asserts 200.
    pub async fn describe(&self, topic: &str) -> Value {
        let response = self.get_topic(topic).await;
        assert_eq!(response.status(), 200, "describe {topic}");
        json_body(response).await
    }

    /// `PATCH /v1/topics/{topic}` with `body`, whatever the answer.
    pub async fn patch_topic(&self, topic: &str, body: Value) -> Response {
        self.request(Method::PATCH, &format!("/v1/topics/{topic}"))
            .json(&body)
            .send()
            .await
            .expect("patch topic")
    }

    /// `DELETE /v1/topics/{topic}`, whatever the answer.
    pub async fn delete_topic(&self, topic: &str) -> Response {
        self.request(Method::DELETE, &format!("/v1/topics/{topic}"))
            .send()
            .await
            .expect("delete topic")
    }

    /// The whole body of `GET /v1/topics`; asserts 200.
    pub async fn list_body(&self) -> Value {
        let response = self.get("/v1/topics").send().await.expect("list topics");
        assert_eq!(response.status(), 200, "list topics");
        json_body(response).await
    }

    /// The `topics` array of `GET /v1/topics`; asserts 200.
    pub async fn list(&self) -> Vec<Value> {
        let body = self.list_body().await;
        body["topics"]
            .as_array()
            .unwrap_or_else(|| panic!("topics array in {body}"))
            .clone()
    }

    /// High watermark of every partition of `topic`, from its description (see [`bounds`]).
    pub async fn high_watermarks(&self, topic: &str) -> Vec<u64> {
        bounds(&self.describe(topic).await)
            .into_iter()
            .map(|(_, high_watermark)| high_watermark)
            .collect()
    }

    /// Publishes `records` (a JSON array) and returns the response.
    pub async fn publish(&self, topic: &str, records: Value) -> Response {
        self.post(&format!("/v1/topics/{topic}/records"))
            .json(&json!({ "records": records }))
            .send()
            .await
            .expect("publish")
    }

    /// Publishes `records` with an `Idempotency-Key` header and returns the response.
    pub async fn publish_with_key(&self, topic: &str, key: &str, records: Value) -> Response {
        self.post(&format!("/v1/topics/{topic}/records"))
            .header("Idempotency-Key", key)
            .json(&json!({ "records": records }))
            .send()
            .await
            .expect("publish")
    }

    /// A `method` request to `path` with a raw `body` and a content type (or none).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> Response {
        let mut request = self.request(method.clone(), path).body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{method} {path}: {err}"))
    }

    /// Publishes a raw `body` with a content type (or none) and returns the response.
    pub async fn publish_raw(
        &self,
        topic: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> Response {
        let path = format!("/v1/topics/{topic}/records");
        self.send_raw(Method::POST, &path, content_type, body).await
    }

    /// Publishes `records` (a JSON array); asserts 200 and returns [`offsets_of`] the answer.
    pub async fn publish_ok(&self, topic: &str, records: Value) -> Vec<(u32, u64)> {
        offsets_of(self.publish(topic, records).await).await
    }

    /// `POST /v1/groups/{group}/{action}` (poll, commit, seek) with a JSON `body`.
    pub async fn post_group(&self, group: &str, action: &str, body: &Value) -> Response {
        self.post(&format!("/v1/groups/{group}/{action}"))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|err| panic!("{action} {group}: {err}"))
    }

    /// One group poll with `body`; asserts 200 and returns the answer.
    pub async fn poll_group(&self, group: &str, body: Value) -> Value {
        let response = self.post_group(group, "poll", &body).await;
        assert_eq!(response.status(), 200, "poll {body}");
        json_body(response).await
    }

    /// Commits `offsets` as the member a [`TestApp::poll_group`] answer names; asserts 204.
    pub async fn commit_as(&self, group: &str, polled: &Value, offsets: Value) {
        let body = json!({
            "member_id": polled["member_id"], "generation": polled["generation"],
            "offsets": offsets,
        });
        let response = self.post_group(group, "commit", &body).await;
        assert_eq!(response.status(), 204, "commit {body}");
    }

    /// Fetches with a raw query string, e.g. `"offset=0&limit=10"`.
    pub async fn fetch(&self, topic: &str, partition: u32, query: &str) -> Response {
        self.get(&format!(
            "/v1/topics/{topic}/partitions/{partition}/records?{query}"
        ))
        .send()
        .await
        .expect("fetch")
    }

    /// Fetches with a raw query string; asserts 200 and returns the body.
    pub async fn fetch_ok(&self, topic: &str, partition: u32, query: &str) -> Value {
        let response = self.fetch(topic, partition, query).await;
        assert_eq!(response.status(), 200, "fetch {topic}/{partition}?{query}");
        json_body(response).await
    }

    /// Every record of a partition from offset 0 to `high_watermark`, paging with `limit`,
    /// checking that every page is 200, at most `limit` long and moves on, that offsets
    /// increase (dense on redb; on Kafka transaction markers take offsets), that
    /// `next_offset` is past the page, and that `high_watermark` agrees.
    pub async fn fetch_all(
        &self,
        topic: &str,
        partition: u32,
        high_watermark: u64,
        limit: usize,
    ) -> Vec<Value> {
        let mut all = Vec::new();
        let mut next = 0u64;
        while next < high_watermark {
            let body = self
                .fetch_ok(topic, partition, &format!("offset={next}&limit={limit}"))
                .await;
            assert_eq!(
                body["high_watermark"], high_watermark,
                "{topic}/{partition}"
            );
            let page = records(&body);
            let after = body["next_offset"].as_u64().expect("next_offset");
            assert!(
                after > next,
                "fetch below the high watermark made no progress in {topic}/{partition}@{next}"
            );
            assert!(page.len() <= limit);
            let mut expected = next;
            for record in page {
                let offset = record["offset"].as_u64().expect("offset");
                if kafka_bootstrap().is_some() {
                    assert!(
                        offset >= expected,
                        "offsets increase in {topic}/{partition}"
                    );
                } else {
                    assert_eq!(
                        offset, expected,
                        "offsets dense (no gap) in {topic}/{partition}"
                    );
                }
                assert_eq!(record["partition"], partition);
                expected = offset + 1;
            }
            assert!(after >= expected, "next_offset is past the page");
            next = after;
            all.extend(page.iter().cloned());
        }
        all
    }

    /// How many records each partition of `topic` holds, read back page by page (on
    /// Kafka offsets count transaction markers too, so high watermarks do not say it).
    pub async fn record_counts(&self, topic: &str) -> Vec<u64> {
        let mut counts = Vec::new();
        for (partition, high_watermark) in self.high_watermarks(topic).await.into_iter().enumerate()
        {
            let records = self
                .fetch_all(topic, partition as u32, high_watermark, 1000)
                .await;
            counts.push(records.len() as u64);
        }
        counts
    }

    /// The offset the next record of `partition` will get: its high watermark (on Kafka
    /// the last stable offset, past the last transaction's marker).
    pub async fn next_offset(&self, topic: &str, partition: u32) -> u64 {
        self.high_watermarks(topic).await[partition as usize]
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The HS256 secret every in-process test server verifies with.
pub const TEST_SECRET: &str = "tidegate-test-secret-0123456789abcdef";

/// A token signed with [`TEST_SECRET`], valid for an hour.
pub fn token(sub: &str, scopes: &str) -> String {
    tidegate::auth::mint_hs256(
        TEST_SECRET.as_bytes(),
        sub,
        scopes,
        std::time::Duration::from_secs(3600),
        None,
        None,
    )
    .expect("mint test token")
}

fn test_config(data_dir: &Path, args: &[&str]) -> Config {
    let backend = backend_args(data_dir);
    let data_dir = data_dir.to_str().expect("utf-8 temp path");
    let mut all = vec![
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--workers",
        "2",
        "--jwt-secret",
        TEST_SECRET,
    ];
    all.extend(backend.iter().map(String::as_str));
    all.extend_from_slice(args);
    Config::from_args(all).expect("valid test config")
}

/// The Kafka broker the suite runs against (`TIDEGATE_TEST_BACKEND=kafka` and
/// `TIDEGATE_TEST_KAFKA_BOOTSTRAP`); `None` runs it on redb. `scripts/test` runs the suite
/// once each way.
pub fn kafka_bootstrap() -> Option<String> {
    match std::env::var("TIDEGATE_TEST_BACKEND").as_deref() {
        Ok("kafka") => Some(
            std::env::var("TIDEGATE_TEST_KAFKA_BOOTSTRAP")
                .expect("TIDEGATE_TEST_BACKEND=kafka needs TIDEGATE_TEST_KAFKA_BOOTSTRAP"),
        ),
        _ => None,
    }
}

/// The longest topic name a server of the suite takes: Kafka's 249 characters, less the
/// `--kafka-topic-prefix` the suite gives each Kafka server.
pub fn longest_topic_name() -> usize {
    match kafka_bootstrap() {
        None => 249,
        Some(_) => 249 - "it.000000000000.".len(),
    }
}

/// Whether offsets are dense on the suite's backend (redb), as opposed to skipping
/// transaction markers (Kafka).
pub fn dense_offsets() -> bool {
    kafka_bootstrap().is_none()
}

/// Asserts where a page says its partition goes on: exactly `past_records` (the offset
/// after its last record) on redb; at or past it on Kafka, whose transaction markers take
/// offsets after records.
pub fn assert_next(page: &Value, past_records: u64) {
    let next = page["next_offset"].as_u64().expect("next_offset");
    if dense_offsets() {
        assert_eq!(next, past_records, "next_offset of {page}");
    } else {
        assert!(
            (past_records..=past_records + 1).contains(&next),
            "next_offset {next} vs records ending at {past_records}: {page}"
        );
    }
}

/// Asserts that a page read its partition to the end: `next_offset` is the high
/// watermark, just past the last record (on Kafka, past the marker after it).
pub fn assert_at_end(page: &Value, past_records: u64) {
    assert_next(page, past_records);
    assert_eq!(page["next_offset"], page["high_watermark"], "{page}");
}

/// The flags that put a server on the suite's backend. On Kafka every data directory gets
/// a topic prefix of its own (from its name, so a restart over it sees the same topics):
/// tests running side by side on one broker never meet.
pub fn backend_args(data_dir: &Path) -> Vec<String> {
    let Some(bootstrap) = kafka_bootstrap() else {
        return Vec::new();
    };
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    let name = format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff);
    vec![
        "--backend".into(),
        "kafka".into(),
        "--kafka-bootstrap".into(),
        bootstrap,
        "--kafka-topic-prefix".into(),
        format!("it.{name}."),
    ]
}

/// Skips the rest of a test on the Kafka backend, saying why: what only the embedded
/// store has (its file, its retention timing, `tidegate check`).
macro_rules! redb_only {
    ($why:literal) => {
        if $crate::harness::kafka_bootstrap().is_some() {
            eprintln!("skipped on the Kafka backend: {}", $why);
            return;
        }
    };
}
pub(crate) use redb_only;

/// Reads a JSON body, failing the test with the raw text when it is not JSON.
pub async fn json_body(response: Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

/// Asserts the SPEC's error shape and code, returning the error object.
pub async fn expect_error(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let body = json_body(response).await;
    assert_eq!(body["error"]["code"], code, "error code in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error message in {body}"
    );
    body["error"].clone()
}

/// `(partition, offset)` of every record of a publish response; asserts 200.
pub async fn offsets_of(response: Response) -> Vec<(u32, u64)> {
    let status = response.status();
    let body = json_body(response).await;
    assert_eq!(status, 200, "publish answered {body}");
    offsets_in(&body)
}

/// `(partition, offset)` of every record of a publish response body.
pub fn offsets_in(body: &Value) -> Vec<(u32, u64)> {
    body["offsets"]
        .as_array()
        .unwrap_or_else(|| panic!("offsets in {body}"))
        .iter()
        .map(|o| {
            (
                o["partition"].as_u64().expect("partition") as u32,
                o["offset"].as_u64().expect("offset"),
            )
        })
        .collect()
}

/// The `records` array of a fetch body.
pub fn records(fetched: &Value) -> &Vec<Value> {
    fetched["records"]
        .as_array()
        .unwrap_or_else(|| panic!("records in {fetched}"))
}

/// `(log_start_offset, high_watermark)` of every partition of a topic description,
/// checking that the partitions are numbered in order.
pub fn bounds(details: &Value) -> Vec<(u64, u64)> {
    details["partition_offsets"]
        .as_array()
        .unwrap_or_else(|| panic!("partition_offsets in {details}"))
        .iter()
        .enumerate()
        .map(|(i, p)| {
            assert_eq!(p["partition"], i as u64, "partition numbering in {details}");
            (
                p["log_start_offset"].as_u64().expect("log_start_offset"),
                p["high_watermark"].as_u64().expect("high_watermark"),
            )
        })
        .collect()
}

/// Whether a publish answer says `Idempotency-Replayed: true`.
pub fn replayed(response: &Response) -> bool {
    response
        .headers()
        .get("Idempotency-Replayed")
        .is_some_and(|v| v == "true")
}

/// What came back on a raw connection.
pub struct RawReply {
    /// Everything the server sent, lossily decoded.
    pub text: String,
    /// Whether the server closed the connection (as opposed to the wait running out).
    pub closed: bool,
    /// From the end of sending to the close, or to the end of the wait.
    pub elapsed: std::time::Duration,
}

impl RawReply {
    /// The status line, e.g. `HTTP/1.1 413 Payload Too Large`.
    pub fn status_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    /// The JSON body after the head.
    pub fn json(&self) -> Value {
        let body = self
            .text
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body);
        serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
    }
}

/// Opens a connection to `base_url`, sends `request` as is, then reads until the server
/// closes the connection or `wait` passes.
pub async fn raw_exchange(base_url: &str, request: &[u8], wait: std::time::Duration) -> RawReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send");
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let closed = loop {
        let left = wait.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => break false,
        }
    };
    RawReply {
        text: String::from_utf8_lossy(&received).into_owned(),
        closed,
        elapsed: started.elapsed(),
    }
}
