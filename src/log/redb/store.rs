//! redb tables and the read paths over them. Writes happen only in `writer`.
//!
//! Tables:
//! - `topics`: topic name → JSON `TopicConfig`.
//! - `partitions`: (topic, partition) → log start offset. The high watermark is not stored:
//!   it is the end of the last batch, found with one reverse range lookup per partition.
//! - `partition_bytes`: (topic, partition) → bytes of the partition's stored batches, kept
//!   up to date by every append and deletion so `retention_bytes` needs no scan.
//! - `batches`: (topic, partition, base offset) → encoded batch (`codec`).
//! - `idempotency`: (topic, key) → JSON `IdempotentReply`; `idempotency_expiry`:
//!   (created ms, topic, key) → () orders the keys by age so expiry never scans.
//! - `offsets`: (group, topic, partition) → (committed offset, commit time in ms): consumer
//!   groups' committed offsets, written by the same writer in the same group commits.
//!
//! Reads that return data take the partition's bounds from the same snapshot as the data
//! (the log start from `partitions`, the high watermark as published before the snapshot
//! was opened), so a read never skips records that retention removed meanwhile.

use redb::{ReadTransaction, ReadableTable, TableDefinition};

use super::codec::{self, DecodedRecord};
use crate::log::{
    CommittedOffset, FetchResult, GroupId, LogError, Offset, PartitionBounds, PartitionId,
    RecordPosition, RecordRun, StoredRecord, TopicConfig, TopicName,
};

pub(super) const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");
pub(super) const PARTITIONS: TableDefinition<(&str, u32), u64> = TableDefinition::new("partitions");
pub(super) const PARTITION_BYTES: TableDefinition<(&str, u32), u64> =
    TableDefinition::new("partition_bytes");
pub(super) const BATCHES: TableDefinition<(&str, u32, u64), &[u8]> =
    TableDefinition::new("batches");
pub(super) const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("idempotency");
pub(super) const IDEMPOTENCY_EXPIRY: TableDefinition<(i64, &str, &str), ()> =
    TableDefinition::new("idempotency_expiry");
pub(super) const OFFSETS: TableDefinition<(&str, &str, u32), (u64, i64)> =
    TableDefinition::new("offsets");

/// The stored answer to a publish that carried an `Idempotency-Key`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct IdempotentReply {
    pub created_ms: i64,
    pub positions: Vec<RecordPosition>,
    /// Hex SHA-256 of the request ([`crate::log::IdempotencyKey`]); absent in entries
    /// written before digests were kept, which replay without comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// What a partition looks like on disk when the server starts.
pub(super) struct PartitionTail {
    pub log_start_offset: u64,
    pub high_watermark: u64,
    /// Timestamp of the newest record, so appends keep timestamps non-decreasing.
    pub last_timestamp: i64,
    pub size_bytes: u64,
    /// False when the database predates `partition_bytes`: the size was counted by a scan
    /// and the writer stores it, once.
    pub size_recorded: bool,
    /// The oldest stored batch's length and summary, for retention.
    pub head: Option<(u64, codec::BatchSummary)>,
}

/// A topic as loaded at start, with the tail of every partition.
pub(super) struct LoadedTopic {
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionTail>,
}

pub(super) fn decode_config(bytes: &[u8]) -> Result<TopicConfig, LogError> {
    serde_json::from_slice(bytes).map_err(|err| LogError::corrupt(format!("topic config: {err}")))
}

