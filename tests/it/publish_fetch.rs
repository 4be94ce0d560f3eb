//! Publishing and fetching records: round-trips, partitioning, validation, limits,
//! idempotency, paging and offset lookup by timestamp.

use std::collections::BTreeSet;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::harness::{
    TestApp, assert_at_end, assert_next, expect_error, json_body, offsets_of, records,
};

/// Kafka's murmur2 vectors from the SPEC (`UtilsTest.testMurmur2`), signed 32-bit.
const MURMUR2_VECTORS: &[(&str, i32)] = &[
    ("21", -973932308),
    ("foobar", -790332482),
    ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829),
    (
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
        -58897971,
    ),
    ("abc", 479470107),
];

/// Kafka's `toPositive(murmur2(key)) % partitions`.
fn kafka_partition(hash: i32, partitions: u32) -> u32 {
    (hash as u32 & 0x7fff_ffff) % partitions
}

async fn offset_for_timestamp(app: &TestApp, topic: &str, partition: u32, query: &str) -> Response {
    app.get(&format!(
        "/v1/topics/{topic}/partitions/{partition}/offsets?{query}"
    ))
    .send()
    .await
    .expect("offsets")
}

#[tokio::test]
async fn round_trip_keeps_keys_headers_and_any_json_value() {
    let app = TestApp::spawn().await;
    app.create_topic("events", 1).await;
    let sent = json!([
        {"key": "order-1", "value": {"id": 1, "items": [{"sku": "A", "qty": 2}], "paid": true, "note": null}},
        {"key": null, "value": [[1, [2, [3, [4, []]]]], {}, [], [{}]]},
        {"value": "plain string"},
        {"value": ""},
        {"value": "unicode: héllo wörld, 日本語, emoji 🌊🦀👩‍👩‍👧, escapes \" \\ / \n\r\t \u{0001} \u{007f}"},
        {"value": 0},
        {"value": -17},
        {"value": 123.456789012345},
        {"value": 1.5e300},
        {"value": -9223372036854775808i64},
        {"value": 18446744073709551615u64},
        {"value": null},
        {"value": true},
        {"value": false},
        {"key": "ключ🔑", "value": {"nested": {"deeper": {"deepest": ["x", 1, null, false]}}},
         "headers": {"trace-id": "abc123", "content-type": "application/json", "emoji": "🎉", "empty": ""}},
        {"key": "", "value": {"": ""}, "headers": {}},
    ]);
    let offsets = app.publish_ok("events", sent.clone()).await;
    let expected: Vec<(u32, u64)> = (0..sent.as_array().unwrap().len() as u64)
        .map(|o| (0, o))
        .collect();
    assert_eq!(offsets, expected);

    let fetched = app.fetch_ok("events", 0, "offset=0").await;
    let got = records(&fetched);
    assert_eq!(got.len(), sent.as_array().unwrap().len());
    for (i, (sent, got)) in sent.as_array().unwrap().iter().zip(got).enumerate() {
        assert_eq!(got["partition"], 0, "record {i}");
        assert_eq!(got["offset"], i as u64, "record {i}");
        assert!(
            got["timestamp"].as_i64().is_some_and(|t| t > 0),
            "timestamp of record {i}: {got}"
        );
        assert_eq!(
            got["key"],
            sent.get("key").cloned().unwrap_or(Value::Null),
            "key of record {i}"
        );
        assert_eq!(got["value"], sent["value"], "value of record {i}");
        assert_eq!(
            got["headers"],
            sent.get("headers").cloned().unwrap_or(json!({})),
            "headers of record {i}"
        );
    }
    assert_at_end(&fetched, 16);
    assert_eq!(fetched["log_start_offset"], 0);
}

