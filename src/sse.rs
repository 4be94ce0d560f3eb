//! Server-Sent Events: `GET /v1/topics/{topic}/events`, a topic's records as
//! `text/event-stream`, for `EventSource` in browsers and `curl -N`.
//!
//! Each record is one event: `data` is the record as JSON, `id` the cursor of the stream's
//! position right after it (the same encoding as a WebSocket `records` cursor). A browser
//! reconnecting sends the last id as `Last-Event-ID`, and the stream resumes exactly after
//! it; `?last_event_id=` does the same for a freshly created `EventSource`. A position the
//! log no longer holds is reported as an `error` event naming the earliest offset left,
//! then delivery goes on from there. Idle streams get a heartbeat comment every
//! `--sse-heartbeat-ms`. No compression middleware sits in front of this route (actix's
//! would hold the stream back), and `X-Accel-Buffering: no` asks proxies not to buffer.

use std::fmt::Write;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use bytes::Bytes;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::http::{ApiError, Caller, ErrorBody, ErrorCode};
use crate::log::{Offset, PartitionId, TopicName};
use crate::metrics::Open;
use crate::push::{self, FrameLimits, Positions, Start};

/// Reconnection delay suggested to `EventSource`, in ms.
const RETRY_MS: u64 = 3000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// `latest` (default): records published from now on; `earliest`: everything stored.
    #[param(inline)]
    from: Option<StreamFrom>,
    /// Comma-separated partitions (default: all).
    #[param(pattern = r"^[0-9]{1,9}(,[0-9]{1,9})*$")]
    partitions: Option<String>,
    /// Resume after this event id, as the `Last-Event-ID` header does (which wins when both
    /// are sent). A partition it does not name starts at its log start. Up to 2 048
    /// characters here, so the URL stays within what HTTP servers take; a longer cursor (a
    /// topic of hundreds of partitions) goes in the header.
    #[param(
        pattern = r"^([0-9]{1,9}-[0-9]{1,18}(\.[0-9]{1,9}-[0-9]{1,18})*)?$",
        max_length = 2048
    )]
    last_event_id: Option<String>,
}

#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamFrom {
    Latest,
    Earliest,
}

/// One event of the stream as `EventSource` parses it (the stream is a sequence of these,
/// after a first `retry:` hint and comment; `:` comment lines are heartbeats).
#[derive(ToSchema)]
#[allow(dead_code)] // Only the OpenAPI document looks at the fields.
pub struct StreamEvent {
    /// Absent (`message`) for a record; `error` for a notice such as `offset_out_of_range`.
    #[schema(pattern = "^(message|error)$")]
    event: Option<String>,
    /// The cursor right after this record: what `Last-Event-ID` resumes from.
    id: Option<String>,
    /// A record as JSON (`RecordJson`); for `error`, `{code, message, partition,
    /// log_start_offset, high_watermark}`.
    #[schema(content_media_type = "application/json")]
    data: String,
    /// Milliseconds to wait before reconnecting.
    retry: Option<u64>,
}

/// Stream a topic's records as Server-Sent Events.
#[utoipa::path(
    tag = "push",
    params(("topic" = String, Path, description = "Topic name"), EventParams),
    responses(
        (status = 200, description = "An endless `text/event-stream`: one event per record, `id` the resume cursor", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "Invalid topic name, `from`, partitions or event id", body = ErrorBody),
        (status = 404, description = "No such topic or partition", body = ErrorBody),
    )
)]
#[get("/v1/topics/{topic}/events")]
pub async fn events(
    caller: Caller,
    path: web::Path<String>,
    params: web::Query<EventParams>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let topic = TopicName::parse(&path)?;
    let subscriber = caller.subscriber(&topic)?;
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidQuery, message);
    let resume = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| params.last_event_id.clone());
    let start = match (resume, params.from) {
        (Some(id), _) => {
            Start::Cursor(Positions::parse_cursor(&id).map_err(|err| invalid(err.to_string()))?)
        }
        (None, None | Some(StreamFrom::Latest)) => Start::Latest,
        (None, Some(StreamFrom::Earliest)) => Start::Earliest,
    };
    let partitions = params
        .partitions
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(|p| p.trim().parse::<u32>().map(PartitionId::new))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid("partitions must be numbers separated by commas".into()))
        })
        .transpose()?;
    let positions = subscriber
        .resolve(partitions.as_deref(), &start)
        .await
        .map_err(|err| match err {
            push::PushError::Log(err) => err.into(),
            other => invalid(other.to_string()),
        })?;
    let watches = subscriber.watches(&positions);
    let push = caller.state().push;
    let metrics = caller.state().metrics.clone();
    let stream = Stream {
        shutdown: caller.state().shutdown.clone(),
        expiry: caller.expires_at(),
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
        _counted: Open::new(&metrics.push.sse_streams),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::stream::unfold(stream, Stream::next)))
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
    async fn next(mut self) -> Option<(Result<Bytes, actix_web::Error>, Stream)> {
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
            let batch = match subscriber
                .read_push(&mut self.positions, &mut self.rotation, self.limits)
                .await
            {
                Ok(batch) => batch,
                Err(err) => {
                    // The log failed: say so, then end; the client's reconnect resumes.
                    let event = error_event(&ApiError::from(err).to_string(), None);
                    self.finished = true;
                    return Some((Ok(Bytes::from(event)), self));
                }
            };
            if batch.record_count() > 0 || !batch.gaps.is_empty() {
                let chunk = events_chunk(&batch, before);
                return Some((Ok(Bytes::from(chunk)), self));
            }
            let expiry = self.expiry;
            tokio::select! {
                _ = push::wait_for_records(&mut self.watches, &self.positions) => {}
                _ = tokio::time::sleep(self.heartbeat) => {
                    return Some((Ok(Bytes::from_static(b":\n\n")), self));
                }
                _ = self.shutdown.cancelled() => return None,
                _ = sleep_until_epoch(expiry), if expiry.is_some() => return None,
            }
        }
    }
}

async fn sleep_until_epoch(exp: Option<u64>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let left = exp.map_or(u64::MAX, |exp| exp.saturating_sub(now));
    tokio::time::sleep(Duration::from_secs(left.min(365 * 24 * 3600))).await;
}

/// `event: error` naming what happened, as JSON.
fn error_event(message: &str, gap: Option<&push::Gap>) -> String {
    let mut detail = serde_json::json!({
        "code": if gap.is_some() { "offset_out_of_range" } else { "internal_error" },
        "message": message,
    });
    if let Some(gap) = gap {
        detail["partition"] = gap.partition.get().into();
        detail["log_start_offset"] = gap.log_start_offset.get().into();
        detail["high_watermark"] = gap.high_watermark.get().into();
    }
    format!("event: error\ndata: {detail}\n\n")
}

/// The events of one read: gaps first, then one event per record, each with the cursor of
/// the position right after it.
fn events_chunk(batch: &push::Batch, mut position: Positions) -> String {
    let mut chunk = String::new();
    for gap in &batch.gaps {
        let message = format!(
            "partition {}: offset {} is outside the log (log start {}, high watermark {}); the stream goes on from {}",
            gap.partition,
            gap.position,
            gap.log_start_offset,
            gap.high_watermark,
            gap.log_start_offset
        );
        chunk.push_str(&error_event(&message, Some(gap)));
        position.set(gap.partition, gap.log_start_offset);
    }
    for partition in &batch.records {
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
