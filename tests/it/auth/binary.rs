//! The real binary: `?access_token=` kept out of the logs, the first-run secret and admin
//! token, `tidegate token`, and `--auth none`.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use tempfile::TempDir;

use super::support::{Process, claims, command, hs256};

const SECRET: &str = "binary-test-secret-0123456789abcdefgh";

fn data_dir_arg(dir: &TempDir) -> String {
    dir.path()
        .join("data")
        .to_str()
        .expect("utf-8 path")
        .to_owned()
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

#[tokio::test]
async fn access_token_query_works_and_never_reaches_the_logs() {
    for (rust_log, format) in [("info", "text"), ("debug", "json"), ("trace", "text")] {
        let dir = TempDir::new().expect("temp dir");
        let data_dir = data_dir_arg(&dir);
        let mut server = Process::spawn(
            &[
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &data_dir,
                "--jwt-secret",
                SECRET,
                "--log-format",
                format,
                "--shutdown-timeout-secs",
                "2",
            ],
            rust_log,
        );
        let what = format!("RUST_LOG={rust_log} --log-format {format}");
        let client = reqwest::Client::new();
        let admin = hs256(SECRET.as_bytes(), &claims("admin"));
        let response = client
            .post(server.url("/v1/topics"))
            .bearer_auth(&admin)
            .json(&json!({"name": "logcheck"}))
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), 201, "{what}");

        let valid = hs256(
            SECRET.as_bytes(),
            &claims("publish:logcheck subscribe:logcheck"),
        );
        let forged = hs256(b"some-other-secret-0123456789abcdefgh", &claims("admin"));
        let garbage = "not-a-jwt-but-a-secret-value-7f3a9c";

        let response = client
            .post(server.url(&format!("/v1/topics/logcheck/records?access_token={valid}")))
            .json(&json!({"records": [{"value": "hello"}]}))
            .send()
            .await
            .expect("publish");
        assert_eq!(
            response.status(),
            200,
            "{what}: publish with ?access_token="
        );
        let fetch = |token: &str| {
            client
                .get(server.url(&format!(
                    "/v1/topics/logcheck/partitions/0/records?offset=0&access_token={token}"
                )))
                .send()
        };
        let response = fetch(&valid).await.expect("fetch");
        assert_eq!(response.status(), 200, "{what}: fetch with ?access_token=");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["records"][0]["value"], "hello", "{what}: {body}");
        let response = fetch(&forged).await.expect("fetch");
        assert_eq!(response.status(), 401, "{what}: forged ?access_token=");
        assert!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer")),
            "{what}: WWW-Authenticate"
        );
        let response = fetch(garbage).await.expect("fetch");
        assert_eq!(response.status(), 401, "{what}: garbage ?access_token=");
        // 403 and 404 paths log too.
        let response = client
            .post(server.url(&format!("/v1/topics?access_token={valid}")))
            .json(&json!({"name": "nope"}))
            .send()
            .await
            .expect("create");
        assert_eq!(
            response.status(),
            403,
            "{what}: create with a publisher token"
        );
        let response = client
            .get(server.url(&format!("/v1/topics/absent?access_token={admin}")))
            .send()
            .await
            .expect("describe");
        assert_eq!(response.status(), 404, "{what}: describe a missing topic");
        // The token in the header too, for good measure.
        let response = client
            .get(server.url("/v1/topics/logcheck"))
            .bearer_auth(&forged)
            .send()
            .await
            .expect("describe");
        assert_eq!(response.status(), 401, "{what}: forged header token");

        let output = server.stop();
        let log = format!("{}\n{}", output.stdout, output.stderr);
        // With --jwt-secret there is no first run: no secret file, no token printed.
        assert!(
            !dir.path().join("data").join("jwt-secret").exists(),
            "{what}: jwt-secret generated although --jwt-secret was given"
        );
        assert!(
            !output
                .stdout
                .lines()
                .any(|line| looks_like_jwt(line.trim())),
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
    let serve_args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
        "--shutdown-timeout-secs",
        "2",
    ];
    let client = reqwest::Client::new();

    // First run: empty (not even created) data directory, no key flags.
    let mut server = Process::spawn(&serve_args, "info");
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

    let response = client
        .post(server.url("/v1/topics"))
        .bearer_auth(&admin)
        .json(&json!({"name": "t"}))
        .send()
        .await
        .expect("create");
    assert_eq!(
        response.status(),
        201,
        "the printed admin token creates a topic"
    );
    let response = client
        .get(server.url("/v1/topics"))
        .send()
        .await
        .expect("list");
    assert_eq!(response.status(), 401, "auth is on without a key flag");

    // `tidegate token` signs with the same generated secret.
    let minted = command(&[
        "token",
        "--data-dir",
        &data_dir,
        "--sub",
        "x",
        "--scope",
        "publish:t",
        "--ttl",
        "1h",
    ])
    .output()
    .expect("run tidegate token");
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
    let publish = |url: String, token: &str| {
        client
            .post(url)
            .bearer_auth(token)
            .json(&json!({"records": [{"value": 1}]}))
            .send()
    };
    let response = publish(server.url("/v1/topics/t/records"), &publisher)
        .await
        .expect("publish");
    assert_eq!(response.status(), 200, "minted publish:t token publishes");
    let response = client
        .post(server.url("/v1/topics"))
        .bearer_auth(&publisher)
        .json(&json!({"name": "u"}))
        .send()
        .await
        .expect("create");
    assert_eq!(
        response.status(),
        403,
        "minted publish:t token is not admin"
    );
    let response = client
        .get(server.url("/v1/topics/t/partitions/0/records"))
        .bearer_auth(&publisher)
        .send()
        .await
        .expect("fetch");
    assert_eq!(response.status(), 403, "minted publish:t token cannot read");

    // A typo in a scope fails instead of minting a useless token.
    let bad = command(&[
        "token",
        "--data-dir",
        &data_dir,
        "--sub",
        "x",
        "--scope",
        "publsh:t",
    ])
    .output()
    .expect("run tidegate token");
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
    let mut server = Process::spawn(&serve_args, "info");
    for (token, what) in [(&admin, "old admin token"), (&publisher, "minted token")] {
        let response = publish(server.url("/v1/topics/t/records"), token)
            .await
            .expect("publish");
        assert_eq!(response.status(), 200, "{what} after restart");
    }
    let response = client
        .post(server.url("/v1/topics"))
        .bearer_auth(&admin)
        .json(&json!({"name": "after-restart"}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), 201, "old admin token after restart");
    let second = server.stop();
    assert!(
        !second
            .stdout
            .lines()
            .any(|line| looks_like_jwt(line.trim())),
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
    let mut server = Process::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
            "--auth",
            "none",
            "--shutdown-timeout-secs",
            "2",
        ],
        "info",
    );
    let client = reqwest::Client::new();
    let response = client
        .post(server.url("/v1/topics"))
        .json(&json!({"name": "open"}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), 201, "create without a token");
    let response = client
        .post(server.url("/v1/topics/open/records"))
        .json(&json!({"records": [{"value": 1}]}))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 200, "publish without a token");
    for path in [
        "/v1/topics",
        "/v1/topics/open",
        "/v1/topics/open/partitions/0/records",
        "/v1/topics/open/partitions/0/offsets?timestamp=0",
    ] {
        let response = client.get(server.url(path)).send().await.expect("get");
        assert_eq!(response.status(), 200, "GET {path} without a token");
    }
    let response = client
        .delete(server.url("/v1/topics/open"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 204, "delete without a token");

    let output = server.stop();
    assert!(
        output.stderr.contains("WARN") && output.stderr.contains("--auth none"),
        "a loud warning at start:\n{}",
        output.stderr
    );
    assert!(
        !output
            .stdout
            .lines()
            .any(|line| looks_like_jwt(line.trim())),
        "no admin token with --auth none:\n{}",
        output.stdout
    );
}
