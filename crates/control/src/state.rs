//! The replicated state machine's data and commands: nodes, drain orders, accounts with keys and
//! limits. Everything here is plain data, applied identically on every control-plane node.

use openraft::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Cursor;

openraft::declare_raft_types!(
    /// Herald's Raft types: commands in, replies out, nodes addressed by their gRPC address.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A control-plane node id.
pub type NodeId = u64;

/// An edge node as it registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeInfo {
    /// The edge's name.
    pub node_id: String,
    /// Its region.
    pub region: String,
    /// Where clients reach it.
    pub address: String,
    /// Connections it is sized for (0: unknown).
    pub capacity: u32,
    /// Random per process start.
    pub instance: String,
}

/// A registered edge and its orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeRecord {
    /// As registered.
    pub info: EdgeInfo,
    /// A drain order stands for this node.
    pub draining: bool,
}

/// Per-account limits; 0 means the edge's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Open connections per node.
    pub connections: u64,
    /// Records per second per node.
    pub publish_per_second: u64,
    /// Subscriptions per connection.
    pub max_subscriptions: u32,
    /// Largest record payload.
    pub max_message_bytes: u32,
}

/// A publish API key, by digest only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The first 12 hex digits of the digest.
    pub id: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
}

/// A public key verifying the account's client tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKeyRecord {
    /// The `kid` tokens name.
    pub kid: String,
    /// RS256, ES256 or EdDSA.
    pub algorithm: String,
    /// The public key, PEM.
    pub public_key_pem: String,
}

/// An account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Its publish API keys (several during a rotation).
    pub keys: Vec<KeyRecord>,
    /// Its limits.
    pub limits: Limits,
    /// Public keys for its client tokens (several during a rotation).
    #[serde(default)]
    pub token_keys: Vec<TokenKeyRecord>,
}

/// A change to the replicated state. Commands are validated by the service before they are
/// proposed; applying one never fails, it answers [`Reply::Rejected`] when it does not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// An edge node (re-)registers. The same process registering again (same `instance`, e.g.
    /// after a control-plane failover) keeps a standing drain order; a new process does not.
    RegisterEdge(EdgeInfo),
    /// An edge node left.
    DeregisterEdge {
        /// Its name.
        node_id: String,
    },
    /// An edge must drain.
    Drain {
        /// Its name.
        node_id: String,
    },
    /// Creates an account or sets its limits.
    PutAccount {
        /// The account.
        name: String,
        /// Its limits.
        limits: Limits,
    },
    /// Adds a key to an account.
    AddKey {
        /// The account.
        account: String,
        /// The key's digest.
        key: KeyRecord,
    },
    /// Adds a token verification key to an account.
    AddTokenKey {
        /// The account.
        account: String,
        /// The key.
        key: TokenKeyRecord,
    },
    /// Removes a token verification key by kid.
    RevokeTokenKey {
        /// The account.
        account: String,
        /// The key's kid.
        kid: String,
    },
    /// Removes a key from an account.
    RevokeKey {
        /// The account.
        account: String,
        /// The key's id.
        key_id: String,
    },
}

/// What applying a command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Applied.
    Ok,
    /// Not applied, and why (e.g. an unknown account).
    Rejected(String),
}

/// The replicated data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    /// Registered edges by name.
    pub edges: BTreeMap<String, EdgeRecord>,
    /// Accounts by name.
    pub accounts: BTreeMap<String, AccountRecord>,
}

