//! The two [`DeviceRegistry`] adapters: [`MemoryRegistry`] (one process, `herald dev`) and
//! [`RedisRegistry`] (a region; survives restarts of every Herald process).
//!
//! # Redis keys (under the prefix, `herald:push:` by default)
//! - `dev:<platform>:<token>`: the registration, as JSON.
//! - `user:<account>:<user>`: a set of the user's device keys (`<platform>:<token>`).
//! - `acct:<account>`: a sorted set (all scores 0) of the account's device keys, so that pages
//!   in key order are one `ZRANGEBYLEX`.
//!
//! Every write is one Lua script, so a device never sits in two users' sets, even when two
//! registrations of one token race.

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use herald_core::devices::{PageRequest, RegistrationPage, device_key, pattern_text};
use herald_core::{AccountId, ChannelPattern, DeviceError, DeviceRegistry, Platform, Registration};

/// Registrations in this process's memory.
#[derive(Default)]
pub struct MemoryRegistry {
    devices: Mutex<BTreeMap<String, Registration>>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl DeviceRegistry for MemoryRegistry {
    async fn register(&self, r: Registration) -> Result<(), DeviceError> {
        r.validate()?;
        self.devices.lock().insert(r.device_key(), r);
        Ok(())
    }

    async fn get(&self, platform: Platform, token: &str) -> Result<Option<Registration>, DeviceError> {
        Ok(self.devices.lock().get(&device_key(platform, token)).cloned())
    }

    async fn remove(&self, platform: Platform, token: &str) -> Result<bool, DeviceError> {
        Ok(self.devices.lock().remove(&device_key(platform, token)).is_some())
    }

    async fn remove_invalid(&self, platform: Platform, token: &str, invalid_since_ms: u64) -> Result<bool, DeviceError> {
        let mut devices = self.devices.lock();
        let key = device_key(platform, token);
        if devices.get(&key).is_some_and(|r| r.registered_at_ms <= invalid_since_ms) {
            devices.remove(&key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn list_user(&self, account: &AccountId, user: &str) -> Result<Vec<Registration>, DeviceError> {
        Ok(self.devices.lock().values().filter(|r| &r.account == account && r.user == user).cloned().collect())
    }

    async fn list_account(&self, account: &AccountId, page: PageRequest) -> Result<RegistrationPage, DeviceError> {
        let devices = self.devices.lock();
        let from = match &page.after {
            Some(after) => std::ops::Bound::Excluded(after.clone()),
            None => std::ops::Bound::Unbounded,
        };
        let mut items: Vec<Registration> =
            devices.range((from, std::ops::Bound::Unbounded)).map(|(_, r)| r).filter(|r| &r.account == account).take(page.limit.max(1) + 1).cloned().collect();
        let next = (items.len() > page.limit.max(1)).then(|| {
            items.pop();
            items.last().map(Registration::device_key).unwrap_or_default()
        });
        Ok(RegistrationPage { items, next })
    }
}

/// Registrations in the region's Redis.
#[derive(Clone)]
pub struct RedisRegistry {
    conn: ConnectionManager,
    prefix: String,
}

/// A registration as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    account: String,
    user: String,
    platform: Platform,
    token: String,
    app: String,
    readable: Vec<String>,
    at: u64,
}

impl Stored {
    fn from(r: &Registration) -> Self {
        Self {
            account: r.account.to_string(),
            user: r.user.clone(),
            platform: r.platform,
            token: r.device_token.clone(),
            app: r.app.clone(),
            readable: r.readable.iter().map(pattern_text).collect(),
            at: r.registered_at_ms,
        }
    }

    fn into_registration(self) -> Option<Registration> {
        Some(Registration {
            account: AccountId::new(&self.account).ok()?,
            user: self.user,
            platform: self.platform,
            device_token: self.token,
            app: self.app,
            readable: self.readable.iter().map(|p| ChannelPattern::parse(p)).collect::<Result<_, _>>().ok()?,
            registered_at_ms: self.at,
        })
    }
}

/// Removes the device from its old owner's sets, then stores it under its new owner.
const REGISTER: &str = r#"
local old = redis.call('GET', KEYS[1])
if old then
  local o = cjson.decode(old)
  redis.call('SREM', ARGV[3] .. 'user:' .. o.account .. ':' .. o.user, ARGV[2])
  redis.call('ZREM', ARGV[3] .. 'acct:' .. o.account, ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
return 1
"#;

/// Removes the device (only if registered at or before ARGV[3], when given).
const REMOVE: &str = r#"
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
local o = cjson.decode(old)
if ARGV[3] ~= '' and tonumber(o.at) > tonumber(ARGV[3]) then return 0 end
redis.call('SREM', ARGV[1] .. 'user:' .. o.account .. ':' .. o.user, ARGV[2])
redis.call('ZREM', ARGV[1] .. 'acct:' .. o.account, ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"#;

fn unavailable(e: redis::RedisError) -> DeviceError {
    DeviceError::Unavailable(e.to_string())
}

impl RedisRegistry {
    /// Registrations under `prefix` (e.g. `herald:push:`), over `conn` (see [`crate::store::connect`]).
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self { conn, prefix: prefix.to_owned() }
    }

    fn dev_key(&self, device: &str) -> String {
        format!("{}dev:{device}", self.prefix)
    }

    async fn remove_if(&self, platform: Platform, token: &str, since: Option<u64>) -> Result<bool, DeviceError> {
        let device = device_key(platform, token);
        let since = since.map(|s| s.to_string()).unwrap_or_default();
        let removed: i64 = Script::new(REMOVE).key(self.dev_key(&device)).arg(&self.prefix).arg(&device).arg(since).invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(removed == 1)
    }

    /// The registrations of these device keys, in the same order, skipping any gone meanwhile.
    async fn load(&self, devices: &[String]) -> Result<Vec<Registration>, DeviceError> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = devices.iter().map(|d| self.dev_key(d)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(values.into_iter().flatten().filter_map(|v| serde_json::from_str::<Stored>(&v).ok()?.into_registration()).collect())
    }
}

#[async_trait]
impl DeviceRegistry for RedisRegistry {
    async fn register(&self, r: Registration) -> Result<(), DeviceError> {
        r.validate()?;
        let device = r.device_key();
        let json = serde_json::to_string(&Stored::from(&r)).map_err(|e| DeviceError::Invalid(e.to_string()))?;
        let _: i64 = Script::new(REGISTER)
            .key(self.dev_key(&device))
            .key(format!("{}user:{}:{}", self.prefix, r.account, r.user))
            .key(format!("{}acct:{}", self.prefix, r.account))
            .arg(json)
            .arg(&device)
            .arg(&self.prefix)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, platform: Platform, token: &str) -> Result<Option<Registration>, DeviceError> {
        Ok(self.load(&[device_key(platform, token)]).await?.pop())
    }

    async fn remove(&self, platform: Platform, token: &str) -> Result<bool, DeviceError> {
        self.remove_if(platform, token, None).await
    }

    async fn remove_invalid(&self, platform: Platform, token: &str, invalid_since_ms: u64) -> Result<bool, DeviceError> {
        self.remove_if(platform, token, Some(invalid_since_ms)).await
    }

    async fn list_user(&self, account: &AccountId, user: &str) -> Result<Vec<Registration>, DeviceError> {
        let mut devices: Vec<String> = self.conn.clone().smembers(format!("{}user:{account}:{user}", self.prefix)).await.map_err(unavailable)?;
        devices.sort();
        self.load(&devices).await
    }

    async fn list_account(&self, account: &AccountId, page: PageRequest) -> Result<RegistrationPage, DeviceError> {
        let limit = page.limit.max(1);
        let from = page.after.as_ref().map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let mut devices: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(format!("{}acct:{account}", self.prefix))
            .arg(from)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let next = (devices.len() > limit).then(|| {
            devices.pop();
            devices.last().cloned().unwrap_or_default()
        });
        Ok(RegistrationPage { items: self.load(&devices).await?, next })
    }
}
