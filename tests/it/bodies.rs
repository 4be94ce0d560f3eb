//! Request bodies as a hostile client sends them: stalled, trickled after a refusal,
//! announced as a gigabyte, compressed (or claiming an encoding we do not speak), nested
//! too deep for any consumer to parse. Raw sockets where the client's behaviour is the test.

use std::io::Write;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    RawReply, TestApp, expect_error, json_body, offsets_of, raw_exchange, records, token,
};

/// A request head with `headers` (CRLF-terminated lines) and the admin token, if any.
fn head(method: &str, path: &str, token: Option<&str>, headers: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!("{method} {path} HTTP/1.1\r\nHost: tidegate\r\n{auth}{headers}\r\n")
}

/// Sends `head`, then one chunk of a chunked body every 100 ms for `for_how_long`, and
/// reports what came back and whether the server closed the connection meanwhile.
async fn trickle(base_url: &str, head: &str, for_how_long: Duration) -> RawReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send head");
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = loop {
        if started.elapsed() > for_how_long {
            break false;
        }
        if stream.write_all(b"1\r\n{\r\n").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => {}
        }
    };
    RawReply {
        text: String::from_utf8_lossy(&received).into_owned(),
        closed,
        elapsed: started.elapsed(),
    }
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_closed() {
    let app = TestApp::spawn_with(&["--body-timeout-ms", "400"]).await;
    app.create_topic("t", 1).await;
    // Announces 100 bytes, sends 10, then nothing.
    let request = format!(
        "{}{{\"records\"",
        head(
            "POST",
            "/v1/topics/t/records",
            Some(&app.admin_token),
            "Content-Type: application/json\r\nContent-Length: 100\r\n"
        )
    );
    let reply = raw_exchange(&app.base_url, request.as_bytes(), Duration::from_secs(10)).await;
    assert!(reply.status_line().contains(" 408 "), "{}", reply.text);
    assert_eq!(reply.json()["error"]["code"], "request_timeout");
    assert!(reply.closed, "the connection is closed after a 408");
    assert!(
        reply.elapsed < Duration::from_secs(5),
        "{:?}",
        reply.elapsed
    );

    // A chunked body that keeps trickling is no better: the deadline covers the whole body.
    let chunked = head(
        "POST",
        "/v1/topics/t/records",
        Some(&app.admin_token),
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
    );
    let reply = trickle(&app.base_url, &chunked, Duration::from_secs(8)).await;
    assert!(reply.status_line().contains(" 408 "), "{}", reply.text);
    assert!(reply.closed, "closed while the client still trickles");
    assert!(
        reply.elapsed < Duration::from_secs(5),
        "{:?}",
        reply.elapsed
    );
    assert_eq!(app.record_counts("t").await, vec![0], "nothing appended");
}

#[tokio::test]
async fn early_refusals_close_the_connection_instead_of_reading_on() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    let reader = token("reader", "subscribe:t");
    let chunked = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n";
    let cases = [
        ("401", head("POST", "/v1/topics/t/records", None, chunked)),
        (
            "403",
            head("POST", "/v1/topics/t/records", Some(&reader), chunked),
        ),
        ("403", head("POST", "/v1/topics", Some(&reader), chunked)),
        (
            "415",
            head(
                "POST",
                "/v1/topics/t/records",
                Some(&app.admin_token),
                "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
            ),
        ),
        (
            "405",
            head("PUT", "/v1/topics/t", Some(&app.admin_token), chunked),
        ),
        ("200", head("GET", "/healthz", None, chunked)),
    ];
    for (status, request) in cases {
        let reply = trickle(&app.base_url, &request, Duration::from_secs(10)).await;
        assert!(
            reply.status_line().contains(&format!(" {status} ")),
            "{request}: {}",
            reply.text
        );
        assert!(reply.closed, "{request}: still reading the trickle");
        assert!(
            reply.elapsed < Duration::from_secs(4),
            "{request}: closed only after {:?}",
            reply.elapsed
        );
    }
}

