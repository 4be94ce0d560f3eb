//! Where a record goes: Kafka's default partitioner, so a key lands on the same partition
//! as with a Java client on every backend, and the rotation of keyless requests.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::log::{AppendRecord, LogError, PartitionId, TopicMeta, TopicName};
use crate::murmur::partition_for_key;
use crate::records::{NewRecord, PartitionChoice};

/// Topics whose keyless rotation is remembered; past it the least recently published-to
/// starts over at partition 0 (rotation is a balance, not a promise).
const ROTATIONS: NonZeroUsize = NonZeroUsize::new(16 * 1024).expect("non-zero");

/// Chooses partitions: explicit if given, else by key, else one partition per request,
/// rotating between requests of each topic.
pub(super) struct Partitioner {
    keyless: Mutex<LruCache<crate::log::TopicId, u32>>,
}

impl Default for Partitioner {
    fn default() -> Partitioner {
        Partitioner {
            keyless: Mutex::new(LruCache::new(ROTATIONS)),
        }
    }
}

impl Partitioner {
    /// Every record of one request with its partition; an explicit partition the topic
    /// does not have refuses the whole request.
    pub fn place(
        &self,
        topic: &TopicName,
        meta: &TopicMeta,
        records: Vec<NewRecord>,
    ) -> Result<Vec<AppendRecord>, LogError> {
        let partitions = meta.partitions;
        if let Some(missing) = records.iter().find_map(|record| match record.partition {
            PartitionChoice::Explicit(p) if p.get() >= partitions => Some(p),
            _ => None,
        }) {
            return Err(LogError::PartitionNotFound {
                topic: topic.clone(),
                partition: missing,
            });
        }
        let keyless = records
            .iter()
            .any(|r| r.partition == PartitionChoice::Default && r.key.is_none())
            .then(|| self.next_keyless(meta));
        Ok(records
            .into_iter()
            .map(|record| {
                let partition = match (record.partition, &record.key) {
                    (PartitionChoice::Explicit(p), _) => p,
                    (PartitionChoice::Default, Some(key)) => {
                        PartitionId::new(partition_for_key(key.as_bytes(), partitions))
                    }
                    (PartitionChoice::Default, None) => {
                        PartitionId::new(keyless.unwrap_or_default())
                    }
                };
                AppendRecord {
                    partition,
                    key: record.key,
                    value: record.value,
                    headers: record.headers,
                }
            })
            .collect())
    }

    fn next_keyless(&self, meta: &TopicMeta) -> u32 {
        let mut rotations = self.keyless.lock().unwrap_or_else(|e| e.into_inner());
        let next = rotations.get_or_insert_mut(meta.id, || 0);
        let chosen = *next % meta.partitions;
        *next = next.wrapping_add(1);
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::TopicId;
    use crate::murmur::kafka_murmur2;

    /// `UtilsTest.testMurmur2` from Apache Kafka.
    #[test]
    fn matches_kafka_murmur2_vectors() {
        let vectors = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ];
        for (key, expected) in vectors {
            assert_eq!(kafka_murmur2(key.as_bytes()), expected, "{key}");
        }
    }

    #[test]
    fn negative_hashes_map_like_to_positive() {
        // murmur2("21") is negative: toPositive(-973932308) = 1173551340.
        assert_eq!(partition_for_key(b"21", 1_000_000_000), 173_551_340);
        for partitions in 1..50 {
            assert!(partition_for_key(b"foobar", partitions) < partitions);
        }
    }

    fn record(partition: PartitionChoice, key: Option<&str>) -> NewRecord {
        NewRecord {
            partition,
            key: key.map(str::to_owned),
            value: serde_json::value::RawValue::from_string("1".into()).unwrap(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn explicit_then_key_then_one_rotating_partition_per_request() {
        let partitioner = Partitioner::default();
        let topic = TopicName::parse("t").unwrap();
        let meta = TopicMeta {
            id: TopicId::new(1),
            partitions: 3,
        };
        let place = |records: Vec<NewRecord>| -> Vec<u32> {
            partitioner
                .place(&topic, &meta, records)
                .unwrap()
                .iter()
                .map(|r| r.partition.get())
                .collect()
        };
        let keyed = partition_for_key(b"user-1", 3);
        assert_eq!(
            place(vec![
                record(
                    PartitionChoice::Explicit(PartitionId::new(2)),
                    Some("user-1")
                ),
                record(PartitionChoice::Default, Some("user-1")),
                record(PartitionChoice::Default, None),
                record(PartitionChoice::Default, None),
            ]),
            [2, keyed, 0, 0]
        );
        assert_eq!(place(vec![record(PartitionChoice::Default, None)]), [1]);
        assert_eq!(
            place(vec![record(PartitionChoice::Default, Some("user-1"))]),
            [keyed],
            "keyed requests do not rotate"
        );
        assert_eq!(place(vec![record(PartitionChoice::Default, None)]), [2]);
        let missing = partitioner.place(
            &topic,
            &meta,
            vec![record(PartitionChoice::Explicit(PartitionId::new(3)), None)],
        );
        assert!(matches!(missing, Err(LogError::PartitionNotFound { .. })));
    }
}
