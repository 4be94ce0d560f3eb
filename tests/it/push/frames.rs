//! WebSocket framing (RFC 6455) as the server reads and writes it: fragmented messages,
//! control frames, and the limits that close a socket.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::client::Ws;
use crate::harness::{TestApp, token};

fn fragment(payload: &[u8], opcode: Data, last: bool) -> Message {
    Message::Frame(Frame::message(payload.to_vec(), OpCode::Data(opcode), last))
}

async fn connect(app: &TestApp) -> Ws {
    app.create_topic("frames", 1).await;
    Ws::connect(&app.url(""), &token("framer", "subscribe:frames")).await
}

#[tokio::test]
async fn fragments_are_joined_and_control_frames_answered() {
    let app = TestApp::spawn().await;
    let mut ws = connect(&app).await;

    // A subscribe split over three frames, with a ping between them (control frames may
    // interleave).
    let text = json!({"op": "subscribe", "req": "split", "topic": "frames"}).to_string();
    let (a, rest) = text.as_bytes().split_at(10);
    let (b, c) = rest.split_at(10);
    ws.send_message(fragment(a, Data::Text, false)).await;
    ws.send_message(fragment(b, Data::Continue, false)).await;
    ws.send_message(Message::Ping(b"between".to_vec().into()))
        .await;
    ws.send_message(fragment(c, Data::Continue, true)).await;
    let mut pong = None;
    let mut subscribed = None;
    while pong.is_none() || subscribed.is_none() {
        match ws.next_message().await.expect("the socket stays open") {
            Message::Pong(payload) => pong = Some(payload.to_vec()),
            Message::Text(text) => {
                let reply: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                assert_eq!(reply["type"], "subscribed", "{reply}");
                assert_eq!(reply["req"], "split");
                subscribed = Some(reply);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        pong.as_deref(),
        Some(&b"between"[..]),
        "a ping is answered with its payload"
    );

    // Binary messages are not the protocol: an error, and the socket stays open.
    ws.send_message(Message::Binary(vec![1, 2, 3].into())).await;
    let error = ws.expect("error").await;
    assert_eq!(error["error"]["code"], "invalid_body", "{error}");
    ws.send(json!({"op": "unsubscribe", "sub": subscribed.unwrap()["sub"]}))
        .await;
    assert!(
        ws.silent_for(Duration::from_millis(200)).await,
        "unsubscribed quietly"
    );
}

#[tokio::test]
async fn oversized_invalid_and_malformed_messages_close_the_socket() {
    let app = TestApp::spawn_with(&["--ws-max-message-bytes", "1024"]).await;
    let subscriber = token("framer", "subscribe:frames");
    app.create_topic("frames", 1).await;
    let base = app.url("");
    let open = || Ws::connect(&base, &subscriber);

    // One frame over the limit.
    let mut ws = open().await;
    ws.send_text(&"x".repeat(1025)).await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(1009));

    // Fragments each under the limit that add up to more.
    let mut ws = open().await;
    ws.send_message(fragment(&[b' '; 600], Data::Text, false))
        .await;
    ws.send_message(fragment(&[b' '; 600], Data::Continue, true))
        .await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(1009));

    // Text that is not UTF-8.
    let mut ws = open().await;
    ws.send_message(fragment(&[0xff, 0xfe, b'{'], Data::Text, true))
        .await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(1007));

    // A continuation that continues nothing.
    let mut ws = open().await;
    ws.send_message(fragment(b"{}", Data::Continue, true)).await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(1002));

    // A message right at the limit is fine.
    let mut ws = open().await;
    let padded = format!(
        "{{\"op\":\"subscribe\",\"topic\":\"frames\",\"req\":\"{}\"}}",
        "p".repeat(100)
    );
    ws.send_text(&format!("{padded:<1024}")).await;
    ws.expect("subscribed").await;
}

#[tokio::test]
async fn a_client_that_answers_no_pings_is_closed_as_idle() {
    let app = TestApp::spawn_with(&[
        "--ws-ping-interval-ms",
        "100",
        "--ws-idle-timeout-ms",
        "300",
    ])
    .await;
    let mut ws = connect(&app).await;
    // Not reading means not answering the server's pings.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(1008));

    // A client that reads (and so answers pings) stays.
    let mut ws = Ws::connect(&app.url(""), &token("framer", "subscribe:frames")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    let mut pings = 0;
    while let Ok(message) = tokio::time::timeout_at(deadline, ws.next_message()).await {
        match message {
            Some(Message::Ping(_)) => pings += 1,
            other => panic!("only pings while idle, got {other:?}"),
        }
    }
    assert!(pings >= 3, "pings every 100 ms: {pings}");
}

#[tokio::test]
async fn subscriptions_per_connection_and_req_sizes_are_limited_with_errors() {
    let app = TestApp::spawn_with(&["--ws-max-subscriptions", "2"]).await;
    let mut ws = connect(&app).await;
    let first = ws.subscribe(json!({"topic": "frames"})).await;
    ws.subscribe(json!({"topic": "frames"})).await;
    ws.send(json!({"op": "subscribe", "req": 3, "topic": "frames"}))
        .await;
    let refused = ws.expect("error").await;
    assert_eq!(refused["req"], 3);
    assert_eq!(refused["error"]["code"], "invalid_argument", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 subscriptions"),
        "{refused}"
    );
    // The socket stays usable: one out, one in.
    ws.send(json!({"op": "unsubscribe", "sub": first["sub"]}))
        .await;
    ws.subscribe(json!({"topic": "frames"})).await;

    // `req` comes back on every reply, so its size is capped (256 bytes of JSON).
    ws.send(json!({"op": "unsubscribe", "req": "r".repeat(300), "sub": "none"}))
        .await;
    let refused = ws.expect("error").await;
    assert!(
        refused.get("req").is_none(),
        "an oversized req is not echoed: {refused}"
    );
    assert_eq!(refused["error"]["code"], "invalid_argument", "{refused}");
}

#[tokio::test]
async fn refused_messages_echo_their_req() {
    let app = TestApp::spawn().await;
    let mut ws = connect(&app).await;
    // An op the protocol does not know, a message without an op, and a known op with a
    // field it does not take: each answered with an `error` that carries the `req`.
    for (message, code) in [
        (json!({"op": "teleport", "req": "r-1"}), "invalid_body"),
        (json!({"req": {"n": 2}}), "invalid_body"),
        (
            json!({"op": "subscribe", "req": [3], "topic": "t", "colour": "red"}),
            "invalid_body",
        ),
    ] {
        ws.send(message.clone()).await;
        let refused = ws.expect("error").await;
        assert_eq!(refused["req"], message["req"], "{refused}");
        assert_eq!(refused["error"]["code"], code, "{refused}");
    }
    // Not an object at all: nothing to echo, still an answer.
    ws.send_text("[1, 2]").await;
    let refused = ws.expect("error").await;
    assert!(refused.get("req").is_none(), "{refused}");
}
