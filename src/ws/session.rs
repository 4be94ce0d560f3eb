//! One WebSocket connection: reads client messages, runs its subscriptions, and queues
//! frames for the client within a byte budget.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::web;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::frames::{
    CloseCode, CloseReason, Incoming, Outgoing, ReadError, Reader, Spliced, Writer,
};
use super::protocol::{
    Assignment, AuthOp, ClientMessage, CommitOp, Committed, ErrorDetail, ErrorMessage, From,
    FromNamed, MAX_REQ_BYTES, PublishOp, Published, PublishedOffset, ServerMessage, SubscribeOp,
    Subscribed, UnsubscribeOp,
};
use crate::echo::quoted;
use crate::groups::{CommitRequest, MemberId, OffsetReset};
use crate::http::{ApiError, AppState, Caller};
use crate::log::{
    AppendRequest, GroupId, NewRecord, Offset, PartitionId, RecordPosition, TopicName,
};
use crate::metrics::Open;
use crate::push::{FrameLimits, Gap, Positions, Start};
use crate::records;

/// Close codes of this protocol (RFC 6455 leaves 4000–4999 to applications).
const UNAUTHORIZED: u16 = 4001;
const SLOW_CONSUMER: u16 = 4008;

/// The connection's sending side, bounded in bytes by its budget.
struct Outbox {
    writer: Writer,
    budget: usize,
}

impl Outbox {
    /// Whether subscriptions may queue more records.
    fn has_room(&self) -> bool {
        self.writer.queued() < self.budget
    }

    /// Replies and errors are queued regardless of the budget, up to twice it: a client
    /// that sends requests but reads no answers is a slow consumer too.
    fn queue(&self, outgoing: Outgoing) -> Result<(), Closing> {
        if self.writer.queued() > self.budget * 2 {
            return Err(Closing::SlowConsumer);
        }
        self.control(outgoing)
    }

    /// Control frames (ping, pong, close) go out whatever the queue holds.
    fn control(&self, outgoing: Outgoing) -> Result<(), Closing> {
        self.writer.send(outgoing).map_err(|_| Closing::Gone)
    }

    fn send(&self, message: &ServerMessage) -> Result<(), Closing> {
        // Our own types always serialize.
        self.queue(Outgoing::Text(
            serde_json::to_string(message).unwrap_or_default(),
        ))
    }
}

/// Why the connection ends.
enum Closing {
    /// The client closed it, or the socket is gone.
    Gone,
    SlowConsumer,
    With(CloseReason),
}

fn reason(code: u16, description: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::Other(code),
        description: Some(description.to_owned()),
    }
}

/// A group subscription's membership.
struct Membership {
    group: GroupId,
    member: MemberId,
    generation: u64,
    reset: OffsetReset,
    changed: Arc<AtomicBool>,
}

