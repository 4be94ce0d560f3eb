//! Committed records kept as the JSON that goes on the wire, for push delivery, the same
//! for every backend.
//!
//! A thousand WebSocket subscribers of one partition all want the records just committed.
//! Each run of records (a redb batch, or what one Kafka read returned; see
//! [`RecordRun`](crate::log::RecordRun)) is read and encoded once, by the first reader that
//! misses it (the others wait for that one load and then share its bytes), and kept in a
//! cache bounded in bytes. Readers slice a run's shared bytes at record boundaries, so a
//! frame for one socket costs a copy of bytes, never an encoding or a read.
//!
//! Committed records never change, so a cached run never goes stale. Records carry their
//! own offsets (Kafka's may skip), and a run covers `[start, end)` even where offsets hold
//! no record. The key holds the topic's [`TopicId`]: a deleted and recreated topic reuses
//! names and offsets.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use crate::log::{Offset, PartitionId, RecordRun, TopicId};

/// One run of committed records, encoded: record objects separated by commas.
#[derive(Debug)]
pub struct EncodedRun {
    start: u64,
    end: u64,
    /// Each record's offset.
    offsets: Vec<u64>,
    json: Bytes,
    /// Byte offset just past each record's object in `json`.
    ends: Vec<usize>,
    /// Key, value and header bytes of the records up to and including each one.
    payload_ends: Vec<usize>,
}

impl EncodedRun {
    pub fn encode(run: &RecordRun) -> EncodedRun {
        let records = &run.records;
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
        EncodedRun {
            start: run.start.get(),
            end: run.end.get(),
            offsets: records.iter().map(|r| r.offset.get()).collect(),
            json: Bytes::from(json),
            ends,
            payload_ends,
        }
    }

    /// The index of the first record at or after `offset`.
    fn first_at(&self, offset: u64) -> usize {
        self.offsets.partition_point(|o| *o < offset)
    }

    fn bytes(&self) -> usize {
        self.json.len()
            + (self.offsets.len() + self.ends.len() + self.payload_ends.len())
                * std::mem::size_of::<usize>()
    }
}

/// Some consecutive records of one run (at least one).
#[derive(Clone, Debug)]
pub struct EncodedSlice {
    run: Arc<EncodedRun>,
    /// Indexes of the records within the run; never empty.
    records: Range<usize>,
}

impl EncodedSlice {
    /// The records' objects separated by commas (no brackets), shared with the cache.
    pub fn json(&self) -> Bytes {
        let start = match self.records.start {
            0 => 0,
            i => self.run.ends[i - 1] + 1,
        };
        let end = self.run.ends[self.records.end - 1];
        self.run.json.slice(start..end)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Key, value and header bytes of the records.
    pub fn payload_bytes(&self) -> usize {
        let before = match self.records.start {
            0 => 0,
            i => self.run.payload_ends[i - 1],
        };
        self.run.payload_ends[self.records.end - 1] - before
    }

    /// Each record's offset and object, in order.
    pub fn records(&self) -> impl Iterator<Item = (Offset, Bytes)> + '_ {
        self.records.clone().map(|i| {
            let start = if i == 0 { 0 } else { self.run.ends[i - 1] + 1 };
            let json = self.run.json.slice(start..self.run.ends[i]);
            (Offset::new(self.run.offsets[i]), json)
        })
    }
}

/// Encoded records of one partition from some offset on.
#[derive(Clone, Debug)]
pub struct EncodedRead {
    pub slices: Vec<EncodedSlice>,
    /// Where the next read starts: past the last record read, and past offsets that hold
    /// no record.
    pub next_offset: Offset,
    /// `max_records` or `max_bytes` ended the read (not the end of the cached runs).
    pub limited: bool,
}

impl EncodedRead {
    pub fn record_count(&self) -> usize {
        self.slices.iter().map(EncodedSlice::len).sum()
    }
}

/// A partition of one topic incarnation.
pub type PartitionKey = (TopicId, PartitionId);

