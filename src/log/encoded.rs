//! Committed batches kept as the JSON that goes on the wire, for push delivery.
//!
//! A thousand WebSocket subscribers of one partition all want the batch just committed.
//! Each batch is read from redb and encoded once, by the first reader that misses it (the
//! others wait for that one load and then share its bytes), and kept in a cache bounded in
//! bytes. Readers slice a batch's shared bytes at record boundaries, so a frame for one
//! socket costs a copy of bytes, never an encoding or a read.
//!
//! Batches are immutable once committed, so a cached batch never goes stale. The key holds
//! the topic's incarnation: a deleted and recreated topic reuses names and offsets.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use super::types::{Offset, StoredRecord};

/// One committed batch, encoded: record objects separated by commas.
#[derive(Debug)]
pub struct EncodedBatch {
    base: u64,
    json: Bytes,
    /// Byte offset just past each record's object in `json`.
    ends: Vec<usize>,
    /// Key, value and header bytes of the records up to and including each one.
    payload_ends: Vec<usize>,
}

impl EncodedBatch {
    /// Encodes `records` (one batch, consecutive offsets from the first one's).
    pub fn encode(records: &[StoredRecord]) -> EncodedBatch {
        let base = records.first().map_or(0, |r| r.offset.get());
        let mut json = Vec::with_capacity(records.iter().map(|r| r.value.len() + 96).sum());
        let mut ends = Vec::with_capacity(records.len());
        let mut payload_ends = Vec::with_capacity(records.len());
        let mut payload = 0;
        for (i, record) in records.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            crate::wire::write_record(&mut json, None, record);
            ends.push(json.len());
            payload += record.payload_len();
            payload_ends.push(payload);
        }
        EncodedBatch {
            base,
            json: Bytes::from(json),
            ends,
            payload_ends,
        }
    }

    /// The offset after the batch's last record.
    pub fn end(&self) -> Offset {
        Offset::new(self.base + self.ends.len() as u64)
    }

    fn bytes(&self) -> usize {
        self.json.len() + (self.ends.len() + self.payload_ends.len()) * std::mem::size_of::<usize>()
    }
}

/// Records `offsets` of one batch.
#[derive(Clone, Debug)]
pub struct EncodedSlice {
    batch: Arc<EncodedBatch>,
    /// Indexes of the records within the batch.
    records: Range<usize>,
}

