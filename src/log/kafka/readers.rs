//! Reads of records behind the tails (fetches, catch-up) from a bounded pool of readers:
//! each read takes one reader, assigns it the one partition at the offset wanted, polls
//! until it has enough or the partition's end, and lets it go. Concurrent reads beyond the
//! pool wait for a reader.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::Semaphore;

use super::clients::ReaderContext;
use super::cluster::unavailable;
use super::{decode, ffi};
use crate::log::{LogError, Offset, StoredRecord};

/// What one read got.
pub(super) struct Read {
    pub records: Vec<StoredRecord>,
    /// Where the next read starts: past the records, and past markers read after them.
    pub next: Offset,
    /// The read reached the partition's end: `next` is its last stable offset.
    pub at_end: bool,
    /// The log start the read's fetch reported.
    pub log_start: Option<Offset>,
}

/// Why a read failed.
pub(super) enum ReadError {
    /// The offset lies outside the partition (below its start, or beyond its end).
    OutOfRange,
    Failed(LogError),
}

pub(super) struct Readers {
    idle: Mutex<Vec<BaseConsumer<ReaderContext>>>,
    permits: Semaphore,
    timeout: Duration,
    max_value_depth: usize,
}

impl Readers {
    pub fn new(
        readers: Vec<BaseConsumer<ReaderContext>>,
        timeout: Duration,
        max_value_depth: usize,
    ) -> Readers {
        Readers {
            permits: Semaphore::new(readers.len()),
            idle: Mutex::new(readers),
            timeout,
            max_value_depth,
        }
    }

    /// Up to `max_records` records (and about `max_bytes` bytes, at least one record) of
    /// one partition from `from` on.
    pub async fn read(
        self: &Arc<Self>,
        kafka_topic: &str,
        partition: i32,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Read, ReadError> {
        let permit = tokio::time::timeout(self.timeout, self.permits.acquire())
            .await
            .map_err(|_| {
                ReadError::Failed(LogError::ClusterUnavailable("every reader is busy".into()))
            })?
            .map_err(|_| ReadError::Failed(LogError::ShuttingDown))?;
        let reader = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .ok_or_else(|| ReadError::Failed(LogError::ShuttingDown))?;
        let this = self.clone();
        let topic = kafka_topic.to_owned();
        let (reader, read) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let read = this.read_blocking(&reader, &topic, partition, from, max_records, max_bytes);
            let _ = reader.unassign();
            if let Ok(read) = &read {
                tracing::debug!(
                    topic,
                    partition,
                    %from,
                    records = read.records.len(),
                    at_end = read.at_end,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "read older records"
                );
            }
            (reader, read)
        })
        .await
        .map_err(|err| ReadError::Failed(unavailable("a read failed", err)))?;
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(reader);
        drop(permit);
        read
    }

    fn read_blocking(
        &self,
        reader: &BaseConsumer<ReaderContext>,
        topic: &str,
        partition: i32,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Read, ReadError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, KafkaOffset::Offset(from.get() as i64))
            .and_then(|()| reader.assign(&list))
            .map_err(|err| ReadError::Failed(unavailable("assigning a reader", err)))?;
        let deadline = Instant::now() + self.timeout;
        let mut records = Vec::new();
        let (mut bytes, mut at_end) = (0usize, false);
        // A record read past the byte limit: the next read starts at it.
        let mut overflow = None;
        while records.len() < max_records && bytes < max_bytes {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if records.is_empty() {
                    return Err(ReadError::Failed(LogError::ClusterUnavailable(
                        "no records and no end of the partition within --kafka-timeout-ms".into(),
                    )));
                }
                break;
            }
            // Once records came, only what is already there: the caller wants them now.
            let wait = if records.is_empty() {
                left
            } else {
                Duration::from_millis(1)
            };
            match reader.poll(wait) {
                Some(Ok(message)) => {
                    let record = decode::record(&message, self.max_value_depth);
                    let size = record.payload_len();
                    if !records.is_empty() && bytes + size > max_bytes {
                        overflow = Some(record.offset);
                        break;
                    }
                    bytes += size;
                    records.push(record);
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    at_end = true;
                    break;
                }
                Some(Err(err)) if out_of_range(&err) => return Err(ReadError::OutOfRange),
                Some(Err(err)) => {
                    return Err(ReadError::Failed(unavailable("reading records", err)));
                }
                None if records.is_empty() => {}
                None => break,
            }
        }
        let position = reader
            .position()
            .ok()
            .and_then(|positions| {
                positions
                    .find_partition(topic, partition)
                    .and_then(|element| match element.offset() {
                        KafkaOffset::Offset(offset) => Some(offset),
                        _ => None,
                    })
            })
            .map_or(from, |offset| Offset::new(offset.max(0) as u64));
        let after_records = records.last().map_or(from, |r| r.offset.next());
        let log_start = ffi::cached_log_start(reader.client().native_ptr(), topic, partition)
            .map(|low| Offset::new(low as u64));
        Ok(Read {
            records,
            next: overflow.unwrap_or(position.max(after_records)),
            at_end,
            log_start,
        })
    }
}

fn out_of_range(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset)
    )
}
