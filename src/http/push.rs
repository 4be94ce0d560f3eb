//! The routes of push delivery: `GET /v1/ws` (the WebSocket upgrade, then `ws` runs the
//! connection) and `GET /v1/topics/{topic}/events` (Server-Sent Events, streamed by `sse`).
//! Both are registered here with the rest of the API, so the OpenAPI document lists them.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract;
use super::server;
use super::topic_name;
use crate::echo::quoted;
use crate::gateway::{Caller, ErrorBody, ErrorCode, Gateway, GatewayError, SubscribeRequest};
use crate::log::PartitionId;
use crate::push::{Positions, Start};
use crate::{sse, ws};

/// Opens a WebSocket (RFC 6455 upgrade) speaking the JSON protocol described in
/// `openapi/asyncapi.json`.
#[utoipa::path(
    tag = "push",
    params(("access_token" = Option<String>, Query, description = "The token, for browsers (which cannot set headers on a WebSocket); or send an `auth` message first")),
    responses(
        (status = 101, description = "Switching protocols: the WebSocket is open"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 401, description = "The token in the request does not verify", body = ErrorBody),
        (status = 403, description = "The page's origin is not allowed (--allowed-origins)", body = ErrorBody),
    )
)]
#[get("/v1/ws")]
pub async fn websocket(
    request: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
) -> Result<HttpResponse, GatewayError> {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !gateway.origin_allowed(origin, host) {
            return Err(GatewayError::new(
                ErrorCode::Forbidden,
                format!(
                    "origin {} may not open WebSockets here (--allowed-origins)",
                    quoted(origin)
                ),
            ));
        }
    }
    let caller = extract::caller_if_any(&request)?;
    let client = request.connection_info().peer_addr().map(str::to_owned);
    let connection = server::Connection::of(&request);
    let closing = move || connection.iter().for_each(|c| c.start_closing());
    ws::open(
        &request,
        payload,
        gateway.into_inner(),
        caller,
        client,
        closing,
    )
    .map_err(|err| {
        GatewayError::new(
            ErrorCode::InvalidArgument,
            format!("not a WebSocket upgrade: {err}"),
        )
    })
}

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
) -> Result<HttpResponse, GatewayError> {
    let topic = topic_name(&path)?;
    caller.subscriber(&topic)?;
    let invalid = |message: String| GatewayError::new(ErrorCode::InvalidQuery, message);
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
    let started = caller
        .start_subscription(
            &topic,
            SubscribeRequest {
                start,
                partitions,
                group: None,
                client: None,
            },
        )
        .await?;
    let stream = sse::stream(caller, topic, started.positions).await;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}
