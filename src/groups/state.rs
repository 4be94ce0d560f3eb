//! One group's membership: members, generation, assignment, and each member's positions.
//! Pure state: the coordinator brings what it reads from the log (partition counts,
//! committed offsets) and the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::assignor::{self, TopicPartition};
use super::{Generation, MemberId};
use crate::log::{Offset, PartitionId, TopicName};

/// A member: an id that polls (or a WebSocket that stays open).
pub(super) struct Member {
    pub topics: BTreeSet<TopicName>,
    pub session_timeout: Duration,
    pub last_seen: Instant,
    /// The same moment on the wall clock, for people reading a description.
    pub last_seen_ms: i64,
    /// Where its requests come from, for people reading a description.
    pub client: Option<String>,
    /// Next offset to deliver, per owned partition; absent until read from the committed
    /// offset (first poll after the partition was assigned, or after a seek).
    pub positions: BTreeMap<TopicPartition, Offset>,
    /// What earlier polls delivered up to, for `auto_commit`.
    pub delivered: BTreeMap<TopicPartition, Offset>,
    /// Which owned partition a poll reads first; rotates so none starves.
    pub next_start: usize,
    /// Bumped whenever this member's partitions change: wakes its waiting poll.
    pub changes: watch::Sender<u64>,
    /// Held by each poll of this member in progress: a member busy in a poll (a slow
    /// read) is alive, as a Kafka consumer heartbeats while it fetches.
    pub polling: Arc<()>,
}

impl Member {
    pub fn new(
        topics: BTreeSet<TopicName>,
        session_timeout: Duration,
        client: Option<String>,
        now: Instant,
        now_ms: i64,
    ) -> Member {
        Member {
            topics,
            session_timeout,
            last_seen: now,
            last_seen_ms: now_ms,
            client,
            positions: BTreeMap::new(),
            delivered: BTreeMap::new(),
            next_start: 0,
            changes: watch::Sender::new(0),
            polling: Arc::new(()),
        }
    }

    pub fn touch(&mut self, now: Instant, now_ms: i64) {
        self.last_seen = now;
        self.last_seen_ms = now_ms;
    }

    fn expired(&self, now: Instant) -> bool {
        Arc::strong_count(&self.polling) == 1
            && now.saturating_duration_since(self.last_seen) > self.session_timeout
    }
}

/// A group as the coordinator keeps it in memory.
#[derive(Default)]
pub(super) struct GroupState {
    /// Raised by every rebalance; commits must name the current one.
    pub generation: Generation,
    /// Raised by every seek, after its commit: a poll that read committed offsets outside
    /// the lock while it moved reads them again.
    pub offsets_epoch: u64,
    pub members: BTreeMap<MemberId, Member>,
    pub assignment: BTreeMap<TopicPartition, MemberId>,
    /// Partition count of every subscribed topic at the last rebalance.
    pub partition_counts: BTreeMap<TopicName, u32>,
}

impl GroupState {
    /// Every topic some member subscribes to.
    pub fn subscribed_topics(&self) -> BTreeSet<TopicName> {
        self.members
            .values()
            .flat_map(|member| member.topics.iter().cloned())
            .collect()
    }

    /// Removes members whose session ran out, and names them.
    pub fn expire(&mut self, now: Instant) -> Vec<MemberId> {
        let expired: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(_, member)| member.expired(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.members.remove(id);
        }
        expired
    }

    /// Whether the topics' partition counts differ from those of the last rebalance.
    pub fn counts_changed(&self, counts: &BTreeMap<TopicName, u32>) -> bool {
        *counts != self.partition_counts
    }

    /// The partitions `member` owns, sorted.
    pub fn owned(&self, member: &MemberId) -> Vec<TopicPartition> {
        self.assignment
            .iter()
            .filter(|(_, owner)| *owner == member)
            .map(|(partition, _)| partition.clone())
            .collect()
    }

