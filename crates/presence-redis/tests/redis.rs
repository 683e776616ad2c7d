//! Presence and orders against a real `redis-server` started by each test.

use std::sync::Arc;
use std::time::Duration;

use herald_core::testing::presence_conformance::{next_event, next_leaves};
use herald_core::{ChannelKey, Connection, Order, Orders, Presence, PresenceChange, PresenceMember, RevokeTarget};
use herald_presence_redis::testing::RedisServer;
use herald_presence_redis::{RedisOrders, RedisPresence, RedisPresenceOptions};

const PATIENCE: Duration = Duration::from_secs(30);

fn key(s: &str) -> ChannelKey {
    ChannelKey::parse(s).unwrap()
}

fn member(c: &str, u: &str) -> PresenceMember {
    PresenceMember { connection_id: c.into(), user: u.into(), info: None }
}

fn opts(url: &str, ttl_ms: u64) -> RedisPresenceOptions {
    RedisPresenceOptions { ttl: Duration::from_millis(ttl_ms), ..RedisPresenceOptions::new(url) }
}

/// Polls `snapshot` until `check` holds.
async fn eventually_occupancy(p: &RedisPresence, ch: &ChannelKey, want: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(s) = p.snapshot(ch, 1000).await
            && s.occupancy == want {
                return;
            }
        assert!(tokio::time::Instant::now() < deadline, "occupancy of {ch} never became {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_presence_passes_the_presence_conformance_suite() {
    let redis = RedisServer::start();
    let p = RedisPresence::start(opts(&redis.url(), 15_000), "n0").await.unwrap();
    herald_core::testing::presence_conformance::run_all(Arc::new(p)).await;
}

#[tokio::test]
async fn joins_and_leaves_reach_every_edge_node() {
    let redis = RedisServer::start();
    let a = RedisPresence::start(opts(&redis.url(), 15_000), "edge-a").await.unwrap();
    let b = RedisPresence::start(opts(&redis.url(), 15_000), "edge-b").await.unwrap();
    let ch = key("acme/room");
    let mut seen_on_b = b.events();
    a.join("edge-a", &ch, member("ca", "alice")).await.unwrap();
    let e = next_event(&mut seen_on_b, &ch).await;
    assert_eq!((e.change, e.member), (PresenceChange::Join, member("ca", "alice")));
    b.join("edge-b", &ch, member("cb", "bob")).await.unwrap();
    let s = a.snapshot(&ch, 10).await.unwrap();
    assert_eq!(s.occupancy, 2);
    let mut users: Vec<_> = s.members.iter().map(|m| m.user.as_str()).collect();
    users.sort();
    assert_eq!(users, ["alice", "bob"]);
    a.leave("edge-a", &ch, "ca").await.unwrap();
    let e = next_event(&mut seen_on_b, &ch).await;
    assert_eq!(e.member, member("cb", "bob"), "b's own join comes first");
    let e = next_event(&mut seen_on_b, &ch).await;
    assert_eq!((e.change, e.member.connection_id.as_str()), (PresenceChange::Leave, "ca"));
    assert_eq!(b.snapshot(&ch, 10).await.unwrap().members, vec![member("cb", "bob")]);
}

#[tokio::test]
async fn a_dead_edges_members_leave_after_its_ttl() {
    let redis = RedisServer::start();
    let dying = RedisPresence::start(opts(&redis.url(), 900), "dying").await.unwrap();
    let survivor = RedisPresence::start(opts(&redis.url(), 900), "survivor").await.unwrap();
    let ch = key("acme/lobby");
    dying.join("dying", &ch, member("d1", "u1")).await.unwrap();
    dying.join("dying", &ch, member("d2", "u2")).await.unwrap();
    survivor.join("survivor", &ch, member("s1", "u3")).await.unwrap();
    let mut rx = survivor.events();
    // The dying node stops heartbeating without saying goodbye, as a crash would.
    dying.abandon();
    drop(dying);
    // The joins above may still be on their way through pub/sub: wait for the two leaves.
    let left = next_leaves(&mut rx, &ch, 2).await;
    assert!(left.iter().all(|e| e.change == PresenceChange::Leave));
    assert_eq!([left[0].member.connection_id.as_str(), left[1].member.connection_id.as_str()], ["d1", "d2"]);
    assert_eq!(survivor.snapshot(&ch, 10).await.unwrap().members, vec![member("s1", "u3")]);
}

#[tokio::test]
async fn presence_is_rebuilt_from_the_edges_after_redis_restarts() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = RedisPresence::start(opts(&url, 900), "edge-a").await.unwrap();
    let b = RedisPresence::start(opts(&url, 900), "edge-b").await.unwrap();
    let ch = key("acme/stage");
    a.join("edge-a", &ch, member("a1", "u1")).await.unwrap();
    a.join("edge-a", &ch, member("a2", "u2")).await.unwrap();
    b.join("edge-b", &ch, member("b1", "u3")).await.unwrap();

    let port = redis.stop();
    // While Redis is down, writes fail clearly and are remembered.
    assert!(a.join("edge-a", &ch, member("a3", "u4")).await.is_err());
    assert!(a.leave("edge-a", &ch, "a2").await.is_err());
    let _redis = RedisServer::start_on(port);

    // Both edges write their members back: a1, a3 (joined while down) and b1; not a2.
    eventually_occupancy(&b, &ch, 3).await;
    let mut ids: Vec<_> = b.snapshot(&ch, 10).await.unwrap().members.into_iter().map(|m| m.connection_id).collect();
    ids.sort();
    assert_eq!(ids, ["a1", "a3", "b1"]);
    // And events flow again across nodes.
    let mut rx = b.events();
    a.leave("edge-a", &ch, "a1").await.unwrap();
    let e = next_event(&mut rx, &ch).await;
    assert_eq!((e.change, e.member.connection_id.as_str()), (PresenceChange::Leave, "a1"));
}

