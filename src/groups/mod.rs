//! Consumer groups: membership, assignment, generations, positions and committed offsets.
//! No HTTP here: HTTP pollers and WebSocket members reach groups through the
//! [`GroupCoordinator`] trait, whatever runs behind it.
//!
//! # Layout
//! - [`GroupCoordinator`] (here): what the gateway asks of groups, with the types that
//!   cross it ([`Generation`], [`Assignment`], requests and descriptions). No in-process
//!   channel crosses it, so a coordinator spread over several replicas fits behind it.
//! - [`Coordinator`] (`coordinator`): every group of this process, in memory, with its
//!   committed offsets in the log's [`OffsetStore`](crate::log::OffsetStore); split by idea:
//!   `poll` (reading as a member), `offsets` (commit and seek), `describe` (descriptions and
//!   listing, which never change a group), `members` (connected members, leaving,
//!   deleting), `maintenance` (expiry and partition changes).
//! - `state`: one group's members, generation, assignment and positions (pure).
//! - `assignor`: the sticky, deterministic assignment (pure).
//! - [`GroupError`]: what the coordinator refuses.
//!
//! # Model (Kafka's, for stateless callers)
//! A member is an id the coordinator hands out on a member's first poll. It lives while it
//! polls (or commits) within its session timeout. Joining, leaving, expiring, a changed
//! subscription and a subscribed topic gaining partitions each rebalance the group: the
//! generation rises, and every partition of the subscribed topics goes to exactly one live
//! member. A member reads its partitions from its own positions, which start at the
//! group's committed offsets. A commit must name the member and the current generation
//! and touch only the member's partitions (fencing: a member that missed a rebalance
//! cannot overwrite its successor's progress).

mod assignor;
mod coordinator;
mod describe;
mod error;
mod maintenance;
mod members;
mod offsets;
mod poll;
mod state;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use assignor::TopicPartition;
pub use coordinator::{Coordinator, Ownership};
pub use error::GroupError;

use crate::log::{GroupId, LogError, Offset, PartitionId, StoredRecord, TopicName};

/// What the gateway asks of consumer groups.
#[async_trait]
pub trait GroupCoordinator: Send + Sync + 'static {
    /// The bounds in force.
    fn settings(&self) -> GroupSettings;

    /// Polls as a member of `group`: joins when the request names no member, rebalances
    /// when needed, commits what earlier polls delivered (with `auto_commit`), then returns
    /// the records at the member's positions, waiting up to `request.wait` for some.
    async fn poll(&self, group: &GroupId, request: PollRequest) -> Result<Polled, GroupError>;

    /// Commits offsets for a member (fenced by generation and assignment) or for nobody
    /// (only while the group has no live members); each offset at most the high watermark.
    async fn commit(&self, group: &GroupId, request: CommitRequest) -> Result<(), GroupError>;

    /// Moves the group's committed offsets of `topic`; members read on from the new offsets
    /// after their next poll. Returns the offsets committed.
    async fn seek(
        &self,
        group: &GroupId,
        topic: &TopicName,
        target: SeekTarget,
    ) -> Result<Vec<(PartitionId, Offset)>, GroupError>;

    /// Removes a member at once and rebalances.
    async fn leave(&self, group: &GroupId, member: &MemberId) -> Result<(), GroupError>;

    /// Members, assignment, and per partition the committed offset, bounds and lag. Reading
    /// never changes the group (no expiry, no rebalance).
    async fn describe(&self, group: &GroupId) -> Result<GroupDescription, GroupError>;

    /// Every group with live members or committed offsets, sorted by name.
    async fn list(&self) -> Result<Vec<GroupSummary>, GroupError>;

    /// Deletes an empty group's committed offsets.
    async fn delete(&self, group: &GroupId) -> Result<(), GroupError>;

    /// Joins `group` as a member that stays connected (a WebSocket): it lives until it
    /// leaves or misses its session, kept alive by [`GroupCoordinator::heartbeat`].
    async fn join(
        &self,
        group: &GroupId,
        topics: Vec<TopicName>,
        client: Option<String>,
    ) -> Result<MemberId, GroupError>;

    /// The member's generation and partitions, each with the offset to start it from: the
    /// committed offset, or per `reset`.
    async fn assignment(
        &self,
        group: &GroupId,
        member: &MemberId,
        reset: OffsetReset,
    ) -> Result<Assignment, GroupError>;

    /// Resolves once the group has moved past generation `known` (a rebalance: the
    /// member's partitions may have changed, and commits need the new generation), or the
    /// coordinator shuts down.
    async fn rebalanced(
        &self,
        group: &GroupId,
        member: &MemberId,
        known: Generation,
    ) -> Result<(), GroupError>;

    /// Keeps a connected member alive.
    async fn heartbeat(&self, group: &GroupId, member: &MemberId) -> Result<(), GroupError>;

    /// Whether groups can be served now (a coordinator spread over replicas needs every
    /// share of the groups to have an owner).
    fn readiness(&self) -> Result<(), LogError> {
        Ok(())
    }

    /// Stops the coordinator's background work.
    async fn shutdown(&self);
}

/// A member's id, made by the coordinator: `m-` and 32 hex digits. Ids sent back by
/// clients are parsed with [`MemberId::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MemberId(String);

impl MemberId {
    /// Longest member id accepted from a client.
    pub const MAX_LEN: usize = 128;

