//! The one authentication and authorization guard, for every transport.
//!
//! Transports cannot reach the log or the group coordinator except through a [`Caller`]:
//! [`Gateway`] keeps both private to this layer, and a `Caller` exists only after its token
//! verified (401 otherwise). Each capability a `Caller` hands out names what it grants and
//! is bound to the one resource it was checked for (403 otherwise):
//! - [`Caller::publisher`]: append to one topic (`publish:T`);
//! - [`Caller::subscriber`]: read one topic (`subscribe:T`);
//! - [`Caller::viewer`]: describe one topic (any scope on it);
//! - [`Caller::group`]: act on one consumer group (`group:G`), and on each topic the
//!   request names only with `subscribe:T` as well;
//! - [`Caller::admin`]: topic administration and metrics (`admin`).
//!
//! So a new endpoint gets authentication by construction, and cannot touch a topic or a
//! group without naming the scope it requires. Order of checks: 401, then 403, then 404.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Gateway;
use super::error::{ErrorCode, GatewayError};
use super::quota::Principal;
use crate::auth::{Action, AuthError, Claims};
use crate::echo::quoted;
use crate::groups::{
    Assignment, CommitRequest, Generation, GroupDescription, GroupError, GroupSummary, MemberId,
    OffsetReset, PollRequest, Polled, SeekTarget,
};
use crate::history::{LagHistory, TrafficPoint, now_ms};
use crate::log::{
    ClusterView, FetchRequest, FetchResult, GroupId, LogError, Offset, PartitionId, StoredRecord,
    TimestampOffset, TopicConfig, TopicDescription, TopicListing, TopicName, TopicUpdate,
};
use crate::push::{self, Delivery, FrameLimits, Positions, Start};

/// An authenticated caller: verified claims, or anyone when auth is off.
pub struct Caller {
    gateway: Arc<Gateway>,
    /// `None` only when authentication is off.
    claims: Option<Claims>,
    /// Whom its quotas count.
    principal: Principal,
}

