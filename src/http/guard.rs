//! The one authentication and authorization guard.
//!
//! Handlers cannot reach the log or the group coordinator except through a [`Caller`]:
//! `AppState` keeps both in fields private to this module, and a `Caller` exists only after
//! its token verified (401 otherwise). Each capability a `Caller` hands out names what it
//! grants and is bound to the one resource it was checked for (403 otherwise):
//! - [`Caller::publisher`]: append to one topic (`publish:T`);
//! - [`Caller::subscriber`]: read one topic (`subscribe:T`);
//! - [`Caller::viewer`]: describe one topic (any scope on it);
//! - [`Caller::group`]: act on one consumer group (`group:G`), and on each topic the
//!   request names only with `subscribe:T` as well;
//! - [`Caller::admin`]: topic administration (`admin`).
//!
//! So a new endpoint gets authentication by construction, and cannot touch a topic or a
//! group without naming the scope it requires. Order of checks: 401, then 403, then 404.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ErrorCode};
use crate::auth::{Action, AuthError, Claims, Verifier};
use crate::config::Limits;
use crate::config::PushLimits;
use crate::echo::quoted;
use crate::groups::{
    CommitRequest, Coordinator, GroupDescription, GroupError, GroupSettings, GroupSummary,
    MemberId, OffsetReset, PollRequest, Polled, SeekTarget, TopicPartition,
};
use crate::log::{
    AppendOutcome, AppendRequest, EventLog, FetchRequest, FetchResult, GroupId, LogError, Offset,
    PartitionId, Readiness, StoredRecord, TimestampOffset, TopicConfig, TopicDescription,
    TopicName, TopicUpdate,
};
use crate::metrics::{GroupSample, Metrics, TrafficMetrics};
use crate::push::{self, FrameLimits, Positions, PushError, Start};

/// What every handler shares.
pub struct AppState {
    log: Arc<dyn EventLog>,
    groups: Arc<Coordinator>,
    /// `None` when authentication is off (`--auth none`).
    verifier: Option<Arc<Verifier>>,
    pub limits: Limits,
    pub push: PushLimits,
    /// Browser origins allowed besides the server's own (`*`: any).
    pub allowed_origins: Vec<String>,
    pub metrics: Arc<Metrics>,
    /// `/metrics` without a token (`--metrics-public`).
    metrics_public: bool,
    /// Cancelled at shutdown: long-lived connections end on it.
    pub shutdown: CancellationToken,
}

/// What [`AppState::new`] takes.
pub struct AppParts {
    pub log: Arc<dyn EventLog>,
    pub groups: Arc<Coordinator>,
    pub verifier: Option<Arc<Verifier>>,
    pub limits: Limits,
    pub push: PushLimits,
    pub allowed_origins: Vec<String>,
    pub metrics: Arc<Metrics>,
    pub metrics_public: bool,
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        AppState {
            log: parts.log,
            groups: parts.groups,
            verifier: parts.verifier,
            limits: parts.limits,
            push: parts.push,
            allowed_origins: parts.allowed_origins,
            metrics: parts.metrics,
            metrics_public: parts.metrics_public,
            shutdown: parts.shutdown,
        }
    }

    pub fn metrics_public(&self) -> bool {
        self.metrics_public
    }

    /// Who may scrape `/metrics`: anyone with `--metrics-public`, else an admin.
    pub fn scraper(&self, request: &HttpRequest) -> Result<Scraper<'_>, ApiError> {
        if !self.metrics_public {
            authenticate(request)?.admin()?;
        }
        Ok(Scraper { state: self })
    }

    /// Whether a browser page of `origin` may use the API: the server's own origin (same
    /// host as the request's `Host`), or one of `--allowed-origins`.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let own = host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        });
        own || self
            .allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    }

    /// The group bounds in force, for the OpenAPI document.
    pub fn group_settings(&self) -> GroupSettings {
        self.groups.settings()
    }

    /// For the unauthenticated readiness probe.
    pub fn readiness(&self) -> Readiness {
        self.log.readiness()
    }
}

/// An authenticated request: verified claims, or anyone when auth is off.
pub struct Caller {
    state: web::Data<AppState>,
    /// `None` only when authentication is off.
    claims: Option<Claims>,
}

