//! Appends: records of one publish request, all or nothing, with idempotency keys.

use redb::ReadableTable;

use super::{Change, Reply, Staging, settle};
use crate::log::redb::store::IdempotentReply;
use crate::log::{
    AppendOutcome, AppendRequest, IdempotencyKey, LogError, Offset, RecordPosition, TopicName,
};

/// Expired idempotency keys removed per commit, so expiry never makes one commit slow.
const IDEMPOTENCY_PRUNE_PER_COMMIT: usize = 256;

/// Appends the records of one request to a topic.
pub(in crate::log::redb) struct Append {
    pub topic: TopicName,
    pub request: AppendRequest,
    pub reply: Reply<AppendOutcome>,
    pub outcome: Option<AppendOutcome>,
}

impl Change for Append {
    fn payload_len(&self) -> usize {
        self.request.records.iter().map(|r| r.payload_len()).sum()
    }

    fn needs_room(&self) -> bool {
        true
    }

    fn stage(&mut self, staging: &mut Staging<'_, '_>) -> Result<(), LogError> {
        let outcome = match replay(staging, &self.topic, self.request.idempotency.as_ref())? {
            Some(replayed) => replayed,
            None => stage_records(staging, &self.topic, &self.request)?,
        };
        if !outcome.replayed {
            let mut touched: Vec<u32> = outcome
                .positions
                .iter()
                .map(|p| p.partition.get())
                .collect();
            touched.sort_unstable();
            touched.dedup();
            staging.touched.extend(
                touched
                    .into_iter()
                    .map(|p| (self.topic.as_str().to_owned(), p)),
            );
        }
        self.outcome = Some(outcome);
        Ok(())
    }

    fn answer(self: Box<Self>, result: Result<(), LogError>) {
        settle(self.reply, self.outcome, result);
    }
}

/// The stored answer when `key` was seen within the window with the same request; a
/// refusal when it came with a different one.
fn replay(
    staging: &mut Staging<'_, '_>,
    topic: &TopicName,
    key: Option<&IdempotencyKey>,
) -> Result<Option<AppendOutcome>, LogError> {
    if !staging.state.topics.contains_key(topic.as_str()) {
        return Err(LogError::TopicNotFound(topic.clone()));
    }
    let Some(key) = key else {
        return Ok(None);
    };
    let Some(stored) = staging
        .tables
        .idempotency
        .get((topic.as_str(), key.key.as_str()))?
    else {
        return Ok(None);
    };
    let stored: IdempotentReply = serde_json::from_slice(stored.value())
        .map_err(|err| LogError::corrupt(format!("idempotency entry: {err}")))?;
    if staging.now.saturating_sub(stored.created_ms) >= staging.state.idempotency_window_ms {
        return Ok(None);
    }
    if stored
        .digest
        .is_some_and(|digest| digest != hex::encode(key.digest))
    {
        return Err(LogError::IdempotencyKeyReused);
    }
    Ok(Some(AppendOutcome {
        positions: stored.positions,
        replayed: true,
    }))
}

fn stage_records(
    staging: &mut Staging<'_, '_>,
    topic_name: &TopicName,
    request: &AppendRequest,
) -> Result<AppendOutcome, LogError> {
    let name = topic_name.as_str();
    let topic = staging
        .state
        .topics
        .get_mut(name)
        .ok_or_else(|| LogError::TopicNotFound(topic_name.clone()))?;
    // Partitions are chosen above the log; check them all before changing anything.
    if let Some(record) = request
        .records
        .iter()
        .find(|record| record.partition.get() >= topic.config.partitions)
    {
        return Err(LogError::PartitionNotFound {
            topic: topic_name.clone(),
            partition: record.partition,
        });
    }

    let mut positions = Vec::with_capacity(request.records.len());
    for record in &request.records {
        let partition = record.partition.get();
        let state = &mut topic.partitions[partition as usize];
        let offset = state.next_offset;
        state.next_offset += 1;
        // Timestamps never go backwards within a partition, even if the clock does;
        // offset-by-timestamp lookups rely on it.
        state.last_timestamp = state.last_timestamp.max(staging.now);
        let timestamp = state.last_timestamp;
        staging
            .batches
            .for_partition(name, partition, offset, timestamp)
            .push(
                timestamp,
                record.key.as_deref(),
                record.value.get(),
                &record.headers,
            );
        positions.push(RecordPosition {
            partition: record.partition,
            offset: Offset::new(offset),
        });
    }

    if let Some(key) = &request.idempotency {
        let reply = IdempotentReply {
            created_ms: staging.now,
            positions: positions.clone(),
            digest: Some(hex::encode(key.digest)),
        };
        let encoded = serde_json::to_vec(&reply)
            .map_err(|err| LogError::corrupt(format!("encoding idempotency entry: {err}")))?;
        let tables = &mut staging.tables;
        tables
            .idempotency
            .insert((name, key.key.as_str()), encoded.as_slice())?;
        tables
            .idempotency_expiry
            .insert((staging.now, name, key.key.as_str()), ())?;
    }
    Ok(AppendOutcome {
        positions,
        replayed: false,
    })
}

/// Forgets a bounded number of keys older than the window; runs once per commit.
pub(super) fn prune_idempotency(staging: &mut Staging<'_, '_>) -> Result<(), LogError> {
    let cutoff = staging
        .now
        .saturating_sub(staging.state.idempotency_window_ms);
    let tables = &mut staging.tables;
    let mut expired = Vec::new();
    for entry in tables
        .idempotency_expiry
        .range((i64::MIN, "", "")..(cutoff, "", ""))?
        .take(IDEMPOTENCY_PRUNE_PER_COMMIT)
    {
        let (key, _) = entry?;
        let (created, topic, key) = key.value();
        expired.push((created, topic.to_owned(), key.to_owned()));
    }
    for (created, topic, key) in expired {
        tables
            .idempotency_expiry
            .remove((created, topic.as_str(), key.as_str()))?;
        // The key may have been reused after it expired; only drop the entry it indexes.
        let same_entry = match tables.idempotency.get((topic.as_str(), key.as_str()))? {
            Some(stored) => serde_json::from_slice::<IdempotentReply>(stored.value())
                .is_ok_and(|stored| stored.created_ms == created),
            None => false,
        };
        if same_entry {
            tables.idempotency.remove((topic.as_str(), key.as_str()))?;
        }
    }
    Ok(())
}
