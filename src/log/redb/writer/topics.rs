//! Topic administration: create, change and delete, with their rows.

use redb::ReadableTable;

use super::{Change, Reply, Staging, Tables, WriterPartition, WriterTopic, settle};
use crate::log::{LogError, TopicConfig, TopicName, TopicUpdate};

/// A change to a topic's existence or configuration.
pub(in crate::log::redb) enum TopicChange {
    Create(TopicConfig),
    Update(TopicUpdate),
    Delete,
}

/// Applies a [`TopicChange`] to one topic.
pub(in crate::log::redb) struct TopicAdmin {
    pub topic: TopicName,
    pub change: TopicChange,
    pub reply: Reply<()>,
    pub staged: bool,
}

impl Change for TopicAdmin {
    fn stage(&mut self, staging: &mut Staging<'_, '_>) -> Result<(), LogError> {
        // Admin changes see every earlier append of the group already in the table.
        staging.flush_batches()?;
        match &self.change {
            TopicChange::Create(config) => create(staging, &self.topic, *config)?,
            TopicChange::Update(update) => update_config(staging, &self.topic, *update)?,
            TopicChange::Delete => delete(staging, &self.topic)?,
        }
        staging.reshaped.push(self.topic.as_str().to_owned());
        self.staged = true;
        Ok(())
    }

    fn answer(self: Box<Self>, result: Result<(), LogError>) {
        settle(self.reply, self.staged.then_some(()), result);
    }
}

fn create(
    staging: &mut Staging<'_, '_>,
    name: &TopicName,
    config: TopicConfig,
) -> Result<(), LogError> {
    config.validate()?;
    if staging.state.topics.contains_key(name.as_str()) {
        return Err(LogError::TopicExists(name.clone()));
    }
    write_config(staging.tables, name, &config)?;
    for partition in 0..config.partitions {
        insert_empty_partition(staging.tables, name, partition)?;
    }
    let incarnation = staging.state.new_incarnation();
    staging.state.topics.insert(
        name.as_str().to_owned(),
        WriterTopic {
            incarnation,
            config,
            partitions: (0..config.partitions)
                .map(|_| WriterPartition::EMPTY)
                .collect(),
        },
    );
    Ok(())
}

fn update_config(
    staging: &mut Staging<'_, '_>,
    name: &TopicName,
    update: TopicUpdate,
) -> Result<(), LogError> {
    let topic = staging
        .state
        .topics
        .get_mut(name.as_str())
        .ok_or_else(|| LogError::TopicNotFound(name.clone()))?;
    let old = topic.config;
    let config = TopicConfig {
        partitions: update.partitions.unwrap_or(old.partitions),
        retention_ms: update.retention_ms.unwrap_or(old.retention_ms),
        retention_bytes: update.retention_bytes.unwrap_or(old.retention_bytes),
    };
    config.validate()?;
    if config.partitions < old.partitions {
        return Err(LogError::PartitionsCannotShrink {
            current: old.partitions,
            requested: config.partitions,
        });
    }
    write_config(staging.tables, name, &config)?;
    for partition in old.partitions..config.partitions {
        insert_empty_partition(staging.tables, name, partition)?;
        topic.partitions.push(WriterPartition::EMPTY);
    }
    topic.config = config;
    Ok(())
}

fn delete(staging: &mut Staging<'_, '_>, name: &TopicName) -> Result<(), LogError> {
    let topic = staging
        .state
        .topics
        .remove(name.as_str())
        .ok_or_else(|| LogError::TopicNotFound(name.clone()))?;
    let name = name.as_str();
    let tables = &mut staging.tables;
    tables.topics.remove(name)?;
    for partition in 0..topic.config.partitions {
        tables.partitions.remove((name, partition))?;
        tables.partition_bytes.remove((name, partition))?;
    }
    tables
        .batches
        .retain_in((name, 0, 0)..=(name, u32::MAX, u64::MAX), |_, _| false)?;
    // Keys of a deleted topic must not replay against a new topic of the same name;
    // their expiry entries are dropped by pruning once they age out.
    let mut keys = Vec::new();
    for entry in tables.idempotency.range((name, "")..)? {
        let (key, _) = entry?;
        let (topic, key) = key.value();
        if topic != name {
            break;
        }
        keys.push(key.to_owned());
    }
    for key in keys {
        tables.idempotency.remove((name, key.as_str()))?;
    }
    // Committed offsets go with the topic, in the same transaction. Keys lead with the
    // group, so this visits every committed offset; there are groups × partitions of them.
    tables.offsets.retain(|(_, topic, _), _| topic != name)?;
    Ok(())
}

fn insert_empty_partition(
    tables: &mut Tables<'_>,
    name: &TopicName,
    partition: u32,
) -> Result<(), LogError> {
    tables.partitions.insert((name.as_str(), partition), 0)?;
    tables
        .partition_bytes
        .insert((name.as_str(), partition), 0)?;
    Ok(())
}

fn write_config(
    tables: &mut Tables<'_>,
    name: &TopicName,
    config: &TopicConfig,
) -> Result<(), LogError> {
    let encoded = serde_json::to_vec(config)
        .map_err(|err| LogError::corrupt(format!("encoding topic config: {err}")))?;
    tables.topics.insert(name.as_str(), encoded.as_slice())?;
    Ok(())
}
