//! APNs over HTTP/2 with token-based authentication: an ES256 JWT from the team's `.p8` key,
//! made again every 50 minutes (Apple refuses tokens older than an hour and throttles providers
//! that make new ones more often than every 20 minutes), or at once when Apple says it expired.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

use herald_config::{ApnsConfig, PushPriority};
use herald_core::{Registration, now_ms};

use crate::http::{Origin, retry_after, tls_config};
use crate::rules::Notification;
use crate::send::Outcome;

/// How long one provider token is used.
const TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);

/// The APNs client: one HTTP/2 connection and the current provider token.
pub struct Apns {
    origin: Origin,
    key: EncodingKey,
    key_id: String,
    team_id: String,
    token: Mutex<Option<(String, Instant)>>,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    reason: String,
    /// For 410: when the token stopped being valid (milliseconds).
    #[serde(default)]
    timestamp: Option<u64>,
}

impl Apns {
    /// Reads the `.p8` key and the CA file (an error names the file); connects on first use.
    pub fn new(c: &ApnsConfig) -> Result<Self, String> {
        let pem = std::fs::read(&c.key_file).map_err(|e| format!("push.apns.key_file {}: {e}", c.key_file.display()))?;
        let key = EncodingKey::from_ec_pem(&pem).map_err(|e| format!("push.apns.key_file {}: not a P-256 key in PKCS#8 PEM (a .p8 file from Apple): {e}", c.key_file.display()))?;
        let tls = tls_config(c.ca_file.as_deref(), "push.apns.ca_file")?;
        let apns = Self { origin: Origin::new(&c.endpoint, tls)?, key, key_id: c.key_id.clone(), team_id: c.team_id.clone(), token: Mutex::new(None) };
        // Signing once proves the key works (at start, and under --check).
        apns.provider_token().map_err(|e| format!("push.apns.key_file {}: cannot sign with it: {e}", c.key_file.display()))?;
        Ok(apns)
    }

    fn provider_token(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let mut slot = self.token.lock();
        if let Some((t, made)) = slot.as_ref()
            && made.elapsed() < TOKEN_LIFETIME
        {
            return Ok(t.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let t = jsonwebtoken::encode(&header, &Claims { iss: &self.team_id, iat: now_ms() / 1000 }, &self.key)?;
        *slot = Some((t.clone(), Instant::now()));
        Ok(t)
    }

    /// Apple said `token` expired or is invalid: the next request makes a new one (unless
    /// another request already did).
    fn expire(&self, token: &str) {
        let mut slot = self.token.lock();
        if slot.as_ref().is_some_and(|(t, _)| t == token) {
            *slot = None;
        }
    }

    /// The JSON payload: `aps.alert` and the data keys beside `aps`.
    pub fn payload(n: &Notification) -> Value {
        let mut alert = Map::new();
        if let Some(t) = &n.title {
            alert.insert("title".into(), t.clone().into());
        }
        alert.insert("body".into(), n.body.clone().into());
        let mut root = Map::new();
        root.insert("aps".into(), json!({ "alert": alert }));
        for (k, v) in &n.data {
            root.insert(k.clone(), v.clone().into());
        }
        Value::Object(root)
    }

    /// Sends `n` to one device. `apns_id` is the same on every attempt (and after a restart),
    /// so that Apple and the device see one notification.
    pub async fn send(&self, n: &Notification, device: &Registration, apns_id: &str) -> Outcome {
        let started_ms = now_ms();
        let token = match self.provider_token() {
            Ok(t) => t,
            Err(e) => return Outcome::Failed { reason: "signing", detail: e.to_string() },
        };
        let expiration = if n.ttl_secs == 0 { 0 } else { started_ms / 1000 + n.ttl_secs };
        let mut req = Request::post(format!("/3/device/{}", device.device_token))
            .header("authorization", format!("bearer {token}"))
            .header("apns-topic", &device.app)
            .header("apns-push-type", "alert")
            .header("apns-priority", if n.priority == PushPriority::High { "10" } else { "5" })
            .header("apns-expiration", expiration.to_string())
            .header("apns-id", apns_id)
            .header("content-type", "application/json");
        if let Some(k) = &n.collapse_key {
            req = req.header("apns-collapse-id", k);
        }
        let req = match req.body(Full::new(Bytes::from(Self::payload(n).to_string()))) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed { reason: "bad_request", detail: e.to_string() },
        };
        let answer = match self.origin.send(req).await {
            Ok(a) => a,
            Err(e) => return Outcome::Retry { after: None, reason: "connection", detail: e.0 },
        };
        if answer.status.is_success() {
            return Outcome::Sent;
        }
        let body: ErrorBody = serde_json::from_slice(&answer.body).unwrap_or_default();
        let detail = format!("{} {}", answer.status.as_u16(), body.reason);
        match (answer.status.as_u16(), body.reason.as_str()) {
            (410, _) => Outcome::Gone { since_ms: body.timestamp.unwrap_or(started_ms) },
            (400, "BadDeviceToken") => Outcome::Gone { since_ms: started_ms },
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                self.expire(&token);
                Outcome::Retry { after: None, reason: "provider_token", detail }
            }
            (429, _) => Outcome::Retry { after: retry_after(&answer.headers), reason: "too_many_requests", detail },
            (500 | 503, _) => Outcome::Retry { after: retry_after(&answer.headers), reason: "unavailable", detail },
            (413, _) => Outcome::Failed { reason: "payload_too_large", detail },
            _ => Outcome::Failed { reason: "refused", detail },
        }
    }
}
