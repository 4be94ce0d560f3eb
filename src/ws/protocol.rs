//! The WebSocket protocol's messages: JSON text frames. Client messages carry an `op`,
//! server messages a `type`. `req` (any short JSON value a client picks) comes back on the
//! replies to the message that carried it.
//!
//! These types are the protocol's one definition: the session parses and writes them, and
//! the AsyncAPI document is generated from their schemas.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::json::Object;
use crate::records::PublishRecord;

/// Longest `req` echoed back, as JSON text.
pub const MAX_REQ_BYTES: usize = 256;

/// Everything a client sends; `op` says which.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ClientMessage {
    Subscribe(SubscribeOp),
    Unsubscribe(UnsubscribeOp),
    Publish(PublishOp),
    Commit(CommitOp),
    Auth(AuthOp),
}

impl ClientMessage {
    /// The `req` to echo on an answer.
    pub fn req(&self) -> Option<&Value> {
        match self {
            ClientMessage::Subscribe(op) => op.req.as_ref(),
            ClientMessage::Unsubscribe(op) => op.req.as_ref(),
            ClientMessage::Publish(op) => op.req.as_ref(),
            ClientMessage::Commit(op) => op.req.as_ref(),
            ClientMessage::Auth(op) => op.req.as_ref(),
        }
    }

    /// The subscription the op acts on, to echo as `sub`.
    pub fn sub(&self) -> Option<&str> {
        match self {
            ClientMessage::Unsubscribe(op) => Some(&op.sub),
            ClientMessage::Commit(op) => Some(&op.sub),
            _ => None,
        }
    }
}

/// A message that is not one of the protocol's, with the `req` it carried (echoed on the
/// `error` that answers it) when it was a JSON object with one.
#[derive(Debug)]
pub struct ParseError {
    pub message: String,
    pub req: Option<Value>,
}

impl ClientMessage {
    /// Reads the `op` (and `req`) first, then the whole message as that op. (serde's
    /// internally tagged enums buffer the message, which loses record values kept as raw
    /// JSON text.)
    pub fn parse(text: &str) -> Result<ClientMessage, ParseError> {
        #[derive(Deserialize)]
        struct Tag<'a> {
            #[serde(borrow)]
            op: Option<std::borrow::Cow<'a, str>>,
            req: Option<Value>,
        }
        let tag: Tag<'_> = serde_json::from_str(text).map_err(|err| ParseError {
            message: err.to_string(),
            req: None,
        })?;
        let fail = |message: String| ParseError {
            message,
            req: tag.req.clone(),
        };
        let parsed = match tag.op.as_deref() {
            Some("subscribe") => serde_json::from_str(text).map(ClientMessage::Subscribe),
            Some("unsubscribe") => serde_json::from_str(text).map(ClientMessage::Unsubscribe),
            Some("publish") => serde_json::from_str(text).map(ClientMessage::Publish),
            Some("commit") => serde_json::from_str(text).map(ClientMessage::Commit),
            Some("auth") => serde_json::from_str(text).map(ClientMessage::Auth),
            Some(other) => {
                return Err(fail(format!(
                    "unknown op {} (subscribe, unsubscribe, publish, commit, auth)",
                    crate::echo::quoted(other)
                )));
            }
            None => return Err(fail("a message needs an `op`".into())),
        };
        parsed.map_err(|err| fail(err.to_string()))
    }
}

/// One `op` value, as a one-value enum so the schema states it.
macro_rules! op_tag {
    ($name:ident, $value:literal) => {
        #[derive(Deserialize, ToSchema)]
        pub enum $name {
            #[serde(rename = $value)]
            #[schema(rename = $value)]
            Tag,
        }
    };
}
op_tag!(SubscribeTag, "subscribe");
op_tag!(UnsubscribeTag, "unsubscribe");
op_tag!(PublishTag, "publish");
op_tag!(CommitTag, "commit");
op_tag!(AuthTag, "auth");

/// Starts delivering a topic's records; answered with `subscribed`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeOp {
    #[expect(
        dead_code,
        reason = "read by serde and the schema only: it names the op"
    )]
    pub op: SubscribeTag,
    #[schema(value_type = Option<Value>)]
    pub req: Option<Value>,
    pub topic: String,
    /// Default `latest`. With `group`, where members start on partitions without a
    /// committed offset (`latest` or `earliest`).
    pub from: Option<StartFrom>,
    /// Join this consumer group: the connection then reads only the partitions the group
    /// assigns it, and receives `assignment` on every rebalance.
    pub group: Option<String>,
    /// Without `group`: only these partitions (default: all).
    pub partitions: Option<Vec<u32>>,
}

/// `"latest"`, `"earliest"`, `{"offsets": {"0": 42}}` or `{"cursor": "…"}`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StartFrom {
    Named(FromNamed),
    Offsets(FromOffsets),
    Cursor(FromCursor),
}

