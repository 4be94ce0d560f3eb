//! `auth`: authenticates a connection opened without a token, or replaces its token before
//! it expires. A token with fewer scopes ends the subscriptions it no longer covers.

use super::{answer, checked_req, error_message};
use crate::echo::quoted;
use crate::gateway::{Caller, ErrorCode, GatewayError};
use crate::ws::outbox::{Closing, UNAUTHORIZED};
use crate::ws::protocol::{AuthOp, Authenticated, ServerMessage};
use crate::ws::session::{Connection, Subscription};

pub(super) async fn run(connection: &mut Connection, op: AuthOp) -> Result<(), Closing> {
    let req = match checked_req(op.req) {
        Ok(req) => req,
        Err(err) => return answer(connection, None, None, Err(err)),
    };
    let caller =
        match Caller::authenticate(connection.gateway.clone(), Some(&op.token), connection.peer) {
            Ok(caller) => caller,
            Err(err) if connection.caller.is_none() => {
                // Still unauthenticated: a bad first token ends the connection.
                let _ = answer(connection, req, None, Err(err));
                return Err(Closing::with(UNAUTHORIZED, "invalid token"));
            }
            Err(err) => return answer(connection, req, None, Err(err)),
        };
    let exp = caller.expires_at().unwrap_or(u64::MAX);
    connection.caller = Some(caller);
    let ended: Vec<String> = connection
        .subscriptions
        .iter()
        .filter(|(_, sub)| !still_allowed(connection, sub))
        .map(|(id, _)| id.clone())
        .collect();
    for id in ended {
        if let Some(sub) = connection.subscriptions.remove(&id) {
            connection.leave(&sub).await;
            let err = GatewayError::new(
                ErrorCode::Forbidden,
                format!(
                    "the new token no longer allows reading topic {}; the subscription ended",
                    quoted(sub.topic.as_str())
                ),
            );
            connection
                .outbox
                .send(&error_message(None, Some(id), &err))?;
        }
    }
    connection
        .outbox
        .send(&ServerMessage::Authenticated(Authenticated { req, exp }))?;
    connection.pump().await
}

fn still_allowed(connection: &Connection, sub: &Subscription) -> bool {
    let Some(caller) = &connection.caller else {
        return false;
    };
    caller.subscriber(&sub.topic).is_ok()
        && sub
            .membership
            .as_ref()
            .is_none_or(|m| caller.group(&m.group).is_ok())
}
