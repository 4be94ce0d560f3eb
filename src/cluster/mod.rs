//! Consumer groups across the replicas of a deployment (`--cluster-secret`; design in
//! docs/scale-out.md, part 2). Each group is run by one replica, the owner of its
//! partition of `__tidegate_groups` (`log::kafka::replicas`); [`ClusterCoordinator`] is the
//! [`GroupCoordinator`] of every replica: a call for a group this replica owns runs on the
//! local [`Coordinator`] of that partition, any other goes to the owner over the internal
//! route ([`wire`]) and comes back with the owner's answer or error.
//!
//! # Invariants
//! - A replica runs a partition's groups only while the group protocol gives it the
//!   partition *and* the directory's newest claim of the partition is its own, at the epoch
//!   of its coordinator. Any other replica asked for them answers `NotOwner`, and the asker
//!   follows the directory; past `--kafka-timeout-ms` without an owner the answer is 503.
//! - Generations of a partition's coordinator start at `epoch × 2^24`, so the members of an
//!   earlier owner are fenced by every new one; within its first session a new owner adopts
//!   the members that come back under their ids.
//! - A connected (WebSocket) member joined through this replica is remembered here while it
//!   lives, so that it is registered again at a new owner under the same id.

mod log;
pub mod wire;

pub use log::ClusterLog;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::groups::{
    Assignment, CommitRequest, Coordinator, Generation, GroupCoordinator, GroupDescription,
    GroupError, GroupSettings, GroupSummary, MemberId, OffsetReset, Ownership, PollRequest, Polled,
    SeekTarget,
};
use crate::log::kafka::{Directory, KafkaLog, OwnershipChange, Replicas};
use crate::log::{EventLog, GroupId, LogError, Offset, OffsetStore, PartitionId, TopicName};
use crate::metrics::ClusterMetrics;
use crate::murmur::partition_for_key;
use wire::{Call, Reply, WireError};

/// The internal route, under every replica's advertised URL.
pub const INTERNAL_PATH: &str = "/internal/v1/groups";
/// How long a forwarded wait for a rebalance is held by the owner before it answers "not
/// yet" (and is asked again): well within any proxy's idle timeout.
const REBALANCE_WAIT: Duration = Duration::from_secs(15);
/// How often a call without an owner looks again, besides on each directory change (a
/// dead owner's claim stands until the group protocol hands its partitions on).
const RETRY: Duration = Duration::from_millis(250);

/// This replica among the others.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub replica: String,
    /// The replicas' shared secret, which the internal route requires.
    pub secret: String,
    /// Bounds the wait for an owner and each forwarded call (beyond its own wait).
    pub timeout: Duration,
}

struct Owned {
    epoch: u64,
    coordinator: Arc<Coordinator>,
    stop: CancellationToken,
}

/// A connected member joined through this replica, to register again at a new owner.
#[derive(Clone)]
struct Connected {
    topics: Vec<TopicName>,
    client: Option<String>,
}

enum Route {
    Local(Arc<Coordinator>),
    Remote(String),
}

/// The groups of every replica, reached from this one.
pub struct ClusterCoordinator {
    cluster: ClusterSettings,
    metrics: ClusterMetrics,
    secret_digest: [u8; 32],
    settings: GroupSettings,
    kafka: Arc<KafkaLog>,
    offsets: Arc<dyn OffsetStore>,
    directory: watch::Receiver<Directory>,
    owned: Mutex<HashMap<u32, Owned>>,
    connected: Mutex<HashMap<(GroupId, MemberId), Connected>>,
    peers: reqwest::Client,
    shutdown: CancellationToken,
    follower: Mutex<Option<JoinHandle<()>>>,
}

