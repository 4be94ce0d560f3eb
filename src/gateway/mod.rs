//! The transport-neutral application layer (iggy's `System`): what every transport calls,
//! and nothing of any transport. HTTP, WebSocket and SSE sit above it; the log, the group
//! coordinator and push delivery below.
//!
//! # Layout
//! - [`Gateway`] (here): the application state, built once per server.
//! - `caller`: [`Caller`], a verified token, and the capabilities it hands out, each bound
//!   to the topic or group it was checked for (the one guard on every route).
//! - `error`: [`ErrorCode`] and [`GatewayError`], the one naming of every failure.
//! - `publish`: the one publish path (limits, idempotency keys, partition choice).
//! - `subscribe`: the one subscribe-start (plain positions or a group membership).
//! - `partition`: Kafka's default partitioner and the keyless rotation.
//!
//! # Invariants
//! - Auth by construction: the log and the coordinator are private to this module; a
//!   transport reaches them only through a [`Caller`] and its capabilities. Order of
//!   checks: 401, then 403, then 404.
//! - Counted where it is guarded: records and bytes in and out are counted by the
//!   capabilities, so every transport lands in the same metric series.

mod caller;
mod error;
mod partition;
mod publish;
mod quota;
mod search;
mod subscribe;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use caller::{Caller, Scraper, Subscriber, expired};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, GatewayError};
pub use quota::Quotas;
pub use search::RecordFilter;
pub use subscribe::{Membership, SubscribeRequest};

use crate::auth::Verifier;
use crate::config::{Limits, PushLimits};
use crate::groups::{GroupCoordinator, GroupError, GroupSettings};
use crate::history::{History, now_ms};
use crate::log::{EventLog, LogError};
use crate::metrics::{GroupSample, Metrics};
use crate::push::PushReader;
use partition::Partitioner;

/// What every transport shares: one per server.
pub struct Gateway {
    log: Arc<dyn EventLog>,
    groups: Arc<dyn GroupCoordinator>,
    push: PushReader,
    partitioner: Partitioner,
    /// `None` when authentication is off (`--auth none`).
    verifier: Option<Arc<Verifier>>,
    pub limits: Limits,
    pub push_limits: PushLimits,
    /// Browser origins allowed besides the server's own (`*`: any).
    pub allowed_origins: Vec<String>,
    pub metrics: Arc<Metrics>,
    /// `/metrics` without a token (`--metrics-public`).
    metrics_public: bool,
    /// Cancelled at shutdown: long-lived connections end on it.
    pub shutdown: CancellationToken,
    quotas: Arc<Quotas>,
    /// Where this server listens: the address of the embedded log's one node.
    local_address: String,
    pub history: Arc<History>,
}

/// What [`Gateway::new`] takes.
pub struct GatewayParts {
    pub log: Arc<dyn EventLog>,
    pub groups: Arc<dyn GroupCoordinator>,
    pub verifier: Option<Arc<Verifier>>,
    pub limits: Limits,
    pub push_limits: PushLimits,
    pub allowed_origins: Vec<String>,
    pub metrics: Arc<Metrics>,
    pub metrics_public: bool,
    pub shutdown: CancellationToken,
    pub quotas: Arc<Quotas>,
    pub local_address: String,
    pub history: Arc<History>,
}

impl Gateway {
    /// Every consumer group's members, rebalances and lag as the coordinator knows them
    /// now: the first groups by name, up to the metrics' group cap.
    pub async fn group_samples(&self) -> Result<Vec<GroupSample>, GroupError> {
        let mut samples = Vec::new();
        // Listed by name: the cap keeps the first, and only those are described.
        let listed = self.groups.list().await?;
        for summary in listed.into_iter().take(self.metrics.group_cap()) {
            let description = match self.groups.describe(&summary.group).await {
                Ok(description) => description,
                // Deleted between the list and now.
                Err(GroupError::GroupNotFound(_)) => continue,
                // The rest of the metrics matter most when storage is in trouble.
                Err(err) => {
                    tracing::warn!(group = %summary.group, %err, "a group left out of a sample");
                    continue;
                }
            };
            samples.push(GroupSample {
                group: summary.group.to_string(),
                members: description.members.len(),
                rebalances: description.generation.rebalances(),
                lag: description
                    .partitions
                    .iter()
                    .filter_map(|p| Some((p.topic.to_string(), p.partition.get(), p.lag?)))
                    .collect(),
            });
        }
        Ok(samples)
    }

    /// Samples the history every interval until shutdown: traffic from the counters, then
    /// each group's lag.
    pub fn start_history(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.history.interval());
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = self.shutdown.cancelled() => return,
                }
                self.history.sample(now_ms(), self.metrics.traffic.totals());
                match self.group_samples().await {
                    Ok(groups) => self
                        .history
                        .sample_groups(groups.into_iter().map(|g| (g.group, g.lag)).collect()),
                    Err(err) => tracing::debug!(%err, "no group lag in this history sample"),
                }
            }
        });
    }

    pub fn new(parts: GatewayParts) -> Gateway {
        Gateway {
            push: PushReader::new(parts.log.clone(), parts.push_limits.push_cache_bytes),
            log: parts.log,
            groups: parts.groups,
            partitioner: Partitioner::default(),
            verifier: parts.verifier,
            limits: parts.limits,
            push_limits: parts.push_limits,
            allowed_origins: parts.allowed_origins,
            metrics: parts.metrics,
            metrics_public: parts.metrics_public,
            shutdown: parts.shutdown,
            quotas: parts.quotas,
            local_address: parts.local_address,
            history: parts.history,
        }
    }

    /// Whether requests must carry a token (false with `--auth none`).
    pub fn auth_required(&self) -> bool {
        self.verifier.is_some()
    }

    pub fn metrics_public(&self) -> bool {
        self.metrics_public
    }

    /// Who may scrape without a token: anyone with `--metrics-public`, else nobody (an
    /// admin's [`Caller`] gets a scraper of its own).
    pub fn public_scraper(&self) -> Option<Scraper<'_>> {
        self.metrics_public.then_some(Scraper::new(self))
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
    pub fn readiness(&self) -> Result<(), LogError> {
        self.log.readiness()?;
        self.groups.readiness()
    }
}
