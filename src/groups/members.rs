//! Members that stay connected (WebSocket subscriptions), leaving, and deleting a group.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::coordinator::{Coordinator, unknown_member};
use super::{GroupError, MemberId};
use crate::log::{GroupId, TopicName};

impl Coordinator {
    /// Joins a connected member: a new one (`id` `None`), or one another replica holds
    /// the connection of, under its id (again after ownership moved; a member already
    /// known is only kept alive).
    pub async fn join_connected(
        &self,
        group: &GroupId,
        id: Option<&MemberId>,
        topics: Vec<TopicName>,
        client: Option<String>,
    ) -> Result<MemberId, GroupError> {
        let topics: BTreeSet<TopicName> = topics.into_iter().collect();
        self.refresh_counts(&topics, true).await?;
        if id.is_none() {
            self.admit_group(group).await?;
        }
        let entry = self.group(group);
        let mut state = entry.state.lock().await;
        // A connected member leaves when its connection ends; the session is only a guard
        // against a connection task that stopped without leaving.
        let session = Some(self.settings.max_session_timeout);
        if let Some(id) = id
            && let Some(member) = state.members.get_mut(id)
        {
            member.touch(std::time::Instant::now(), super::coordinator::now_ms());
            return Ok(id.clone());
        }
        self.add_member(&entry, &mut state, group, id, topics, session, client)
    }

    pub(super) async fn remove_member(
        &self,
        group: &GroupId,
        member: &MemberId,
    ) -> Result<(), GroupError> {
        let entry = self.member_group(group, member)?;
        let mut state = entry.state.lock().await;
        if state.members.remove(member).is_none() {
            return Err(unknown_member(group, member));
        }
        self.settle(&entry, &mut state, true);
        Ok(())
    }

    pub(super) async fn delete_group(&self, group: &GroupId) -> Result<(), GroupError> {
        let entry = self.existing(group);
        if let Some(entry) = &entry {
            let mut state = entry.state.lock().await;
            self.settle(entry, &mut state, false);
            if !state.members.is_empty() {
                return Err(GroupError::GroupNotEmpty {
                    group: group.clone(),
                    members: state.members.len(),
                    what: "deleting removes",
                });
            }
        }
        // With the lock released: a remote store's round trip holds up no one. A member
        // joining meanwhile starts from `auto_offset_reset`, as after any deletion.
        let had_offsets = self.offsets.delete_offsets(group).await?;
        if let Some(entry) = &entry {
            let state = entry.state.lock().await;
            let mut groups = self.groups();
            if state.members.is_empty()
                && groups
                    .get(group)
                    .is_some_and(|current| Arc::ptr_eq(current, entry))
            {
                groups.remove(group);
            }
        }
        if !had_offsets && entry.is_none() {
            return Err(GroupError::GroupNotFound(group.clone()));
        }
        Ok(())
    }
}