/// The cache of encoded runs, bounded in bytes, least recently used out first.
pub struct RunCache {
    inner: Mutex<Inner>,
    budget: usize,
    /// One load at a time per partition: the other readers wait and then hit the cache.
    loaders: Mutex<HashMap<PartitionKey, Arc<tokio::sync::Mutex<()>>>>,
}

struct Inner {
    recency: LruCache<(PartitionKey, u64), ()>,
    /// Runs by their start offset.
    batches: HashMap<PartitionKey, BTreeMap<u64, Arc<EncodedRun>>>,
    bytes: usize,
}

impl RunCache {
    pub fn new(budget: usize) -> RunCache {
        RunCache {
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

    /// Cached records in `[from, until)` as far as the runs go without a gap, up to
    /// `max_records` records and about `max_bytes` bytes (at least one record).
    pub fn read(
        &self,
        key: PartitionKey,
        from: Offset,
        until: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> EncodedRead {
        let until = until.get();
        let mut inner = self.inner();
        let mut read = EncodedRead {
            slices: Vec::new(),
            next_offset: from,
            limited: false,
        };
        let (mut next, mut records, mut bytes) = (from.get(), 0usize, 0usize);
        while next < until && records < max_records && bytes < max_bytes {
            let Some(run) = inner
                .batches
                .get(&key)
                .and_then(|runs| runs.range(..=next).next_back())
                .map(|(_, run)| run.clone())
                .filter(|run| run.end > next)
            else {
                break;
            };
            inner.recency.promote(&(key, run.start));
            let first = run.first_at(next);
            let stop = run.first_at(until);
            let mut last = first;
            while last < stop && records < max_records {
                let start = if last == 0 { 0 } else { run.ends[last - 1] };
                let size = run.ends[last] - start;
                if records > 0 && bytes + size > max_bytes {
                    break;
                }
                bytes += size;
                records += 1;
                last += 1;
            }
            if last < run.offsets.len() && run.offsets[last] < until {
                // Stopped by the limits inside the run: go on at its next record.
                if last > first {
                    read.slices.push(EncodedSlice {
                        run: run.clone(),
                        records: first..last,
                    });
                }
                next = run.offsets[last];
                read.limited = true;
                break;
            }
            // Every record of the run below `until` taken: the reader moves to its end
            // (offsets after its last record hold none), or to `until` within it.
            if last > first {
                read.slices.push(EncodedSlice {
                    run: run.clone(),
                    records: first..last,
                });
            }
            next = run.end.min(until);
        }
        read.next_offset = Offset::new(next);
        read.limited |= records >= max_records || bytes >= max_bytes;
        read
    }

    /// Adds runs just read from the log, evicting the least recently used beyond the budget.
    pub fn insert(&self, key: PartitionKey, runs: Vec<Arc<EncodedRun>>) {
        let mut inner = self.inner();
        for batch in runs {
            let size = batch.bytes();
            let base = batch.start;
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

    /// Forgets every run of a topic incarnation (the topic was deleted).
    pub fn forget(&self, topic: TopicId) {
        let mut inner = self.inner();
        let keys: Vec<PartitionKey> = inner
            .batches
            .keys()
            .filter(|(id, _)| *id == topic)
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
            .retain(|(id, _), _| *id != topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::StoredRecord;

    const KEY: PartitionKey = (TopicId::new(1), PartitionId::new(0));

    /// A run over `[start, end)` holding records at `offsets`.
    fn run(start: u64, end: u64, offsets: &[u64]) -> Arc<EncodedRun> {
        let records = offsets
            .iter()
            .map(|offset| StoredRecord::sample(0, *offset, &offset.to_string()))
            .collect();
        Arc::new(EncodedRun::encode(&RecordRun {
            start: Offset::new(start),
            end: Offset::new(end),
            records,
        }))
    }

    fn dense(base: u64, count: u64) -> Arc<EncodedRun> {
        run(
            base,
            base + count,
            &(base..base + count).collect::<Vec<_>>(),
        )
    }

    fn read(cache: &RunCache, from: u64, until: u64, max: usize, bytes: usize) -> EncodedRead {
        cache.read(KEY, Offset::new(from), Offset::new(until), max, bytes)
    }

    fn offsets(read: &EncodedRead) -> Vec<u64> {
        let json = read
            .slices
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
    fn reads_slice_runs_at_record_boundaries_up_to_the_bounds() {
        let cache = RunCache::new(1 << 20);
        cache.insert(KEY, vec![dense(0, 3), dense(3, 4), dense(10, 2)]);
        let all = read(&cache, 1, 100, 100, 1 << 20);
        assert_eq!(offsets(&all), [1, 2, 3, 4, 5, 6]);
        assert_eq!(all.next_offset, Offset::new(7), "stops at the gap");
        assert!(!all.limited, "the runs ended it");
        assert_eq!(offsets(&read(&cache, 2, 5, 100, 1 << 20)), [2, 3, 4]);
        let four = read(&cache, 0, 100, 4, 1 << 20);
        assert_eq!(offsets(&four), [0, 1, 2, 3]);
        assert_eq!(four.next_offset, Offset::new(4));
        assert!(four.limited, "max_records ended it");
        let gap = read(&cache, 7, 100, 100, 1 << 20);
        assert!(gap.slices.is_empty());
        assert_eq!(gap.next_offset, Offset::new(7));
        let other = cache.read(
            (TopicId::new(2), PartitionId::new(0)),
            Offset::ZERO,
            Offset::new(100),
            100,
            1 << 20,
        );
        assert!(other.slices.is_empty(), "other incarnation");
        let one = read(&cache, 0, 100, 100, 1);
        assert_eq!(offsets(&one), [0], "at least one record");
        assert_eq!(one.next_offset, Offset::new(1));
        assert!(one.limited, "max_bytes ended it");
        let two = read(&cache, 4, 6, 100, 1 << 20);
        let each: Vec<(u64, String)> = two.slices[0]
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

    /// Kafka's offsets skip: a transaction marker takes one after each commit.
    #[test]
    fn offsets_without_records_move_the_reader_on() {
        let cache = RunCache::new(1 << 20);
        // Records 0-2, a marker at 3; a run that starts at the marker, records 4-5, marker 6.
        cache.insert(KEY, vec![run(0, 4, &[0, 1, 2]), run(4, 7, &[4, 5])]);
        let all = read(&cache, 0, 7, 100, 1 << 20);
        assert_eq!(offsets(&all), [0, 1, 2, 4, 5]);
        assert_eq!(all.next_offset, Offset::new(7), "past the last marker");
        let at_marker = read(&cache, 3, 7, 100, 1 << 20);
        assert_eq!(offsets(&at_marker), [4, 5]);
        let limited = read(&cache, 0, 7, 3, 1 << 20);
        assert_eq!(offsets(&limited), [0, 1, 2]);
        assert_eq!(limited.next_offset, Offset::new(4), "past the marker at 3");
        let empty_run = RunCache::new(1 << 20);
        empty_run.insert(KEY, vec![run(0, 2, &[])]);
        let skipped = read(&empty_run, 0, 2, 10, 1 << 20);
        assert!(skipped.slices.is_empty());
        assert_eq!(skipped.next_offset, Offset::new(2));
    }

    #[test]
    fn the_budget_evicts_least_recently_used_runs() {
        let first = dense(0, 50);
        let size = first.bytes();
        let cache = RunCache::new(size * 2 + size / 2);
        cache.insert(KEY, vec![first, dense(50, 50)]);
        read(&cache, 0, 50, 10, usize::MAX);
        cache.insert(KEY, vec![dense(100, 50)]);
        assert!(
            !read(&cache, 0, 50, 10, usize::MAX).slices.is_empty(),
            "recently read kept"
        );
        assert!(
            read(&cache, 50, 100, 10, usize::MAX).slices.is_empty(),
            "evicted"
        );
        assert!(cache.inner().bytes <= size * 2 + size / 2);
        cache.forget(TopicId::new(1));
        assert_eq!(cache.inner().bytes, 0);
    }
}
