//! The behaviour every [`Presence`] adapter must show. Call [`run_all`] with a fresh adapter.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

use crate::names::ChannelKey;
use crate::names::AccountId;
use crate::presence::{Connection, FeedEvent, NODE_GONE, Presence, PresenceChange, PresenceEvent, PresenceMember, UserInfo};

const PATIENCE: Duration = Duration::from_secs(20);

fn key(s: &str) -> ChannelKey {
    ChannelKey::parse(s).unwrap()
}

fn member(c: &str, u: &str) -> PresenceMember {
    PresenceMember { connection_id: c.into(), user: u.into(), info: None }
}

/// Waits for the next event on `channel`, skipping events of other channels.
pub async fn next_event(rx: &mut broadcast::Receiver<PresenceEvent>, channel: &ChannelKey) -> PresenceEvent {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match rx.recv().await {
                Ok(e) if &e.channel == channel => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            }
        }
    })
    .await
    .expect("an event arrives")
}

/// Records what the adapter sends to its feed.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(String, FeedEvent)>>);

impl crate::presence::PresenceFeed for Recorder {
    fn publish(&self, node: &str, event: &FeedEvent) {
        self.0.lock().unwrap().push((node.to_owned(), event.clone()));
    }
}

/// Waits for `n` leave events on `channel` (skipping joins, which adapters with asynchronous
/// event delivery may still be handing over), sorted by connection id.
pub async fn next_leaves(rx: &mut broadcast::Receiver<PresenceEvent>, channel: &ChannelKey, n: usize) -> Vec<PresenceEvent> {
    let mut left = Vec::new();
    while left.len() < n {
        let e = next_event(rx, channel).await;
        if e.change == PresenceChange::Leave {
            left.push(e);
        }
    }
    left.sort_by(|a, b| a.member.connection_id.cmp(&b.member.connection_id));
    left
}

/// Runs every check. Each uses its own channel names.
pub async fn run_all(p: Arc<dyn Presence>) {
    the_feed_gets_every_change_once_with_its_node(p.clone()).await;
    connections_open_and_close_once_and_a_dead_nodes_close_after_its_leaves(p.clone()).await;
    join_and_leave_show_in_snapshots_and_events(p.clone()).await;
    joining_twice_or_leaving_when_absent_changes_nothing(p.clone()).await;
    a_dead_nodes_members_leave(p.clone()).await;
    snapshots_count_everyone_but_list_at_most_the_limit(p.clone()).await;
    accounts_do_not_share_presence(p.clone()).await;
    a_users_connections_are_listed_across_nodes(p.clone()).await;
    a_members_info_shows_in_its_join_snapshot_leave_and_feed(p.clone()).await;
}

/// A join appears in snapshots and as an event; so does the leave.
pub async fn join_and_leave_show_in_snapshots_and_events(p: Arc<dyn Presence>) {
    let ch = key("pconf/a");
    let mut rx = p.events();
    p.join("n1", &ch, member("c1", "u1")).await.unwrap();
    let e = next_event(&mut rx, &ch).await;
    assert_eq!((e.change, e.member.clone()), (PresenceChange::Join, member("c1", "u1")));
    let s = p.snapshot(&ch, 100).await.unwrap();
    assert_eq!(s.occupancy, 1);
    assert_eq!(s.members, vec![member("c1", "u1")]);
    p.leave("n1", &ch, "c1").await.unwrap();
    let e = next_event(&mut rx, &ch).await;
    assert_eq!((e.change, e.member.connection_id.as_str()), (PresenceChange::Leave, "c1"));
    assert_eq!(p.snapshot(&ch, 100).await.unwrap().occupancy, 0);
}

