//! The background task: expires members whose session ran out and follows partition
//! changes of subscribed topics, in every group, until shutdown. Groups left with no
//! member are dropped from memory (their committed offsets stay in the log).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::coordinator::{Coordinator, Group};
use crate::log::{GroupId, TopicName};

impl Coordinator {
    pub(super) async fn run_maintenance(self: Arc<Self>) {
        let period = (self.settings.min_session_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let groups: Vec<(GroupId, Arc<Group>)> = self
                .groups()
                .iter()
                .map(|(id, group)| (id.clone(), group.clone()))
                .collect();
            // Partition counts are read before any lock is taken: deleted topics drop out,
            // grown ones rebalance below.
            let mut topics = BTreeSet::<TopicName>::new();
            for (_, group) in &groups {
                topics.extend(group.state.lock().await.subscribed_topics());
            }
            if let Err(err) = self.refresh_counts(&topics, false).await {
                // Members still expire; partition changes wait for the next tick.
                tracing::warn!(%err, "group maintenance could not read partition counts");
            }
            for (id, group) in groups {
                let mut state = group.state.lock().await;
                self.settle(&group, &mut state, false);
                if state.members.is_empty() {
                    drop(state);
                    let mut groups = self.groups();
                    // Only if nobody joined or waits meanwhile: the map's entry is this very
                    // group, and only the map and this loop hold it.
                    if groups
                        .get(&id)
                        .is_some_and(|current| Arc::ptr_eq(current, &group))
                        && Arc::strong_count(&group) == 2
                    {
                        groups.remove(&id);
                    }
                }
            }
        }
    }
}
