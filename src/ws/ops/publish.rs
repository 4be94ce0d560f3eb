//! `publish`: the HTTP publish path over the socket, answered with `published`.

use super::{answer, caller, checked_req};
use crate::gateway::GatewayError;
use crate::log::{RecordPosition, TopicName};
use crate::records::NewRecord;
use crate::ws::outbox::Closing;
use crate::ws::protocol::{PublishOp, Published, PublishedOffset, ServerMessage};
use crate::ws::session::Connection;

pub(super) async fn run(connection: &mut Connection, op: PublishOp) -> Result<(), Closing> {
    let req = match checked_req(op.req.clone()) {
        Ok(req) => req,
        Err(err) => return answer(connection, None, None, Err(err)),
    };
    let reply = publish(connection, op).await.map(|(offsets, replayed)| {
        ServerMessage::Published(Published {
            req: req.clone(),
            offsets,
            replayed,
        })
    });
    answer(connection, req, None, reply)
}

async fn publish(
    connection: &Connection,
    op: PublishOp,
) -> Result<(Vec<PublishedOffset>, bool), GatewayError> {
    let caller = caller(connection)?;
    let topic = TopicName::parse(&op.topic)?;
    let publisher = caller.publisher(&topic)?;
    let key = op
        .idempotency_key
        .map(|key| connection.gateway.idempotency_key(key.as_bytes()))
        .transpose()?;
    let records: Vec<NewRecord> = op.records.into_iter().map(|r| r.0.into()).collect();
    let outcome = publisher
        .publish(records, key, |index| format!("records[{index}]"))
        .await?;
    let offsets = outcome
        .positions
        .iter()
        .map(|RecordPosition { partition, offset }| PublishedOffset {
            partition: partition.get(),
            offset: offset.get(),
        })
        .collect();
    Ok((offsets, outcome.replayed))
}