#[tokio::test]
async fn values_are_served_as_sent_including_json_escapes() {
    let app = TestApp::spawn().await;
    app.create_topic("raw", 1).await;
    // Written by hand: \u escapes (with a surrogate pair), a trailing zero and an exponent
    // that a re-encoding would change.
    let body = r#"{"records": [
        {"value": "caf\u00e9 \ud83c\udf0a \"q\" \\ \/ \b\f\n\r\t"},
        {"value": 1.50},
        {"value": 1E+2},
        {"key": "k\u00e9y", "value": {"b": 1, "a": [true, null]}, "headers": {"h\u00e9": "\ud83e\udd80"}}
    ]}"#;
    let offsets = offsets_of(app.publish_raw("raw", Some("application/json"), body).await).await;
    assert_eq!(offsets, vec![(0, 0), (0, 1), (0, 2), (0, 3)]);

    let response = app.fetch("raw", 0, "offset=0").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "fetch answers JSON"
    );
    let text = response.text().await.unwrap();
    let fetched: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let got = records(&fetched);
    assert_eq!(got[0]["value"], "café 🌊 \"q\" \\ / \u{8}\u{c}\n\r\t");
    assert_eq!(got[1]["value"], json!(1.5));
    assert_eq!(got[2]["value"], json!(100.0));
    assert_eq!(got[3]["key"], "kéy");
    assert_eq!(got[3]["value"], json!({"a": [true, null], "b": 1}));
    assert_eq!(got[3]["headers"], json!({"hé": "🦀"}));
    // Numbers are stored and served byte for byte.
    assert!(
        text.contains(r#""value":1.50"#),
        "1.50 kept verbatim: {text}"
    );
    assert!(
        text.contains(r#""value":1E+2"#),
        "1E+2 kept verbatim: {text}"
    );
}

#[tokio::test]
async fn unpaired_surrogate_escapes_in_values_are_400_and_append_nothing() {
    let app = TestApp::spawn().await;
    app.create_topic("surrogates", 1).await;
    for value in [r#""\ud800""#, r#"{"a": ["x\uDC00y"]}"#, r#""\ud83c\u0041""#] {
        let body = format!(r#"{{"records": [{{"value": {value}}}]}}"#);
        let response = app
            .publish_raw("surrogates", Some("application/json"), &body)
            .await;
        expect_error(response, 400, "invalid_body").await;
    }
    assert_eq!(app.record_counts("surrogates").await, vec![0]);
    // An escaped backslash before "ud800" is plain text, not an escape.
    let body = r#"{"records": [{"value": "\\ud800"}]}"#;
    let offsets = offsets_of(
        app.publish_raw("surrogates", Some("application/json"), body)
            .await,
    )
    .await;
    assert_eq!(offsets, vec![(0, 0)]);
    let fetched = app.fetch_ok("surrogates", 0, "offset=0").await;
    assert_eq!(records(&fetched)[0]["value"], "\\ud800");
}

#[tokio::test]
async fn offsets_come_back_in_request_order() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 3).await;
    let offsets = app
        .publish_ok(
            "orders",
            json!([
                {"value": "a", "partition": 2},
                {"value": "b", "partition": 0},
                {"value": "c", "partition": 2},
                {"value": "d", "partition": 1},
                {"value": "e", "partition": 0},
                {"value": "f", "partition": 2},
            ]),
        )
        .await;
    assert_eq!(
        offsets,
        vec![(2, 0), (0, 0), (2, 1), (1, 0), (0, 1), (2, 2)]
    );
    // Each record sits where the response said.
    let sent = ["a", "b", "c", "d", "e", "f"];
    for (value, (partition, offset)) in sent.iter().zip(&offsets) {
        let fetched = app
            .fetch_ok("orders", *partition, &format!("offset={offset}&limit=1"))
            .await;
        assert_eq!(records(&fetched)[0]["value"], *value);
    }
    // A second request continues every partition's offsets.
    let next = (
        app.next_offset("orders", 0).await,
        app.next_offset("orders", 2).await,
    );
    let offsets = app
        .publish_ok(
            "orders",
            json!([{"value": "g", "partition": 0}, {"value": "h", "partition": 2}]),
        )
        .await;
    assert_eq!(offsets, vec![(0, next.0), (2, next.1)]);
    assert_eq!(app.record_counts("orders").await, vec![3, 1, 4]);
}

#[tokio::test]
async fn same_key_lands_on_the_same_partition_across_requests() {
    let app = TestApp::spawn().await;
    app.create_topic("users", 8).await;
    let mut seen = Vec::new();
    for round in 0..3 {
        let offsets = app
            .publish_ok(
                "users",
                json!([
                    {"key": "user-42", "value": round},
                    {"key": "user-7", "value": round},
                    {"key": "user-42", "value": round},
                ]),
            )
            .await;
        assert_eq!(offsets[0].0, offsets[2].0, "same key within a request");
        seen.push(offsets);
    }
    let p42 = seen[0][0].0;
    let p7 = seen[0][1].0;
    for offsets in &seen {
        assert_eq!(offsets[0].0, p42);
        assert_eq!(offsets[1].0, p7);
    }
    // Offsets of user-42's partition grow without reuse.
    let mine: Vec<u64> = seen
        .iter()
        .flat_map(|o| [o[0], o[2]])
        .map(|(_, offset)| offset)
        .collect();
    assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
    let fetched = app.fetch_ok("users", p42, "").await;
    assert!(
        records(&fetched)
            .iter()
            .filter(|r| r["key"] == "user-42")
            .count()
            == 6,
        "all user-42 records on partition {p42}: {fetched}"
    );
}

#[tokio::test]
async fn keyed_partition_matches_kafka_murmur2() {
    let app = TestApp::spawn().await;
    for partitions in [2u32, 7, 12, 1000] {
        let topic = format!("kafka-{partitions}");
        app.create_topic(&topic, partitions).await;
        let records: Vec<Value> = MURMUR2_VECTORS
            .iter()
            .map(|(key, _)| json!({"key": key, "value": key}))
            .collect();
        let offsets = app.publish_ok(&topic, Value::Array(records)).await;
        for ((key, hash), (partition, _)) in MURMUR2_VECTORS.iter().zip(&offsets) {
            assert_eq!(
                *partition,
                kafka_partition(*hash, partitions),
                "key {key:?} with {partitions} partitions"
            );
        }
    }
    // With 1000 partitions the six keys spread out; a wrong hash would not match by luck.
    let expected: BTreeSet<u32> = MURMUR2_VECTORS
        .iter()
        .map(|(_, h)| kafka_partition(*h, 1000))
        .collect();
    assert_eq!(expected.len(), MURMUR2_VECTORS.len());
}

