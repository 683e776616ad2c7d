//! Raft storage on plain files with fsync.
//!
//! # Files (in the node's data directory)
//! - `vote.json`: the current vote, replaced atomically (write, fsync, rename, fsync dir).
//! - `log.jsonl`: one JSON line per operation: `{"a":entry}` appends, `{"t":index}` truncates
//!   from `index`, `{"p":log_id}` purges up to `log_id`. Replayed at start; a torn last line (a
//!   crash mid-write, never acknowledged because the fsync did not complete) is ignored. Rewritten
//!   compactly after a purge.
//! - `snapshot.json`: the last snapshot (metadata and the state machine), replaced atomically.
//!
//! Why plain files: the state is small (edges, accounts, keys) and changes at human speed; a
//! JSON-lines log replays in milliseconds, is readable with `jq` in an incident, and needs no
//! C++ build (RocksDB) or unmaintained crate (sled). Writes are synchronous: the control plane
//! is never on the message path.

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftLogId, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

use crate::state::{MachineState, NodeId, Reply, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
enum LogOp {
    #[serde(rename = "a")]
    Append(Entry<TypeConfig>),
    #[serde(rename = "t")]
    Truncate(u64),
    #[serde(rename = "p")]
    Purge(LogId<NodeId>),
}

struct LogInner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

/// The Raft log and vote, on files. Cheap to clone (one shared inner).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replaying `log.jsonl`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("log.jsonl");
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        if path.exists() {
            for line in BufReader::new(File::open(&path)?).lines() {
                let line = line?;
                // A torn last line is a write that was never acknowledged.
                let Ok(op) = serde_json::from_str::<LogOp>(&line) else { break };
                match op {
                    LogOp::Append(e) => {
                        entries.insert(e.log_id.index, e);
                    }
                    LogOp::Truncate(i) => {
                        entries.split_off(&i);
                    }
                    LogOp::Purge(id) => {
                        entries = entries.split_off(&(id.index + 1));
                        last_purged = Some(id);
                    }
                }
            }
        }
        let vote = match std::fs::read(dir.join("vote.json")) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(std::io::Error::other)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut inner = LogInner { dir: dir.to_owned(), file: OpenOptions::new().create(true).append(true).open(&path)?, entries, last_purged, vote };
        // Start from a compact file: drops any torn tail and replayed history.
        inner.rewrite()?;
        Ok(Self { inner: Arc::new(Mutex::new(inner)) })
    }
}

impl LogInner {
    fn write_ops(&mut self, ops: &[LogOp]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for op in ops {
            serde_json::to_writer(&mut buf, op).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }

    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut buf = Vec::new();
        if let Some(p) = self.last_purged {
            serde_json::to_writer(&mut buf, &LogOp::Purge(p)).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        for e in self.entries.values() {
            serde_json::to_writer(&mut buf, &LogOp::Append(e.clone())).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let path = self.dir.join("log.jsonl");
        write_atomic(&path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(&mut self, range: RB) -> StorageResult<Vec<Entry<TypeConfig>>> {
        Ok(self.inner.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = self.inner.lock();
        let last = inner.entries.values().next_back().map(|e| *e.get_log_id()).or(inner.last_purged);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock();
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(io_err(e)))?;
        write_atomic(&inner.dir.join("vote.json"), &bytes).map_err(|e| StorageIOError::write_vote(io_err(e)))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.inner.lock().vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock();
        let entries: Vec<_> = entries.into_iter().collect();
        let ops: Vec<LogOp> = entries.iter().cloned().map(LogOp::Append).collect();
        let result = inner.write_ops(&ops);
        if result.is_ok() {
            for e in entries {
                inner.entries.insert(e.log_id.index, e);
            }
        }
        let failed = result.as_ref().err().map(|e| std::io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(result);
        match failed {
            None => Ok(()),
            Some(e) => Err(StorageIOError::write_logs(io_err(e)).into()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock();
        inner.write_ops(&[LogOp::Truncate(log_id.index)]).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock();
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner.last_purged = Some(log_id);
        inner.rewrite().map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// What edges and operators read: the applied state, with its version (the last applied index).
pub type Published = (u64, Arc<MachineState>);

struct MachineInner {
    dir: PathBuf,
    state: MachineState,
    snapshot: Option<StoredSnapshot>,
    published: watch::Sender<Published>,
}

/// The state machine, snapshotted to `snapshot.json`. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<MachineInner>>,
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from the last snapshot if there is one.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let snapshot: Option<StoredSnapshot> = match std::fs::read(dir.join("snapshot.json")) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(std::io::Error::other)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let state = match &snapshot {
            Some(s) => serde_json::from_slice(&s.data).map_err(std::io::Error::other)?,
            None => MachineState::default(),
        };
        let version = state_version(&state);
        let (published, _) = watch::channel((version, Arc::new(state.clone())));
        Ok(Self { inner: Arc::new(Mutex::new(MachineInner { dir: dir.to_owned(), state, snapshot, published })) })
    }

    /// The applied state, now and after every change.
    pub fn watch(&self) -> watch::Receiver<Published> {
        self.inner.lock().published.subscribe()
    }

    /// The applied state now.
    pub fn current(&self) -> Published {
        self.inner.lock().published.borrow().clone()
    }
}

fn state_version(s: &MachineState) -> u64 {
    s.last_applied.map(|l| l.index).unwrap_or(0)
}

impl MachineInner {
    fn publish(&self) {
        self.published.send_replace((state_version(&self.state), Arc::new(self.state.clone())));
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let mut inner = self.inner.lock();
        let data = serde_json::to_vec(&inner.state).map_err(|e| StorageIOError::read_state_machine(io_err(e)))?;
        let last = inner.state.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: inner.state.last_membership.clone(),
            snapshot_id: format!("{}-{}", last.map(|l| l.leader_id.term).unwrap_or(0), last.map(|l| l.index).unwrap_or(0)),
        };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        let bytes = serde_json::to_vec(&stored).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        write_atomic(&inner.dir.join("snapshot.json"), &bytes).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        inner.snapshot = Some(stored);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, openraft::BasicNode>)> {
        let inner = self.inner.lock();
        Ok((inner.state.last_applied, inner.state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Reply>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock();
        let mut replies = Vec::new();
        for e in entries {
            inner.state.last_applied = Some(e.log_id);
            replies.push(match &e.payload {
                EntryPayload::Blank => Reply::Ok,
                EntryPayload::Normal(cmd) => inner.state.data.apply(cmd),
                EntryPayload::Membership(m) => {
                    inner.state.last_membership = StoredMembership::new(Some(e.log_id), m.clone());
                    Reply::Ok
                }
            });
        }
        inner.publish();
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta<NodeId, openraft::BasicNode>, snapshot: Box<Cursor<Vec<u8>>>) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let state: MachineState = serde_json::from_slice(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), io_err(e)))?;
        let stored = StoredSnapshot { meta: meta.clone(), data };
        let bytes = serde_json::to_vec(&stored).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        let mut inner = self.inner.lock();
        write_atomic(&inner.dir.join("snapshot.json"), &bytes).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        inner.state = MachineState { last_applied: meta.last_log_id, last_membership: meta.last_membership.clone(), data: state.data };
        inner.snapshot = Some(stored);
        inner.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let inner = self.inner.lock();
        Ok(inner.snapshot.as_ref().map(|s| Snapshot { meta: s.meta.clone(), snapshot: Box::new(Cursor::new(s.data.clone())) }))
    }
}