/// Reads every topic and the tail of each partition: O(topics × partitions) lookups,
/// independent of how many records are stored.
pub(super) fn load_topics(txn: &ReadTransaction) -> Result<Vec<LoadedTopic>, LogError> {
    let topics = txn.open_table(TOPICS)?;
    let starts = txn.open_table(PARTITIONS)?;
    // Absent in a database from before it (`tidegate check` reads such a file unchanged).
    let sizes = match txn.open_table(PARTITION_BYTES) {
        Ok(sizes) => Some(sizes),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(err) => return Err(err.into()),
    };
    let batches = txn.open_table(BATCHES)?;
    let mut loaded = Vec::new();
    for entry in topics.iter()? {
        let (name, config) = entry?;
        let name = name.value().to_owned();
        let config = decode_config(config.value())?;
        let mut partitions = Vec::with_capacity(config.partitions as usize);
        for partition in 0..config.partitions {
            let log_start_offset = starts
                .get((name.as_str(), partition))?
                .map_or(0, |v| v.value());
            let range = (name.as_str(), partition, 0)..=(name.as_str(), partition, u64::MAX);
            let recorded = match &sizes {
                Some(sizes) => sizes.get((name.as_str(), partition))?.map(|v| v.value()),
                None => None,
            };
            let size_bytes = match recorded {
                Some(size) => size,
                None => {
                    let mut size = 0;
                    for entry in batches.range(range.clone())? {
                        size += entry?.1.value().len() as u64;
                    }
                    size
                }
            };
            let mut tail = PartitionTail {
                log_start_offset,
                high_watermark: log_start_offset,
                last_timestamp: i64::MIN,
                size_bytes,
                size_recorded: recorded.is_some(),
                head: None,
            };
            if let Some(first) = batches.range(range.clone())?.next() {
                let batch = first?.1;
                tail.head = Some((batch.value().len() as u64, codec::summary(batch.value())?));
            }
            let last = batches.range(range)?.next_back();
            if let Some(last) = last {
                let (key, batch) = last?;
                let records = codec::decode(batch.value())?;
                tail.high_watermark = tail
                    .high_watermark
                    .max(key.value().2 + records.len() as u64);
                if let Some(newest) = records.last() {
                    tail.last_timestamp = newest.timestamp;
                }
            }
            partitions.push(tail);
        }
        loaded.push(LoadedTopic {
            name,
            config,
            partitions,
        });
    }
    Ok(loaded)
}

/// The bounds of a partition as of this snapshot: its log start from the snapshot, and
/// `high_watermark` as published before the snapshot opened. A partition the snapshot does
/// not have (the topic was deleted meanwhile) is [`LogError::PartitionNotFound`].
fn snapshot_bounds(
    txn: &ReadTransaction,
    topic: &TopicName,
    partition: PartitionId,
    high_watermark: Offset,
) -> Result<PartitionBounds, LogError> {
    let starts = txn.open_table(PARTITIONS)?;
    let log_start = starts
        .get((topic.as_str(), partition.get()))?
        .map(|start| start.value())
        .ok_or_else(|| LogError::PartitionNotFound {
            topic: topic.clone(),
            partition,
        })?;
    Ok(PartitionBounds {
        log_start_offset: Offset::new(log_start),
        high_watermark,
    })
}

/// What a fetch wants from one partition.
pub(super) struct ReadRequest<'a> {
    pub topic: &'a TopicName,
    pub partition: PartitionId,
    /// First offset wanted; `None` is the log start.
    pub from: Option<Offset>,
    /// The high watermark published before the snapshot was opened: every offset below it
    /// is committed and in the snapshot.
    pub high_watermark: Offset,
    pub max_records: usize,
    pub max_bytes: usize,
}

