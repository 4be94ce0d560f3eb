//! What one replica asks of the replica that runs a group, and the answers, as JSON over
//! the internal route. Every [`GroupCoordinator`](crate::groups::GroupCoordinator) call
//! has its [`Call`]; errors cross as [`WireError`], which rebuilds the owner's
//! [`GroupError`] so the client sees the code and message it would have seen there.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::groups::{
    Assignment, CommitRequest, Generation, GroupDescription, GroupError, GroupSummary, MemberId,
    OffsetReset, PollRequest, Polled, SeekTarget,
};
use crate::log::{
    AppendOutcome, AppendRequest, Fault, FaultKind, GroupId, LogError, Offset, PartitionId,
    TopicName,
};

/// One request to the owner of a group or an idempotency key (or, for `List`, to every
/// replica). Externally tagged: a record's value is raw JSON, which serde cannot buffer
/// through an internal tag.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    Poll {
        group: GroupId,
        request: PollRequest,
    },
    Commit {
        group: GroupId,
        request: CommitRequest,
    },
    Seek {
        group: GroupId,
        topic: TopicName,
        target: SeekTarget,
    },
    Leave {
        group: GroupId,
        member: MemberId,
    },
    Describe {
        group: GroupId,
    },
    Delete {
        group: GroupId,
    },
    /// A connected member: new (`member` `None`), or registered again under its id.
    Join {
        group: GroupId,
        member: Option<MemberId>,
        topics: Vec<TopicName>,
        client: Option<String>,
    },
    Assignment {
        group: GroupId,
        member: MemberId,
        reset: OffsetReset,
    },
    /// Waits up to `wait` for the group to pass `known`.
    Rebalanced {
        group: GroupId,
        member: MemberId,
        known: Generation,
        wait: Duration,
    },
    Heartbeat {
        group: GroupId,
        member: MemberId,
    },
    /// The groups the asked replica runs.
    List,
    /// A publish with an `Idempotency-Key`, decided by the key's owner.
    Append {
        topic: TopicName,
        request: AppendRequest,
    },
}

impl Call {
    /// What decides the owner: the group's name, or the topic and idempotency key of a
    /// publish (`None` for `List`, and for a publish without a key).
    pub fn owner_key(&self) -> Option<Vec<u8>> {
        match self {
            Call::Append { topic, request } => request
                .idempotency
                .as_ref()
                .map(|key| key_owner_key(topic, &key.key)),
            other => other
                .group()
                .map(|group| group.as_str().as_bytes().to_vec()),
        }
    }

    fn group(&self) -> Option<&GroupId> {
        match self {
            Call::Poll { group, .. }
            | Call::Commit { group, .. }
            | Call::Seek { group, .. }
            | Call::Leave { group, .. }
            | Call::Describe { group }
            | Call::Delete { group }
            | Call::Join { group, .. }
            | Call::Assignment { group, .. }
            | Call::Rebalanced { group, .. }
            | Call::Heartbeat { group, .. } => Some(group),
            Call::List | Call::Append { .. } => None,
        }
    }

    /// What the call is about, for messages.
    pub fn subject(&self) -> String {
        match (self, self.group()) {
            (_, Some(group)) => format!("consumer group '{group}'"),
            (Call::Append { topic, .. }, None) => format!("the idempotency keys of '{topic}'"),
            _ => "the list of groups".to_owned(),
        }
    }

