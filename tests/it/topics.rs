//! Topic administration: create, list, describe, change, delete, and every validation error.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::harness::{TestApp, expect_error, json_body};

const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;

async fn create(app: &TestApp, body: Value) -> Response {
    app.post("/v1/topics")
        .json(&body)
        .send()
        .await
        .expect("create topic")
}

async fn describe(app: &TestApp, topic: &str) -> Response {
    app.get(&format!("/v1/topics/{topic}"))
        .send()
        .await
        .expect("describe topic")
}

async fn patch(app: &TestApp, topic: &str, body: Value) -> Response {
    app.request(Method::PATCH, &format!("/v1/topics/{topic}"))
        .json(&body)
        .send()
        .await
        .expect("patch topic")
}

async fn delete(app: &TestApp, topic: &str) -> Response {
    app.request(Method::DELETE, &format!("/v1/topics/{topic}"))
        .send()
        .await
        .expect("delete topic")
}

async fn list(app: &TestApp) -> Vec<Value> {
    let response = app.get("/v1/topics").send().await.expect("list topics");
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    body["topics"].as_array().expect("topics array").clone()
}

/// `(log_start_offset, high_watermark)` of every partition, checking the numbering.
fn bounds(details: &Value) -> Vec<(u64, u64)> {
    let partitions = details["partition_offsets"]
        .as_array()
        .unwrap_or_else(|| panic!("partition_offsets in {details}"));
    partitions
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

async fn publish_ok(app: &TestApp, topic: &str, records: Value) -> Vec<(u64, u64)> {
    let response = app.publish(topic, records).await;
    assert_eq!(response.status(), 200, "publish to {topic}");
    let body = json_body(response).await;
    body["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            (
                o["partition"].as_u64().expect("partition"),
                o["offset"].as_u64().expect("offset"),
            )
        })
        .collect()
}

#[tokio::test]
async fn create_returns_201_with_defaults_and_partition_offsets() {
    let app = TestApp::spawn().await;
    let response = create(&app, json!({"name": "orders", "partitions": 3})).await;
    assert_eq!(response.status(), 201);
    let body = json_body(response).await;
    assert_eq!(body["name"], "orders");
    assert_eq!(body["partitions"], 3);
    assert_eq!(body["retention_ms"], SEVEN_DAYS_MS);
    assert_eq!(body["retention_bytes"], -1);
    assert_eq!(bounds(&body), vec![(0, 0); 3]);

    // The description afterwards says the same.
    let described = json_body(describe(&app, "orders").await).await;
    assert_eq!(described, body);
}

#[tokio::test]
async fn create_without_partitions_defaults_to_one() {
    let app = TestApp::spawn().await;
    let response = create(&app, json!({"name": "single"})).await;
    assert_eq!(response.status(), 201);
    let body = json_body(response).await;
    assert_eq!(body["partitions"], 1);
    assert_eq!(bounds(&body), vec![(0, 0)]);
}

