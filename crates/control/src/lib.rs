//! Herald's control plane: the one place that knows which edge nodes exist and are healthy,
//! the accounts with their keys and limits, and which nodes must drain.
//!
//! # Layout
//! - [`state`]: the replicated data and the commands that change it.
//! - [`store`]: Raft log, vote and snapshots on plain files with fsync.
//! - [`network`]: openraft's RPCs over tonic, and the channels every client opens to a member.
//! - [`tls`]: TLS (and mutual TLS) on the gRPC port and on channels, with certificates re-read
//!   when their files change.
//! - [`node`]: one control-plane node (Raft + the `Membership`, `Admin` and `Raft` services).
//! - [`error`]: why a call failed, turned into a gRPC status in one place.
//! - [`agent`]: what an edge runs to register, heartbeat, watch config and obey drains.
//!
//! The API is `proto/herald/control/v1/control.proto`; docs/control-plane.md explains it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod error;
pub mod network;
pub mod node;
pub mod state;
pub mod store;
pub mod tls;

pub use error::ControlError;

/// The generated protobuf types and gRPC stubs.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("herald.control.v1");
}

pub use node::{ControlConfig, ControlNode, MemberTls, Tokens};
