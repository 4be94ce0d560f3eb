//! Sticky, deterministic partition assignment.
//!
//! Every partition of the subscribed topics goes to exactly one live member subscribed to
//! its topic. A partition stays with its owner while the owner lives and the balance allows
//! it, so a rebalance moves as few partitions as it can (Kafka's sticky assignor, in its
//! simple form). The same inputs always give the same assignment: members and partitions
//! are visited in sorted order.
//!
//! The steps:
//! 1. Keep every partition whose owner is still a member subscribed to its topic.
//! 2. Give each remaining partition to the eligible member holding the fewest.
//! 3. While some partition's owner holds at least two more than another eligible member,
//!    move it there. Each move lowers the sum of squared counts, so this ends.

use std::collections::{BTreeMap, BTreeSet};

use super::MemberId;
use crate::log::{PartitionId, TopicName};

/// A partition of a topic.
pub type TopicPartition = (TopicName, PartitionId);

/// Computes the assignment for `members` (each with the topics it subscribes to) over
/// `partitions` (every partition of every subscribed topic), keeping what it can of
/// `previous`.
pub fn assign(
    members: &BTreeMap<MemberId, BTreeSet<TopicName>>,
    partitions: &BTreeSet<TopicPartition>,
    previous: &BTreeMap<TopicPartition, MemberId>,
) -> BTreeMap<TopicPartition, MemberId> {
    fn eligible<'a>(
        members: &'a BTreeMap<MemberId, BTreeSet<TopicName>>,
        topic: &'a TopicName,
    ) -> impl Iterator<Item = &'a MemberId> {
        members
            .iter()
            .filter(move |(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
    }
    let mut counts: BTreeMap<&MemberId, usize> = members.keys().map(|m| (m, 0)).collect();
    let mut assignment = BTreeMap::new();

    for partition in partitions {
        if let Some(owner) = previous.get(partition)
            && members
                .get(owner)
                .is_some_and(|topics| topics.contains(&partition.0))
        {
            assignment.insert(partition.clone(), owner.clone());
            *counts.entry(owner).or_default() += 1;
        }
    }
    for partition in partitions {
        if assignment.contains_key(partition) {
            continue;
        }
        let Some(member) =
            eligible(members, &partition.0).min_by_key(|member| (counts[member], *member))
        else {
            continue;
        };
        assignment.insert(partition.clone(), member.clone());
        *counts.get_mut(member).expect("every member is counted") += 1;
    }
    loop {
        let mut moved = false;
        for partition in partitions {
            let Some(owner) = assignment.get(partition).cloned() else {
                continue;
            };
            let owner_count = counts[&owner];
            let Some(target) = eligible(members, &partition.0)
                .filter(|member| counts[member] + 1 < owner_count)
                .min_by_key(|member| (counts[member], *member))
            else {
                continue;
            };
            *counts.get_mut(&owner).expect("counted") -= 1;
            *counts.get_mut(target).expect("counted") += 1;
            assignment.insert(partition.clone(), target.clone());
            moved = true;
        }
        if !moved {
            return assignment;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName::parse(name).expect("valid name")
    }

    fn member(n: usize) -> MemberId {
        MemberId::parse(&format!("m{n:03}")).expect("valid id")
    }

    fn partitions_of(topics: &[(&str, u32)]) -> BTreeSet<TopicPartition> {
        topics
            .iter()
            .flat_map(|(name, count)| (0..*count).map(|p| (topic(name), PartitionId::new(p))))
            .collect()
    }

    fn counts(assignment: &BTreeMap<TopicPartition, MemberId>) -> BTreeMap<MemberId, usize> {
        let mut counts = BTreeMap::new();
        for member in assignment.values() {
            *counts.entry(member.clone()).or_default() += 1;
        }
        counts
    }

    fn moved(
        before: &BTreeMap<TopicPartition, MemberId>,
        after: &BTreeMap<TopicPartition, MemberId>,
    ) -> usize {
        after
            .iter()
            .filter(|(partition, owner)| before.get(*partition).is_some_and(|old| old != *owner))
            .count()
    }

    #[test]
    fn two_members_split_four_partitions() {
        let topics: BTreeSet<_> = [topic("orders")].into();
        let members = (0..2).map(|n| (member(n), topics.clone())).collect();
        let partitions = partitions_of(&[("orders", 4)]);
        let assignment = assign(&members, &partitions, &BTreeMap::new());
        assert_eq!(assignment.len(), 4);
        assert!(counts(&assignment).values().all(|&c| c == 2));
        assert_eq!(
            assign(&members, &partitions, &BTreeMap::new()),
            assignment,
            "deterministic"
        );
    }

    #[test]
    fn partitions_go_only_to_members_subscribed_to_their_topic() {
        let members = [
            (member(0), [topic("a")].into()),
            (member(1), [topic("a"), topic("b")].into()),
            (member(2), [topic("c")].into()),
        ]
        .into();
        let partitions = partitions_of(&[("a", 3), ("b", 3), ("c", 2), ("d", 2)]);
        let assignment = assign(&members, &partitions, &BTreeMap::new());
        for ((name, _), owner) in &assignment {
            assert!(members[owner].contains(name));
        }
        // `d` has no subscriber: unassigned. Everything else is assigned.
        assert_eq!(assignment.len(), 8);
        let counts = counts(&assignment);
        assert_eq!(counts[&member(2)], 2);
        assert_eq!(counts[&member(0)] + counts[&member(1)], 6);
    }

    fn homogeneous(members: usize) -> BTreeMap<MemberId, BTreeSet<TopicName>> {
        let topics: BTreeSet<_> = [topic("a"), topic("b")].into();
        (0..members).map(|n| (member(n), topics.clone())).collect()
    }

    proptest! {
        #[test]
        fn every_partition_is_assigned_once_to_an_eligible_member(
            subscriptions in proptest::collection::vec(proptest::collection::btree_set(0usize..4, 0..4), 1..8),
            counts_per_topic in proptest::collection::vec(0u32..12, 4),
            previous_owners in proptest::collection::vec(0usize..10, 0..48),
        ) {
            let names = ["t0", "t1", "t2", "t3"];
            let members: BTreeMap<MemberId, BTreeSet<TopicName>> = subscriptions
                .iter()
                .enumerate()
                .map(|(n, set)| (member(n), set.iter().map(|t| topic(names[*t])).collect()))
                .collect();
            let partitions = partitions_of(
                &names.iter().copied().zip(counts_per_topic.iter().copied()).collect::<Vec<_>>(),
            );
            let previous: BTreeMap<_, _> = partitions
                .iter()
                .zip(&previous_owners)
                .map(|(partition, owner)| (partition.clone(), member(*owner)))
                .collect();
            let assignment = assign(&members, &partitions, &previous);
            for partition in &partitions {
                let subscribed = members.values().any(|topics| topics.contains(&partition.0));
                match assignment.get(partition) {
                    Some(owner) => prop_assert!(members[owner].contains(&partition.0)),
                    None => prop_assert!(!subscribed, "{partition:?} left unassigned"),
                }
            }
            prop_assert!(assignment.keys().all(|partition| partitions.contains(partition)));
            prop_assert_eq!(assign(&members, &partitions, &previous), assignment);
        }

        #[test]
        fn a_join_moves_at_most_the_new_members_share(
            before in 1usize..8,
            a in 0u32..20,
            b in 0u32..20,
        ) {
            let partitions = partitions_of(&[("a", a), ("b", b)]);
            let old = assign(&homogeneous(before), &partitions, &BTreeMap::new());
            let new = assign(&homogeneous(before + 1), &partitions, &old);
            let total = partitions.len();
            let share = total.div_ceil(before + 1);
            prop_assert!(moved(&old, &new) <= share, "{} moved, share {share}", moved(&old, &new));
            let counts = counts(&new);
            let (min, max) = (
                counts.values().copied().min().unwrap_or(0),
                counts.values().copied().max().unwrap_or(0),
            );
            let min = if counts.len() < before + 1 { 0 } else { min };
            prop_assert!(max - min <= 1, "unbalanced: {counts:?}");
        }

        #[test]
        fn a_leave_moves_only_the_leavers_partitions(
            before in 2usize..8,
            leaver in 0usize..8,
            a in 0u32..20,
            b in 0u32..20,
        ) {
            let leaver = member(leaver % before);
            let partitions = partitions_of(&[("a", a), ("b", b)]);
            let old = assign(&homogeneous(before), &partitions, &BTreeMap::new());
            let mut remaining = homogeneous(before);
            remaining.remove(&leaver);
            let new = assign(&remaining, &partitions, &old);
            for (partition, owner) in &old {
                if *owner != leaver {
                    prop_assert_eq!(new.get(partition), Some(owner), "{:?} moved", partition);
                }
            }
            prop_assert_eq!(new.len(), partitions.len());
        }
    }
}
