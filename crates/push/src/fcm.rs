//! FCM HTTP v1: `POST /v1/projects/{project}/messages:send` with an OAuth2 access token, got
//! from the service account's token endpoint with a signed JWT assertion (RS256, RFC 7523) and
//! kept until five minutes before it expires.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use herald_config::{FcmConfig, PushPriority};
use herald_core::{Registration, now_ms};

use crate::http::{Origin, retry_after, tls_config};
use crate::rules::Notification;
use crate::send::Outcome;

/// The OAuth2 scope FCM needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// An access token is replaced this long before it expires.
const REFRESH_EARLY: Duration = Duration::from_secs(300);

/// The fields of a Google service account key file that are used.
#[derive(Deserialize)]
pub struct ServiceAccount {
    /// The account (the assertion's `iss`).
    pub client_email: String,
    /// Its RSA private key, PEM.
    pub private_key: String,
    /// The key's id (the assertion header's `kid`).
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// Where access tokens come from (the assertion's `aud`).
    pub token_uri: String,
    /// The Firebase project.
    pub project_id: String,
}

/// The FCM client: the send endpoint, the token endpoint and the cached access token.
pub struct Fcm {
    send: Origin,
    token_origin: Origin,
    token_path: String,
    account: ServiceAccount,
    key: EncodingKey,
    /// The access token and when to stop using it; the lock is held while a new one is fetched,
    /// so concurrent sends wait for one fetch instead of each making their own.
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

#[derive(serde::Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

impl Fcm {
    /// Reads the service account file and the CA file (an error names the file and the field);
    /// connects on first use.
    pub fn new(c: &FcmConfig) -> Result<Self, String> {
        let path = c.service_account_file.display();
        let text = std::fs::read(&c.service_account_file).map_err(|e| format!("push.fcm.service_account_file {path}: {e}"))?;
        let account: ServiceAccount = serde_json::from_slice(&text).map_err(|e| format!("push.fcm.service_account_file {path}: not a service account key file: {e}"))?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes()).map_err(|e| format!("push.fcm.service_account_file {path}: private_key is not an RSA key in PEM: {e}"))?;
        if account.project_id.is_empty() || account.client_email.is_empty() {
            return Err(format!("push.fcm.service_account_file {path}: project_id and client_email must not be empty"));
        }
        let token_uri: http::Uri = account.token_uri.parse().map_err(|e| format!("push.fcm.service_account_file {path}: token_uri: {e}"))?;
        let tls = tls_config(c.ca_file.as_deref(), "push.fcm.ca_file")?;
        let token_origin = Origin::new(&format!("https://{}", token_uri.authority().map(|a| a.as_str()).unwrap_or("")), tls.clone())
            .map_err(|e| format!("push.fcm.service_account_file {path}: token_uri must be https://HOST/PATH: {e}"))?;
        if token_uri.scheme_str() != Some("https") {
            return Err(format!("push.fcm.service_account_file {path}: token_uri must be https://"));
        }
        let fcm = Self {
            send: Origin::new(&c.endpoint, tls)?,
            token_origin,
            token_path: token_uri.path().to_owned(),
            account,
            key,
            token: tokio::sync::Mutex::new(None),
        };
        fcm.assertion().map_err(|e| format!("push.fcm.service_account_file {path}: cannot sign with private_key: {e}"))?;
        Ok(fcm)
    }

    /// The project the service account sends for.
    pub fn project(&self) -> &str {
        &self.account.project_id
    }

    fn assertion(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.account.private_key_id.clone();
        let iat = now_ms() / 1000;
        let claims = Assertion { iss: &self.account.client_email, scope: SCOPE, aud: &self.account.token_uri, iat, exp: iat + 3600 };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }

