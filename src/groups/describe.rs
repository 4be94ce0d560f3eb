//! Reading groups: descriptions and the list. Neither changes a group: members whose
//! session ran out stay until maintenance expires them (within a second), so looking at a
//! group (the console, a metrics scrape) never rebalances it.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::TopicPartition;
use super::coordinator::{Coordinator, Group};
use super::{
    Generation, GroupDescription, GroupError, GroupPhase, GroupSummary, MemberDescription,
    MemberId, PartitionProgress,
};
use crate::log::{GroupId, Offset};

impl Coordinator {
    pub(super) async fn describe_group(
        &self,
        group: &GroupId,
    ) -> Result<GroupDescription, GroupError> {
        let committed = self.offsets.committed_offsets(group).await?;
        let (generation, members, assignment) = match self.existing(group) {
            Some(entry) => read_members(&entry).await,
            None => (Generation::default(), Vec::new(), BTreeMap::new()),
        };
        if members.is_empty() && committed.is_empty() {
            return Err(GroupError::GroupNotFound(group.clone()));
        }
        let committed: BTreeMap<TopicPartition, Offset> = committed
            .into_iter()
            .map(|c| ((c.topic, c.partition), c.offset))
            .collect();
        let partitions: Vec<TopicPartition> = assignment
            .keys()
            .chain(committed.keys())
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut progress = Vec::new();
        for (topic, bounds) in self.bounds_by_topic(&partitions).await? {
            for (partition, bounds) in bounds {
                let key = (topic.clone(), partition);
                let committed = committed.get(&key).copied();
                progress.push(PartitionProgress {
                    member: assignment.get(&key).cloned(),
                    topic: topic.clone(),
                    partition,
                    committed,
                    log_start_offset: bounds.log_start_offset,
                    high_watermark: bounds.high_watermark,
                    lag: committed.map(|c| bounds.high_watermark.distance_from(c)),
                });
            }
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

    pub(super) async fn list_groups(&self) -> Result<Vec<GroupSummary>, GroupError> {
        let mut summaries: BTreeMap<GroupId, GroupSummary> = self
            .offsets
            .offset_groups()
            .await?
            .into_iter()
            .map(|group| {
                let summary = GroupSummary {
                    group: group.clone(),
                    phase: GroupPhase::Empty,
                    generation: Generation::default(),
                    members: 0,
                };
                (group, summary)
            })
            .collect();
        let live: Vec<(GroupId, std::sync::Arc<Group>)> = self
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
}

/// The group's generation, members and assignment as they are now.
async fn read_members(
    entry: &Group,
) -> (
    Generation,
    Vec<MemberDescription>,
    BTreeMap<TopicPartition, MemberId>,
) {
    let state = entry.state.lock().await;
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
        .collect();
    (state.generation, members, state.assignment.clone())
}