#[tokio::test]
async fn keyless_records_of_one_request_share_a_partition_and_requests_rotate() {
    let app = TestApp::spawn().await;
    app.create_topic("logs", 3).await;
    let mut chosen = Vec::new();
    for round in 0..7 {
        let offsets = app
            .publish_ok(
                "logs",
                json!([{"value": round}, {"value": round}, {"value": round}, {"value": round}]),
            )
            .await;
        let partition = offsets[0].0;
        assert!(
            offsets.iter().all(|(p, _)| *p == partition),
            "one partition per request: {offsets:?}"
        );
        let first = offsets[0].1;
        let consecutive: Vec<u64> = offsets.iter().map(|(_, o)| *o).collect();
        assert_eq!(consecutive, (first..first + 4).collect::<Vec<_>>());
        chosen.push(partition);
    }
    // Round-robin: successive requests step through every partition in turn.
    for pair in chosen.windows(2) {
        assert_eq!(pair[1], (pair[0] + 1) % 3, "rotation {chosen:?}");
    }
    let total: u64 = app.record_counts("logs").await.iter().sum();
    assert_eq!(total, 28);
}

#[tokio::test]
async fn keyless_records_mixed_with_keyed_ones_still_share_a_partition() {
    let app = TestApp::spawn().await;
    app.create_topic("mixed", 4).await;
    let offsets = app
        .publish_ok(
            "mixed",
            json!([
                {"value": 1},
                {"key": "foobar", "value": 2},
                {"value": 3},
                {"key": "abc", "value": 4},
                {"value": 5},
            ]),
        )
        .await;
    assert_eq!(offsets[0].0, offsets[2].0);
    assert_eq!(offsets[0].0, offsets[4].0);
    assert_eq!(offsets[1].0, kafka_partition(-790332482, 4));
    assert_eq!(offsets[3].0, kafka_partition(479470107, 4));
}

#[tokio::test]
async fn explicit_partition_wins_over_key_and_rotation() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 4).await;
    let hashed = kafka_partition(-790332482, 4); // "foobar"
    let other = (hashed + 1) % 4;
    let offsets = app
        .publish_ok(
            "orders",
            json!([
                {"key": "foobar", "value": 1, "partition": other},
                {"value": 2, "partition": 3},
                {"value": 3, "partition": 3},
                {"key": "foobar", "value": 4},
            ]),
        )
        .await;
    assert_eq!(offsets[0].0, other);
    assert_eq!(offsets[1].0, 3);
    assert_eq!(offsets[2].0, 3);
    assert_eq!(offsets[3].0, hashed);
    let fetched = app.fetch_ok("orders", other, "").await;
    assert!(
        records(&fetched)
            .iter()
            .any(|r| r["value"] == 1 && r["key"] == "foobar")
    );
}

#[tokio::test]
async fn explicit_partition_out_of_range_is_404_and_appends_nothing() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    let response = app
        .publish(
            "orders",
            json!([
                {"value": "ok", "partition": 0},
                {"value": "ok too"},
                {"value": "bad", "partition": 2},
            ]),
        )
        .await;
    let error = expect_error(response, 404, "partition_not_found").await;
    assert!(error["message"].as_str().unwrap().contains('2'), "{error}");
    let response = app
        .publish(
            "orders",
            json!([{"value": "bad", "partition": 4_000_000_000u64}]),
        )
        .await;
    expect_error(response, 404, "partition_not_found").await;
    assert_eq!(app.record_counts("orders").await, vec![0, 0]);
    // The failed requests left nothing behind.
    let offsets = app
        .publish_ok("orders", json!([{"value": "next", "partition": 0}]))
        .await;
    assert_eq!(offsets, vec![(0, 0)]);
}

#[tokio::test]
async fn unknown_topic_and_partition_are_404() {
    let app = TestApp::spawn().await;
    let response = app.publish("missing", json!([{"value": 1}])).await;
    expect_error(response, 404, "topic_not_found").await;
    expect_error(app.fetch("missing", 0, "").await, 404, "topic_not_found").await;
    expect_error(
        offset_for_timestamp(&app, "missing", 0, "timestamp=0").await,
        404,
        "topic_not_found",
    )
    .await;
    app.create_topic("orders", 2).await;
    expect_error(app.fetch("orders", 2, "").await, 404, "partition_not_found").await;
    expect_error(
        offset_for_timestamp(&app, "orders", 2, "timestamp=0").await,
        404,
        "partition_not_found",
    )
    .await;
    // An invalid topic name is a 400, not a 404.
    let response = app
        .publish_raw(
            "a%20b",
            Some("application/json"),
            r#"{"records":[{"value":1}]}"#,
        )
        .await;
    expect_error(response, 400, "invalid_topic_name").await;
}

#[tokio::test]
async fn publish_needs_json_or_ndjson_content_type() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 1).await;
    let body = r#"{"records": [{"value": 1}]}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/xml"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let response = app.publish_raw("orders", content_type, body).await;
        expect_error(response, 415, "unsupported_media_type").await;
    }
    assert_eq!(app.record_counts("orders").await, vec![0]);
    // Parameters and case do not matter.
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let response = app.publish_raw("orders", Some(content_type), body).await;
        assert_eq!(response.status(), 200, "{content_type}");
    }
    assert_eq!(app.record_counts("orders").await, vec![2]);
}

#[tokio::test]
async fn invalid_fields_are_named_in_the_error() {
    let app = TestApp::spawn().await;
    app.create_topic("named", 1).await;
    let cases = [
        (
            "application/json",
            r#"{"records": [{"value": 1}, {"value": 2, "partition": -1}]}"#,
            "records[1].partition",
        ),
        (
            "application/json",
            r#"{"records": [{"value": 1, "headers": {"h": 5}}]}"#,
            "records[0].headers.h",
        ),
        (
            "application/x-ndjson",
            "{\"value\": 1}\n{\"value\": 2, \"key\": 7}\n",
            "line 2: key",
        ),
    ];
    for (content_type, body, path) in cases {
        let response = app.publish_raw("named", Some(content_type), body).await;
        let error = expect_error(response, 400, "invalid_body").await;
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(path), "{message:?} should name {path}");
    }
    let response = app.post_topic(json!({"name": "t", "partitions": -1})).await;
    let error = expect_error(response, 400, "invalid_body").await;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("partitions"), "{message:?}");
    assert_eq!(app.record_counts("named").await, vec![0]);
}