#[tokio::test]
async fn create_with_explicit_retention_and_boundary_values() {
    let app = TestApp::spawn().await;
    let response = create(
        &app,
        json!({"name": "kept", "partitions": 1, "retention_ms": -1, "retention_bytes": 1048576}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body = json_body(response).await;
    assert_eq!(body["retention_ms"], -1);
    assert_eq!(body["retention_bytes"], 1048576);

    let response = create(
        &app,
        json!({"name": "short", "partitions": 1, "retention_ms": 1, "retention_bytes": -1}),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(json_body(response).await["retention_ms"], 1);

    // The largest partition count is allowed.
    let response = create(&app, json!({"name": "wide", "partitions": 1024})).await;
    assert_eq!(response.status(), 201);
    let body = json_body(response).await;
    assert_eq!(body["partitions"], 1024);
    assert_eq!(bounds(&body).len(), 1024);
}

#[tokio::test]
async fn valid_names_of_every_allowed_character_and_length() {
    let app = TestApp::spawn().await;
    let longest = "x".repeat(249);
    for name in ["a", "Z", "0", "a.b_c-D9", "...", "_-.", longest.as_str()] {
        let response = create(&app, json!({"name": name, "partitions": 1})).await;
        assert_eq!(response.status(), 201, "creating {name:?}");
        assert_eq!(json_body(response).await["name"], name);
        let described = describe(&app, name).await;
        assert_eq!(described.status(), 200, "describing {name:?}");
    }
}

#[tokio::test]
async fn create_existing_topic_conflicts() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    app.publish("orders", json!([{"value": 1}])).await;
    let response = create(&app, json!({"name": "orders", "partitions": 5})).await;
    expect_error(response, 409, "topic_exists").await;
    // The existing topic is untouched.
    let body = json_body(describe(&app, "orders").await).await;
    assert_eq!(body["partitions"], 2);
    let total: u64 = bounds(&body).iter().map(|(_, hwm)| hwm).sum();
    assert_eq!(total, 1);
}

#[tokio::test]
async fn invalid_topic_names_are_rejected() {
    let app = TestApp::spawn().await;
    let too_long = "x".repeat(250);
    for name in [
        "",
        ".",
        "..",
        "a b",
        "a/b",
        "é",
        "topic!",
        "tab\t",
        too_long.as_str(),
    ] {
        let response = create(&app, json!({"name": name, "partitions": 1})).await;
        expect_error(response, 400, "invalid_topic_name").await;
    }
    assert!(list(&app).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn invalid_topic_names_in_paths_are_rejected() {
    let app = TestApp::spawn().await;
    let too_long = "x".repeat(250);
    for encoded in ["a%20b", "%C3%A9", "a%21", too_long.as_str()] {
        let response = describe(&app, encoded).await;
        expect_error(response, 400, "invalid_topic_name").await;
        let response = patch(&app, encoded, json!({"retention_ms": 5})).await;
        expect_error(response, 400, "invalid_topic_name").await;
        let response = delete(&app, encoded).await;
        expect_error(response, 400, "invalid_topic_name").await;
    }
}

#[tokio::test]
async fn invalid_partition_counts_are_rejected() {
    let app = TestApp::spawn().await;
    for partitions in [json!(0), json!(1025), json!(4_294_967_295u64)] {
        let response = create(&app, json!({"name": "t", "partitions": partitions})).await;
        expect_error(response, 400, "invalid_argument").await;
    }
    // Not a valid count at all: rejected while reading the body.
    for partitions in [
        json!(-1),
        json!("x"),
        json!(1.5),
        json!(null),
        json!(4_294_967_296u64),
    ] {
        let response = create(&app, json!({"name": "t", "partitions": partitions})).await;
        expect_error(response, 400, "invalid_body").await;
    }
    assert!(list(&app).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn invalid_retention_is_rejected() {
    let app = TestApp::spawn().await;
    for field in ["retention_ms", "retention_bytes"] {
        for value in [0, -5, -2] {
            let response = create(&app, json!({"name": "t", "partitions": 1, field: value})).await;
            let error = expect_error(response, 400, "invalid_argument").await;
            assert!(
                error["message"].as_str().unwrap().contains(field),
                "message names {field}: {error}"
            );
        }
        let response = create(&app, json!({"name": "t", "partitions": 1, field: "soon"})).await;
        expect_error(response, 400, "invalid_body").await;
    }
    assert!(list(&app).await.is_empty(), "nothing was created");
    // -1 (unlimited) is fine for both.
    let response = create(
        &app,
        json!({"name": "t", "partitions": 1, "retention_ms": -1, "retention_bytes": -1}),
    )
    .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn malformed_create_bodies_are_rejected() {
    let app = TestApp::spawn().await;
    // Unknown field.
    let response = create(&app, json!({"name": "t", "partitions": 1, "replicas": 3})).await;
    let error = expect_error(response, 400, "invalid_body").await;
    assert!(
        error["message"].as_str().unwrap().contains("replicas"),
        "{error}"
    );
    // Missing name.
    let response = create(&app, json!({"partitions": 1})).await;
    expect_error(response, 400, "invalid_body").await;
    // Not an object.
    let response = create(&app, json!(["t", 1])).await;
    expect_error(response, 400, "invalid_body").await;
    // Malformed JSON.
    for raw in [r#"{"name": "t", "partitions": 1"#, "", "{name: t}", "null"] {
        let response = app
            .post("/v1/topics")
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        expect_error(response, 400, "invalid_body").await;
    }
    assert!(list(&app).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn create_needs_a_json_content_type() {
    let app = TestApp::spawn().await;
    let body = r#"{"name": "t", "partitions": 1}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app.post("/v1/topics").body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        expect_error(response, 415, "unsupported_media_type").await;
    }
    assert!(list(&app).await.is_empty(), "nothing was created");
    // A charset parameter is fine.
    let response = app
        .post("/v1/topics")
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn list_is_sorted_with_partition_counts() {
    let app = TestApp::spawn().await;
    assert!(list(&app).await.is_empty(), "a new server has no topics");
    app.create_topic("orders", 3).await;
    app.create_topic("Audit", 1).await;
    app.create_topic("clicks", 12).await;
    let response = create(
        &app,
        json!({"name": "billing", "partitions": 2, "retention_ms": 60000, "retention_bytes": 4096}),
    )
    .await;
    assert_eq!(response.status(), 201);

    let topics = list(&app).await;
    let summary: Vec<(&str, u64)> = topics
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["partitions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("Audit", 1), ("billing", 2), ("clicks", 12), ("orders", 3)]
    );
    let billing = &topics[1];
    assert_eq!(billing["retention_ms"], 60000);
    assert_eq!(billing["retention_bytes"], 4096);
    assert_eq!(topics[0]["retention_ms"], SEVEN_DAYS_MS);
    assert_eq!(topics[0]["retention_bytes"], -1);
}

#[tokio::test]
async fn describe_shows_partition_offsets_after_publishing() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 3).await;
    publish_ok(
        &app,
        "orders",
        json!([
            {"value": 1, "partition": 0},
            {"value": 2, "partition": 2},
            {"value": 3, "partition": 2},
        ]),
    )
    .await;
    let response = describe(&app, "orders").await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["name"], "orders");
    assert_eq!(body["partitions"], 3);
    assert_eq!(bounds(&body), vec![(0, 1), (0, 0), (0, 2)]);
}

#[tokio::test]
async fn describe_unknown_topic_is_404() {
    let app = TestApp::spawn().await;
    let error = expect_error(describe(&app, "missing").await, 404, "topic_not_found").await;
    assert!(
        error["message"].as_str().unwrap().contains("missing"),
        "{error}"
    );
}

#[tokio::test]
async fn patch_raises_partitions_and_new_partitions_take_records() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    publish_ok(
        &app,
        "orders",
        json!([{"value": "a", "partition": 0}, {"value": "b", "partition": 1}, {"value": "c", "partition": 1}]),
    )
    .await;

    let response = patch(&app, "orders", json!({"partitions": 5})).await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["partitions"], 5);
    assert_eq!(body["retention_ms"], SEVEN_DAYS_MS, "retention unchanged");
    assert_eq!(
        bounds(&body),
        vec![(0, 1), (0, 2), (0, 0), (0, 0), (0, 0)],
        "old partitions keep their records, new ones start empty"
    );

    // Every new partition accepts records, starting at offset 0.
    let offsets = publish_ok(
        &app,
        "orders",
        json!([
            {"value": "x", "partition": 4},
            {"value": "y", "partition": 2},
            {"value": "z", "partition": 4},
        ]),
    )
    .await;
    assert_eq!(offsets, vec![(4, 0), (2, 0), (4, 1)]);
    let fetched = json_body(app.fetch("orders", 4, "offset=0").await).await;
    let values: Vec<&Value> = fetched["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["value"])
        .collect();
    assert_eq!(values, vec![&json!("x"), &json!("z")]);

    let listed = list(&app).await;
    assert_eq!(listed[0]["partitions"], 5);

    // Asking for the current count again is not an error.
    let response = patch(&app, "orders", json!({"partitions": 5})).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn patch_cannot_lower_partitions_or_exceed_the_maximum() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 4).await;
    let response = patch(&app, "orders", json!({"partitions": 2})).await;
    expect_error(response, 400, "invalid_argument").await;
    let response = patch(&app, "orders", json!({"partitions": 0})).await;
    expect_error(response, 400, "invalid_argument").await;
    let response = patch(&app, "orders", json!({"partitions": 1025})).await;
    expect_error(response, 400, "invalid_argument").await;
    let response = patch(&app, "orders", json!({"partitions": -1})).await;
    expect_error(response, 400, "invalid_body").await;
    let body = json_body(describe(&app, "orders").await).await;
    assert_eq!(body["partitions"], 4);
    assert_eq!(bounds(&body).len(), 4);
}

#[tokio::test]
async fn patch_changes_retention_only() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 3).await;
    let response = patch(&app, "orders", json!({"retention_ms": 3_600_000})).await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["retention_ms"], 3_600_000);
    assert_eq!(body["retention_bytes"], -1);
    assert_eq!(body["partitions"], 3);

    let response = patch(&app, "orders", json!({"retention_bytes": 65536})).await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["retention_ms"], 3_600_000, "earlier change kept");
    assert_eq!(body["retention_bytes"], 65536);

    let response = patch(
        &app,
        "orders",
        json!({"retention_ms": -1, "retention_bytes": -1}),
    )
    .await;
    assert_eq!(response.status(), 200);

    // An empty change is a no-op.
    let response = patch(&app, "orders", json!({})).await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["retention_ms"], -1);
    assert_eq!(body["retention_bytes"], -1);
    assert_eq!(body["partitions"], 3);

    let described = json_body(describe(&app, "orders").await).await;
    assert_eq!(described, body);
}