/// Reads committed records of one partition in `[from, high_watermark)`, stopping at
/// `max_records` or once `max_bytes` of payload is collected (the first record is always
/// returned so an oversized record cannot stall a reader). `from` outside
/// `[log start, high watermark]` is [`LogError::OffsetOutOfRange`], with the log start of
/// this very snapshot.
pub(super) fn read_partition(
    txn: &ReadTransaction,
    request: &ReadRequest<'_>,
) -> Result<FetchResult, LogError> {
    let bounds = snapshot_bounds(
        txn,
        request.topic,
        request.partition,
        request.high_watermark,
    )?;
    let from = request.from.unwrap_or(bounds.log_start_offset);
    if !bounds.contains(from) {
        return Err(bounds.out_of_range(from));
    }
    let (topic, partition) = (request.topic.as_str(), request.partition.get());
    let (from, high_watermark) = (from.get(), bounds.high_watermark.get());
    let mut records = Vec::new();
    if from < high_watermark {
        let batches = txn.open_table(BATCHES)?;
        let mut bytes = 0usize;
        // The batch holding `from` is the last one whose base offset is at or below it.
        let first_base = match batches
            .range((topic, partition, 0)..=(topic, partition, from))?
            .next_back()
        {
            Some(entry) => entry?.0.value().2,
            None => from,
        };
        'batches: for entry in
            batches.range((topic, partition, first_base)..(topic, partition, high_watermark))?
        {
            let (key, batch) = entry?;
            let base = key.value().2;
            for (offset, record) in (base..).zip(codec::decode(batch.value())?) {
                if offset < from {
                    continue;
                }
                if offset >= high_watermark || records.len() >= request.max_records {
                    break 'batches;
                }
                let size = payload_len(&record);
                if !records.is_empty() && bytes + size > request.max_bytes {
                    break 'batches;
                }
                bytes += size;
                records.push(to_stored(request.partition, offset, record));
            }
        }
        // Dense offsets: a gap means the snapshot lost batches the bounds promise.
        if let Some(first) = records.first()
            && first.offset.get() != from
        {
            return Err(LogError::corrupt(format!(
                "{topic}/{partition}: offset {from} missing, next stored is {}",
                first.offset
            )));
        }
    }
    Ok(FetchResult {
        next_offset: Offset::new(records.last().map_or(from, |r| r.offset.get() + 1)),
        records,
        bounds,
    })
}

/// Whole batches of one partition from the one holding `from` on, below `high_watermark`,
/// until at least `min_records` records from `from` on are read; for the push cache, which
/// keeps whole batches. `from` outside this snapshot's bounds is
/// [`LogError::OffsetOutOfRange`].
pub(super) fn read_batches(
    txn: &ReadTransaction,
    topic_name: &TopicName,
    partition_id: PartitionId,
    from: Offset,
    high_watermark: Offset,
    min_records: usize,
) -> Result<Vec<RecordRun>, LogError> {
    let bounds = snapshot_bounds(txn, topic_name, partition_id, high_watermark)?;
    if !bounds.contains(from) {
        return Err(bounds.out_of_range(from));
    }
    let (topic, partition) = (topic_name.as_str(), partition_id.get());
    let (from, high_watermark) = (from.get(), high_watermark.get());
    let batches = txn.open_table(BATCHES)?;
    let first_base = match batches
        .range((topic, partition, 0)..=(topic, partition, from))?
        .next_back()
    {
        Some(entry) => entry?.0.value().2,
        None => from,
    };
    let mut read = Vec::new();
    let mut wanted = 0usize;
    let mut expected = first_base;
    for entry in
        batches.range((topic, partition, first_base)..(topic, partition, high_watermark))?
    {
        let (key, batch) = entry?;
        let base = key.value().2;
        if base != expected {
            return Err(LogError::corrupt(format!(
                "{topic}/{partition}: a batch starts at {base}, {expected} was expected"
            )));
        }
        let records: Vec<StoredRecord> = (base..)
            .zip(codec::decode(batch.value())?)
            .map(|(offset, record)| to_stored(partition_id, offset, record))
            .collect();
        expected = base + records.len() as u64;
        wanted += records.iter().filter(|r| r.offset.get() >= from).count();
        read.push(RecordRun {
            start: Offset::new(base),
            end: Offset::new(expected),
            records,
        });
        if wanted >= min_records {
            break;
        }
    }
    Ok(read)
}

fn payload_len(record: &DecodedRecord<'_>) -> usize {
    crate::log::payload_len(record.key, record.value, record.headers.iter().copied())
}