impl Caller {
    /// The caller a request's token makes; `None` is a request that carried no token.
    /// `peer` is the client's address, the principal of a caller without a subject.
    pub fn authenticate(
        gateway: Arc<Gateway>,
        token: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Caller, GatewayError> {
        let claims = match (&gateway.verifier, token) {
            (None, _) => None,
            (Some(_), None) => return Err(GatewayError::Unauthorized(AuthError::Missing)),
            (Some(verifier), Some(token)) => {
                Some(verifier.verify(token).map_err(GatewayError::Unauthorized)?)
            }
        };
        let principal = Principal::new(claims.as_ref().and_then(|c| c.sub.as_deref()), peer);
        Ok(Caller {
            gateway,
            claims,
            principal,
        })
    }

    /// Counts one request or WebSocket op against the caller's quota (429 over it).
    pub fn charge_request(&self) -> Result<(), GatewayError> {
        self.gateway.quotas.charge_request(&self.principal)
    }

    /// When the token expires (seconds since the epoch); `None` when auth is off.
    pub fn expires_at(&self) -> Option<u64> {
        self.claims.as_ref().map(|claims| claims.exp)
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    fn allows(&self, action: Action, resource: &str) -> bool {
        self.claims
            .as_ref()
            .is_none_or(|claims| claims.scopes.allows(action, resource))
    }

    fn require(&self, action: Action, kind: &str, name: &str) -> Result<(), GatewayError> {
        if self.allows(action, name) {
            return Ok(());
        }
        Err(GatewayError::new(
            ErrorCode::Forbidden,
            format!(
                "the token has no scope allowing {} on {kind} {}",
                action.as_str(),
                quoted(name)
            ),
        ))
    }

    /// Appending to `topic`, with `publish:T`.
    pub fn publisher<'a>(&'a self, topic: &'a TopicName) -> Result<Publisher<'a>, GatewayError> {
        self.require(Action::Publish, "topic", topic.as_str())?;
        Ok(Publisher {
            gateway: &self.gateway,
            topic,
            principal: &self.principal,
        })
    }

    /// Reading `topic`, with `subscribe:T`.
    pub fn subscriber<'a>(&'a self, topic: &'a TopicName) -> Result<Subscriber<'a>, GatewayError> {
        self.require(Action::Subscribe, "topic", topic.as_str())?;
        Ok(Subscriber {
            gateway: &self.gateway,
            topic,
        })
    }

    /// Describing `topic`: any scope on it will do.
    pub fn viewer<'a>(&'a self, topic: &'a TopicName) -> Result<Viewer<'a>, GatewayError> {
        if !self.sees_topic(topic.as_str()) {
            return Err(GatewayError::new(
                ErrorCode::Forbidden,
                format!("the token has no scope on topic {}", quoted(topic.as_str())),
            ));
        }
        Ok(Viewer {
            gateway: &self.gateway,
            topic,
        })
    }

    /// Acting on the consumer group `group`, with `group:G`.
    pub fn group<'a>(&'a self, group: &'a GroupId) -> Result<GroupAccess<'a>, GatewayError> {
        self.require(Action::Group, "group", group.as_str())?;
        Ok(GroupAccess {
            caller: self,
            group,
        })
    }

    /// Topic administration and metrics, with `admin`.
    pub fn admin(&self) -> Result<Admin<'_>, GatewayError> {
        if !self.allows(Action::Admin, "") {
            return Err(GatewayError::new(
                ErrorCode::Forbidden,
                "this needs the admin scope",
            ));
        }
        Ok(Admin {
            gateway: &self.gateway,
        })
    }

    /// Topics the caller may see: those any of its scopes match.
    pub async fn visible_topics(&self) -> Result<Vec<TopicListing>, LogError> {
        let mut topics = self.gateway.log.list_topics().await?;
        topics.retain(|topic| self.sees_topic(topic.name.as_str()));
        Ok(topics)
    }

    /// The cluster holding the log, with only the partitions of topics the caller sees.
    pub async fn cluster(&self) -> Result<ClusterView, LogError> {
        let mut view = self.gateway.log.cluster().await?;
        view.partitions
            .retain(|(topic, _, _)| self.sees_topic(topic.as_str()));
        for node in &mut view.nodes {
            node.address
                .get_or_insert_with(|| self.gateway.local_address.clone());
        }
        Ok(view)
    }

    /// Groups the caller may see: those a `group:` scope matches.
    pub async fn visible_groups(&self) -> Result<Vec<GroupSummary>, GroupError> {
        let mut groups = self.gateway.groups.list().await?;
        groups.retain(|summary| self.allows(Action::Group, summary.group.as_str()));
        Ok(groups)
    }

    fn sees_topic(&self, topic: &str) -> bool {
        self.claims
            .as_ref()
            .is_none_or(|claims| claims.scopes.can_see_topic(topic))
    }
}

/// Resolves once a token expiring at `exp` (seconds since the epoch) has expired; never
/// when there is none. Long-lived connections end on it.
pub async fn expired(exp: Option<u64>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match exp {
        // Capped: a timer a year out is as good as none, and stays in the timer's range.
        Some(exp) => {
            let left = Duration::from_secs(exp.saturating_sub(now).min(365 * 24 * 3600));
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

/// Appends to one topic (the publish path itself is in `publish`).
pub struct Publisher<'a> {
    pub(super) gateway: &'a Gateway,
    pub(super) topic: &'a TopicName,
    pub(super) principal: &'a Principal,
}

/// Reads one topic.
pub struct Subscriber<'a> {
    pub(super) gateway: &'a Gateway,
    pub(super) topic: &'a TopicName,
}

impl Subscriber<'_> {
    /// Where `start` puts a plain subscription of `partitions` (all when `None`).
    pub async fn resolve(
        &self,
        partitions: Option<&[PartitionId]>,
        start: &Start,
    ) -> Result<Positions, LogError> {
        push::resolve(&*self.gateway.log, self.topic, partitions, start).await
    }

    /// The next records past `positions`, advancing them.
    pub async fn read_push(
        &self,
        positions: &mut Positions,
        rotation: &mut usize,
        limits: FrameLimits,
    ) -> Result<Delivery, LogError> {
        let delivery =
            push::read(&self.gateway.push, self.topic, positions, rotation, limits).await?;
        self.gateway.metrics.traffic.delivered(
            self.topic.as_str(),
            delivery.record_count(),
            delivery.payload_bytes(),
        );
        Ok(delivery)
    }

    /// High-watermark receivers of the partitions of `positions`.
    pub async fn watches(
        &self,
        positions: &Positions,
    ) -> Vec<(PartitionId, watch::Receiver<Offset>)> {
        push::watches(&*self.gateway.log, self.topic, positions).await
    }

    /// Reads records of a partition, waiting up to `wait` for one at the requested offset
    /// when none is there yet (a long poll). The wait is on the high-watermark watch, the
    /// same on every backend; offsets that hold no record (Kafka's transaction markers)
    /// are passed, and the wait goes on after them.
    pub async fn fetch(
        &self,
        partition: PartitionId,
        request: FetchRequest,
        wait: Duration,
    ) -> Result<FetchResult, LogError> {
        let log = &self.gateway.log;
        let fetched = if wait.is_zero() {
            log.fetch(self.topic, partition, request).await?
        } else {
            // Subscribed before reading, so a commit between the read and the wait wakes
            // it. Only a receiver is held: a deleted topic drops its sender, which ends
            // the wait instead of keeping the partition alive.
            let mut high_watermark = log.watch_high_watermark(self.topic, partition).await?;
            let deadline = tokio::time::Instant::now() + wait;
            let mut request = request;
            loop {
                let fetched = log.fetch(self.topic, partition, request).await?;
                if !fetched.records.is_empty()
                    || fetched.next_offset < fetched.bounds.high_watermark
                {
                    break fetched;
                }
                let next = fetched.next_offset;
                let woken = tokio::select! {
                    woken = tokio::time::timeout_at(deadline, high_watermark.wait_for(|hwm| *hwm > next)) => {
                        matches!(woken, Ok(Ok(_)))
                    }
                    _ = self.gateway.shutdown.cancelled() => false,
                };
                if !woken {
                    break fetched;
                }
                request.offset = Some(next);
            }
        };
        self.count_delivered(&fetched.records);
        Ok(fetched)
    }

    /// Counts records handed to the caller in the topic's traffic (metrics and history).
    pub(super) fn count_delivered(&self, records: &[StoredRecord]) {
        let bytes = records.iter().map(StoredRecord::payload_len).sum();
        self.gateway
            .metrics
            .traffic
            .delivered(self.topic.as_str(), records.len(), bytes);
    }

    pub async fn offset_for_timestamp(
        &self,
        partition: PartitionId,
        timestamp: i64,
    ) -> Result<TimestampOffset, LogError> {
        self.gateway
            .log
            .offset_for_timestamp(self.topic, partition, timestamp)
            .await
    }
}

/// Describes one topic.
pub struct Viewer<'a> {
    gateway: &'a Gateway,
    topic: &'a TopicName,
}