impl Caller {
    /// The caller of a request that may carry no token yet (a WebSocket that will send
    /// `auth` first): `Ok(None)` then, a 401 for a token that does not verify.
    pub fn from_request_if_any(request: &HttpRequest) -> Result<Option<Caller>, ApiError> {
        match authenticate(request) {
            Ok(caller) => Ok(Some(caller)),
            Err(ApiError::Unauthorized(AuthError::Missing)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The caller a token makes (a WebSocket's `auth` message).
    pub fn with_token(state: web::Data<AppState>, token: &str) -> Result<Caller, ApiError> {
        let claims = match &state.verifier {
            None => None,
            Some(verifier) => Some(verifier.verify(token).map_err(ApiError::Unauthorized)?),
        };
        Ok(Caller { state, claims })
    }

    /// When the token expires (seconds since the epoch); `None` when auth is off.
    pub fn expires_at(&self) -> Option<u64> {
        self.claims.as_ref().map(|claims| claims.exp)
    }

    pub fn state(&self) -> &web::Data<AppState> {
        &self.state
    }

    fn allows(&self, action: Action, resource: &str) -> bool {
        self.claims
            .as_ref()
            .is_none_or(|claims| claims.scopes.allows(action, resource))
    }

    fn require(&self, action: Action, kind: &str, name: &str) -> Result<(), ApiError> {
        if self.allows(action, name) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "the token has no scope allowing {} on {kind} {}",
                action.as_str(),
                quoted(name)
            ),
        ))
    }

    /// Appending to `topic`, with `publish:T`.
    pub fn publisher<'a>(&'a self, topic: &'a TopicName) -> Result<Publisher<'a>, ApiError> {
        self.require(Action::Publish, "topic", topic.as_str())?;
        Ok(Publisher {
            log: &*self.state.log,
            topic,
            traffic: &self.state.metrics.traffic,
        })
    }

    /// Reading `topic`, with `subscribe:T`.
    pub fn subscriber<'a>(&'a self, topic: &'a TopicName) -> Result<Subscriber<'a>, ApiError> {
        self.require(Action::Subscribe, "topic", topic.as_str())?;
        Ok(Subscriber {
            log: &*self.state.log,
            topic,
            traffic: &self.state.metrics.traffic,
        })
    }

    /// Describing `topic`: any scope on it will do.
    pub fn viewer<'a>(&'a self, topic: &'a TopicName) -> Result<Viewer<'a>, ApiError> {
        if !self.sees_topic(topic.as_str()) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("the token has no scope on topic {}", quoted(topic.as_str())),
            ));
        }
        Ok(Viewer {
            log: &*self.state.log,
            topic,
        })
    }

    /// Acting on the consumer group `group`, with `group:G`.
    pub fn group<'a>(&'a self, group: &'a GroupId) -> Result<GroupAccess<'a>, ApiError> {
        self.require(Action::Group, "group", group.as_str())?;
        Ok(GroupAccess {
            caller: self,
            group,
        })
    }

    /// Topic administration, with `admin`.
    pub fn admin(&self) -> Result<Admin<'_>, ApiError> {
        if !self.allows(Action::Admin, "") {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "this needs the admin scope",
            ));
        }
        Ok(Admin {
            log: &*self.state.log,
            traffic: &self.state.metrics.traffic,
        })
    }

    /// Topics the caller may see: those any of its scopes match.
    pub async fn visible_topics(&self) -> Result<Vec<TopicDescription>, LogError> {
        let mut topics = self.state.log.list_topics().await?;
        topics.retain(|topic| self.sees_topic(topic.name.as_str()));
        Ok(topics)
    }

    /// Groups the caller may see: those a `group:` scope matches.
    pub async fn visible_groups(&self) -> Result<Vec<GroupSummary>, GroupError> {
        let mut groups = self.state.groups.list().await?;
        groups.retain(|summary| self.allows(Action::Group, summary.group.as_str()));
        Ok(groups)
    }

    fn sees_topic(&self, topic: &str) -> bool {
        self.claims
            .as_ref()
            .is_none_or(|claims| claims.scopes.can_see_topic(topic))
    }
}

/// Appends to one topic.
pub struct Publisher<'a> {
    log: &'a dyn EventLog,
    topic: &'a TopicName,
    traffic: &'a TrafficMetrics,
}

impl Publisher<'_> {
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, LogError> {
        let records = request.records.len();
        let bytes = request.records.iter().map(|r| r.payload_len()).sum();
        let outcome = self.log.append(self.topic, request).await?;
        if !outcome.replayed {
            self.traffic.published(self.topic.as_str(), records, bytes);
        }
        Ok(outcome)
    }
}

