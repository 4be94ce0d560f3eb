//! API names and their Kafka twins: topics and groups take `--kafka-topic-prefix` in
//! front, and tidegate's own topics start with `__tidegate` after it (names starting with
//! `__` are internal and never listed).

use crate::log::{GroupId, TopicName};

/// What tidegate's own topics and groups start with.
const INTERNAL: &str = "__tidegate";
/// The compacted topic holding idempotency keys and their first answers.
const IDEMPOTENCY_TOPIC: &str = "__tidegate_idempotency";
/// The topic whose partitions the replicas share out, and the claims on them.
const GROUPS_TOPIC: &str = "__tidegate_groups";
/// The replicas' own consumer group over `GROUPS_TOPIC`.
const REPLICAS_GROUP: &str = "__tidegate_gateways";

#[derive(Clone, Debug)]
pub(super) struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_owned(),
        }
    }

    pub fn topic(&self, topic: &TopicName) -> String {
        format!("{}{topic}", self.prefix)
    }

    pub fn group(&self, group: &GroupId) -> String {
        format!("{}{group}", self.prefix)
    }

    pub fn idempotency_topic(&self) -> String {
        format!("{}{IDEMPOTENCY_TOPIC}", self.prefix)
    }

    pub fn groups_topic(&self) -> String {
        format!("{}{GROUPS_TOPIC}", self.prefix)
    }

    pub fn replicas_group(&self) -> String {
        format!("{}{REPLICAS_GROUP}", self.prefix)
    }

    /// The API name of a Kafka topic, for topics of this deployment that are not internal.
    pub fn api_topic(&self, kafka: &str) -> Option<TopicName> {
        let name = kafka.strip_prefix(&self.prefix)?;
        if name.starts_with("__") {
            return None;
        }
        TopicName::parse(name).ok()
    }

    /// The API name of a Kafka consumer group of this deployment; tidegate's own groups
    /// (the replicas' `__tidegate_gateways`) are not the API's.
    pub fn api_group(&self, kafka: &str) -> Option<GroupId> {
        let name = kafka.strip_prefix(&self.prefix)?;
        if name.starts_with(INTERNAL) {
            return None;
        }
        GroupId::parse(name).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_names_round_trip_and_internal_ones_are_hidden() {
        let names = Names::new("t1.");
        let orders = TopicName::parse("orders").unwrap();
        assert_eq!(names.topic(&orders), "t1.orders");
        assert_eq!(names.api_topic("t1.orders"), Some(orders));
        assert_eq!(names.api_topic("orders"), None, "another deployment's");
        assert_eq!(names.api_topic(&names.idempotency_topic()), None);
        assert_eq!(names.api_topic(&names.groups_topic()), None);
        assert_eq!(names.api_group(&names.replicas_group()), None);
        assert_eq!(names.api_topic("t1.__consumer_offsets"), None);
        let group = GroupId::parse("billing").unwrap();
        assert_eq!(names.api_group(&names.group(&group)), Some(group));
        assert_eq!(Names::new("").api_topic("__consumer_offsets"), None);
    }
}
