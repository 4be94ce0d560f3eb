//! Server-Sent Events: the body of `GET /v1/topics/{topic}/events` (routed by
//! `http::push`), a topic's records as `text/event-stream`, for `EventSource` in browsers
//! and `curl -N`. No actix here: the route wraps this stream in its response.
//!
//! Each record is one event: `data` is the record as JSON, `id` the cursor of the stream's
//! position right after it (the same encoding as a WebSocket `records` cursor). A browser
//! reconnecting sends the last id as `Last-Event-ID`, and the stream resumes exactly after
//! it; `?last_event_id=` does the same for a freshly created `EventSource`. A position the
//! log no longer holds is reported as an `error` event naming the earliest offset left,
//! then delivery goes on from there. Idle streams get a heartbeat comment every
//! `--sse-heartbeat-ms`. No compression middleware sits in front of this route (actix's
//! would hold the stream back), and `X-Accel-Buffering: no` asks proxies not to buffer.

use std::convert::Infallible;
use std::fmt::Write;
use std::time::Duration;

use bytes::Bytes;

use crate::gateway::{self, Caller, ErrorCode, ErrorDetail, GatewayError};
use crate::log::{Offset, PartitionId, TopicName};
use crate::metrics::Open;
use crate::push::{self, FrameLimits, Positions};

/// Reconnection delay suggested to `EventSource`, in ms.
const RETRY_MS: u64 = 3000;

/// The body of an event stream of `topic` from `positions`, for as long as the caller's
/// token and the server last.
pub async fn stream(
    caller: Caller,
    topic: TopicName,
    positions: Positions,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + 'static {
    let watches = match caller.subscriber(&topic) {
        Ok(subscriber) => subscriber.watches(&positions).await,
        Err(_) => Vec::new(),
    };
    let gateway = caller.gateway().clone();
    let push = gateway.push_limits;
    let stream = Stream {
        shutdown: gateway.shutdown.clone(),
        expiry: caller.expires_at(),
        _counted: Open::new(&gateway.metrics.push.sse_streams),
        caller,
        topic,
        positions,
        rotation: 0,
        watches,
        limits: FrameLimits {
            max_records: push.push_frame_records,
            max_bytes: push.push_frame_bytes,
        },
        heartbeat: Duration::from_millis(push.sse_heartbeat_ms),
        opened: false,
        finished: false,
    };
    futures_util::stream::unfold(stream, Stream::next)
}

/// One event stream's state.
struct Stream {
    caller: Caller,
    topic: TopicName,
    positions: Positions,
    rotation: usize,
    watches: Vec<(PartitionId, tokio::sync::watch::Receiver<Offset>)>,
    limits: FrameLimits,
    heartbeat: Duration,
    shutdown: tokio_util::sync::CancellationToken,
    expiry: Option<u64>,
    opened: bool,
    /// Set after the last event (an error): the next call ends the stream.
    finished: bool,
    _counted: Open,
}

impl Stream {
    /// The next chunk of the body; `None` ends the stream.
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Stream)> {
        if self.finished {
            return None;
        }
        if !self.opened {
            self.opened = true;
            // The retry hint, and a first byte so that clients see the stream open at once.
            let hello = format!("retry: {RETRY_MS}\n: {}\n\n", self.positions.cursor());
            return Some((Ok(Bytes::from(hello)), self));
        }
        loop {
            // The token's scopes are checked on every read: access ends when they do.
            let subscriber = self.caller.subscriber(&self.topic).ok()?;
            let before = self.positions.clone();
            let delivery = match subscriber
                .read_push(&mut self.positions, &mut self.rotation, self.limits)
                .await
            {
                Ok(delivery) => delivery,
                Err(err) => {
                    // The log failed, or cannot serve now: say so with the error's own code
                    // (a retryable one says so), then end; the client's reconnect resumes.
                    let event = error_event(&GatewayError::from(err).body(), None);
                    self.finished = true;
                    return Some((Ok(Bytes::from(event)), self));
                }
            };
            if delivery.record_count() > 0 || !delivery.gaps.is_empty() {
                let chunk = events_chunk(&delivery, before);
                return Some((Ok(Bytes::from(chunk)), self));
            }
            let expiry = self.expiry;
            tokio::select! {
                _ = push::wait_for_records(&mut self.watches, &self.positions) => {}
                _ = tokio::time::sleep(self.heartbeat) => {
                    return Some((Ok(Bytes::from_static(b":\n\n")), self));
                }
                _ = self.shutdown.cancelled() => return None,
                _ = gateway::expired(expiry), if expiry.is_some() => return None,
            }
        }
    }
}

/// `event: error` with the error body as its data; a gap also names its partition.
fn error_event(detail: &ErrorDetail, gap: Option<&push::Gap>) -> String {
    let mut data = serde_json::to_value(detail).unwrap_or_default();
    if let Some(gap) = gap {
        data["partition"] = gap.partition.get().into();
    }
    format!("event: error\ndata: {data}\n\n")
}

/// The events of one read: gaps first, then one event per record, each with the cursor of
/// the position right after it.
fn events_chunk(delivery: &push::Delivery, mut position: Positions) -> String {
    let mut chunk = String::new();
    for gap in &delivery.gaps {
        let detail = ErrorDetail {
            code: ErrorCode::OffsetOutOfRange,
            message: format!("{}; the stream goes on from {}", gap, gap.log_start_offset),
            log_start_offset: Some(gap.log_start_offset.get()),
            high_watermark: Some(gap.high_watermark.get()),
            retry_after_ms: None,
        };
        chunk.push_str(&error_event(&detail, Some(gap)));
        position.set(gap.partition, gap.log_start_offset);
    }
    for partition in &delivery.records {
        for slice in &partition.slices {
            for (offset, json) in slice.records() {
                position.set(partition.partition, offset.next());
                let _ = writeln!(chunk, "id: {}", position.cursor());
                // A producer's JSON text may hold line breaks between tokens; each line
                // becomes a `data:` line, which the client joins back with newlines.
                let json = std::str::from_utf8(&json).unwrap_or_default();
                for line in json.split(['\n', '\r']) {
                    let _ = writeln!(chunk, "data: {line}");
                }
                chunk.push('\n');
            }
        }
    }
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogError;

    /// A read that fails while the server shuts down, or while the log cannot serve, says
    /// so with its own (retryable) code, never `internal_error`.
    #[test]
    fn failed_reads_name_their_own_code() {
        for (err, code) in [
            (LogError::ShuttingDown, "shutting_down"),
            (LogError::Unavailable("writer failed".into()), "unavailable"),
            (
                LogError::ClusterUnavailable("no broker".into()),
                "kafka_unavailable",
            ),
        ] {
            let event = error_event(&GatewayError::from(err).body(), None);
            let data = event
                .strip_prefix("event: error\ndata: ")
                .and_then(|rest| rest.strip_suffix("\n\n"))
                .expect("one error event");
            let data: serde_json::Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["code"], code, "{event}");
        }
    }
}