/// Reads one topic.
pub struct Subscriber<'a> {
    log: &'a dyn EventLog,
    topic: &'a TopicName,
    traffic: &'a TrafficMetrics,
}

impl Subscriber<'_> {
    pub fn topic(&self) -> &TopicName {
        self.topic
    }

    /// Where `start` puts a push subscription of `partitions` (all when `None`).
    pub async fn resolve(
        &self,
        partitions: Option<&[PartitionId]>,
        start: &Start,
    ) -> Result<Positions, PushError> {
        push::resolve(self.log, self.topic, partitions, start).await
    }

    /// The next records past `positions`, advancing them.
    pub async fn read_push(
        &self,
        positions: &mut Positions,
        rotation: &mut usize,
        limits: FrameLimits,
    ) -> Result<push::Batch, LogError> {
        let batch = push::read(self.log, self.topic, positions, rotation, limits).await?;
        self.traffic.delivered(
            self.topic.as_str(),
            batch.record_count(),
            batch.payload_bytes(),
        );
        Ok(batch)
    }

    /// High-watermark receivers of the partitions of `positions`.
    pub fn watches(&self, positions: &Positions) -> Vec<(PartitionId, watch::Receiver<Offset>)> {
        push::watches(self.log, self.topic, positions)
    }

    pub async fn fetch(
        &self,
        partition: PartitionId,
        request: FetchRequest,
    ) -> Result<FetchResult, LogError> {
        let fetched = self.log.fetch(self.topic, partition, request).await?;
        let bytes = fetched.records.iter().map(StoredRecord::payload_len).sum();
        self.traffic
            .delivered(self.topic.as_str(), fetched.records.len(), bytes);
        Ok(fetched)
    }

    pub async fn offset_for_timestamp(
        &self,
        partition: PartitionId,
        timestamp: i64,
    ) -> Result<TimestampOffset, LogError> {
        self.log
            .offset_for_timestamp(self.topic, partition, timestamp)
            .await
    }
}

/// Describes one topic.
pub struct Viewer<'a> {
    log: &'a dyn EventLog,
    topic: &'a TopicName,
}

impl Viewer<'_> {
    pub async fn describe(&self) -> Result<TopicDescription, LogError> {
        self.log.describe_topic(self.topic).await
    }
}

/// Topic administration.
pub struct Admin<'a> {
    log: &'a dyn EventLog,
    traffic: &'a TrafficMetrics,
}

impl Admin<'_> {
    pub async fn create_topic(
        &self,
        name: TopicName,
        config: TopicConfig,
    ) -> Result<TopicDescription, LogError> {
        self.log.create_topic(name, config).await
    }

    pub async fn update_topic(
        &self,
        name: &TopicName,
        update: TopicUpdate,
    ) -> Result<TopicDescription, LogError> {
        self.log.update_topic(name, update).await
    }

    pub async fn delete_topic(&self, name: &TopicName) -> Result<(), LogError> {
        self.log.delete_topic(name).await?;
        self.traffic.forget(name.as_str());
        Ok(())
    }
}

/// Acts on one consumer group. Every topic a request names must also be readable by the
/// caller (`subscribe:T`), checked here before the coordinator sees it.
pub struct GroupAccess<'a> {
    caller: &'a Caller,
    group: &'a GroupId,
}

