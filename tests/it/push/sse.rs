//! Server-Sent Events: resuming with `Last-Event-ID` delivers the log exactly once; the
//! first event is not held back by compression.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestApp, expect_error, offsets_of};

/// One parsed event.
#[derive(Debug)]
struct Event {
    id: Option<String>,
    kind: Option<String>,
    data: String,
}

/// An open event stream, parsed as it arrives.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<&str>) -> EventStream {
        let mut request = app
            .get(&format!("/v1/topics/t/events{query}"))
            .header("accept-encoding", "gzip");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("open the stream");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert!(
            response.headers().get("content-encoding").is_none(),
            "not compressed"
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` if nothing arrives within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    id: None,
                    kind: None,
                    data: String::new(),
                };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.to_owned());
                    } else if let Some(kind) = line.strip_prefix("event: ") {
                        event.kind = Some(kind.to_owned());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(data);
                        has_data = true;
                    }
                }
                if has_data {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?;
            let chunk = chunk.expect("stream").expect("stream still open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn publish_n(app: &TestApp, from: u64, count: u64) {
    let records: Vec<Value> = (from..from + count)
        .map(|n| json!({"key": format!("k{n}"), "value": {"n": n}}))
        .collect();
    offsets_of(app.publish("t", json!(records)).await).await;
}

#[tokio::test]
async fn resuming_with_last_event_id_delivers_the_log_exactly_once() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 3).await;
    publish_n(&app, 0, 30).await;
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut stream = EventStream::open(&app, "?from=earliest", None).await;
    let mut last_id = None;
    for _ in 0..12 {
        let event = stream
            .next(Duration::from_secs(10))
            .await
            .expect("an event");
        let record: Value = serde_json::from_str(&event.data).expect("record JSON");
        seen.push((
            record["partition"].as_u64().unwrap(),
            record["offset"].as_u64().unwrap(),
        ));
        last_id = event.id;
    }
    drop(stream); // Disconnect mid-stream.
    publish_n(&app, 30, 15).await;
    let mut stream = EventStream::open(&app, "", last_id.as_deref()).await;
    while seen.len() < 45 {
        let event = stream
            .next(Duration::from_secs(10))
            .await
            .expect("the rest");
        let record: Value = serde_json::from_str(&event.data).unwrap();
        seen.push((
            record["partition"].as_u64().unwrap(),
            record["offset"].as_u64().unwrap(),
        ));
        last_id = event.id;
    }
    let unique: BTreeSet<(u64, u64)> = seen.iter().copied().collect();
    assert_eq!(unique.len(), 45, "no duplicate, no loss: {seen:?}");
    assert!(stream.next(Duration::from_millis(300)).await.is_none());
    // `?last_event_id=` (a new EventSource) resumes like the header.
    publish_n(&app, 45, 1).await;
    let query = format!("?last_event_id={}", last_id.unwrap());
    let mut fresh = EventStream::open(&app, &query, None).await;
    let event = fresh
        .next(Duration::from_secs(10))
        .await
        .expect("the new record");
    assert!(event.data.contains(r#""value":{"n":45}"#), "{}", event.data);
}

#[tokio::test]
async fn the_first_event_arrives_promptly_even_when_gzip_is_accepted() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    let mut stream = EventStream::open(&app, "", None).await;
    let started = Instant::now();
    let publishing = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        publish_n(&app, 0, 1).await;
    };
    let (event, ()) = tokio::join!(stream.next(Duration::from_secs(10)), publishing);
    let event = event.expect("the first event");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(event.id.is_some());
    assert!(event.kind.is_none());
    // The stream stays open for what comes next.
    publish_n(&app, 1, 1).await;
    assert!(stream.next(Duration::from_secs(10)).await.is_some());
}

#[tokio::test]
async fn a_value_with_line_breaks_survives_the_event_format() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    let body = "{\"records\": [{\"value\": {\"a\":\n[1,\r\n2]}}]}";
    let response = app.publish_raw("t", Some("application/json"), body).await;
    assert_eq!(response.status(), 200);
    let mut stream = EventStream::open(&app, "?from=earliest", None).await;
    let event = stream.next(Duration::from_secs(10)).await.expect("event");
    let record: Value = serde_json::from_str(&event.data).expect("valid JSON after joining");
    assert_eq!(record["value"], json!({"a": [1, 2]}));
}

#[tokio::test]
async fn bad_stream_requests_get_error_bodies() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    for (query, status, code) in [
        ("?from=middle", 400, "invalid_query"),
        ("?partitions=0,x", 400, "invalid_query"),
        ("?partitions=5", 404, "partition_not_found"),
        ("?last_event_id=0-x", 400, "invalid_query"),
    ] {
        let response = app
            .get(&format!("/v1/topics/t/events{query}"))
            .send()
            .await
            .unwrap();
        expect_error(response, status, code).await;
    }
    let response = app.get("/v1/topics/nope/events").send().await.unwrap();
    expect_error(response, 404, "topic_not_found").await;
}

/// A cursor the log does not cover (here the topic was deleted and recreated, so its offsets
/// start over; retention will make the same from below) is reported with the earliest
/// offset, and delivery goes on from there: never a silent skip or a silent wait.
#[tokio::test]
async fn a_cursor_outside_the_log_is_reported_then_delivery_goes_on() {
    let wait = Duration::from_secs(5);
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    publish_n(&app, 0, 5).await;
    assert_eq!(app.delete_topic("t").await.status(), 204);
    app.create_topic("t", 1).await;
    publish_n(&app, 0, 2).await;
    let end = app.next_offset("t", 0).await;
    let expect_notice = |detail: &Value| {
        assert_eq!(detail["code"], "offset_out_of_range", "{detail}");
        assert_eq!(
            (
                &detail["partition"],
                &detail["log_start_offset"],
                &detail["high_watermark"]
            ),
            (&json!(0), &json!(0), &json!(end)),
            "{detail}"
        );
    };

    let mut events = EventStream::open(&app, "", Some("0-5")).await;
    let notice = events.next(wait).await.expect("a notice");
    assert_eq!(notice.kind.as_deref(), Some("error"));
    expect_notice(&serde_json::from_str(&notice.data).expect("JSON"));
    for offset in 0..2u64 {
        let event = events.next(wait).await.expect("a record");
        let record: Value = serde_json::from_str(&event.data).expect("JSON");
        assert_eq!(record["offset"], offset);
        assert_eq!(event.id, Some(format!("0-{}", offset + 1)));
    }

    let mut ws = super::client::Ws::connect(
        &app.url(""),
        &crate::harness::token("reader", "subscribe:t"),
    )
    .await;
    let subscribed = ws
        .subscribe(json!({"topic": "t", "from": {"cursor": "0-5"}}))
        .await;
    let error = ws.expect("error").await;
    assert_eq!(error["sub"], subscribed["sub"]);
    expect_notice(&error["error"]);
    let (records, cursor) = ws.records(2).await;
    assert_eq!(records.len(), 2);
    let last = records[1]["offset"].as_u64().unwrap();
    assert!(
        cursor == format!("0-{}", last + 1) || cursor == format!("0-{end}"),
        "{cursor}"
    );
}