    /// The cached access token, or a new one.
    async fn access_token(&self) -> Result<String, Outcome> {
        let mut slot = self.token.lock().await;
        if let Some((t, until)) = slot.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let assertion = self.assertion().map_err(|e| Outcome::Failed { reason: "signing", detail: e.to_string() })?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let req = Request::post(self.token_path.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| Outcome::Failed { reason: "bad_request", detail: e.to_string() })?;
        let answer = self.token_origin.send(req).await.map_err(|e| Outcome::Retry { after: None, reason: "token_endpoint", detail: e.0 })?;
        if !answer.status.is_success() {
            let detail = format!("token endpoint answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body));
            return Err(Outcome::Retry { after: retry_after(&answer.headers), reason: "token_endpoint", detail });
        }
        let t: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|e| Outcome::Retry { after: None, reason: "token_endpoint", detail: format!("token endpoint: {e}") })?;
        let lifetime = Duration::from_secs(t.expires_in);
        let until = Instant::now() + lifetime.saturating_sub(REFRESH_EARLY.min(lifetime / 2));
        *slot = Some((t.access_token.clone(), until));
        Ok(t.access_token)
    }

    async fn expire(&self, token: &str) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|(t, _)| t == token) {
            *slot = None;
        }
    }

    /// The `message` object of the send request.
    pub fn message(n: &Notification, device: &Registration) -> Value {
        let mut notification = json!({ "body": n.body });
        if let Some(t) = &n.title {
            notification["title"] = t.clone().into();
        }
        let high = n.priority == PushPriority::High;
        let mut android = json!({ "priority": if high { "HIGH" } else { "NORMAL" }, "ttl": format!("{}s", n.ttl_secs) });
        let mut apns_headers = json!({ "apns-priority": if high { "10" } else { "5" } });
        if let Some(k) = &n.collapse_key {
            android["collapse_key"] = k.clone().into();
            apns_headers["apns-collapse-id"] = k.clone().into();
        }
        json!({
            "token": device.device_token,
            "notification": notification,
            "data": n.data,
            "android": android,
            "apns": { "headers": apns_headers },
        })
    }

    /// Sends `n` to one device.
    pub async fn send(&self, n: &Notification, device: &Registration) -> Outcome {
        let started_ms = now_ms();
        if device.app != self.account.project_id {
            let detail = format!("the device is registered for Firebase project {:?}; the service account is for {:?}", device.app, self.account.project_id);
            return Outcome::Failed { reason: "unknown_project", detail };
        }
        let token = match self.access_token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let body = json!({ "message": Self::message(n, device) }).to_string();
        let req = Request::post(format!("/v1/projects/{}/messages:send", self.account.project_id))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Failed { reason: "bad_request", detail: e.to_string() },
        };
        let answer = match self.send.send(req).await {
            Ok(a) => a,
            Err(e) => return Outcome::Retry { after: None, reason: "connection", detail: e.0 },
        };
        if answer.status.is_success() {
            return Outcome::Sent;
        }
        let error: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let code = error_code(&error);
        let detail = format!("{} {code}", answer.status.as_u16());
        match (answer.status.as_u16(), code.as_str()) {
            (_, "UNREGISTERED") => Outcome::Gone { since_ms: started_ms },
            (401, _) => {
                self.expire(&token).await;
                Outcome::Retry { after: None, reason: "access_token", detail }
            }
            (429, _) => Outcome::Retry { after: retry_after(&answer.headers), reason: "too_many_requests", detail },
            (500 | 503, _) => Outcome::Retry { after: retry_after(&answer.headers), reason: "unavailable", detail },
            _ => Outcome::Failed { reason: "refused", detail },
        }
    }
}

/// The FCM error code (`UNREGISTERED`, `QUOTA_EXCEEDED`, …) from the details, else the status.
fn error_code(error: &Value) -> String {
    let details = error.pointer("/error/details").and_then(Value::as_array);
    details
        .into_iter()
        .flatten()
        .find_map(|d| d.get("errorCode").and_then(Value::as_str))
        .or_else(|| error.pointer("/error/status").and_then(Value::as_str))
        .unwrap_or("")
        .to_owned()
}