#[tokio::test]
async fn a_huge_content_length_is_refused_before_reading() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    for path in ["/v1/topics/t/records", "/v1/topics", "/v1/topics/t"] {
        let method = if path == "/v1/topics/t" {
            "PATCH"
        } else {
            "POST"
        };
        let request = head(
            method,
            path,
            Some(&app.admin_token),
            "Content-Type: application/json\r\nContent-Length: 1073741824\r\n",
        );
        // Not one byte of the body is sent: the answer can only come from the header.
        let reply = raw_exchange(&app.base_url, request.as_bytes(), Duration::from_secs(10)).await;
        assert!(
            reply.status_line().contains(" 413 "),
            "{path}: {}",
            reply.text
        );
        assert_eq!(reply.json()["error"]["code"], "body_too_large", "{path}");
        assert!(reply.closed, "{path}: closed after the 413");
        assert!(
            reply.elapsed < Duration::from_secs(4),
            "{path}: {:?}",
            reply.elapsed
        );
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("compress")
}

async fn publish_encoded(app: &TestApp, encoding: &str, body: Vec<u8>) -> reqwest::Response {
    app.post("/v1/topics/t/records")
        .header("content-type", "application/json")
        .header("content-encoding", encoding)
        .body(body)
        .send()
        .await
        .expect("publish")
}

#[tokio::test]
async fn gzip_bodies_are_decoded_and_other_encodings_refused() {
    let app =
        TestApp::spawn_with(&["--max-body-bytes", "100000", "--max-record-bytes", "50000"]).await;
    app.create_topic("t", 1).await;
    let body = json!({"records": [{"value": {"zipped": true}}]}).to_string();
    let response = publish_encoded(&app, "gzip", gzip(body.as_bytes())).await;
    assert_eq!(offsets_of(response).await, vec![(0, 0)]);
    let next = app.next_offset("t", 0).await;
    let response = publish_encoded(&app, "identity", body.clone().into_bytes()).await;
    assert_eq!(offsets_of(response).await, vec![(0, next)]);
    let fetched = app.fetch_ok("t", 0, "offset=0").await;
    assert_eq!(records(&fetched)[0]["value"], json!({"zipped": true}));

    for encoding in ["br", "deflate", "zstd", "gzip, gzip", "compress"] {
        let response = publish_encoded(&app, encoding, gzip(body.as_bytes())).await;
        expect_error(response, 415, "unsupported_media_type").await;
    }
    let response = publish_encoded(&app, "gzip", b"not gzip at all".to_vec()).await;
    expect_error(response, 400, "invalid_body").await;
    // 10 MB of zeros compress to a few KB; decompressed they pass the 100 KB limit.
    let bomb = gzip(&vec![b' '; 10_000_000]);
    assert!(bomb.len() < 100_000);
    let response = publish_encoded(&app, "gzip", bomb).await;
    expect_error(response, 413, "body_too_large").await;
    assert_eq!(app.record_counts("t").await, vec![2]);
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn values_nested_deeper_than_the_limit_are_refused_naming_the_record() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    let json_body_of = |depth: usize| {
        format!(
            r#"{{"records": [{{"value": 1}}, {{"value": {}}}]}}"#,
            nested(depth)
        )
    };
    let ndjson_body_of =
        |depth: usize| format!("{{\"value\": 1}}\n\n{{\"value\": {}}}\n", nested(depth));
    for depth in [20, 64] {
        let response = app
            .publish_raw("t", Some("application/json"), &json_body_of(depth))
            .await;
        assert_eq!(response.status(), 200, "depth {depth} over JSON");
        let response = app
            .publish_raw("t", Some("application/x-ndjson"), &ndjson_body_of(depth))
            .await;
        assert_eq!(response.status(), 200, "depth {depth} over NDJSON");
    }
    for depth in [65, 5000, 100_000] {
        let response = app
            .publish_raw("t", Some("application/json"), &json_body_of(depth))
            .await;
        let error = expect_error(response, 400, "invalid_body").await;
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("records[1]: value is nested deeper than 64"),
            "{message}"
        );
        let response = app
            .publish_raw("t", Some("application/x-ndjson"), &ndjson_body_of(depth))
            .await;
        let error = expect_error(response, 400, "invalid_body").await;
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("line 3: value is nested deeper than 64"),
            "{message}"
        );
    }
    assert_eq!(
        app.record_counts("t").await,
        vec![8],
        "refused requests append nothing"
    );
    // Everything stored parses back, depth 64 included.
    let fetched = app.fetch_ok("t", 0, "offset=0&limit=100").await;
    assert_eq!(records(&fetched).len(), 8);

    let shallow = TestApp::spawn_with(&["--max-value-depth", "2"]).await;
    shallow.create_topic("t", 1).await;
    let response = shallow.publish("t", json!([{"value": {"a": [1]}}])).await;
    assert_eq!(response.status(), 200);
    let response = shallow.publish("t", json!([{"value": {"a": [[1]]}}])).await;
    let error = expect_error(response, 400, "invalid_body").await;
    assert!(
        error["message"].as_str().unwrap().contains("deeper than 2"),
        "{error}"
    );
}

