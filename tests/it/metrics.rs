//! `/metrics`: access, and counters, gauges and histograms moving by exactly what known
//! traffic makes them move, read back with a Prometheus text parser.

use crate::harness::redb_only;
use std::time::Duration;

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use serde_json::{Value, json};

use crate::harness::{TestApp, expect_error, token};
use crate::push::client::Ws;

/// No retention passes during these tests: each would be a group commit of its own.
const QUIET: [&str; 2] = ["--retention-check-interval-ms", "3600000"];

pub type Scrape = MetricsExposition<PrometheusType, PrometheusValue>;

/// Scrapes `/metrics` as an admin and parses it with a Prometheus text-format parser.
pub async fn scrape(app: &TestApp) -> Scrape {
    let response = app.get("/metrics").send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.expect("text");
    parse_prometheus(&text).unwrap_or_else(|err| panic!("not the text format ({err:?}):\n{text}"))
}

/// The series of `family` whose labels are exactly `labels`.
fn series<'a>(
    scrape: &'a Scrape,
    family: &str,
    labels: &[(&str, &str)],
) -> Option<&'a PrometheusValue> {
    let family = scrape.families.get(family)?;
    family.iter_samples().find_map(|sample| {
        let set = sample.get_labelset().expect("labels");
        let matches = set.iter_names().count() == labels.len()
            && labels
                .iter()
                .all(|(name, value)| set.get_label_value(name) == Some(value));
        matches.then_some(&sample.value)
    })
}

/// A counter's or gauge's value, a histogram's count; 0 when the series is absent.
pub fn value(scrape: &Scrape, family: &str, labels: &[(&str, &str)]) -> f64 {
    match series(scrape, family, labels) {
        None => 0.0,
        Some(PrometheusValue::Counter(counter)) => counter.value.as_f64(),
        Some(PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n)) => n.as_f64(),
        Some(PrometheusValue::Histogram(histogram)) => histogram.count.unwrap_or(0) as f64,
        Some(PrometheusValue::Summary(_)) => panic!("no summaries here"),
    }
}

/// A histogram's sum.
fn sum(scrape: &Scrape, family: &str) -> f64 {
    match series(scrape, family, &[]) {
        Some(PrometheusValue::Histogram(histogram)) => {
            histogram.sum.as_ref().map_or(0.0, |sum| sum.as_f64())
        }
        other => panic!("{family} is not a histogram: {other:?}"),
    }
}

/// Whether any series of any family has `label` = `value`.
fn any_series_with(scrape: &Scrape, label: &str, value: &str) -> bool {
    scrape.families.values().any(|family| {
        family.iter_samples().any(|sample| {
            sample
                .get_labelset()
                .is_ok_and(|set| set.get_label_value(label) == Some(value))
        })
    })
}

