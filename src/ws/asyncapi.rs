//! The AsyncAPI 3 document of the push protocols, built from the protocol's own types, so it
//! cannot drift from what the session parses and writes. Served at `/asyncapi.json` and
//! committed as `openapi/asyncapi.json` (a test compares them).

use serde_json::{Value, json};
use utoipa::OpenApi;

use super::protocol::{
    Assignment, AuthOp, AuthTag, Authenticated, ClientMessage, CommitOp, CommitTag, Committed,
    ErrorDetail, ErrorMessage, FromCursor, FromNamed, FromOffsets, PartitionOffset, PublishOp,
    PublishTag, Published, PublishedOffset, RecordsMessage, ServerMessage, StartFrom, SubscribeOp,
    SubscribeTag, Subscribed, UnsubscribeOp, UnsubscribeTag,
};
use crate::records::PublishRecord;
use crate::wire::RecordJson;

/// Collects the protocol's schemas (and those they refer to).
#[derive(OpenApi)]
#[openapi(components(schemas(
    ClientMessage,
    SubscribeOp,
    SubscribeTag,
    StartFrom,
    FromNamed,
    FromOffsets,
    FromCursor,
    UnsubscribeOp,
    UnsubscribeTag,
    PublishOp,
    PublishTag,
    PublishRecord,
    CommitOp,
    CommitTag,
    PartitionOffset,
    AuthOp,
    AuthTag,
    ServerMessage,
    Subscribed,
    Assignment,
    Published,
    PublishedOffset,
    Committed,
    Authenticated,
    ErrorMessage,
    ErrorDetail,
    RecordsMessage,
    RecordJson,
)))]
struct Schemas;

/// Client → server messages: (name, schema, summary).
const CLIENT: &[(&str, &str, &str)] = &[
    (
        "subscribe",
        "SubscribeOp",
        "Start a subscription (plain, or as a consumer group member)",
    ),
    ("unsubscribe", "UnsubscribeOp", "Stop a subscription"),
    (
        "publish",
        "PublishOp",
        "Publish records, as HTTP publish does",
    ),
    (
        "commit",
        "CommitOp",
        "Commit offsets of a group subscription",
    ),
    (
        "auth",
        "AuthOp",
        "Authenticate (first message) or refresh the token",
    ),
];

/// Server → client messages.
const SERVER: &[(&str, &str, &str)] = &[
    ("subscribed", "Subscribed", "A subscription started"),
    (
        "records",
        "RecordsMessage",
        "Records of a subscription, with its resume cursor",
    ),
    (
        "assignment",
        "Assignment",
        "A group subscription's partitions after a rebalance",
    ),
    ("published", "Published", "Offsets of published records"),
    ("committed", "Committed", "Offsets committed"),
    ("authenticated", "Authenticated", "The token was accepted"),
    (
        "error",
        "ErrorMessage",
        "A refused message, or a notice on a subscription",
    ),
];

/// The messages of `list`. Server messages are tagged by serde (`type` on the enum, not
/// on the variant's struct), so their payload pins `type` beside the variant's schema.
fn messages(list: &[(&str, &str, &str)], tag: Option<&str>) -> serde_json::Map<String, Value> {
    list.iter()
        .map(|(name, schema, summary)| {
            let variant = json!({"$ref": format!("#/components/schemas/{schema}")});
            let payload = match tag {
                Some(tag) => json!({"allOf": [variant, {
                    "type": "object",
                    "required": [tag],
                    "properties": {tag: {"type": "string", "enum": [name]}},
                }]}),
                None => variant,
            };
            (
                (*name).to_owned(),
                json!({
                    "name": name,
                    "summary": summary,
                    "contentType": "application/json",
                    "payload": payload,
                }),
            )
        })
        .collect()
}

/// The whole document.
pub fn document() -> Value {
    let schemas = Schemas::openapi()
        .components
        .map(|components| serde_json::to_value(components.schemas).unwrap_or_default())
        .unwrap_or_default();
    let mut all_messages = messages(CLIENT, None);
    all_messages.extend(messages(SERVER, Some("type")));
    all_messages.insert(
        "event".into(),
        json!({
            "name": "event",
            "summary": "One record per event: `data` is the record as JSON, `id` the cursor right after it; `event: error` names a gap",
            "contentType": "text/event-stream",
            "payload": {"$ref": "#/components/schemas/RecordJson"},
        }),
    );
    let channel_messages = |list: &[(&str, &str, &str)]| -> serde_json::Map<String, Value> {
        list.iter()
            .map(|(name, _, _)| {
                (
                    (*name).to_owned(),
                    json!({"$ref": format!("#/components/messages/{name}")}),
                )
            })
            .collect()
    };
    let mut ws_messages = channel_messages(CLIENT);
    ws_messages.extend(channel_messages(SERVER));
    let operation = |action: &str, channel: &str, list: &[(&str, &str, &str)]| {
        json!({
            "action": action,
            "channel": {"$ref": format!("#/channels/{channel}")},
            "messages": list
                .iter()
                .map(|(name, _, _)| json!({"$ref": format!("#/channels/{channel}/messages/{name}")}))
                .collect::<Vec<_>>(),
        })
    };
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "tidegate push protocols",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "WebSocket (`/v1/ws`, JSON text frames: client messages carry `op`, server messages `type`; `req` comes back on replies) and Server-Sent Events (`/v1/topics/{topic}/events`). Both deliver records in offset order per partition with one resume cursor. WebSocket close codes: 1000 normal, 1001 shutting down, 1002 a frame that breaks RFC 6455, 1007 text that is not UTF-8, 1008 idle (nothing, not even a pong, within --ws-idle-timeout-ms), 1009 message too big, 4001 authentication missing, invalid or expired, 4008 slow consumer (reconnect from the last cursor).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "description": "tidegate serve (https/wss behind a TLS proxy)",
            },
        },
        "channels": {
            "ws": {
                "address": "/v1/ws",
                "title": "WebSocket",
                "description": "Token: `Authorization: Bearer`, `?access_token=`, or an `auth` message first.",
                "messages": ws_messages,
            },
            "events": {
                "address": "/v1/topics/{topic}/events",
                "title": "Server-Sent Events",
                "description": "`?from=latest|earliest`, `?partitions=0,1`; resume with `Last-Event-ID` or `?last_event_id=`.",
                "parameters": {"topic": {"description": "Topic name"}},
                "messages": {"event": {"$ref": "#/components/messages/event"}},
            },
        },
        "operations": {
            "clientSends": operation("receive", "ws", CLIENT),
            "serverSends": operation("send", "ws", SERVER),
            "streamEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/events"},
                "messages": [{"$ref": "#/channels/events/messages/event"}],
            },
        },
        "components": {
            "messages": all_messages,
            "schemas": schemas,
        },
    })
}