impl EncodedSlice {
    /// The records' objects separated by commas (no brackets), shared with the cache.
    pub fn json(&self) -> Bytes {
        let start = match self.records.start {
            0 => 0,
            i => self.batch.ends[i - 1] + 1,
        };
        let end = self.batch.ends[self.records.end - 1];
        self.batch.json.slice(start..end)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Key, value and header bytes of the records.
    pub fn payload_bytes(&self) -> usize {
        if self.records.is_empty() {
            return 0;
        }
        let before = match self.records.start {
            0 => 0,
            i => self.batch.payload_ends[i - 1],
        };
        self.batch.payload_ends[self.records.end - 1] - before
    }

    /// Each record's offset and object, in order.
    pub fn records(&self) -> impl Iterator<Item = (Offset, Bytes)> + '_ {
        self.records.clone().map(|i| {
            let start = if i == 0 {
                0
            } else {
                self.batch.ends[i - 1] + 1
            };
            let json = self.batch.json.slice(start..self.batch.ends[i]);
            (Offset::new(self.batch.base + i as u64), json)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The offset after the last record of the slice.
    pub fn next_offset(&self) -> Offset {
        Offset::new(self.batch.base + self.records.end as u64)
    }
}

/// Encoded records of one partition from some offset on.
#[derive(Clone, Debug)]
pub struct EncodedRead {
    pub slices: Vec<EncodedSlice>,
    /// Where the next read starts.
    pub next_offset: Offset,
    pub high_watermark: Offset,
}

impl EncodedRead {
    pub fn record_count(&self) -> usize {
        self.slices.iter().map(EncodedSlice::len).sum()
    }
}

/// (topic incarnation, partition).
type PartitionKey = (u64, u32);

/// The cache of encoded batches, bounded in bytes, least recently used out first.
pub(super) struct BatchCache {
    inner: Mutex<Inner>,
    budget: usize,
    /// One load at a time per partition: the other readers wait and then hit the cache.
    loaders: Mutex<HashMap<PartitionKey, Arc<tokio::sync::Mutex<()>>>>,
}

struct Inner {
    recency: LruCache<(PartitionKey, u64), ()>,
    batches: HashMap<PartitionKey, BTreeMap<u64, Arc<EncodedBatch>>>,
    bytes: usize,
}

impl BatchCache {
    pub fn new(budget: usize) -> BatchCache {
        BatchCache {
            inner: Mutex::new(Inner {
                recency: LruCache::unbounded(),
                batches: HashMap::new(),
                bytes: 0,
            }),
            budget,
            loaders: Mutex::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock a reader holds while it loads a partition's batches from disk.
    pub fn loader(&self, key: PartitionKey) -> Arc<tokio::sync::Mutex<()>> {
        self.loaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }

    /// Slices of cached batches covering `[from, until)` as far as they go without a gap,
    /// up to `max_records` records and about `max_bytes` bytes (at least one record).
    pub fn read(
        &self,
        key: PartitionKey,
        from: u64,
        until: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Vec<EncodedSlice> {
        let mut inner = self.inner();
        let mut slices = Vec::new();
        let (mut next, mut records, mut bytes) = (from, 0usize, 0usize);
        while next < until && records < max_records {
            let Some(batch) = inner
                .batches
                .get(&key)
                .and_then(|batches| batches.range(..=next).next_back())
                .map(|(_, batch)| batch.clone())
                .filter(|batch| batch.end().get() > next)
            else {
                break;
            };
            inner.recency.promote(&(key, batch.base));
            let first = (next - batch.base) as usize;
            let mut last = first;
            let stop = usize::try_from(until - batch.base)
                .unwrap_or(usize::MAX)
                .min(batch.ends.len());
            while last < stop && records < max_records {
                let start = if last == 0 { 0 } else { batch.ends[last - 1] };
                let size = batch.ends[last] - start;
                if records > 0 && bytes + size > max_bytes {
                    break;
                }
                bytes += size;
                records += 1;
                last += 1;
            }
            if last == first {
                break;
            }
            next = batch.base + last as u64;
            slices.push(EncodedSlice {
                batch,
                records: first..last,
            });
            if bytes >= max_bytes {
                break;
            }
        }
        slices
    }

    /// Adds batches just read from disk, evicting the least recently used beyond the budget.
    pub fn insert(&self, key: PartitionKey, batches: Vec<Arc<EncodedBatch>>) {
        let mut inner = self.inner();
        for batch in batches {
            let size = batch.bytes();
            let base = batch.base;
            let previous = inner.batches.entry(key).or_default().insert(base, batch);
            match previous {
                Some(previous) => inner.bytes -= previous.bytes(),
                None => {
                    inner.recency.push((key, base), ());
                }
            }
            inner.bytes += size;
        }
        while inner.bytes > self.budget {
            let Some(((key, base), ())) = inner.recency.pop_lru() else {
                break;
            };
            let removed = inner.batches.get_mut(&key).and_then(|b| b.remove(&base));
            if let Some(removed) = removed {
                inner.bytes -= removed.bytes();
            }
            if inner.batches.get(&key).is_some_and(BTreeMap::is_empty) {
                inner.batches.remove(&key);
            }
        }
    }

    /// Forgets every batch of a topic incarnation (the topic was deleted).
    pub fn forget(&self, incarnation: u64) {
        let mut inner = self.inner();
        let keys: Vec<PartitionKey> = inner
            .batches
            .keys()
            .filter(|(inc, _)| *inc == incarnation)
            .copied()
            .collect();
        for key in keys {
            if let Some(batches) = inner.batches.remove(&key) {
                for (base, batch) in batches {
                    inner.bytes -= batch.bytes();
                    inner.recency.pop(&(key, base));
                }
            }
        }
        drop(inner);
        self.loaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(inc, _), _| *inc != incarnation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::PartitionId;

    fn batch(base: u64, count: u64) -> Arc<EncodedBatch> {
        let records: Vec<StoredRecord> = (base..base + count)
            .map(|offset| StoredRecord {
                partition: PartitionId::new(0),
                offset: Offset::new(offset),
                timestamp: 1,
                key: None,
                value: format!("{offset}").into(),
                headers: Vec::new(),
            })
            .collect();
        Arc::new(EncodedBatch::encode(&records))
    }

    fn offsets(slices: &[EncodedSlice]) -> Vec<u64> {
        let json = slices
            .iter()
            .map(|s| String::from_utf8(s.json().to_vec()).unwrap())
            .collect::<Vec<_>>()
            .join(",");
        let records: Vec<serde_json::Value> = serde_json::from_str(&format!("[{json}]")).unwrap();
        records
            .iter()
            .map(|r| r["offset"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn reads_slice_batches_at_record_boundaries_up_to_the_bounds() {
        let cache = BatchCache::new(1 << 20);
        cache.insert((1, 0), vec![batch(0, 3), batch(3, 4), batch(10, 2)]);
        assert_eq!(
            offsets(&cache.read((1, 0), 1, 100, 100, 1 << 20)),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(offsets(&cache.read((1, 0), 2, 5, 100, 1 << 20)), [2, 3, 4]);
        assert_eq!(
            offsets(&cache.read((1, 0), 0, 100, 4, 1 << 20)),
            [0, 1, 2, 3]
        );
        assert!(
            cache.read((1, 0), 7, 100, 100, 1 << 20).is_empty(),
            "gap at 7"
        );
        assert!(
            cache.read((2, 0), 0, 100, 100, 1 << 20).is_empty(),
            "other incarnation"
        );
        let one = cache.read((1, 0), 0, 100, 100, 1);
        assert_eq!(offsets(&one), [0], "at least one record");
        assert_eq!(one[0].next_offset(), Offset::new(1));
        let two = cache.read((1, 0), 4, 6, 100, 1 << 20);
        let each: Vec<(u64, String)> = two[0]
            .records()
            .map(|(offset, json)| (offset.get(), String::from_utf8(json.to_vec()).unwrap()))
            .collect();
        assert_eq!(each.len(), 2);
        assert_eq!(each[0].0, 4);
        assert!(
            each[1].1.starts_with(r#"{"partition":0,"offset":5,"#),
            "{each:?}"
        );
    }

    #[test]
    fn the_budget_evicts_least_recently_used_batches() {
        let first = batch(0, 50);
        let size = first.bytes();
        let cache = BatchCache::new(size * 2 + size / 2);
        cache.insert((1, 0), vec![first, batch(50, 50)]);
        cache.read((1, 0), 0, 50, 10, usize::MAX);
        cache.insert((1, 0), vec![batch(100, 50)]);
        assert!(
            !cache.read((1, 0), 0, 50, 10, usize::MAX).is_empty(),
            "recently read kept"
        );
        assert!(
            cache.read((1, 0), 50, 100, 10, usize::MAX).is_empty(),
            "evicted"
        );
        assert!(cache.inner().bytes <= size * 2 + size / 2);
        cache.forget(1);
        assert_eq!(cache.inner().bytes, 0);
    }
}