impl ClusterCoordinator {
    /// Follows `replicas`' ownership changes until `shutdown`; call within a Tokio runtime.
    pub fn start(
        replicas: Replicas,
        kafka: Arc<KafkaLog>,
        offsets: Arc<dyn OffsetStore>,
        settings: GroupSettings,
        cluster: ClusterSettings,
        metrics: ClusterMetrics,
        shutdown: CancellationToken,
    ) -> Arc<ClusterCoordinator> {
        let Replicas {
            directory,
            mut changes,
        } = replicas;
        let coordinator = Arc::new(ClusterCoordinator {
            secret_digest: Sha256::digest(cluster.secret.as_bytes()).into(),
            cluster,
            metrics,
            settings,
            kafka,
            offsets,
            directory,
            owned: Mutex::default(),
            connected: Mutex::default(),
            peers: reqwest::Client::new(),
            shutdown: shutdown.clone(),
            follower: Mutex::new(None),
        });
        let weak = Arc::downgrade(&coordinator);
        let follower = tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    change = changes.recv() => change,
                    () = shutdown.cancelled() => None,
                };
                let (Some(change), Some(this)) = (change, weak.upgrade()) else {
                    return;
                };
                // Shares come and go together on a rebalance: one reload of the keys for all.
                let mut batch = vec![change];
                while let Ok(change) = changes.try_recv() {
                    batch.push(change);
                }
                this.follow(batch).await;
            }
        });
        *lock(&coordinator.follower) = Some(follower);
        coordinator
    }

    async fn follow(&self, changes: Vec<OwnershipChange>) {
        if changes
            .iter()
            .any(|change| matches!(change, OwnershipChange::Owned { .. }))
        {
            self.reload_keys().await;
        }
        for change in changes {
            self.apply(change).await;
        }
    }

    async fn apply(&self, change: OwnershipChange) {
        let replaced = match change {
            OwnershipChange::Owned { partition, epoch } => {
                let stop = self.shutdown.child_token();
                let ownership = Ownership {
                    first_generation: Generation::first_of_epoch(epoch),
                    adopt_for: self.settings.default_session_timeout,
                };
                let coordinator = Coordinator::start_owning(
                    self.kafka.clone(),
                    self.offsets.clone(),
                    self.settings,
                    stop.clone(),
                    ownership,
                );
                tracing::info!(
                    partition,
                    epoch,
                    "this replica now runs a share of the groups"
                );
                let owned = Owned {
                    epoch,
                    coordinator,
                    stop,
                };
                lock(&self.owned).insert(partition, owned)
            }
            OwnershipChange::Lost { partition } => {
                tracing::info!(partition, "a share of the groups moved to another replica");
                lock(&self.owned).remove(&partition)
            }
        };
        self.metrics
            .shares_owned
            .set(lock(&self.owned).len() as i64);
        if let Some(old) = replaced {
            // Its waiting polls end now; their callers find the new owner.
            old.stop.cancel();
            old.coordinator.shutdown().await;
        }
    }

    /// Reads the idempotency answers again before serving the keys of shares another
    /// replica may have decided until now; tried until it works or the replica shuts down
    /// (while the cluster cannot be read, no share could be served anyway; the changes
    /// that came meanwhile are applied after it).
    async fn reload_keys(&self) {
        while !self.shutdown.is_cancelled() {
            match self.kafka.reload_idempotency_keys().await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(%err, "the idempotency keys could not be read again; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Whether `presented` is the replicas' secret.
    pub fn authorized(&self, presented: &str) -> bool {
        // Digests compare in time independent of where the texts differ.
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest == self.secret_digest
    }

    fn partition_of(key: &[u8], partitions: usize) -> u32 {
        partition_for_key(key, partitions as u32)
    }

    /// Where calls for `key` (a group's name, a publish's topic and key) go now, if
    /// anywhere.
    fn route(&self, key: &[u8]) -> Option<Route> {
        let directory = self.directory.borrow().clone();
        if directory.is_empty() {
            return None;
        }
        let partition = Self::partition_of(key, directory.len());
        let claim = directory.get(partition as usize)?.as_ref()?;
        if claim.replica != self.cluster.replica {
            return Some(Route::Remote(claim.url.clone()));
        }
        let owned = lock(&self.owned);
        let mine = owned.get(&partition).filter(|o| o.epoch == claim.epoch)?;
        Some(Route::Local(mine.coordinator.clone()))
    }

    /// The epoch of `key`'s newest claim, to notice ownership moving.
    fn epoch_of(&self, key: &[u8]) -> Option<u64> {
        let directory = self.directory.borrow();
        let partition = Self::partition_of(key, directory.len().max(1));
        directory.get(partition as usize)?.as_ref().map(|c| c.epoch)
    }

    /// Runs `call` where its owner is, following the directory until an owner answers or
    /// the timeout (beyond the call's own wait) passes.
    pub(super) async fn dispatch(&self, call: Call) -> Result<Reply, GroupError> {
        let Some(key) = call.owner_key() else {
            return self.run_here(None, call).await;
        };
        let deadline = Instant::now() + self.cluster.timeout + call.wait();
        let mut directory = self.directory.clone();
        let mut last_problem = "no replica has claimed its share of the groups yet".to_owned();
        loop {
            directory.mark_unchanged();
            match self.route(&key) {
                Some(Route::Local(coordinator)) => {
                    return self.run_here(Some(&coordinator), call).await;
                }
                Some(Route::Remote(url)) => match self.forward(&url, &call, deadline).await {
                    Ok(Ok(reply)) => return Ok(reply),
                    Ok(Err(err)) => match err.into_group_error() {
                        Some(err) => return Err(err),
                        None => last_problem = format!("{url} no longer runs it"),
                    },
                    Err(problem) => last_problem = problem,
                },
                None => {}
            }
            let now = Instant::now();
            if now >= deadline || self.shutdown.is_cancelled() {
                return Err(GroupError::Log(LogError::ClusterUnavailable(format!(
                    "no replica runs {} now ({last_problem}); retry shortly",
                    call.subject()
                ))));
            }
            let pause = RETRY.min(deadline - now);
            if let Ok(Err(_)) = tokio::time::timeout(pause, directory.changed()).await {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// One call to another replica: its answer, or why there was none.
    async fn forward(
        &self,
        url: &str,
        call: &Call,
        deadline: Instant,
    ) -> Result<Result<Reply, WireError>, String> {
        let answer = self.send(url, call, deadline).await;
        let outcome = match &answer {
            Ok(Err(WireError::NotOwner)) => "not_owner",
            Ok(_) => "answered",
            Err(_) => "unreachable",
        };
        self.metrics.forwarded.with_label_values(&[outcome]).inc();
        answer
    }

    async fn send(
        &self,
        url: &str,
        call: &Call,
        deadline: Instant,
    ) -> Result<Result<Reply, WireError>, String> {
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let sent = self
            .peers
            .post(format!("{}{INTERNAL_PATH}", url.trim_end_matches('/')))
            .bearer_auth(&self.cluster.secret)
            .json(call)
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| format!("{url} did not answer: {err}"))?;
        let status = sent.status();
        if !status.is_success() {
            tracing::warn!(url, %status, "a replica refused an internal call");
            return Err(format!("{url} answered {status}"));
        }
        sent.json::<Result<Reply, WireError>>()
            .await
            .map_err(|err| format!("{url} sent an unreadable answer: {err}"))
    }

    /// The internal route's side: runs `call` if this replica runs its group now.
    pub async fn serve(&self, call: Call) -> Result<Reply, WireError> {
        let Some(key) = call.owner_key() else {
            return Ok(self.run_here(None, call).await?);
        };
        match self.route(&key) {
            Some(Route::Local(coordinator)) => Ok(self.run_here(Some(&coordinator), call).await?),
            _ => Err(WireError::NotOwner),
        }
    }

    /// Runs `call` on this replica: a group's on `owner`, the coordinator of its share.
    async fn run_here(&self, owner: Option<&Coordinator>, call: Call) -> Result<Reply, GroupError> {
        match (call, owner) {
            (Call::Append { topic, request }, _) => {
                Ok(Reply::Appended(self.kafka.append(&topic, request).await?))
            }
            (Call::List, _) => Ok(Reply::Groups(self.local_groups().await?)),
            (call, Some(coordinator)) => run_group(coordinator, call).await,
            (call, None) => Err(GroupError::Invalid(format!(
                "{} can only run where it is owned",
                call.subject()
            ))),
        }
    }

    /// The groups of the partitions this replica runs. Every coordinator lists the groups
    /// with committed offsets too; each keeps only those of its own partition.
    async fn local_groups(&self) -> Result<Vec<GroupSummary>, GroupError> {
        let partitions = self.directory.borrow().len();
        let owned: Vec<(u32, Arc<Coordinator>)> = lock(&self.owned)
            .iter()
            .map(|(partition, owned)| (*partition, owned.coordinator.clone()))
            .collect();
        let mut groups = Vec::new();
        for (partition, coordinator) in owned {
            groups.extend(coordinator.list().await?.into_iter().filter(|g| {
                Self::partition_of(g.group.as_str().as_bytes(), partitions) == partition
            }));
        }
        self.metrics.groups_owned.set(groups.len() as i64);
        Ok(groups)
    }

    fn remember(&self, group: &GroupId, member: &MemberId, connected: Connected) {
        lock(&self.connected).insert((group.clone(), member.clone()), connected);
    }

    fn remembered(&self, group: &GroupId, member: &MemberId) -> Option<Connected> {
        lock(&self.connected)
            .get(&(group.clone(), member.clone()))
            .cloned()
    }

    /// Registers a connected member of this replica at its group's owner again (after the
    /// group moved, the new owner did not know it); false when it is not one.
    async fn rejoin(&self, group: &GroupId, member: &MemberId) -> Result<bool, GroupError> {
        let Some(connected) = self.remembered(group, member) else {
            return Ok(false);
        };
        let call = Call::Join {
            group: group.clone(),
            member: Some(member.clone()),
            topics: connected.topics,
            client: connected.client,
        };
        self.dispatch(call).await?;
        Ok(true)
    }
}

/// A group's call on the coordinator of its share.
async fn run_group(coordinator: &Coordinator, call: Call) -> Result<Reply, GroupError> {
    Ok(match call {
        Call::Poll { group, request } => Reply::Polled(coordinator.poll(&group, request).await?),
        Call::Commit { group, request } => {
            coordinator.commit(&group, request).await?;
            Reply::Done
        }
        Call::Seek {
            group,
            topic,
            target,
        } => Reply::Offsets(coordinator.seek(&group, &topic, target).await?),
        Call::Leave { group, member } => {
            coordinator.leave(&group, &member).await?;
            Reply::Done
        }
        Call::Describe { group } => Reply::Description(coordinator.describe(&group).await?),
        Call::Delete { group } => {
            coordinator.delete(&group).await?;
            Reply::Done
        }
        Call::Join {
            group,
            member,
            topics,
            client,
        } => Reply::Member(
            coordinator
                .join_connected(&group, member.as_ref(), topics, client)
                .await?,
        ),
        Call::Assignment {
            group,
            member,
            reset,
        } => Reply::Assignment(coordinator.assignment(&group, &member, reset).await?),
        Call::Rebalanced {
            group,
            member,
            known,
            wait,
        } => {
            let waited = tokio::time::timeout(wait, coordinator.rebalanced(&group, &member, known));
            Reply::Rebalanced(match waited.await {
                Ok(result) => result.map(|()| true)?,
                Err(_) => false,
            })
        }
        Call::Heartbeat { group, member } => {
            coordinator.heartbeat(&group, &member).await?;
            Reply::Done
        }
        call @ (Call::List | Call::Append { .. }) => {
            return Err(GroupError::Invalid(format!(
                "{} is not a call of one group",
                call.subject()
            )));
        }
    })
}

/// A reply of another kind than the call asks for: a replica of another version.
fn unexpected(reply: Reply) -> GroupError {
    GroupError::Log(LogError::Unavailable(format!(
        "a replica answered an internal call with {reply:?}; are all replicas the same version?"
    )))
}

#[async_trait]
impl GroupCoordinator for ClusterCoordinator {
    fn settings(&self) -> GroupSettings {
        self.settings
    }

    async fn poll(&self, group: &GroupId, request: PollRequest) -> Result<Polled, GroupError> {
        let call = Call::Poll {
            group: group.clone(),
            request,
        };
        match self.dispatch(call).await? {
            Reply::Polled(polled) => Ok(polled),
            other => Err(unexpected(other)),
        }
    }

    async fn commit(&self, group: &GroupId, request: CommitRequest) -> Result<(), GroupError> {
        let call = Call::Commit {
            group: group.clone(),
            request,
        };
        self.dispatch(call).await.map(drop)
    }

    async fn seek(
        &self,
        group: &GroupId,
        topic: &TopicName,
        target: SeekTarget,
    ) -> Result<Vec<(PartitionId, Offset)>, GroupError> {
        let call = Call::Seek {
            group: group.clone(),
            topic: topic.clone(),
            target,
        };
        match self.dispatch(call).await? {
            Reply::Offsets(offsets) => Ok(offsets),
            other => Err(unexpected(other)),
        }
    }

    async fn leave(&self, group: &GroupId, member: &MemberId) -> Result<(), GroupError> {
        lock(&self.connected).remove(&(group.clone(), member.clone()));
        let call = Call::Leave {
            group: group.clone(),
            member: member.clone(),
        };
        self.dispatch(call).await.map(drop)
    }

    async fn describe(&self, group: &GroupId) -> Result<GroupDescription, GroupError> {
        let call = Call::Describe {
            group: group.clone(),
        };
        match self.dispatch(call).await? {
            Reply::Description(description) => Ok(description),
            other => Err(unexpected(other)),
        }
    }

    /// Every replica's groups: this one's, and each other claimant's over the internal
    /// route. A replica that does not answer fails the list (503) rather than shortening it.
    async fn list(&self) -> Result<Vec<GroupSummary>, GroupError> {
        let directory = self.directory.borrow().clone();
        let mut others: Vec<String> = directory
            .iter()
            .flatten()
            .filter(|claim| claim.replica != self.cluster.replica)
            .map(|claim| claim.url.clone())
            .collect();
        others.sort();
        others.dedup();
        let mut groups: BTreeMap<GroupId, GroupSummary> = BTreeMap::new();
        for summary in self.local_groups().await? {
            groups.insert(summary.group.clone(), summary);
        }
        let deadline = Instant::now() + self.cluster.timeout;
        for url in others {
            match self.forward(&url, &Call::List, deadline).await {
                Ok(Ok(Reply::Groups(listed))) => {
                    for summary in listed {
                        groups.entry(summary.group.clone()).or_insert(summary);
                    }
                }
                Ok(Ok(other)) => return Err(unexpected(other)),
                Ok(Err(err)) => {
                    return Err(err
                        .into_group_error()
                        .unwrap_or_else(|| unexpected(Reply::Done)));
                }
                Err(problem) => {
                    return Err(GroupError::Log(LogError::ClusterUnavailable(format!(
                        "cannot list every replica's groups: {problem}"
                    ))));
                }
            }
        }
        Ok(groups.into_values().collect())
    }

    async fn delete(&self, group: &GroupId) -> Result<(), GroupError> {
        let call = Call::Delete {
            group: group.clone(),
        };
        self.dispatch(call).await.map(drop)
    }

    async fn join(
        &self,
        group: &GroupId,
        topics: Vec<TopicName>,
        client: Option<String>,
    ) -> Result<MemberId, GroupError> {
        let connected = Connected {
            topics: topics.clone(),
            client: client.clone(),
        };
        let call = Call::Join {
            group: group.clone(),
            member: None,
            topics,
            client,
        };
        match self.dispatch(call).await? {
            Reply::Member(member) => {
                self.remember(group, &member, connected);
                Ok(member)
            }
            other => Err(unexpected(other)),
        }
    }

    async fn assignment(
        &self,
        group: &GroupId,
        member: &MemberId,
        reset: OffsetReset,
    ) -> Result<Assignment, GroupError> {
        let call = Call::Assignment {
            group: group.clone(),
            member: member.clone(),
            reset,
        };
        let reply = match self.dispatch(call.clone()).await {
            Err(GroupError::UnknownMember { .. }) if self.rejoin(group, member).await? => {
                self.dispatch(call).await?
            }
            other => other?,
        };
        match reply {
            Reply::Assignment(assignment) => Ok(assignment),
            other => Err(unexpected(other)),
        }
    }

    /// Ends on a rebalance at the owner, and also when the group moves to another owner
    /// (the member's next assignment comes from there).
    async fn rebalanced(
        &self,
        group: &GroupId,
        member: &MemberId,
        known: Generation,
    ) -> Result<(), GroupError> {
        let key = group.as_str().as_bytes();
        let epoch = self.epoch_of(key);
        let mut directory = self.directory.clone();
        let moved = async {
            while directory.changed().await.is_ok() {
                if self.epoch_of(key) != epoch {
                    return;
                }
            }
            std::future::pending::<()>().await;
        };
        let waited = async {
            loop {
                let call = Call::Rebalanced {
                    group: group.clone(),
                    member: member.clone(),
                    known,
                    wait: REBALANCE_WAIT,
                };
                match self.dispatch(call).await {
                    Ok(Reply::Rebalanced(false)) => continue,
                    Ok(Reply::Rebalanced(true)) => return Ok(()),
                    Ok(other) => return Err(unexpected(other)),
                    // Unknown at the owner: the next assignment registers it again.
                    Err(GroupError::UnknownMember { .. })
                        if self.remembered(group, member).is_some() =>
                    {
                        return Ok(());
                    }
                    Err(err) => return Err(err),
                }
            }
        };
        tokio::select! {
            result = waited => result,
            () = moved => Ok(()),
            () = self.shutdown.cancelled() => Ok(()),
        }
    }

    async fn heartbeat(&self, group: &GroupId, member: &MemberId) -> Result<(), GroupError> {
        let call = Call::Heartbeat {
            group: group.clone(),
            member: member.clone(),
        };
        match self.dispatch(call).await {
            Err(GroupError::UnknownMember { .. }) if self.rejoin(group, member).await? => Ok(()),
            other => other.map(drop),
        }
    }

    /// Ready once every share of the groups has a claim: before that, some groups have no
    /// replica to run them. A claim of a replica that died stands until its shares move,
    /// which the calls for them ride out (503 only past the timeout).
    fn readiness(&self) -> Result<(), LogError> {
        let directory = self.directory.borrow();
        let claimed = directory.iter().flatten().count();
        if directory.is_empty() || claimed < directory.len() {
            return Err(LogError::ClusterUnavailable(format!(
                "this replica has not joined the others yet: {claimed} of {} shares of the consumer groups have a replica",
                directory.len()
            )));
        }
        Ok(())
    }

    async fn shutdown(&self) {
        let follower = lock(&self.follower).take();
        if let Some(follower) = follower {
            let _ = follower.await;
        }
        let owned: Vec<Owned> = lock(&self.owned).drain().map(|(_, owned)| owned).collect();
        for owned in owned {
            owned.stop.cancel();
            owned.coordinator.shutdown().await;
        }
    }
}

// A poisoned lock only means another thread panicked while holding it; the maps are left
// consistent by single inserts and removes, so keep serving.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
