//! `unsubscribe`: ends a subscription; a group subscription leaves its group at once.

use super::{answer, checked_req};
use crate::echo::quoted;
use crate::gateway::{ErrorCode, GatewayError};
use crate::ws::outbox::Closing;
use crate::ws::protocol::UnsubscribeOp;
use crate::ws::session::Connection;

pub(super) async fn run(connection: &mut Connection, op: UnsubscribeOp) -> Result<(), Closing> {
    let req = match checked_req(op.req) {
        Ok(req) => req,
        Err(err) => return answer(connection, None, Some(op.sub), Err(err)),
    };
    match connection.subscriptions.remove(&op.sub) {
        Some(sub) => {
            connection.leave(&sub).await;
            Ok(())
        }
        None => {
            let err = GatewayError::new(
                ErrorCode::NotFound,
                format!("no subscription {}", quoted(&op.sub)),
            );
            answer(connection, req, Some(op.sub), Err(err))
        }
    }
}
