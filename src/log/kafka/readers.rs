//! Reads of records behind the tails (fetches, catch-up) from a bounded pool of readers.
//! A read takes one reader, assigns it the one partition at the offset wanted, and polls
//! until it has enough or the partition's end. A reader that stopped short of the end
//! stays assigned where it stopped, with what it prefetched: the next read from there (a
//! catch-up's next page) takes it and goes on without a new fetch. Concurrent reads beyond
//! the pool wait for a reader.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::Semaphore;

use super::clients::{self, ReaderContext};
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

/// A reader left assigned mid-partition: what it delivers next starts at `next`.
struct Cursor {
    topic: String,
    partition: i32,
    next: Offset,
    /// The record polled past the last read's byte limit; it is `next`.
    held: Option<StoredRecord>,
}

impl Cursor {
    fn continues(&self, topic: &str, partition: i32, from: Offset) -> bool {
        self.partition == partition && self.next == from && self.topic == topic
    }
}

struct Reader {
    consumer: BaseConsumer<ReaderContext>,
    cursor: Option<Cursor>,
}

pub(super) struct Readers {
    /// Least recently used first.
    idle: Mutex<Vec<Reader>>,
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
        let readers: Vec<Reader> = readers
            .into_iter()
            .map(|consumer| Reader {
                consumer,
                cursor: None,
            })
            .collect();
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
        let mut reader = self
            .take(kafka_topic, partition, from)
            .ok_or_else(|| ReadError::Failed(LogError::ShuttingDown))?;
        let this = self.clone();
        let topic = kafka_topic.to_owned();
        let (reader, read) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let read =
                this.read_blocking(&mut reader, &topic, partition, from, max_records, max_bytes);
            match &read {
                Ok(read) => tracing::debug!(
                    topic,
                    partition,
                    %from,
                    records = read.records.len(),
                    at_end = read.at_end,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "read older records"
                ),
                Err(_) => reader.release(),
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

    /// Releases the idle readers left in a deleted topic.
    pub fn forget_topic(&self, kafka_topic: &str) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for reader in idle.iter_mut() {
            if reader
                .cursor
                .as_ref()
                .is_some_and(|cursor| cursor.topic == kafka_topic)
            {
                reader.release();
            }
        }
    }

    /// The idle reader whose cursor is at `from`, else the least recently used.
    fn take(&self, topic: &str, partition: i32, from: Offset) -> Option<Reader> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let at = idle
            .iter()
            .position(|reader| {
                reader
                    .cursor
                    .as_ref()
                    .is_some_and(|cursor| cursor.continues(topic, partition, from))
            })
            .unwrap_or(0);
        (at < idle.len()).then(|| idle.remove(at))
    }

    fn read_blocking(
        &self,
        reader: &mut Reader,
        topic: &str,
        partition: i32,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Read, ReadError> {
        let mut records = Vec::new();
        let mut bytes = 0usize;
        // A reader left assigned may have queued the end of the partition since: an end
        // that records committed after might have moved. It is not trusted.
        let mut continued = false;
        let deadline = Instant::now() + self.timeout;
        match reader.cursor.take() {
            Some(cursor) if cursor.continues(topic, partition, from) => {
                continued = true;
                if let Some(record) = cursor.held {
                    bytes += record.payload_len();
                    records.push(record);
                }
            }
            _ => reader.assign(topic, partition, from, deadline)?,
        }
        let (mut at_end, mut released) = (false, false);
        let mut passed: Option<KafkaError> = None;
        // A record polled past the byte limit: the next read starts with it.
        let mut held = None;
        while records.len() < max_records && bytes < max_bytes {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if records.is_empty() {
                    let why = passed.map_or_else(String::new, |err| format!(" (last: {err})"));
                    return Err(ReadError::Failed(LogError::ClusterUnavailable(format!(
                        "no records and no end of the partition within --kafka-timeout-ms{why}"
                    ))));
                }
                break;
            }
            // Once records came, only what is already there: the caller wants them now.
            let wait = if records.is_empty() {
                left
            } else {
                Duration::from_millis(1)
            };
            match reader.consumer.poll(wait) {
                Some(Ok(message)) => {
                    let record = decode::record(&message, self.max_value_depth);
                    let size = record.payload_len();
                    if !records.is_empty() && bytes + size > max_bytes {
                        held = Some(record);
                        break;
                    }
                    bytes += size;
                    records.push(record);
                }
                Some(Err(KafkaError::PartitionEOF(_))) if continued => {
                    reader.release();
                    if !records.is_empty() {
                        released = true;
                        break;
                    }
                    reader.assign(topic, partition, from, deadline)?;
                    continued = false;
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    at_end = true;
                    break;
                }
                Some(Err(err)) if out_of_range(&err) => return Err(ReadError::OutOfRange),
                Some(Err(err)) if passing(&err) => {
                    // Queued while the cluster was away (one per reconnect attempt), or
                    // while it is: the consumer retries by itself within the deadline.
                    tracing::debug!(%err, "a reader saw a passing error");
                    passed = Some(err);
                }
                Some(Err(err)) => {
                    return Err(ReadError::Failed(unavailable("reading records", err)));
                }
                None if records.is_empty() => {}
                None => break,
            }
        }
        let consumer = &reader.consumer;
        let position = consumer
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
        let log_start = ffi::cached_log_start(consumer.client().native_ptr(), topic, partition)
            .map(|low| Offset::new(low as u64));
        let next = held
            .as_ref()
            .map_or(position.max(after_records), |record| record.offset);
        if at_end {
            // The tail serves from here on; a reader left at the end would keep fetching.
            reader.release();
        } else if !released {
            reader.cursor = Some(Cursor {
                topic: topic.to_owned(),
                partition,
                next,
                held,
            });
        }
        Ok(Read {
            records,
            next,
            at_end,
            log_start,
        })
    }
}

impl Reader {
    fn assign(
        &self,
        topic: &str,
        partition: i32,
        from: Offset,
        deadline: Instant,
    ) -> Result<(), ReadError> {
        let left = deadline.saturating_duration_since(Instant::now());
        clients::know_topic(&self.consumer, topic, left);
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, KafkaOffset::Offset(from.get() as i64))
            .and_then(|()| self.consumer.assign(&list))
            .map_err(|err| ReadError::Failed(unavailable("assigning a reader", err)))
    }

    fn release(&mut self) {
        self.cursor = None;
        let _ = self.consumer.unassign();
    }
}

/// Errors librdkafka reports while it reconnects or finds a new leader, and retries by
/// itself.
fn passing(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::BrokerNotAvailable
        )
    )
}

fn out_of_range(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset)
    )
}
