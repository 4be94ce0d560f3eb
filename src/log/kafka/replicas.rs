//! The replicas of one deployment sharing its consumer groups (docs/scale-out.md, part 2).
//! Kafka's own group protocol decides who runs what: every replica joins the internal
//! consumer group `__tidegate_gateways` over the internal topic `__tidegate_groups`, whose
//! partitions Kafka hands out one live replica each (cooperative-sticky, so a replica that
//! comes or goes moves only its share). A replica given a partition appends a claim to it;
//! the claim's offset is that ownership's **epoch** (it only grows, whoever writes it, and
//! needs no clock). Every replica reads the newest claim of every partition: the
//! [`Directory`], which says where to send a request.
//!
//! Three workers: the member thread (polls the internal group so its rebalances run), the
//! directory thread (reads every partition's claims) and the claimer task (writes claims
//! for what the member thread was given, then reports [`OwnershipChange`]s).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::KafkaOptions;
use super::clients::{self, created};
use super::names::Names;
use crate::log::LogError;

/// Partitions of `__tidegate_groups` made by the first replica; later ones read the count
/// from the cluster. More partitions spread groups finer over more replicas.
pub const GROUP_PARTITIONS: u32 = 16;
/// A replica that stops heartbeating loses its partitions after this long (Kafka's lower
/// bound on a group session).
const REPLICA_SESSION: Duration = Duration::from_secs(6);
const POLL: Duration = Duration::from_millis(100);
/// Between attempts at what failed (the topic, a claim) while the cluster is away.
const RETRY: Duration = Duration::from_millis(500);

/// Who runs one partition of the groups, and since which epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub replica: String,
    /// Where the other replicas send its requests.
    pub url: String,
    pub epoch: u64,
}

/// The newest claim of each partition, indexed by partition; empty until the internal
/// topic is known.
pub type Directory = Arc<Vec<Option<Claim>>>;

/// What this replica was given or lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnershipChange {
    /// Claimed, at this epoch; serve it once the directory shows the claim.
    Owned { partition: u32, epoch: u64 },
    /// No longer this replica's: stop serving it at once.
    Lost { partition: u32 },
}

/// This replica's membership among the replicas.
pub struct Replicas {
    pub directory: watch::Receiver<Directory>,
    pub changes: mpsc::UnboundedReceiver<OwnershipChange>,
}

#[derive(Serialize, Deserialize)]
struct ClaimRecord {
    replica: String,
    url: String,
}

/// What the member thread hears from the group protocol.
enum Given {
    Assigned(Vec<u32>),
    Revoked(Vec<u32>),
}

/// Joins the replicas of `options`' deployment, advertising `url`. Never waits for the
/// cluster: until it answers, the directory stays empty and this replica owns nothing.
pub fn join(
    options: &KafkaOptions,
    url: String,
    shutdown: CancellationToken,
) -> Result<Replicas, LogError> {
    let names = Names::new(&options.prefix);
    let topic = names.groups_topic();
    let admin = clients::admin(options)?;
    let producer: FutureProducer = created("claim producer", claim_producer(options).create())?;
    let directory_consumer: BaseConsumer = created(
        "directory consumer",
        clients::consumer(options, "directory").create(),
    )?;
    let (given_tx, given_rx) = mpsc::unbounded_channel();
    let assigned = Arc::new(Mutex::new(BTreeSet::new()));
    let member: BaseConsumer<MemberContext> = created(
        "replica group member",
        member_config(options, &names).create_with_context(MemberContext {
            given: given_tx,
            assigned: assigned.clone(),
        }),
    )?;
    let (directory_tx, directory) = watch::channel(Directory::default());
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let options = options.clone();
    tokio::spawn(async move {
        let Some(partitions) = internal_topic(&admin, &options, &topic, &shutdown).await else {
            return;
        };
        let threads = spawn_threads(
            directory_consumer,
            member,
            &topic,
            partitions,
            directory_tx,
            shutdown.clone(),
        );
        if let Err(err) = threads {
            tracing::error!(%err, "the replica group cannot start; this replica owns no groups");
            return;
        }
        let claimer = Claimer {
            producer,
            topic,
            record: ClaimRecord {
                replica: options.replica_id.clone(),
                url,
            },
            assigned,
            changes: changes_tx,
            timeout: options.timeout,
        };
        claimer.run(given_rx, shutdown).await;
    });
    Ok(Replicas { directory, changes })
}

