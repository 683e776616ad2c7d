//! Limits that keep one client, address or account from starving the rest: connection counts
//! per account and per IP, and token buckets for publishing per connection and per account.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use herald_config::{AccountLimits, LimitsConfig};
use herald_core::AccountId;

use crate::metrics::EdgeMetrics;

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` per second, holding two seconds' worth.
    pub fn new(rate: u32) -> Self {
        let rate = rate as f64;
        Self { rate, burst: rate * 2.0, tokens: rate * 2.0, at: Instant::now() }
    }

    /// Changes the rate (a new limit from the control plane), keeping the tokens it has.
    pub fn set_rate(&mut self, rate: u32) {
        let rate = rate as f64;
        if rate != self.rate {
            self.rate = rate;
            self.burst = rate * 2.0;
            self.tokens = self.tokens.min(self.burst);
        }
    }

    /// Takes `n` tokens if there are that many.
    pub fn take(&mut self, n: u32) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// Which limit refused something (the `limit` label of `herald_limited_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Connections per account.
    AccountConnections,
    /// Connections per IP address.
    IpConnections,
    /// Publishes per connection.
    ConnectionPublishRate,
    /// Publishes per account.
    AccountPublishRate,
}

impl Limit {
    fn label(self) -> &'static str {
        match self {
            Limit::AccountConnections => "connections_per_account",
            Limit::IpConnections => "connections_per_ip",
            Limit::ConnectionPublishRate => "publish_per_connection",
            Limit::AccountPublishRate => "publish_per_account",
        }
    }

    /// The message a refused client sees.
    pub fn message(self) -> &'static str {
        match self {
            Limit::AccountConnections => "too many connections for this account",
            Limit::IpConnections => "too many connections from this address",
            Limit::ConnectionPublishRate => "publishing too fast on this connection",
            Limit::AccountPublishRate => "this account is publishing too fast",
        }
    }
}

/// The node's limit state.
pub struct Limits {
    config: LimitsConfig,
    /// Per-account overrides from the control plane; they win over the config file's.
    managed: parking_lot::RwLock<HashMap<String, AccountLimits>>,
    accounts: Mutex<HashMap<AccountId, usize>>,
    ips: Mutex<HashMap<IpAddr, usize>>,
    buckets: Mutex<HashMap<AccountId, TokenBucket>>,
    metrics: Arc<EdgeMetrics>,
}

impl Limits {
    /// Limits from config.
    pub fn new(config: LimitsConfig, metrics: Arc<EdgeMetrics>) -> Self {
        Self { config, managed: Default::default(), accounts: Mutex::new(HashMap::new()), ips: Mutex::new(HashMap::new()), buckets: Mutex::new(HashMap::new()), metrics }
    }

    /// Replaces the control plane's per-account overrides (whole: an account left out falls
    /// back to the config file).
    pub fn set_managed(&self, accounts: HashMap<String, AccountLimits>) {
        *self.managed.write() = accounts;
    }

    /// One override for `account`: the control plane's, else the config file's.
    fn over<T>(&self, account: &AccountId, field: impl Fn(&AccountLimits) -> Option<T>) -> Option<T> {
        self.managed.read().get(account.as_str()).and_then(&field).or_else(|| self.config.accounts.get(account).and_then(&field))
    }

    fn refused(&self, limit: Limit) -> Limit {
        self.metrics.limited(limit.label());
        limit
    }

    /// The subscription limit of one of `account`'s connections.
    pub fn max_subscriptions(&self, account: &AccountId, default: usize) -> usize {
        self.over(account, |a| a.max_subscriptions).unwrap_or(default)
    }

    /// The largest record payload `account` may publish.
    pub fn max_message_bytes(&self, account: &AccountId, default: usize) -> usize {
        self.over(account, |a| a.max_message_bytes).unwrap_or(default)
    }

    /// A bucket for one connection's publishes.
    pub fn connection_bucket(&self) -> TokenBucket {
        TokenBucket::new(self.config.publish_per_second_per_connection)
    }

    /// Counts a connection from `ip`, if the address may open another. Held by the returned
    /// guard; counting the account comes later (see [`Limits::admit_account`]).
    pub fn admit_ip(self: &Arc<Self>, ip: IpAddr) -> Result<IpSlot, Limit> {
        let mut ips = self.ips.lock();
        let n = ips.entry(ip).or_insert(0);
        if *n >= self.config.connections_per_ip {
            return Err(self.refused(Limit::IpConnections));
        }
        *n += 1;
        Ok(IpSlot { limits: self.clone(), ip })
    }