impl Viewer<'_> {
    pub async fn describe(&self) -> Result<TopicDescription, LogError> {
        self.gateway.log.describe_topic(self.topic).await
    }

    /// The topic's traffic history over the last `window` (at most the one kept).
    pub async fn traffic(&self, window: Duration) -> Result<Vec<TrafficPoint>, LogError> {
        self.gateway.log.topic_meta(self.topic).await?;
        let since = now_ms() - window.as_millis() as i64;
        Ok(self.gateway.history.topic(self.topic.as_str(), since))
    }
}

/// Topic administration and metrics.
pub struct Admin<'a> {
    gateway: &'a Gateway,
}

impl Admin<'_> {
    pub async fn create_topic(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, LogError> {
        self.gateway.log.create_topic(name, config).await
    }

    pub async fn update_topic(
        &self,
        name: &TopicName,
        update: TopicUpdate,
    ) -> Result<TopicDescription, LogError> {
        self.gateway.log.update_topic(name, update).await
    }

    pub async fn delete_topic(&self, name: &TopicName) -> Result<(), LogError> {
        let meta = self.gateway.log.topic_meta(name).await?;
        self.gateway.log.delete_topic(name).await?;
        self.gateway.push.forget(meta.id);
        self.gateway.metrics.traffic.forget(name.as_str());
        Ok(())
    }

    pub fn scraper(&self) -> Scraper<'_> {
        Scraper::new(self.gateway)
    }
}