fn claim_producer(options: &KafkaOptions) -> ClientConfig {
    let mut config = clients::common(options);
    let timeout = options.timeout.as_millis().to_string();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", &timeout);
    config
}

fn member_config(options: &KafkaOptions, names: &Names) -> ClientConfig {
    let mut config = clients::common(options);
    config
        .set("group.id", names.replicas_group())
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set(
            "session.timeout.ms",
            REPLICA_SESSION.as_millis().to_string(),
        )
        .set("heartbeat.interval.ms", "1000")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // The member reads nothing it needs (claims come from the directory): start at
        // the end.
        .set("auto.offset.reset", "latest");
    config
}

/// Creates the internal topic if it is missing and returns its partition count, trying
/// until the cluster answers or the replica shuts down.
async fn internal_topic(
    admin: &rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
    options: &KafkaOptions,
    topic: &str,
    shutdown: &CancellationToken,
) -> Option<u32> {
    let metadata = clients::metadata(options).ok()?;
    loop {
        // One claim per partition is all that matters; compaction keeps the newest.
        let made = clients::create_internal_topic(
            admin,
            options,
            topic,
            GROUP_PARTITIONS,
            &[("cleanup.policy", "compact")],
        )
        .await;
        let count = match made {
            Ok(()) => metadata
                .fetch_metadata(Some(topic), options.timeout)
                .ok()
                .and_then(|m| m.topics().first().map(|t| t.partitions().len() as u32))
                .filter(|count| *count > 0),
            Err(err) => {
                tracing::warn!(%err, "the replicas' internal topic is not there yet; retrying");
                None
            }
        };
        if count.is_some() {
            return count;
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = shutdown.cancelled() => return None,
        }
    }
}

fn spawn_threads(
    directory_consumer: BaseConsumer,
    member: BaseConsumer<MemberContext>,
    topic: &str,
    partitions: u32,
    directory: watch::Sender<Directory>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let mut every = TopicPartitionList::new();
    for partition in 0..partitions {
        every
            .add_partition_offset(topic, partition as i32, KafkaOffset::Beginning)
            .map_err(|err| err.to_string())?;
    }
    directory_consumer
        .assign(&every)
        .map_err(|err| err.to_string())?;
    member.subscribe(&[topic]).map_err(|err| err.to_string())?;
    let stop = shutdown.clone();
    std::thread::Builder::new()
        .name("tidegate-directory".into())
        .spawn(move || read_directory(&directory_consumer, partitions, &directory, &stop))
        .map_err(|err| err.to_string())?;
    std::thread::Builder::new()
        .name("tidegate-replica".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                // Messages are not needed; polling runs the group's callbacks.
                if let Some(Err(err)) = member.poll(POLL) {
                    tracing::debug!(%err, "the replica group member reported an error");
                }
            }
            // Dropping the consumer leaves the group, so the others take over at once.
            drop(member);
        })
        .map_err(|err| err.to_string())?;
    Ok(())
}

/// The directory thread: the newest claim of every partition, published after each drained
/// poll.
fn read_directory(
    consumer: &BaseConsumer,
    partitions: u32,
    directory: &watch::Sender<Directory>,
    shutdown: &CancellationToken,
) {
    let mut claims: Vec<Option<Claim>> = vec![None; partitions as usize];
    directory.send_replace(Arc::new(claims.clone()));
    while !shutdown.is_cancelled() {
        let mut changed = false;
        let mut next = consumer.poll(POLL);
        while let Some(result) = next {
            match result {
                Ok(message) => {
                    let claim = message
                        .payload()
                        .and_then(|bytes| serde_json::from_slice::<ClaimRecord>(bytes).ok());
                    let slot = usize::try_from(message.partition())
                        .ok()
                        .and_then(|p| claims.get_mut(p));
                    if let (Some(claim), Some(slot)) = (claim, slot) {
                        *slot = Some(Claim {
                            replica: claim.replica,
                            url: claim.url,
                            epoch: message.offset().max(0) as u64,
                        });
                        changed = true;
                    }
                }
                Err(err) => tracing::debug!(%err, "the replica directory reported an error"),
            }
            next = consumer.poll(Duration::ZERO);
        }
        if changed {
            directory.send_replace(Arc::new(claims.clone()));
        }
    }
}

