//! Consumer groups: membership, assignment, generations, positions and committed offsets.
//! No HTTP here. HTTP pollers use it now, WebSocket members will join the same groups.
//!
//! # Layout
//! - [`Coordinator`]: every group of the server; polls, commits, seeks, descriptions, and
//!   the background task that expires members.
//! - `state`: one group's members, generation, assignment and positions.
//! - `assignor`: the sticky, deterministic assignment.
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
//!
//! # Invariants
//! - All changes to a group happen under its lock. Commits are checked (member, generation,
//!   assignment) under it and written once it is released, so the commits of several
//!   members share one group commit of the log. A rebalance between a check and its write
//!   can let a former owner's commit land after its successor read the committed offset.
//!   Such a commit says what the former owner had processed, so at worst records are
//!   delivered again (at-least-once), never skipped.
//! - Records are read outside the lock. A poll delivers records of a partition only if,
//!   after the read, the member still owns the partition and its position has not moved
//!   meanwhile; otherwise it drops them (they will be delivered again to whoever owns the
//!   partition), so a poll never delivers a record twice within one owner's positions.
//! - Waiting polls are woken by the partitions' high-watermark channels, by their member's
//!   assignment changes, and by shutdown; never by sleeping.

mod assignor;
mod error;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, select_all};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use assignor::TopicPartition;
pub use error::GroupError;
use state::{GroupState, Member};

use crate::log::{
    CommittedOffset, EventLog, FetchRequest, GroupId, LogError, Offset, OffsetStore, PartitionId,
    StoredRecord, TopicName,
};

/// A member's id, made by the coordinator: `m-` and 32 hex digits. Ids sent back by
/// clients are parsed with [`MemberId::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
}

/// Where a member starts reading a partition the group has no usable committed offset for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffsetReset {
    /// At the high watermark: only records published from now on (Kafka's default).
    #[default]
    Latest,
    /// At the log start: everything still stored.
    Earliest,
}

/// One poll of a group member.
#[derive(Clone, Debug)]
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
#[derive(Debug)]
pub struct Polled {
    pub member: MemberId,
    pub generation: u64,
    pub assignment: Vec<TopicPartition>,
    /// Records in offset order per partition.
    pub records: Vec<(TopicName, StoredRecord)>,
}

/// A commit of offsets, by a member (fenced by its generation) or by nobody (a client that
/// assigns partitions itself, only while the group has no members).
#[derive(Clone, Debug)]
pub struct CommitRequest {
    pub member: Option<MemberId>,
    pub generation: Option<u64>,
    pub offsets: Vec<(TopicName, PartitionId, Offset)>,
}

/// Where a seek moves a topic's committed offsets.
#[derive(Clone, Debug)]
pub enum SeekTarget {
    Earliest,
    Latest,
    /// The first offset at or after this time (ms since the epoch), per partition.
    Timestamp(i64),
    /// These partitions to these offsets.
    Offsets(Vec<(PartitionId, Offset)>),
}

/// `stable` while the group has members, `empty` when only its offsets remain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupPhase {
    Stable,
    Empty,
}

#[derive(Clone, Debug)]
pub struct GroupSummary {
    pub group: GroupId,
    pub phase: GroupPhase,
    pub generation: u64,
    pub members: usize,
}

#[derive(Clone, Debug)]
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
#[derive(Clone, Debug)]
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

#[derive(Clone, Debug)]
pub struct GroupDescription {
    pub group: GroupId,
    pub phase: GroupPhase,
    pub generation: u64,
    pub members: Vec<MemberDescription>,
    pub partitions: Vec<PartitionProgress>,
}

/// One group: its state behind an async lock (commits and offset reads happen under it).
#[derive(Default)]
struct Group {
    state: tokio::sync::Mutex<GroupState>,
}

/// Every consumer group of the server.
pub struct Coordinator {
    groups: Mutex<HashMap<GroupId, Arc<Group>>>,
    log: Arc<dyn EventLog>,
    offsets: Arc<dyn OffsetStore>,
    settings: GroupSettings,
    shutdown: CancellationToken,
}

