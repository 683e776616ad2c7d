//! The presence link: mirrors another region's presence store into this region's, so that
//! `presence` in any region answers for the whole world.
//!
//! Members of region S's edge `n` appear here as members of node `S/n`. The link subscribes to
//! S's join/leave events, then reads S's whole store and makes each `S/n` here hold exactly
//! those members (joins and leaves for the differences, so local subscribers see them); events
//! apply as they come, and the full comparison repeats every 30 s to repair any event missed.
//! This region's presence heartbeats the mirrored nodes while the link is up; when S or the link
//! goes away the link stops that, and S's members leave here within this region's presence TTL
//! (x 4/3). Entries S itself mirrors from other regions (nodes with a `/`) are never copied on:
//! with 3 regions each mirrors the other two directly, without loops.
//!
//! Staleness: a join or leave in S shows here after one Redis pub/sub hop between regions
//! (milliseconds plus the network); a missed event is repaired within 30 s; a dead region's
//! members are gone within the TTL.

use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_core::{ChannelKey, Presence, PresenceChange, PresenceError, PresenceMember, RegionName};
use herald_presence_redis::{RedisPresence, RemoteStore};

/// One presence link: region `source`'s store into `target`.
pub struct PresenceLink {
    /// The other region.
    pub source: RegionName,
    /// Its store.
    pub store: RemoteStore,
    /// This region's store.
    pub target: Arc<RedisPresence>,
}

const RESYNC: Duration = Duration::from_secs(30);

/// Runs until `stop`, reconnecting after errors.
pub async fn run(link: PresenceLink, stop: CancellationToken) {
    let mut held: BTreeSet<String> = BTreeSet::new();
    let mut delay = Duration::from_millis(200);
    while !stop.is_cancelled() {
        match session(&link, &mut held, &stop).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(source = %link.source, error = %e, "presence link interrupted; the other region's members expire here unless it comes back"),
        }
        // Stop vouching for the other region's nodes: they expire unless the link comes back.
        for node in &held {
            link.target.forget_node(node);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

fn local_name(source: &RegionName, node: &str) -> String {
    format!("{source}/{node}")
}

/// Makes this region's copy of `source` equal to its current store.
async fn full_sync(link: &PresenceLink, held: &mut BTreeSet<String>) -> Result<(), PresenceError> {
    let mut by_node: BTreeMap<String, Vec<(ChannelKey, PresenceMember)>> = BTreeMap::new();
    for e in link.store.snapshot().await? {
        by_node.entry(local_name(&link.source, &e.node)).or_default().push((e.channel, e.member));
    }
    for node in held.iter().filter(|n| !by_node.contains_key(*n)) {
        link.target.node_gone(node).await?;
    }
    for (node, members) in &by_node {
        link.target.sync_node(node, members.clone()).await?;
    }
    *held = by_node.into_keys().collect();
    Ok(())
}

async fn session(link: &PresenceLink, held: &mut BTreeSet<String>, stop: &CancellationToken) -> Result<(), PresenceError> {
    // Subscribe first, then read: a change between the two is applied twice, never missed.
    let mut changes = Box::pin(link.store.changes().await?);
    full_sync(link, held).await?;
    tracing::info!(source = %link.source, nodes = held.len(), "presence link in sync");
    let mut resync = tokio::time::interval(RESYNC);
    resync.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = resync.tick() => full_sync(link, held).await?,
            c = changes.next() => match c {
                Some((change, e)) => {
                    let node = local_name(&link.source, &e.node);
                    match change {
                        PresenceChange::Join => {
                            held.insert(node.clone());
                            link.target.join(&node, &e.channel, e.member).await?
                        }
                        PresenceChange::Leave => link.target.leave(&node, &e.channel, &e.member.connection_id).await?,
                    }
                }
                None => return Err(PresenceError::Unavailable(format!("lost the event stream of region {}", link.source))),
            },
        }
    }
}
