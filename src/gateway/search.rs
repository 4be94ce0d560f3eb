//! Finding records: a fetch that keeps only the records with a key, or whose value holds a
//! substring, reading at most `--max-scan-records` past its offset per call (the SPEC's
//! "Finding records"). The scan is bounded so that a search over a long log costs every
//! call the same; `next_offset` says where it stopped and the client goes on from there.

use std::time::Duration;

use super::caller::Subscriber;
use crate::log::{
    FetchRequest, FetchResult, LogError, Offset, PartitionBounds, PartitionId, StoredRecord,
};

/// Records read per page of a scan: big enough that a page costs one read transaction (or
/// one Kafka fetch) for many records, small enough to hold in memory while filtering.
const SCAN_PAGE: usize = 1_000;

/// Which records a search keeps; both conditions when both are given.
#[derive(Debug, Default)]
pub struct RecordFilter {
    /// The key exactly as the API shows it (base64 for a key that is not UTF-8).
    pub key: Option<String>,
    /// A substring of the value's JSON text as the API shows it.
    pub contains: Option<String>,
}

impl RecordFilter {
    /// `true` when the request asks for a search at all.
    pub fn is_active(&self) -> bool {
        self.key.is_some() || self.contains.is_some()
    }

    fn keeps(&self, record: &StoredRecord) -> bool {
        self.key
            .as_deref()
            .is_none_or(|key| record.key.as_deref() == Some(key))
            && self
                .contains
                .as_deref()
                .is_none_or(|part| record.value.contains(part))
    }
}

impl Subscriber<'_> {
    /// Up to `request.max_records` records from `request.offset` on that `filter` keeps,
    /// within `request.max_bytes` (at least one) and `--max-scan-records` records read.
    /// `next_offset` is the first offset not looked at: a client continues from it. With
    /// `wait`, a scan that reaches the end of the log with nothing found waits (as a long
    /// poll does) for more records and scans those, until one matches or time is up.
    pub async fn search(
        &self,
        partition: PartitionId,
        request: FetchRequest,
        filter: &RecordFilter,
        wait: Duration,
    ) -> Result<FetchResult, LogError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut high_watermark: Option<tokio::sync::watch::Receiver<Offset>> = None;
        let log = &self.gateway.log;
        let limits = &self.gateway.limits;
        let mut budget = limits.max_scan_records;
        let mut kept: Vec<StoredRecord> = Vec::new();
        let mut kept_bytes = 0;
        let mut offset = request.offset;
        loop {
            let page = log
                .fetch(
                    self.topic,
                    partition,
                    FetchRequest {
                        offset,
                        max_records: budget.min(SCAN_PAGE),
                        max_bytes: limits.max_fetch_bytes,
                    },
                )
                .await?;
            budget = budget.saturating_sub(page.records.len());
            for record in page.records {
                if !filter.keeps(&record) {
                    continue;
                }
                let bytes = record.payload_len();
                let full = kept.len() == request.max_records
                    || (!kept.is_empty() && kept_bytes + bytes > request.max_bytes);
                if full {
                    let next_offset = record.offset;
                    return Ok(self.found(kept, next_offset, page.bounds));
                }
                kept_bytes += bytes;
                kept.push(record);
            }
            // A page that moved nothing (nothing readable there yet) ends the call too.
            let stalled = offset == Some(page.next_offset);
            let at_end = page.next_offset >= page.bounds.high_watermark;
            let next = page.next_offset;
            if at_end && kept.is_empty() && budget > 0 && !wait.is_zero() {
                // `wait_for` looks at the current value first: a commit since the read
                // is not missed.
                let watch = match &mut high_watermark {
                    Some(watch) => watch,
                    None => high_watermark
                        .insert(log.watch_high_watermark(self.topic, partition).await?),
                };
                let woken = tokio::select! {
                    woken = tokio::time::timeout_at(deadline, watch.wait_for(|hwm| *hwm > next)) => {
                        matches!(woken, Ok(Ok(_)))
                    }
                    _ = self.gateway.shutdown.cancelled() => false,
                };
                if woken {
                    offset = Some(next);
                    continue;
                }
                return Ok(self.found(kept, next, page.bounds));
            }
            if budget == 0 || stalled || at_end {
                return Ok(self.found(kept, next, page.bounds));
            }
            offset = Some(next);
        }
    }

    fn found(
        &self,
        records: Vec<StoredRecord>,
        next_offset: Offset,
        bounds: PartitionBounds,
    ) -> FetchResult {
        self.count_delivered(&records);
        FetchResult {
            records,
            next_offset,
            bounds,
        }
    }
}