/// Acts on one consumer group. Every topic a request names must also be readable by the
/// caller (`subscribe:T`), checked here before the coordinator sees it.
pub struct GroupAccess<'a> {
    caller: &'a Caller,
    group: &'a GroupId,
}

impl GroupAccess<'_> {
    fn coordinator(&self) -> &dyn crate::groups::GroupCoordinator {
        &*self.caller.gateway.groups
    }

    fn subscribes_to<'t>(
        &self,
        topics: impl IntoIterator<Item = &'t TopicName>,
    ) -> Result<(), GatewayError> {
        topics
            .into_iter()
            .try_for_each(|topic| self.caller.subscriber(topic).map(drop))
    }

    pub async fn poll(&self, request: PollRequest) -> Result<Polled, GatewayError> {
        self.subscribes_to(&request.topics)?;
        let polled = self.coordinator().poll(self.group, request).await?;
        let traffic = &self.caller.gateway.metrics.traffic;
        for chunk in polled.records.chunk_by(|a, b| a.0 == b.0) {
            let bytes = chunk.iter().map(|(_, record)| record.payload_len()).sum();
            traffic.delivered(chunk[0].0.as_str(), chunk.len(), bytes);
        }
        Ok(polled)
    }

    pub async fn commit(&self, request: CommitRequest) -> Result<(), GatewayError> {
        self.subscribes_to(request.offsets.iter().map(|(topic, _, _)| topic))?;
        Ok(self.coordinator().commit(self.group, request).await?)
    }

    pub async fn seek(
        &self,
        topic: &TopicName,
        target: SeekTarget,
    ) -> Result<Vec<(PartitionId, Offset)>, GatewayError> {
        self.subscribes_to([topic])?;
        Ok(self.coordinator().seek(self.group, topic, target).await?)
    }

    pub async fn describe(&self) -> Result<GroupDescription, GroupError> {
        self.coordinator().describe(self.group).await
    }

    /// The group's lag over the last `window` (at most the history kept); empty until the
    /// history's first sample after the group formed.
    pub async fn lag_history(&self, window: Duration) -> Result<LagHistory, GroupError> {
        self.describe().await?;
        let since = now_ms() - window.as_millis() as i64;
        let history = &self.caller.gateway.history;
        Ok(history
            .group(self.group.as_str(), since)
            .unwrap_or_default())
    }

    pub async fn leave(&self, member: &MemberId) -> Result<(), GroupError> {
        self.coordinator().leave(self.group, member).await
    }

    /// Joins as a connected member reading `topic`.
    pub async fn join(
        &self,
        topic: &TopicName,
        client: Option<String>,
    ) -> Result<MemberId, GatewayError> {
        self.subscribes_to([topic])?;
        Ok(self
            .coordinator()
            .join(self.group, vec![topic.clone()], client)
            .await?)
    }

    pub async fn assignment(
        &self,
        member: &MemberId,
        reset: OffsetReset,
    ) -> Result<Assignment, GroupError> {
        self.coordinator()
            .assignment(self.group, member, reset)
            .await
    }

    /// Resolves once the group moves past generation `known`; owns what it needs, so a
    /// connection can wait on it beside its other wake-ups.
    pub fn rebalanced(
        &self,
        member: &MemberId,
        known: Generation,
    ) -> impl Future<Output = Result<(), GroupError>> + Send + 'static {
        let groups = self.caller.gateway.groups.clone();
        let (group, member) = (self.group.clone(), member.clone());
        async move { groups.rebalanced(&group, &member, known).await }
    }

    pub async fn heartbeat(&self, member: &MemberId) -> Result<(), GroupError> {
        self.coordinator().heartbeat(self.group, member).await
    }

    pub async fn delete(&self) -> Result<(), GroupError> {
        self.coordinator().delete(self.group).await
    }
}

/// Reads the metrics, with every consumer group's members, rebalances and lag as the
/// coordinator knows them now.
pub struct Scraper<'a> {
    gateway: &'a Gateway,
}

impl Scraper<'_> {
    pub(super) fn new(gateway: &Gateway) -> Scraper<'_> {
        Scraper { gateway }
    }

    pub async fn render(&self) -> Result<String, GroupError> {
        let samples = self.gateway.group_samples().await?;
        Ok(self.gateway.metrics.render(samples))
    }
}
