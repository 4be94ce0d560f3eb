//! The in-memory view of committed topic state that readers use without touching redb.
//!
//! Only the writer changes it, and only after a commit succeeded, so everything a reader
//! sees here is durable (per `--fsync`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::log::{LogError, Offset, PartitionBounds, PartitionId, TopicConfig, TopicName};

/// One partition's committed bounds.
pub(super) struct PartitionEntry {
    /// Waiters (long polls, group polls, WebSocket and SSE subscriptions) subscribe here
    /// and read the log themselves.
    pub high_watermark: watch::Sender<Offset>,
    pub log_start_offset: AtomicU64,
    /// Bytes of the stored batches.
    pub size_bytes: AtomicU64,
}

impl PartitionEntry {
    pub fn new(
        log_start_offset: Offset,
        high_watermark: Offset,
        size_bytes: u64,
    ) -> Arc<PartitionEntry> {
        Arc::new(PartitionEntry {
            high_watermark: watch::Sender::new(high_watermark),
            log_start_offset: AtomicU64::new(log_start_offset.get()),
            size_bytes: AtomicU64::new(size_bytes),
        })
    }

    pub fn log_start_offset(&self) -> Offset {
        Offset::new(self.log_start_offset.load(Ordering::Acquire))
    }

    pub fn high_watermark(&self) -> Offset {
        *self.high_watermark.borrow()
    }

    /// The bounds as the catalog knows them; readers that also read data take the log
    /// start from their snapshot instead (`store::read_partition`).
    pub fn bounds(&self) -> PartitionBounds {
        PartitionBounds {
            log_start_offset: self.log_start_offset(),
            high_watermark: self.high_watermark(),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Acquire)
    }
}

/// A topic as readers see it. Replaced whole when its configuration changes.
pub(super) struct TopicEntry {
    /// Distinguishes a topic from a deleted one of the same name.
    pub incarnation: u64,
    pub config: TopicConfig,
    pub partitions: Vec<Arc<PartitionEntry>>,
}

impl TopicEntry {
    pub fn partition(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<&Arc<PartitionEntry>, LogError> {
        self.partitions
            .get(partition.get() as usize)
            .ok_or_else(|| LogError::PartitionNotFound {
                topic: topic.clone(),
                partition,
            })
    }
}

#[derive(Default)]
pub(super) struct Catalog {
    topics: RwLock<HashMap<String, Arc<TopicEntry>>>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<Arc<TopicEntry>> {
        self.read().get(name).cloned()
    }

    pub fn topic(&self, name: &TopicName) -> Result<Arc<TopicEntry>, LogError> {
        self.get(name.as_str())
            .ok_or_else(|| LogError::TopicNotFound(name.clone()))
    }

    pub fn partition(
        &self,
        topic: &TopicName,
        partition: PartitionId,
    ) -> Result<Arc<PartitionEntry>, LogError> {
        self.topic(topic)?.partition(topic, partition).cloned()
    }

    /// Every topic, sorted by name.
    pub fn all(&self) -> Vec<(TopicName, Arc<TopicEntry>)> {
        let mut topics: Vec<_> = self
            .read()
            .iter()
            .filter_map(|(name, entry)| Some((TopicName::parse(name).ok()?, entry.clone())))
            .collect();
        topics.sort_by(|a, b| a.0.cmp(&b.0));
        topics
    }

    pub fn insert(&self, name: String, entry: Arc<TopicEntry>) {
        self.write().insert(name, entry);
    }

    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    // A poisoned lock only means another thread panicked while holding it; the map itself
    // is always left consistent (single inserts/removes), so keep serving.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TopicEntry>>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<TopicEntry>>> {
        self.topics.write().unwrap_or_else(|e| e.into_inner())
    }
}
