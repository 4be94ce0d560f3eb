//! Topic administration: create, list, describe, change, delete, and every validation error.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{TestApp, bounds, dense_offsets, expect_error, json_body, records, token};

const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// The values of the records of a fetch body, in order.
fn values(fetched: &Value) -> Vec<&Value> {
    records(fetched).iter().map(|r| &r["value"]).collect()
}

#[tokio::test]
async fn create_returns_201_with_defaults_and_partition_offsets() {
    let app = TestApp::spawn().await;
    let body = app
        .create_topic_with(json!({"name": "orders", "partitions": 3}))
        .await;
    assert_eq!(body["name"], "orders");
    assert_eq!(body["partitions"], 3);
    assert_eq!(body["retention_ms"], SEVEN_DAYS_MS);
    assert_eq!(body["retention_bytes"], -1);
    assert_eq!(bounds(&body), vec![(0, 0); 3]);

    // The description afterwards says the same.
    let described = app.describe("orders").await;
    assert_eq!(described, body);
}

#[tokio::test]
async fn create_without_partitions_defaults_to_one() {
    let app = TestApp::spawn().await;
    let body = app.create_topic_with(json!({"name": "single"})).await;
    assert_eq!(body["partitions"], 1);
    assert_eq!(bounds(&body), vec![(0, 0)]);
}

#[tokio::test]
async fn create_with_explicit_retention_and_boundary_values() {
    let app = TestApp::spawn().await;
    let body = app
        .create_topic_with(
            json!({"name": "kept", "partitions": 1, "retention_ms": -1, "retention_bytes": 1048576}),
        )
        .await;
    assert_eq!(body["retention_ms"], -1);
    assert_eq!(body["retention_bytes"], 1048576);

    let body = app
        .create_topic_with(
            json!({"name": "short", "partitions": 1, "retention_ms": 1, "retention_bytes": -1}),
        )
        .await;
    assert_eq!(body["retention_ms"], 1);
}

#[tokio::test]
async fn the_largest_partition_count_is_allowed() {
    let app = TestApp::spawn_alone().await;
    let body = app
        .create_topic_with(json!({"name": "wide", "partitions": 1024}))
        .await;
    assert_eq!(body["partitions"], 1024);
    assert_eq!(bounds(&body).len(), 1024);
}

#[tokio::test]
async fn valid_names_of_every_allowed_character_and_length() {
    let app = TestApp::spawn().await;
    let longest = "x".repeat(crate::harness::longest_topic_name());
    for name in ["a", "Z", "0", "a.b_c-D9", "...", "_-.", longest.as_str()] {
        let created = app
            .create_topic_with(json!({"name": name, "partitions": 1}))
            .await;
        assert_eq!(created["name"], name);
        app.describe(name).await;
    }
}