#[tokio::test]
async fn patch_rejects_invalid_changes() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 1).await;
    for body in [
        json!({"retention_ms": 0}),
        json!({"retention_ms": -5}),
        json!({"retention_bytes": 0}),
        // A valid part does not save an invalid one.
        json!({"partitions": 3, "retention_ms": 0}),
    ] {
        let response = patch(&app, "orders", body).await;
        expect_error(response, 400, "invalid_argument").await;
    }
    let response = patch(&app, "orders", json!({"name": "renamed"})).await;
    expect_error(response, 400, "invalid_body").await;
    let response = app
        .request(Method::PATCH, "/v1/topics/orders")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "invalid_body").await;
    let response = app
        .request(Method::PATCH, "/v1/topics/orders")
        .header("content-type", "text/plain")
        .body(r#"{"partitions": 2}"#)
        .send()
        .await
        .unwrap();
    expect_error(response, 415, "unsupported_media_type").await;

    let body = json_body(describe(&app, "orders").await).await;
    assert_eq!(body["partitions"], 1);
    assert_eq!(body["retention_ms"], SEVEN_DAYS_MS);
    assert_eq!(body["retention_bytes"], -1);
}

#[tokio::test]
async fn patch_unknown_topic_is_404() {
    let app = TestApp::spawn().await;
    let response = patch(&app, "missing", json!({"partitions": 2})).await;
    expect_error(response, 404, "topic_not_found").await;
    assert!(list(&app).await.is_empty(), "patch does not create");
}

