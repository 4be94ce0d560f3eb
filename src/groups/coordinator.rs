//! [`Coordinator`]: every consumer group of this process, in memory, with committed offsets
//! in the log's [`OffsetStore`]. The operations live beside it, one file per idea; this
//! file holds what they share and the [`GroupCoordinator`] implementation.
//!
//! # Invariants
//! - All changes to a group happen under its lock, and nothing under the lock waits for the
//!   log: partition counts come from `counts`, refreshed before the lock is taken (and by
//!   maintenance), and committed offsets and bounds are read with the lock released. So a
//!   remote backend's round trips never hold a group up.
//! - Commits are checked (member, generation, assignment) under the lock and written once
//!   it is released, so the commits of several members share one group commit of the log.
//!   A rebalance between a check and its write can let a former owner's commit land after
//!   its successor read the committed offset. Such a commit says what the former owner had
//!   processed, so at worst records are delivered again (at-least-once), never skipped.
//! - Records are read outside the lock. A poll delivers records of a partition only if,
//!   after the read, the member still owns the partition and its position has not moved
//!   meanwhile; otherwise it drops them (they will be delivered again to whoever owns the
//!   partition), so a poll never delivers a record twice within one owner's positions.
//! - Waiting polls are woken by the partitions' high-watermark channels, by their member's
//!   partition changes, and by shutdown; never by sleeping.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::state::GroupState;
use super::{
    Assignment, CommitRequest, Generation, GroupCoordinator, GroupDescription, GroupError,
    GroupSettings, GroupSummary, MemberId, OffsetReset, PollRequest, Polled, SeekTarget,
};
use crate::log::{EventLog, GroupId, LogError, Offset, OffsetStore, PartitionId, TopicName};

/// One group: its state behind an async lock, and its generation as a channel, so that
/// connected members wait for rebalances without taking the lock.
pub(super) struct Group {
    pub state: tokio::sync::Mutex<GroupState>,
    pub generation: watch::Sender<Generation>,
    /// Auto-commits share it and a seek holds it alone, so that an auto-commit of what was
    /// delivered before a seek never lands after the seek's offsets and undoes them.
    pub commits: tokio::sync::RwLock<()>,
}

impl Group {
    fn starting_at(generation: Generation) -> Group {
        Group {
            state: tokio::sync::Mutex::new(GroupState {
                generation,
                ..GroupState::default()
            }),
            generation: watch::Sender::new(generation),
            commits: tokio::sync::RwLock::new(()),
        }
    }
}

/// How a coordinator that runs some groups on behalf of a cluster of replicas starts: its
/// generations above those of every earlier owner, and for a while adopting the members
/// an earlier owner knew, under their ids.
#[derive(Clone, Copy, Debug)]
pub struct Ownership {
    /// The generation a group starts at (and so the floor of every generation given out).
    pub first_generation: Generation,
    /// For how long after the start a request naming an unknown member adds it under
    /// that id instead of refusing it: the members of the previous owner come back within
    /// their session.
    pub adopt_for: Duration,
}

/// Every consumer group of this process.
pub struct Coordinator {
    groups: Mutex<HashMap<GroupId, Arc<Group>>>,
    pub(super) log: Arc<dyn EventLog>,
    pub(super) offsets: Arc<dyn OffsetStore>,
    pub(super) settings: GroupSettings,
    pub(super) shutdown: CancellationToken,
    /// Partition counts of the topics members subscribe to, as last read from the log
    /// (outside any group lock); a topic the log no longer has is absent.
    counts: Mutex<HashMap<TopicName, u32>>,
    maintenance: Mutex<Option<JoinHandle<()>>>,
    first_generation: Generation,
    adopt_until: Option<Instant>,
}

impl Coordinator {
    /// A coordinator over `log` and `offsets`, with its maintenance task (member expiry,
    /// partition changes) running until `shutdown`; call within a Tokio runtime.
    pub fn start(
        log: Arc<dyn EventLog>,
        offsets: Arc<dyn OffsetStore>,
        settings: GroupSettings,
        shutdown: CancellationToken,
    ) -> Arc<Coordinator> {
        let alone = Ownership {
            first_generation: Generation::default(),
            adopt_for: Duration::ZERO,
        };
        Coordinator::start_owning(log, offsets, settings, shutdown, alone)
    }