#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FromNamed {
    Latest,
    Earliest,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FromOffsets {
    /// Partition number (as a string key) → first offset to deliver.
    pub offsets: BTreeMap<String, u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FromCursor {
    /// A `cursor` from a `records` message (or an SSE event id): resume right after it.
    #[schema(
        pattern = r"^([0-9]{1,9}-[0-9]{1,18}(\.[0-9]{1,9}-[0-9]{1,18})*)?$",
        max_length = 65536
    )]
    pub cursor: String,
}

/// Stops a subscription (a group subscription leaves its group); answered only with an
/// `error` when there is no such subscription.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeOp {
    #[expect(
        dead_code,
        reason = "read by serde and the schema only: it names the op"
    )]
    pub op: UnsubscribeTag,
    #[schema(value_type = Option<Value>)]
    pub req: Option<Value>,
    pub sub: String,
}

/// Publishes records, exactly as `POST /v1/topics/{topic}/records`; answered with
/// `published`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishOp {
    #[expect(
        dead_code,
        reason = "read by serde and the schema only: it names the op"
    )]
    pub op: PublishTag,
    #[schema(value_type = Option<Value>)]
    pub req: Option<Value>,
    pub topic: String,
    #[schema(value_type = Vec<PublishRecord>, min_items = 1)]
    pub records: Vec<Object<PublishRecord>>,
    /// As the `Idempotency-Key` header of HTTP publish.
    pub idempotency_key: Option<String>,
}

/// Commits offsets of a group subscription's partitions (fenced by the generation of its
/// last `assignment`); answered with `committed`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitOp {
    #[expect(
        dead_code,
        reason = "read by serde and the schema only: it names the op"
    )]
    pub op: CommitTag,
    #[schema(value_type = Option<Value>)]
    pub req: Option<Value>,
    pub sub: String,
    #[schema(min_items = 1)]
    pub offsets: Vec<PartitionOffset>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionOffset {
    #[serde(deserialize_with = "crate::json::whole::number")]
    pub partition: u32,
    /// The next offset to read: one past the last record processed.
    #[serde(deserialize_with = "crate::json::whole::number")]
    pub offset: u64,
}

/// Authenticates a connection opened without a token (it must be the first message), or
/// replaces the token before it expires; answered with `authenticated`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthOp {
    #[expect(
        dead_code,
        reason = "read by serde and the schema only: it names the op"
    )]
    pub op: AuthTag,
    #[schema(value_type = Option<Value>)]
    pub req: Option<Value>,
    pub token: String,
}

/// Every message the server sends but `records`, which is written without re-encoding
/// stored values (see [`RecordsMessage`] for its shape).
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    Subscribed(Subscribed),
    Assignment(Assignment),
    Published(Published),
    Committed(Committed),
    Authenticated(Authenticated),
    Error(ErrorMessage),
}

#[derive(Serialize, ToSchema)]
pub struct Subscribed {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub req: Option<Value>,
    /// The subscription's id, for `unsubscribe` and `commit`, and on its `records`.
    pub sub: String,
    pub topic: String,
    /// The partitions delivered (with `group`, those assigned at first).
    pub assignment: Vec<u32>,
    /// The positions it starts from, as a cursor.
    pub cursor: String,
}

/// A group subscription's partitions after a rebalance; commits must name `generation`.
#[derive(Serialize, ToSchema)]
pub struct Assignment {
    pub sub: String,
    pub generation: u64,
    pub partitions: Vec<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct Published {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub req: Option<Value>,
    /// One per record, in request order.
    pub offsets: Vec<PublishedOffset>,
    /// True when an `idempotency_key` repeated an earlier request: nothing was appended.
    pub replayed: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PublishedOffset {
    pub partition: u32,
    pub offset: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Committed {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub req: Option<Value>,
    pub sub: String,
}

#[derive(Serialize, ToSchema)]
pub struct Authenticated {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub req: Option<Value>,
    /// When the token expires (seconds since the epoch): send `auth` again before.
    pub exp: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub req: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub error: ErrorDetail,
}

/// As the HTTP API's error body; with `offset_out_of_range` on a subscription, also the
/// partition and the bounds it continues within.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<u64>,
    /// With `rate_limited`: how long to wait before the op may pass, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// The shape of a `records` message (documentation only: the session writes it directly,
/// splicing the stored values in).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Only the AsyncAPI document and its test look at the fields.
pub struct RecordsMessage {
    pub sub: String,
    pub topic: String,
    /// In offset order per partition.
    #[schema(value_type = Vec<crate::wire::RecordJson>)]
    pub records: Vec<Value>,
    /// The subscription's position after these records, across all its partitions:
    /// subscribe with `from: {"cursor": …}` to resume right after them.
    pub cursor: String,
}