#[tokio::test]
async fn malformed_publish_bodies_are_400_and_append_nothing() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    let cases = [
        ("malformed JSON", r#"{"records": [{"value": 1}"#),
        ("empty body", ""),
        ("not an object", r#"[{"value": 1}]"#),
        ("missing records", r#"{}"#),
        ("records not a list", r#"{"records": {"value": 1}}"#),
        (
            "missing value",
            r#"{"records": [{"value": 1}, {"key": "k"}]}"#,
        ),
        (
            "header value not a string",
            r#"{"records": [{"value": 1, "headers": {"n": 1}}]}"#,
        ),
        (
            "headers not an object",
            r#"{"records": [{"value": 1, "headers": ["a", "b"]}]}"#,
        ),
        (
            "key not a string",
            r#"{"records": [{"value": 1, "key": 42}]}"#,
        ),
        (
            "key an object",
            r#"{"records": [{"value": 1, "key": {"id": 1}}]}"#,
        ),
        (
            "negative partition",
            r#"{"records": [{"value": 1, "partition": -1}]}"#,
        ),
        (
            "partition a string",
            r#"{"records": [{"value": 1, "partition": "0"}]}"#,
        ),
        ("empty records", r#"{"records": []}"#),
        (
            "unknown record field",
            r#"{"records": [{"value": 1, "timestamp": 5}]}"#,
        ),
        (
            "unknown top-level field",
            r#"{"records": [{"value": 1}], "topic": "orders"}"#,
        ),
        ("invalid value", r#"{"records": [{"value": undefined}]}"#),
        ("trailing garbage", r#"{"records": [{"value": 1}]} x"#),
    ];
    for (what, body) in cases {
        let response = app
            .publish_raw("orders", Some("application/json"), body)
            .await;
        assert_eq!(response.status(), 400, "{what}");
        let error = expect_error(response, 400, "invalid_body").await;
        if what.starts_with("unknown") {
            let field = if what.contains("record") {
                "timestamp"
            } else {
                "topic"
            };
            assert!(
                error["message"].as_str().unwrap().contains(field),
                "{what}: {error}"
            );
        }
    }
    assert_eq!(app.record_counts("orders").await, vec![0, 0]);
}

#[tokio::test]
async fn ndjson_bodies_publish_one_record_per_line() {
    let app = TestApp::spawn().await;
    app.create_topic("lines", 1).await;
    let body = concat!(
        "{\"key\": \"a\", \"value\": {\"n\": 1}}\n",
        "\n",
        "   \n",
        "{\"value\": [1, 2], \"headers\": {\"h\": \"v\"}}\r\n",
        "{\"value\": \"three\", \"partition\": 0}",
    );
    let offsets = offsets_of(
        app.publish_raw("lines", Some("application/x-ndjson"), body)
            .await,
    )
    .await;
    assert_eq!(offsets, vec![(0, 0), (0, 1), (0, 2)]);
    let fetched = app.fetch_ok("lines", 0, "").await;
    let got = records(&fetched);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["key"], "a");
    assert_eq!(got[0]["value"], json!({"n": 1}));
    assert_eq!(got[1]["value"], json!([1, 2]));
    assert_eq!(got[1]["headers"], json!({"h": "v"}));
    assert_eq!(got[2]["value"], "three");

    // A trailing newline and a charset parameter are fine.
    let next = app.next_offset("lines", 0).await;
    let response = app
        .publish_raw(
            "lines",
            Some("application/x-ndjson; charset=utf-8"),
            "{\"value\": 4}\n",
        )
        .await;
    assert_eq!(offsets_of(response).await, vec![(0, next)]);
}

#[tokio::test]
async fn ndjson_bad_line_is_400_naming_the_line_and_appends_nothing() {
    let app = TestApp::spawn().await;
    app.create_topic("lines", 1).await;
    let body = "{\"value\": 1}\n\n{\"value\": 2, \"oops\": true}\n{\"value\": 3}\n";
    let response = app
        .publish_raw("lines", Some("application/x-ndjson"), body)
        .await;
    let error = expect_error(response, 400, "invalid_body").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("line 3"), "names line 3: {message}");

    let body = "{\"value\": 1}\n{\"value\": \n";
    let response = app
        .publish_raw("lines", Some("application/x-ndjson"), body)
        .await;
    let error = expect_error(response, 400, "invalid_body").await;
    assert!(
        error["message"].as_str().unwrap().contains("line 2"),
        "{error}"
    );

    // The JSON envelope is not an NDJSON line.
    let body = r#"{"records": [{"value": 1}]}"#;
    let response = app
        .publish_raw("lines", Some("application/x-ndjson"), body)
        .await;
    let error = expect_error(response, 400, "invalid_body").await;
    assert!(
        error["message"].as_str().unwrap().contains("line 1"),
        "{error}"
    );

    // Nothing but blank lines is an empty publish.
    let response = app
        .publish_raw("lines", Some("application/x-ndjson"), "\n \n\n")
        .await;
    expect_error(response, 400, "invalid_body").await;

    assert_eq!(app.record_counts("lines").await, vec![0]);
}

#[tokio::test]
async fn size_limits_are_413_and_append_nothing() {
    let app = TestApp::spawn_with(&[
        "--max-body-bytes",
        "300",
        "--max-record-bytes",
        "100",
        "--max-records-per-request",
        "3",
    ])
    .await;
    app.create_topic("small", 1).await;

    // Body: exactly at the limit passes, one byte more does not.
    let envelope = r#"{"records": [{"value": 1}]}"#;
    let at_limit = format!("{envelope}{}", " ".repeat(300 - envelope.len()));
    assert_eq!(at_limit.len(), 300);
    let response = app
        .publish_raw("small", Some("application/json"), &at_limit)
        .await;
    assert_eq!(offsets_of(response).await, vec![(0, 0)]);
    let over = format!("{at_limit} ");
    let response = app
        .publish_raw("small", Some("application/json"), &over)
        .await;
    expect_error(response, 413, "body_too_large").await;
    let big = format!(r#"{{"records": [{{"value": "{}"}}]}}"#, "x".repeat(5000));
    let response = app
        .publish_raw("small", Some("application/json"), &big)
        .await;
    expect_error(response, 413, "body_too_large").await;
    let ndjson = format!("{{\"value\": \"{}\"}}\n", "x".repeat(400));
    let response = app
        .publish_raw("small", Some("application/x-ndjson"), &ndjson)
        .await;
    expect_error(response, 413, "body_too_large").await;

    // Record: key + value + headers. A 98-character string is 100 bytes of JSON.
    let next = app.next_offset("small", 0).await;
    let response = app
        .publish("small", json!([{"value": "y".repeat(98)}]))
        .await;
    assert_eq!(offsets_of(response).await, vec![(0, next)]);
    let response = app
        .publish("small", json!([{"value": "y".repeat(99)}]))
        .await;
    expect_error(response, 413, "record_too_large").await;
    let response = app
        .publish(
            "small",
            json!([{"value": 1}, {"key": "k".repeat(60), "value": "v".repeat(20), "headers": {"h": "z".repeat(30)}}]),
        )
        .await;
    let error = expect_error(response, 413, "record_too_large").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("records[1]: "),
        "{error}"
    );

    // Record count.
    let response = app
        .publish(
            "small",
            json!([{"value": 1}, {"value": 2}, {"value": 3}, {"value": 4}]),
        )
        .await;
    expect_error(response, 413, "too_many_records").await;
    let next = app.next_offset("small", 0).await;
    let response = app
        .publish("small", json!([{"value": 1}, {"value": 2}, {"value": 3}]))
        .await;
    assert_eq!(
        offsets_of(response).await,
        vec![(0, next), (0, next + 1), (0, next + 2)]
    );

    assert_eq!(app.record_counts("small").await, vec![5]);
    let fetched = app.fetch_ok("small", 0, "").await;
    assert_eq!(records(&fetched).len(), 5);

    // Other JSON bodies are bounded too.
    let body = format!(r#"{{"name": "{}", "partitions": 1}}"#, "n".repeat(400));
    let response = app
        .send_raw(Method::POST, "/v1/topics", Some("application/json"), &body)
        .await;
    expect_error(response, 413, "body_too_large").await;
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 3).await;
    app.create_topic("other", 3).await;
    let batch = json!([{"key": "a", "value": 1}, {"value": 2}, {"value": 3, "partition": 2}]);

    let first = app.publish_with_key("orders", "req-1", batch.clone()).await;
    assert!(
        first.headers().get("idempotency-replayed").is_none(),
        "first is not a replay"
    );
    let first = offsets_of(first).await;
    let after_first = app.record_counts("orders").await;
    assert_eq!(after_first.iter().sum::<u64>(), 3);

    for _ in 0..2 {
        let repeat = app.publish_with_key("orders", "req-1", batch.clone()).await;
        assert_eq!(
            repeat
                .headers()
                .get("idempotency-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
        assert_eq!(offsets_of(repeat).await, first);
    }
    // The same key with a different body is a client bug: refused, nothing appended.
    for other in [
        json!([{"value": "other"}]),
        json!([{"key": "a", "value": 1}, {"value": 2}]),
        json!([{"key": "a", "value": 1}, {"value": 2}, {"value": 3, "partition": 1}]),
        json!([{"key": "b", "value": 1}, {"value": 2}, {"value": 3, "partition": 2}]),
        json!([{"key": "a", "value": 1, "headers": {"h": "1"}}, {"value": 2}, {"value": 3, "partition": 2}]),
    ] {
        let reused = app.publish_with_key("orders", "req-1", other.clone()).await;
        let error = expect_error(reused, 422, "idempotency_key_reused").await;
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{other}"
        );
    }
    assert_eq!(
        app.record_counts("orders").await,
        after_first,
        "replays append nothing"
    );

    // A different key appends.
    let second = app.publish_with_key("orders", "req-2", batch.clone()).await;
    assert!(second.headers().get("idempotency-replayed").is_none());
    let second = offsets_of(second).await;
    assert_ne!(second, first);
    assert_eq!(app.record_counts("orders").await.iter().sum::<u64>(), 6);

    // The same key on another topic is independent.
    let elsewhere = app.publish_with_key("other", "req-1", batch.clone()).await;
    assert!(elsewhere.headers().get("idempotency-replayed").is_none());
    offsets_of(elsewhere).await;
    assert_eq!(app.record_counts("other").await.iter().sum::<u64>(), 3);

    // Without a key, every request appends.
    app.publish_ok("orders", batch.clone()).await;
    app.publish_ok("orders", batch).await;
    assert_eq!(app.record_counts("orders").await.iter().sum::<u64>(), 12);
}

#[tokio::test]
async fn failed_requests_do_not_use_up_their_idempotency_key() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 1).await;
    let response = app
        .publish_with_key("orders", "retry-me", json!([{"value": 1, "partition": 9}]))
        .await;
    expect_error(response, 404, "partition_not_found").await;
    let response = app.publish_with_key("orders", "retry-me", json!([])).await;
    expect_error(response, 400, "invalid_body").await;
    let response = app
        .publish_with_key("orders", "retry-me", json!([{"value": 1}]))
        .await;
    assert!(response.headers().get("idempotency-replayed").is_none());
    assert_eq!(offsets_of(response).await, vec![(0, 0)]);
}

#[tokio::test]
async fn invalid_idempotency_keys_are_400() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 1).await;
    let too_long = "k".repeat(256);
    for key in ["", too_long.as_str()] {
        let response = app
            .publish_with_key("orders", key, json!([{"value": 1}]))
            .await;
        expect_error(response, 400, "invalid_idempotency_key").await;
    }
    // Not visible ASCII.
    let response = app
        .post("/v1/topics/orders/records")
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .json(&json!({"records": [{"value": 1}]}))
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "invalid_idempotency_key").await;
    assert_eq!(app.record_counts("orders").await, vec![0]);
    let longest = "k".repeat(255);
    let response = app
        .publish_with_key("orders", &longest, json!([{"value": 1}]))
        .await;
    assert_eq!(offsets_of(response).await, vec![(0, 0)]);
}