/// The info a member joined with comes back with it: in the join event, snapshots, the leave
/// event and the feed's events; a member without info stays without.
pub async fn a_members_info_shows_in_its_join_snapshot_leave_and_feed(p: Arc<dyn Presence>) {
    let ch = key("pconf/info");
    let recorder = Arc::new(Recorder::default());
    p.set_feed(recorder.clone());
    let mut rx = p.events();
    let info = UserInfo::parse(r#"{"name":"Ann Lee","role":"responder","teams":["sre",7]}"#).unwrap();
    let ann = PresenceMember { info: Some(info.clone()), ..member("i1", "ann") };
    p.join("n1", &ch, ann.clone()).await.unwrap();
    p.join("n1", &ch, member("i2", "bob")).await.unwrap();
    assert_eq!(next_event(&mut rx, &ch).await.member, ann);
    assert_eq!(next_event(&mut rx, &ch).await.member, member("i2", "bob"));
    let mut s = p.snapshot(&ch, 10).await.unwrap().members;
    s.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
    assert_eq!(s, vec![ann.clone(), member("i2", "bob")]);
    p.leave("n1", &ch, "i1").await.unwrap();
    let e = next_event(&mut rx, &ch).await;
    assert_eq!((e.change, e.member), (PresenceChange::Leave, ann.clone()));
    p.leave("n1", &ch, "i2").await.unwrap();
    next_event(&mut rx, &ch).await;
    let fed: Vec<PresenceMember> = recorder
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, e)| match e {
            FeedEvent::Presence { event, .. } if event.channel == ch && event.member.user == "ann" => Some(event.member.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(fed, vec![ann.clone(), ann], "the feed's join and leave carry the info");
}

/// Idempotent joins and leaves emit no extra events.
pub async fn joining_twice_or_leaving_when_absent_changes_nothing(p: Arc<dyn Presence>) {
    let ch = key("pconf/b");
    let mut rx = p.events();
    p.leave("n1", &ch, "nobody").await.unwrap();
    p.join("n1", &ch, member("c1", "u1")).await.unwrap();
    p.join("n1", &ch, member("c1", "u1")).await.unwrap();
    p.join("n1", &ch, member("c2", "u2")).await.unwrap();
    // The events, in order: join c1, join c2 (no second c1, no leave of "nobody").
    assert_eq!(next_event(&mut rx, &ch).await.member.connection_id, "c1");
    let e = next_event(&mut rx, &ch).await;
    assert_eq!((e.change, e.member.connection_id.as_str()), (PresenceChange::Join, "c2"));
    assert_eq!(p.snapshot(&ch, 100).await.unwrap().occupancy, 2);
    p.leave("n1", &ch, "c1").await.unwrap();
    p.leave("n1", &ch, "c2").await.unwrap();
}

/// `node_gone` removes exactly that node's members, each with a leave event.
pub async fn a_dead_nodes_members_leave(p: Arc<dyn Presence>) {
    let ch = key("pconf/c");
    p.join("dead", &ch, member("d1", "u1")).await.unwrap();
    p.join("dead", &ch, member("d2", "u2")).await.unwrap();
    p.join("alive", &ch, member("a1", "u3")).await.unwrap();
    let mut rx = p.events();
    p.node_gone("dead").await.unwrap();
    // Adapters with asynchronous event delivery may still be handing over the joins above.
    let left = next_leaves(&mut rx, &ch, 2).await;
    assert!(left.iter().all(|e| e.change == PresenceChange::Leave));
    assert_eq!(left[0].member.connection_id, "d1");
    assert_eq!(left[1].member.connection_id, "d2");
    let s = p.snapshot(&ch, 100).await.unwrap();
    assert_eq!(s.members, vec![member("a1", "u3")]);
    p.leave("alive", &ch, "a1").await.unwrap();
}

/// Occupancy counts every member even when the member list is limited.
pub async fn snapshots_count_everyone_but_list_at_most_the_limit(p: Arc<dyn Presence>) {
    let ch = key("pconf/d");
    for i in 0..30 {
        p.join("n1", &ch, member(&format!("c{i}"), "u")).await.unwrap();
    }
    let s = p.snapshot(&ch, 10).await.unwrap();
    assert_eq!(s.occupancy, 30);
    assert_eq!(s.members.len(), 10);
    p.node_gone("n1").await.unwrap();
    assert_eq!(p.snapshot(&ch, 10).await.unwrap().occupancy, 0);
}

/// The same channel name in two accounts is two channels.
pub async fn accounts_do_not_share_presence(p: Arc<dyn Presence>) {
    p.join("n2", &key("pconf-acme/room"), member("x1", "u")).await.unwrap();
    assert_eq!(p.snapshot(&key("pconf-beta/room"), 10).await.unwrap().occupancy, 0);
    assert_eq!(p.snapshot(&key("pconf-acme/room"), 10).await.unwrap().occupancy, 1);
    p.leave("n2", &key("pconf-acme/room"), "x1").await.unwrap();
}

/// The feed sees each change once, with the node it belongs to and the occupancy after it, and
/// nothing for no-ops.
pub async fn the_feed_gets_every_change_once_with_its_node(p: Arc<dyn Presence>) {
    let ch = key("pconf/feed");
    let rec = Arc::new(Recorder::default());
    p.set_feed(rec.clone());
    p.join("n1", &ch, member("f1", "u1")).await.unwrap();
    p.join("n1", &ch, member("f1", "u1")).await.unwrap();
    p.join("n2", &ch, member("f2", "u2")).await.unwrap();
    p.leave("n1", &ch, "f1").await.unwrap();
    p.leave("n1", &ch, "f1").await.unwrap();
    p.node_gone("n2").await.unwrap();
    let seen: Vec<(String, PresenceChange, String, u64)> = rec
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(n, e)| match e {
            FeedEvent::Presence { event, occupancy } if event.channel == ch => Some((n.clone(), event.change, event.member.connection_id.clone(), *occupancy)),
            _ => None,
        })
        .collect();
    let want = [("n1", PresenceChange::Join, "f1", 1), ("n2", PresenceChange::Join, "f2", 2), ("n1", PresenceChange::Leave, "f1", 1), ("n2", PresenceChange::Leave, "f2", 0)];
    let want: Vec<(String, PresenceChange, String, u64)> = want.iter().map(|(n, c, i, o)| (n.to_string(), *c, i.to_string(), *o)).collect();
    assert_eq!(seen, want);
}

/// A connection opens and closes once each (with its reason), repeats are no-ops, and
/// `node_gone` closes the node's remaining connections with `node_gone` after their leaves.
pub async fn connections_open_and_close_once_and_a_dead_nodes_close_after_its_leaves(p: Arc<dyn Presence>) {
    let rec = Arc::new(Recorder::default());
    p.set_feed(rec.clone());
    let acme = AccountId::new("pconf-conn").unwrap();
    let conn = |id: &str| Connection { connection_id: id.into(), account: acme.clone(), user: "u".into(), transport: "websocket".into(), opened_at_ms: 7 };
    p.connect("n3", conn("k1")).await.unwrap();
    p.connect("n3", conn("k1")).await.unwrap();
    p.disconnect("n3", "k1", "client_closed").await.unwrap();
    p.disconnect("n3", "k1", "client_closed").await.unwrap();
    p.connect("n4", conn("k2")).await.unwrap();
    let ch = key("pconf-conn/room");
    p.join("n4", &ch, member("k2", "u")).await.unwrap();
    p.node_gone("n4").await.unwrap();
    p.disconnect("n4", "k2", "client_closed").await.unwrap();
    let seen: Vec<String> = rec
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| e.account() == &acme)
        .map(|(n, e)| match e {
            FeedEvent::ConnectionOpened(c) => format!("{n} opened {}", c.connection_id),
            FeedEvent::ConnectionClosed { connection, reason } => format!("{n} closed {} {reason}", connection.connection_id),
            FeedEvent::Presence { event, .. } => format!("{n} {:?} {}", event.change, event.member.connection_id),
            FeedEvent::PublishRejected { .. } => "rejected".into(),
        })
        .collect();
    let gone = format!("n4 closed k2 {NODE_GONE}");
    assert_eq!(seen, ["n3 opened k1", "n3 closed k1 client_closed", "n4 opened k2", "n4 Join k2", "n4 Leave k2", gone.as_str()]);
}