    /// How long the owner may hold the call before answering.
    pub fn wait(&self) -> Duration {
        match self {
            Call::Poll { request, .. } => request.wait,
            Call::Rebalanced { wait, .. } => *wait,
            _ => Duration::ZERO,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Polled(Polled),
    Done,
    Offsets(Vec<(PartitionId, Offset)>),
    Description(GroupDescription),
    Member(MemberId),
    Assignment(Assignment),
    /// Whether the group moved past the generation asked about within the wait.
    Rebalanced(bool),
    Groups(Vec<GroupSummary>),
    Appended(AppendOutcome),
}

/// What an idempotency key of `topic` hashes by: a newline cannot occur in a topic name.
pub fn key_owner_key(topic: &TopicName, key: &str) -> Vec<u8> {
    format!("{topic}\n{key}").into_bytes()
}

/// The owner's [`GroupError`] on the wire, and `NotOwner`: the asked replica does not run
/// the group (any more), so the caller looks the owner up again.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum WireError {
    NotOwner,
    UnknownMember {
        group: GroupId,
        member: MemberId,
    },
    GroupNotFound {
        group: GroupId,
    },
    StaleGeneration {
        given: Option<Generation>,
        current: Generation,
    },
    NotAssigned {
        topic: TopicName,
        partition: PartitionId,
        member: MemberId,
    },
    GroupNotEmpty {
        group: GroupId,
        members: usize,
        deleting: bool,
    },
    GroupFull {
        group: GroupId,
        max: usize,
    },
    TooManyGroups {
        max: usize,
    },
    Invalid {
        message: String,
    },
    TopicNotFound {
        topic: TopicName,
    },
    PartitionNotFound {
        topic: TopicName,
        partition: PartitionId,
    },
    OffsetOutOfRange {
        offset: Offset,
        log_start_offset: Offset,
        high_watermark: Offset,
    },
    InvalidOffset {
        given: u64,
    },
    GroupInUseByKafkaConsumers {
        group: GroupId,
    },
    IdempotencyKeyReused,
    ShuttingDown,
    Unavailable {
        message: String,
    },
    ClusterUnavailable {
        message: String,
    },
    /// A fault on the owner: its message is for the operator's log.
    Fault {
        message: String,
    },
}

const DELETING: &str = "deleting removes";
const COMMITTING: &str = "a commit without member_id may change";

impl From<GroupError> for WireError {
    fn from(err: GroupError) -> WireError {
        match err {
            GroupError::Log(err) => err.into(),
            GroupError::UnknownMember { group, member } => {
                WireError::UnknownMember { group, member }
            }
            GroupError::GroupNotFound(group) => WireError::GroupNotFound { group },
            GroupError::StaleGeneration { given, current } => {
                WireError::StaleGeneration { given, current }
            }
            GroupError::NotAssigned {
                topic,
                partition,
                member,
            } => WireError::NotAssigned {
                topic,
                partition,
                member,
            },
            GroupError::GroupNotEmpty {
                group,
                members,
                what,
            } => WireError::GroupNotEmpty {
                group,
                members,
                deleting: what == DELETING,
            },
            GroupError::GroupFull { group, max } => WireError::GroupFull { group, max },
            GroupError::TooManyGroups { max } => WireError::TooManyGroups { max },
            // Member ids are parsed where the request entered; the owner never refuses one.
            err @ GroupError::InvalidMemberId { .. } => WireError::Invalid {
                message: err.to_string(),
            },
            GroupError::Invalid(message) => WireError::Invalid { message },
        }
    }
}

impl From<LogError> for WireError {
    fn from(err: LogError) -> WireError {
        match err {
            LogError::TopicNotFound(topic) => WireError::TopicNotFound { topic },
            LogError::PartitionNotFound { topic, partition } => {
                WireError::PartitionNotFound { topic, partition }
            }
            LogError::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            } => WireError::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            },
            LogError::InvalidOffset { given } => WireError::InvalidOffset { given },
            LogError::GroupInUseByKafkaConsumers(group) => {
                WireError::GroupInUseByKafkaConsumers { group }
            }
            LogError::IdempotencyKeyReused => WireError::IdempotencyKeyReused,
            LogError::ShuttingDown => WireError::ShuttingDown,
            LogError::Unavailable(message) => WireError::Unavailable { message },
            LogError::ClusterUnavailable(message) => WireError::ClusterUnavailable { message },
            LogError::InvalidArgument(message) => WireError::Invalid { message },
            other => WireError::Fault {
                message: other.to_string(),
            },
        }
    }
}