struct Subscription {
    topic: TopicName,
    positions: Positions,
    rotation: usize,
    membership: Option<Membership>,
    /// Wakes the connection when a partition of this subscription gets records (or, for a
    /// group subscription, when its assignment changes).
    watcher: JoinHandle<()>,
    _counted: Open,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

struct Connection {
    state: web::Data<AppState>,
    caller: Option<Caller>,
    client: Option<String>,
    /// Boxed: a B-tree leaf has room for 11 entries, so one unboxed subscription (the
    /// usual case) would carry about 1.7 KB of empty slots.
    subscriptions: BTreeMap<String, Box<Subscription>>,
    next_id: u64,
    outbox: Outbox,
    /// Woken by subscription watchers.
    wake: Arc<Notify>,
    /// Since when delivery has been waiting for a queue that drains nothing.
    stalled_since: Option<Instant>,
    _counted: Open,
}

/// Runs a connection until it closes. `caller` is `None` when the request carried no
/// token: then the first message must be `auth`.
pub(super) async fn run(
    state: web::Data<AppState>,
    caller: Option<Caller>,
    client: Option<String>,
    mut reader: Reader,
    writer: Writer,
) {
    let drained = writer.drained();
    let counted = state.metrics.push.ws_connections.clone();
    let push = state.push;
    let shutdown = state.shutdown.clone();
    let mut connection = Connection {
        state,
        caller,
        client,
        subscriptions: BTreeMap::new(),
        next_id: 1,
        outbox: Outbox {
            writer,
            budget: push.ws_outbound_bytes,
        },
        wake: Arc::new(Notify::new()),
        stalled_since: None,
        _counted: Open::new(&counted),
    };
    let auth_deadline =
        tokio::time::Instant::now() + Duration::from_millis(push.ws_auth_timeout_ms);
    let mut pings = tokio::time::interval(Duration::from_millis(push.ws_ping_interval_ms));
    pings.reset();
    let idle_timeout = Duration::from_millis(push.ws_idle_timeout_ms);
    let slow_consumer = Duration::from_millis(push.ws_slow_consumer_ms);
    let mut last_heard = Instant::now();
    let wake = connection.wake.clone();
    let closing = loop {
        let expiry = connection.expiry();
        let authenticated = connection.caller.is_some();
        let stall_check = connection
            .stalled_since
            .map(|since| tokio::time::Instant::from_std(since + slow_consumer));
        let outcome = tokio::select! {
            message = reader.next() => {
                last_heard = Instant::now();
                match message {
                    None => Err(Closing::Gone),
                    Some(Ok(message)) => Box::pin(connection.on_message(message)).await,
                    Some(Err(ReadError::TooBig)) => Err(Closing::With(CloseReason {
                        code: CloseCode::Size,
                        description: Some("message too big (--ws-max-message-bytes)".into()),
                    })),
                    Some(Err(ReadError::NotUtf8)) => Err(Closing::With(CloseReason {
                        code: CloseCode::Invalid,
                        description: Some("a text message that is not UTF-8".into()),
                    })),
                    Some(Err(ReadError::Protocol)) => Err(Closing::With(CloseCode::Protocol.into())),
                }
            }
            _ = wake.notified() => Box::pin(connection.pump()).await,
            _ = drained.notified() => {
                // The client took something: it is slow at worst, not stalled.
                connection.stalled_since = None;
                Box::pin(connection.pump()).await
            }
            _ = pings.tick() => {
                if last_heard.elapsed() > idle_timeout {
                    Err(Closing::With(CloseReason {
                        code: CloseCode::Policy,
                        description: Some("idle: no message or pong within --ws-idle-timeout-ms".into()),
                    }))
                } else {
                    Box::pin(connection.heartbeat()).await;
                    connection.outbox.control(Outgoing::Ping)
                }
            }
            _ = tokio::time::sleep_until(auth_deadline), if !authenticated => {
                Err(Closing::With(reason(UNAUTHORIZED, "authentication required: send an auth message first")))
            }
            _ = sleep_until_epoch(expiry), if expiry.is_some() => {
                Err(Closing::With(reason(UNAUTHORIZED, "token expired")))
            }
            _ = async { tokio::time::sleep_until(stall_check.unwrap_or_else(tokio::time::Instant::now)).await }, if stall_check.is_some() => {
                Err(Closing::SlowConsumer)
            }
            _ = shutdown.cancelled() => Err(Closing::With(CloseReason {
                code: CloseCode::Away,
                description: Some("server shutting down".into()),
            })),
        };
        if let Err(closing) = outcome {
            break closing;
        }
    };
    Box::pin(connection.leave_groups()).await;
    let close = match closing {
        Closing::Gone => CloseCode::Normal.into(),
        Closing::With(reason) => reason,
        Closing::SlowConsumer => {
            connection.state.metrics.push.ws_slow_consumer_closes.inc();
            reason(SLOW_CONSUMER, "slow consumer")
        }
    };
    // The close goes out after what is queued; the dispatcher ends the connection after it.
    let _ = connection.outbox.control(Outgoing::Close(close));
}

/// Resolves at `exp` (seconds since the epoch).
async fn sleep_until_epoch(exp: Option<u64>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let left = exp.map_or(Duration::MAX, |exp| {
        Duration::from_secs(exp.saturating_sub(now))
    });
    tokio::time::sleep(left.min(Duration::from_secs(365 * 24 * 3600))).await;
}

/// `req` as echoed: refused when longer than [`MAX_REQ_BYTES`] as JSON.
fn checked_req(req: Option<Value>) -> Result<Option<Value>, ApiError> {
    match req {
        Some(req) if req.to_string().len() > MAX_REQ_BYTES => Err(ApiError::new(
            crate::http::ErrorCode::InvalidArgument,
            format!("req is longer than {MAX_REQ_BYTES} bytes of JSON"),
        )),
        other => Ok(other),
    }
}

fn error_message(req: Option<Value>, sub: Option<String>, err: &ApiError) -> ServerMessage {
    ServerMessage::Error(ErrorMessage {
        req,
        sub,
        error: ErrorDetail {
            code: serde_json::to_value(err.code())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            message: err.to_string(),
            partition: None,
            log_start_offset: None,
            high_watermark: None,
        },
    })
}

fn gap_message(sub: &str, gap: &Gap) -> ServerMessage {
    ServerMessage::Error(ErrorMessage {
        req: None,
        sub: Some(sub.to_owned()),
        error: ErrorDetail {
            code: "offset_out_of_range".into(),
            message: format!(
                "partition {}: offset {} is outside the log (log start {}, high watermark {}); delivery goes on from {}",
                gap.partition,
                gap.position,
                gap.log_start_offset,
                gap.high_watermark,
                gap.log_start_offset
            ),
            partition: Some(gap.partition.get()),
            log_start_offset: Some(gap.log_start_offset.get()),
            high_watermark: Some(gap.high_watermark.get()),
        },
    })
}

/// Spawns the task that wakes the connection when `watches` see records past `positions`
/// or, with `changes`, when a group assignment changes.
fn spawn_watcher(
    mut watches: Vec<(PartitionId, watch::Receiver<Offset>)>,
    changes: Option<(watch::Receiver<u64>, Arc<AtomicBool>)>,
    wake: Arc<Notify>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = changes;
        loop {
            let mut waiting: Vec<futures_util::future::BoxFuture<'_, bool>> = watches
                .iter_mut()
                .map(|(_, rx)| Box::pin(async move { rx.changed().await.is_ok() }) as _)
                .collect();
            if let Some((rx, flag)) = changes.as_mut() {
                waiting.push(Box::pin(async move {
                    let alive = rx.changed().await.is_ok();
                    flag.store(true, Ordering::Release);
                    alive
                }));
            }
            if waiting.is_empty() {
                return;
            }
            let (alive, _, _) = futures_util::future::select_all(waiting).await;
            wake.notify_one();
            if !alive {
                // A deleted topic or a removed member: nothing more will come.
                return;
            }
        }
    })
}