#[tokio::test]
async fn huge_numbers_are_kept_verbatim() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    let digits = "9".repeat(10_001);
    let body = format!(
        r#"{{"records": [{{"value": {digits}}}, {{"value": 1e400}}, {{"value": -0.000000000000000000001}}]}}"#
    );
    let response = app.publish_raw("t", Some("application/json"), &body).await;
    assert_eq!(response.status(), 200);
    let text = app
        .get("/v1/topics/t/partitions/0/records?offset=0")
        .send()
        .await
        .expect("fetch")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains(&format!(r#""value":{digits}"#)),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(text.contains(r#""value":1e400"#));
    assert!(text.contains(r#""value":-0.000000000000000000001"#));
}

#[tokio::test]
async fn lone_surrogates_and_bad_keys_are_refused_with_the_record_named() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 1).await;
    let response = app
        .publish_raw(
            "t",
            Some("application/json"),
            r#"{"records": [{"value": "ok \ud83d\ude00"}, {"value": {"k": "\udc00"}}]}"#,
        )
        .await;
    let error = expect_error(response, 400, "invalid_body").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("records[1]: value holds an unpaired"),
        "{error}"
    );
    // A key that fails to parse is reported against the object holding it, not as `?`.
    let response = app
        .publish_raw(
            "t",
            Some("application/json"),
            r#"{"records": [{"value": 1, "headers": {"\ud800": "x"}}]}"#,
        )
        .await;
    let error = expect_error(response, 400, "invalid_body").await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid JSON body: records[0].headers: "),
        "{message}"
    );
    assert!(!message.contains('?'), "{message}");

    for key in ["a\tb", "é"] {
        let response = app
            .post("/v1/topics/t/records")
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(key.as_bytes()).unwrap(),
            )
            .json(&json!({"records": [{"value": 1}]}))
            .send()
            .await
            .expect("publish");
        let error = expect_error(response, 400, "invalid_idempotency_key").await;
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("printable ASCII"),
            "{error}"
        );
    }
    let response = app
        .publish_with_key(
            "t",
            "with spaces and !#$%&'*+-.^_`|~",
            json!([{"value": 1}]),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.record_counts("t").await, vec![1]);
}

#[tokio::test]
async fn a_reused_idempotency_key_with_another_body_is_422_across_formats() {
    let app = TestApp::spawn().await;
    app.create_topic("t", 2).await;
    let first = app
        .publish_with_key("t", "k1", json!([{"key": "a", "value": {"n": 1}}]))
        .await;
    let first: Value = json_body(first).await;
    // The same records as NDJSON are the same request: replayed.
    let response = app
        .request(Method::POST, "/v1/topics/t/records")
        .header("Idempotency-Key", "k1")
        .header("content-type", "application/x-ndjson")
        // The value's text as the JSON publish sent it: values are compared, and stored,
        // byte for byte.
        .body("{\"key\": \"a\", \"value\": {\"n\":1}}\n")
        .send()
        .await
        .expect("publish");
    assert_eq!(response.headers()["idempotency-replayed"], "true");
    assert_eq!(json_body(response).await, first);
    // One field changed: refused, nothing appended.
    let response = app
        .publish_with_key("t", "k1", json!([{"key": "a", "value": {"n": 2}}]))
        .await;
    expect_error(response, 422, "idempotency_key_reused").await;
    assert_eq!(app.record_counts("t").await.iter().sum::<u64>(), 1);
}