    /// Recomputes the assignment over `counts` (the partition count of every subscribed
    /// topic; topics that vanished are absent), raises the generation, and tells every
    /// member whose partitions changed. Positions of partitions a member lost are dropped:
    /// the next owner starts from the committed offset.
    pub fn rebalance(&mut self, counts: BTreeMap<TopicName, u32>) {
        let subscriptions: BTreeMap<MemberId, BTreeSet<TopicName>> = self
            .members
            .iter()
            .map(|(id, member)| (id.clone(), member.topics.clone()))
            .collect();
        let partitions: BTreeSet<TopicPartition> = counts
            .iter()
            .flat_map(|(topic, count)| (0..*count).map(|p| (topic.clone(), PartitionId::new(p))))
            .collect();
        let assignment = assignor::assign(&subscriptions, &partitions, &self.assignment);
        self.generation = self.generation.next();
        for (id, member) in &mut self.members {
            let before: BTreeSet<&TopicPartition> = self
                .assignment
                .iter()
                .filter(|(_, owner)| *owner == id)
                .map(|(partition, _)| partition)
                .collect();
            let after: BTreeSet<&TopicPartition> = assignment
                .iter()
                .filter(|(_, owner)| *owner == id)
                .map(|(partition, _)| partition)
                .collect();
            member
                .positions
                .retain(|partition, _| after.contains(partition));
            member
                .delivered
                .retain(|partition, _| after.contains(partition));
            if before != after {
                member.changes.send_modify(|n| *n += 1);
            }
        }
        self.assignment = assignment;
        self.partition_counts = counts;
    }

    /// Forgets the positions of `partitions`, so members read them again from the committed
    /// offsets on their next poll (after a seek), and tells polls reading committed offsets
    /// meanwhile to read them again.
    pub fn forget_positions(&mut self, partitions: &BTreeSet<TopicPartition>) {
        self.offsets_epoch += 1;
        for member in self.members.values_mut() {
            member
                .positions
                .retain(|partition, _| !partitions.contains(partition));
            member
                .delivered
                .retain(|partition, _| !partitions.contains(partition));
        }
    }
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

    #[test]
    fn a_rebalance_raises_the_generation_and_tells_only_members_that_changed() {
        let now = Instant::now();
        let mut state = GroupState::default();
        let topics: BTreeSet<_> = [topic("t")].into();
        state.members.insert(
            id("a"),
            Member::new(topics.clone(), Duration::from_secs(1), None, now, 0),
        );
        let counts: BTreeMap<_, _> = [(topic("t"), 4)].into();
        state.rebalance(counts.clone());
        assert_eq!(state.generation, Generation::new(1));
        assert_eq!(state.owned(&id("a")).len(), 4);
        let mut a_changes = state.members[&id("a")].changes.subscribe();
        a_changes.mark_unchanged();
        state
            .members
            .get_mut(&id("a"))
            .unwrap()
            .positions
            .insert((topic("t"), PartitionId::new(3)), Offset::new(9));

        state.members.insert(
            id("b"),
            Member::new(topics, Duration::from_secs(1), None, now, 0),
        );
        state.rebalance(counts.clone());
        assert_eq!(state.generation, Generation::new(2));
        assert_eq!(state.owned(&id("a")).len(), 2);
        assert_eq!(state.owned(&id("b")).len(), 2);
        assert!(a_changes.has_changed().unwrap());
        // `a` lost partition 3 (or kept it): its position goes only with the partition.
        let a = &state.members[&id("a")];
        let kept = state
            .owned(&id("a"))
            .contains(&(topic("t"), PartitionId::new(3)));
        assert_eq!(a.positions.len(), usize::from(kept));

        a_changes.mark_unchanged();
        state.rebalance(counts);
        assert_eq!(state.generation, Generation::new(3));
        assert!(
            !a_changes.has_changed().unwrap(),
            "same assignment, no news"
        );
    }

    #[test]
    fn members_expire_after_their_session() {
        let start = Instant::now();
        let mut state = GroupState::default();
        let topics: BTreeSet<_> = [topic("t")].into();
        state.members.insert(
            id("short"),
            Member::new(topics.clone(), Duration::from_millis(100), None, start, 0),
        );
        state.members.insert(
            id("long"),
            Member::new(topics, Duration::from_secs(60), None, start, 0),
        );
        assert!(state.expire(start + Duration::from_millis(50)).is_empty());
        assert_eq!(
            state.expire(start + Duration::from_millis(200)),
            vec![id("short")]
        );
        assert_eq!(state.members.len(), 1);
    }

    #[test]
    fn a_member_in_a_poll_outlives_its_session() {
        let start = Instant::now();
        let mut state = GroupState::default();
        let member = Member::new(
            [topic("t")].into(),
            Duration::from_millis(100),
            None,
            start,
            0,
        );
        let polling = member.polling.clone();
        state.members.insert(id("busy"), member);
        let late = start + Duration::from_millis(500);
        assert!(state.expire(late).is_empty(), "its poll still runs");
        drop(polling);
        assert_eq!(state.expire(late), vec![id("busy")]);
    }
}
