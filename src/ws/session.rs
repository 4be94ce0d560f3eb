//! One WebSocket connection: its loop (client messages, wake-ups, pings, token expiry,
//! shutdown), its subscriptions, and delivery into the outbox within its byte budget.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::frames::{
    CloseCode, CloseReason, Incoming, Outgoing, ReadError, Reader, Spliced, Writer,
};
use super::ops;
use super::outbox::{Closing, Outbox, SLOW_CONSUMER, UNAUTHORIZED};
use super::protocol::{Assignment, ServerMessage};
use crate::gateway::{self, Caller, Gateway, GatewayError, Membership, Subscriber};
use crate::groups::GroupError;
use crate::log::{Offset, PartitionId, TopicName};
use crate::metrics::Open;
use crate::push::{Delivery, FrameLimits, Positions};

pub(super) struct Subscription {
    pub topic: TopicName,
    pub positions: Positions,
    pub rotation: usize,
    pub membership: Option<Membership>,
    /// Set by the watcher when the group rebalanced: the next pump reassigns.
    pub rebalanced: Arc<AtomicBool>,
    /// Wakes the connection when a partition of this subscription gets records (or, for a
    /// group subscription, when the group rebalances).
    pub watcher: JoinHandle<()>,
    pub _counted: Open,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

pub(super) struct Connection {
    pub gateway: Arc<Gateway>,
    pub caller: Option<Caller>,
    pub client: Option<String>,
    /// The client's address: whom quotas count when the token names no subject.
    pub peer: Option<IpAddr>,
    /// Boxed: a B-tree leaf has room for 11 entries, so one unboxed subscription (the
    /// usual case) would carry about 1.7 KB of empty slots.
    pub subscriptions: BTreeMap<String, Box<Subscription>>,
    pub next_id: u64,
    pub outbox: Outbox,
    /// Woken by subscription watchers.
    pub wake: Arc<Notify>,
    /// Since when delivery has been waiting for a queue that drains nothing.
    stalled_since: Option<Instant>,
    _counted: Open,
}

/// Runs a connection until it closes. `caller` is `None` when the request carried no
/// token: then the first message must be `auth`.
pub(super) async fn run(
    gateway: Arc<Gateway>,
    caller: Option<Caller>,
    client: Option<String>,
    peer: Option<IpAddr>,
    mut reader: Reader,
    writer: Writer,
) {
    let drained = writer.drained();
    let push = gateway.push_limits;
    let shutdown = gateway.shutdown.clone();
    let mut connection = Connection {
        _counted: Open::new(&gateway.metrics.push.ws_connections),
        gateway,
        caller,
        client,
        peer,
        subscriptions: BTreeMap::new(),
        next_id: 1,
        outbox: Outbox::new(writer, push.ws_outbound_bytes),
        wake: Arc::new(Notify::new()),
        stalled_since: None,
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
        let expiry = connection.caller.as_ref().and_then(Caller::expires_at);
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
                Err(Closing::with(UNAUTHORIZED, "authentication required: send an auth message first"))
            }
            _ = gateway::expired(expiry), if expiry.is_some() => {
                Err(Closing::with(UNAUTHORIZED, "token expired"))
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
            connection
                .gateway
                .metrics
                .push
                .ws_slow_consumer_closes
                .inc();
            CloseReason {
                code: CloseCode::Other(SLOW_CONSUMER),
                description: Some("slow consumer".into()),
            }
        }
    };
    // The close goes out after what is queued; the dispatcher ends the connection after it.
    let _ = connection.outbox.control(Outgoing::Close(close));
}

