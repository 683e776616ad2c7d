//! The worker's state in the region's Redis: the lease, the position per partition, the "sent"
//! markers and the dead letters.
//!
//! # Keys (under the prefix, `herald:push:` by default)
//! - `lease:<region>`: the holder's id, with a TTL; taken with `SET NX`, renewed by its holder.
//! - `pos:<region>:<epoch>`: a hash, partition → the offset of the next record to handle. The
//!   bus's epoch is in the key, so a recreated topic starts afresh instead of at stale offsets.
//!   Written only by the lease holder (checked in the same script).
//! - `sent:<record id>:<platform>:<token>`: "this notification was accepted", with a TTL.
//! - `dead`: a stream of notifications given up on (trimmed to about `dead_letter_max`).

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::time::Duration;

use herald_core::{Epoch, MessageId, RegionName};

/// What can go wrong with the worker's state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis cannot be reached or refused the command.
    #[error("push state in Redis unavailable: {0}")]
    Unavailable(String),
    /// Another worker holds the lease now: this one must stop.
    #[error("the push lease is held by another worker")]
    LeaseLost,
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// A connection manager for `url` with `login` (`[presence]`'s TLS and ACL settings apply),
/// connecting lazily and reconnecting by itself.
pub fn connect(url: &str, login: &herald_presence_redis::RedisLogin) -> Result<ConnectionManager, String> {
    let client = herald_presence_redis::client(url, login).map_err(|e| e.to_string())?;
    herald_presence_redis::lazy_manager(client, Duration::from_secs(3)).map_err(|e| e.to_string())
}

/// One notification given up on.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// The record's id.
    pub record: String,
    /// `account/channel`.
    pub channel: String,
    /// `platform:token`.
    pub device: String,
    /// The user.
    pub user: String,
    /// A short reason (`retries_exhausted`, `refused`, …).
    pub reason: String,
    /// What the service said.
    pub detail: String,
    /// Attempts made.
    pub attempts: u32,
}

const TAKE: &str = r#"
local h = redis.call('GET', KEYS[1])
if h == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not h then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

const SAVE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"#;

/// The worker's state for one region's bus.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    lease_key: String,
    positions_key: String,
    dead_max: u64,
}

impl RedisStore {
    /// State under `prefix` for `region`'s bus at `epoch`; dead letters trimmed to `dead_max`.
    pub fn new(conn: ConnectionManager, prefix: &str, region: &RegionName, epoch: &Epoch, dead_max: u64) -> Self {
        Self {
            conn,
            lease_key: format!("{prefix}lease:{region}"),
            positions_key: format!("{prefix}pos:{region}:{epoch}"),
            prefix: prefix.to_owned(),
            dead_max,
        }
    }

    /// Takes the lease for `holder`, or renews it if `holder` has it. True when held.
    pub async fn hold_lease(&self, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let held: i64 = Script::new(TAKE).key(&self.lease_key).arg(holder).arg(ttl.as_millis() as u64).invoke_async(&mut self.conn.clone()).await?;
        Ok(held == 1)
    }

    /// Gives the lease up (if `holder` has it), so that a standby takes over at once.
    pub async fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        let _: i64 = Script::new(RELEASE).key(&self.lease_key).arg(holder).invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Where `partition` was left: the offset of the next record to handle.
    pub async fn position(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        let v: Option<u64> = self.conn.clone().hget(&self.positions_key, partition).await?;
        Ok(v)
    }

    /// Stores `partition`'s position, if `holder` still holds the lease.
    pub async fn save_position(&self, holder: &str, partition: u32, next: u64) -> Result<(), StoreError> {
        let saved: i64 = Script::new(SAVE).key(&self.lease_key).key(&self.positions_key).arg(holder).arg(partition).arg(next).invoke_async(&mut self.conn.clone()).await?;
        if saved == 1 { Ok(()) } else { Err(StoreError::LeaseLost) }
    }

    fn sent_key(&self, record: &MessageId, device: &str) -> String {
        format!("{}sent:{record}:{device}", self.prefix)
    }

    /// For each device (`platform:token`), whether `record`'s notification was already accepted.
    pub async fn sent(&self, record: &MessageId, devices: &[String]) -> Result<Vec<bool>, StoreError> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = devices.iter().map(|d| self.sent_key(record, d)).collect();
        let v: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut self.conn.clone()).await?;
        Ok(v.into_iter().map(|x| x.is_some()).collect())
    }

    /// Notes that `record`'s notification to `device` was accepted, for `ttl`.
    pub async fn mark_sent(&self, record: &MessageId, device: &str, ttl: Duration) -> Result<(), StoreError> {
        let _: () = self.conn.clone().set_ex(self.sent_key(record, device), 1, ttl.as_secs().max(1)).await?;
        Ok(())
    }

    /// Appends a dead letter to the `dead` stream.
    pub async fn dead_letter(&self, d: &DeadLetter) -> Result<(), StoreError> {
        let attempts = d.attempts.to_string();
        let fields = [
            ("record", d.record.as_str()),
            ("channel", &d.channel),
            ("device", &d.device),
            ("user", &d.user),
            ("reason", &d.reason),
            ("detail", &d.detail),
            ("attempts", &attempts),
        ];
        let _: String = redis::cmd("XADD")
            .arg(format!("{}dead", self.prefix))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.dead_max)
            .arg("*")
            .arg(&fields[..])
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The newest dead letters, newest first, as field maps (for `herald push --dead-letters`
    /// and tests).
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<std::collections::HashMap<String, String>>, StoreError> {
        let entries: Vec<(String, Vec<String>)> =
            redis::cmd("XREVRANGE").arg(format!("{}dead", self.prefix)).arg("+").arg("-").arg("COUNT").arg(count).query_async(&mut self.conn.clone()).await?;
        Ok(entries.into_iter().map(|(_, fields)| fields.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect()).collect())
    }
}
