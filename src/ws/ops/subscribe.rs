//! `subscribe`: starts a subscription (plain, or as a member of a consumer group) through
//! the gateway's one subscribe-start, answered with `subscribed` (and, for a group, its
//! first `assignment`), then delivers what is there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{answer, caller, checked_req};
use crate::echo::quoted;
use crate::gateway::{ErrorCode, GatewayError, SubscribeRequest};
use crate::log::{GroupId, Offset, PartitionId, TopicName};
use crate::metrics::Open;
use crate::push::{Positions, Start};
use crate::ws::outbox::Closing;
use crate::ws::protocol::{
    Assignment, FromNamed, ServerMessage, StartFrom, SubscribeOp, Subscribed,
};
use crate::ws::session::{Connection, Subscription, spawn_watcher};

pub(super) async fn run(connection: &mut Connection, op: SubscribeOp) -> Result<(), Closing> {
    let req = match checked_req(op.req.clone()) {
        Ok(req) => req,
        Err(err) => return answer(connection, None, None, Err(err)),
    };
    match subscribe(connection, op).await {
        Ok(mut subscribed) => {
            subscribed.req = req;
            let id = subscribed.sub.clone();
            connection
                .outbox
                .send(&ServerMessage::Subscribed(subscribed))?;
            let sub = &connection.subscriptions[&id];
            if let Some(membership) = &sub.membership {
                let assignment = ServerMessage::Assignment(Assignment {
                    sub: id,
                    generation: membership.generation.get(),
                    partitions: sub.positions.partitions().map(PartitionId::get).collect(),
                });
                connection.outbox.send(&assignment)?;
            }
            connection.pump().await
        }
        Err(err) => answer(connection, req, None, Err(err)),
    }
}

/// Where a subscription starts, as the protocol's `from` says.
fn start(from: Option<StartFrom>) -> Result<Start, GatewayError> {
    let invalid = |message: String| GatewayError::new(ErrorCode::InvalidArgument, message);
    Ok(match from {
        None | Some(StartFrom::Named(FromNamed::Latest)) => Start::Latest,
        Some(StartFrom::Named(FromNamed::Earliest)) => Start::Earliest,
        Some(StartFrom::Offsets(offsets)) => {
            let mut parsed = BTreeMap::new();
            for (partition, offset) in offsets.offsets {
                let partition = partition.parse::<u32>().map_err(|_| {
                    invalid(format!("partition {} is not a number", quoted(&partition)))
                })?;
                parsed.insert(PartitionId::new(partition), Offset::parse(offset)?);
            }
            Start::Offsets(parsed)
        }
        Some(StartFrom::Cursor(cursor)) => Start::Cursor(
            Positions::parse_cursor(&cursor.cursor).map_err(|err| invalid(err.to_string()))?,
        ),
    })
}

async fn subscribe(
    connection: &mut Connection,
    op: SubscribeOp,
) -> Result<Subscribed, GatewayError> {
    let limit = connection.gateway.push_limits.ws_max_subscriptions;
    if connection.subscriptions.len() >= limit {
        return Err(GatewayError::new(
            ErrorCode::InvalidArgument,
            format!("a connection holds at most {limit} subscriptions (--ws-max-subscriptions)"),
        ));
    }
    let caller = caller(connection)?;
    let topic = TopicName::parse(&op.topic)?;
    let request = SubscribeRequest {
        start: start(op.from)?,
        partitions: op
            .partitions
            .map(|list| list.into_iter().map(PartitionId::new).collect()),
        group: op.group.as_deref().map(GroupId::parse).transpose()?,
        client: connection.client.clone(),
    };
    let started = caller.start_subscription(&topic, request).await?;
    let subscriber = caller.subscriber(&topic)?;
    let watches = subscriber.watches(&started.positions).await;
    let rebalanced = Arc::new(AtomicBool::new(false));
    let rebalance = match &started.membership {
        Some(m) => Some((
            Box::pin(caller.group(&m.group)?.rebalanced(&m.member, m.generation)) as _,
            rebalanced.clone(),
        )),
        None => None,
    };
    let id = format!("s{}", connection.next_id);
    connection.next_id += 1;
    let subscribed = Subscribed {
        req: None,
        sub: id.clone(),
        topic: topic.to_string(),
        assignment: started
            .positions
            .partitions()
            .map(PartitionId::get)
            .collect(),
        cursor: started.positions.cursor(),
    };
    let watcher = spawn_watcher(watches, rebalance, connection.wake.clone());
    let counted = Open::new(&connection.gateway.metrics.push.ws_subscriptions);
    connection.subscriptions.insert(
        id,
        Box::new(Subscription {
            topic,
            positions: started.positions,
            rotation: 0,
            membership: started.membership,
            rebalanced,
            watcher,
            _counted: counted,
        }),
    );
    Ok(subscribed)
}
