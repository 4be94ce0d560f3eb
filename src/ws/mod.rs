//! WebSocket: subscriptions (plain and consumer-group), publish, commit and auth over one
//! connection, with the JSON protocol of [`protocol`]. The route (`GET /v1/ws`: origin
//! check, token from the request) is `http::push`; it hands the upgrade to [`open`].
//!
//! # Layout
//! - [`open`] (here): accepts the upgrade and starts the connection's session.
//! - `frames`: RFC 6455 frames over actix-http's codec; the 101 response's body pulls the
//!   connection's queue.
//! - `outbox`: the connection's sending side, bounded in bytes, and why a connection ends.
//! - `session`: one connection's loop: messages, wake-ups, pings, expiry, delivery.
//! - `ops`: one file per client op (`subscribe`, `unsubscribe`, `publish`, `commit`,
//!   `auth`), each answering with its reply or an `error` that echoes `req`.
//! - [`protocol`]: the messages; [`asyncapi`]: the document generated from them.
//!
//! # Flow control
//! Each connection has a byte budget for what is queued to it (`--ws-outbound-bytes`); the
//! HTTP dispatcher takes from the queue only as fast as the socket accepts. Subscriptions
//! produce frames only while the queue is under budget, from their own positions, out of
//! the shared cache of encoded records: a slow client lags, it does not make the server
//! buffer. A client whose queue stays full for `--ws-slow-consumer-ms` is closed with 4008
//! "slow consumer"; nobody else waits for it. Whatever the reason of a close the server
//! starts, the client has `--ws-close-timeout-ms` to take it; then its socket is dropped
//! (`http::server`), read or not.
//!
//! # Close codes
//! 1000 normal, 1001 server shutting down, 1002 a frame that breaks RFC 6455, 1007 text
//! that is not UTF-8, 1008 idle, 1009 message too big, 4001 authentication missing,
//! invalid or expired, 4008 slow consumer.

pub mod asyncapi;
pub(crate) mod frames;
mod ops;
mod outbox;
pub mod protocol;
mod session;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::gateway::{Caller, Gateway};

/// Accepts a WebSocket upgrade and runs the connection in a task of its own. `caller` is
/// `None` when the request carried no token: then the first message must be `auth`.
/// `closing` is called once the close frame is queued, so that the connection ends even
/// if the client never reads it. An error says why the request is no WebSocket upgrade.
pub fn open(
    request: &HttpRequest,
    payload: web::Payload,
    gateway: Arc<Gateway>,
    caller: Option<Caller>,
    client: Option<String>,
    closing: impl FnOnce() + 'static,
) -> Result<HttpResponse, String> {
    let (response, reader, writer) =
        frames::accept(request, payload, gateway.push_limits.ws_max_message_bytes)
            .map_err(|err| err.to_string())?;
    let peer = request.peer_addr().map(|addr| addr.ip());
    actix_web::rt::spawn(async move {
        session::run(gateway, caller, client, peer, reader, writer).await;
        closing();
    });
    Ok(response)
}
