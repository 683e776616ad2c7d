//! A 3-node control plane on loopback: elections, failover without losing committed writes,
//! catching up from the log or a snapshot after a restart, and membership changes at runtime.

use herald_control::pb::admin_client::AdminClient;
use herald_control::pb::{AddMemberRequest, ListAccountsRequest, PutAccountRequest, RemoveMemberRequest, StatusRequest};
use herald_control::{ControlConfig, ControlNode};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(30);
const CLUSTER: &str = "cluster-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

type Admin = AdminClient<tonic::service::interceptor::InterceptedService<Channel, herald_control::network::Bearer>>;

struct Cluster {
    dir: PathBuf,
    addrs: BTreeMap<u64, String>,
    nodes: BTreeMap<u64, ControlNode>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(dir: &std::path::Path, id: u64, addr: &str) -> ControlConfig {
    let mut c = ControlConfig::new(id, addr, dir.join(format!("node-{id}")));
    c.raft_heartbeat = Duration::from_millis(100);
    // Members authenticate to each other, operators to the admin service.
    c.tokens = herald_control::Tokens { cluster: Some(CLUSTER.into()), edge: Some("edge-token-0123456789".into()), admin: Some(ADMIN.into()) };
    c.snapshot_every = 5;
    c
}

impl Cluster {
    /// `n` nodes, initialized as one cluster.
    async fn start(n: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-control-{:08x}", rand::random::<u32>()));
        let mut c = Cluster { dir, addrs: BTreeMap::new(), nodes: BTreeMap::new() };
        for id in 1..=n {
            c.spawn(id, None).await;
        }
        c.nodes[&1].initialize(c.addrs.clone()).await.unwrap();
        c
    }

    /// Starts node `id` (on its old address when it has one).
    async fn spawn(&mut self, id: u64, addr: Option<String>) {
        let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:0")).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let node = ControlNode::start(config(&self.dir, id, &addr), listener).await.unwrap();
        self.addrs.insert(id, addr);
        self.nodes.insert(id, node);
    }

    async fn admin(&self, id: u64) -> Admin {
        self.admin_as(id, Some(ADMIN))
    }

    fn admin_as(&self, id: u64, token: Option<&str>) -> Admin {
        AdminClient::with_interceptor(herald_control::network::channel(&self.addrs[&id], None).unwrap(), herald_control::network::Bearer(token.map(Into::into)))
    }

    /// Waits until every running node agrees on one leader; returns it.
    async fn leader(&self) -> u64 {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let leaders: Vec<Option<u64>> = self.nodes.values().map(|n| n.raft().metrics().borrow().current_leader).collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l)) && self.nodes.contains_key(l) {
                    return *l;
                }
            assert!(tokio::time::Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates account `name` through node `via`, retrying while leadership settles.
    async fn put_account(&self, via: u64, name: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let r = self.admin(via).await.put_account(PutAccountRequest { name: name.into(), limits: None }).await;
            match r {
                Ok(_) => return,
                Err(e) if e.code() == tonic::Code::Unavailable && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("put_account {name} via {via}: {e}"),
            }
        }
    }

    /// Waits until node `id` has applied accounts `names` (exactly).
    async fn wait_accounts(&self, id: u64, names: &[String]) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let have: Vec<String> = self.nodes[&id].applied().1.data.accounts.keys().cloned().collect();
            if have == names {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "node {id} has {have:?}, expected {names:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn names(range: std::ops::Range<u32>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|i| format!("acct-{i:03}")).collect();
    v.sort();
    v
}

/// An in-process leader shutdown. `kill -9` of the leader process while `herald ctl` writes are
/// in flight is the `control-leader-kill` window of `scripts/chaos.py` (docs/reliability.md):
/// every acknowledged write is checked afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_no_committed_write_is_lost() {
    let mut c = Cluster::start(3).await;
    let first = c.leader().await;
    // Without the admin token (or with the cluster's) nothing is written.
    for token in [None, Some(CLUSTER)] {
        let e = c.admin_as(first, token).put_account(PutAccountRequest { name: "intruder".into(), limits: None }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }
    // Writes through a follower are forwarded to the leader.
    let follower = *c.addrs.keys().find(|id| **id != first).unwrap();
    for i in 0..10 {
        c.put_account(follower, &format!("acct-{i:03}")).await;
    }
    c.nodes.remove(&first).unwrap().shutdown().await;
    let second = c.leader().await;
    assert_ne!(second, first);
    for id in c.nodes.keys() {
        c.wait_accounts(*id, &names(0..10)).await;
    }
    // The new leader takes writes; a linearizable read sees all of them.
    for i in 10..15 {
        c.put_account(second, &format!("acct-{i:03}")).await;
    }
    let listed = c.admin(second).await.list_accounts(ListAccountsRequest {}).await.unwrap().into_inner();
    let listed: Vec<String> = listed.accounts.into_iter().map(|a| a.name).collect();
    assert_eq!(listed, names(0..15));

    // The old leader restarts from its files and catches up (by snapshot: logs are purged
    // after every 5 entries).
    let addr = c.addrs[&first].clone();
    c.spawn(first, Some(addr)).await;
    c.wait_accounts(first, &names(0..15)).await;
    let status = c.admin(first).await.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.members.len(), 3);
    assert_eq!(status.leader, c.leader().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_and_removed_at_runtime() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    c.put_account(leader, "before").await;
    // A fourth node joins: first as a learner that catches up, then as a voter.
    c.spawn(4, None).await;
    let status = c.admin(1).await.add_member(AddMemberRequest { id: 4, address: c.addrs[&4].clone() }).await.unwrap().into_inner();
    let voters: Vec<u64> = status.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    assert_eq!(voters, [1, 2, 3, 4]);
    c.wait_accounts(4, &["before".to_string()]).await;
    // Node 2 is removed; the others keep working (a write through node 4 commits).
    let status = c.admin(4).await.remove_member(RemoveMemberRequest { id: 2 }).await.unwrap().into_inner();
    let ids: Vec<u64> = status.members.iter().map(|m| m.id).collect();
    assert!(!ids.contains(&2), "{ids:?}");
    c.nodes.remove(&2).unwrap().shutdown().await;
    c.put_account(4, "after").await;
    c.wait_accounts(3, &["after".to_string(), "before".to_string()]).await;
}
