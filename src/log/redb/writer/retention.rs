//! Retention: deletes a partition's oldest batches once they are older than the topic's
//! `retention_ms` or lie beyond its newest `retention_bytes`, and advances the partition's
//! log start in the same transaction, so no reader ever sees a gap without a moved start.

use redb::ReadableTable;

use super::{BatchHead, Change, Reply, Staging, Tables, WriterPartition, settle};
use crate::log::LogError;
use crate::log::redb::codec;

/// Batches deleted per commit at most, so a large deletion never holds publishes back for
/// long: the retention task sends another pass right away while work remains.
const BATCHES_PER_COMMIT: usize = 1024;

/// What one retention pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(in crate::log::redb) struct RetentionOutcome {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    /// The pass stopped at its work bound: more batches may be due.
    pub more: bool,
}

/// One pass over every topic with a finite retention.
pub(in crate::log::redb) struct Retention {
    reply: Reply<RetentionOutcome>,
    outcome: Option<RetentionOutcome>,
}

impl Retention {
    pub fn new(reply: Reply<RetentionOutcome>) -> Retention {
        Retention {
            reply,
            outcome: None,
        }
    }
}

impl Change for Retention {
    fn stage(&mut self, staging: &mut Staging<'_, '_>) -> Result<(), LogError> {
        // Sizes and bounds must include the appends staged before this pass.
        staging.flush_batches()?;
        let mut outcome = RetentionOutcome::default();
        let mut budget = BATCHES_PER_COMMIT;
        let mut names: Vec<String> = staging.state.topics.keys().cloned().collect();
        names.sort_unstable();
        'topics: for name in names {
            let Some(topic) = staging.state.topics.get_mut(&name) else {
                continue;
            };
            let rule = Rule {
                cutoff_ms: (topic.config.retention_ms >= 0)
                    .then(|| staging.now.saturating_sub(topic.config.retention_ms)),
                keep_bytes: u64::try_from(topic.config.retention_bytes).ok(),
            };
            if rule.cutoff_ms.is_none() && rule.keep_bytes.is_none() {
                continue;
            }
            for (partition, state) in (0u32..).zip(topic.partitions.iter_mut()) {
                // Decided in memory: a pass reads only the partitions it deletes from.
                if !state
                    .head
                    .is_some_and(|head| rule.is_due(head, state.size_bytes))
                {
                    continue;
                }
                if budget == 0 {
                    outcome.more = true;
                    break 'topics;
                }
                let trimmed = trim(staging.tables, &name, partition, state, rule, budget)?;
                if trimmed.batches > 0 {
                    budget -= trimmed.batches as usize;
                    outcome.batches += trimmed.batches;
                    outcome.records += trimmed.records;
                    outcome.bytes += trimmed.bytes;
                    outcome.more |= trimmed.more;
                    staging.touched.push((name.clone(), partition));
                }
            }
        }
        self.outcome = Some(outcome);
        Ok(())
    }

    fn answer(self: Box<Self>, result: Result<(), LogError>) {
        settle(self.reply, self.outcome, result);
    }

    fn wrote(&self) -> bool {
        self.outcome.is_some_and(|outcome| outcome.batches > 0)
    }
}

/// When a batch is due, for one topic.
#[derive(Clone, Copy)]
struct Rule {
    /// Batches whose newest record is older than this (ms since the epoch) are due.
    cutoff_ms: Option<i64>,
    /// A batch is due when the newer batches alone hold at least this many bytes
    /// (Kafka's `retention.bytes` rule: the newest bytes are kept, never fewer).
    keep_bytes: Option<u64>,
}

impl Rule {
    /// Whether the oldest batch `head` goes, in a partition of `size` bytes.
    fn is_due(&self, head: BatchHead, size: u64) -> bool {
        let expired = self
            .cutoff_ms
            .is_some_and(|cutoff| head.newest_timestamp < cutoff);
        let beyond_size = self
            .keep_bytes
            .is_some_and(|keep| size.checked_sub(head.len).is_some_and(|rest| rest >= keep));
        expired || beyond_size
    }
}

/// Deletes the due batches at the start of one partition, at most `budget` of them, and
/// stores its new log start and size; the next batch becomes the partition's head.
fn trim(
    tables: &mut Tables<'_>,
    topic: &str,
    partition: u32,
    state: &mut WriterPartition,
    rule: Rule,
    budget: usize,
) -> Result<RetentionOutcome, LogError> {
    let mut trimmed = RetentionOutcome::default();
    let mut due = Vec::new();
    let mut size = state.size_bytes;
    let mut log_start = state.log_start_offset;
    let mut head = None;
    for entry in tables
        .batches
        .range((topic, partition, 0)..(topic, partition, state.next_offset))?
        .take(budget + 1)
    {
        let (key, batch) = entry?;
        let summary = codec::summary(batch.value())?;
        let batch_head = BatchHead {
            len: batch.value().len() as u64,
            newest_timestamp: summary.newest_timestamp,
        };
        if due.len() == budget || !rule.is_due(batch_head, size) {
            head = Some(batch_head);
            break;
        }
        let base = key.value().2;
        size -= batch_head.len;
        log_start = base + u64::from(summary.record_count);
        trimmed.records += u64::from(summary.record_count);
        trimmed.bytes += batch_head.len;
        due.push(base);
    }
    trimmed.batches = due.len() as u64;
    trimmed.more = due.len() == budget && head.is_some();
    for base in due {
        tables.batches.remove((topic, partition, base))?;
    }
    tables.partitions.insert((topic, partition), log_start)?;
    tables.partition_bytes.insert((topic, partition), size)?;
    state.log_start_offset = log_start;
    state.size_bytes = size;
    state.head = head;
    Ok(trimmed)
}