/// A group subscription's wait for its next rebalance, and the flag it sets then.
pub(super) type RebalanceWatch = (BoxFuture<'static, Result<(), GroupError>>, Arc<AtomicBool>);

/// Spawns the task that wakes the connection when `watches` see records past their
/// positions or, with `rebalance`, when the subscription's group rebalances (it then sets
/// the flag, and ends: the reassignment starts a new watcher).
pub(super) fn spawn_watcher(
    mut watches: Vec<(PartitionId, watch::Receiver<Offset>)>,
    rebalance: Option<RebalanceWatch>,
    wake: Arc<Notify>,
) -> JoinHandle<()> {
    enum Woken {
        Records { alive: bool },
        Rebalanced,
    }
    tokio::spawn(async move {
        let (mut rebalanced, flag) = match rebalance {
            Some((future, flag)) => (Some(future), Some(flag)),
            None => (None, None),
        };
        loop {
            let woken = {
                let records = async {
                    if watches.is_empty() {
                        return std::future::pending().await;
                    }
                    let changed = watches.iter_mut().map(|(_, rx)| Box::pin(rx.changed()));
                    let (changed, _, _) = futures_util::future::select_all(changed).await;
                    changed.is_ok()
                };
                let group = async {
                    match rebalanced.as_mut() {
                        Some(rebalanced) => drop(rebalanced.await),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    alive = records => Woken::Records { alive },
                    () = group => Woken::Rebalanced,
                }
            };
            if let (Woken::Rebalanced, Some(flag)) = (&woken, &flag) {
                // Set before the wake-up, so the pump it causes sees it.
                flag.store(true, Ordering::Release);
            }
            wake.notify_one();
            match woken {
                Woken::Records { alive: true } => {}
                // The topic was deleted: its channels closed, nothing more comes.
                Woken::Records { alive: false } if rebalanced.is_some() => watches.clear(),
                Woken::Records { alive: false } | Woken::Rebalanced => return,
            }
        }
    })
}

impl Connection {
    fn limits(&self) -> FrameLimits {
        FrameLimits {
            max_records: self.gateway.push_limits.push_frame_records,
            max_bytes: self.gateway.push_limits.push_frame_bytes,
        }
    }

    async fn on_message(&mut self, message: Incoming) -> Result<(), Closing> {
        match message {
            Incoming::Text(text) => ops::dispatch(self, &text).await,
            Incoming::Binary => self.outbox.send(&ops::error_message(
                None,
                None,
                &GatewayError::new(
                    crate::gateway::ErrorCode::InvalidBody,
                    "binary messages are not part of the protocol; send JSON text",
                ),
            )),
            Incoming::Ping(bytes) => self.outbox.control(Outgoing::Pong(bytes)),
            Incoming::Pong => Ok(()),
            Incoming::Close => Err(Closing::Gone),
        }
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

    pub async fn leave(&self, sub: &Subscription) {
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

    /// Ends a subscription with an `error` saying why.
    async fn end(&mut self, id: &str, err: &GatewayError) -> Result<(), Closing> {
        if let Some(sub) = self.subscriptions.remove(id) {
            self.leave(&sub).await;
        }
        self.outbox
            .send(&ops::error_message(None, Some(id.to_owned()), err))
    }

    /// Follows a rebalance: the new generation and partitions, positions of kept
    /// partitions kept, new ones from the committed offsets; tells the client. A
    /// subscription that can no longer follow its group ends with an `error`.
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
        let access = match caller.group(&m.group) {
            Ok(access) => access,
            Err(err) => return self.end(id, &err).await,
        };
        let assignment = match access.assignment(&m.member, m.reset).await {
            Ok(assignment) => assignment,
            // Expired or removed: the subscription cannot go on.
            Err(err) => return self.end(id, &err.into()).await,
        };
        let subscriber = match caller.subscriber(&sub.topic) {
            Ok(subscriber) => subscriber,
            Err(err) => return self.end(id, &err).await,
        };
        m.generation = assignment.generation;
        let mut positions = Positions::default();
        for ((_, partition), start) in assignment.partitions {
            positions.set(partition, sub.positions.get(partition).unwrap_or(start));
        }
        sub.positions = positions;
        let rebalanced = access.rebalanced(&m.member, m.generation);
        let watches = subscriber.watches(&sub.positions).await;
        sub.watcher.abort();
        sub.watcher = spawn_watcher(
            watches,
            Some((Box::pin(rebalanced), sub.rebalanced.clone())),
            self.wake.clone(),
        );
        let message = ServerMessage::Assignment(Assignment {
            sub: id.to_owned(),
            generation: m.generation.get(),
            partitions: sub.positions.partitions().map(PartitionId::get).collect(),
        });
        self.outbox.send(&message)
    }

    /// Delivers what the subscriptions have, while the outbox has room.
    pub async fn pump(&mut self) -> Result<(), Closing> {
        let rebalanced: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(_, sub)| sub.rebalanced.swap(false, Ordering::AcqRel))
            .map(|(id, _)| id.clone())
            .collect();
        for id in rebalanced {
            self.reassign(&id).await?;
        }
        if self.caller.is_none() {
            return Ok(());
        }
        let limits = self.limits();
        let ids: Vec<String> = self.subscriptions.keys().cloned().collect();
        loop {
            let mut progressed = false;
            for id in &ids {
                if !self.outbox.has_room() {
                    self.stalled_since.get_or_insert_with(Instant::now);
                    return Ok(());
                }
                let delivery = match self.read(id, limits).await {
                    None => continue,
                    Some(Ok(delivery)) => delivery,
                    Some(Err(err)) => {
                        self.outbox
                            .send(&ops::error_message(None, Some(id.clone()), &err))?;
                        continue;
                    }
                };
                for gap in &delivery.gaps {
                    self.outbox.send(&ops::gap_message(id, gap))?;
                }
                if delivery.record_count() == 0 {
                    continue;
                }
                progressed = true;
                let sub = &self.subscriptions[id];
                let frame = records_frame(id, &sub.topic, &delivery, &sub.positions);
                self.outbox.queue(Outgoing::Records(frame))?;
            }
            if !progressed {
                self.stalled_since = None;
                return Ok(());
            }
        }
    }

    /// The next records of one subscription; `None` when it is gone or its token no
    /// longer reads its topic (the `auth` op ends such subscriptions).
    async fn read(
        &mut self,
        id: &str,
        limits: FrameLimits,
    ) -> Option<Result<Delivery, GatewayError>> {
        let caller = self.caller.as_ref()?;
        let sub = self.subscriptions.get_mut(id)?;
        let subscriber: Subscriber<'_> = caller.subscriber(&sub.topic).ok()?;
        Some(
            subscriber
                .read_push(&mut sub.positions, &mut sub.rotation, limits)
                .await
                .map_err(GatewayError::from),
        )
    }
}

/// `{"type":"records","sub",…,"records":[…],"cursor":"…"}` with the stored values spliced in.
fn records_frame(
    sub: &str,
    topic: &TopicName,
    delivery: &Delivery,
    positions: &Positions,
) -> Spliced {
    Spliced {
        head: format!(
            r#"{{"type":"records","sub":{},"topic":"{topic}","records":["#,
            serde_json::to_string(sub).unwrap_or_default()
        ),
        parts: delivery.json_parts().collect(),
        tail: format!(r#"],"cursor":"{}"}}"#, positions.cursor()),
    }
}
