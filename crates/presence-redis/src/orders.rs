//! [`RedisOrders`]: a region's orders in the Redis that holds its presence.
//!
//! # Keys (under the presence prefix)
//! - `orders`: a stream, one entry per order (field `o`, the order as JSON). Every issue trims
//!   entries older than [`RedisOrders::RETENTION`] (`XADD … MINID ~`, by Redis's own clock).
//!   Each adapter reads it with `XREAD BLOCK` from the last id it saw, so an edge that lost
//!   Redis for less than the retention catches up on what was issued meanwhile.
//! - `revocations`: a sorted set of revocations (as JSON) scored by `until` (ms), read at start
//!   and after every reconnection, pruned of ended ones on every issue.
//!
//! An issue writes both in one script, so a revocation is in the stream iff it stands.

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use herald_core::{AccountId, Disconnect, DisconnectTarget, Order, Orders, OrdersError, RevokeTarget, Revocation, now_ms};

use crate::{RedisPresenceOptions, client, redacted};

/// Adds the order to the stream (trimming what is older than the retention) and, for a
/// revocation, to the standing set (pruning ended ones). Returns the stream id.
const ISSUE: &str = r#"
if ARGV[3] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
local t = redis.call('TIME')
local minid = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])
return redis.call('XADD', KEYS[1], 'MINID', '~', tostring(math.max(minid, 0)), '*', 'o', ARGV[1])
"#;

/// An order as stored: `k` is `d` (disconnect) or `r` (revocation).
#[derive(Serialize, Deserialize)]
#[serde(tag = "k")]
enum Stored {
    #[serde(rename = "d")]
    Disconnect { a: String, user: Option<String>, conn: Option<String>, why: String, re: bool },
    #[serde(rename = "r")]
    Revoke { a: String, user: Option<String>, jti: Option<String>, at: u64, until: u64, why: String },
}

fn encode(order: &Order) -> String {
    let stored = match order {
        Order::Disconnect(d) => {
            let (user, conn) = match &d.target {
                DisconnectTarget::User(u) => (Some(u.clone()), None),
                DisconnectTarget::Connection(c) => (None, Some(c.clone())),
            };
            Stored::Disconnect { a: d.account.as_str().to_owned(), user, conn, why: d.reason.clone(), re: d.reconnect }
        }
        Order::Revoke(r) => {
            let (user, jti) = match &r.target {
                RevokeTarget::User(u) => (Some(u.clone()), None),
                RevokeTarget::Jti(j) => (None, Some(j.clone())),
            };
            Stored::Revoke { a: r.account.as_str().to_owned(), user, jti, at: r.at_ms, until: r.until_ms, why: r.reason.clone() }
        }
    };
    serde_json::to_string(&stored).expect("serializable")
}

fn decode(text: &str) -> Option<Order> {
    Some(match serde_json::from_str::<Stored>(text).ok()? {
        Stored::Disconnect { a, user, conn, why, re } => {
            let target = match (user, conn) {
                (Some(u), None) => DisconnectTarget::User(u),
                (None, Some(c)) => DisconnectTarget::Connection(c),
                _ => return None,
            };
            Order::Disconnect(Disconnect { account: AccountId::new(&a).ok()?, target, reason: why, reconnect: re })
        }
        Stored::Revoke { a, user, jti, at, until, why } => {
            let target = match (user, jti) {
                (Some(u), None) => RevokeTarget::User(u),
                (None, Some(j)) => RevokeTarget::Jti(j),
                _ => return None,
            };
            Order::Revoke(Revocation { account: AccountId::new(&a).ok()?, target, at_ms: at, until_ms: until, reason: why })
        }
    })
}

fn unavailable(e: redis::RedisError) -> OrdersError {
    OrdersError::Unavailable(e.to_string())
}

/// Orders in Redis, shared by every edge of a region. Dropping it stops its reader.
pub struct RedisOrders {
    conn: ConnectionManager,
    stream: String,
    standing: String,
    retention: Duration,
    issue: Script,
    orders: broadcast::Sender<Order>,
    stop: CancellationToken,
}

impl Drop for RedisOrders {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The keys and the channel the reader needs.
#[derive(Clone)]
struct Reader {
    client: redis::Client,
    stream: String,
    standing: String,
    orders: broadcast::Sender<Order>,
}

impl RedisOrders {
    /// How long orders stay in the stream: an adapter cut off from Redis for longer misses the
    /// disconnects of that time (revocations are read again from the standing set).
    pub const RETENTION: Duration = Duration::from_secs(300);

