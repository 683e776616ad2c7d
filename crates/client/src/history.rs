//! A channel's history over `GET /v1/history` with the client's token (docs/protocol.md,
//! "History"): the page a screen renders before it subscribes from the page's cursor.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

use herald_http_client::{Connection, Target, query_value as encode};

use crate::{ClientError, Message};

/// Which records a page holds: the newest `limit` (none of the others), those just `before` a
/// page, those after a cursor (`since`), or those published at or after `since_ms`.
#[derive(Clone, Debug, Default)]
pub struct HistoryOptions {
    /// Records per page, 1 to 1000 (the server's default: 100).
    pub limit: Option<u32>,
    /// The records after this cursor: pages go forward.
    pub since: Option<String>,
    /// The records just before this position (a page's `before`): pages go backward.
    pub before: Option<String>,
    /// The records published at or after this time (ms since the Unix epoch): pages go forward.
    pub since_ms: Option<u64>,
}

/// One page.
#[derive(Clone, Debug)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// After this page: the next forward page's `since`, and at the channel's end where a
    /// subscription misses nothing and repeats nothing.
    pub cursor: String,
    /// The previous page's `before` (none at the channel's start).
    pub before: Option<String>,
    /// Records follow (forward) or precede (backward) this page.
    pub more: bool,
    /// False when part of the range is past retention.
    pub complete: bool,
}

#[derive(Deserialize)]
struct Page {
    messages: Vec<Record>,
    cursor: String,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    more: bool,
    #[serde(default = "yes")]
    complete: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct Record {
    id: String,
    cursor: String,
    #[serde(default)]
    ts: u64,
    data: Box<RawValue>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// `http(s)://host:port` of a `ws(s)://` or `http(s)://` server URL.
pub(crate) fn http_base(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let url = url.strip_suffix("/v1/ws").unwrap_or(url);
    if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else {
        url.to_owned()
    }
}

/// One page of `channel`'s history, asked with `token`.
pub(crate) async fn fetch(url: &str, ca_file: Option<&str>, token: &str, channel: &str, o: &HistoryOptions, timeout: Duration) -> Result<HistoryPage, ClientError> {
    let refused = |code: &str, message: String| ClientError::Refused { code: code.into(), message };
    if [o.since.is_some(), o.before.is_some(), o.since_ms.is_some()].iter().filter(|x| **x).count() > 1 {
        return Err(refused("bad_request", "give at most one of since, before and since_ms".into()));
    }
    let mut q = format!("channel={}", encode(channel));
    if let Some(l) = o.limit {
        q.push_str(&format!("&limit={l}"));
    }
    for (k, v) in [("since", &o.since), ("before", &o.before)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", encode(v)));
        }
    }
    if let Some(t) = o.since_ms {
        q.push_str(&format!("&since_ms={t}"));
    }
    let target = Target::new(&format!("{}/v1/history?{q}", http_base(url)), ca_file).map_err(|e| refused("bad_request", e.0))?;
    let mut conn = Connection::new(Arc::new(target), timeout);
    let auth = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| refused("unauthorized", e.to_string()))?;
    let r = conn.send(http::Method::GET, None, &[(http::header::AUTHORIZATION, auth)], Bytes::new(), 64 << 20).await.map_err(|e| match e.kind {
        "timeout" => ClientError::Timeout,
        _ => ClientError::Disconnected,
    })?;
    if !r.status.is_success() {
        return Err(match serde_json::from_slice::<ErrorBody>(&r.body) {
            Ok(b) => refused(&b.error.code, b.error.message),
            Err(_) => refused("unavailable", format!("history answered {}", r.status)),
        });
    }
    let page: Page = serde_json::from_slice(&r.body).map_err(|e| refused("bad_reply", e.to_string()))?;
    Ok(HistoryPage {
        messages: page.messages.into_iter().map(|m| Message { channel: channel.to_owned(), id: m.id, cursor: m.cursor, ts: m.ts, data: m.data }).collect(),
        cursor: page.cursor,
        before: page.before,
        more: page.more,
        complete: page.complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_become_http_bases_and_values_are_encoded() {
        assert_eq!(http_base("ws://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(http_base("wss://rt.example.com/v1/ws"), "https://rt.example.com");
        assert_eq!(http_base("http://h:1/"), "http://h:1");
        assert_eq!(encode("@auth0=7C42"), "%40auth0%3D7C42");
        assert_eq!(encode("c1.8f2a.local.41"), "c1.8f2a.local.41");
    }
}