fn to_stored(partition: PartitionId, offset: u64, record: DecodedRecord<'_>) -> StoredRecord {
    StoredRecord {
        partition,
        offset: Offset::new(offset),
        timestamp: record.timestamp,
        key: record.key.map(str::to_owned),
        key_encoding: None,
        value: record.value.into(),
        value_encoding: None,
        headers: record
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        headers_base64: Vec::new(),
    }
}

/// The first offset in `[log start, high_watermark)` whose record timestamp is at or after
/// `timestamp`, with that timestamp; the log start is this snapshot's. Timestamps never
/// decrease within a partition (the writer clamps them), so a binary search over offsets
/// finds it in O(log n) lookups.
pub(super) fn offset_for_timestamp(
    txn: &ReadTransaction,
    topic_name: &TopicName,
    partition_id: PartitionId,
    high_watermark: Offset,
    timestamp: i64,
) -> Result<Option<(Offset, i64)>, LogError> {
    let bounds = snapshot_bounds(txn, topic_name, partition_id, high_watermark)?;
    let (topic, partition) = (topic_name.as_str(), partition_id.get());
    let batches = txn.open_table(BATCHES)?;
    let timestamp_at = |offset: u64| -> Result<i64, LogError> {
        let entry = batches
            .range((topic, partition, 0)..=(topic, partition, offset))?
            .next_back()
            .ok_or_else(|| LogError::corrupt(format!("no batch holds offset {offset}")))?;
        let (key, batch) = entry?;
        let records = codec::decode(batch.value())?;
        let index = usize::try_from(offset - key.value().2).map_err(|_| missing(offset))?;
        records
            .get(index)
            .map(|r| r.timestamp)
            .ok_or_else(|| missing(offset))
    };
    let high_watermark = high_watermark.get();
    // Invariant: every offset below `low` is too old; `high` is a candidate or the end.
    let (mut low, mut high) = (bounds.log_start_offset.get(), high_watermark);
    while low < high {
        let mid = low + (high - low) / 2;
        if timestamp_at(mid)? >= timestamp {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    if low >= high_watermark {
        return Ok(None);
    }
    Ok(Some((Offset::new(low), timestamp_at(low)?)))
}

/// Every committed offset of `group`, in (topic, partition) order.
pub(super) fn committed_offsets(
    txn: &ReadTransaction,
    group: &str,
) -> Result<Vec<CommittedOffset>, LogError> {
    let offsets = txn.open_table(OFFSETS)?;
    let mut committed = Vec::new();
    for entry in offsets.range((group, "", 0)..=(group, "\u{10ffff}", u32::MAX))? {
        let (key, value) = entry?;
        let (_, topic, partition) = key.value();
        let (offset, committed_at_ms) = value.value();
        committed.push(CommittedOffset {
            topic: TopicName::parse(topic)
                .map_err(|_| LogError::corrupt(format!("offsets of {group}: topic name")))?,
            partition: PartitionId::new(partition),
            offset: Offset::new(offset),
            committed_at_ms,
        });
    }
    Ok(committed)
}

/// Every group with a committed offset: one seek per group, not one step per offset.
pub(super) fn offset_groups(txn: &ReadTransaction) -> Result<Vec<GroupId>, LogError> {
    let offsets = txn.open_table(OFFSETS)?;
    let mut groups = Vec::new();
    let mut after = String::new();
    loop {
        // Group names never hold NUL, so `name\0` sorts right after every key of `name`.
        let next = offsets.range((after.as_str(), "", 0)..)?.next();
        let Some(entry) = next else {
            return Ok(groups);
        };
        let (key, _) = entry?;
        let group = key.value().0.to_owned();
        groups
            .push(GroupId::parse(&group).map_err(|_| LogError::corrupt("offsets: a group name"))?);
        after = format!("{group}\0");
    }
}

fn missing(offset: u64) -> LogError {
    LogError::corrupt(format!("offset {offset} missing from its batch"))
}
