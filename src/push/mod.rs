//! Push delivery shared by WebSocket and Server-Sent Events: where a subscription stands
//! (its positions, and the cursor that encodes them), and the next records for it, read
//! through the shared cache of encoded runs (`cache`). No transport here, and nothing of a
//! backend: the log is reached only through [`EventLog`].
//!
//! # Cursor
//! A cursor is the next offset to deliver for every partition of a subscription, written
//! `0-42.1-17.2-0` (partition `-` offset, `.` between partitions): URL-, header- and
//! SSE-id-safe, and the same for WebSocket `records` messages and SSE event ids. Resuming
//! from a cursor delivers exactly the records after it. Partitions a cursor does not name
//! (added since) start at their log start, so nothing is skipped.
//!
//! # Delivery
//! Records of a partition always go out in offset order. A read takes partitions in a
//! rotating order, so a busy partition cannot starve the others, and stops at the frame
//! limits. A position the log no longer holds (retention removed it, or the topic was
//! recreated) is not skipped silently: the read reports [`Gap`] with the earliest offset
//! still there, and moves the position to it.

mod cache;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, select_all};
use tokio::sync::watch;

pub use cache::EncodedSlice;
use cache::{EncodedRead, EncodedRun, RunCache};

use crate::log::{EventLog, LogError, Offset, PartitionBounds, PartitionId, TopicId, TopicName};

/// Why a cursor does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid cursor: {0}")]
pub struct CursorError(&'static str);

/// Where a subscription starts.
#[derive(Clone, Debug)]
pub enum Start {
    /// Only records published from now on.
    Latest,
    /// Everything still stored.
    Earliest,
    /// These partitions at these offsets; the others at the latest.
    Offsets(BTreeMap<PartitionId, Offset>),
    /// Right after what a cursor says was delivered.
    Cursor(Positions),
}

/// The next offset to deliver, per partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Positions(BTreeMap<PartitionId, Offset>);

impl Positions {
    pub fn new(positions: BTreeMap<PartitionId, Offset>) -> Positions {
        Positions(positions)
    }

    /// The encoded cursor.
    pub fn cursor(&self) -> String {
        let mut cursor = String::with_capacity(self.0.len() * 8);
        for (i, (partition, offset)) in self.0.iter().enumerate() {
            if i > 0 {
                cursor.push('.');
            }
            let _ = write!(cursor, "{partition}-{offset}");
        }
        cursor
    }

    pub fn parse_cursor(cursor: &str) -> Result<Positions, CursorError> {
        let mut positions = BTreeMap::new();
        if cursor.len() > 64 * 1024 {
            return Err(CursorError("longer than 64 KiB"));
        }
        for pair in cursor.split('.').filter(|pair| !pair.is_empty()) {
            let (partition, offset) = pair
                .split_once('-')
                .ok_or(CursorError("expected PARTITION-OFFSET pairs"))?;
            let partition = partition
                .parse::<u32>()
                .map_err(|_| CursorError("a partition is not a number"))?;
            let offset = offset
                .parse::<u64>()
                .ok()
                .and_then(|offset| Offset::parse(offset).ok())
                .ok_or(CursorError("an offset is not a valid offset"))?;
            // A partition named twice resumes from the earlier offset: nothing is skipped.
            positions
                .entry(PartitionId::new(partition))
                .and_modify(|earlier: &mut Offset| *earlier = (*earlier).min(offset))
                .or_insert(offset);
        }
        Ok(Positions(positions))
    }

    pub fn get(&self, partition: PartitionId) -> Option<Offset> {
        self.0.get(&partition).copied()
    }

    pub fn set(&mut self, partition: PartitionId, offset: Offset) {
        self.0.insert(partition, offset);
    }

    pub fn partitions(&self) -> impl Iterator<Item = PartitionId> + '_ {
        self.0.keys().copied()
    }
}

