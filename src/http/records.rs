//! Publish, fetch and offset lookup for one topic.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::body::{self, BodyFormat};
use super::error::{ApiError, ErrorBody};
use super::guard::{AppState, Caller};
use super::topic_name;
use crate::auth::Action;
use crate::config::Limits;
use crate::log::{AppendRequest, FetchRequest, NewRecord, PartitionChoice, RecordPosition};
use crate::wire;

/// Header that marks a publish answered from the idempotency store.
pub const IDEMPOTENCY_REPLAYED: &str = "Idempotency-Replayed";
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// One record to publish.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRecord {
    /// Records with the same key go to the same partition (Kafka's murmur2 partitioner).
    key: Option<String>,
    /// Any JSON value; stored and served exactly as sent.
    #[schema(value_type = Value)]
    #[serde(deserialize_with = "unicode_json")]
    value: Box<RawValue>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Explicit partition; overrides the key.
    partition: Option<u32>,
}

/// Takes the value's JSON text as is, refusing escapes of lone UTF-16 surrogates
/// (`"\ud800"`): the JSON grammar allows them, but they encode no Unicode text and strict
/// parsers (serde_json among them) would then fail on every fetch page holding the record.
fn unicode_json<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Box<RawValue>, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    // Only text with a surrogate escape pays for a full parse, which checks the pairing.
    if has_surrogate_escape(raw.get())
        && let Err(err) = serde_json::from_str::<serde_json::Value>(raw.get())
    {
        return Err(serde::de::Error::custom(format!(
            "value is not valid Unicode JSON ({err})"
        )));
    }
    Ok(raw)
}

fn has_surrogate_escape(json: &str) -> bool {
    json.as_bytes().windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && matches!(w[2], b'd' | b'D')
            && matches!(w[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
    })
}

impl From<PublishRecord> for NewRecord {
    fn from(record: PublishRecord) -> Self {
        NewRecord {
            partition: record
                .partition
                .map_or(PartitionChoice::Default, PartitionChoice::Explicit),
            key: record.key,
            value: record.value,
            headers: record.headers.into_iter().collect(),
        }
    }
}

/// `application/json` publish body. With `application/x-ndjson`, send one
/// `PublishRecord` object per line instead.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    records: Vec<PublishRecord>,
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
            partition: p.partition,
            offset: p.offset,
        }
    }
}

/// Publish records; answered after they are durably committed.
#[utoipa::path(
    tag = "records",
    params(
        ("topic" = String, Path, description = "Topic name"),
        ("Idempotency-Key" = Option<String>, Header, description = "A repeat within the idempotency window returns the first response and appends nothing"),
    ),
    request_body(content(
        (PublishRequest = "application/json"),
        (PublishRecord = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "Committed; `Idempotency-Replayed: true` when this repeats an earlier request", body = PublishResponse),
        (status = 400, description = "Malformed body or record", body = ErrorBody),
        (status = 404, description = "No such topic or partition", body = ErrorBody),
        (status = 413, description = "Body, record or record count over the limit", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON or NDJSON", body = ErrorBody),
    )
)]
#[post("/v1/topics/{topic}/records")]
pub async fn publish(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let topic = topic_name(&path)?;
    let log = caller.may(Action::Publish, topic.as_str())?;
    let format = BodyFormat::of(&request, &[BodyFormat::Json, BodyFormat::NdJson])?;
    let idempotency_key = idempotency_key(&request, &state.limits)?;
    let bytes = body::read(payload.into_inner(), state.limits.max_body_bytes).await?;
    let records: Vec<NewRecord> = parse_records(format, &bytes)?
        .into_iter()
        .map(Into::into)
        .collect();
    check_records(&records, &state.limits)?;
    let outcome = log
        .append(
            &topic,
            AppendRequest {
                records,
                idempotency_key,
            },
        )
        .await?;
    let mut response = HttpResponse::Ok();
    if outcome.replayed {
        response.insert_header((IDEMPOTENCY_REPLAYED, "true"));
    }
    Ok(response.json(PublishResponse {
        offsets: outcome.positions.iter().map(Into::into).collect(),
    }))
}

/// Parses a publish body: `{"records": [...]}` as JSON, or one record per NDJSON line.
fn parse_records(format: BodyFormat, body: &[u8]) -> Result<Vec<PublishRecord>, ApiError> {
    let invalid = |what: String| ApiError::bad_request("invalid_body", what);
    match format {
        BodyFormat::Json => body::parse_json::<PublishRequest>(body)
            .map(|request| request.records)
            .map_err(|err| invalid(format!("invalid JSON body: {err}"))),
        BodyFormat::NdJson => body
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.trim_ascii().is_empty())
            .map(|(i, line)| {
                body::parse_json::<PublishRecord>(line)
                    .map_err(|err| invalid(format!("line {}: {err}", i + 1)))
            })
            .collect(),
    }
}

