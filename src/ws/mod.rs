//! WebSocket: subscriptions (plain and consumer-group), publish, commit and auth over one
//! connection, with the JSON protocol of [`protocol`].
//!
//! # Layout
//! - [`websocket`]: the `GET /v1/ws` handler: origin check, token (header or
//!   `?access_token=`; or the first message), upgrade.
//! - `session`: one connection: the reader loop and the subscriptions.
//! - `frames`: RFC 6455 frames over actix-http's codec; the 101 response's body pulls the
//!   connection's queue.
//! - [`protocol`]: the messages.
//!
//! # Flow control
//! Each connection has a byte budget for what is queued to it (`--ws-outbound-bytes`); the
//! HTTP dispatcher takes from the queue only as fast as the socket accepts. Subscriptions produce frames only while the queue is under
//! budget, from their own positions, out of the log's shared encoded batches: a slow client
//! lags, it does not make the server buffer. A client whose queue stays full for
//! `--ws-slow-consumer-ms` is closed with 4008 "slow consumer"; nobody else waits for it.
//!
//! # Close codes
//! 1000 normal, 1001 server shutting down, 1002 a frame that breaks RFC 6455, 1007 text
//! that is not UTF-8, 1008 idle, 1009 message too big, 4001 authentication missing, invalid or expired, 4008 slow consumer.

pub mod asyncapi;
mod frames;
pub mod protocol;
mod session;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};

use crate::http::{ApiError, ErrorBody, ErrorCode};
use crate::http::{AppState, Caller};

/// Opens a WebSocket (RFC 6455 upgrade) speaking the JSON protocol described in
/// `openapi/asyncapi.json`.
#[utoipa::path(
    tag = "push",
    params(("access_token" = Option<String>, Query, description = "The token, for browsers (which cannot set headers on a WebSocket); or send an `auth` message first")),
    responses(
        (status = 101, description = "Switching protocols: the WebSocket is open"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 401, description = "The token in the request does not verify", body = ErrorBody),
        (status = 403, description = "The page's origin is not allowed (--allowed-origins)", body = ErrorBody),
    )
)]
#[get("/v1/ws")]
pub async fn websocket(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !state.origin_allowed(origin, host) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "origin {} may not open WebSockets here (--allowed-origins)",
                    crate::echo::quoted(origin)
                ),
            ));
        }
    }
    let caller = Caller::from_request_if_any(&request)?;
    let client = request.connection_info().peer_addr().map(str::to_owned);
    let (response, reader, writer) =
        frames::accept(&request, payload, state.push.ws_max_message_bytes).map_err(|err| {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("not a WebSocket upgrade: {err}"),
            )
        })?;
    actix_web::rt::spawn(session::run(state, caller, client, reader, writer));
    Ok(response)
}