#[tokio::test]
async fn redis_orders_pass_the_orders_conformance_suite_across_two_edges() {
    let redis = RedisServer::start();
    let a = RedisOrders::start(&opts(&redis.url(), 15_000)).await.unwrap();
    let b = RedisOrders::start(&opts(&redis.url(), 15_000)).await.unwrap();
    herald_core::orders::conformance::run_all(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test]
async fn an_edge_starting_later_is_sent_the_revocations_still_standing() {
    use herald_core::orders::conformance::{next_order, revocation};
    let redis = RedisServer::start();
    let first = RedisOrders::start(&opts(&redis.url(), 15_000)).await.unwrap();
    let standing = revocation("late", RevokeTarget::User("alice".into()), 600_000);
    first.issue(Order::Revoke(standing.clone())).await.unwrap();
    let later = RedisOrders::start(&opts(&redis.url(), 15_000)).await.unwrap();
    assert_eq!(later.revocations().await.unwrap(), vec![standing.clone()]);
    // After a reconnection (Redis drops every client), the reader sends it again.
    let mut rx = later.watch();
    let mut admin = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").arg("SKIPME").arg("yes").query_async(&mut admin).await.unwrap();
    assert_eq!(next_order(&mut rx, "late").await, Order::Revoke(standing));
}

#[tokio::test]
async fn a_users_connections_are_found_on_every_edge() {
    let redis = RedisServer::start();
    let a = RedisPresence::start(opts(&redis.url(), 15_000), "edge-a").await.unwrap();
    let b = RedisPresence::start(opts(&redis.url(), 15_000), "edge-b").await.unwrap();
    let acme = herald_core::AccountId::new("acme").unwrap();
    let conn = |id: &str| Connection { connection_id: id.into(), account: acme.clone(), user: "alice".into(), transport: "websocket".into(), opened_at_ms: 5 };
    a.connect("edge-a", conn("ka")).await.unwrap();
    b.connect("edge-b", conn("kb")).await.unwrap();
    let nodes: Vec<_> = b.user_connections(&acme, "alice").await.unwrap().into_iter().map(|c| (c.node, c.connection.connection_id)).collect();
    assert_eq!(nodes, [("edge-a".to_string(), "ka".to_string()), ("edge-b".to_string(), "kb".to_string())]);
}

#[tokio::test]
async fn members_stored_before_user_info_existed_still_read_and_leave() {
    let redis = RedisServer::start();
    let p = RedisPresence::start(opts(&redis.url(), 15_000), "n1").await.unwrap();
    let ch = key("acme/old");
    let mut admin = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    // The value an older edge wrote: no "i".
    let _: () = redis::cmd("HSET").arg("herald:presence:ch:acme/old").arg("c-old").arg(r#"{"u":"ann","n":"n1"}"#).query_async(&mut admin).await.unwrap();
    let s = p.snapshot(&ch, 10).await.unwrap();
    assert_eq!(s.members, vec![member("c-old", "ann")]);
    let mut rx = p.events();
    p.leave("n1", &ch, "c-old").await.unwrap();
    let e = next_event(&mut rx, &ch).await;
    assert_eq!((e.change, e.member), (PresenceChange::Leave, member("c-old", "ann")));
}
