//! Consumer groups over HTTP: poll as a member, commit, seek, inspect, leave, delete.
//! Every route needs `group:G`; every topic a request names needs `subscribe:T` too.

use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use std::io::Write;

use super::body;
use super::records::read_limits;
use super::topic_name;
use crate::gateway::{Caller, ErrorBody, ErrorCode, Gateway, GatewayError};
use crate::groups::{
    CommitRequest, Generation, GroupDescription, GroupPhase, GroupSummary, MemberId, OffsetReset,
    PollRequest, Polled, SeekTarget,
};
use crate::log::{GroupId, Offset, PartitionId, TopicName};
use crate::wire::{self, RecordJson};

fn group_id(raw: &str) -> Result<GroupId, GatewayError> {
    Ok(GroupId::parse(raw)?)
}

fn topics(names: &[String]) -> Result<Vec<TopicName>, GatewayError> {
    names.iter().map(|name| topic_name(name)).collect()
}

fn offset(raw: u64) -> Result<Offset, GatewayError> {
    Ok(Offset::parse(raw)?)
}

/// Where a member without a usable committed offset starts.
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutoOffsetReset {
    /// At the high watermark: only what is published from now on (the default).
    Latest,
    /// At the log start: everything still stored.
    Earliest,
}

/// One poll of a group member.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollBody {
    /// Topics this member consumes; members of one group may consume different topics.
    #[schema(min_items = 1, max_items = 100)]
    topics: Vec<String>,
    /// Absent on the first poll: the server makes a member and returns its id.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._-]+$")]
    member_id: Option<String>,
    /// Most records to return (default 100).
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(minimum = 1)]
    limit: Option<usize>,
    /// Soft cap on payload bytes (default 1 MiB).
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(minimum = 1)]
    max_bytes: Option<usize>,
    /// Wait up to this long for a record when none is there (long poll); default 0.
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(minimum = 0)]
    wait_ms: Option<u64>,
    /// Commit, before reading, what earlier polls of this member delivered (at-least-once).
    #[serde(default)]
    auto_commit: bool,
    auto_offset_reset: Option<AutoOffsetReset>,
    /// How long the member lives without polling (default 30 000).
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(minimum = 1)]
    session_timeout_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicPartitionJson {
    topic: String,
    partition: u32,
}

/// A partition of a poll's assignment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only the schema and the agreement test look at the fields.
pub struct AssignedPartitionJson {
    topic: String,
    partition: u32,
    /// The next offset this member reads in the partition, past this poll's records (and
    /// past offsets holding none: on Kafka, transaction markers). Commit it once the
    /// records are processed; `auto_commit` does. Absent before the first read.
    #[schema(nullable = false)]
    position: Option<u64>,
}

/// A record of a group poll: a fetched record plus its topic. (serde cannot refuse unknown
/// fields next to a flattened struct; the agreement test compares the keys instead.)
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // Only the schema and the agreement test look at the fields.
pub struct GroupRecordJson {
    topic: String,
    #[serde(flatten)]
    record: RecordJson,
}

/// The answer to a poll (written by `poll_response`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only the schema and the agreement test look at the fields.
pub struct PollResponse {
    /// Send it with every later poll and commit.
    member_id: String,
    /// Commits must name it; it rises with every rebalance.
    generation: u64,
    /// The partitions this member reads, until the next rebalance, with its positions.
    assignment: Vec<AssignedPartitionJson>,
    /// Records of the assigned partitions, in offset order per partition.
    records: Vec<GroupRecordJson>,
}

