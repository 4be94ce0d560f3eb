//! Consumer-group offsets: commits and deletions, in the same group commits as records,
//! so an acknowledged commit is as durable as an acknowledged record.

use super::{Change, Reply, Staging, settle};
use crate::log::LogError;
use crate::log::types::{CommittedOffset, GroupId};

/// Stores committed offsets of one group, all or none.
pub(in crate::log) struct CommitOffsets {
    pub group: GroupId,
    pub offsets: Vec<CommittedOffset>,
    pub reply: Reply<()>,
    pub staged: bool,
}

impl Change for CommitOffsets {
    fn stage(&mut self, staging: &mut Staging<'_, '_>) -> Result<(), LogError> {
        // Validate every offset before writing any.
        for committed in &self.offsets {
            let name = committed.topic.as_str();
            let topic = staging
                .state
                .topics
                .get(name)
                .ok_or_else(|| LogError::TopicNotFound(name.to_owned()))?;
            let partition = committed.partition.get();
            let state = topic.partitions.get(partition as usize).ok_or_else(|| {
                LogError::PartitionNotFound {
                    topic: name.to_owned(),
                    partition,
                }
            })?;
            // Committing the high watermark means "all read"; beyond it nothing exists.
            if committed.offset.get() > state.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset: committed.offset.get(),
                    log_start_offset: state.log_start_offset,
                    high_watermark: state.next_offset,
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
}

/// Forgets every committed offset of one group.
pub(in crate::log) struct DeleteOffsets {
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