/// Hears the group protocol on the member thread: what was given, what was taken.
struct MemberContext {
    given: mpsc::UnboundedSender<Given>,
    /// What the group gives this replica now, for the claimer to check before a retry.
    assigned: Arc<Mutex<BTreeSet<u32>>>,
}

impl MemberContext {
    fn partitions(rebalance: &Rebalance<'_>) -> Option<(bool, Vec<u32>)> {
        let (assigned, list) = match rebalance {
            Rebalance::Assign(list) => (true, list),
            Rebalance::Revoke(list) => (false, list),
            Rebalance::Error(err) => {
                tracing::warn!(%err, "the replica group's rebalance failed");
                return None;
            }
        };
        let partitions = list
            .elements()
            .iter()
            .filter_map(|element| u32::try_from(element.partition()).ok())
            .collect();
        Some((assigned, partitions))
    }
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Revoked before they are given up, so this replica stops serving first.
        if let Some((false, partitions)) = Self::partitions(rebalance) {
            let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
            for partition in &partitions {
                assigned.remove(partition);
            }
            let _ = self.given.send(Given::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Some((true, partitions)) = Self::partitions(rebalance) {
            self.assigned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(partitions.iter().copied());
            let _ = self.given.send(Given::Assigned(partitions));
        }
    }
}

/// Writes a claim for each partition given, in the order the group protocol gave and took
/// them, so a partition's `Lost` always follows its `Owned`.
struct Claimer {
    producer: FutureProducer,
    topic: String,
    record: ClaimRecord,
    assigned: Arc<Mutex<BTreeSet<u32>>>,
    changes: mpsc::UnboundedSender<OwnershipChange>,
    timeout: Duration,
}

impl Claimer {
    async fn run(self, mut given: mpsc::UnboundedReceiver<Given>, shutdown: CancellationToken) {
        let payload = match serde_json::to_vec(&self.record) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::error!(%err, "a claim cannot be encoded");
                return;
            }
        };
        loop {
            let next = tokio::select! {
                next = given.recv() => next,
                () = shutdown.cancelled() => None,
            };
            match next {
                None => return,
                Some(Given::Revoked(partitions)) => {
                    for partition in partitions {
                        let _ = self.changes.send(OwnershipChange::Lost { partition });
                    }
                }
                Some(Given::Assigned(partitions)) => {
                    let claims = partitions
                        .iter()
                        .map(|partition| self.claim(*partition, &payload, &shutdown));
                    for (partition, epoch) in partitions
                        .iter()
                        .zip(futures_util::future::join_all(claims).await)
                    {
                        if let Some(epoch) = epoch {
                            let partition = *partition;
                            let _ = self
                                .changes
                                .send(OwnershipChange::Owned { partition, epoch });
                        }
                    }
                }
            }
        }
    }

    /// Appends this replica's claim to `partition`, again and again while the cluster
    /// refuses and the partition is still given; the claim's offset is the epoch.
    async fn claim(
        &self,
        partition: u32,
        payload: &[u8],
        shutdown: &CancellationToken,
    ) -> Option<u64> {
        loop {
            let still_given = self
                .assigned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&partition);
            if !still_given || shutdown.is_cancelled() {
                return None;
            }
            let record = FutureRecord::to(&self.topic)
                .partition(partition as i32)
                .key("claim")
                .payload(payload);
            match self.producer.send(record, self.timeout).await {
                Ok(delivery) => return Some(delivery.offset.max(0) as u64),
                Err((err, _)) => {
                    tracing::warn!(partition, %err, "a claim was not written; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}