/// `user_connections` lists a user's open connections on every node (with their node), and
/// nothing of other users, other accounts or closed connections.
pub async fn a_users_connections_are_listed_across_nodes(p: Arc<dyn Presence>) {
    let acme = AccountId::new("pconf-users").unwrap();
    let other = AccountId::new("pconf-users2").unwrap();
    let conn = |id: &str, account: &AccountId, user: &str, transport: &str| Connection {
        connection_id: id.into(),
        account: account.clone(),
        user: user.into(),
        transport: transport.into(),
        opened_at_ms: 1_000 + id.len() as u64,
    };
    p.connect("u1", conn("a-1", &acme, "alice", "websocket")).await.unwrap();
    p.connect("u2", conn("a-22", &acme, "alice", "sse")).await.unwrap();
    p.connect("u2", conn("a-333", &acme, "alice", "websocket")).await.unwrap();
    p.connect("u1", conn("b-1", &acme, "bob", "websocket")).await.unwrap();
    p.connect("u1", conn("o-1", &other, "alice", "websocket")).await.unwrap();
    p.disconnect("u2", "a-333", "client_closed").await.unwrap();
    let got = p.user_connections(&acme, "alice").await.unwrap();
    let want = vec![
        crate::presence::UserConnection { node: "u1".into(), connection: conn("a-1", &acme, "alice", "websocket") },
        crate::presence::UserConnection { node: "u2".into(), connection: conn("a-22", &acme, "alice", "sse") },
    ];
    assert_eq!(got, want);
    assert!(p.user_connections(&acme, "carol").await.unwrap().is_empty());
    // A dead node's connections are gone from the list.
    p.node_gone("u2").await.unwrap();
    assert_eq!(p.user_connections(&acme, "alice").await.unwrap(), want[..1].to_vec());
    p.node_gone("u1").await.unwrap();
    assert!(p.user_connections(&acme, "alice").await.unwrap().is_empty());
}