impl WireError {
    /// The error as the owner had it; `None` for `NotOwner`, which is the caller's to
    /// handle.
    pub fn into_group_error(self) -> Option<GroupError> {
        let log = |err: LogError| Some(GroupError::Log(err));
        match self {
            WireError::NotOwner => None,
            WireError::UnknownMember { group, member } => {
                Some(GroupError::UnknownMember { group, member })
            }
            WireError::GroupNotFound { group } => Some(GroupError::GroupNotFound(group)),
            WireError::StaleGeneration { given, current } => {
                Some(GroupError::StaleGeneration { given, current })
            }
            WireError::NotAssigned {
                topic,
                partition,
                member,
            } => Some(GroupError::NotAssigned {
                topic,
                partition,
                member,
            }),
            WireError::GroupNotEmpty {
                group,
                members,
                deleting,
            } => Some(GroupError::GroupNotEmpty {
                group,
                members,
                what: if deleting { DELETING } else { COMMITTING },
            }),
            WireError::GroupFull { group, max } => Some(GroupError::GroupFull { group, max }),
            WireError::TooManyGroups { max } => Some(GroupError::TooManyGroups { max }),
            WireError::Invalid { message } => Some(GroupError::Invalid(message)),
            WireError::TopicNotFound { topic } => log(LogError::TopicNotFound(topic)),
            WireError::PartitionNotFound { topic, partition } => {
                log(LogError::PartitionNotFound { topic, partition })
            }
            WireError::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            } => log(LogError::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            }),
            WireError::InvalidOffset { given } => log(LogError::InvalidOffset { given }),
            WireError::GroupInUseByKafkaConsumers { group } => {
                log(LogError::GroupInUseByKafkaConsumers(group))
            }
            WireError::IdempotencyKeyReused => log(LogError::IdempotencyKeyReused),
            WireError::ShuttingDown => log(LogError::ShuttingDown),
            WireError::Unavailable { message } => log(LogError::Unavailable(message)),
            WireError::ClusterUnavailable { message } => log(LogError::ClusterUnavailable(message)),
            WireError::Fault { message } => log(LogError::Storage(Arc::new(Fault::new(
                FaultKind::Backend,
                format!("on the replica that runs the group: {message}"),
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(err: GroupError) -> GroupError {
        let wire: WireError = err.into();
        let text = serde_json::to_string(&wire).unwrap();
        serde_json::from_str::<WireError>(&text)
            .unwrap()
            .into_group_error()
            .unwrap()
    }

    #[test]
    fn errors_cross_with_their_message() {
        let group = GroupId::parse("billing").unwrap();
        for err in [
            GroupError::StaleGeneration {
                given: Some(Generation::new(3)),
                current: Generation::new(1 << 24),
            },
            GroupError::GroupNotEmpty {
                group: group.clone(),
                members: 2,
                what: DELETING,
            },
            GroupError::GroupNotEmpty {
                group: group.clone(),
                members: 1,
                what: COMMITTING,
            },
            GroupError::Log(LogError::OffsetOutOfRange {
                offset: Offset::new(9),
                log_start_offset: Offset::new(2),
                high_watermark: Offset::new(5),
            }),
            GroupError::Log(LogError::ClusterUnavailable("down".into())),
        ] {
            let message = err.to_string();
            assert_eq!(round_trip(err).to_string(), message);
        }
    }

    #[test]
    fn calls_check_names_as_a_client_request_would() {
        let call = r#"{"describe":{"group":"../etc"}}"#;
        assert!(serde_json::from_str::<Call>(call).is_err());
        let call = r#"{"describe":{"group":"billing"}}"#;
        let call: Call = serde_json::from_str(call).unwrap();
        assert_eq!(call.owner_key().unwrap(), b"billing");
    }

    #[test]
    fn a_publish_crosses_with_its_values_verbatim() {
        let value = serde_json::value::RawValue::from_string(r#"{"n": 1.50}"#.into()).unwrap();
        let call = Call::Append {
            topic: TopicName::parse("orders").unwrap(),
            request: AppendRequest {
                records: vec![crate::log::AppendRecord {
                    partition: PartitionId::new(2),
                    key: Some("k".into()),
                    value,
                    headers: vec![("h".into(), "v".into())],
                }],
                idempotency: Some(crate::log::IdempotencyKey {
                    key: "once".into(),
                    digest: [7; 32],
                }),
            },
        };
        let text = serde_json::to_string(&call).unwrap();
        let Call::Append { request, .. } = serde_json::from_str(&text).unwrap() else {
            panic!("not an append: {text}");
        };
        assert_eq!(request.records[0].value.get(), r#"{"n": 1.50}"#);
        assert_eq!(request.idempotency.unwrap().digest, [7; 32]);
        assert_eq!(call.owner_key().unwrap(), b"orders\nonce");
    }
}
