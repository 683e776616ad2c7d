//! Two edge processes sharing presence in a real `redis-server`: members of one are seen by
//! clients of the other, and when an edge is killed its members leave within the TTL.

mod support;

use herald_client::{Client, ClientConfig};
use herald_presence_redis::testing::RedisServer;
use support::{Herald, ctl, member, next_presence, spawn};

const SECRET: &str = "presence-test-secret-0123456789";

/// An edge on its own in-memory bus: presence is all these edges share.
fn edge(redis: &RedisServer, node: &str) -> Herald {
    spawn(
        &["edge", "--listen", "127.0.0.1:0", "--bus", "memory", "--node", node],
        &[("HERALD_JWT_SECRET", SECRET), ("HERALD_PRESENCE", &redis.url()), ("HERALD_PRESENCE_TTL_SECS", "3")],
    )
}

fn client(e: &Herald, user: &str) -> Client {
    let token = support::token_for_user(SECRET, "acme", user, "*", "");
    Client::connect(ClientConfig::new(e.url.clone(), token))
}

fn users(presence: &serde_json::Value) -> Vec<String> {
    let mut u: Vec<String> = presence["members"].as_array().unwrap().iter().map(|m| m["user"].as_str().unwrap().to_owned()).collect();
    u.sort();
    u
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_edges_and_a_killed_edges_members_leave() {
    let redis = RedisServer::start();
    let a = edge(&redis, "edge-a");
    let mut b = edge(&redis, "edge-b");

    let alice = client(&a, "alice");
    let mut watch = alice.subscribe_with("room", None, true).await.unwrap();
    assert_eq!(next_presence(&mut watch).await, (true, "alice".into()), "alice sees herself join");

    let bob = client(&b, "bob");
    let _bob_sub = bob.subscribe_with("room", None, false).await.unwrap();
    assert_eq!(next_presence(&mut watch).await, (true, "bob".into()), "a member of edge B is seen on edge A");
    let here = alice.presence("room").await.unwrap();
    assert_eq!(users(&here), ["alice", "bob"]);

    // Operators see the same through the control plane.
    let data = std::env::temp_dir().join(format!("herald-presence-{:08x}", rand::random::<u32>()));
    let port = herald_presence_redis::testing::free_port();
    let _control = member(1, port, &data, Some(&format!("1=127.0.0.1:{port}")), &["--presence", &redis.url()]);
    let seen = ctl(&format!("127.0.0.1:{port}"), &["presence", "acme", "room"]);
    assert_eq!(seen["occupancy"], 2);
    assert_eq!(users(&seen), ["alice", "bob"]);

    // Edge B dies without a goodbye: bob leaves once its TTL (3 s) runs out.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    assert_eq!(next_presence(&mut watch).await, (false, "bob".into()));
    assert_eq!(users(&alice.presence("room").await.unwrap()), ["alice"]);
    let _ = std::fs::remove_dir_all(&data);
}