#[tokio::test]
async fn idempotency_keys_expire_after_the_window() {
    let app = TestApp::spawn_with(&["--idempotency-window-ms", "1000"]).await;
    app.create_topic("orders", 1).await;
    let first = offsets_of(
        app.publish_with_key("orders", "k", json!([{"value": 1}]))
            .await,
    )
    .await;
    let replay = app
        .publish_with_key("orders", "k", json!([{"value": 1}]))
        .await;
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(offsets_of(replay).await, first);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let next = app.next_offset("orders", 0).await;
    let later = app
        .publish_with_key("orders", "k", json!([{"value": 1}]))
        .await;
    assert!(
        later.headers().get("idempotency-replayed").is_none(),
        "window passed"
    );
    assert_eq!(offsets_of(later).await, vec![(0, next)]);
}

#[tokio::test]
async fn fetch_pages_with_offset_limit_and_next_offset() {
    let app = TestApp::spawn().await;
    app.create_topic("paged", 1).await;
    let sent: Vec<Value> = (0..10).map(|i| json!({"value": i})).collect();
    app.publish_ok("paged", Value::Array(sent)).await;
    let end = app.next_offset("paged", 0).await;

    let mut offset = 0;
    let mut values = Vec::new();
    let mut pages = 0;
    loop {
        let page = app
            .fetch_ok("paged", 0, &format!("offset={offset}&limit=3"))
            .await;
        assert_eq!(page["high_watermark"], end);
        assert_eq!(page["log_start_offset"], 0);
        let got = records(&page);
        assert!(got.len() <= 3);
        for (i, record) in got.iter().enumerate() {
            // One request's records are consecutive.
            assert_eq!(record["offset"], offset + i as u64);
            values.push(record["value"].as_u64().unwrap());
        }
        let next = page["next_offset"].as_u64().unwrap();
        assert_next(&page, offset + got.len() as u64);
        if got.is_empty() {
            break;
        }
        offset = next;
        pages += 1;
        assert!(pages < 10, "paging terminates");
    }
    assert_eq!(pages, 4, "3 + 3 + 3 + 1");
    assert_eq!(values, (0..10).collect::<Vec<u64>>());
    assert!(
        offset == 10 || (!crate::harness::dense_offsets() && offset == end),
        "{offset}"
    );

    // The default limit returns everything here; a middle offset starts there.
    assert_eq!(records(&app.fetch_ok("paged", 0, "").await).len(), 10);
    let middle = app.fetch_ok("paged", 0, "offset=7").await;
    let offsets: Vec<u64> = records(&middle)
        .iter()
        .map(|r| r["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![7, 8, 9]);
    assert_at_end(&middle, 10);
}

#[tokio::test]
async fn fetch_from_any_offset_spans_batches() {
    let app = TestApp::spawn().await;
    app.create_topic("batched", 1).await;
    // Separate requests: separate batches of different sizes. Every record's value is
    // its offset.
    let mut stored = Vec::new();
    for size in [3u64, 1, 4, 2, 5] {
        let next = app.next_offset("batched", 0).await;
        let batch: Vec<Value> = (next..next + size).map(|v| json!({"value": v})).collect();
        let offsets = app.publish_ok("batched", Value::Array(batch)).await;
        let expected: Vec<(u32, u64)> = (next..next + size).map(|o| (0, o)).collect();
        assert_eq!(offsets, expected);
        stored.extend(next..next + size);
    }
    assert_eq!(stored.len(), 15);
    let end = app.next_offset("batched", 0).await;
    for from in 0..=end {
        for limit in [1usize, 4, 100] {
            let page = app
                .fetch_ok("batched", 0, &format!("offset={from}&limit={limit}"))
                .await;
            let expected: Vec<u64> = stored
                .iter()
                .copied()
                .filter(|o| *o >= from)
                .take(limit)
                .collect();
            let offsets: Vec<u64> = records(&page)
                .iter()
                .map(|r| r["offset"].as_u64().unwrap())
                .collect();
            assert_eq!(offsets, expected, "offset={from}&limit={limit}");
            let values: Vec<u64> = records(&page)
                .iter()
                .map(|r| r["value"].as_u64().unwrap())
                .collect();
            assert_eq!(values, expected, "values at offset={from}&limit={limit}");
            let next = page["next_offset"].as_u64().unwrap();
            match expected.last() {
                // Past the last record, and on to the next record or the end at most.
                Some(last) => {
                    let following = stored.iter().copied().find(|o| o > last).unwrap_or(end);
                    assert!(
                        (last + 1..=following).contains(&next),
                        "offset={from}&limit={limit}: {page}"
                    );
                }
                None => assert_eq!(next, end, "offset={from}: {page}"),
            }
        }
    }
}

#[tokio::test]
async fn default_limit_is_100() {
    let app = TestApp::spawn().await;
    app.create_topic("many", 1).await;
    let sent: Vec<Value> = (0..150).map(|i| json!({"value": i})).collect();
    app.publish_ok("many", Value::Array(sent)).await;
    let page = app.fetch_ok("many", 0, "").await;
    assert_eq!(records(&page).len(), 100);
    assert_eq!(page["next_offset"], 100);
    let page = app.fetch_ok("many", 0, "offset=100").await;
    assert_eq!(records(&page).len(), 50);
}

#[tokio::test]
async fn max_bytes_bounds_the_page_but_returns_at_least_one_record() {
    let app = TestApp::spawn().await;
    app.create_topic("sized", 1).await;
    let sent: Vec<Value> = (0..5).map(|_| json!({"value": "x".repeat(100)})).collect();
    app.publish_ok("sized", Value::Array(sent)).await;

    let page = app.fetch_ok("sized", 0, "max_bytes=1").await;
    assert_eq!(records(&page).len(), 1, "one record even when it is larger");
    assert_next(&page, 1);
    let page = app.fetch_ok("sized", 0, "offset=3&max_bytes=1").await;
    assert_eq!(records(&page).len(), 1);
    assert_eq!(records(&page)[0]["offset"], 3);

    let page = app.fetch_ok("sized", 0, "max_bytes=250").await;
    let n = records(&page).len();
    assert!(
        (1..=2).contains(&n),
        "about 250 bytes of 102-byte records: got {n}"
    );
    assert_next(&page, n as u64);

    let page = app.fetch_ok("sized", 0, "max_bytes=1048576").await;
    assert_eq!(records(&page).len(), 5);
}

#[tokio::test]
async fn fetch_without_offset_starts_at_log_start() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 2).await;
    app.publish_ok(
        "orders",
        json!([{"value": "a", "partition": 1}, {"value": "b", "partition": 1}]),
    )
    .await;
    let page = app.fetch_ok("orders", 1, "").await;
    assert_eq!(page["log_start_offset"], 0);
    let offsets: Vec<u64> = records(&page)
        .iter()
        .map(|r| r["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![0, 1]);
    let page = app.fetch_ok("orders", 1, "limit=1").await;
    assert_eq!(records(&page)[0]["value"], "a");

    // An empty partition: no records, next offset 0.
    let page = app.fetch_ok("orders", 0, "").await;
    assert_eq!(
        page,
        json!({"records": [], "next_offset": 0, "high_watermark": 0, "log_start_offset": 0})
    );
}

#[tokio::test]
async fn fetch_beyond_the_high_watermark_is_416_with_bounds() {
    let app = TestApp::spawn().await;
    app.create_topic("orders", 1).await;
    app.publish_ok("orders", json!([{"value": 1}, {"value": 2}, {"value": 3}]))
        .await;

    // Exactly at the high watermark: nothing yet, not an error.
    let end = app.next_offset("orders", 0).await;
    let page = app.fetch_ok("orders", 0, &format!("offset={end}")).await;
    assert_eq!(records(&page).len(), 0);
    assert_eq!(page["next_offset"], end);
    assert_eq!(page["high_watermark"], end);

    for offset in [end + 1, 1000, i64::MAX as u64] {
        let response = app.fetch("orders", 0, &format!("offset={offset}")).await;
        let error = expect_error(response, 416, "offset_out_of_range").await;
        assert_eq!(error["log_start_offset"], 0, "{error}");
        assert_eq!(error["high_watermark"], end, "{error}");
    }
    // Offsets are Kafka's int64: beyond it is not an offset at all.
    let response = app
        .fetch("orders", 0, &format!("offset={}", u64::MAX))
        .await;
    expect_error(response, 400, "invalid_offset").await;
    // An empty partition: offset 1 is already out of range.
    app.create_topic("empty", 1).await;
    let error = expect_error(
        app.fetch("empty", 0, "offset=1").await,
        416,
        "offset_out_of_range",
    )
    .await;
    assert_eq!(error["high_watermark"], 0);
    assert_eq!(error["log_start_offset"], 0);
    // Other errors carry no bounds.
    let error = expect_error(app.fetch("empty", 5, "").await, 404, "partition_not_found").await;
    assert!(error.get("high_watermark").is_none(), "{error}");
}

#[tokio::test]
async fn invalid_fetch_parameters_are_400() {
    let app = TestApp::spawn_with(&[
        "--max-fetch-records",
        "5",
        "--max-wait-ms",
        "100",
        "--max-fetch-bytes",
        "4096",
    ])
    .await;
    app.create_topic("orders", 1).await;
    app.publish_ok("orders", json!([{"value": 1}])).await;

    for query in [
        "limit=0",
        "limit=6",
        "limit=-1",
        "limit=x",
        "wait_ms=101",
        "wait_ms=-1",
        "offset=-1",
        "offset=abc",
        "offset=1.5",
        "offset=18446744073709551616",
        "max_bytes=0",
        "max_bytes=4097",
        "max_bytes=big",
    ] {
        let response = app.fetch("orders", 0, query).await;
        let error = expect_error(response, 400, "invalid_query").await;
        assert!(!error["message"].as_str().unwrap().is_empty(), "{query}");
    }
    // The bounds themselves are fine.
    let page = app
        .fetch_ok("orders", 0, "limit=5&wait_ms=100&max_bytes=4096")
        .await;
    assert_eq!(records(&page).len(), 1);
    // And with no max_bytes the default stays under --max-fetch-bytes.
    let page = app.fetch_ok("orders", 0, "limit=1").await;
    assert_eq!(records(&page).len(), 1);

    for path in [
        "/v1/topics/orders/partitions/x/records",
        "/v1/topics/orders/partitions/-1/records",
        "/v1/topics/orders/partitions/4294967296/records",
        "/v1/topics/orders/partitions/x/offsets?timestamp=0",
    ] {
        let response = app.get(path).send().await.unwrap();
        expect_error(response, 400, "invalid_path").await;
    }
}

#[tokio::test]
async fn offsets_by_timestamp_find_the_first_record_at_or_after() {
    let app = TestApp::spawn().await;
    app.create_topic("timed", 2).await;

    // Empty partition: the high watermark (0), no timestamp.
    let response = offset_for_timestamp(&app, "timed", 0, "timestamp=0").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        json_body(response).await,
        json!({"partition": 0, "offset": 0, "timestamp": null})
    );

    // Several requests a few milliseconds apart, so timestamps differ between them.
    for round in 0..4 {
        let batch: Vec<Value> = (0..3)
            .map(|i| json!({"value": round * 10 + i, "partition": 0}))
            .collect();
        app.publish_ok("timed", Value::Array(batch)).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let page = app.fetch_ok("timed", 0, "").await;
    let stamps: Vec<i64> = records(&page)
        .iter()
        .map(|r| r["timestamp"].as_i64().unwrap())
        .collect();
    let offsets: Vec<u64> = records(&page)
        .iter()
        .map(|r| r["offset"].as_u64().unwrap())
        .collect();
    let end = app.next_offset("timed", 0).await;
    assert_eq!(stamps.len(), 12);
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "timestamps never go back: {stamps:?}"
    );
    assert!(
        stamps[0] < stamps[11],
        "the rounds are milliseconds apart: {stamps:?}"
    );

    // The first record at or after a time: its offset and its index in the page.
    let first_at_or_after = |t: i64| stamps.iter().position(|s| *s >= t).map(|p| (offsets[p], p));
    let mut probes: Vec<i64> = stamps.iter().flat_map(|s| [*s - 1, *s, *s + 1]).collect();
    probes.sort_unstable();
    probes.dedup();
    for t in probes {
        let response = offset_for_timestamp(&app, "timed", 0, &format!("timestamp={t}")).await;
        assert_eq!(response.status(), 200);
        let body = json_body(response).await;
        assert_eq!(body["partition"], 0);
        match first_at_or_after(t) {
            Some((offset, index)) => {
                assert_eq!(body["offset"], offset, "timestamp {t}: {body}");
                assert_eq!(body["timestamp"], stamps[index], "timestamp {t}: {body}");
            }
            None => {
                assert_eq!(body["offset"], end, "timestamp {t}: {body}");
                assert_eq!(body["timestamp"], Value::Null, "timestamp {t}: {body}");
            }
        }
    }

    // Timestamp 0: the log start, with its record's timestamp.
    let body = json_body(offset_for_timestamp(&app, "timed", 0, "timestamp=0").await).await;
    assert_eq!(
        body,
        json!({"partition": 0, "offset": 0, "timestamp": stamps[0]})
    );
    // Far future: the high watermark, no timestamp.
    let body =
        json_body(offset_for_timestamp(&app, "timed", 0, "timestamp=32503680000000").await).await;
    assert_eq!(
        body,
        json!({"partition": 0, "offset": end, "timestamp": null})
    );
    // The other partition is still empty.
    let body = json_body(offset_for_timestamp(&app, "timed", 1, "timestamp=0").await).await;
    assert_eq!(
        body,
        json!({"partition": 1, "offset": 0, "timestamp": null})
    );

    // The answer is a valid fetch position.
    let t = stamps[5];
    let body =
        json_body(offset_for_timestamp(&app, "timed", 0, &format!("timestamp={t}")).await).await;
    let from = body["offset"].as_u64().unwrap();
    let page = app.fetch_ok("timed", 0, &format!("offset={from}")).await;
    assert!(
        records(&page)
            .iter()
            .all(|r| r["timestamp"].as_i64().unwrap() >= t)
    );
    assert_eq!(
        records(&page).len(),
        offsets.iter().filter(|o| **o >= from).count()
    );

    for query in ["", "timestamp=", "timestamp=abc", "timestamp=1.5", "time=0"] {
        let response = offset_for_timestamp(&app, "timed", 0, query).await;
        expect_error(response, 400, "invalid_query").await;
    }
}
