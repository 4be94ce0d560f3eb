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

    pub async fn create_topic(&self, name: &str, partitions: u32) {
        let response = self
            .post("/v1/topics")
            .json(&json!({"name": name, "partitions": partitions}))
            .send()
            .await
            .expect("create topic");
        assert_eq!(response.status(), 201, "creating {name}");
    }

    /// Publishes `records` (a JSON array) and returns the response.
    pub async fn publish(&self, topic: &str, records: Value) -> Response {
        self.post(&format!("/v1/topics/{topic}/records"))
            .json(&json!({ "records": records }))
            .send()
            .await
            .expect("publish")
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