    pub fn parse(text: &str) -> Result<MemberId, GroupError> {
        let invalid = |reason| GroupError::InvalidMemberId {
            given: text.to_owned(),
            reason,
        };
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return Err(invalid("must be 1 to 128 characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid("only A-Z, a-z, 0-9, '.', '_' and '-' are allowed"));
        }
        Ok(MemberId(text.to_owned()))
    }

    fn generate() -> MemberId {
        MemberId(format!("m-{:032x}", rand::random::<u128>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MemberId {
    type Error = GroupError;
    fn try_from(text: String) -> Result<MemberId, GroupError> {
        MemberId::parse(&text)
    }
}

impl From<MemberId> for String {
    fn from(id: MemberId) -> String {
        id.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bits of a generation that count rebalances within one ownership.
const EPOCH_SHIFT: u32 = 24;

/// A group's generation: raised by every rebalance. Commits must name the current one
/// (Kafka's ILLEGAL_GENERATION fencing).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(u64);

impl Generation {
    pub const fn new(generation: u64) -> Generation {
        Generation(generation)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The first generation an owner at `epoch` gives out (replicas sharing groups,
    /// docs/scale-out.md): above every generation of every earlier epoch, with room for
    /// 2^24 rebalances per ownership. Epochs stay far below 2^29, so generations stay
    /// below 2^53 and exact in JavaScript.
    pub const fn first_of_epoch(epoch: u64) -> Generation {
        Generation(epoch.saturating_mul(1 << EPOCH_SHIFT))
    }

    /// Rebalances since the group's current owner took it over (all of them on a lone
    /// gateway): the generation without its epoch.
    pub const fn rebalances(self) -> u64 {
        self.0 & ((1 << EPOCH_SHIFT) - 1)
    }

    fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A member's partitions in one generation, each with where the member starts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub generation: Generation,
    /// Sorted by topic and partition.
    pub partitions: Vec<(TopicPartition, Offset)>,
}

/// Bounds on groups, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct GroupSettings {
    /// A member's session when its first poll names none.
    pub default_session_timeout: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub max_members: usize,
    /// Most topics one member may subscribe to.
    pub max_topics: usize,
    /// Most live groups (members or committed offsets).
    pub max_groups: usize,
}

/// Where a member starts reading a partition the group has no usable committed offset for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetReset {
    /// At the high watermark: only records published from now on (Kafka's default).
    #[default]
    Latest,
    /// At the log start: everything still stored.
    Earliest,
}

/// One poll of a group member.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PollRequest {
    /// `None` joins the group as a new member.
    pub member: Option<MemberId>,
    pub topics: Vec<TopicName>,
    pub max_records: usize,
    /// Soft cap on payload bytes; at least one record is returned when any is there.
    pub max_bytes: usize,
    /// How long to wait for a record when none is there yet.
    pub wait: Duration,
    /// Commit what the previous polls delivered before reading on (at-least-once).
    pub auto_commit: bool,
    pub reset: OffsetReset,
    /// `None` keeps the member's session (or the default, on joining).
    pub session_timeout: Option<Duration>,
    /// Where the request came from, shown in descriptions.
    pub client: Option<String>,
}

/// What a poll returns.
#[derive(Debug, Serialize, Deserialize)]
pub struct Polled {
    pub member: MemberId,
    pub generation: Generation,
    /// The member's partitions, each with its position after this poll (the next offset
    /// it reads there: what to commit once the records are processed, and what
    /// `auto_commit` commits); `None` for a partition not read from yet.
    pub assignment: Vec<(TopicPartition, Option<Offset>)>,
    /// Records in offset order per partition.
    pub records: Vec<(TopicName, StoredRecord)>,
}

/// A commit of offsets, by a member (fenced by its generation) or by nobody (a client that
/// assigns partitions itself, only while the group has no members).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommitRequest {
    pub member: Option<MemberId>,
    pub generation: Option<Generation>,
    pub offsets: Vec<(TopicName, PartitionId, Offset)>,
}

/// Where a seek moves a topic's committed offsets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SeekTarget {
    Earliest,
    Latest,
    /// The first offset at or after this time (ms since the epoch), per partition.
    Timestamp(i64),
    /// These partitions to these offsets.
    Offsets(Vec<(PartitionId, Offset)>),
}

/// `stable` while the group has members, `empty` when only its offsets remain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupPhase {
    Stable,
    Empty,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group: GroupId,
    pub phase: GroupPhase,
    pub generation: Generation,
    pub members: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberDescription {
    pub member: MemberId,
    pub client: Option<String>,
    /// Milliseconds since the epoch.
    pub last_seen_ms: i64,
    pub session_timeout: Duration,
    pub topics: Vec<TopicName>,
    pub assignment: Vec<TopicPartition>,
}

/// One partition of a group: who reads it, what is committed, how far behind it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartitionProgress {
    pub topic: TopicName,
    pub partition: PartitionId,
    pub member: Option<MemberId>,
    pub committed: Option<Offset>,
    pub log_start_offset: Offset,
    pub high_watermark: Offset,
    /// High watermark minus committed offset; `None` without a committed offset.
    pub lag: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupDescription {
    pub group: GroupId,
    pub phase: GroupPhase,
    pub generation: Generation,
    pub members: Vec<MemberDescription>,
    pub partitions: Vec<PartitionProgress>,
}
