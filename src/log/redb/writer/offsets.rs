//! Consumer-group offsets: commits and deletions, in the same group commits as records,
//! so an acknowledged commit is as durable as an acknowledged record.

use super::{Change, Reply, Staging, settle};
use crate::log::{CommittedOffset, GroupId, LogError};

/// Stores committed offsets of one group, all or none.
pub(in crate::log::redb) struct CommitOffsets {
    pub group: GroupId,
    pub offsets: Vec<CommittedOffset>,
    /// May be answered before it is durable (`OffsetStore::commit_offsets_lazily`).
    pub lazy: bool,
    pub reply: Reply<()>,
    pub staged: bool,
}

impl Change for CommitOffsets {
    fn stage(&mut self, staging: &mut Staging<'_, '_>) -> Result<(), LogError> {
        // Offsets go with their topic (deleting it deletes them), so a commit for a topic
        // or partition that does not exist is refused; the range of each offset is the
        // coordinator's to check. Every offset is checked before any is written.
        for committed in &self.offsets {
            let topic = staging
                .state
                .topics
                .get(committed.topic.as_str())
                .ok_or_else(|| LogError::TopicNotFound(committed.topic.clone()))?;
            if committed.partition.get() >= topic.config.partitions {
                return Err(LogError::PartitionNotFound {
                    topic: committed.topic.clone(),
                    partition: committed.partition,
                });
            }
        }
        for committed in &self.offsets {
            staging.tables.offsets.insert(
                (
                    self.group.as_str(),
                    committed.topic.as_str(),
                    committed.partition.get(),
                ),
                (committed.offset.get(), staging.now),
            )?;
        }
        self.staged = true;
        Ok(())
    }

    fn answer(self: Box<Self>, result: Result<(), LogError>) {
        settle(self.reply, self.staged.then_some(()), result);
    }

    fn durable_later(&self) -> bool {
        self.lazy
    }
}

/// Forgets every committed offset of one group.
pub(in crate::log::redb) struct DeleteOffsets {
    pub group: GroupId,
    pub reply: Reply<bool>,
    pub deleted: Option<bool>,
}

impl Change for DeleteOffsets {
    fn stage(&mut self, staging: &mut Staging<'_, '_>) -> Result<(), LogError> {
        let group = self.group.as_str();
        let mut any = false;
        staging.tables.offsets.retain_in(
            (group, "", 0)..=(group, "\u{10ffff}", u32::MAX),
            |_, _| {
                any = true;
                false
            },
        )?;
        self.deleted = Some(any);
        Ok(())
    }

    fn answer(self: Box<Self>, result: Result<(), LogError>) {
        settle(self.reply, self.deleted, result);
    }
}