#[tokio::test]
async fn create_existing_topic_conflicts() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    app.publish("orders", json!([{"value": 1}])).await;
    let response = app
        .post_topic(json!({"name": "orders", "partitions": 5}))
        .await;
    expect_error(response, 409, "topic_exists").await;
    // The existing topic is untouched.
    let body = app.describe("orders").await;
    assert_eq!(body["partitions"], 2);
    let total: u64 = app.record_counts("orders").await.iter().sum();
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
        let response = app.post_topic(json!({"name": name, "partitions": 1})).await;
        expect_error(response, 400, "invalid_topic_name").await;
    }
    assert!(app.list().await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn invalid_topic_names_in_paths_are_rejected() {
    let app = TestApp::spawn().await;
    let too_long = "x".repeat(250);
    for encoded in ["a%20b", "%C3%A9", "a%21", too_long.as_str()] {
        let response = app.get_topic(encoded).await;
        expect_error(response, 400, "invalid_topic_name").await;
        let response = app.patch_topic(encoded, json!({"retention_ms": 5})).await;
        expect_error(response, 400, "invalid_topic_name").await;
        let response = app.delete_topic(encoded).await;
        expect_error(response, 400, "invalid_topic_name").await;
    }
}

#[tokio::test]
async fn invalid_partition_counts_are_rejected() {
    let app = TestApp::spawn().await;
    for partitions in [json!(0), json!(1025), json!(4_294_967_295u64)] {
        let response = app
            .post_topic(json!({"name": "t", "partitions": partitions}))
            .await;
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
        let response = app
            .post_topic(json!({"name": "t", "partitions": partitions}))
            .await;
        expect_error(response, 400, "invalid_body").await;
    }
    assert!(app.list().await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn invalid_retention_is_rejected() {
    let app = TestApp::spawn().await;
    for field in ["retention_ms", "retention_bytes"] {
        for value in [0, -5, -2] {
            let response = app
                .post_topic(json!({"name": "t", "partitions": 1, field: value}))
                .await;
            let error = expect_error(response, 400, "invalid_argument").await;
            assert!(
                error["message"].as_str().unwrap().contains(field),
                "message names {field}: {error}"
            );
        }
        let response = app
            .post_topic(json!({"name": "t", "partitions": 1, field: "soon"}))
            .await;
        expect_error(response, 400, "invalid_body").await;
    }
    assert!(app.list().await.is_empty(), "nothing was created");
    // -1 (unlimited) is fine for both.
    app.create_topic_with(
        json!({"name": "t", "partitions": 1, "retention_ms": -1, "retention_bytes": -1}),
    )
    .await;
}

#[tokio::test]
async fn malformed_create_bodies_are_rejected() {
    let app = TestApp::spawn().await;
    // Unknown field.
    let response = app
        .post_topic(json!({"name": "t", "partitions": 1, "replicas": 3}))
        .await;
    let error = expect_error(response, 400, "invalid_body").await;
    assert!(
        error["message"].as_str().unwrap().contains("replicas"),
        "{error}"
    );
    // Missing name.
    let response = app.post_topic(json!({"partitions": 1})).await;
    expect_error(response, 400, "invalid_body").await;
    // Not an object.
    let response = app.post_topic(json!(["t", 1])).await;
    expect_error(response, 400, "invalid_body").await;
    // Malformed JSON.
    for raw in [r#"{"name": "t", "partitions": 1"#, "", "{name: t}", "null"] {
        let response = app
            .send_raw(Method::POST, "/v1/topics", Some("application/json"), raw)
            .await;
        expect_error(response, 400, "invalid_body").await;
    }
    assert!(app.list().await.is_empty(), "nothing was created");
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
        let response = app
            .send_raw(Method::POST, "/v1/topics", content_type, body)
            .await;
        expect_error(response, 415, "unsupported_media_type").await;
    }
    assert!(app.list().await.is_empty(), "nothing was created");
    // A charset parameter is fine.
    let json = Some("application/json; charset=utf-8");
    let response = app.send_raw(Method::POST, "/v1/topics", json, body).await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn list_is_sorted_with_partition_counts() {
    let app = TestApp::spawn().await;
    assert!(app.list().await.is_empty(), "a new server has no topics");
    app.create_topic("orders", 3).await;
    app.create_topic("Audit", 1).await;
    app.create_topic("clicks", 12).await;
    app.create_topic_with(
        json!({"name": "billing", "partitions": 2, "retention_ms": 60000, "retention_bytes": 4096}),
    )
    .await;

    let topics = app.list().await;
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
    app.publish_ok(
        "orders",
        json!([
            {"value": 1, "partition": 0},
            {"value": 2, "partition": 2},
            {"value": 3, "partition": 2},
        ]),
    )
    .await;
    let body = app.describe("orders").await;
    assert_eq!(body["name"], "orders");
    assert_eq!(body["partitions"], 3);
    let ends: Vec<u64> = bounds(&body).iter().map(|(_, end)| *end).collect();
    for (partition, end) in (0u32..).zip(&ends) {
        assert_eq!(*end, app.next_offset("orders", partition).await);
    }
    if crate::harness::dense_offsets() {
        assert_eq!(bounds(&body), vec![(0, 1), (0, 0), (0, 2)]);
    }
    assert_eq!(app.record_counts("orders").await, vec![1, 0, 2]);
}

#[tokio::test]
async fn describe_unknown_topic_is_404() {
    let app = TestApp::spawn().await;
    let error = expect_error(app.get_topic("missing").await, 404, "topic_not_found").await;
    assert!(
        error["message"].as_str().unwrap().contains("missing"),
        "{error}"
    );
}

#[tokio::test]
async fn patch_raises_partitions_and_new_partitions_take_records() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    app.publish_ok(
        "orders",
        json!([{"value": "a", "partition": 0}, {"value": "b", "partition": 1}, {"value": "c", "partition": 1}]),
    )
    .await;

    let response = app.patch_topic("orders", json!({"partitions": 5})).await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["partitions"], 5);
    assert_eq!(body["retention_ms"], SEVEN_DAYS_MS, "retention unchanged");
    assert_eq!(
        app.record_counts("orders").await,
        vec![1, 2, 0, 0, 0],
        "old partitions keep their records, new ones start empty"
    );

    // Every new partition accepts records, starting at offset 0.
    let offsets = app
        .publish_ok(
            "orders",
            json!([
                {"value": "x", "partition": 4},
                {"value": "y", "partition": 2},
                {"value": "z", "partition": 4},
            ]),
        )
        .await;
    assert_eq!(offsets, vec![(4, 0), (2, 0), (4, 1)]);
    let fetched = app.fetch_ok("orders", 4, "offset=0").await;
    assert_eq!(values(&fetched), vec![&json!("x"), &json!("z")]);

    let listed = app.list().await;
    assert_eq!(listed[0]["partitions"], 5);

    // Asking for the current count again is not an error.
    let response = app.patch_topic("orders", json!({"partitions": 5})).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn patch_cannot_lower_partitions_or_exceed_the_maximum() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 4).await;
    // Fewer partitions conflicts with the topic as it is (Kafka refuses it too).
    let response = app.patch_topic("orders", json!({"partitions": 2})).await;
    expect_error(response, 409, "partitions_cannot_shrink").await;
    let response = app.patch_topic("orders", json!({"partitions": 0})).await;
    expect_error(response, 400, "invalid_argument").await;
    let response = app.patch_topic("orders", json!({"partitions": 1025})).await;
    expect_error(response, 400, "invalid_argument").await;
    for malformed in [json!(-1), json!(4.5), json!("5")] {
        let response = app
            .patch_topic("orders", json!({"partitions": malformed}))
            .await;
        expect_error(response, 400, "invalid_body").await;
    }
    // JSON Schema's integers include whole numbers written with a fraction.
    let response = app.patch_topic("orders", json!({"partitions": 6.0})).await;
    assert_eq!(response.status(), 200);
    let body = app.describe("orders").await;
    assert_eq!(body["partitions"], 6);
    assert_eq!(bounds(&body).len(), 6);
}

