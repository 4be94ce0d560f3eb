//! Reading as a member: a poll joins or refreshes its member, plans where each of its
//! partitions is read from, reads outside the lock, and delivers what is still its own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, select_all};
use tokio::sync::watch;

use super::assignor::TopicPartition;
use super::coordinator::{Coordinator, Group, now_ms, unknown_member};
use super::state::{GroupState, Member};
use super::{Assignment, GroupError, MemberId, OffsetReset, PollRequest, Polled};
use crate::log::{
    CommittedOffset, FetchRequest, GroupId, LogError, Offset, PartitionBounds, PartitionId,
    StoredRecord, TopicName,
};

/// How often a plan reads committed offsets again when seeks keep moving them meanwhile.
const PLAN_ATTEMPTS: usize = 4;

/// A partition a poll reads, from where.
pub(super) struct Planned {
    pub partition: TopicPartition,
    pub from: Offset,
}

impl Coordinator {
    pub(super) async fn poll_member(
        &self,
        group: &GroupId,
        request: PollRequest,
    ) -> Result<Polled, GroupError> {
        let topics: BTreeSet<TopicName> = request.topics.iter().cloned().collect();
        if topics.is_empty() || topics.len() > self.settings.max_topics {
            return Err(GroupError::Invalid(format!(
                "topics must name 1 to {} topics",
                self.settings.max_topics
            )));
        }
        self.refresh_counts(&topics, true).await?;
        let session = self.session_timeout(request.session_timeout)?;
        if request.member.is_none() {
            self.admit_group(group).await?;
        }
        let entry = self.group(group);
        let (member, delivered, epoch, _polling) = {
            let mut state = entry.state.lock().await;
            let member = match &request.member {
                Some(id) => {
                    self.refresh_member(&entry, &mut state, group, id, &request, topics, session)?
                }
                None => self.add_member(
                    &entry,
                    &mut state,
                    group,
                    None,
                    topics,
                    session,
                    request.client.clone(),
                )?,
            };
            let delivered = if request.auto_commit {
                take_delivered(&mut state, &member)
            } else {
                Vec::new()
            };
            let polling = state.members.get(&member).map(|m| m.polling.clone());
            (member, delivered, state.offsets_epoch, polling)
        };
        // The commit of what earlier polls delivered runs beside this poll's read, which
        // starts from the member's own positions, not from those offsets; the poll answers
        // once both are done, so an answered poll has committed everything before it. The
        // commit is lazy: visible at once, durable within a second, as Kafka's consumers
        // auto-commit every few seconds; a crash before then delivers those records again
        // (at-least-once). Only a partition whose position fell out of its bounds is
        // planned from the committed offsets while they are written; it then starts from
        // either, both at or before what it delivered.
        let commit = async {
            if delivered.is_empty() {
                return Ok(());
            }
            let _shared = entry.commits.read().await;
            // A seek since these were taken moved the offsets past what they say.
            if entry.state.lock().await.offsets_epoch == epoch {
                self.offsets.commit_offsets_lazily(group, delivered).await?;
            }
            Ok::<(), GroupError>(())
        };
        let poll = async {
            let (plan, mut changes) = self.plan(&entry, group, &member, request.reset).await?;
            changes.mark_unchanged();
            let records = self.read(&plan, &request, &mut changes).await?;
            Ok::<_, GroupError>((plan, records))
        };
        let ((), (plan, records)) = tokio::try_join!(commit, poll)?;

        let mut state = entry.state.lock().await;
        let generation = state.generation;
        let owned = state.owned(&member);
        let state_member = state
            .members
            .get_mut(&member)
            .ok_or_else(|| unknown_member(group, &member))?;
        // A poll's end counts as seen too: a slow read does not eat the member's session.
        state_member.touch(Instant::now(), now_ms());
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
            if read.next == planned.from {
                continue;
            }
            state_member
                .positions
                .insert(planned.partition.clone(), read.next);
            state_member
                .delivered
                .insert(planned.partition.clone(), read.next);
            let topic = &planned.partition.0;
            delivered.extend(
                read.records
                    .into_iter()
                    .map(|record| (topic.clone(), record)),
            );
        }
        let assignment = owned
            .into_iter()
            .map(|partition| {
                let position = state_member.positions.get(&partition).copied();
                (partition, position)
            })
            .collect();
        Ok(Polled {
            member,
            generation,
            assignment,
            records: delivered,
        })
    }

    /// A known member's poll: keeps it alive, takes its new settings, and follows a changed
    /// subscription with a rebalance.
    #[allow(clippy::too_many_arguments)]
    fn refresh_member(
        &self,
        entry: &Group,
        state: &mut GroupState,
        group: &GroupId,
        id: &MemberId,
        request: &PollRequest,
        topics: BTreeSet<TopicName>,
        session: Option<Duration>,
    ) -> Result<MemberId, GroupError> {
        self.settle(entry, state, false);
        if !state.members.contains_key(id) && self.adopting() {
            let client = request.client.clone();
            return self.add_member(entry, state, group, Some(id), topics, session, client);
        }
        let member = state
            .members
            .get_mut(id)
            .ok_or_else(|| unknown_member(group, id))?;
        member.touch(Instant::now(), now_ms());
        if let Some(session) = session {
            member.session_timeout = session;
        }
        if request.client.is_some() {
            member.client.clone_from(&request.client);
        }
        if member.topics != topics {
            member.topics = topics;
            self.settle(entry, state, true);
        }
        Ok(id.clone())
    }

    /// A new member (under `id` when adopting one, else a new id): refused when the group
    /// is full, else added with a rebalance.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_member(
        &self,
        entry: &Group,
        state: &mut GroupState,
        group: &GroupId,
        id: Option<&MemberId>,
        topics: BTreeSet<TopicName>,
        session: Option<Duration>,
        client: Option<String>,
    ) -> Result<MemberId, GroupError> {
        state.expire(Instant::now());
        if state.members.len() >= self.settings.max_members {
            return Err(GroupError::GroupFull {
                group: group.clone(),
                max: self.settings.max_members,
            });
        }
        let id = id.cloned().unwrap_or_else(MemberId::generate);
        let session = session.unwrap_or(self.settings.default_session_timeout);
        let joined = Member::new(topics, session, client, Instant::now(), now_ms());
        state.members.insert(id.clone(), joined);
        self.settle(entry, state, true);
        Ok(id)
    }

    /// The member's partitions and where to read each, in the rotating order of this poll,
    /// with a receiver of the member's partition changes. Partitions without a position
    /// start at the committed offset, or per `reset` when there is none or it lies outside
    /// the partition's bounds; those are read with the group's lock released.
    pub(super) async fn plan(
        &self,
        entry: &Group,
        group: &GroupId,
        member: &MemberId,
        reset: OffsetReset,
    ) -> Result<(Vec<Planned>, watch::Receiver<u64>), GroupError> {
        let mut starts = BTreeMap::new();
        for _ in 0..PLAN_ATTEMPTS {
            let (missing, epoch) = {
                let mut state = entry.state.lock().await;
                let epoch = state.offsets_epoch;
                let missing = missing_positions(&state, member)
                    .ok_or_else(|| unknown_member(group, member))?;
                let missing: Vec<TopicPartition> = missing
                    .into_iter()
                    .filter(|partition| !starts.contains_key(partition))
                    .collect();
                if missing.is_empty() {
                    return rotate(&mut state, group, member, &starts);
                }
                (missing, epoch)
            };
            starts = self.starting_offsets(group, &missing, reset).await?;
            let mut state = entry.state.lock().await;
            if state.offsets_epoch == epoch {
                return rotate(&mut state, group, member, &starts);
            }
            // A seek moved the committed offsets while they were read: read them again.
            starts.clear();
        }
        Err(GroupError::Log(LogError::Unavailable(
            "the group's committed offsets kept moving (concurrent seeks); try again".into(),
        )))
    }

    /// Where each of `partitions` starts: the committed offset when it lies within the
    /// partition's bounds, else the start or end per `reset`. One read of the committed
    /// offsets and one of the bounds per topic, with no group lock held.
    async fn starting_offsets(
        &self,
        group: &GroupId,
        partitions: &[TopicPartition],
        reset: OffsetReset,
    ) -> Result<BTreeMap<TopicPartition, Offset>, GroupError> {
        let committed: BTreeMap<TopicPartition, Offset> = self
            .offsets
            .committed_offsets(group)
            .await?
            .into_iter()
            .map(|c| ((c.topic, c.partition), c.offset))
            .collect();
        let mut starts = BTreeMap::new();
        for (topic, bounds) in self.bounds_by_topic(partitions).await? {
            for (partition, bounds) in bounds {
                let key = (topic.clone(), partition);
                let start = match committed.get(&key) {
                    Some(offset) if bounds.contains(*offset) => *offset,
                    _ => match reset {
                        OffsetReset::Earliest => bounds.log_start_offset,
                        OffsetReset::Latest => bounds.high_watermark,
                    },
                };
                starts.insert(key, start);
            }
        }
        Ok(starts)
    }

    /// Bounds of `partitions`, one call per topic; partitions of topics (or beyond the
    /// partition counts) the log no longer has are left out.
    pub(super) async fn bounds_by_topic(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicName, Vec<(PartitionId, PartitionBounds)>>, LogError> {
        let mut by_topic: BTreeMap<TopicName, Vec<PartitionId>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic.clone()).or_default().push(*partition);
        }
        let mut found = BTreeMap::new();
        for (topic, mut wanted) in by_topic {
            let count = match self.log.topic_meta(&topic).await {
                Ok(meta) => meta.partitions,
                Err(LogError::TopicNotFound(_)) => continue,
                Err(err) => return Err(err),
            };
            wanted.retain(|p| p.get() < count);
            let bounds = match self.log.bounds(&topic, &wanted).await {
                Ok(bounds) => bounds,
                // Deleted meanwhile.
                Err(LogError::TopicNotFound(_) | LogError::PartitionNotFound { .. }) => continue,
                Err(err) => return Err(err),
            };
            found.insert(topic, wanted.into_iter().zip(bounds).collect());
        }
        Ok(found)
    }

    /// Reads the planned partitions up to the request's limits, waiting for records when
    /// none is there yet. One entry per planned partition, in plan order: its records, or
    /// `None` when its position lies outside the partition's bounds.
    async fn read(
        &self,
        plan: &[Planned],
        request: &PollRequest,
        changes: &mut watch::Receiver<u64>,
    ) -> Result<Vec<Option<Read>>, GroupError> {
        let deadline = tokio::time::Instant::now() + request.wait;
        let mut watches = None;
        // Where each planned partition is read from: offsets holding no record (Kafka's
        // transaction markers) move it on even when no record comes.
        let mut froms: Vec<Offset> = plan.iter().map(|planned| planned.from).collect();
        loop {
            if watches.is_none() && !request.wait.is_zero() {
                // Subscribed before reading, so a commit between the read and the wait
                // wakes it.
                let mut subscribed = Vec::with_capacity(plan.len());
                for planned in plan {
                    let (topic, partition) = &planned.partition;
                    subscribed.push(self.log.watch_high_watermark(topic, *partition).await.ok());
                }
                watches = Some(subscribed);
            }
            let mut records = Vec::with_capacity(plan.len());
            let (mut count, mut bytes, mut out_of_range) = (0usize, 0usize, false);
            for (planned, from) in plan.iter().zip(froms.iter_mut()) {
                let (topic, partition) = &planned.partition;
                if count >= request.max_records {
                    records.push(Some(Read::nothing(*from)));
                    continue;
                }
                let fetched = self
                    .log
                    .fetch(
                        topic,
                        *partition,
                        FetchRequest {
                            offset: Some(*from),
                            max_records: request.max_records - count,
                            max_bytes: request.max_bytes.saturating_sub(bytes).max(1),
                        },
                    )
                    .await;
                match fetched {
                    Ok(result) => {
                        count += result.records.len();
                        bytes += result.records.iter().map(|r| r.value.len()).sum::<usize>();
                        *from = result.next_offset;
                        records.push(Some(Read {
                            records: result.records,
                            next: result.next_offset,
                        }));
                    }
                    Err(LogError::OffsetOutOfRange { .. }) => {
                        out_of_range = true;
                        records.push(None);
                    }
                    // Deleted meanwhile; the rebalance that follows takes it away.
                    Err(LogError::TopicNotFound(_) | LogError::PartitionNotFound { .. }) => {
                        records.push(Some(Read::nothing(*from)));
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            let now = tokio::time::Instant::now();
            if count > 0 || out_of_range || now >= deadline || request.wait.is_zero() {
                return Ok(records);
            }
            let mut wakers: Vec<BoxFuture<'_, ()>> = watches
                .iter_mut()
                .flatten()
                .zip(froms.iter().copied())
                .filter_map(|(watch, from)| {
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

    /// The member's generation and partitions with their starting offsets (a connected
    /// member reads them itself).
    pub(super) async fn member_assignment(
        &self,
        group: &GroupId,
        member: &MemberId,
        reset: OffsetReset,
    ) -> Result<Assignment, GroupError> {
        let entry = self.member_group(group, member)?;
        self.plan(&entry, group, member, reset).await?;
        let state = entry.state.lock().await;
        let positions = &state
            .members
            .get(member)
            .ok_or_else(|| unknown_member(group, member))?
            .positions;
        let partitions = state
            .owned(member)
            .into_iter()
            .filter_map(|partition| {
                let from = *positions.get(&partition)?;
                Some((partition, from))
            })
            .collect();
        Ok(Assignment {
            generation: state.generation,
            partitions,
        })
    }
}

/// What one planned partition gave: its records, and where the member goes on (past the
/// records, and past offsets that hold none).
struct Read {
    records: Vec<StoredRecord>,
    next: Offset,
}

impl Read {
    fn nothing(at: Offset) -> Read {
        Read {
            records: Vec::new(),
            next: at,
        }
    }
}

/// The partitions `member` owns without a position yet; `None` when it is no member.
fn missing_positions(state: &GroupState, member: &MemberId) -> Option<Vec<TopicPartition>> {
    let positions = &state.members.get(member)?.positions;
    Some(
        state
            .owned(member)
            .into_iter()
            .filter(|partition| !positions.contains_key(partition))
            .collect(),
    )
}

/// Gives the member's partitions without a position their start from `starts`, and
/// returns its partitions in this poll's rotating order (so none starves), with a receiver
/// of its partition changes.
fn rotate(
    state: &mut GroupState,
    group: &GroupId,
    member: &MemberId,
    starts: &BTreeMap<TopicPartition, Offset>,
) -> Result<(Vec<Planned>, watch::Receiver<u64>), GroupError> {
    let owned = state.owned(member);
    let live = state
        .members
        .get_mut(member)
        .ok_or_else(|| unknown_member(group, member))?;
    for partition in &owned {
        if let Some(start) = starts.get(partition) {
            live.positions.entry(partition.clone()).or_insert(*start);
        }
    }
    let start = live.next_start % owned.len().max(1);
    live.next_start = live.next_start.wrapping_add(1);
    let plan = owned[start..]
        .iter()
        .chain(&owned[..start])
        .filter_map(|partition| {
            live.positions.get(partition).map(|from| Planned {
                partition: partition.clone(),
                from: *from,
            })
        })
        .collect();
    Ok((plan, live.changes.subscribe()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName::parse(name).expect("name")
    }

    fn id(name: &str) -> MemberId {
        MemberId::parse(name).expect("id")
    }

    fn state_with(member: &str, partitions: u32) -> GroupState {
        let mut state = GroupState::default();
        state.members.insert(
            id(member),
            Member::new(
                [topic("t")].into(),
                Duration::from_secs(1),
                None,
                Instant::now(),
                0,
            ),
        );
        state.rebalance([(topic("t"), partitions)].into());
        state
    }

    #[test]
    fn plans_rotate_so_no_partition_starves() {
        let mut state = state_with("a", 3);
        let group = GroupId::parse("g").unwrap();
        let starts: BTreeMap<TopicPartition, Offset> = (0..3)
            .map(|p| {
                (
                    (topic("t"), PartitionId::new(p)),
                    Offset::new(10 + u64::from(p)),
                )
            })
            .collect();
        let firsts: Vec<u32> = (0..3)
            .map(|_| {
                let (plan, _) = rotate(&mut state, &group, &id("a"), &starts).unwrap();
                assert_eq!(plan.len(), 3);
                plan[0].partition.1.get()
            })
            .collect();
        assert_eq!(firsts, [0, 1, 2]);
        let (plan, _) = rotate(&mut state, &group, &id("a"), &starts).unwrap();
        let from: BTreeMap<u32, u64> = plan
            .iter()
            .map(|p| (p.partition.1.get(), p.from.get()))
            .collect();
        assert_eq!(from, [(0, 10), (1, 11), (2, 12)].into());
        assert!(missing_positions(&state, &id("a")).unwrap().is_empty());
        assert!(missing_positions(&state, &id("nobody")).is_none());
        assert!(rotate(&mut state, &group, &id("nobody"), &starts).is_err());
    }

    #[test]
    fn a_plan_keeps_positions_and_takes_starts_only_where_none() {
        let mut state = state_with("a", 2);
        let group = GroupId::parse("g").unwrap();
        let p0 = (topic("t"), PartitionId::new(0));
        let p1 = (topic("t"), PartitionId::new(1));
        let member = state.members.get_mut(&id("a")).unwrap();
        member.positions.insert(p0.clone(), Offset::new(7));
        assert_eq!(
            missing_positions(&state, &id("a")).unwrap(),
            std::slice::from_ref(&p1)
        );
        let starts = [(p0.clone(), Offset::new(1)), (p1.clone(), Offset::new(2))].into();
        rotate(&mut state, &group, &id("a"), &starts).unwrap();
        let positions = &state.members[&id("a")].positions;
        assert_eq!(positions[&p0], Offset::new(7), "a position is kept");
        assert_eq!(positions[&p1], Offset::new(2));
    }

    #[test]
    fn auto_commit_takes_each_delivery_once_and_only_owned_partitions() {
        let mut state = state_with("a", 2);
        let p0 = (topic("t"), PartitionId::new(0));
        let gone = (topic("old"), PartitionId::new(0));
        let member = state.members.get_mut(&id("a")).unwrap();
        member.delivered.insert(p0.clone(), Offset::new(5));
        member.delivered.insert(gone, Offset::new(9));
        let taken = take_delivered(&mut state, &id("a"));
        assert_eq!(taken.len(), 1);
        assert_eq!(
            (taken[0].partition, taken[0].offset),
            (p0.1, Offset::new(5))
        );
        assert!(take_delivered(&mut state, &id("a")).is_empty());
    }
}
