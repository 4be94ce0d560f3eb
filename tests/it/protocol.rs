//! HTTP-level behaviour outside any one route: 405 with `Allow`, request ids, what client
//! text may come back in errors and logs, and token transport corner cases.

use reqwest::Method;
use serde_json::json;

use crate::auth::support::{now, test_token};
use crate::harness::{TEST_SECRET, TestApp, expect_error, token};
use crate::process::Process;

#[tokio::test]
async fn known_paths_answer_405_with_allow_for_other_methods() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    let cases = [
        (Method::TRACE, "/v1/topics", "GET, POST"),
        (Method::PUT, "/v1/topics", "GET, POST"),
        (Method::HEAD, "/healthz", "GET"),
        (Method::OPTIONS, "/readyz", "GET"),
        (Method::PUT, "/v1/topics/t", "GET, PATCH, DELETE"),
        (Method::DELETE, "/v1/topics/t/records", "POST"),
        (Method::POST, "/v1/topics/t/partitions/0/records", "GET"),
        (Method::PATCH, "/openapi.json", "GET"),
        (Method::POST, "/asyncapi.json", "GET"),
    ];
    for (method, path, allow) in cases {
        let response = app
            .request(method.clone(), path)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 405, "{method} {path}");
        let allowed = response.headers()["allow"].to_str().unwrap().to_owned();
        let mut allowed: Vec<&str> = allowed.split(", ").collect();
        let mut expected: Vec<&str> = allow.split(", ").collect();
        allowed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(allowed, expected, "{method} {path}");
        if method != Method::HEAD {
            expect_error(response, 405, "method_not_allowed").await;
        }
    }
    for path in ["/nope", "/v1/topics/t/partitions", "/v1/topics/t/x/y/z/w"] {
        let response = app.get(path).send().await.expect("send");
        expect_error(response, 404, "not_found").await;
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/v1/topics", "/nope"] {
        let response = app.get(path).send().await.expect("send");
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(id.len() >= 16, "{path}: {id}");
    }
}

#[tokio::test]
async fn echoed_client_text_is_capped_and_escaped() {
    let app = TestApp::spawn().await;
    let long_name = "x".repeat(1_000_000);
    let response = app.post_topic(json!({"name": long_name})).await;
    let error = expect_error(response, 400, "invalid_topic_name").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.len() < 300, "{} bytes echoed", message.len());

    let forged = "a\n2026-01-01T00:00:00Z  INFO FORGED \u{1b}[31mred";
    let response = app.post_topic(json!({"name": "t", forged: 1})).await;
    let error = expect_error(response, 400, "invalid_body").await;
    let message = error["message"].as_str().unwrap();
    assert!(
        !message.contains('\n') && !message.contains('\u{1b}'),
        "{message:?}"
    );
    assert!(message.contains("a\\n2026"), "{message:?}");
}

#[tokio::test]
async fn a_forged_field_name_never_starts_a_log_line() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let mut server = Process::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
            "--jwt-secret",
            TEST_SECRET,
            "--log-format",
            "text",
        ],
        "debug",
    );
    let client = reqwest::Client::new();
    let admin = token("admin", "admin");
    let forged = "a\n2026-01-01T00:00:00Z  INFO FORGED \u{1b}[2J";
    let created = client
        .post(server.url("/v1/topics"))
        .bearer_auth(&admin)
        .json(&json!({"name": "t"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let attempts = [
        (server.url("/v1/topics"), json!({"name": "u", forged: 1})),
        (
            server.url("/v1/topics/t/records"),
            json!({"records": [{"value": 1, forged: 2}]}),
        ),
        (
            server.url("/v1/topics/a%0A2026-01-01T00:00:00Z%20INFO%20FORGED/records"),
            json!({"records": [{"value": 1}]}),
        ),
    ];
    for (url, body) in attempts {
        let response = client
            .post(&url)
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{url}");
    }
    let response = client
        .get(server.url("/v1/topics/t/partitions/0%0AFORGED/records"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let output = server.stop();
    let log = output.stderr;
    assert!(
        log.contains("FORGED"),
        "the attempts were logged at debug:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "an ESC byte reached the log");
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00Z"),
            "a forged line:\n{line}\nin\n{log}"
        );
    }
}

#[tokio::test]
async fn token_transport_and_claim_errors_are_explicit() {
    let app = TestApp::spawn().await;
    let admin = token("admin", "admin");
    let twice = format!("/v1/topics?access_token={admin}&access_token={admin}");
    let response = app
        .anonymous(Method::GET, &twice)
        .send()
        .await
        .expect("send");
    let error = expect_error(response, 401, "invalid_token").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("more than once"),
        "{error}"
    );
    let response = app
        .anonymous(Method::GET, &format!("/v1/topics?access_token={admin}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);

    for exp in [
        json!(-1),
        json!(1e308),
        json!("tomorrow"),
        json!(1e30),
        json!(null),
    ] {
        let claims = json!({"sub": "x", "scope": "admin", "exp": exp, "iat": now()});
        let response = app
            .anonymous(Method::GET, "/v1/topics")
            .bearer_auth(test_token(&claims))
            .send()
            .await
            .expect("send");
        let error = expect_error(response, 401, "invalid_token").await;
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("invalid claim `exp`"),
            "exp {exp}: {message}"
        );
    }
    let claims = json!({"sub": "x", "scope": "admin", "iat": now()});
    let response = app
        .anonymous(Method::GET, "/v1/topics")
        .bearer_auth(test_token(&claims))
        .send()
        .await
        .expect("send");
    let error = expect_error(response, 401, "invalid_token").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("missing required claim `exp`"),
        "{error}"
    );
}

/// An offset no partition can hold (beyond 2^63 - 1) is the same error wherever it comes
/// from: a fetch's query, a commit's or a seek's body, a WebSocket op.
#[tokio::test]
async fn an_offset_beyond_the_largest_is_invalid_offset_on_every_transport() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    let beyond = 1u64 << 63;
    let fetched = app.fetch("t", 0, &format!("offset={beyond}")).await;
    expect_error(fetched, 400, "invalid_offset").await;
    let commit = json!({"offsets": [{"topic": "t", "partition": 0, "offset": beyond}]});
    expect_error(
        app.post_group("g", "commit", &commit).await,
        400,
        "invalid_offset",
    )
    .await;
    let seek = json!({"topic": "t", "to": {"offsets": [{"partition": 0, "offset": beyond}]}});
    expect_error(
        app.post_group("g", "seek", &seek).await,
        400,
        "invalid_offset",
    )
    .await;

    let mut ws = crate::push::client::Ws::connect(&app.base_url, &app.admin_token).await;
    ws.send(json!({"op": "subscribe", "req": 1, "topic": "t", "from": {"offsets": {"0": beyond}}}))
        .await;
    let refused = ws.expect("error").await;
    assert_eq!(
        (refused["req"].clone(), refused["error"]["code"].clone()),
        (json!(1), json!("invalid_offset"))
    );
    let subscribed = ws.subscribe(json!({"topic": "t", "group": "g"})).await;
    ws.expect("assignment").await;
    ws.send(json!({"op": "commit", "req": 2, "sub": subscribed["sub"], "offsets": [{"partition": 0, "offset": beyond}]}))
        .await;
    let refused = ws.expect("error").await;
    assert_eq!(
        (refused["req"].clone(), refused["error"]["code"].clone()),
        (json!(2), json!("invalid_offset"))
    );
}
