//! The real binary: `?access_token=` kept out of the logs, the first-run secret and admin
//! token, `tidegate token`, and `--auth none`.

use std::os::unix::fs::PermissionsExt;

use reqwest::{RequestBuilder, Response};
use serde_json::json;
use tempfile::TempDir;

use super::support::{claims, hs256};
use crate::process::{Process, command};

const SECRET: &str = "binary-test-secret-0123456789abcdefgh";

fn data_dir_arg(dir: &TempDir) -> String {
    dir.path()
        .join("data")
        .to_str()
        .expect("utf-8 path")
        .to_owned()
}

/// `tidegate --listen 127.0.0.1:0 --data-dir <data_dir> --shutdown-timeout-secs 2 <extra…>`
/// with `RUST_LOG=<rust_log>`, once it listens.
fn serve(data_dir: &str, extra: &[&str], rust_log: &str) -> Process {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--shutdown-timeout-secs",
        "2",
    ];
    args.extend_from_slice(extra);
    Process::spawn(&args, rust_log)
}

/// Something shaped like a JWT: three base64url parts, the first a JSON header.
fn looks_like_jwt(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && text.starts_with("eyJ")
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `POST /v1/topics` to `url` creating `name` (add a token as needed).
fn create_topic(client: &reqwest::Client, url: String, name: &str) -> RequestBuilder {
    client.post(url).json(&json!({"name": name}))
}

/// `POST` of the record `{"value": 1}` to a records `url` (add a token as needed).
fn publish_one(client: &reqwest::Client, url: String) -> RequestBuilder {
    client.post(url).json(&json!({"records": [{"value": 1}]}))
}

/// Sends `request` and asserts the status of the answer, naming `what` on failure.
async fn expect_status(request: RequestBuilder, status: u16, what: &str) -> Response {
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    assert_eq!(response.status(), status, "{what}");
    response
}

/// Runs `tidegate token --data-dir <data_dir> --sub x --scope <scope> <extra…>`.
fn mint(data_dir: &str, scope: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "token",
        "--data-dir",
        data_dir,
        "--sub",
        "x",
        "--scope",
        scope,
    ];
    args.extend_from_slice(extra);
    command(&args).output().expect("run tidegate token")
}

/// Whether a line of `stdout` is a token.
fn prints_a_token(stdout: &str) -> bool {
    stdout.lines().any(|line| looks_like_jwt(line.trim()))
}

#[tokio::test]
async fn access_token_query_works_and_never_reaches_the_logs() {
    for (rust_log, format) in [("info", "text"), ("debug", "json"), ("trace", "text")] {
        let dir = TempDir::new().expect("temp dir");
        let data_dir = data_dir_arg(&dir);
        let mut server = serve(
            &data_dir,
            &["--jwt-secret", SECRET, "--log-format", format],
            rust_log,
        );
        let what = format!("RUST_LOG={rust_log} --log-format {format}");
        let client = reqwest::Client::new();
        let admin = hs256(SECRET.as_bytes(), &claims("admin"));
        let create = create_topic(&client, server.url("/v1/topics"), "logcheck");
        expect_status(create.bearer_auth(&admin), 201, &what).await;

        let valid = hs256(
            SECRET.as_bytes(),
            &claims("publish:logcheck subscribe:logcheck"),
        );
        let forged = hs256(b"some-other-secret-0123456789abcdefgh", &claims("admin"));
        let garbage = "not-a-jwt-but-a-secret-value-7f3a9c";

        let publish = client
            .post(server.url(&format!("/v1/topics/logcheck/records?access_token={valid}")))
            .json(&json!({"records": [{"value": "hello"}]}));
        expect_status(
            publish,
            200,
            &format!("{what}: publish with ?access_token="),
        )
        .await;
        let fetch = |token: &str| {
            client.get(server.url(&format!(
                "/v1/topics/logcheck/partitions/0/records?offset=0&access_token={token}"
            )))
        };
        let context = format!("{what}: fetch with ?access_token=");
        let response = expect_status(fetch(&valid), 200, &context).await;
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["records"][0]["value"], "hello", "{what}: {body}");
        let context = format!("{what}: forged ?access_token=");
        let response = expect_status(fetch(&forged), 401, &context).await;
        assert!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer")),
            "{what}: WWW-Authenticate"
        );
        let context = format!("{what}: garbage ?access_token=");
        expect_status(fetch(garbage), 401, &context).await;
        // 403 and 404 paths log too.
        let url = server.url(&format!("/v1/topics?access_token={valid}"));
        let context = format!("{what}: create with a publisher token");
        expect_status(create_topic(&client, url, "nope"), 403, &context).await;
        let url = server.url(&format!("/v1/topics/absent?access_token={admin}"));
        let context = format!("{what}: describe a missing topic");
        expect_status(client.get(url), 404, &context).await;
        // The token in the header too, for good measure.
        let describe = client.get(server.url("/v1/topics/logcheck"));
        let context = format!("{what}: forged header token");
        expect_status(describe.bearer_auth(&forged), 401, &context).await;

        let output = server.stop();
        let log = format!("{}\n{}", output.stdout, output.stderr);
        // With --jwt-secret there is no first run: no secret file, no token printed.
        assert!(
            !dir.path().join("data").join("jwt-secret").exists(),
            "{what}: jwt-secret generated although --jwt-secret was given"
        );
        assert!(
            !prints_a_token(&output.stdout),
            "{what}: a token was printed although --jwt-secret was given:\n{}",
            output.stdout
        );
        // The check means something only if requests are logged at all.
        assert!(
            log.contains("/v1/topics/logcheck/partitions/0/records"),
            "{what}: the fetch requests should be logged:\n{log}"
        );
        for (name, token) in [
            ("valid", valid.as_str()),
            ("forged", forged.as_str()),
            ("admin", admin.as_str()),
        ] {
            assert!(
                !log.contains(token),
                "{what}: the {name} token is in the log:\n{log}"
            );
            // Nor its signature or payload alone (e.g. a truncated or split token).
            for part in token.split('.').skip(1) {
                assert!(
                    !log.contains(part),
                    "{what}: part of the {name} token is in the log:\n{log}"
                );
            }
        }
        assert!(
            !log.contains(garbage),
            "{what}: the garbage token is in the log:\n{log}"
        );
        assert!(
            !log.contains("access_token=ey"),
            "{what}: the query string is in the log:\n{log}"
        );
    }
}