/// Poll as a member of a consumer group.
#[utoipa::path(
    tag = "groups",
    params(("group" = String, Path, description = "Consumer group name")),
    request_body = PollBody,
    responses(
        (status = 200, description = "Records from the member's partitions, possibly none", body = PollResponse),
        (status = 400, description = "Invalid body, topic name, member id or limits", body = ErrorBody),
        (status = 404, description = "No such topic, or the member is not in the group (expired or left)", body = ErrorBody),
        (status = 409, description = "The group is full (--max-group-members)", body = ErrorBody),
    )
)]
#[post("/v1/groups/{group}/poll")]
pub async fn poll(
    caller: Caller,
    state: web::Data<Gateway>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, GatewayError> {
    let group = group_id(&path)?;
    let access = caller.group(&group)?;
    let body: PollBody = body::json(&request, payload.into_inner(), &state.limits).await?;
    let read = read_limits(
        body.limit,
        body.max_bytes,
        body.wait_ms,
        &state.limits,
        ErrorCode::InvalidBody,
    )?;
    let client = request.connection_info().peer_addr().map(str::to_owned);
    let polled = access
        .poll(PollRequest {
            member: body.member_id.as_deref().map(MemberId::parse).transpose()?,
            topics: topics(&body.topics)?,
            max_records: read.max_records,
            max_bytes: read.max_bytes,
            wait: read.wait,
            auto_commit: body.auto_commit,
            reset: match body.auto_offset_reset {
                Some(AutoOffsetReset::Earliest) => OffsetReset::Earliest,
                Some(AutoOffsetReset::Latest) | None => OffsetReset::Latest,
            },
            session_timeout: body.session_timeout_ms.map(Duration::from_millis),
            client,
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(poll_response(&polled)))
}

/// The body of a poll: the member, its generation and assignment, and the records of every
/// assigned partition, their values spliced in (`wire`).
fn poll_response(polled: &Polled) -> Vec<u8> {
    let payload: usize = polled
        .records
        .iter()
        .map(|(_, r)| r.value.len() + 128)
        .sum();
    let mut out = Vec::with_capacity(payload + 256);
    out.extend_from_slice(br#"{"member_id":"#);
    let _ = serde_json::to_writer(&mut out, polled.member.as_str());
    let _ = write!(out, r#","generation":{},"assignment":["#, polled.generation);
    for (i, ((topic, partition), position)) in polled.assignment.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"topic":"#);
        let _ = serde_json::to_writer(&mut out, topic.as_str());
        let _ = write!(out, r#","partition":{partition}"#);
        if let Some(position) = position {
            let _ = write!(out, r#","position":{position}"#);
        }
        out.push(b'}');
    }
    out.extend_from_slice(br#"],"records":["#);
    for (i, (topic, record)) in polled.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        wire::write_record(&mut out, Some(topic), record);
    }
    out.extend_from_slice(b"]}");
    out
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitOffsetJson {
    topic: String,
    #[serde(deserialize_with = "crate::json::whole::number")]
    #[schema(minimum = 0, maximum = 1023)]
    partition: u32,
    /// The next offset to read (Kafka's convention): one past the last record processed.
    #[serde(deserialize_with = "crate::json::whole::number")]
    #[schema(minimum = 0)]
    offset: u64,
}

/// Offsets to commit. A member names itself and its generation and commits only its own
/// partitions; without `member_id` (a client assigning partitions itself) a commit is
/// accepted only while the group has no live members.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._-]+$")]
    member_id: Option<String>,
    #[serde(default, deserialize_with = "crate::json::whole::optional")]
    #[schema(minimum = 0)]
    generation: Option<u64>,
    #[schema(min_items = 1)]
    offsets: Vec<CommitOffsetJson>,
}

/// Commit offsets of a consumer group.
#[utoipa::path(
    tag = "groups",
    params(("group" = String, Path, description = "Consumer group name")),
    request_body = CommitBody,
    responses(
        (status = 204, description = "Committed durably"),
        (status = 400, description = "Invalid body, names or offsets", body = ErrorBody),
        (status = 404, description = "No such topic or partition, or the member is not in the group", body = ErrorBody),
        (status = 409, description = "Stale generation, a partition not assigned to the member, or a commit without member_id while the group has members", body = ErrorBody),
        (status = 416, description = "An offset past the partition's high watermark", body = ErrorBody),
    )
)]
#[post("/v1/groups/{group}/commit")]
pub async fn commit(
    caller: Caller,
    state: web::Data<Gateway>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, GatewayError> {
    let group = group_id(&path)?;
    let access = caller.group(&group)?;
    let body: CommitBody = body::json(&request, payload.into_inner(), &state.limits).await?;
    let offsets = body
        .offsets
        .iter()
        .map(|o| {
            Ok((
                topic_name(&o.topic)?,
                PartitionId::new(o.partition),
                offset(o.offset)?,
            ))
        })
        .collect::<Result<Vec<_>, GatewayError>>()?;
    access
        .commit(CommitRequest {
            member: body.member_id.as_deref().map(MemberId::parse).transpose()?,
            generation: body.generation.map(Generation::new),
            offsets,
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `"earliest"`, `"latest"`, `{"timestamp": ms}` or `{"offsets": [{"partition", "offset"}]}`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SeekTo {
    Named(SeekEnd),
    Timestamp(SeekTimestamp),
    Offsets(SeekOffsets),
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeekEnd {
    Earliest,
    Latest,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeekTimestamp {
    /// Milliseconds since the epoch: each partition moves to its first offset at or after it.
    #[serde(deserialize_with = "crate::json::whole::number")]
    timestamp: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeekOffsets {
    #[schema(min_items = 1)]
    offsets: Vec<PartitionOffsetJson>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionOffsetJson {
    #[serde(deserialize_with = "crate::json::whole::number")]
    #[schema(minimum = 0, maximum = 1023)]
    partition: u32,
    #[serde(deserialize_with = "crate::json::whole::number")]
    #[schema(minimum = 0)]
    offset: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeekBody {
    topic: String,
    to: SeekTo,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SeekResponse {
    topic: String,
    /// The committed offsets after the seek.
    offsets: Vec<PartitionOffsetJson>,
}

/// Move a consumer group's committed offsets of one topic.
#[utoipa::path(
    tag = "groups",
    params(("group" = String, Path, description = "Consumer group name")),
    request_body = SeekBody,
    responses(
        (status = 200, description = "Moved; members continue from here after their next poll", body = SeekResponse),
        (status = 400, description = "Invalid body, names or offsets", body = ErrorBody),
        (status = 404, description = "No such topic or partition", body = ErrorBody),
        (status = 416, description = "An offset past the partition's high watermark", body = ErrorBody),
    )
)]
#[post("/v1/groups/{group}/seek")]
pub async fn seek(
    caller: Caller,
    state: web::Data<Gateway>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, GatewayError> {
    let group = group_id(&path)?;
    let access = caller.group(&group)?;
    let body: SeekBody = body::json(&request, payload.into_inner(), &state.limits).await?;
    let topic = topic_name(&body.topic)?;
    let target = match body.to {
        SeekTo::Named(SeekEnd::Earliest) => SeekTarget::Earliest,
        SeekTo::Named(SeekEnd::Latest) => SeekTarget::Latest,
        SeekTo::Timestamp(SeekTimestamp { timestamp }) => SeekTarget::Timestamp(timestamp),
        SeekTo::Offsets(SeekOffsets { offsets }) => SeekTarget::Offsets(
            offsets
                .iter()
                .map(|o| Ok((PartitionId::new(o.partition), offset(o.offset)?)))
                .collect::<Result<_, GatewayError>>()?,
        ),
    };
    let moved = access.seek(&topic, target).await?;
    Ok(HttpResponse::Ok().json(SeekResponse {
        topic: topic.to_string(),
        offsets: moved
            .into_iter()
            .map(|(partition, offset)| PartitionOffsetJson {
                partition: partition.get(),
                offset: offset.get(),
            })
            .collect(),
    }))
}

/// `stable` while the group has live members, `empty` when only committed offsets remain.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupStateJson {
    Stable,
    Empty,
}

impl From<GroupPhase> for GroupStateJson {
    fn from(phase: GroupPhase) -> Self {
        match phase {
            GroupPhase::Stable => GroupStateJson::Stable,
            GroupPhase::Empty => GroupStateJson::Empty,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GroupSummaryJson {
    group: String,
    state: GroupStateJson,
    generation: u64,
    members: usize,
}

impl From<GroupSummary> for GroupSummaryJson {
    fn from(summary: GroupSummary) -> Self {
        GroupSummaryJson {
            group: summary.group.to_string(),
            state: summary.phase.into(),
            generation: summary.generation.get(),
            members: summary.members,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    groups: Vec<GroupSummaryJson>,
}

/// List the consumer groups the token may see.
#[utoipa::path(
    tag = "groups",
    responses((status = 200, description = "Groups with live members or committed offsets", body = GroupList))
)]
#[get("/v1/groups")]
pub async fn list_groups(caller: Caller) -> Result<HttpResponse, GatewayError> {
    let groups = caller.visible_groups().await?;
    Ok(HttpResponse::Ok().json(GroupList {
        groups: groups.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct MemberJson {
    member_id: String,
    /// Address the member's last request came from.
    client: Option<String>,
    /// When the member last polled or committed, in ms since the epoch.
    last_seen_ms: i64,
    session_timeout_ms: u64,
    topics: Vec<String>,
    assignment: Vec<TopicPartitionJson>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PartitionProgressJson {
    topic: String,
    partition: u32,
    /// The member reading it, if any.
    member_id: Option<String>,
    /// The next offset the group will read; null before the first commit.
    committed_offset: Option<u64>,
    log_start_offset: u64,
    high_watermark: u64,
    /// `high_watermark - committed_offset`; null before the first commit.
    lag: Option<u64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GroupDetails {
    group: String,
    state: GroupStateJson,
    generation: u64,
    members: Vec<MemberJson>,
    partitions: Vec<PartitionProgressJson>,
}

fn assignment_json(assignment: &[(TopicName, PartitionId)]) -> Vec<TopicPartitionJson> {
    assignment
        .iter()
        .map(|(topic, partition)| TopicPartitionJson {
            topic: topic.to_string(),
            partition: partition.get(),
        })
        .collect()
}

impl From<GroupDescription> for GroupDetails {
    fn from(group: GroupDescription) -> Self {
        GroupDetails {
            group: group.group.to_string(),
            state: group.phase.into(),
            generation: group.generation.get(),
            members: group
                .members
                .into_iter()
                .map(|member| MemberJson {
                    member_id: member.member.to_string(),
                    client: member.client,
                    last_seen_ms: member.last_seen_ms,
                    session_timeout_ms: u64::try_from(member.session_timeout.as_millis())
                        .unwrap_or(u64::MAX),
                    topics: member.topics.iter().map(ToString::to_string).collect(),
                    assignment: assignment_json(&member.assignment),
                })
                .collect(),
            partitions: group
                .partitions
                .into_iter()
                .map(|p| PartitionProgressJson {
                    topic: p.topic.to_string(),
                    partition: p.partition.get(),
                    member_id: p.member.map(|m| m.to_string()),
                    committed_offset: p.committed.map(Offset::get),
                    log_start_offset: p.log_start_offset.get(),
                    high_watermark: p.high_watermark.get(),
                    lag: p.lag,
                })
                .collect(),
        }
    }
}

/// A consumer group: members, assignment, and per partition the committed offset, bounds
/// and lag.
#[utoipa::path(
    tag = "groups",
    params(("group" = String, Path, description = "Consumer group name")),
    responses(
        (status = 200, description = "The group", body = GroupDetails),
        (status = 400, description = "Invalid group name", body = ErrorBody),
        (status = 404, description = "No such group (no live member, no committed offset)", body = ErrorBody),
    )
)]
#[get("/v1/groups/{group}")]
pub async fn describe_group(
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, GatewayError> {
    let group = group_id(&path)?;
    let description = caller.group(&group)?.describe().await?;
    Ok(HttpResponse::Ok().json(GroupDetails::from(description)))
}

/// A group's total lag at one sample.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LagPoint {
    /// When the sample was taken, in milliseconds since the epoch.
    time: i64,
    /// Records between the committed offsets and the high watermarks, summed over the
    /// partitions with a committed offset; null before the group was seen.
    #[schema(required = true)]
    lag: Option<u64>,
}

/// One partition's lag at each of the points.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PartitionLagHistory {
    topic: String,
    partition: u32,
    /// One per point; null where the group had no committed offset on it.
    lag: Vec<Option<u64>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GroupStats {
    /// Seconds between two samples (`--stats-interval-secs`).
    interval_s: u64,
    /// Oldest first.
    points: Vec<LagPoint>,
    partitions: Vec<PartitionLagHistory>,
}

/// A group's lag over the last hour (or `window_s`), in total and per partition, from
/// this server's memory (sampled as `/metrics` reports lag: the first
/// `--metrics-max-groups` groups by name).
#[utoipa::path(
    tag = "groups",
    params(("group" = String, Path, description = "Consumer group name"), super::topics::StatsParams),
    responses(
        (status = 200, description = "The group's lag history", body = GroupStats),
        (status = 400, description = "Invalid group name or window", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    )
)]
#[get("/v1/groups/{group}/stats")]
pub async fn group_stats(
    caller: Caller,
    gateway: web::Data<Gateway>,
    path: web::Path<String>,
    params: web::Query<super::topics::StatsParams>,
) -> Result<HttpResponse, GatewayError> {
    let group = group_id(&path)?;
    let window = params.window(&gateway.history)?;
    let history = caller.group(&group)?.lag_history(window).await?;
    Ok(HttpResponse::Ok().json(GroupStats {
        interval_s: gateway.history.interval().as_secs(),
        points: history
            .times
            .into_iter()
            .zip(history.total)
            .map(|(time, lag)| LagPoint { time, lag })
            .collect(),
        partitions: history
            .partitions
            .into_iter()
            .map(|(topic, partition, lag)| PartitionLagHistory {
                topic,
                partition,
                lag,
            })
            .collect(),
    }))
}

/// Leave a consumer group now: its partitions move to the other members at once.
#[utoipa::path(
    tag = "groups",
    params(
        ("group" = String, Path, description = "Consumer group name"),
        ("member" = String, Path, description = "Member id"),
    ),
    responses(
        (status = 204, description = "Left; the group rebalanced"),
        (status = 400, description = "Invalid group name or member id", body = ErrorBody),
        (status = 404, description = "No such member in the group", body = ErrorBody),
    )
)]
#[delete("/v1/groups/{group}/members/{member}")]
pub async fn leave_group(
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, GatewayError> {
    let (group, member) = path.into_inner();
    let group = group_id(&group)?;
    let access = caller.group(&group)?;
    access.leave(&MemberId::parse(&member)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete an empty consumer group's committed offsets.
#[utoipa::path(
    tag = "groups",
    params(("group" = String, Path, description = "Consumer group name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid group name", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "The group has live members", body = ErrorBody),
    )
)]
#[delete("/v1/groups/{group}")]
pub async fn delete_group(
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, GatewayError> {
    let group = group_id(&path)?;
    caller.group(&group)?.delete().await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::log::StoredRecord;

    /// The schema types describe exactly what `wire` writes for a poll.
    #[test]
    fn poll_schema_matches_the_bytes_wire_writes() {
        let topic = TopicName::parse("orders").unwrap();
        let polled = Polled {
            member: MemberId::parse("m-1").unwrap(),
            generation: Generation::new(4),
            assignment: vec![((topic.clone(), PartitionId::new(2)), Some(Offset::new(10)))],
            records: vec![(topic, StoredRecord::sample(2, 9, "[1]"))],
        };
        let body = poll_response(&polled);
        let parsed: PollResponse = serde_json::from_slice(&body).expect("wire matches schema");
        assert_eq!(parsed.member_id, "m-1");
        assert_eq!(parsed.generation, 4);
        assert_eq!(parsed.assignment[0].topic, "orders");
        assert_eq!(parsed.assignment[0].position, Some(10));
        assert_eq!(parsed.records[0].topic, "orders");
        let value: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["records"][0]
                .as_object()
                .unwrap()
                .clone()
                .into_iter()
                .collect();
        assert_eq!(
            value.keys().collect::<Vec<_>>(),
            [
                "headers",
                "key",
                "offset",
                "partition",
                "timestamp",
                "topic",
                "value"
            ]
        );
    }
}
