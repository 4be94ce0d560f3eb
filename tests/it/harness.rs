//! Starting servers and talking to them.

use std::path::Path;

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
        let config = test_config(data_dir.path(), args);
        let app = Application::build(&config).expect("server starts");
        let base_url = format!("http://{}", app.local_addr());
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run());
        TestApp {
            base_url,
            admin_token: token("admin", "admin"),
            client: reqwest::Client::new(),
            data_dir: Some(data_dir),
            shutdown,
            server: Some(server),
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
    /// checking that every page is 200, non-empty and at most `limit` long, that offsets
    /// are dense, and that `high_watermark` and `next_offset` agree with the pages.
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
            assert!(
                !page.is_empty(),
                "fetch below the high watermark made no progress in {topic}/{partition}@{next}"
            );
            assert!(page.len() <= limit);
            for record in page {
                assert_eq!(
                    record["offset"], next,
                    "offsets dense (no gap) in {topic}/{partition}"
                );
                assert_eq!(record["partition"], partition);
                next += 1;
            }
            assert_eq!(body["next_offset"], next, "next_offset follows the page");
            all.extend(page.iter().cloned());
        }
        all
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
    all.extend_from_slice(args);
    Config::from_args(all).expect("valid test config")
}

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