#[tokio::test]
async fn metrics_need_an_admin_token_unless_public() {
    let app = TestApp::spawn().await;
    let anonymous = app
        .anonymous(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("scrape");
    expect_error(anonymous, 401, "missing_token").await;
    let reader = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(token("reader", "subscribe:*"))
        .send()
        .await
        .expect("scrape");
    expect_error(reader, 403, "forbidden").await;
    scrape(&app).await;

    let public = TestApp::spawn_with(&["--metrics-public"]).await;
    let anonymous = public
        .anonymous(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("scrape");
    assert_eq!(anonymous.status(), 200);
    let text = anonymous.text().await.expect("text");
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(text.contains("process_open_fds"), "{text}");
}

#[tokio::test]
async fn traffic_commits_and_requests_move_by_what_was_done() {
    let app = TestApp::spawn_with(&QUIET).await;
    app.create_topic("metered", 2).await;
    // 3 records in one request, then a replay of it that must not count.
    let records = json!([
        {"key": "k1", "value": {"a": 1}, "partition": 0},
        {"key": null, "value": "twelve bytes", "partition": 0, "headers": {"h": "vv"}},
        {"value": [1, 2, 3], "partition": 1},
    ]);
    // {"a":1} is 7 bytes; "twelve bytes" with quotes 14; h + vv 3; [1,2,3] 7; k1 2.
    let bytes = 7 + 14 + 3 + 7 + 2;
    for _ in 0..2 {
        let published = app
            .publish_with_key("metered", "once", records.clone())
            .await;
        assert_eq!(published.status(), 200);
    }
    let before = scrape(&app).await;
    let topic = [("topic", "metered")];
    assert_eq!(value(&before, "tidegate_records_in_total", &topic), 3.0);
    assert_eq!(
        value(&before, "tidegate_record_bytes_in_total", &topic),
        bytes as f64
    );
    if crate::harness::dense_offsets() {
        // One create and two publishes, each its own group commit, each synced.
        assert_eq!(value(&before, "tidegate_commit_batch_requests", &[]), 3.0);
        assert_eq!(sum(&before, "tidegate_commit_batch_requests"), 3.0);
        assert_eq!(value(&before, "tidegate_commit_duration_seconds", &[]), 3.0);
        assert_eq!(value(&before, "tidegate_fsyncs_total", &[]), 3.0);
    } else {
        // Kafka: one transaction; the replay is answered from memory, and topics are
        // made by the admin API, outside transactions. The broker syncs, not tidegate.
        assert_eq!(value(&before, "tidegate_commit_batch_requests", &[]), 1.0);
        assert_eq!(sum(&before, "tidegate_commit_batch_requests"), 1.0);
        assert_eq!(value(&before, "tidegate_commit_duration_seconds", &[]), 1.0);
        assert_eq!(value(&before, "tidegate_fsyncs_total", &[]), 0.0);
    }
    let publishes = [
        ("route", "/v1/topics/{topic}/records"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(
        value(&before, "tidegate_http_requests_total", &publishes),
        2.0
    );
    let latency = [("route", "/v1/topics/{topic}/records"), ("method", "POST")];
    assert_eq!(
        value(&before, "tidegate_http_request_duration_seconds", &latency),
        2.0
    );

    // Out: a fetch of partition 0 (2 records), then a WebSocket subscriber of both.
    let fetched = app.fetch_ok("metered", 0, "offset=0").await;
    assert_eq!(fetched["records"].as_array().map(Vec::len), Some(2));
    let after_fetch = scrape(&app).await;
    assert_eq!(
        value(&after_fetch, "tidegate_records_out_total", &topic),
        2.0
    );
    assert_eq!(
        value(&after_fetch, "tidegate_record_bytes_out_total", &topic),
        (7 + 14 + 3 + 2) as f64
    );
    let mut ws = Ws::connect(&app.base_url, &app.admin_token).await;
    ws.subscribe(json!({"topic": "metered", "from": "earliest"}))
        .await;
    ws.records(3).await;
    let streaming = scrape(&app).await;
    assert_eq!(value(&streaming, "tidegate_records_out_total", &topic), 5.0);
    assert_eq!(
        value(&streaming, "tidegate_record_bytes_out_total", &topic),
        (26 + bytes) as f64
    );
    assert_eq!(
        value(&streaming, "tidegate_websocket_connections", &[]),
        1.0
    );
    assert_eq!(
        value(&streaming, "tidegate_websocket_subscriptions", &[]),
        1.0
    );
    let sse = app
        .get("/v1/topics/metered/events?from=earliest")
        .send()
        .await
        .expect("event stream");
    assert_eq!(sse.status(), 200);
    assert_eq!(value(&scrape(&app).await, "tidegate_sse_streams", &[]), 1.0);
    drop(sse);
    ws.close().await;
    wait_until(&app, |scrape| {
        value(scrape, "tidegate_websocket_connections", &[]) == 0.0
            && value(scrape, "tidegate_websocket_subscriptions", &[]) == 0.0
            && value(scrape, "tidegate_sse_streams", &[]) == 0.0
    })
    .await;
}

/// Scrapes until `done` holds, for at most 10 s.
async fn wait_until(app: &TestApp, done: impl Fn(&Scrape) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if done(&scrape(app).await) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn groups_report_members_rebalances_and_lag_per_partition() {
    let app = TestApp::spawn_with(&QUIET).await;
    app.create_topic("lagged", 2).await;
    let records: Vec<Value> = (0..5)
        .map(|i| json!({"value": i, "partition": i % 2}))
        .collect();
    app.publish_ok("lagged", json!(records)).await;
    let poll = app
        .poll_group(
            "readers",
            json!({"topics": ["lagged"], "auto_offset_reset": "earliest", "limit": 1}),
        )
        .await;
    app.commit_as(
        "readers",
        &poll,
        json!([{"topic": "lagged", "partition": 0, "offset": 1}]),
    )
    .await;
    let scrape = scrape(&app).await;
    let group = [("group", "readers")];
    assert_eq!(value(&scrape, "tidegate_group_members", &group), 1.0);
    assert_eq!(
        value(&scrape, "tidegate_group_rebalances_total", &group),
        poll["generation"].as_f64().expect("generation")
    );
    let partition_0 = [
        ("group", "readers"),
        ("topic", "lagged"),
        ("partition", "0"),
    ];
    // Partition 0 holds records 0, 2 and 4; the group committed offset 1.
    let end = app.next_offset("lagged", 0).await;
    assert_eq!(
        value(&scrape, "tidegate_group_lag", &partition_0),
        (end - 1) as f64
    );
    let partition_1 = [
        ("group", "readers"),
        ("topic", "lagged"),
        ("partition", "1"),
    ];
    assert!(
        series(&scrape, "tidegate_group_lag", &partition_1).is_none(),
        "no lag series for a partition without a committed offset"
    );
    // Delivered by the poll: the one record it returned.
    assert_eq!(
        value(
            &scrape,
            "tidegate_records_out_total",
            &[("topic", "lagged")]
        ),
        1.0
    );
}

#[tokio::test]
async fn topic_labels_stop_at_the_cap() {
    let app = TestApp::spawn_with(&["--metrics-max-topics", "2"]).await;
    for topic in ["t1", "t2", "t3", "t4"] {
        app.create_topic(topic, 1).await;
        app.publish_ok(topic, json!([{"value": 1}])).await;
    }
    let scrape = scrape(&app).await;
    for topic in ["t1", "t2"] {
        assert_eq!(
            value(&scrape, "tidegate_records_in_total", &[("topic", topic)]),
            1.0
        );
    }
    assert_eq!(
        value(&scrape, "tidegate_records_in_total", &[("topic", "_other")]),
        2.0
    );
    assert!(
        !any_series_with(&scrape, "topic", "t3"),
        "t3 has no series of its own"
    );

    // A deleted topic takes its series with it and frees its place.
    assert_eq!(app.delete_topic("t1").await.status(), 204);
    app.create_topic("t5", 1).await;
    app.publish_ok("t5", json!([{"value": 1}])).await;
    let after_delete = self::scrape(&app).await;
    assert!(
        !any_series_with(&after_delete, "topic", "t1"),
        "t1 forgotten"
    );
    assert_eq!(
        value(
            &after_delete,
            "tidegate_records_in_total",
            &[("topic", "t5")]
        ),
        1.0
    );
}

#[tokio::test]
async fn an_idle_log_never_commits_for_retention() {
    redb_only!("redb's fsyncs and retention commits");
    let app = TestApp::spawn_with(&["--retention-check-interval-ms", "20"]).await;
    app.create_topic_with(json!({"name": "idle", "partitions": 2, "retention_ms": 60_000}))
        .await;
    app.publish_ok("idle", json!([{"value": 1}])).await;
    // About 25 passes find nothing due: none of them commits or syncs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let scrape = scrape(&app).await;
    assert_eq!(value(&scrape, "tidegate_fsyncs_total", &[]), 2.0);
    assert_eq!(value(&scrape, "tidegate_commit_batch_requests", &[]), 2.0);
}
