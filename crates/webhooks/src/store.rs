//! What `herald webhooks` keeps in the region's Redis (under the presence prefix): the lease that
//! makes one instance the active one, and each endpoint's position in the feed topic.
//!
//! - `webhooks:lease`: the active instance's id, with a TTL it renews every third of it.
//! - `webhooks:pos:<endpoint>`: a hash, partition → the next offset to deliver. Written only
//!   after the endpoint answered 2xx for everything before it, and only by the lease holder (the
//!   script checks the lease in the same step), so an instance that lost its lease cannot move a
//!   position.

use redis::Script;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::time::Duration;

/// Redis could not be reached, or refused.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct StoreError(#[from] redis::RedisError);

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// `ARGV[1]` the holder, then partition/offset pairs.
const SAVE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1
"#;

/// The lease and the positions, for one instance (`holder`, a random id).
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    prefix: String,
    holder: String,
}

impl Store {
    /// Keys under `prefix` (the region's presence prefix), as instance `holder`.
    pub fn new(conn: ConnectionManager, prefix: &str, holder: String) -> Self {
        Self { conn, prefix: prefix.to_owned(), holder }
    }

    fn lease_key(&self) -> String {
        format!("{}webhooks:lease", self.prefix)
    }

    fn positions_key(&self, endpoint: &str) -> String {
        format!("{}webhooks:pos:{endpoint}", self.prefix)
    }

    /// Takes the lease if nobody holds it. `true` when this instance holds it now.
    pub async fn try_acquire(&self, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET").arg(self.lease_key()).arg(&self.holder).arg("NX").arg("PX").arg(ttl.as_millis() as u64).query_async(&mut conn).await?;
        Ok(set.is_some())
    }

    /// Extends the lease. `false` when this instance no longer holds it.
    pub async fn renew(&self, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let held: i64 = Script::new(RENEW).key(self.lease_key()).arg(&self.holder).arg(ttl.as_millis() as u64).invoke_async(&mut conn).await?;
        Ok(held == 1)
    }

    /// Gives the lease up (on a graceful stop), so that a standby takes over at once.
    pub async fn release(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = Script::new(RELEASE).key(self.lease_key()).arg(&self.holder).invoke_async(&mut conn).await?;
        Ok(())
    }

    /// `endpoint`'s stored positions, partition → next offset.
    pub async fn positions(&self, endpoint: &str) -> Result<HashMap<i32, i64>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: HashMap<i32, i64> = redis::cmd("HGETALL").arg(self.positions_key(endpoint)).query_async(&mut conn).await?;
        Ok(raw)
    }

    /// Stores `endpoint`'s positions, if this instance still holds the lease (`false`: it does
    /// not, and nothing was written).
    pub async fn save(&self, endpoint: &str, positions: &[(i32, i64)]) -> Result<bool, StoreError> {
        if positions.is_empty() {
            return Ok(true);
        }
        let mut conn = self.conn.clone();
        let script = Script::new(SAVE);
        let mut inv = script.key(self.lease_key());
        inv.key(self.positions_key(endpoint)).arg(&self.holder);
        for (p, o) in positions {
            inv.arg(*p).arg(*o);
        }
        let ok: i64 = inv.invoke_async(&mut conn).await?;
        Ok(ok == 1)
    }
}