#[tokio::test]
async fn first_run_generates_a_private_secret_and_prints_a_working_admin_token_once() {
    let dir = TempDir::new().expect("temp dir");
    let data_dir = data_dir_arg(&dir);
    let client = reqwest::Client::new();

    // First run: empty (not even created) data directory, no key flags.
    let mut server = serve(&data_dir, &[], "info");
    let admin = server
        .wait_for_line(|line| looks_like_jwt(line.trim()))
        .unwrap_or_else(|| {
            panic!(
                "no admin token printed on first run; stderr:\n{}",
                server.stderr_so_far()
            )
        })
        .trim()
        .to_owned();
    let secret_path = dir.path().join("data").join("jwt-secret");
    let metadata = std::fs::metadata(&secret_path).expect("<data-dir>/jwt-secret exists");
    assert!(metadata.is_file());
    assert_eq!(
        metadata.permissions().mode() & 0o777,
        0o600,
        "jwt-secret mode"
    );
    let secret = std::fs::read(&secret_path).expect("read secret");
    assert!(!secret.trim_ascii().is_empty(), "the secret file is empty");

    let create = create_topic(&client, server.url("/v1/topics"), "t").bearer_auth(&admin);
    expect_status(create, 201, "the printed admin token creates a topic").await;
    let list = client.get(server.url("/v1/topics"));
    expect_status(list, 401, "auth is on without a key flag").await;

    // `tidegate token` signs with the same generated secret.
    let minted = mint(&data_dir, "publish:t", &["--ttl", "1h"]);
    assert!(
        minted.status.success(),
        "tidegate token failed: {}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let publisher = String::from_utf8(minted.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(looks_like_jwt(&publisher), "token output: {publisher:?}");
    let publish = publish_one(&client, server.url("/v1/topics/t/records")).bearer_auth(&publisher);
    expect_status(publish, 200, "minted publish:t token publishes").await;
    let create = create_topic(&client, server.url("/v1/topics"), "u").bearer_auth(&publisher);
    expect_status(create, 403, "minted publish:t token is not admin").await;
    let fetch = client
        .get(server.url("/v1/topics/t/partitions/0/records"))
        .bearer_auth(&publisher);
    expect_status(fetch, 403, "minted publish:t token cannot read").await;

    // A typo in a scope fails instead of minting a useless token.
    let bad = mint(&data_dir, "publsh:t", &[]);
    assert!(!bad.status.success(), "`publsh:t` should be refused");
    assert!(
        !looks_like_jwt(String::from_utf8_lossy(&bad.stdout).trim()),
        "no token for a bad scope"
    );

    let first = server.stop();
    assert_eq!(
        first
            .stdout
            .lines()
            .filter(|line| line.trim() == admin)
            .count(),
        1,
        "the admin token on a line of its own, once:\n{}",
        first.stdout
    );

    // Restart: same secret, no new token printed, old tokens still valid.
    let mut server = serve(&data_dir, &[], "info");
    for (token, what) in [(&admin, "old admin token"), (&publisher, "minted token")] {
        let publish = publish_one(&client, server.url("/v1/topics/t/records")).bearer_auth(token);
        expect_status(publish, 200, &format!("{what} after restart")).await;
    }
    let create = create_topic(&client, server.url("/v1/topics"), "after-restart");
    expect_status(
        create.bearer_auth(&admin),
        201,
        "old admin token after restart",
    )
    .await;
    let second = server.stop();
    assert!(
        !prints_a_token(&second.stdout),
        "a restart must not print a token:\n{}",
        second.stdout
    );
    assert!(
        !second.stdout.contains(admin.as_str()),
        "old token printed again"
    );
    assert_eq!(
        std::fs::read(&secret_path).expect("read secret"),
        secret,
        "the secret must survive a restart unchanged"
    );
}

#[tokio::test]
async fn auth_none_serves_requests_without_tokens() {
    let dir = TempDir::new().expect("temp dir");
    let data_dir = data_dir_arg(&dir);
    let mut server = serve(&data_dir, &["--auth", "none"], "info");
    let client = reqwest::Client::new();
    let create = create_topic(&client, server.url("/v1/topics"), "open");
    expect_status(create, 201, "create without a token").await;
    let publish = publish_one(&client, server.url("/v1/topics/open/records"));
    expect_status(publish, 200, "publish without a token").await;
    for path in [
        "/v1/topics",
        "/v1/topics/open",
        "/v1/topics/open/partitions/0/records",
        "/v1/topics/open/partitions/0/offsets?timestamp=0",
    ] {
        let get = client.get(server.url(path));
        expect_status(get, 200, &format!("GET {path} without a token")).await;
    }
    let delete = client.delete(server.url("/v1/topics/open"));
    expect_status(delete, 204, "delete without a token").await;

    let output = server.stop();
    assert!(
        output.stderr.contains("WARN") && output.stderr.contains("--auth none"),
        "a loud warning at start:\n{}",
        output.stderr
    );
    assert!(
        !prints_a_token(&output.stdout),
        "no admin token with --auth none:\n{}",
        output.stdout
    );
}