impl Data {
    /// Applies one command.
    pub fn apply(&mut self, cmd: &Command) -> Reply {
        match cmd {
            Command::RegisterEdge(info) => {
                let draining = self.edges.get(&info.node_id).is_some_and(|e| e.draining && e.info.instance == info.instance);
                self.edges.insert(info.node_id.clone(), EdgeRecord { info: info.clone(), draining });
                Reply::Ok
            }
            Command::DeregisterEdge { node_id } => {
                self.edges.remove(node_id);
                Reply::Ok
            }
            Command::Drain { node_id } => match self.edges.get_mut(node_id) {
                Some(e) => {
                    e.draining = true;
                    Reply::Ok
                }
                None => Reply::Rejected(format!("no edge node named {node_id}")),
            },
            Command::PutAccount { name, limits } => {
                self.accounts.entry(name.clone()).or_default().limits = *limits;
                Reply::Ok
            }
            Command::AddKey { account, key } => match self.accounts.get_mut(account) {
                Some(a) if a.keys.iter().any(|k| k.id == key.id) => Reply::Rejected("a key with this id exists".into()),
                Some(a) => {
                    a.keys.push(key.clone());
                    Reply::Ok
                }
                None => Reply::Rejected(format!("no account named {account}")),
            },
            Command::AddTokenKey { account, key } => match self.accounts.get_mut(account) {
                Some(a) if a.token_keys.iter().any(|k| k.kid == key.kid) => Reply::Rejected(format!("account {account} has a token key with kid {}", key.kid)),
                Some(a) => {
                    a.token_keys.push(key.clone());
                    Reply::Ok
                }
                None => Reply::Rejected(format!("no account named {account}")),
            },
            Command::RevokeTokenKey { account, kid } => match self.accounts.get_mut(account) {
                Some(a) => {
                    let before = a.token_keys.len();
                    a.token_keys.retain(|k| &k.kid != kid);
                    if a.token_keys.len() == before { Reply::Rejected(format!("account {account} has no token key {kid}")) } else { Reply::Ok }
                }
                None => Reply::Rejected(format!("no account named {account}")),
            },
            Command::RevokeKey { account, key_id } => match self.accounts.get_mut(account) {
                Some(a) => {
                    let before = a.keys.len();
                    a.keys.retain(|k| &k.id != key_id);
                    if a.keys.len() == before { Reply::Rejected(format!("account {account} has no key {key_id}")) } else { Reply::Ok }
                }
                None => Reply::Rejected(format!("no account named {account}")),
            },
        }
    }
}

/// The state machine's whole state: the data plus what Raft needs to know about it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MachineState {
    /// The last log entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    pub last_membership: StoredMembership<NodeId, openraft::BasicNode>,
    /// The data.
    pub data: Data,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> KeyRecord {
        KeyRecord { id: id.into(), sha256: format!("{id}00") }
    }

    #[test]
    fn keys_rotate_and_unknown_targets_are_rejected_without_change() {
        let mut d = Data::default();
        assert!(matches!(d.apply(&Command::AddKey { account: "acme".into(), key: key("k1") }), Reply::Rejected(_)));
        assert_eq!(d, Data::default());
        assert_eq!(d.apply(&Command::PutAccount { name: "acme".into(), limits: Limits::default() }), Reply::Ok);
        assert_eq!(d.apply(&Command::AddKey { account: "acme".into(), key: key("k1") }), Reply::Ok);
        assert_eq!(d.apply(&Command::AddKey { account: "acme".into(), key: key("k2") }), Reply::Ok);
        assert!(matches!(d.apply(&Command::AddKey { account: "acme".into(), key: key("k2") }), Reply::Rejected(_)));
        assert_eq!(d.apply(&Command::RevokeKey { account: "acme".into(), key_id: "k1".into() }), Reply::Ok);
        assert_eq!(d.accounts["acme"].keys, vec![key("k2")]);
        assert!(matches!(d.apply(&Command::RevokeKey { account: "acme".into(), key_id: "k1".into() }), Reply::Rejected(_)));
    }

    #[test]
    fn a_drain_order_survives_re_registration_of_the_same_process_only() {
        let mut d = Data::default();
        let info = EdgeInfo { node_id: "e1".into(), region: "r".into(), address: "http://x".into(), capacity: 0, instance: "i1".into() };
        assert!(matches!(d.apply(&Command::Drain { node_id: "e1".into() }), Reply::Rejected(_)));
        d.apply(&Command::RegisterEdge(info.clone()));
        d.apply(&Command::Drain { node_id: "e1".into() });
        d.apply(&Command::RegisterEdge(info.clone()));
        assert!(d.edges["e1"].draining);
        // A restarted process under the same name starts without the order.
        d.apply(&Command::RegisterEdge(EdgeInfo { instance: "i2".into(), ..info }));
        assert!(!d.edges["e1"].draining);
        d.apply(&Command::DeregisterEdge { node_id: "e1".into() });
        assert!(d.edges.is_empty());
    }
}