/// A partition a poll reads, from where.
struct Planned {
    partition: TopicPartition,
    from: Offset,
}

impl Coordinator {
    pub fn new(
        log: Arc<dyn EventLog>,
        offsets: Arc<dyn OffsetStore>,
        settings: GroupSettings,
        shutdown: CancellationToken,
    ) -> Coordinator {
        Coordinator {
            groups: Mutex::default(),
            log,
            offsets,
            settings,
            shutdown,
        }
    }

    /// The bounds in force.
    pub fn settings(&self) -> GroupSettings {
        self.settings
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, Arc<Group>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn group(&self, id: &GroupId) -> Arc<Group> {
        self.groups().entry(id.clone()).or_default().clone()
    }

    fn existing(&self, id: &GroupId) -> Option<Arc<Group>> {
        self.groups().get(id).cloned()
    }

    /// The partition count of each topic that exists; deleted topics are left out.
    async fn partition_counts(
        &self,
        topics: &BTreeSet<TopicName>,
    ) -> Result<BTreeMap<TopicName, u32>, LogError> {
        let mut counts = BTreeMap::new();
        for topic in topics {
            match self.log.describe_topic(topic).await {
                Ok(description) => {
                    counts.insert(topic.clone(), description.config.partitions);
                }
                Err(LogError::TopicNotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(counts)
    }

    /// Expires members and follows partition changes; rebalances when either happened (or
    /// when `force`, after a join, leave or new subscription).
    async fn settle(&self, state: &mut GroupState, force: bool) -> Result<(), LogError> {
        let expired = state.expire(Instant::now());
        let counts = self.partition_counts(&state.subscribed_topics()).await?;
        if force || !expired.is_empty() || state.counts_changed(&counts) {
            state.rebalance(counts);
        }
        Ok(())
    }

    fn session_timeout(&self, asked: Option<Duration>) -> Result<Option<Duration>, GroupError> {
        let settings = &self.settings;
        match asked {
            Some(timeout)
                if timeout < settings.min_session_timeout
                    || timeout > settings.max_session_timeout =>
            {
                Err(GroupError::Invalid(format!(
                    "session_timeout_ms must be between {} and {}",
                    settings.min_session_timeout.as_millis(),
                    settings.max_session_timeout.as_millis()
                )))
            }
            other => Ok(other),
        }
    }

    /// Polls as a member of `group`: joins when the request names no member, rebalances
    /// when needed, commits what earlier polls delivered (with `auto_commit`), then returns
    /// the records at the member's positions, waiting up to `request.wait` for some.
    pub async fn poll(&self, group: &GroupId, request: PollRequest) -> Result<Polled, GroupError> {
        let topics: BTreeSet<TopicName> = request.topics.iter().cloned().collect();
        if topics.is_empty() || topics.len() > self.settings.max_topics {
            return Err(GroupError::Invalid(format!(
                "topics must name 1 to {} topics",
                self.settings.max_topics
            )));
        }
        for topic in &topics {
            self.log.describe_topic(topic).await?;
        }
        let session = self.session_timeout(request.session_timeout)?;
        let entry = self.group(group);
        let (member, plan, mut changes) = {
            let mut state = entry.state.lock().await;
            let (now, now_ms) = (Instant::now(), now_ms());
            let member = match &request.member {
                Some(id) => {
                    self.settle(&mut state, false).await?;
                    let member =
                        state
                            .members
                            .get_mut(id)
                            .ok_or_else(|| GroupError::UnknownMember {
                                group: group.clone(),
                                member: id.clone(),
                            })?;
                    member.touch(now, now_ms);
                    if let Some(session) = session {
                        member.session_timeout = session;
                    }
                    if request.client.is_some() {
                        member.client.clone_from(&request.client);
                    }
                    if member.topics != topics {
                        member.topics = topics;
                        self.settle(&mut state, true).await?;
                    }
                    id.clone()
                }
                None => {
                    state.expire(now);
                    if state.members.len() >= self.settings.max_members {
                        return Err(GroupError::GroupFull {
                            group: group.clone(),
                            max: self.settings.max_members,
                        });
                    }
                    let id = MemberId::generate();
                    let session = session.unwrap_or(self.settings.default_session_timeout);
                    let joined = Member::new(topics, session, request.client.clone(), now, now_ms);
                    state.members.insert(id.clone(), joined);
                    self.settle(&mut state, true).await?;
                    id
                }
            };
            let delivered = if request.auto_commit {
                take_delivered(&mut state, &member)
            } else {
                Vec::new()
            };
            let plan = self.plan(group, &mut state, &member, request.reset).await?;
            let changes = state.members[&member].changes.subscribe();
            drop(state);
            if !delivered.is_empty() {
                self.offsets.commit_offsets(group, delivered).await?;
            }
            (member, plan, changes)
        };
        changes.mark_unchanged();

        let records = self.read(&plan, &request, &mut changes).await?;

        let mut state = entry.state.lock().await;
        let generation = state.generation;
        let owned = state.owned(&member);
        let Some(state_member) = state.members.get_mut(&member) else {
            return Err(GroupError::UnknownMember {
                group: group.clone(),
                member,
            });
        };
        let mut delivered = Vec::new();
        for (planned, read) in plan.iter().zip(records) {
            let still_owned = owned.contains(&planned.partition);
            let unmoved = state_member.positions.get(&planned.partition) == Some(&planned.from);
            if !(still_owned && unmoved) {
                continue;
            }
            let Some(read) = read else {
                // The position fell out of the partition's bounds (retention, a recreated
                // topic): the next poll starts it again from the committed offset or reset.
                state_member.positions.remove(&planned.partition);
                continue;
            };
            let Some(last) = read.last() else {
                continue;
            };
            let next = last.offset.next();
            state_member
                .positions
                .insert(planned.partition.clone(), next);
            state_member
                .delivered
                .insert(planned.partition.clone(), next);
            let topic = &planned.partition.0;
            delivered.extend(read.into_iter().map(|record| (topic.clone(), record)));
        }
        Ok(Polled {
            member,
            generation,
            assignment: owned,
            records: delivered,
        })
    }

    /// The member's partitions and where to read each, in the rotating order of this poll.
    /// Partitions without a position start at the committed offset, or per `reset` when
    /// there is none or it lies outside the partition's bounds.
    async fn plan(
        &self,
        group: &GroupId,
        state: &mut GroupState,
        member: &MemberId,
        reset: OffsetReset,
    ) -> Result<Vec<Planned>, GroupError> {
        let owned = state.owned(member);
        let Some(member) = state.members.get_mut(member) else {
            return Ok(Vec::new());
        };
        if owned.iter().any(|p| !member.positions.contains_key(p)) {
            let committed: BTreeMap<TopicPartition, Offset> = self
                .offsets
                .committed_offsets(group)
                .await?
                .into_iter()
                .map(|c| ((c.topic, c.partition), c.offset))
                .collect();
            for partition in &owned {
                if member.positions.contains_key(partition) {
                    continue;
                }
                let bounds = self.log.describe_topic(&partition.0).await?;
                let Some(bounds) = bounds.partitions.get(partition.1.get() as usize) else {
                    continue;
                };
                let start = match committed.get(partition) {
                    Some(offset)
                        if (bounds.log_start_offset..=bounds.high_watermark).contains(offset) =>
                    {
                        *offset
                    }
                    _ => match reset {
                        OffsetReset::Earliest => bounds.log_start_offset,
                        OffsetReset::Latest => bounds.high_watermark,
                    },
                };
                member.positions.insert(partition.clone(), start);
            }
        }
        let start = member.next_start % owned.len().max(1);
        member.next_start = member.next_start.wrapping_add(1);
        Ok(owned[start..]
            .iter()
            .chain(&owned[..start])
            .filter_map(|partition| {
                member.positions.get(partition).map(|from| Planned {
                    partition: partition.clone(),
                    from: *from,
                })
            })
            .collect())
    }

    /// Reads the planned partitions up to the request's limits, waiting for records when
    /// none is there yet. One entry per planned partition, in plan order: its records, or
    /// `None` when its position lies outside the partition's bounds.
    async fn read(
        &self,
        plan: &[Planned],
        request: &PollRequest,
        changes: &mut watch::Receiver<u64>,
    ) -> Result<Vec<Option<Vec<StoredRecord>>>, GroupError> {
        let deadline = tokio::time::Instant::now() + request.wait;
        loop {
            // Subscribed before reading, so a commit between the read and the wait wakes it.
            let mut watches = Vec::with_capacity(plan.len());
            for planned in plan {
                let (topic, partition) = &planned.partition;
                watches.push(self.log.watch_high_watermark(topic, *partition).ok());
            }
            let mut records = Vec::with_capacity(plan.len());
            let (mut count, mut bytes, mut out_of_range) = (0usize, 0usize, false);
            for planned in plan {
                let (topic, partition) = &planned.partition;
                if count >= request.max_records {
                    records.push(Some(Vec::new()));
                    continue;
                }
                let fetched = self
                    .log
                    .fetch(
                        topic,
                        *partition,
                        FetchRequest {
                            offset: Some(planned.from),
                            max_records: request.max_records - count,
                            max_bytes: request.max_bytes.saturating_sub(bytes).max(1),
                            wait: Duration::ZERO,
                        },
                    )
                    .await;
                match fetched {
                    Ok(result) => {
                        count += result.records.len();
                        bytes += result.records.iter().map(|r| r.value.len()).sum::<usize>();
                        records.push(Some(result.records));
                    }
                    Err(LogError::OffsetOutOfRange { .. }) => {
                        out_of_range = true;
                        records.push(None);
                    }
                    // Deleted meanwhile; the rebalance that follows takes it away.
                    Err(LogError::TopicNotFound(_) | LogError::PartitionNotFound { .. }) => {
                        records.push(Some(Vec::new()));
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            let now = tokio::time::Instant::now();
            if count > 0
                || out_of_range
                || now >= deadline
                || (plan.is_empty() && request.wait.is_zero())
            {
                return Ok(records);
            }
            let mut wakers: Vec<BoxFuture<'_, ()>> = watches
                .iter_mut()
                .zip(plan)
                .filter_map(|(watch, planned)| {
                    let from = planned.from;
                    watch.as_mut().map(|watch| {
                        async move {
                            let _ = watch.wait_for(|hwm| *hwm > from).await;
                        }
                        .boxed()
                    })
                })
                .collect();
            wakers.push(
                async {
                    let _ = changes.changed().await;
                }
                .boxed(),
            );
            tokio::select! {
                _ = select_all(wakers) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.shutdown.cancelled() => return Ok(records),
            }
            if changes.has_changed().unwrap_or(true) {
                // The assignment moved: answer now, with the new assignment.
                return Ok(records);
            }
        }
    }

    /// Commits offsets for a member (fenced by generation and assignment) or for nobody
    /// (only while the group has no live members).
    pub async fn commit(&self, group: &GroupId, request: CommitRequest) -> Result<(), GroupError> {
        if request.offsets.is_empty() {
            return Err(GroupError::Invalid("offsets must not be empty".into()));
        }
        let entry = self.group(group);
        let mut state = entry.state.lock().await;
        self.settle(&mut state, false).await?;
        match &request.member {
            None if !state.members.is_empty() => {
                return Err(GroupError::GroupNotEmpty {
                    group: group.clone(),
                    members: state.members.len(),
                    what: "a commit without member_id may change",
                });
            }
            None => {}
            Some(member) => {
                if !state.members.contains_key(member) {
                    return Err(GroupError::UnknownMember {
                        group: group.clone(),
                        member: member.clone(),
                    });
                }
                if request.generation != Some(state.generation) {
                    return Err(GroupError::StaleGeneration {
                        given: request.generation,
                        current: state.generation,
                    });
                }
                for (topic, partition, _) in &request.offsets {
                    if state.assignment.get(&(topic.clone(), *partition)) != Some(member) {
                        return Err(GroupError::NotAssigned {
                            topic: topic.to_string(),
                            partition: partition.get(),
                            member: member.clone(),
                        });
                    }
                }
                if let Some(live) = state.members.get_mut(member) {
                    live.touch(Instant::now(), now_ms());
                }
            }
        }
        drop(state);
        let offsets = request
            .offsets
            .into_iter()
            .map(|(topic, partition, offset)| CommittedOffset {
                topic,
                partition,
                offset,
                committed_at_ms: 0,
            })
            .collect();
        self.offsets.commit_offsets(group, offsets).await?;
        Ok(())
    }

    /// Moves the group's committed offsets of `topic`; members read on from the new offsets
    /// after their next poll. Returns the offsets committed.
    pub async fn seek(
        &self,
        group: &GroupId,
        topic: &TopicName,
        target: SeekTarget,
    ) -> Result<Vec<(PartitionId, Offset)>, GroupError> {
        let description = self.log.describe_topic(topic).await?;
        let offsets: Vec<(PartitionId, Offset)> = match target {
            SeekTarget::Earliest => description
                .partitions
                .iter()
                .map(|p| (p.partition, p.log_start_offset))
                .collect(),
            SeekTarget::Latest => description
                .partitions
                .iter()
                .map(|p| (p.partition, p.high_watermark))
                .collect(),
            SeekTarget::Timestamp(timestamp) => {
                let mut found = Vec::new();
                for p in &description.partitions {
                    let at = self
                        .log
                        .offset_for_timestamp(topic, p.partition, timestamp)
                        .await?;
                    found.push((p.partition, at.offset));
                }
                found
            }
            SeekTarget::Offsets(offsets) => {
                if offsets.is_empty() {
                    return Err(GroupError::Invalid("offsets must not be empty".into()));
                }
                offsets
            }
        };
        let entry = self.group(group);
        let mut state = entry.state.lock().await;
        let committed = offsets
            .iter()
            .map(|(partition, offset)| CommittedOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                committed_at_ms: 0,
            })
            .collect();
        self.offsets.commit_offsets(group, committed).await?;
        let moved = offsets
            .iter()
            .map(|(partition, _)| (topic.clone(), *partition))
            .collect();
        state.forget_positions(&moved);
        Ok(offsets)
    }

    /// Removes a member at once and rebalances.
    pub async fn leave(&self, group: &GroupId, member: &MemberId) -> Result<(), GroupError> {
        let unknown = || GroupError::UnknownMember {
            group: group.clone(),
            member: member.clone(),
        };
        let entry = self.existing(group).ok_or_else(unknown)?;
        let mut state = entry.state.lock().await;
        if state.members.remove(member).is_none() {
            return Err(unknown());
        }
        self.settle(&mut state, true).await?;
        Ok(())
    }

    /// Members, assignment, and per partition the committed offset, bounds and lag.
    pub async fn describe(&self, group: &GroupId) -> Result<GroupDescription, GroupError> {
        let committed = self.offsets.committed_offsets(group).await?;
        let (generation, members, assignment) = match self.existing(group) {
            Some(entry) => {
                let mut state = entry.state.lock().await;
                self.settle(&mut state, false).await?;
                let members = state
                    .members
                    .iter()
                    .map(|(id, member)| MemberDescription {
                        member: id.clone(),
                        client: member.client.clone(),
                        last_seen_ms: member.last_seen_ms,
                        session_timeout: member.session_timeout,
                        topics: member.topics.iter().cloned().collect(),
                        assignment: state.owned(id),
                    })
                    .collect::<Vec<_>>();
                (state.generation, members, state.assignment.clone())
            }
            None => (0, Vec::new(), BTreeMap::new()),
        };
        if members.is_empty() && committed.is_empty() {
            return Err(GroupError::GroupNotFound(group.clone()));
        }
        let committed: BTreeMap<TopicPartition, Offset> = committed
            .into_iter()
            .map(|c| ((c.topic, c.partition), c.offset))
            .collect();
        let partitions: BTreeSet<&TopicPartition> =
            assignment.keys().chain(committed.keys()).collect();
        let mut bounds = BTreeMap::new();
        let mut progress = Vec::new();
        for partition in partitions {
            let (topic, id) = partition;
            if !bounds.contains_key(topic) {
                let described = match self.log.describe_topic(topic).await {
                    Ok(described) => Some(described.partitions),
                    Err(LogError::TopicNotFound(_)) => None,
                    Err(err) => return Err(err.into()),
                };
                bounds.insert(topic.clone(), described);
            }
            let Some(offsets) = bounds[topic]
                .as_ref()
                .and_then(|all| all.get(id.get() as usize))
            else {
                continue;
            };
            let committed = committed.get(partition).copied();
            progress.push(PartitionProgress {
                topic: topic.clone(),
                partition: *id,
                member: assignment.get(partition).cloned(),
                committed,
                log_start_offset: offsets.log_start_offset,
                high_watermark: offsets.high_watermark,
                lag: committed.map(|c| offsets.high_watermark.distance_from(c)),
            });
        }
        Ok(GroupDescription {
            group: group.clone(),
            phase: if members.is_empty() {
                GroupPhase::Empty
            } else {
                GroupPhase::Stable
            },
            generation,
            members,
            partitions: progress,
        })
    }

    /// Every group with live members or committed offsets, sorted by name.
    pub async fn list(&self) -> Result<Vec<GroupSummary>, GroupError> {
        let mut summaries: BTreeMap<GroupId, GroupSummary> = self
            .offsets
            .offset_groups()
            .await?
            .into_iter()
            .map(|group| {
                let summary = GroupSummary {
                    group: group.clone(),
                    phase: GroupPhase::Empty,
                    generation: 0,
                    members: 0,
                };
                (group, summary)
            })
            .collect();
        let live: Vec<(GroupId, Arc<Group>)> = self
            .groups()
            .iter()
            .map(|(id, group)| (id.clone(), group.clone()))
            .collect();
        for (id, group) in live {
            let state = group.state.lock().await;
            if state.members.is_empty() {
                if let Some(summary) = summaries.get_mut(&id) {
                    summary.generation = state.generation;
                }
                continue;
            }
            summaries.insert(
                id.clone(),
                GroupSummary {
                    group: id,
                    phase: GroupPhase::Stable,
                    generation: state.generation,
                    members: state.members.len(),
                },
            );
        }
        Ok(summaries.into_values().collect())
    }

    /// Deletes an empty group's committed offsets.
    pub async fn delete(&self, group: &GroupId) -> Result<(), GroupError> {
        let entry = self.existing(group);
        let guard = match &entry {
            Some(entry) => {
                let mut state = entry.state.lock().await;
                self.settle(&mut state, false).await?;
                if !state.members.is_empty() {
                    return Err(GroupError::GroupNotEmpty {
                        group: group.clone(),
                        members: state.members.len(),
                        what: "deleting removes",
                    });
                }
                Some(state)
            }
            None => None,
        };
        let had_offsets = self.offsets.delete_offsets(group).await?;
        drop(guard);
        let known = entry.is_some();
        self.groups().remove(group);
        if !had_offsets && !known {
            return Err(GroupError::GroupNotFound(group.clone()));
        }
        Ok(())
    }

    /// Joins `group` as a member that stays connected (a WebSocket): it lives until it
    /// leaves or misses its session, kept alive by [`Coordinator::heartbeat`]. Returns its
    /// id and a receiver that changes whenever its assignment does.
    pub async fn join(
        &self,
        group: &GroupId,
        topics: Vec<TopicName>,
        client: Option<String>,
    ) -> Result<(MemberId, watch::Receiver<u64>), GroupError> {
        for topic in &topics {
            self.log.describe_topic(topic).await?;
        }
        let entry = self.group(group);
        let mut state = entry.state.lock().await;
        state.expire(Instant::now());
        if state.members.len() >= self.settings.max_members {
            return Err(GroupError::GroupFull {
                group: group.clone(),
                max: self.settings.max_members,
            });
        }
        let id = MemberId::generate();
        // A connected member leaves when its connection ends; the session is only a guard
        // against a connection task that stopped without leaving.
        let member = Member::new(
            topics.into_iter().collect(),
            self.settings.max_session_timeout,
            client,
            Instant::now(),
            now_ms(),
        );
        state.members.insert(id.clone(), member);
        self.settle(&mut state, true).await?;
        // Subscribed after the join's own rebalance: the caller reads that assignment next.
        let changes = state.members[&id].changes.subscribe();
        Ok((id, changes))
    }

    /// The member's generation and partitions, each with the offset to start it from: the
    /// committed offset, or per `reset`.
    pub async fn assignment(
        &self,
        group: &GroupId,
        member: &MemberId,
        reset: OffsetReset,
    ) -> Result<(u64, Vec<(TopicPartition, Offset)>), GroupError> {
        let unknown = || GroupError::UnknownMember {
            group: group.clone(),
            member: member.clone(),
        };
        let entry = self.existing(group).ok_or_else(unknown)?;
        let mut state = entry.state.lock().await;
        if !state.members.contains_key(member) {
            return Err(unknown());
        }
        let plan = self.plan(group, &mut state, member, reset).await?;
        let mut starts: Vec<(TopicPartition, Offset)> =
            plan.into_iter().map(|p| (p.partition, p.from)).collect();
        starts.sort();
        Ok((state.generation, starts))
    }

    /// A fresh receiver of `member`'s assignment changes.
    pub async fn changes(
        &self,
        group: &GroupId,
        member: &MemberId,
    ) -> Option<watch::Receiver<u64>> {
        let entry = self.existing(group)?;
        let state = entry.state.lock().await;
        state.members.get(member).map(|m| m.changes.subscribe())
    }

    /// Keeps a connected member alive.
    pub async fn heartbeat(&self, group: &GroupId, member: &MemberId) -> Result<(), GroupError> {
        let unknown = || GroupError::UnknownMember {
            group: group.clone(),
            member: member.clone(),
        };
        let entry = self.existing(group).ok_or_else(unknown)?;
        let mut state = entry.state.lock().await;
        let live = state.members.get_mut(member).ok_or_else(unknown)?;
        live.touch(Instant::now(), now_ms());
        Ok(())
    }

    /// Expires members whose session ran out and follows partition changes, in every group,
    /// until shutdown. Groups left with no member are dropped from memory (their committed
    /// offsets stay in the log).
    pub async fn run_maintenance(self: Arc<Self>) {
        let period = (self.settings.min_session_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let groups: Vec<(GroupId, Arc<Group>)> = self
                .groups()
                .iter()
                .map(|(id, group)| (id.clone(), group.clone()))
                .collect();
            for (id, group) in groups {
                let mut state = group.state.lock().await;
                if let Err(err) = self.settle(&mut state, false).await {
                    tracing::warn!(group = %id, %err, "group maintenance failed");
                }
                if state.members.is_empty() {
                    drop(state);
                    let mut groups = self.groups();
                    // Only if nobody joined meanwhile: the map's entry is this very group.
                    if groups
                        .get(&id)
                        .is_some_and(|current| Arc::ptr_eq(current, &group))
                        && Arc::strong_count(&group) == 2
                    {
                        groups.remove(&id);
                    }
                }
            }
        }
    }
}

/// What earlier polls delivered to `member`, for partitions it still owns, as offsets to
/// commit; forgotten here, so each delivery is committed once.
fn take_delivered(state: &mut GroupState, member: &MemberId) -> Vec<CommittedOffset> {
    let owned = state.owned(member);
    let Some(member) = state.members.get_mut(member) else {
        return Vec::new();
    };
    std::mem::take(&mut member.delivered)
        .into_iter()
        .filter(|(partition, _)| owned.contains(partition))
        .map(|((topic, partition), offset)| CommittedOffset {
            topic,
            partition,
            offset,
            committed_at_ms: 0,
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
