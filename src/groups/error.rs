use thiserror::Error;

use super::{Generation, MemberId};
use crate::echo::quoted;
use crate::log::{GroupId, LogError, PartitionId, TopicName};

/// Everything the group coordinator can refuse or fail at; the gateway gives each its code.
#[derive(Debug, Error)]
pub enum GroupError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("invalid member id {}: {reason}", quoted(.given))]
    InvalidMemberId { given: String, reason: &'static str },
    #[error(
        "member {member} is not in group '{group}' (its session may have expired, or it left); \
         poll without member_id to join again"
    )]
    UnknownMember { group: GroupId, member: MemberId },
    #[error("consumer group '{0}' does not exist")]
    GroupNotFound(GroupId),
    /// Kafka's ILLEGAL_GENERATION: the member acts on an assignment that has changed.
    #[error(
        "generation {} is stale: the group is at generation {current}; poll to learn the new assignment",
        .given.map_or("(none)".to_owned(), |g| g.to_string())
    )]
    StaleGeneration {
        given: Option<Generation>,
        current: Generation,
    },
    #[error("partition {topic}/{partition} is not assigned to member {member}")]
    NotAssigned {
        topic: TopicName,
        partition: PartitionId,
        member: MemberId,
    },
    /// Offsets without a member (manual assignment), or deleting the group, while members
    /// are alive: they own the offsets now.
    #[error("consumer group '{group}' has {members} live members; {what} only an empty group")]
    GroupNotEmpty {
        group: GroupId,
        members: usize,
        what: &'static str,
    },
    #[error("consumer group '{group}' already has {max} members (--max-group-members)")]
    GroupFull { group: GroupId, max: usize },
    #[error(
        "the server already has {max} live consumer groups (--max-groups); delete groups no longer used"
    )]
    TooManyGroups { max: usize },
    #[error("{0}")]
    Invalid(String),
}