fn idempotency_key(request: &HttpRequest, limits: &Limits) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = |why: &str| ApiError::bad_request("invalid_idempotency_key", why.to_owned());
    let key = value
        .to_str()
        .map_err(|_| invalid("Idempotency-Key must be visible ASCII"))?;
    if key.is_empty() {
        return Err(invalid("Idempotency-Key must not be empty"));
    }
    if key.len() > limits.max_idempotency_key_bytes {
        return Err(invalid(&format!(
            "Idempotency-Key is longer than {} bytes",
            limits.max_idempotency_key_bytes
        )));
    }
    Ok(Some(key.to_owned()))
}

fn check_records(records: &[NewRecord], limits: &Limits) -> Result<(), ApiError> {
    if records.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "a publish needs at least one record",
        ));
    }
    if records.len() > limits.max_records_per_request {
        return Err(ApiError::too_large(
            "too_many_records",
            format!(
                "{} records in one request; the limit is {}",
                records.len(),
                limits.max_records_per_request
            ),
        ));
    }
    for (index, record) in records.iter().enumerate() {
        let size = record.payload_len();
        if size > limits.max_record_bytes {
            return Err(ApiError::too_large(
                "record_too_large",
                format!(
                    "record {index} has {size} bytes of key, value and headers; the limit is {}",
                    limits.max_record_bytes
                ),
            ));
        }
    }
    Ok(())
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
    /// Wait up to this long for a record at `offset` (long poll); default 0.
    wait_ms: Option<u64>,
}

/// The JSON body of a fetch (written without re-encoding the stored values).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FetchResponse {
    records: Vec<RecordJson>,
    /// Offset to ask for next.
    next_offset: u64,
    high_watermark: u64,
    log_start_offset: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RecordJson {
    partition: u32,
    offset: u64,
    /// Milliseconds since the epoch, set by the server at append.
    timestamp: i64,
    key: Option<String>,
    #[schema(value_type = Value)]
    value: serde_json::Value,
    headers: BTreeMap<String, String>,
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
        (status = 200, body = FetchResponse),
        (status = 400, description = "Invalid parameters", body = ErrorBody),
        (status = 404, description = "No such topic or partition", body = ErrorBody),
        (status = 416, description = "Offset below the log start or above the high watermark; the error carries both bounds", body = ErrorBody),
    )
)]
#[get("/v1/topics/{topic}/partitions/{partition}/records")]
pub async fn fetch(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, u32)>,
    params: web::Query<FetchParams>,
) -> Result<HttpResponse, ApiError> {
    let (topic, partition) = path.into_inner();
    let topic = topic_name(&topic)?;
    let log = caller.may(Action::Subscribe, topic.as_str())?;
    let limits = &state.limits;
    let max_records = bounded(
        "limit",
        params.limit,
        DEFAULT_FETCH_LIMIT,
        limits.max_fetch_records,
    )?;
    let max_bytes = bounded(
        "max_bytes",
        params.max_bytes,
        DEFAULT_FETCH_BYTES.min(limits.max_fetch_bytes),
        limits.max_fetch_bytes,
    )?;
    let wait_ms = params.wait_ms.unwrap_or(0);
    if wait_ms > limits.max_wait_ms {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("wait_ms must be at most {}", limits.max_wait_ms),
        ));
    }
    let result = log
        .fetch(
            &topic,
            partition,
            FetchRequest {
                offset: params.offset,
                max_records,
                max_bytes,
                wait: Duration::from_millis(wait_ms),
            },
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(wire::fetch_response(&result)))
}

fn bounded(
    name: &str,
    value: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match value.unwrap_or(default) {
        value @ 1.. if value <= max => Ok(value),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be between 1 and {max}"),
        )),
    }
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
        (status = 200, body = TimestampOffsetResponse),
        (status = 400, description = "Missing or invalid timestamp", body = ErrorBody),
        (status = 404, description = "No such topic or partition", body = ErrorBody),
    )
)]
#[get("/v1/topics/{topic}/partitions/{partition}/offsets")]
pub async fn offset_for_timestamp(
    caller: Caller,
    path: web::Path<(String, u32)>,
    params: web::Query<OffsetParams>,
) -> Result<HttpResponse, ApiError> {
    let (topic, partition) = path.into_inner();
    let topic = topic_name(&topic)?;
    let found = caller
        .may(Action::Subscribe, topic.as_str())?
        .offset_for_timestamp(&topic, partition, params.timestamp)
        .await?;
    Ok(HttpResponse::Ok().json(TimestampOffsetResponse {
        partition: found.partition,
        offset: found.offset,
        timestamp: found.timestamp,
    }))
}
