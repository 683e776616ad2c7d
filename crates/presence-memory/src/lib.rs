//! In-memory [`Presence`] for one process (`herald dev` and tests).
//!
//! # Layout
//! A map `channel → connection id → (node, member)` behind a mutex, and a broadcast channel for
//! join/leave events. Nothing expires by time: in one process the edge always tells us when a
//! connection goes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::broadcast;

use herald_core::{ChannelKey, Presence, PresenceChange, PresenceError, PresenceEvent, PresenceFeed, PresenceMember, PresenceSnapshot};
use std::sync::Arc;

/// In-memory presence.
pub struct MemoryPresence {
    channels: Mutex<HashMap<ChannelKey, BTreeMap<String, (String, PresenceMember)>>>,
    events: broadcast::Sender<PresenceEvent>,
    feed: parking_lot::RwLock<Option<Arc<dyn PresenceFeed>>>,
}

impl Default for MemoryPresence {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryPresence {
    /// Empty presence; the event channel buffers 4096 events per receiver.
    pub fn new() -> Self {
        Self { channels: Mutex::new(HashMap::new()), events: broadcast::channel(4096).0, feed: parking_lot::RwLock::new(None) }
    }

    fn emit(&self, node: &str, channel: &ChannelKey, change: PresenceChange, member: PresenceMember) {
        let event = PresenceEvent { channel: channel.clone(), change, member };
        if let Some(feed) = &*self.feed.read() {
            feed.publish(node, &event);
        }
        // No receivers is fine: nobody asked for events.
        let _ = self.events.send(event);
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn join(&self, node: &str, channel: &ChannelKey, member: PresenceMember) -> Result<(), PresenceError> {
        let mut chans = self.channels.lock();
        let members = chans.entry(channel.clone()).or_default();
        if members.contains_key(&member.connection_id) {
            return Ok(());
        }
        members.insert(member.connection_id.clone(), (node.to_owned(), member.clone()));
        self.emit(node, channel, PresenceChange::Join, member);
        Ok(())
    }

    async fn leave(&self, _node: &str, channel: &ChannelKey, connection_id: &str) -> Result<(), PresenceError> {
        let mut chans = self.channels.lock();
        let Some(members) = chans.get_mut(channel) else { return Ok(()) };
        if let Some((owner, m)) = members.remove(connection_id) {
            if members.is_empty() {
                chans.remove(channel);
            }
            self.emit(&owner, channel, PresenceChange::Leave, m);
        }
        Ok(())
    }

    async fn snapshot(&self, channel: &ChannelKey, limit: usize) -> Result<PresenceSnapshot, PresenceError> {
        let chans = self.channels.lock();
        Ok(match chans.get(channel) {
            None => PresenceSnapshot::default(),
            Some(m) => PresenceSnapshot {
                occupancy: m.len() as u64,
                members: m.values().take(limit).map(|(_, m)| m.clone()).collect(),
            },
        })
    }

    async fn node_gone(&self, node: &str) -> Result<(), PresenceError> {
        let mut chans = self.channels.lock();
        let mut gone = Vec::new();
        chans.retain(|ch, members| {
            members.retain(|_, (n, m)| {
                if n == node {
                    gone.push((ch.clone(), m.clone()));
                    false
                } else {
                    true
                }
            });
            !members.is_empty()
        });
        for (ch, m) in gone {
            self.emit(node, &ch, PresenceChange::Leave, m);
        }
        Ok(())
    }

    async fn heartbeat(&self, _node: &str) -> Result<(), PresenceError> {
        Ok(())
    }

    fn set_feed(&self, feed: Arc<dyn PresenceFeed>) {
        *self.feed.write() = Some(feed);
    }

    fn events(&self) -> broadcast::Receiver<PresenceEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_presence_passes_the_presence_conformance_suite() {
        herald_core::testing::presence_conformance::run_all(Arc::new(MemoryPresence::new())).await;
    }
}
