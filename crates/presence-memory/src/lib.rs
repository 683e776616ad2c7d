//! In-memory [`Presence`] and [`Orders`](herald_core::Orders) for one process (`herald dev` and
//! tests).
//!
//! # Layout
//! - `lib.rs`: [`MemoryPresence`]: a map `channel → connection id → (node, member)` and a map
//!   `node → connection id → connection` behind one mutex, and a broadcast channel for join/leave
//!   events. Nothing expires by time: in one process the edge always tells us when a connection
//!   goes.
//! - `orders.rs`: [`MemoryOrders`]: a broadcast channel of orders and the standing revocations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod orders;

pub use orders::MemoryOrders;

use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::broadcast;

use herald_core::{AccountId, ChannelKey, Connection, FeedEvent, NODE_GONE, Presence, PresenceChange, PresenceError, PresenceEvent, PresenceFeed, PresenceMember, PresenceSnapshot, UserConnection};
use std::sync::Arc;

/// A channel's members: connection id → (node, member).
type Members = BTreeMap<String, (String, PresenceMember)>;

/// In-memory presence.
pub struct MemoryPresence {
    channels: Mutex<HashMap<ChannelKey, Members>>,
    /// Open connections by node, by id.
    connections: Mutex<HashMap<String, BTreeMap<String, Connection>>>,
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
        Self { channels: Mutex::new(HashMap::new()), connections: Mutex::new(HashMap::new()), events: broadcast::channel(4096).0, feed: parking_lot::RwLock::new(None) }
    }

    fn emit(&self, node: &str, channel: &ChannelKey, change: PresenceChange, member: PresenceMember, occupancy: usize) {
        let event = PresenceEvent { channel: channel.clone(), change, member };
        if let Some(feed) = &*self.feed.read() {
            feed.publish(node, &FeedEvent::Presence { event: event.clone(), occupancy: occupancy as u64 });
        }
        // No receivers is fine: nobody asked for events.
        let _ = self.events.send(event);
    }

    fn to_feed(&self, node: &str, event: FeedEvent) {
        if let Some(feed) = &*self.feed.read() {
            feed.publish(node, &event);
        }
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
        let occupancy = members.len();
        self.emit(node, channel, PresenceChange::Join, member, occupancy);
        Ok(())
    }

    async fn leave(&self, _node: &str, channel: &ChannelKey, connection_id: &str) -> Result<(), PresenceError> {
        let mut chans = self.channels.lock();
        let Some(members) = chans.get_mut(channel) else { return Ok(()) };
        if let Some((owner, m)) = members.remove(connection_id) {
            let occupancy = members.len();
            if members.is_empty() {
                chans.remove(channel);
            }
            self.emit(&owner, channel, PresenceChange::Leave, m, occupancy);
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
        // Each leave with the occupancy right after it: the members still there, plus those of
        // this channel whose leave comes later in `gone`.
        for (i, (ch, m)) in gone.iter().enumerate() {
            let later = gone[i + 1..].iter().filter(|(c, _)| c == ch).count();
            let occupancy = chans.get(ch).map_or(0, |m| m.len()) + later;
            self.emit(node, ch, PresenceChange::Leave, m.clone(), occupancy);
        }
        drop(chans);
        let closed = self.connections.lock().remove(node).unwrap_or_default();
        for connection in closed.into_values() {
            self.to_feed(node, FeedEvent::ConnectionClosed { connection, reason: NODE_GONE.into() });
        }
        Ok(())
    }

    async fn heartbeat(&self, _node: &str) -> Result<(), PresenceError> {
        Ok(())
    }

    async fn connect(&self, node: &str, connection: Connection) -> Result<(), PresenceError> {
        let mut conns = self.connections.lock();
        let open = conns.entry(node.to_owned()).or_default();
        if !open.contains_key(&connection.connection_id) {
            open.insert(connection.connection_id.clone(), connection.clone());
            self.to_feed(node, FeedEvent::ConnectionOpened(connection));
        }
        Ok(())
    }

    async fn disconnect(&self, node: &str, connection_id: &str, reason: &str) -> Result<(), PresenceError> {
        let mut conns = self.connections.lock();
        let Some(open) = conns.get_mut(node) else { return Ok(()) };
        if let Some(connection) = open.remove(connection_id) {
            if open.is_empty() {
                conns.remove(node);
            }
            self.to_feed(node, FeedEvent::ConnectionClosed { connection, reason: reason.into() });
        }
        Ok(())
    }

    async fn user_connections(&self, account: &AccountId, user: &str) -> Result<Vec<UserConnection>, PresenceError> {
        let conns = self.connections.lock();
        let mut out: Vec<UserConnection> = conns
            .iter()
            .flat_map(|(node, open)| open.values().filter(|c| c.account == *account && c.user == user).map(|c| UserConnection { node: node.clone(), connection: c.clone() }))
            .collect();
        out.sort_by(|a, b| a.connection.connection_id.cmp(&b.connection.connection_id));
        Ok(out)
    }

    fn report(&self, node: &str, event: FeedEvent) {
        self.to_feed(node, event);
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
