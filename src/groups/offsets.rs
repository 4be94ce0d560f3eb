//! Committing and seeking: fenced under the group's lock, checked against the partitions'
//! bounds and written with the lock released.

use std::time::Instant;

use super::coordinator::{Coordinator, now_ms, unknown_member};
use super::{CommitRequest, GroupError, SeekTarget};
use crate::log::{CommittedOffset, GroupId, Offset, PartitionId, TopicName};

impl Coordinator {
    pub(super) async fn commit_offsets(
        &self,
        group: &GroupId,
        request: CommitRequest,
    ) -> Result<(), GroupError> {
        if request.offsets.is_empty() {
            return Err(GroupError::Invalid("offsets must not be empty".into()));
        }
        if request.member.is_none() {
            self.admit_group(group).await?;
        }
        let entry = self.group(group);
        {
            let mut state = entry.state.lock().await;
            self.settle(&entry, &mut state, false);
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
                        return Err(unknown_member(group, member));
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
                                topic: topic.clone(),
                                partition: *partition,
                                member: member.clone(),
                            });
                        }
                    }
                    if let Some(live) = state.members.get_mut(member) {
                        live.touch(Instant::now(), now_ms());
                    }
                }
            }
        }
        self.check_offsets(&request.offsets).await?;
        self.offsets
            .commit_offsets(group, committed(request.offsets))
            .await?;
        Ok(())
    }

    pub(super) async fn seek_offsets(
        &self,
        group: &GroupId,
        topic: &TopicName,
        target: SeekTarget,
    ) -> Result<Vec<(PartitionId, Offset)>, GroupError> {
        let meta = self.log.topic_meta(topic).await?;
        let all: Vec<PartitionId> = (0..meta.partitions).map(PartitionId::new).collect();
        let offsets: Vec<(PartitionId, Offset)> = match target {
            SeekTarget::Earliest => {
                let bounds = self.log.bounds(topic, &all).await?;
                all.into_iter()
                    .zip(bounds)
                    .map(|(p, b)| (p, b.log_start_offset))
                    .collect()
            }
            SeekTarget::Latest => {
                let bounds = self.log.bounds(topic, &all).await?;
                all.into_iter()
                    .zip(bounds)
                    .map(|(p, b)| (p, b.high_watermark))
                    .collect()
            }
            SeekTarget::Timestamp(timestamp) => {
                let mut found = Vec::with_capacity(all.len());
                for partition in all {
                    let at = self
                        .log
                        .offset_for_timestamp(topic, partition, timestamp)
                        .await?;
                    found.push((partition, at.offset));
                }
                found
            }
            SeekTarget::Offsets(offsets) => {
                if offsets.is_empty() {
                    return Err(GroupError::Invalid("offsets must not be empty".into()));
                }
                let named: Vec<(TopicName, PartitionId, Offset)> = offsets
                    .iter()
                    .map(|(partition, offset)| (topic.clone(), *partition, *offset))
                    .collect();
                self.check_offsets(&named).await?;
                offsets
            }
        };
        self.admit_group(group).await?;
        let moved: Vec<(TopicName, PartitionId, Offset)> = offsets
            .iter()
            .map(|(partition, offset)| (topic.clone(), *partition, *offset))
            .collect();
        let entry = self.group(group);
        let _alone = entry.commits.write().await;
        self.offsets.commit_offsets(group, committed(moved)).await?;
        // After the commit: a poll that read the committed offsets before it landed sees
        // the epoch move and reads them again.
        let mut state = entry.state.lock().await;
        let partitions = offsets
            .iter()
            .map(|(partition, _)| (topic.clone(), *partition))
            .collect();
        state.forget_positions(&partitions);
        Ok(offsets)
    }
}

fn committed(offsets: Vec<(TopicName, PartitionId, Offset)>) -> Vec<CommittedOffset> {
    offsets
        .into_iter()
        .map(|(topic, partition, offset)| CommittedOffset {
            topic,
            partition,
            offset,
            committed_at_ms: 0,
        })
        .collect()
}