impl GroupAccess<'_> {
    fn coordinator(&self) -> &Coordinator {
        &self.caller.state.groups
    }

    fn subscribes_to<'t>(
        &self,
        topics: impl IntoIterator<Item = &'t TopicName>,
    ) -> Result<(), ApiError> {
        topics
            .into_iter()
            .try_for_each(|topic| self.caller.subscriber(topic).map(drop))
    }

    pub async fn poll(&self, request: PollRequest) -> Result<Polled, ApiError> {
        self.subscribes_to(&request.topics)?;
        let polled = self.coordinator().poll(self.group, request).await?;
        let traffic = &self.caller.state.metrics.traffic;
        for chunk in polled.records.chunk_by(|a, b| a.0 == b.0) {
            let bytes = chunk.iter().map(|(_, record)| record.payload_len()).sum();
            traffic.delivered(chunk[0].0.as_str(), chunk.len(), bytes);
        }
        Ok(polled)
    }

    pub async fn commit(&self, request: CommitRequest) -> Result<(), ApiError> {
        self.subscribes_to(request.offsets.iter().map(|(topic, _, _)| topic))?;
        Ok(self.coordinator().commit(self.group, request).await?)
    }

    pub async fn seek(
        &self,
        topic: &TopicName,
        target: SeekTarget,
    ) -> Result<Vec<(PartitionId, Offset)>, ApiError> {
        self.subscribes_to([topic])?;
        Ok(self.coordinator().seek(self.group, topic, target).await?)
    }

    pub async fn describe(&self) -> Result<GroupDescription, GroupError> {
        self.coordinator().describe(self.group).await
    }

    pub async fn leave(&self, member: &MemberId) -> Result<(), GroupError> {
        self.coordinator().leave(self.group, member).await
    }

    /// Joins as a connected member reading `topic`.
    pub async fn join(
        &self,
        topic: &TopicName,
        client: Option<String>,
    ) -> Result<(MemberId, watch::Receiver<u64>), ApiError> {
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
    ) -> Result<(u64, Vec<(TopicPartition, Offset)>), GroupError> {
        self.coordinator()
            .assignment(self.group, member, reset)
            .await
    }

    /// A fresh receiver of `member`'s assignment changes.
    pub async fn changes(&self, member: &MemberId) -> Option<watch::Receiver<u64>> {
        self.coordinator().changes(self.group, member).await
    }

    pub async fn heartbeat(&self, member: &MemberId) -> Result<(), GroupError> {
        self.coordinator().heartbeat(self.group, member).await
    }

    pub async fn delete(&self) -> Result<(), GroupError> {
        self.coordinator().delete(self.group).await
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(request))
    }
}

fn authenticate(request: &HttpRequest) -> Result<Caller, ApiError> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
    let claims = match &state.verifier {
        None => None,
        Some(verifier) => {
            let token = bearer_token(request)?;
            Some(verifier.verify(&token).map_err(ApiError::Unauthorized)?)
        }
    };
    Ok(Caller { state, claims })
}

/// The token from `Authorization: Bearer`, else from `?access_token=` (for browsers'
/// WebSocket and EventSource, which cannot set headers).
fn bearer_token(request: &HttpRequest) -> Result<String, ApiError> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            ApiError::Unauthorized(AuthError::invalid("Authorization header is not ASCII"))
        })?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::Unauthorized(AuthError::invalid(
                "Authorization must be `Bearer <jwt>`",
            )));
        }
        return Ok(token.trim().to_owned());
    }
    // Parsed as pairs, not into a struct: a repeated `access_token` must be refused, not
    // resolved by whichever copy a parser happens to keep.
    let pairs = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let mut tokens = pairs
        .into_iter()
        .filter(|(name, _)| name == "access_token")
        .map(|(_, token)| token);
    match (tokens.next(), tokens.next()) {
        (Some(_), Some(_)) => Err(ApiError::Unauthorized(AuthError::invalid(
            "`access_token` appears more than once in the query string; send one token",
        ))),
        (Some(token), None) if !token.is_empty() => Ok(token),
        (Some(_), None) => Err(ApiError::Unauthorized(AuthError::invalid(
            "`access_token` is empty",
        ))),
        (None, _) => Err(ApiError::Unauthorized(AuthError::Missing)),
    }
}

/// Reads the metrics, with every consumer group's members, rebalances and lag as the
/// coordinator knows them now.
pub struct Scraper<'a> {
    state: &'a AppState,
}

impl Scraper<'_> {
    pub async fn render(&self) -> Result<String, GroupError> {
        let metrics = &self.state.metrics;
        let mut samples = Vec::new();
        // Listed by name: the cap keeps the first, and only those are described.
        let groups = self.state.groups.list().await?;
        for summary in groups.into_iter().take(metrics.group_cap()) {
            let description = match self.state.groups.describe(&summary.group).await {
                Ok(description) => description,
                // Deleted between the list and now.
                Err(GroupError::GroupNotFound(_)) => continue,
                // The rest of the metrics matter most when storage is in trouble.
                Err(err) => {
                    tracing::warn!(group = %summary.group, %err, "a group left out of /metrics");
                    continue;
                }
            };
            samples.push(GroupSample {
                group: summary.group.to_string(),
                members: description.members.len(),
                rebalances: description.generation,
                lag: description
                    .partitions
                    .iter()
                    .filter_map(|p| Some((p.topic.to_string(), p.partition.get(), p.lag?)))
                    .collect(),
            });
        }
        Ok(metrics.render(samples))
    }
}
