//! The client ops, one file each. Every op is answered: with its reply, or with an `error`
//! that echoes the op's `req` (and `sub`, for ops on a subscription).

mod auth;
mod commit;
mod publish;
mod subscribe;
mod unsubscribe;

use serde_json::Value;

use super::outbox::Closing;
use super::protocol::{ClientMessage, ErrorDetail, ErrorMessage, MAX_REQ_BYTES, ServerMessage};
use super::session::Connection;
use crate::auth::AuthError;
use crate::gateway::{Caller, ErrorCode, GatewayError};
use crate::push::Gap;

/// Runs one text message of the client.
pub(super) async fn dispatch(connection: &mut Connection, text: &str) -> Result<(), Closing> {
    let message = match ClientMessage::parse(text) {
        Ok(message) => message,
        Err(err) => {
            let refusal = GatewayError::new(
                ErrorCode::InvalidBody,
                format!("not a protocol message: {}", err.message),
            );
            let req = checked_req(err.req).unwrap_or(None);
            return connection.outbox.send(&error_message(req, None, &refusal));
        }
    };
    if let Some(caller) = &connection.caller
        && let Err(refusal) = caller.charge_request()
    {
        let req = checked_req(message.req().cloned()).unwrap_or(None);
        return connection.outbox.send(&error_message(
            req,
            message.sub().map(str::to_owned),
            &refusal,
        ));
    }
    match message {
        ClientMessage::Auth(op) => auth::run(connection, op).await,
        ClientMessage::Subscribe(op) => subscribe::run(connection, op).await,
        ClientMessage::Unsubscribe(op) => unsubscribe::run(connection, op).await,
        ClientMessage::Publish(op) => publish::run(connection, op).await,
        ClientMessage::Commit(op) => commit::run(connection, op).await,
    }
}

/// The connection's caller; before the first `auth`, a 401-like refusal.
fn caller(connection: &Connection) -> Result<&Caller, GatewayError> {
    connection
        .caller
        .as_ref()
        .ok_or(GatewayError::Unauthorized(AuthError::Missing))
}

/// `req` as echoed: refused when longer than [`MAX_REQ_BYTES`] as JSON.
fn checked_req(req: Option<Value>) -> Result<Option<Value>, GatewayError> {
    match req {
        Some(req) if req.to_string().len() > MAX_REQ_BYTES => Err(GatewayError::new(
            ErrorCode::InvalidArgument,
            format!("req is longer than {MAX_REQ_BYTES} bytes of JSON"),
        )),
        other => Ok(other),
    }
}

/// Replies with `reply`'s result, or with an `error` echoing `req` and `sub`.
fn answer(
    connection: &Connection,
    req: Option<Value>,
    sub: Option<String>,
    reply: Result<ServerMessage, GatewayError>,
) -> Result<(), Closing> {
    match reply {
        Ok(message) => connection.outbox.send(&message),
        Err(err) => connection.outbox.send(&error_message(req, sub, &err)),
    }
}

/// An `error` message for `err`, with the code and bounds every transport gives it.
pub(super) fn error_message(
    req: Option<Value>,
    sub: Option<String>,
    err: &GatewayError,
) -> ServerMessage {
    let body = err.body();
    ServerMessage::Error(ErrorMessage {
        req,
        sub,
        error: ErrorDetail {
            code: body.code.as_str().to_owned(),
            message: body.message,
            partition: None,
            log_start_offset: body.log_start_offset,
            high_watermark: body.high_watermark,
            retry_after_ms: body.retry_after_ms,
        },
    })
}

/// The `error` telling a subscription that its position was outside the log, and where
/// delivery goes on.
pub(super) fn gap_message(sub: &str, gap: &Gap) -> ServerMessage {
    ServerMessage::Error(ErrorMessage {
        req: None,
        sub: Some(sub.to_owned()),
        error: ErrorDetail {
            code: ErrorCode::OffsetOutOfRange.as_str().to_owned(),
            message: format!("{gap}; delivery goes on from {}", gap.log_start_offset),
            partition: Some(gap.partition.get()),
            log_start_offset: Some(gap.log_start_offset.get()),
            high_watermark: Some(gap.high_watermark.get()),
            retry_after_ms: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Offset, PartitionId};

    #[test]
    fn long_reqs_are_refused_short_ones_echoed() {
        assert_eq!(checked_req(None).unwrap(), None);
        let short = Value::from("abc");
        assert_eq!(checked_req(Some(short.clone())).unwrap(), Some(short));
        let long = Value::from("x".repeat(MAX_REQ_BYTES));
        assert!(checked_req(Some(long)).is_err());
    }

    #[test]
    fn gaps_name_the_partition_and_where_delivery_goes_on() {
        let gap = Gap {
            partition: PartitionId::new(2),
            position: Offset::new(3),
            log_start_offset: Offset::new(10),
            high_watermark: Offset::new(20),
        };
        let message = serde_json::to_value(gap_message("s1", &gap)).unwrap();
        assert_eq!(message["type"], "error");
        assert_eq!(message["sub"], "s1");
        assert_eq!(message["error"]["code"], "offset_out_of_range");
        assert_eq!(message["error"]["partition"], 2);
        assert_eq!(message["error"]["log_start_offset"], 10);
        assert_eq!(message["error"]["high_watermark"], 20);
        assert!(
            message["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with("delivery goes on from 10")
        );
    }
}
