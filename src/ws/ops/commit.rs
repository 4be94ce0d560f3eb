//! `commit`: a group subscription commits offsets of its partitions, fenced by the
//! generation of its last `assignment`; answered with `committed`.

use super::{answer, caller, checked_req};
use crate::echo::quoted;
use crate::gateway::{ErrorCode, GatewayError};
use crate::groups::CommitRequest;
use crate::log::{Offset, PartitionId};
use crate::ws::outbox::Closing;
use crate::ws::protocol::{CommitOp, Committed, ServerMessage};
use crate::ws::session::Connection;

pub(super) async fn run(connection: &mut Connection, op: CommitOp) -> Result<(), Closing> {
    let req = match checked_req(op.req.clone()) {
        Ok(req) => req,
        Err(err) => return answer(connection, None, Some(op.sub), Err(err)),
    };
    let sub = op.sub.clone();
    let reply = commit(connection, op).await.map(|()| {
        ServerMessage::Committed(Committed {
            req: req.clone(),
            sub: sub.clone(),
        })
    });
    answer(connection, req, Some(sub), reply)
}

async fn commit(connection: &Connection, op: CommitOp) -> Result<(), GatewayError> {
    let caller = caller(connection)?;
    let sub = connection.subscriptions.get(&op.sub).ok_or_else(|| {
        GatewayError::new(
            ErrorCode::NotFound,
            format!("no subscription {}", quoted(&op.sub)),
        )
    })?;
    let membership = sub.membership.as_ref().ok_or_else(|| {
        GatewayError::new(
            ErrorCode::InvalidArgument,
            "only a group subscription commits offsets",
        )
    })?;
    let mut offsets = Vec::with_capacity(op.offsets.len());
    for o in &op.offsets {
        offsets.push((
            sub.topic.clone(),
            PartitionId::new(o.partition),
            Offset::parse(o.offset)?,
        ));
    }
    caller
        .group(&membership.group)?
        .commit(CommitRequest {
            member: Some(membership.member.clone()),
            generation: Some(membership.generation),
            offsets,
        })
        .await
}