#[tokio::test]
async fn patch_changes_retention_only() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 3).await;
    let response = app
        .patch_topic("orders", json!({"retention_ms": 3_600_000}))
        .await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["retention_ms"], 3_600_000);
    assert_eq!(body["retention_bytes"], -1);
    assert_eq!(body["partitions"], 3);

    let response = app
        .patch_topic("orders", json!({"retention_bytes": 65536}))
        .await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["retention_ms"], 3_600_000, "earlier change kept");
    assert_eq!(body["retention_bytes"], 65536);

    let response = app
        .patch_topic("orders", json!({"retention_ms": -1, "retention_bytes": -1}))
        .await;
    assert_eq!(response.status(), 200);

    // An empty change is a no-op.
    let response = app.patch_topic("orders", json!({})).await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["retention_ms"], -1);
    assert_eq!(body["retention_bytes"], -1);
    assert_eq!(body["partitions"], 3);

    let described = app.describe("orders").await;
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
        let response = app.patch_topic("orders", body).await;
        expect_error(response, 400, "invalid_argument").await;
    }
    let response = app.patch_topic("orders", json!({"name": "renamed"})).await;
    expect_error(response, 400, "invalid_body").await;
    let json = Some("application/json");
    let response = app
        .send_raw(Method::PATCH, "/v1/topics/orders", json, "{")
        .await;
    expect_error(response, 400, "invalid_body").await;
    let text = Some("text/plain");
    let response = app
        .send_raw(
            Method::PATCH,
            "/v1/topics/orders",
            text,
            r#"{"partitions": 2}"#,
        )
        .await;
    expect_error(response, 415, "unsupported_media_type").await;

    let body = app.describe("orders").await;
    assert_eq!(body["partitions"], 1);
    assert_eq!(body["retention_ms"], SEVEN_DAYS_MS);
    assert_eq!(body["retention_bytes"], -1);
}

#[tokio::test]
async fn patch_unknown_topic_is_404() {
    let app = TestApp::spawn().await;
    let response = app.patch_topic("missing", json!({"partitions": 2})).await;
    expect_error(response, 404, "topic_not_found").await;
    assert!(app.list().await.is_empty(), "patch does not create");
}

#[tokio::test]
async fn delete_removes_topic() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    app.create_topic("keep", 1).await;
    app.publish_ok("orders", json!([{"value": 1}, {"value": 2}]))
        .await;

    let response = app.delete_topic("orders").await;
    assert_eq!(response.status(), 204);
    assert!(
        response.bytes().await.unwrap().is_empty(),
        "204 has no body"
    );

    expect_error(app.get_topic("orders").await, 404, "topic_not_found").await;
    expect_error(app.delete_topic("orders").await, 404, "topic_not_found").await;
    expect_error(
        app.publish("orders", json!([{"value": 3}])).await,
        404,
        "topic_not_found",
    )
    .await;
    expect_error(app.fetch("orders", 0, "").await, 404, "topic_not_found").await;
    let names: Vec<Value> = app.list().await.iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, vec![json!("keep")]);
}