    /// As [`Coordinator::start`], for groups this replica runs for a cluster (`ownership`).
    pub fn start_owning(
        log: Arc<dyn EventLog>,
        offsets: Arc<dyn OffsetStore>,
        settings: GroupSettings,
        shutdown: CancellationToken,
        ownership: Ownership,
    ) -> Arc<Coordinator> {
        let coordinator = Arc::new(Coordinator {
            groups: Mutex::default(),
            log,
            offsets,
            settings,
            shutdown,
            counts: Mutex::default(),
            maintenance: Mutex::new(None),
            first_generation: ownership.first_generation,
            adopt_until: Instant::now().checked_add(ownership.adopt_for),
        });
        let task = tokio::spawn(coordinator.clone().run_maintenance());
        *lock(&coordinator.maintenance) = Some(task);
        coordinator
    }

    pub(super) fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, Arc<Group>>> {
        lock(&self.groups)
    }

    /// The group, made if it is new.
    pub(super) fn group(&self, id: &GroupId) -> Arc<Group> {
        let first = self.first_generation;
        self.groups()
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Group::starting_at(first)))
            .clone()
    }

    /// Refuses a group that would be one more than `--max-groups` live groups (with members
    /// or committed offsets); one that is live already passes. Two groups created at the
    /// same moment may both pass the last free place.
    pub(super) async fn admit_group(&self, id: &GroupId) -> Result<(), GroupError> {
        if self.groups().contains_key(id) {
            return Ok(());
        }
        let stored: HashSet<GroupId> = self.offsets.offset_groups().await?.into_iter().collect();
        if stored.contains(id) {
            return Ok(());
        }
        let groups = self.groups();
        if groups.contains_key(id) {
            return Ok(());
        }
        // An empty group waiting for maintenance to drop it is not live; one whose state
        // is busy is.
        let with_members = groups
            .iter()
            .filter(|(group, _)| !stored.contains(group))
            .filter(|(_, entry)| {
                entry
                    .state
                    .try_lock()
                    .map_or(true, |state| !state.members.is_empty())
            })
            .count();
        let max = self.settings.max_groups;
        match stored.len() + with_members < max {
            true => Ok(()),
            false => Err(GroupError::TooManyGroups { max }),
        }
    }

    /// Whether a request naming a member this coordinator does not know adds it under its
    /// id: only in the first session after taking over from another owner.
    pub(super) fn adopting(&self) -> bool {
        self.adopt_until.is_some_and(|until| Instant::now() < until)
    }

    pub(super) fn existing(&self, id: &GroupId) -> Option<Arc<Group>> {
        self.groups().get(id).cloned()
    }

    /// The group of a member, or [`GroupError::UnknownMember`].
    pub(super) fn member_group(
        &self,
        group: &GroupId,
        member: &MemberId,
    ) -> Result<Arc<Group>, GroupError> {
        self.existing(group)
            .ok_or_else(|| unknown_member(group, member))
    }

    /// Reads the partition counts of `topics` from the log into `counts`, before a group
    /// lock is taken. A topic the log does not have is [`LogError::TopicNotFound`] when
    /// `must_exist`, and forgotten either way.
    pub(super) async fn refresh_counts(
        &self,
        topics: impl IntoIterator<Item = &TopicName>,
        must_exist: bool,
    ) -> Result<(), LogError> {
        for topic in topics {
            match self.log.topic_meta(topic).await {
                Ok(meta) => {
                    lock(&self.counts).insert(topic.clone(), meta.partitions);
                }
                Err(LogError::TopicNotFound(_)) if !must_exist => {
                    lock(&self.counts).remove(topic);
                }
                Err(err) => {
                    lock(&self.counts).remove(topic);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Expires members and follows partition changes; rebalances when either happened (or
    /// when `force`, after a join, leave or new subscription). Reads counts from memory
    /// only: it runs under the group's lock.
    pub(super) fn settle(&self, group: &Group, state: &mut GroupState, force: bool) {
        let expired = state.expire(Instant::now());
        let counts = {
            let known = lock(&self.counts);
            state
                .subscribed_topics()
                .into_iter()
                .filter_map(|topic| known.get(&topic).map(|count| (topic, *count)))
                .collect()
        };
        if force || !expired.is_empty() || state.counts_changed(&counts) {
            state.rebalance(counts);
            group.generation.send_replace(state.generation);
        }
    }

    pub(super) fn session_timeout(
        &self,
        asked: Option<Duration>,
    ) -> Result<Option<Duration>, GroupError> {
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

    /// Checks that each offset lies within `[0, high watermark]` of its partition
    /// (committing the high watermark means "all read"; beyond it nothing exists), reading
    /// the bounds once per topic.
    pub(super) async fn check_offsets(
        &self,
        offsets: &[(TopicName, PartitionId, Offset)],
    ) -> Result<(), LogError> {
        let topics: BTreeSet<&TopicName> = offsets.iter().map(|(topic, _, _)| topic).collect();
        for topic in topics {
            let mine: Vec<(PartitionId, Offset)> = offsets
                .iter()
                .filter(|(t, _, _)| t == topic)
                .map(|(_, partition, offset)| (*partition, *offset))
                .collect();
            let partitions: Vec<PartitionId> = mine.iter().map(|(p, _)| *p).collect();
            let bounds = self.log.bounds(topic, &partitions).await?;
            for ((_, offset), bounds) in mine.iter().zip(bounds) {
                if *offset > bounds.high_watermark {
                    return Err(bounds.out_of_range(*offset));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl GroupCoordinator for Coordinator {
    fn settings(&self) -> GroupSettings {
        self.settings
    }

    async fn poll(&self, group: &GroupId, request: PollRequest) -> Result<Polled, GroupError> {
        self.poll_member(group, request).await
    }

    async fn commit(&self, group: &GroupId, request: CommitRequest) -> Result<(), GroupError> {
        self.commit_offsets(group, request).await
    }

    async fn seek(
        &self,
        group: &GroupId,
        topic: &TopicName,
        target: SeekTarget,
    ) -> Result<Vec<(PartitionId, Offset)>, GroupError> {
        self.seek_offsets(group, topic, target).await
    }

    async fn leave(&self, group: &GroupId, member: &MemberId) -> Result<(), GroupError> {
        self.remove_member(group, member).await
    }

    async fn describe(&self, group: &GroupId) -> Result<GroupDescription, GroupError> {
        self.describe_group(group).await
    }

    async fn list(&self) -> Result<Vec<GroupSummary>, GroupError> {
        self.list_groups().await
    }

    async fn delete(&self, group: &GroupId) -> Result<(), GroupError> {
        self.delete_group(group).await
    }

    async fn join(
        &self,
        group: &GroupId,
        topics: Vec<TopicName>,
        client: Option<String>,
    ) -> Result<MemberId, GroupError> {
        self.join_connected(group, None, topics, client).await
    }

    async fn assignment(
        &self,
        group: &GroupId,
        member: &MemberId,
        reset: OffsetReset,
    ) -> Result<Assignment, GroupError> {
        self.member_assignment(group, member, reset).await
    }

    async fn rebalanced(
        &self,
        group: &GroupId,
        member: &MemberId,
        known: Generation,
    ) -> Result<(), GroupError> {
        let mut generation = self.member_group(group, member)?.generation.subscribe();
        tokio::select! {
            _ = generation.wait_for(|current| *current > known) => {}
            _ = self.shutdown.cancelled() => {}
        }
        Ok(())
    }

    async fn heartbeat(&self, group: &GroupId, member: &MemberId) -> Result<(), GroupError> {
        let entry = self.member_group(group, member)?;
        let mut state = entry.state.lock().await;
        let live = state
            .members
            .get_mut(member)
            .ok_or_else(|| unknown_member(group, member))?;
        live.touch(Instant::now(), now_ms());
        Ok(())
    }

    async fn shutdown(&self) {
        // The maintenance task ends with the shutdown token, which the caller cancelled.
        let task = lock(&self.maintenance).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

pub(super) fn unknown_member(group: &GroupId, member: &MemberId) -> GroupError {
    GroupError::UnknownMember {
        group: group.clone(),
        member: member.clone(),
    }
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// A poisoned lock only means another thread panicked while holding it; the maps are left
// consistent by single inserts and removes, so keep serving.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