    /// Counts a connection of `account`, if the account may open another.
    pub fn admit_account(self: &Arc<Self>, account: &AccountId) -> Result<AccountSlot, Limit> {
        let max = self.over(account, |a| a.connections).unwrap_or(self.config.connections_per_account);
        let mut accounts = self.accounts.lock();
        let n = accounts.entry(account.clone()).or_insert(0);
        if *n >= max {
            return Err(self.refused(Limit::AccountConnections));
        }
        *n += 1;
        Ok(AccountSlot { limits: self.clone(), account: account.clone() })
    }

    /// Takes `n` records from the account's publish budget.
    pub fn account_publish(&self, account: &AccountId, n: u32) -> Result<(), Limit> {
        let rate = self.over(account, |a| a.publish_per_second).unwrap_or(self.config.publish_per_second_per_account);
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(account.clone()).or_insert_with(|| TokenBucket::new(rate));
        bucket.set_rate(rate);
        if bucket.take(n) { Ok(()) } else { Err(self.refused(Limit::AccountPublishRate)) }
    }

    /// Counts a refusal by a connection's own bucket.
    pub fn connection_publish_refused(&self) -> Limit {
        self.refused(Limit::ConnectionPublishRate)
    }
}

/// Holds one connection's place in its address's count.
pub struct IpSlot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl IpSlot {
    /// The client address this slot counts.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut ips = self.limits.ips.lock();
        if let Some(n) = ips.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                ips.remove(&self.ip);
            }
        }
    }
}

/// Holds one connection's place in its account's count.
pub struct AccountSlot {
    limits: Arc<Limits>,
    account: AccountId,
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        let mut accounts = self.limits.accounts.lock();
        if let Some(n) = accounts.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                accounts.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_it_refills() {
        let mut b = TokenBucket::new(5);
        assert!((0..10).all(|_| b.take(1)), "two seconds' worth at once");
        assert!(!b.take(1));
        b.at -= std::time::Duration::from_millis(400);
        assert!(b.take(1) && b.take(1), "0.4 s refills two tokens");
        assert!(!b.take(1));
    }

    #[test]
    fn control_plane_overrides_win_and_apply_to_live_buckets() {
        let mut c = LimitsConfig::default();
        c.accounts.insert(AccountId::new("acme").unwrap(), AccountLimits { max_subscriptions: Some(10), publish_per_second: Some(1000), ..Default::default() });
        let l = Limits::new(c, EdgeMetrics::new());
        let acme = AccountId::new("acme").unwrap();
        assert_eq!(l.max_subscriptions(&acme, 256), 10);
        assert!(l.account_publish(&acme, 100).is_ok());
        let managed = AccountLimits { publish_per_second: Some(5), max_message_bytes: Some(2048), ..Default::default() };
        l.set_managed(HashMap::from([("acme".to_string(), managed)]));
        assert_eq!(l.max_subscriptions(&acme, 256), 10, "fields the control plane leaves unset come from the file");
        assert_eq!(l.max_message_bytes(&acme, 16384), 2048);
        assert_eq!(l.account_publish(&acme, 11).err(), Some(Limit::AccountPublishRate), "the live bucket shrank to 2 s of 5/s");
        assert!(l.account_publish(&acme, 10).is_ok());
        l.set_managed(HashMap::new());
        assert_eq!(l.max_message_bytes(&acme, 16384), 16384);
    }

    #[test]
    fn slots_count_connections_and_free_them_on_drop() {
        let c = LimitsConfig { connections_per_account: 2, connections_per_ip: 3, ..Default::default() };
        let l = Arc::new(Limits::new(c, EdgeMetrics::new()));
        let acme = AccountId::new("acme").unwrap();
        let a = l.admit_account(&acme).unwrap();
        let _b = l.admit_account(&acme).unwrap();
        assert_eq!(l.admit_account(&acme).err(), Some(Limit::AccountConnections));
        assert!(l.admit_account(&AccountId::new("beta").unwrap()).is_ok(), "other accounts are unaffected");
        drop(a);
        assert!(l.admit_account(&acme).is_ok());
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let slots: Vec<_> = (0..3).map(|_| l.admit_ip(ip).unwrap()).collect();
        assert_eq!(l.admit_ip(ip).err(), Some(Limit::IpConnections));
        drop(slots);
        assert!(l.admit_ip(ip).is_ok());
    }
}
