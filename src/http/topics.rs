//! Topic administration: create, list, describe, change, delete.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use utoipa::{IntoParams, ToSchema};

use super::body;
use super::topic_name;
use crate::gateway::{Caller, ErrorBody, ErrorCode, Gateway, GatewayError};
use crate::history::History;
use crate::log::{
    DEFAULT_RETENTION_MS, PartitionOffsets, TopicConfig, TopicDescription, TopicUpdate,
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    /// 1–249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
    #[schema(example = "orders")]
    name: String,
    /// 1–1024; defaults to 1.
    #[serde(default = "one", deserialize_with = "crate::json::whole::number")]
    #[schema(minimum = 1, maximum = 1024, default = 1)]
    partitions: u32,
    /// Milliseconds records are kept; -1 keeps them forever. Defaults to 7 days.
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(schema_with = super::openapi::retention)]
    retention_ms: Option<i64>,
    /// Bytes kept per partition; -1 (the default) means unlimited.
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(schema_with = super::openapi::retention)]
    retention_bytes: Option<i64>,
}

fn one() -> u32 {
    1
}

/// Changes to a topic; fields left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTopic {
    /// New partition count, 1–1024; partitions can only be added.
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(minimum = 1, maximum = 1024)]
    partitions: Option<u32>,
    /// Milliseconds records are kept; -1 keeps them forever.
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(schema_with = super::openapi::retention)]
    retention_ms: Option<i64>,
    /// Bytes kept per partition; -1 means unlimited.
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(schema_with = super::openapi::retention)]
    retention_bytes: Option<i64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TopicSummary {
    name: String,
    partitions: u32,
    retention_ms: i64,
    retention_bytes: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TopicList {
    topics: Vec<TopicSummary>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PartitionBounds {
    partition: u32,
    /// First offset still stored.
    log_start_offset: u64,
    /// Offset the next record will get.
    high_watermark: u64,
    /// Bytes of the partition's stored records as encoded (on redb: records and batch
    /// headers, without the database's own page overhead): what `retention_bytes` bounds.
    /// Null where the backend cannot tell (Kafka through librdkafka).
    #[schema(required = true)]
    size_bytes: Option<u64>,
    /// Node id of the partition's leader; null while it has none. On the embedded log,
    /// the one node, 0.
    #[schema(required = true)]
    leader: Option<i32>,
    /// Node ids of the assigned replicas (Kafka's AR).
    replicas: Vec<i32>,
    /// Node ids of the replicas in sync with the leader; those of `replicas` missing here
    /// are out of sync.
    isr: Vec<i32>,
}

impl From<PartitionOffsets> for PartitionBounds {
    fn from(p: PartitionOffsets) -> Self {
        PartitionBounds {
            partition: p.partition.get(),
            log_start_offset: p.bounds.log_start_offset.get(),
            high_watermark: p.bounds.high_watermark.get(),
            size_bytes: p.size_bytes,
            leader: p.replicas.leader,
            replicas: p.replicas.replicas,
            isr: p.replicas.isr,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TopicDetails {
    name: String,
    partitions: u32,
    retention_ms: i64,
    retention_bytes: i64,
    partition_offsets: Vec<PartitionBounds>,
}

impl From<TopicDescription> for TopicDetails {
    fn from(topic: TopicDescription) -> Self {
        TopicDetails {
            name: topic.name.to_string(),
            partitions: topic.config.partitions,
            retention_ms: topic.config.retention_ms,
            retention_bytes: topic.config.retention_bytes,
            partition_offsets: topic.partitions.into_iter().map(Into::into).collect(),
        }
    }
}

/// Create a topic.
#[utoipa::path(
    tag = "topics",
    request_body = CreateTopic,
    responses(
        (status = 201, description = "Created", body = TopicDetails),
        (status = 400, description = "Invalid name or settings", body = ErrorBody),
        (status = 409, description = "A topic with this name exists", body = ErrorBody),
    )
)]
#[post("/v1/topics")]
pub async fn create_topic(
    caller: Caller,
    state: web::Data<Gateway>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, GatewayError> {
    let log = caller.admin()?;
    let body: CreateTopic = body::json(&request, payload.into_inner(), &state.limits).await?;
    let name = topic_name(&body.name)?;
    let config = TopicConfig {
        partitions: body.partitions,
        retention_ms: body.retention_ms.unwrap_or(DEFAULT_RETENTION_MS),
        retention_bytes: body.retention_bytes.unwrap_or(-1),
    };
    let topic = log.create_topic(name, config).await?;
    Ok(HttpResponse::Created().json(TopicDetails::from(topic)))
}

/// List topics with their partition counts.
#[utoipa::path(tag = "topics", responses((status = 200, description = "The topics the token may see", body = TopicList)))]
#[get("/v1/topics")]
pub async fn list_topics(caller: Caller) -> Result<HttpResponse, GatewayError> {
    let topics = caller.visible_topics().await?;
    Ok(HttpResponse::Ok().json(TopicList {
        topics: topics
            .into_iter()
            .map(|t| TopicSummary {
                name: t.name.to_string(),
                partitions: t.config.partitions,
                retention_ms: t.config.retention_ms,
                retention_bytes: t.config.retention_bytes,
            })
            .collect(),
    }))
}

/// A topic's settings and each partition's offsets.
#[utoipa::path(
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    responses(
        (status = 200, description = "The topic", body = TopicDetails),
        (status = 400, description = "Invalid topic name", body = ErrorBody),
        (status = 404, description = "No such topic", body = ErrorBody),
    )
)]
#[get("/v1/topics/{topic}")]
pub async fn describe_topic(
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, GatewayError> {
    let name = topic_name(&path)?;
    let topic = caller.viewer(&name)?.describe().await?;
    Ok(HttpResponse::Ok().json(TopicDetails::from(topic)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Seconds of history wanted, up to what the server keeps (`--stats-window-secs`,
    /// default 3600); defaults to all of it.
    window_s: Option<u64>,
}

impl StatsParams {
    /// The window asked for, checked against the history kept.
    pub(super) fn window(&self, history: &History) -> Result<Duration, GatewayError> {
        let kept = history.window().as_secs();
        match self.window_s.unwrap_or(kept) {
            window @ 1.. if window <= kept => Ok(Duration::from_secs(window)),
            _ => Err(GatewayError::new(
                ErrorCode::InvalidQuery,
                format!("window_s must be between 1 and {kept}"),
            )),
        }
    }
}

/// One interval of a topic's traffic through this server.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TrafficPointJson {
    /// When the interval ended, in milliseconds since the epoch.
    time: i64,
    /// Records published in the interval (replays excluded).
    records_in: u64,
    /// Bytes of those records: keys, values and headers.
    bytes_in: u64,
    /// Records delivered to consumers (fetches, group polls, pushed frames).
    records_out: u64,
    bytes_out: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TopicStats {
    /// Seconds each point covers (`--stats-interval-secs`).
    interval_s: u64,
    /// Oldest first, one per interval of the window; zeros where nothing moved, and for a
    /// topic past `--metrics-max-topics`, whose traffic is not tracked on its own.
    points: Vec<TrafficPointJson>,
}

/// A topic's traffic over the last hour (or `window_s`): records and bytes in and out per
/// interval, from this server's memory (each replica reports what went through it).
#[utoipa::path(
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name"), StatsParams),
    responses(
        (status = 200, description = "The topic's traffic history", body = TopicStats),
        (status = 400, description = "Invalid topic name or window", body = ErrorBody),
        (status = 404, description = "No such topic", body = ErrorBody),
    )
)]
#[get("/v1/topics/{topic}/stats")]
pub async fn topic_stats(
    caller: Caller,
    gateway: web::Data<Gateway>,
    path: web::Path<String>,
    params: web::Query<StatsParams>,
) -> Result<HttpResponse, GatewayError> {
    let name = topic_name(&path)?;
    let window = params.window(&gateway.history)?;
    let points = caller.viewer(&name)?.traffic(window).await?;
    Ok(HttpResponse::Ok().json(TopicStats {
        interval_s: gateway.history.interval().as_secs(),
        points: points
            .into_iter()
            .map(|point| {
                let [records_in, bytes_in, records_out, bytes_out] = point.traffic;
                TrafficPointJson {
                    time: point.time_ms,
                    records_in,
                    bytes_in,
                    records_out,
                    bytes_out,
                }
            })
            .collect(),
    }))
}

/// Raise the partition count or change retention.
#[utoipa::path(
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    request_body = UpdateTopic,
    responses(
        (status = 200, description = "Changed", body = TopicDetails),
        (status = 400, description = "Invalid name or settings", body = ErrorBody),
        (status = 404, description = "No such topic", body = ErrorBody),
        (status = 409, description = "Fewer partitions than the topic has: partitions can only be added", body = ErrorBody),
    )
)]
#[patch("/v1/topics/{topic}")]
pub async fn update_topic(
    caller: Caller,
    state: web::Data<Gateway>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, GatewayError> {
    let log = caller.admin()?;
    let name = topic_name(&path)?;
    let body: UpdateTopic = body::json(&request, payload.into_inner(), &state.limits).await?;
    let update = TopicUpdate {
        partitions: body.partitions,
        retention_ms: body.retention_ms,
        retention_bytes: body.retention_bytes,
    };
    let topic = log.update_topic(&name, update).await?;
    Ok(HttpResponse::Ok().json(TopicDetails::from(topic)))
}

/// Delete a topic and all its records.
#[utoipa::path(
    tag = "topics",
    params(("topic" = String, Path, description = "Topic name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid topic name", body = ErrorBody),
        (status = 404, description = "No such topic", body = ErrorBody),
    )
)]
#[delete("/v1/topics/{topic}")]
pub async fn delete_topic(
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, GatewayError> {
    let admin = caller.admin()?;
    admin.delete_topic(&topic_name(&path)?).await?;
    Ok(HttpResponse::NoContent().finish())
}
