//! Publish, fetch and offset lookup for one topic.

use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::{self, BodyFormat};
use super::topic_name;
use crate::config::Limits;
use crate::gateway::{Caller, ErrorBody, ErrorCode, Gateway, GatewayError, RecordFilter};
use crate::json::Object;
use crate::log::{FetchRequest, Offset, PartitionId, RecordPosition};
use crate::records::{NewRecord, PublishRecord};
use crate::wire::{self, RecordJson};

/// Header that marks a publish answered from the idempotency store.
pub const IDEMPOTENCY_REPLAYED: &str = "Idempotency-Replayed";
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// `application/json` publish body. With `application/x-ndjson`, send one
/// `PublishRecord` object per line instead.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    #[schema(value_type = Vec<PublishRecord>, min_items = 1)]
    records: Vec<Object<PublishRecord>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PublishedOffset {
    partition: u32,
    offset: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PublishResponse {
    /// One entry per record, in request order.
    offsets: Vec<PublishedOffset>,
}

impl From<&RecordPosition> for PublishedOffset {
    fn from(p: &RecordPosition) -> Self {
        PublishedOffset {
            partition: p.partition.get(),
            offset: p.offset.get(),
        }
    }
}

/// Publish records; answered after they are durably committed.
#[utoipa::path(
    tag = "records",
    params(
        ("topic" = String, Path, description = "Topic name"),
        ("Idempotency-Key" = Option<String>, Header, description = "A repeat within the idempotency window returns the first response and appends nothing; the same key with a different body is refused with 422. 1 to --max-idempotency-key-bytes (255) bytes of printable ASCII."),
    ),
    request_body(content(
        (PublishRequest = "application/json"),
        (PublishRecord = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "Committed; `Idempotency-Replayed: true` when this repeats an earlier request", body = PublishResponse),
        (status = 400, description = "Malformed body or record, value nested too deep", body = ErrorBody),
        (status = 404, description = "No such topic or partition", body = ErrorBody),
        (status = 413, description = "Body, record or record count over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON or NDJSON, or Content-Encoding is not gzip", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for a different request", body = ErrorBody),
    )
)]
#[post("/v1/topics/{topic}/records")]
pub async fn publish(
    caller: Caller,
    gateway: web::Data<Gateway>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, GatewayError> {
    let topic = topic_name(&path)?;
    let publisher = caller.publisher(&topic)?;
    let format = BodyFormat::of(&request, &[BodyFormat::Json, BodyFormat::NdJson])?;
    let idempotency_key = request
        .headers()
        .get(IDEMPOTENCY_KEY)
        .map(|value| gateway.idempotency_key(value.as_bytes()))
        .transpose()?;
    let bytes = body::read(&request, payload.into_inner(), &gateway.limits).await?;
    let (records, labels) = parse_records(format, &bytes)?;
    let outcome = publisher
        .publish(records, idempotency_key, |index| labels.label(index))
        .await?;
    let mut response = HttpResponse::Ok();
    if outcome.replayed {
        response.insert_header((IDEMPOTENCY_REPLAYED, "true"));
    }
    Ok(response.json(PublishResponse {
        offsets: outcome.positions.iter().map(Into::into).collect(),
    }))
}

/// How a body names its records in errors: `records[3]` in JSON, `line 4` in NDJSON.
pub(crate) enum RecordLabels {
    Json,
    /// The line of each record (blank lines hold none).
    Lines(Vec<usize>),
}

impl RecordLabels {
    fn label(&self, index: usize) -> String {
        match self {
            RecordLabels::Json => format!("records[{index}]"),
            RecordLabels::Lines(lines) => {
                format!("line {}", lines.get(index).copied().unwrap_or(index + 1))
            }
        }
    }
}

/// Parses a publish body: `{"records": [...]}` as JSON, or one record per NDJSON line.
pub(crate) fn parse_records(
    format: BodyFormat,
    body: &[u8],
) -> Result<(Vec<NewRecord>, RecordLabels), GatewayError> {
    let invalid = |what: String| GatewayError::new(ErrorCode::InvalidBody, what);
    match format {
        BodyFormat::Json => body::parse_json::<PublishRequest>(body)
            .map(|request| {
                let records = request
                    .records
                    .into_iter()
                    .map(|Object(record)| record.into())
                    .collect();
                (records, RecordLabels::Json)
            })
            .map_err(|err| invalid(format!("invalid JSON body: {err}"))),
        BodyFormat::NdJson => {
            let mut records = Vec::new();
            let mut lines = Vec::new();
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                let record = body::parse_json::<PublishRecord>(line)
                    .map_err(|err| invalid(format!("line {}: {err}", i + 1)))?;
                records.push(record.into());
                lines.push(i + 1);
            }
            Ok((records, RecordLabels::Lines(lines)))
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FetchParams {
    /// First offset to return; defaults to the partition's log start.
    offset: Option<u64>,
    /// Most records to return (default 100).
    limit: Option<usize>,
    /// Soft cap on payload bytes (default 1 MiB); at least one record is returned.
    max_bytes: Option<usize>,
    /// Wait up to this long for a record at `offset` (long poll); default 0. With `key` or
    /// `contains`, a scan that reaches the end with nothing found waits for a match.
    wait_ms: Option<u64>,
    /// Keep only records with this key (as the API shows it). The search reads at most
    /// `--max-scan-records` records past `offset`; `next_offset` says where it stopped.
    #[param(max_length = 4096)]
    key: Option<String>,
    /// Keep only records whose value's JSON text contains this text; scanned as `key` is.
    #[param(min_length = 1, max_length = 4096)]
    contains: Option<String>,
}

/// The longest `key` or `contains` a search takes.
const MAX_SEARCH_TEXT: usize = 4096;

/// The JSON body of a fetch. `wire::fetch_response` writes it without re-encoding the
/// stored values; this type only describes it (for the OpenAPI document), and a test
/// reads what `wire` writes into it, unknown fields refused, so the two cannot drift.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only the schema and the agreement test look at the fields.
pub struct FetchResponse {
    records: Vec<RecordJson>,
    /// Offset to ask for next.
    next_offset: u64,
    high_watermark: u64,
    log_start_offset: u64,
}

const DEFAULT_FETCH_LIMIT: usize = 100;
const DEFAULT_FETCH_BYTES: usize = 1 << 20;

/// Read records of one partition.
#[utoipa::path(
    tag = "records",
    params(
        ("topic" = String, Path, description = "Topic name"),
        ("partition" = u32, Path, description = "Partition number"),
        FetchParams,
    ),
    responses(
        (status = 200, description = "Records from `offset` on, possibly none", body = FetchResponse),
        (status = 400, description = "Invalid parameters", body = ErrorBody),
        (status = 404, description = "No such topic or partition", body = ErrorBody),
        (status = 416, description = "Offset below the log start or above the high watermark; the error carries both bounds", body = ErrorBody),
    )
)]
#[get("/v1/topics/{topic}/partitions/{partition}/records")]
pub async fn fetch(
    caller: Caller,
    gateway: web::Data<Gateway>,
    path: web::Path<(String, u32)>,
    params: web::Query<FetchParams>,
) -> Result<HttpResponse, GatewayError> {
    let (topic, partition) = path.into_inner();
    let (topic, partition) = (topic_name(&topic)?, PartitionId::new(partition));
    let subscriber = caller.subscriber(&topic)?;
    let read = read_limits(
        params.limit,
        params.max_bytes,
        params.wait_ms,
        &gateway.limits,
        ErrorCode::InvalidQuery,
    )?;
    let offset = params.offset.map(Offset::parse).transpose()?;
    let request = FetchRequest {
        offset,
        max_records: read.max_records,
        max_bytes: read.max_bytes,
    };
    let filter = search_filter(&params)?;
    let result = if filter.is_active() {
        subscriber
            .search(partition, request, &filter, read.wait)
            .await?
    } else {
        subscriber.fetch(partition, request, read.wait).await?
    };
    Ok(HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(wire::fetch_response(&result)))
}

fn search_filter(params: &FetchParams) -> Result<RecordFilter, GatewayError> {
    let checked = |name: &str, value: &Option<String>, min: usize| match value {
        Some(text) if text.len() < min || text.len() > MAX_SEARCH_TEXT => Err(GatewayError::new(
            ErrorCode::InvalidQuery,
            format!("{name} must be {min} to {MAX_SEARCH_TEXT} bytes long"),
        )),
        _ => Ok(value.clone()),
    };
    Ok(RecordFilter {
        key: checked("key", &params.key, 0)?,
        contains: checked("contains", &params.contains, 1)?,
    })
}

/// `limit`, `max_bytes` and `wait_ms` of a read (a fetch or a group poll), with their
/// defaults, checked against the configured maxima.
pub(super) struct ReadLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub wait: Duration,
}

/// [`ReadLimits`] from what the client sent; `code` says where it sent them (query or body).
pub(super) fn read_limits(
    limit: Option<usize>,
    max_bytes: Option<usize>,
    wait_ms: Option<u64>,
    limits: &Limits,
    code: ErrorCode,
) -> Result<ReadLimits, GatewayError> {
    let bounded = |name: &str, value: Option<usize>, default: usize, max: usize| match value
        .unwrap_or(default)
    {
        value @ 1.. if value <= max => Ok(value),
        _ => Err(GatewayError::new(
            code,
            format!("{name} must be between 1 and {max}"),
        )),
    };
    let max_records = bounded(
        "limit",
        limit,
        DEFAULT_FETCH_LIMIT,
        limits.max_fetch_records,
    )?;
    let max_bytes = bounded(
        "max_bytes",
        max_bytes,
        DEFAULT_FETCH_BYTES.min(limits.max_fetch_bytes),
        limits.max_fetch_bytes,
    )?;
    let wait_ms = wait_ms.unwrap_or(0);
    if wait_ms > limits.max_wait_ms {
        return Err(GatewayError::new(
            code,
            format!("wait_ms must be at most {}", limits.max_wait_ms),
        ));
    }
    Ok(ReadLimits {
        max_records,
        max_bytes,
        wait: Duration::from_millis(wait_ms),
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OffsetParams {
    /// Milliseconds since the epoch.
    timestamp: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TimestampOffsetResponse {
    partition: u32,
    /// First offset whose timestamp is at or after the one asked for; the high watermark
    /// when no record is that recent yet.
    offset: u64,
    /// Timestamp of the record at `offset`, or null when `offset` is the high watermark.
    timestamp: Option<i64>,
}

/// Find the first offset at or after a timestamp.
#[utoipa::path(
    tag = "records",
    params(
        ("topic" = String, Path, description = "Topic name"),
        ("partition" = u32, Path, description = "Partition number"),
        OffsetParams,
    ),
    responses(
        (status = 200, description = "The offset", body = TimestampOffsetResponse),
        (status = 400, description = "Missing or invalid timestamp", body = ErrorBody),
        (status = 404, description = "No such topic or partition", body = ErrorBody),
    )
)]
#[get("/v1/topics/{topic}/partitions/{partition}/offsets")]
pub async fn offset_for_timestamp(
    caller: Caller,
    path: web::Path<(String, u32)>,
    params: web::Query<OffsetParams>,
) -> Result<HttpResponse, GatewayError> {
    let (topic, partition) = path.into_inner();
    let (topic, partition) = (topic_name(&topic)?, PartitionId::new(partition));
    let found = caller
        .subscriber(&topic)?
        .offset_for_timestamp(partition, params.timestamp)
        .await?;
    Ok(HttpResponse::Ok().json(TimestampOffsetResponse {
        partition: found.partition.get(),
        offset: found.offset.get(),
        timestamp: found.timestamp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{FetchResult, PartitionBounds, StoredRecord};

    /// The schema types describe exactly what `wire` writes: every field, nothing more.
    #[test]
    fn fetch_schema_matches_the_bytes_wire_writes() {
        let record = StoredRecord::sample(3, 41, r#"{"n": [1, 2.5]}"#);
        let body = crate::wire::fetch_response(&FetchResult {
            records: vec![record],
            next_offset: Offset::new(42),
            bounds: PartitionBounds {
                log_start_offset: Offset::new(7),
                high_watermark: Offset::new(50),
            },
        });
        let parsed: FetchResponse = serde_json::from_slice(&body).expect("wire matches schema");
        assert_eq!(
            (
                parsed.next_offset,
                parsed.high_watermark,
                parsed.log_start_offset
            ),
            (42, 50, 7)
        );
        assert_eq!(parsed.records.len(), 1);
    }
}