#[tokio::test]
async fn delete_leaves_topics_with_similar_names_alone() {
    let app = TestApp::spawn().await;
    for name in ["orders", "orders-archive", "orders.v2", "order"] {
        app.create_topic(name, 1).await;
        let response = app
            .publish_with_key(name, "same-key", json!([{"value": name}, {"value": name}]))
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(app.delete_topic("orders").await.status(), 204);
    for name in ["orders-archive", "orders.v2", "order"] {
        let fetched = app.fetch_ok(name, 0, "").await;
        assert_eq!(
            values(&fetched),
            vec![&json!(name), &json!(name)],
            "records of {name} kept"
        );
        // Their idempotency keys still replay.
        let response = app
            .publish_with_key(name, "same-key", json!([{"value": name}, {"value": name}]))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["idempotency-replayed"], "true", "{name}");
        assert_eq!(app.record_counts(name).await, vec![2]);
    }
}

#[tokio::test]
async fn delete_unknown_topic_is_404() {
    let app = TestApp::spawn().await;
    expect_error(app.delete_topic("never").await, 404, "topic_not_found").await;
}

#[tokio::test]
async fn recreated_topic_starts_empty_at_offset_zero() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    let old = app
        .publish_with_key(
            "orders",
            "order-1",
            json!([{"value": "old-0", "partition": 0}, {"value": "old-1", "partition": 0}, {"value": "old-2", "partition": 1}]),
        )
        .await;
    assert_eq!(old.status(), 200);

    assert_eq!(app.delete_topic("orders").await.status(), 204);
    let body = app
        .create_topic_with(json!({"name": "orders", "partitions": 1, "retention_ms": 5000}))
        .await;
    assert_eq!(body["partitions"], 1, "the new settings, not the old ones");
    assert_eq!(body["retention_ms"], 5000);
    assert_eq!(bounds(&body), vec![(0, 0)]);

    let fetched = app.fetch_ok("orders", 0, "").await;
    assert_eq!(fetched["records"], json!([]), "no old records: {fetched}");
    assert_eq!(fetched["high_watermark"], 0);
    expect_error(app.fetch("orders", 1, "").await, 404, "partition_not_found").await;

    // The old topic's idempotency key does not replay against the new topic.
    let response = app
        .publish_with_key("orders", "order-1", json!([{"value": "new-0"}]))
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("idempotency-replayed").is_none());
    let body = json_body(response).await;
    assert_eq!(body["offsets"], json!([{"partition": 0, "offset": 0}]));

    let fetched = app.fetch_ok("orders", 0, "offset=0").await;
    assert_eq!(values(&fetched), vec![&json!("new-0")]);
    crate::harness::assert_at_end(&fetched, 1);
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

/// Every partition of a description names its leader, replicas and ISR, all nodes of
/// `/v1/cluster`; on redb that is the one node 0, this server, which is also the
/// controller, and nothing is under-replicated.
#[tokio::test]
async fn partitions_show_their_leader_replicas_and_isr_from_the_cluster_view() {
    let app = TestApp::spawn().await;
    app.create_topic("placed", 3).await;
    let cluster = json_body(app.get("/v1/cluster").send().await.unwrap()).await;
    let nodes: Vec<i64> = cluster["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| {
            assert!(
                node["address"].as_str().is_some_and(|a| a.contains(':')),
                "{node}"
            );
            node["id"].as_i64().unwrap()
        })
        .collect();
    assert!(!nodes.is_empty());
    assert!(nodes.contains(&cluster["controller"].as_i64().expect("controller")));
    assert_eq!(
        cluster["under_replicated"],
        json!([]),
        "a healthy cluster: {cluster}"
    );
    let described = app.describe("placed").await;
    let partitions = described["partition_offsets"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    for p in partitions {
        let leader = p["leader"].as_i64().expect("a leader");
        let ids = |field: &str| -> Vec<i64> {
            p[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_i64().unwrap())
                .collect()
        };
        let (replicas, isr) = (ids("replicas"), ids("isr"));
        assert!(replicas.contains(&leader) && isr.contains(&leader), "{p}");
        assert!(
            isr.iter()
                .all(|id| replicas.contains(id) && nodes.contains(id)),
            "{p}"
        );
    }
    if dense_offsets() {
        let base = app.base_url.trim_start_matches("http://");
        assert_eq!(cluster["nodes"], json!([{"id": 0, "address": base}]));
        assert_eq!(cluster["controller"], 0);
        assert_eq!(partitions[2]["leader"], 0);
        assert_eq!(partitions[2]["replicas"], json!([0]));
        assert_eq!(partitions[2]["isr"], json!([0]));
    }
    // The route needs a token, but no particular scope.
    let response = app
        .anonymous(Method::GET, "/v1/cluster")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let reader = token("reader", "subscribe:placed");
    let response = app
        .anonymous(Method::GET, "/v1/cluster")
        .bearer_auth(reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