/// The positions `start` means for `partitions` of `topic` (all of them when `None`).
pub async fn resolve(
    log: &dyn EventLog,
    topic: &TopicName,
    partitions: Option<&[PartitionId]>,
    start: &Start,
) -> Result<Positions, LogError> {
    let meta = log.topic_meta(topic).await?;
    let chosen: Vec<PartitionId> = match partitions {
        Some(chosen) => {
            if let Some(missing) = chosen.iter().find(|p| p.get() >= meta.partitions) {
                return Err(LogError::PartitionNotFound {
                    topic: topic.clone(),
                    partition: *missing,
                });
            }
            chosen.to_vec()
        }
        None => (0..meta.partitions).map(PartitionId::new).collect(),
    };
    let bounds = log.bounds(topic, &chosen).await?;
    let mut positions = BTreeMap::new();
    for (partition, bounds) in chosen.into_iter().zip(bounds) {
        let offset = match start {
            Start::Latest => bounds.high_watermark,
            Start::Earliest => bounds.log_start_offset,
            Start::Offsets(offsets) => offsets
                .get(&partition)
                .copied()
                .unwrap_or(bounds.high_watermark),
            Start::Cursor(cursor) => cursor.get(partition).unwrap_or(bounds.log_start_offset),
        };
        positions.insert(partition, offset);
    }
    Ok(Positions(positions))
}

/// The log behind push delivery and the cache of encoded runs every subscriber shares.
pub struct PushReader {
    log: Arc<dyn EventLog>,
    cache: RunCache,
}

impl PushReader {
    /// A reader over `log` whose cache holds about `cache_bytes` of encoded records.
    pub fn new(log: Arc<dyn EventLog>, cache_bytes: usize) -> PushReader {
        PushReader {
            log,
            cache: RunCache::new(cache_bytes),
        }
    }

    /// Forgets what the cache holds of a deleted topic.
    pub fn forget(&self, topic: TopicId) {
        self.cache.forget(topic);
    }

    /// Committed records of a partition from `from` on, as the JSON every push transport
    /// sends: up to `max_records` records and about `max_bytes` bytes. Cached runs are
    /// served while they last; a miss reads runs from the log (one loader per partition;
    /// the readers behind it find the cache filled). `from` outside the partition's bounds
    /// is [`LogError::OffsetOutOfRange`]: the cache may still hold runs retention deleted,
    /// and a reader below the log start is told where it starts instead.
    async fn read(
        &self,
        topic: &TopicName,
        partition: PartitionId,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<EncodedRead, LogError> {
        let meta = self.log.topic_meta(topic).await?;
        let bounds = self.bounds(topic, partition).await?;
        if !bounds.contains(from) {
            return Err(bounds.out_of_range(from));
        }
        let key = (meta.id, partition);
        let until = bounds.high_watermark;
        let read = |cache: &RunCache| cache.read(key, from, until, max_records, max_bytes);
        let mut encoded = read(&self.cache);
        let short = |encoded: &EncodedRead| encoded.next_offset < until && !encoded.limited;
        if short(&encoded) {
            let loader = self.cache.loader(key);
            let _loading = loader.lock().await;
            encoded = read(&self.cache);
            if short(&encoded) {
                let wanted = max_records - encoded.record_count();
                let runs = self
                    .log
                    .read_runs(topic, partition, encoded.next_offset, wanted)
                    .await?;
                self.cache.insert(
                    key,
                    runs.iter()
                        .map(|run| Arc::new(EncodedRun::encode(run)))
                        .collect(),
                );
                encoded = read(&self.cache);
            }
        }
        Ok(encoded)
    }

    async fn bounds(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<PartitionBounds, LogError> {
        let bounds = self.log.bounds(topic, &[partition]).await?;
        bounds
            .into_iter()
            .next()
            .ok_or_else(|| LogError::PartitionNotFound {
                topic: topic.clone(),
                partition,
            })
    }
}

/// Records of one partition in a frame.
#[derive(Debug)]
pub struct PartitionRecords {
    pub partition: PartitionId,
    pub slices: Vec<EncodedSlice>,
}

/// A position that pointed outside the records the log holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub partition: PartitionId,
    /// Where the subscription stood.
    pub position: Offset,
    /// Where it goes on from: the earliest offset still stored.
    pub log_start_offset: Offset,
    pub high_watermark: Offset,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "partition {}: offset {} is outside the log (log start {}, high watermark {})",
            self.partition, self.position, self.log_start_offset, self.high_watermark
        )
    }
}

/// What one read for a subscription produced: records of some of its partitions, and the
/// gaps it found.
#[derive(Debug, Default)]
pub struct Delivery {
    pub records: Vec<PartitionRecords>,
    pub gaps: Vec<Gap>,
}

impl Delivery {
    pub fn record_count(&self) -> usize {
        self.slices().map(EncodedSlice::len).sum()
    }

    /// Key, value and header bytes of the records.
    pub fn payload_bytes(&self) -> usize {
        self.slices().map(EncodedSlice::payload_bytes).sum()
    }