impl Connection {
    fn expiry(&self) -> Option<u64> {
        self.caller.as_ref().and_then(Caller::expires_at)
    }

    fn limits(&self) -> FrameLimits {
        FrameLimits {
            max_records: self.state.push.push_frame_records,
            max_bytes: self.state.push.push_frame_bytes,
        }
    }

    async fn on_message(&mut self, message: Incoming) -> Result<(), Closing> {
        match message {
            Incoming::Text(text) => self.on_text(&text).await,
            Incoming::Binary => self.outbox.send(&error_message(
                None,
                None,
                &ApiError::new(
                    crate::http::ErrorCode::InvalidBody,
                    "binary messages are not part of the protocol; send JSON text",
                ),
            )),
            Incoming::Ping(bytes) => self.outbox.control(Outgoing::Pong(bytes)),
            Incoming::Pong => Ok(()),
            Incoming::Close => Err(Closing::Gone),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Closing> {
        let message = match ClientMessage::parse(text) {
            Ok(message) => message,
            Err(err) => {
                let err = ApiError::new(
                    crate::http::ErrorCode::InvalidBody,
                    format!("not a protocol message: {err}"),
                );
                return self.outbox.send(&error_message(None, None, &err));
            }
        };
        match message {
            ClientMessage::Auth(op) => self.on_auth(op).await,
            _ if self.caller.is_none() => {
                let err = ApiError::Unauthorized(crate::auth::AuthError::Missing);
                self.outbox.send(&error_message(None, None, &err))
            }
            ClientMessage::Subscribe(op) => self.on_subscribe(op).await,
            ClientMessage::Unsubscribe(op) => self.on_unsubscribe(op).await,
            ClientMessage::Publish(op) => self.on_publish(op).await,
            ClientMessage::Commit(op) => self.on_commit(op).await,
        }
    }

    /// Replies with `reply`'s result, or with an `error` echoing `req` and `sub`.
    fn answer(
        &self,
        req: Option<Value>,
        sub: Option<String>,
        reply: Result<ServerMessage, ApiError>,
    ) -> Result<(), Closing> {
        match reply {
            Ok(message) => self.outbox.send(&message),
            Err(err) => self.outbox.send(&error_message(req, sub, &err)),
        }
    }

    async fn on_auth(&mut self, op: AuthOp) -> Result<(), Closing> {
        let req = match checked_req(op.req) {
            Ok(req) => req,
            Err(err) => return self.answer(None, None, Err(err)),
        };
        let caller = match Caller::with_token(self.state.clone(), &op.token) {
            Ok(caller) => caller,
            Err(err) if self.caller.is_none() => {
                // Still unauthenticated: a bad first token ends the connection.
                let _ = self.answer(req, None, Err(err));
                return Err(Closing::With(reason(UNAUTHORIZED, "invalid token")));
            }
            Err(err) => return self.answer(req, None, Err(err)),
        };
        let exp = caller.expires_at().unwrap_or(u64::MAX);
        self.caller = Some(caller);
        // A token with fewer scopes ends what it no longer covers.
        let ended: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, sub)| !self.still_allowed(sub))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            if let Some(sub) = self.subscriptions.remove(&id) {
                self.leave(&sub).await;
                let err = ApiError::new(
                    crate::http::ErrorCode::Forbidden,
                    format!(
                        "the new token no longer allows reading topic {}; the subscription ended",
                        quoted(sub.topic.as_str())
                    ),
                );
                self.outbox.send(&error_message(None, Some(id), &err))?;
            }
        }
        self.outbox.send(&ServerMessage::Authenticated(
            super::protocol::Authenticated { req, exp },
        ))?;
        self.pump().await
    }

    fn still_allowed(&self, sub: &Subscription) -> bool {
        let Some(caller) = &self.caller else {
            return false;
        };
        caller.subscriber(&sub.topic).is_ok()
            && sub
                .membership
                .as_ref()
                .is_none_or(|m| caller.group(&m.group).is_ok())
    }

    async fn on_subscribe(&mut self, op: SubscribeOp) -> Result<(), Closing> {
        let req = match checked_req(op.req.clone()) {
            Ok(req) => req,
            Err(err) => return self.answer(None, None, Err(err)),
        };
        let reply = self.subscribe(op).await;
        let reply = reply.map(|mut subscribed| {
            subscribed.req = req.clone();
            subscribed
        });
        match reply {
            Ok(subscribed) => {
                let id = subscribed.sub.clone();
                self.outbox.send(&ServerMessage::Subscribed(subscribed))?;
                if let Some(membership) = self
                    .subscriptions
                    .get(&id)
                    .and_then(|sub| sub.membership.as_ref())
                {
                    let partitions = self.subscriptions[&id]
                        .positions
                        .partitions()
                        .map(PartitionId::get)
                        .collect();
                    self.outbox.send(&ServerMessage::Assignment(Assignment {
                        sub: id,
                        generation: membership.generation,
                        partitions,
                    }))?;
                }
                self.pump().await
            }
            Err(err) => self.answer(req, None, Err(err)),
        }
    }

    async fn subscribe(&mut self, op: SubscribeOp) -> Result<Subscribed, ApiError> {
        if self.subscriptions.len() >= self.state.push.ws_max_subscriptions {
            return Err(ApiError::new(
                crate::http::ErrorCode::InvalidArgument,
                format!(
                    "a connection holds at most {} subscriptions (--ws-max-subscriptions)",
                    self.state.push.ws_max_subscriptions
                ),
            ));
        }
        let caller = self
            .caller
            .as_ref()
            .ok_or(ApiError::Unauthorized(crate::auth::AuthError::Missing))?;
        let topic = TopicName::parse(&op.topic)?;
        let subscriber = caller.subscriber(&topic)?;
        let invalid =
            |message: String| ApiError::new(crate::http::ErrorCode::InvalidArgument, message);
        let (positions, membership, changes) = match &op.group {
            Some(group) => {
                if op.partitions.is_some() {
                    return Err(invalid(
                        "a group assigns the partitions: drop `partitions`".into(),
                    ));
                }
                let reset = match &op.from {
                    None | Some(From::Named(FromNamed::Latest)) => OffsetReset::Latest,
                    Some(From::Named(FromNamed::Earliest)) => OffsetReset::Earliest,
                    Some(_) => {
                        return Err(invalid(
                            "with `group`, `from` is `latest` or `earliest` (where members start without a committed offset)".into(),
                        ));
                    }
                };
                let group = GroupId::parse(group)?;
                let access = caller.group(&group)?;
                let (member, changes) = access.join(&topic, self.client.clone()).await?;
                let (generation, starts) = match access.assignment(&member, reset).await {
                    Ok(assignment) => assignment,
                    Err(err) => {
                        let _ = access.leave(&member).await;
                        return Err(err.into());
                    }
                };
                let positions = Positions::new(
                    starts
                        .into_iter()
                        .map(|((_, partition), offset)| (partition, offset))
                        .collect(),
                );
                let changed = Arc::new(AtomicBool::new(false));
                let membership = Membership {
                    group,
                    member,
                    generation,
                    reset,
                    changed: changed.clone(),
                };
                (positions, Some(membership), Some((changes, changed)))
            }
            None => {
                let start = match op.from {
                    None | Some(From::Named(FromNamed::Latest)) => Start::Latest,
                    Some(From::Named(FromNamed::Earliest)) => Start::Earliest,
                    Some(From::Offsets(offsets)) => {
                        let mut parsed = BTreeMap::new();
                        for (partition, offset) in offsets.offsets {
                            let partition = partition.parse::<u32>().map_err(|_| {
                                invalid(format!("partition {} is not a number", quoted(&partition)))
                            })?;
                            parsed.insert(PartitionId::new(partition), Offset::parse(offset)?);
                        }
                        Start::Offsets(parsed)
                    }
                    Some(From::Cursor(cursor)) => Start::Cursor(
                        Positions::parse_cursor(&cursor.cursor)
                            .map_err(|err| invalid(err.to_string()))?,
                    ),
                };
                let partitions: Option<Vec<PartitionId>> = op
                    .partitions
                    .map(|list| list.into_iter().map(PartitionId::new).collect());
                let positions = subscriber
                    .resolve(partitions.as_deref(), &start)
                    .await
                    .map_err(|err| match err {
                        crate::push::PushError::Log(err) => ApiError::from(err),
                        other => invalid(other.to_string()),
                    })?;
                (positions, None, None)
            }
        };
        let id = format!("s{}", self.next_id);
        self.next_id += 1;
        let watcher = spawn_watcher(subscriber.watches(&positions), changes, self.wake.clone());
        let subscribed = Subscribed {
            req: None,
            sub: id.clone(),
            topic: topic.to_string(),
            assignment: positions.partitions().map(PartitionId::get).collect(),
            cursor: positions.cursor(),
        };
        self.subscriptions.insert(
            id,
            Box::new(Subscription {
                topic,
                positions,
                rotation: 0,
                membership,
                watcher,
                _counted: Open::new(&self.state.metrics.push.ws_subscriptions),
            }),
        );
        Ok(subscribed)
    }

    async fn on_unsubscribe(&mut self, op: UnsubscribeOp) -> Result<(), Closing> {
        let req = match checked_req(op.req) {
            Ok(req) => req,
            Err(err) => return self.answer(None, Some(op.sub), Err(err)),
        };
        match self.subscriptions.remove(&op.sub) {
            Some(sub) => {
                self.leave(&sub).await;
                Ok(())
            }
            None => {
                let err = ApiError::new(
                    crate::http::ErrorCode::NotFound,
                    format!("no subscription {}", quoted(&op.sub)),
                );
                self.answer(req, Some(op.sub), Err(err))
            }
        }
    }

    async fn on_publish(&mut self, op: PublishOp) -> Result<(), Closing> {
        let req = match checked_req(op.req.clone()) {
            Ok(req) => req,
            Err(err) => return self.answer(None, None, Err(err)),
        };
        let reply = self.publish(op).await.map(|(offsets, replayed)| {
            ServerMessage::Published(Published {
                req: req.clone(),
                offsets,
                replayed,
            })
        });
        self.answer(req, None, reply)
    }

    async fn publish(&self, op: PublishOp) -> Result<(Vec<PublishedOffset>, bool), ApiError> {
        let caller = self
            .caller
            .as_ref()
            .ok_or(ApiError::Unauthorized(crate::auth::AuthError::Missing))?;
        let topic = TopicName::parse(&op.topic)?;
        let publisher = caller.publisher(&topic)?;
        let limits = &self.state.limits;
        let key = op
            .idempotency_key
            .map(|key| records::idempotency_key(key.as_bytes(), limits))
            .transpose()
            .map_err(|err| {
                ApiError::new(
                    crate::http::ErrorCode::InvalidIdempotencyKey,
                    err.to_string(),
                )
            })?;
        let records: Vec<NewRecord> = op.records.into_iter().map(|r| r.0.into()).collect();
        records::validate(&records, limits).map_err(|err| {
            let message = match err.record_index() {
                Some(index) => format!("records[{index}]: {err}"),
                None => err.to_string(),
            };
            ApiError::new(crate::http::publish_error_code(&err), message)
        })?;
        let outcome = publisher.append(AppendRequest::new(records, key)).await?;
        let offsets = outcome
            .positions
            .iter()
            .map(|RecordPosition { partition, offset }| PublishedOffset {
                partition: partition.get(),
                offset: offset.get(),
            })
            .collect();
        Ok((offsets, outcome.replayed))
    }

    async fn on_commit(&mut self, op: CommitOp) -> Result<(), Closing> {
        let req = match checked_req(op.req.clone()) {
            Ok(req) => req,
            Err(err) => return self.answer(None, Some(op.sub), Err(err)),
        };
        let sub = op.sub.clone();
        let reply = self.commit(op).await.map(|()| {
            ServerMessage::Committed(Committed {
                req: req.clone(),
                sub: sub.clone(),
            })
        });
        self.answer(req, Some(sub), reply)
    }

    async fn commit(&self, op: CommitOp) -> Result<(), ApiError> {
        let caller = self
            .caller
            .as_ref()
            .ok_or(ApiError::Unauthorized(crate::auth::AuthError::Missing))?;
        let sub = self.subscriptions.get(&op.sub).ok_or_else(|| {
            ApiError::new(
                crate::http::ErrorCode::NotFound,
                format!("no subscription {}", quoted(&op.sub)),
            )
        })?;
        let membership = sub.membership.as_ref().ok_or_else(|| {
            ApiError::new(
                crate::http::ErrorCode::InvalidArgument,
                "only a group subscription commits offsets",
            )
        })?;
        let mut offsets = Vec::with_capacity(op.offsets.len());
        for o in &op.offsets {
            offsets.push((
                sub.topic.clone(),
                PartitionId::new(o.partition),
                Offset::parse(o.offset)?,
            ));
        }
        caller
            .group(&membership.group)?
            .commit(CommitRequest {
                member: Some(membership.member.clone()),
                generation: Some(membership.generation),
                offsets,
            })
            .await
    }

    /// Keeps this connection's group memberships alive.
    async fn heartbeat(&self) {
        let Some(caller) = &self.caller else { return };
        for sub in self.subscriptions.values() {
            if let Some(m) = &sub.membership
                && let Ok(access) = caller.group(&m.group)
            {
                let _ = access.heartbeat(&m.member).await;
            }
        }
    }

    async fn leave(&self, sub: &Subscription) {
        if let (Some(caller), Some(m)) = (&self.caller, &sub.membership)
            && let Ok(access) = caller.group(&m.group)
        {
            let _ = access.leave(&m.member).await;
        }
    }

    async fn leave_groups(&mut self) {
        let subscriptions = std::mem::take(&mut self.subscriptions);
        for sub in subscriptions.values() {
            self.leave(sub).await;
        }
    }

    /// Follows a rebalance: the new generation and partitions, positions of kept
    /// partitions kept, new ones from the committed offsets; tells the client.
    async fn reassign(&mut self, id: &str) -> Result<(), Closing> {
        let Some(caller) = &self.caller else {
            return Ok(());
        };
        let Some(sub) = self.subscriptions.get_mut(id) else {
            return Ok(());
        };
        let Some(m) = &mut sub.membership else {
            return Ok(());
        };
        let Ok(access) = caller.group(&m.group) else {
            return Ok(());
        };
        let (generation, starts) = match access.assignment(&m.member, m.reset).await {
            Ok(assignment) => assignment,
            Err(err) => {
                // Expired or removed: the subscription cannot go on.
                let err = ApiError::from(err);
                self.subscriptions.remove(id);
                return self
                    .outbox
                    .send(&error_message(None, Some(id.to_owned()), &err));
            }
        };
        if generation == m.generation {
            return Ok(());
        }
        m.generation = generation;
        let mut positions = Positions::default();
        for ((_, partition), start) in starts {
            positions.set(partition, sub.positions.get(partition).unwrap_or(start));
        }
        sub.positions = positions;
        let subscriber = match caller.subscriber(&sub.topic) {
            Ok(subscriber) => subscriber,
            Err(_) => return Ok(()),
        };
        let changes = access
            .changes(&m.member)
            .await
            .map(|rx| (rx, m.changed.clone()));
        sub.watcher.abort();
        sub.watcher = spawn_watcher(
            subscriber.watches(&sub.positions),
            changes,
            self.wake.clone(),
        );
        self.outbox.send(&ServerMessage::Assignment(Assignment {
            sub: id.to_owned(),
            generation,
            partitions: sub.positions.partitions().map(PartitionId::get).collect(),
        }))
    }

    /// Delivers what the subscriptions have, while the outbox has room.
    async fn pump(&mut self) -> Result<(), Closing> {
        let reassigned: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, sub)| {
                sub.membership
                    .as_ref()
                    .is_some_and(|m| m.changed.swap(false, Ordering::AcqRel))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in reassigned {
            self.reassign(&id).await?;
        }
        let Some(caller) = self.caller.as_ref() else {
            return Ok(());
        };
        let limits = self.limits();
        let ids: Vec<String> = self.subscriptions.keys().cloned().collect();
        loop {
            let mut progressed = false;
            for id in &ids {
                if !self.outbox.has_room() {
                    self.stalled_since.get_or_insert_with(Instant::now);
                    return Ok(());
                }
                let Some(sub) = self.subscriptions.get_mut(id) else {
                    continue;
                };
                let Ok(subscriber) = caller.subscriber(&sub.topic) else {
                    continue;
                };
                let batch = match subscriber
                    .read_push(&mut sub.positions, &mut sub.rotation, limits)
                    .await
                {
                    Ok(batch) => batch,
                    Err(err) => {
                        let err = ApiError::from(err);
                        self.outbox
                            .send(&error_message(None, Some(id.clone()), &err))?;
                        continue;
                    }
                };
                for gap in &batch.gaps {
                    self.outbox.send(&gap_message(id, gap))?;
                }
                if batch.record_count() == 0 {
                    continue;
                }
                progressed = true;
                let frame = records_frame(id, &sub.topic, &batch, &sub.positions);
                self.outbox.queue(Outgoing::Records(frame))?;
            }
            if !progressed {
                self.stalled_since = None;
                return Ok(());
            }
        }
    }
}

/// `{"type":"records","sub",…,"records":[…],"cursor":"…"}` with the stored values spliced in.
fn records_frame(
    sub: &str,
    topic: &TopicName,
    batch: &crate::push::Batch,
    positions: &Positions,
) -> Spliced {
    Spliced {
        head: format!(
            r#"{{"type":"records","sub":{},"topic":"{topic}","records":["#,
            serde_json::to_string(sub).unwrap_or_default()
        ),
        parts: batch.json_parts().collect(),
        tail: format!(r#"],"cursor":"{}"}}"#, positions.cursor()),
    }
}
