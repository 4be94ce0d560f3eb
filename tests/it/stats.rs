//! Traffic history (SPEC "Web console", `GET /v1/topics/{topic}/stats`): records and
//! bytes in and out per interval, the window asked for, and memory bounded by the
//! metrics' topic cap.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestApp, expect_error, json_body};

async fn stats(app: &TestApp, topic: &str, query: &str) -> Value {
    let response = app
        .get(&format!("/v1/topics/{topic}/stats?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "stats of {topic}?{query}");
    json_body(response).await
}

fn sum(points: &Value, field: &str) -> u64 {
    points["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[field].as_u64().unwrap())
        .sum()
}

/// Waits until the topic's history has counted `records_in` records in.
async fn until_counted(app: &TestApp, topic: &str, records_in: u64) -> Value {
    for _ in 0..100 {
        let history = stats(app, topic, "").await;
        if sum(&history, "records_in") >= records_in {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{topic}'s history never counted {records_in} records in");
}

#[tokio::test]
async fn a_topics_history_counts_its_traffic_in_intervals_within_the_window() {
    let app =
        TestApp::spawn_with(&["--stats-interval-secs", "1", "--stats-window-secs", "20"]).await;
    app.create_topic("watched", 1).await;
    app.create_topic("quiet", 1).await;
    // Seven records of five bytes each ("abc" as JSON), then all seven read back.
    let records: Vec<Value> = (0..7).map(|_| json!({"value": "abc"})).collect();
    app.publish_ok("watched", json!(records)).await;
    app.fetch_ok("watched", 0, "offset=0").await;

    let history = until_counted(&app, "watched", 7).await;
    assert_eq!(history["interval_s"], 1);
    assert_eq!(sum(&history, "records_in"), 7);
    assert_eq!(sum(&history, "bytes_in"), 35);
    assert_eq!(sum(&history, "records_out"), 7);
    assert_eq!(sum(&history, "bytes_out"), 35);
    let points = history["points"].as_array().unwrap();
    // The traffic lands in one or two intervals (a sample may fall between the two
    // requests), each a point of its own.
    let busy = points
        .iter()
        .filter(|p| p["records_in"] != 0 || p["records_out"] != 0);
    assert!((1..=2).contains(&busy.count()), "{history}");
    let times: Vec<i64> = points.iter().map(|p| p["time"].as_i64().unwrap()).collect();
    assert!(
        times
            .windows(2)
            .all(|w| (900..=1600).contains(&(w[1] - w[0]))),
        "{times:?}"
    );

    // A quiet topic gets a point per interval too, all zeros.
    let quiet = stats(&app, "quiet", "").await;
    assert!(!quiet["points"].as_array().unwrap().is_empty());
    assert_eq!(sum(&quiet, "records_in") + sum(&quiet, "records_out"), 0);

    // window_s bounds the points: at most two in the last two seconds.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let recent = stats(&app, "watched", "window_s=2").await;
    let recent_points = recent["points"].as_array().unwrap();
    assert!((1..=2).contains(&recent_points.len()), "{recent}");
    assert_eq!(
        sum(&recent, "records_in"),
        0,
        "the traffic is older than 2 s: {recent}"
    );
    assert!(
        stats(&app, "watched", "window_s=20").await["points"]
            .as_array()
            .unwrap()
            .len()
            >= 4
    );

    for bad in ["window_s=0", "window_s=21", "window_s=x"] {
        expect_error(
            app.get(&format!("/v1/topics/watched/stats?{bad}"))
                .send()
                .await
                .unwrap(),
            400,
            "invalid_query",
        )
        .await;
    }
    expect_error(
        app.get("/v1/topics/nowhere/stats").send().await.unwrap(),
        404,
        "topic_not_found",
    )
    .await;
}

#[tokio::test]
async fn topics_past_the_metrics_cap_have_no_history_of_their_own() {
    let app =
        TestApp::spawn_with(&["--stats-interval-secs", "1", "--metrics-max-topics", "2"]).await;
    for topic in ["t1", "t2", "t3", "t4"] {
        app.create_topic(topic, 1).await;
        app.publish_ok(topic, json!([{"value": 1}])).await;
    }
    until_counted(&app, "t1", 1).await;
    until_counted(&app, "t2", 1).await;
    for untracked in ["t3", "t4"] {
        let history = stats(&app, untracked, "").await;
        assert_eq!(sum(&history, "records_in"), 0, "{untracked}: {history}");
    }
}

#[tokio::test]
async fn a_groups_lag_history_follows_its_commits() {
    let app =
        TestApp::spawn_with(&["--stats-interval-secs", "1", "--stats-window-secs", "20"]).await;
    app.create_topic("lagging", 2).await;
    let records: Vec<Value> = (0..6)
        .map(|i| json!({"value": i, "partition": i % 2}))
        .collect();
    app.publish_ok("lagging", json!(records)).await;
    // Offset 1 committed on each partition.
    let polled = app
        .poll_group(
            "g",
            json!({"topics": ["lagging"], "auto_offset_reset": "earliest", "limit": 1}),
        )
        .await;
    let offsets: Vec<Value> = (0..2)
        .map(|p| json!({"topic": "lagging", "partition": p, "offset": 1}))
        .collect();
    app.commit_as("g", &polled, json!(offsets)).await;
    // Three records per partition; on Kafka a transaction marker takes an offset too.
    let lags: Vec<u64> = app
        .high_watermarks("lagging")
        .await
        .iter()
        .map(|h| h - 1)
        .collect();
    let total: u64 = lags.iter().sum();
    let mut history = Value::Null;
    for _ in 0..100 {
        let response = app.get("/v1/groups/g/stats").send().await.unwrap();
        assert_eq!(response.status(), 200);
        history = json_body(response).await;
        if history["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["lag"] == total)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(history["interval_s"], 1);
    let last = history["points"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last["lag"], total, "{history}");
    let partitions = history["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2, "{history}");
    for p in partitions {
        let partition = p["partition"].as_u64().unwrap() as usize;
        assert_eq!(
            p["lag"].as_array().unwrap().last().unwrap(),
            lags[partition],
            "{history}"
        );
        assert_eq!(
            p["lag"].as_array().unwrap().len(),
            history["points"].as_array().unwrap().len()
        );
    }
    expect_error(
        app.get("/v1/groups/nobody/stats").send().await.unwrap(),
        404,
        "group_not_found",
    )
    .await;
    expect_error(
        app.get("/v1/groups/g/stats?window_s=99")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_query",
    )
    .await;
}