    /// The records' objects separated by commas, for a JSON array.
    pub fn json_parts(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.slices().map(EncodedSlice::json)
    }

    /// Every slice of records, partition after partition.
    fn slices(&self) -> impl Iterator<Item = &EncodedSlice> {
        self.records.iter().flat_map(|p| &p.slices)
    }
}

/// Frame limits.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    pub max_records: usize,
    pub max_bytes: usize,
}

/// Reads what the log holds past `positions`, within `limits`, starting with the partition
/// after the one `rotation` points at; advances `positions` past what it returns.
pub async fn read(
    reader: &PushReader,
    topic: &TopicName,
    positions: &mut Positions,
    rotation: &mut usize,
    limits: FrameLimits,
) -> Result<Delivery, LogError> {
    let partitions: Vec<PartitionId> = positions.partitions().collect();
    let mut delivery = Delivery::default();
    if partitions.is_empty() {
        return Ok(delivery);
    }
    let start = *rotation % partitions.len();
    *rotation = rotation.wrapping_add(1);
    let (mut records, mut bytes) = (0usize, 0usize);
    for partition in partitions[start..].iter().chain(&partitions[..start]) {
        if records >= limits.max_records || bytes >= limits.max_bytes {
            break;
        }
        let Some(from) = positions.get(*partition) else {
            continue;
        };
        let read = reader
            .read(
                topic,
                *partition,
                from,
                limits.max_records - records,
                (limits.max_bytes - bytes).max(1),
            )
            .await;
        match read {
            Ok(read) => {
                // Offsets that hold no record (Kafka's transaction markers) move the
                // position on even when no record comes with them.
                positions.set(*partition, read.next_offset);
                if read.slices.is_empty() {
                    continue;
                }
                records += read.record_count();
                bytes += read.slices.iter().map(|s| s.json().len()).sum::<usize>();
                delivery.records.push(PartitionRecords {
                    partition: *partition,
                    slices: read.slices,
                });
            }
            Err(LogError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            }) => {
                let gap = Gap {
                    partition: *partition,
                    position: from,
                    log_start_offset,
                    high_watermark,
                };
                positions.set(*partition, gap.log_start_offset);
                delivery.gaps.push(gap);
            }
            Err(err) => return Err(err),
        }
    }
    Ok(delivery)
}

/// High-watermark receivers of the partitions of `positions`, to wait on; partitions the
/// log no longer has are left out.
pub async fn watches(
    log: &dyn EventLog,
    topic: &TopicName,
    positions: &Positions,
) -> Vec<(PartitionId, watch::Receiver<Offset>)> {
    let mut watches = Vec::new();
    for partition in positions.partitions() {
        if let Ok(rx) = log.watch_high_watermark(topic, partition).await {
            watches.push((partition, rx));
        }
    }
    watches
}

/// Resolves once some partition has records past its position, or its topic is gone
/// (its channel closed). Pending forever when there is nothing to watch.
pub async fn wait_for_records(
    watches: &mut [(PartitionId, watch::Receiver<Offset>)],
    positions: &Positions,
) {
    let waiting: Vec<BoxFuture<'_, ()>> = watches
        .iter_mut()
        .filter_map(|(partition, rx)| {
            let from = positions.get(*partition)?;
            Some(
                async move {
                    let _ = rx.wait_for(|hwm| *hwm > from).await;
                }
                .boxed(),
            )
        })
        .collect();
    if waiting.is_empty() {
        return std::future::pending().await;
    }
    select_all(waiting).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let positions = Positions::new(
            [
                (PartitionId::new(0), Offset::new(42)),
                (PartitionId::new(2), Offset::new(0)),
                (PartitionId::new(17), Offset::new(9_000_000_000)),
            ]
            .into(),
        );
        let cursor = positions.cursor();
        assert_eq!(cursor, "0-42.2-0.17-9000000000");
        assert_eq!(Positions::parse_cursor(&cursor).unwrap(), positions);
        assert_eq!(Positions::parse_cursor("").unwrap(), Positions::default());
        assert_eq!(
            Positions::parse_cursor("0-7.0-3").unwrap(),
            Positions::parse_cursor("0-3").unwrap(),
            "a partition named twice resumes from the earlier offset"
        );
        for bad in [
            "x",
            "0-",
            "-1",
            "0-9223372036854775808",
            "a-1",
            "0-1-2",
            "0:1",
        ] {
            assert!(Positions::parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
