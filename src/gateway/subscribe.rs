//! The one subscribe-start, for WebSocket and SSE alike: where a plain subscription starts,
//! or a group membership and the partitions the group assigns it.

use super::caller::Caller;
use super::error::{ErrorCode, GatewayError};
use crate::groups::{Generation, MemberId, OffsetReset};
use crate::log::{GroupId, PartitionId, TopicName};
use crate::push::{Positions, Start};

/// What a subscription asks for.
pub struct SubscribeRequest {
    pub start: Start,
    /// Only these partitions (all when `None`); not with `group`, which assigns them.
    pub partitions: Option<Vec<PartitionId>>,
    /// Join this consumer group as a connected member.
    pub group: Option<GroupId>,
    /// Where the connection comes from, shown in the group's description.
    pub client: Option<String>,
}

/// A started subscription: its positions, and its membership when it joined a group.
pub struct Started {
    pub positions: Positions,
    pub membership: Option<Membership>,
}

/// A group subscription's membership: commits are fenced with `generation`.
pub struct Membership {
    pub group: GroupId,
    pub member: MemberId,
    pub generation: Generation,
    /// Where partitions without a committed offset start.
    pub reset: OffsetReset,
}

impl Caller {
    /// Starts a subscription of `topic`: checks `subscribe:T` (and `group:G` with a
    /// group), then resolves its positions or joins the group.
    pub async fn start_subscription(
        &self,
        topic: &TopicName,
        request: SubscribeRequest,
    ) -> Result<Started, GatewayError> {
        let subscriber = self.subscriber(topic)?;
        let invalid = |message: &str| GatewayError::new(ErrorCode::InvalidArgument, message);
        let Some(group) = request.group else {
            let positions = subscriber
                .resolve(request.partitions.as_deref(), &request.start)
                .await?;
            return Ok(Started {
                positions,
                membership: None,
            });
        };
        if request.partitions.is_some() {
            return Err(invalid("a group assigns the partitions: drop `partitions`"));
        }
        let reset = match request.start {
            Start::Latest => OffsetReset::Latest,
            Start::Earliest => OffsetReset::Earliest,
            Start::Offsets(_) | Start::Cursor(_) => {
                return Err(invalid(
                    "with `group`, `from` is `latest` or `earliest` (where members start without a committed offset)",
                ));
            }
        };
        let access = self.group(&group)?;
        let member = access.join(topic, request.client).await?;
        let assignment = match access.assignment(&member, reset).await {
            Ok(assignment) => assignment,
            Err(err) => {
                let _ = access.leave(&member).await;
                return Err(err.into());
            }
        };
        let positions = Positions::new(
            assignment
                .partitions
                .into_iter()
                .map(|((_, partition), offset)| (partition, offset))
                .collect(),
        );
        Ok(Started {
            positions,
            membership: Some(Membership {
                group,
                member,
                generation: assignment.generation,
                reset,
            }),
        })
    }
}