#[tokio::test]
async fn delete_removes_topic() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    app.create_topic("keep", 1).await;
    publish_ok(&app, "orders", json!([{"value": 1}, {"value": 2}])).await;

    let response = delete(&app, "orders").await;
    assert_eq!(response.status(), 204);
    assert!(
        response.bytes().await.unwrap().is_empty(),
        "204 has no body"
    );

    expect_error(describe(&app, "orders").await, 404, "topic_not_found").await;
    expect_error(delete(&app, "orders").await, 404, "topic_not_found").await;
    expect_error(
        app.publish("orders", json!([{"value": 3}])).await,
        404,
        "topic_not_found",
    )
    .await;
    expect_error(app.fetch("orders", 0, "").await, 404, "topic_not_found").await;
    let names: Vec<Value> = list(&app).await.iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, vec![json!("keep")]);
}

#[tokio::test]
async fn delete_leaves_topics_with_similar_names_alone() {
    let app = TestApp::spawn().await;
    for name in ["orders", "orders-archive", "orders.v2", "order"] {
        app.create_topic(name, 1).await;
        let response = app
            .post(&format!("/v1/topics/{name}/records"))
            .header("Idempotency-Key", "same-key")
            .json(&json!({"records": [{"value": name}, {"value": name}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(delete(&app, "orders").await.status(), 204);
    for name in ["orders-archive", "orders.v2", "order"] {
        let fetched = json_body(app.fetch(name, 0, "").await).await;
        let values: Vec<&Value> = fetched["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["value"])
            .collect();
        assert_eq!(
            values,
            vec![&json!(name), &json!(name)],
            "records of {name} kept"
        );
        // Their idempotency keys still replay.
        let response = app
            .post(&format!("/v1/topics/{name}/records"))
            .header("Idempotency-Key", "same-key")
            .json(&json!({"records": [{"value": name}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["idempotency-replayed"], "true", "{name}");
        assert_eq!(
            bounds(&json_body(describe(&app, name).await).await),
            vec![(0, 2)]
        );
    }
}

#[tokio::test]
async fn delete_unknown_topic_is_404() {
    let app = TestApp::spawn().await;
    expect_error(delete(&app, "never").await, 404, "topic_not_found").await;
}

#[tokio::test]
async fn recreated_topic_starts_empty_at_offset_zero() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    let old = app
        .post("/v1/topics/orders/records")
        .header("Idempotency-Key", "order-1")
        .json(&json!({"records": [{"value": "old-0", "partition": 0}, {"value": "old-1", "partition": 0}, {"value": "old-2", "partition": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 200);

    assert_eq!(delete(&app, "orders").await.status(), 204);
    let response = create(
        &app,
        json!({"name": "orders", "partitions": 1, "retention_ms": 5000}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body = json_body(response).await;
    assert_eq!(body["partitions"], 1, "the new settings, not the old ones");
    assert_eq!(body["retention_ms"], 5000);
    assert_eq!(bounds(&body), vec![(0, 0)]);

    let fetched = json_body(app.fetch("orders", 0, "").await).await;
    assert_eq!(fetched["records"], json!([]), "no old records: {fetched}");
    assert_eq!(fetched["high_watermark"], 0);
    expect_error(app.fetch("orders", 1, "").await, 404, "partition_not_found").await;

    // The old topic's idempotency key does not replay against the new topic.
    let response = app
        .post("/v1/topics/orders/records")
        .header("Idempotency-Key", "order-1")
        .json(&json!({"records": [{"value": "new-0"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("idempotency-replayed").is_none());
    let body = json_body(response).await;
    assert_eq!(body["offsets"], json!([{"partition": 0, "offset": 0}]));

    let fetched = json_body(app.fetch("orders", 0, "offset=0").await).await;
    let values: Vec<&Value> = fetched["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["value"])
        .collect();
    assert_eq!(values, vec![&json!("new-0")]);
    assert_eq!(fetched["high_watermark"], 1);
}

#[tokio::test]
async fn unknown_routes_are_404_with_an_error_body() {
    let app = TestApp::spawn().await;
    for path in [
        "/nope",
        "/v1/nope",
        "/v2/topics",
        "/v1/topics/orders/partitions",
    ] {
        let response = app.get(path).send().await.unwrap();
        let error = expect_error(response, 404, "not_found").await;
        assert!(
            error["message"].as_str().unwrap().contains(path),
            "message names the path: {error}"
        );
    }
    let response = app
        .post("/v1/things")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "not_found").await;
}