    /// Connects with the presence settings (URL, login, TLS, prefix) and starts reading the
    /// stream. If Redis is unreachable this still returns (after a short wait) and keeps
    /// retrying in the background, like presence.
    pub async fn start(opts: &RedisPresenceOptions) -> Result<Self, OrdersError> {
        let client = client(&opts.url, &opts.login).map_err(|e| OrdersError::Unavailable(e.0))?;
        let conn = crate::lazy_manager(client.clone(), Duration::from_secs(2)).map_err(unavailable)?;
        let orders = broadcast::channel(4096).0;
        let stream = format!("{}orders", opts.prefix);
        let standing = format!("{}revocations", opts.prefix);
        let stop = CancellationToken::new();
        let (positioned_tx, positioned_rx) = tokio::sync::oneshot::channel();
        let reader = Reader { client, stream: stream.clone(), standing: standing.clone(), orders: orders.clone() };
        tokio::spawn(read_orders(reader, stop.clone(), positioned_tx));
        // Wait (briefly) until the reader knows where the stream ends, so that an order issued
        // right after start is not missed.
        if tokio::time::timeout(Duration::from_secs(3), positioned_rx).await.is_err() {
            tracing::warn!(url = %redacted(&opts.url), "orders: Redis unreachable at start; retrying in the background");
        }
        Ok(Self { conn, stream, standing, retention: Self::RETENTION, issue: Script::new(ISSUE), orders, stop })
    }
}

#[async_trait]
impl Orders for RedisOrders {
    async fn issue(&self, order: Order) -> Result<String, OrdersError> {
        let now = now_ms();
        order.validate(now)?;
        let until = match &order {
            Order::Revoke(r) => r.until_ms.to_string(),
            Order::Disconnect(_) => String::new(),
        };
        let mut conn = self.conn.clone();
        self.issue
            .key(&self.stream)
            .key(&self.standing)
            .arg(encode(&order))
            .arg(self.retention.as_millis() as u64)
            .arg(until)
            .arg(now)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    fn watch(&self) -> broadcast::Receiver<Order> {
        self.orders.subscribe()
    }

    async fn revocations(&self) -> Result<Vec<Revocation>, OrdersError> {
        let mut conn = self.conn.clone();
        standing(&mut conn, &self.standing).await.map_err(unavailable)
    }
}

/// The revocations whose `until` has not passed.
async fn standing<C: redis::aio::ConnectionLike>(conn: &mut C, key: &str) -> redis::RedisResult<Vec<Revocation>> {
    let now = now_ms();
    let stored: Vec<String> = redis::cmd("ZRANGEBYSCORE").arg(key).arg(format!("({now}")).arg("+inf").query_async(conn).await?;
    Ok(stored
        .iter()
        .filter_map(|s| match decode(s) {
            Some(Order::Revoke(r)) if r.until_ms > now => Some(r),
            _ => None,
        })
        .collect())
}

/// What `XREAD` returns: per stream, its entries (id, field-value pairs).
type StreamRead = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

/// How long one `XREAD` waits for new orders.
const BLOCK_MS: u64 = 5_000;

/// Reads the stream forever from the last id seen, reconnecting; after every (re)connection
/// sends the standing revocations first.
async fn read_orders(r: Reader, stop: CancellationToken, positioned: tokio::sync::oneshot::Sender<()>) {
    let mut positioned = Some(positioned);
    let mut last: Option<String> = None;
    let mut delay = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let e = tokio::select! {
            _ = stop.cancelled() => return,
            Err(e) = read_session(&r, &mut last, &mut positioned, &mut delay) => e,
        };
        tracing::warn!(error = %e, "orders: lost Redis; reading again from the last order seen");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// One connection's reading, until it fails.
async fn read_session(r: &Reader, last: &mut Option<String>, positioned: &mut Option<tokio::sync::oneshot::Sender<()>>, delay: &mut Duration) -> redis::RedisResult<()> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_millis(BLOCK_MS) + Duration::from_secs(3)));
    let mut conn = r.client.get_multiplexed_async_connection_with_config(&cfg).await?;
    if last.is_none() {
        // First contact: from the stream's end (nothing issued before this start is ours).
        let tail: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE").arg(&r.stream).arg("+").arg("-").arg("COUNT").arg(1).query_async(&mut conn).await?;
        *last = Some(tail.into_iter().next().map_or_else(|| "0-0".to_owned(), |(id, _)| id));
    }
    for rev in standing(&mut conn, &r.standing).await? {
        // No watcher is fine: nobody is connected.
        let _ = r.orders.send(Order::Revoke(rev));
    }
    if let Some(p) = positioned.take() {
        let _ = p.send(());
    }
    *delay = Duration::from_millis(100);
    loop {
        let from = last.clone().unwrap_or_else(|| "0-0".into());
        let read: StreamRead = redis::cmd("XREAD").arg("COUNT").arg(256).arg("BLOCK").arg(BLOCK_MS).arg("STREAMS").arg(&r.stream).arg(&from).query_async(&mut conn).await?;
        for (_, entries) in read.unwrap_or_default() {
            for (id, fields) in entries {
                match fields.chunks(2).find(|kv| kv[0] == "o").and_then(|kv| kv.get(1)).and_then(|o| decode(o)) {
                    Some(order) => drop(r.orders.send(order)),
                    None => tracing::warn!(id, "orders: undecodable entry in the stream"),
                }
                *last = Some(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_read_back_as_stored() {
        let acme = AccountId::new("acme").unwrap();
        let orders = [
            Order::Disconnect(Disconnect { account: acme.clone(), target: DisconnectTarget::User("al\"ice".into()), reason: "why".into(), reconnect: true }),
            Order::Disconnect(Disconnect { account: acme.clone(), target: DisconnectTarget::Connection("c1".into()), reason: String::new(), reconnect: false }),
            Order::Revoke(Revocation { account: acme.clone(), target: RevokeTarget::Jti("j".into()), at_ms: 1, until_ms: 2, reason: "x".into() }),
            Order::Revoke(Revocation { account: acme, target: RevokeTarget::User("bob".into()), at_ms: 3, until_ms: 4, reason: "y".into() }),
        ];
        for o in orders {
            assert_eq!(decode(&encode(&o)), Some(o));
        }
        assert_eq!(decode(r#"{"k":"d","a":"acme","user":null,"conn":null,"why":"","re":false}"#), None, "no target");
    }
}
