//! A WebSocket test client speaking the JSON protocol.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest wait for one expected message.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Why a connection attempt failed: the HTTP status of a refused upgrade.
pub fn refused_status(err: &Error) -> Option<u16> {
    match err {
        Error::Http(response) => Some(response.status().as_u16()),
        _ => None,
    }
}

impl Ws {
    /// Opens `ws://…/v1/ws{query}` with an optional bearer token and `Origin`.
    pub async fn open(
        base_url: &str,
        query: &str,
        token: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Ws, Error> {
        let url = format!("{}/v1/ws{query}", base_url.replace("http://", "ws://"));
        let mut request = url.into_client_request()?;
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
            request.headers_mut().insert("authorization", value);
        }
        if let Some(origin) = origin {
            let value = HeaderValue::from_str(origin).expect("header");
            request.headers_mut().insert("origin", value);
        }
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Ws { stream })
    }

    /// An unauthenticated client whose socket takes at most about `receive_buffer` bytes
    /// while it reads nothing: the kernel's receive autotuning (up to tens of MiB) would
    /// otherwise hide a client that stopped reading for as long as it has room.
    pub async fn open_with_receive_buffer(base_url: &str, receive_buffer: u32) -> Ws {
        let address: std::net::SocketAddr = base_url
            .trim_start_matches("http://")
            .parse()
            .expect("a loopback address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(receive_buffer)
            .expect("receive buffer");
        let tcp = socket.connect(address).await.expect("connects");
        let url = format!("ws://{address}/v1/ws");
        let (stream, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
            .await
            .expect("WebSocket opens");
        Ws { stream }
    }

    /// [`Ws::open`] with a token, asserting it opens.
    pub async fn connect(base_url: &str, token: &str) -> Ws {
        Ws::open(base_url, "", Some(token), None)
            .await
            .expect("WebSocket opens")
    }

    pub async fn send(&mut self, message: Value) {
        self.stream
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    /// Sends any message, raw frames included.
    pub async fn send_message(&mut self, message: Message) {
        self.stream.send(message).await.expect("send");
    }

    /// The next message of any kind, pings and pongs included (`None` once closed).
    pub async fn next_message(&mut self) -> Option<Message> {
        tokio::time::timeout(WAIT, self.stream.next())
            .await
            .expect("a message within the wait")
            .and_then(Result::ok)
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    /// The next protocol message; `Err` with the close frame when the server closed.
    pub async fn next(&mut self) -> Result<Value, Option<CloseFrame>> {
        loop {
            let message = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a message within the wait");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text)
                        .unwrap_or_else(|err| panic!("not JSON ({err}): {text}")));
                }
                Some(Ok(Message::Close(frame))) => return Err(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// The next message if one arrives within `wait`.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Result<Value, Option<CloseFrame>>> {
        loop {
            let message = tokio::time::timeout(wait, self.stream.next()).await.ok()?;
            return Some(match message {
                Some(Ok(Message::Text(text))) => Ok(serde_json::from_str(&text)
                    .unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))),
                Some(Ok(Message::Close(frame))) => Err(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Err(None),
            });
        }
    }

    /// The next message, which must be of `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let message = self
            .next()
            .await
            .unwrap_or_else(|close| panic!("closed ({close:?}) while waiting for {kind}"));
        assert_eq!(message["type"], kind, "{message}");
        message
    }

    /// Subscribes with `fields` (topic, from, group, …) and returns the `subscribed` reply.
    pub async fn subscribe(&mut self, fields: Value) -> Value {
        let mut message = fields;
        message["op"] = "subscribe".into();
        self.send(message).await;
        self.expect("subscribed").await
    }

    /// Reads `records` messages until `count` records arrived; returns them and the last
    /// cursor. Other message types fail the test.
    pub async fn records(&mut self, count: usize) -> (Vec<Value>, String) {
        let mut records = Vec::new();
        let mut cursor = String::new();
        while records.len() < count {
            let message = self.expect("records").await;
            records.extend(
                message["records"]
                    .as_array()
                    .expect("records")
                    .iter()
                    .cloned(),
            );
            cursor = message["cursor"].as_str().expect("cursor").to_owned();
        }
        (records, cursor)
    }

    /// Whether anything arrives within `wait`.
    pub async fn silent_for(&mut self, wait: Duration) -> bool {
        loop {
            match tokio::time::timeout(wait, self.stream.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(_) => return false,
            }
        }
    }

    /// Waits for the server to close the connection and returns its close code.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            match next {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
