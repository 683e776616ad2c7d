//! Fake APNs and FCM servers for tests: HTTP/2 over TLS (a test CA from
//! `herald_core::testing::pki`), checking every request as the real services do, recording the
//! well-formed ones, and answering as a test scripts them (410, `UNREGISTERED`, 429 with
//! `Retry-After`, or holding answers back to simulate requests in flight at a crash).
//!
//! Checked on APNs: the path `/3/device/<hex token>`, `apns-topic` (one of the app's), `apns-push-type:
//! alert`, `apns-priority`, `apns-expiration`, the `apns-id` and `apns-collapse-id` shapes, the
//! payload, and the provider token: an ES256 JWT whose `kid` is the key id, `iss` the team id,
//! `iat` recent, verified against the key's public half. On FCM: the token endpoint's form, the
//! assertion (RS256, `iss`, `scope`, `aud` = token URI, `iat`/`exp`, verified against the service
//! account's public key), the send path with the project id, the bearer being a token the fake
//! issued and that has not expired, and the message. A request that fails a check gets the
//! real service's error status and is listed in [`Fake::violations`].

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;

use herald_config::{ApnsConfig, FcmConfig};
use herald_core::now_ms;
use herald_core::testing::pki::Pki;

/// The APNs key id and team id the fake expects.
pub const KEY_ID: &str = "KEY1234567";
/// The team id.
pub const TEAM_ID: &str = "TEAM765432";
/// The bundle id (APNs topic) the fake accepts.
pub const BUNDLE_ID: &str = "com.example.app";
/// The Firebase project the fake's service account is for.
pub const PROJECT_ID: &str = "herald-test";
/// The service account's e-mail.
pub const CLIENT_EMAIL: &str = "push@herald-test.iam.gserviceaccount.com";

/// One well-formed notification the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The device token.
    pub device: String,
    /// `apns-id` (APNs only).
    pub id: Option<String>,
    /// `apns-collapse-id` / `android.collapse_key`.
    pub collapse: Option<String>,
    /// The alert's title.
    pub title: Option<String>,
    /// The alert's body.
    pub body: String,
    /// The app's data (APNs: keys beside `aps`; FCM: `message.data`).
    pub data: BTreeMap<String, String>,
    /// When it arrived.
    pub at: Instant,
    /// Whether its answer was held back (it was in flight while the fake held answers).
    pub held: bool,
    /// The status it was answered (or will be) with.
    pub status: u16,
}

/// A scripted answer for a device's next request.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    /// APNs 410 `Unregistered` / FCM 404 `UNREGISTERED`.
    Gone,
    /// 429 with `Retry-After: secs`.
    TooMany {
        /// The `Retry-After` value.
        secs: u64,
    },
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    violations: Mutex<Vec<String>>,
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    /// FCM: access tokens issued, with their expiry.
    issued: Mutex<HashMap<String, Instant>>,
    tokens_requested: Mutex<u32>,
    /// FCM: lifetime of issued access tokens.
    token_lifetime: Mutex<u64>,
    /// APNs: provider tokens whose signature checked out, with their claims. Apple verifies a
    /// provider token once and reuses it for an hour; so does the fake (a P-256 verification per
    /// request would make the fake, not the worker, what a benchmark measures). The claims are
    /// still checked on every request.
    verified: Mutex<HashMap<String, Value>>,
}

/// A running fake server (APNs or FCM); stopped on drop.
pub struct Fake {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<State>,
    hold: watch::Sender<bool>,
    pki: Pki,
    task: tokio::task::JoinHandle<()>,
    /// The credentials the fake checks against (key files for the client).
    pub keys: Keys,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Credentials: the APNs `.p8` key and the service account file, with their public halves.
pub struct Keys {
    /// APNs: the `.p8` key file.
    pub apns_key_file: PathBuf,
    apns_public: String,
    /// FCM: the service account file.
    pub service_account_file: PathBuf,
    fcm_public: String,
}

fn rsa_key() -> &'static (String, String) {
    // RSA key generation is slow in a debug build: one key per test process.
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key");
        let private = key.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string();
        let public = key.to_public_key().to_public_key_pem(LineEnding::LF).expect("PEM");
        (private, public)
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Apns,
    Fcm,
}

impl Fake {
    /// A fake APNs.
    pub async fn apns() -> Self {
        Self::start(Kind::Apns).await
    }

    /// A fake FCM: the send endpoint and the OAuth2 token endpoint (`/token`).
    pub async fn fcm() -> Self {
        Self::start(Kind::Fcm).await
    }

    async fn start(kind: Kind) -> Self {
        let pki = Pki::new(if kind == Kind::Apns { "apns" } else { "fcm" });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let apns_key = rcgen::KeyPair::generate().expect("a P-256 key");
        let apns_key_file = pki.dir.join(format!("AuthKey_{KEY_ID}.p8"));
        std::fs::write(&apns_key_file, apns_key.serialize_pem()).unwrap();
        let (rsa_private, rsa_public) = rsa_key();
        let service_account_file = pki.dir.join("service-account.json");
        let account = json!({
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": "k1",
            "private_key": rsa_private,
            "client_email": CLIENT_EMAIL,
            "token_uri": format!("{url}/token"),
        });
        std::fs::write(&service_account_file, account.to_string()).unwrap();
        let keys = Keys { apns_key_file, apns_public: apns_key.public_key_pem(), service_account_file, fcm_public: rsa_public.clone() };
        let state = Arc::new(State { token_lifetime: Mutex::new(3600), ..State::default() });
        let (hold, _) = watch::channel(false);
        let tls = Arc::new(server_tls(&pki));
        let ctx = Arc::new(Ctx { kind, state: state.clone(), hold: hold.subscribe(), apns_public: keys.apns_public.clone(), fcm_public: keys.fcm_public.clone(), token_uri: format!("{url}/token") });
        let task = tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, std::convert::Infallible>(ctx.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Self { url, state, hold, pki, task, keys }
    }

    /// `[push.apns]` pointing at this fake.
    pub fn apns_config(&self) -> ApnsConfig {
        ApnsConfig { key_file: self.keys.apns_key_file.clone(), key_id: KEY_ID.into(), team_id: TEAM_ID.into(), endpoint: self.url.clone(), ca_file: Some(self.pki.path("ca.pem").into()) }
    }

    /// `[push.fcm]` pointing at this fake.
    pub fn fcm_config(&self) -> FcmConfig {
        FcmConfig { service_account_file: self.keys.service_account_file.clone(), endpoint: self.url.clone(), ca_file: Some(self.pki.path("ca.pem").into()) }
    }

    /// How many well-formed notifications arrived so far (without copying them).
    pub fn count(&self) -> usize {
        self.state.seen.lock().len()
    }

    /// Every well-formed notification received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().clone()
    }

    /// Requests that failed a check, with what was wrong.
    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().clone()
    }

    /// The next requests for `device` are answered with `replies`, in order (then 200).
    pub fn script(&self, device: &str, replies: &[Reply]) {
        self.state.script.lock().entry(device.to_owned()).or_default().extend(replies);
    }

    /// From now on, answers are held back until [`Fake::release`] (requests are still counted).
    pub fn hold(&self) {
        self.hold.send_replace(true);
    }

    /// Answers held requests and stops holding.
    pub fn release(&self) {
        self.hold.send_replace(false);
    }

    /// FCM: access tokens requested so far.
    pub fn tokens_requested(&self) -> u32 {
        *self.state.tokens_requested.lock()
    }

    /// FCM: access tokens issued from now on last `secs`.
    pub fn set_token_lifetime(&self, secs: u64) {
        *self.state.token_lifetime.lock() = secs;
    }
}

fn server_tls(pki: &Pki) -> ServerConfig {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(pki.path("server.pem")).unwrap())).collect::<Result<Vec<_>, _>>().unwrap();
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(pki.path("server.key")).unwrap())).unwrap().unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_no_client_auth().with_single_cert(certs, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

struct Ctx {
    kind: Kind,
    state: Arc<State>,
    hold: watch::Receiver<bool>,
    apns_public: String,
    fcm_public: String,
    token_uri: String,
}

/// A check that failed: the status and body to answer with, and what was wrong.
struct Refusal(u16, Value, String);

fn refuse(status: u16, body: Value, why: impl Into<String>) -> Refusal {
    Refusal(status, body, why.into())
}

fn header<'a>(req: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn strings(v: Option<&Value>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in v.and_then(Value::as_object).into_iter().flatten() {
        out.insert(k.clone(), v.as_str().ok_or_else(|| format!("data value {k:?} is not a string"))?.to_owned());
    }
    Ok(out)
}

impl Ctx {
    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let checked = match self.kind {
            Kind::Apns => self.check_apns(&parts, &body),
            Kind::Fcm if parts.uri.path() == "/token" => return self.token(&parts, &body),
            Kind::Fcm => self.check_fcm(&parts, &body),
        };
        let mut seen = match checked {
            Ok(s) => s,
            Err(Refusal(status, body, why)) => {
                self.state.violations.lock().push(format!("{} {}: {why}", parts.method, parts.uri.path()));
                return reply(status, body, None);
            }
        };
        let scripted = self.state.script.lock().get_mut(&seen.device).and_then(VecDeque::pop_front);
        let (status, body, retry_after) = match (self.kind, scripted) {
            (Kind::Apns, None) => (200, Value::Null, None),
            (Kind::Fcm, None) => (200, json!({ "name": format!("projects/{PROJECT_ID}/messages/{}", rand::random::<u32>()) }), None),
            (Kind::Apns, Some(Reply::Gone)) => (410, json!({ "reason": "Unregistered", "timestamp": now_ms() }), None),
            (Kind::Fcm, Some(Reply::Gone)) => (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), None),
            (Kind::Apns, Some(Reply::TooMany { secs })) => (429, json!({ "reason": "TooManyRequests" }), Some(secs)),
            (Kind::Fcm, Some(Reply::TooMany { secs })) => (429, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), Some(secs)),
        };
        seen.status = status;
        let mut hold = self.hold.clone();
        seen.held = *hold.borrow();
        let apns_id = seen.id.clone();
        self.state.seen.lock().push(seen);
        let _ = hold.wait_for(|held| !held).await;
        let mut resp = reply(status, body, retry_after);
        if let Some(id) = apns_id {
            resp.headers_mut().insert("apns-id", id.parse().unwrap());
        }
        resp
    }

    fn check_apns(&self, req: &http::request::Parts, body: &[u8]) -> Result<Seen, Refusal> {
        let reason = |status: u16, r: &str, why: String| refuse(status, json!({ "reason": r }), why);
        if req.method != http::Method::POST {
            return Err(reason(405, "MethodNotAllowed", format!("method {}", req.method)));
        }
        let device = req.uri.path().strip_prefix("/3/device/").ok_or_else(|| reason(404, "BadPath", "path is not /3/device/<token>".into()))?;
        if device.len() < 32 || !device.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(reason(400, "BadDeviceToken", format!("token {device:?} is not hex")));
        }
        let jwt = header(req, "authorization").and_then(|a| a.strip_prefix("bearer ")).ok_or_else(|| reason(403, "MissingProviderToken", "no bearer token".into()))?;
        let head = jsonwebtoken::decode_header(jwt).map_err(|e| reason(403, "InvalidProviderToken", e.to_string()))?;
        if head.alg != Algorithm::ES256 || head.kid.as_deref() != Some(KEY_ID) {
            return Err(reason(403, "InvalidProviderToken", format!("header alg {:?} kid {:?}", head.alg, head.kid)));
        }
        let known = self.state.verified.lock().get(jwt).cloned();
        let claims = match known {
            Some(c) => c,
            None => {
                let mut v = Validation::new(Algorithm::ES256);
                v.required_spec_claims.clear();
                v.validate_exp = false;
                let key = DecodingKey::from_ec_pem(self.apns_public.as_bytes()).unwrap();
                let claims = jsonwebtoken::decode::<Value>(jwt, &key, &v).map_err(|e| reason(403, "InvalidProviderToken", format!("signature: {e}")))?.claims;
                self.state.verified.lock().insert(jwt.to_owned(), claims.clone());
                claims
            }
        };
        let now = now_ms() / 1000;
        if claims["iss"] != TEAM_ID || !claims["iat"].as_u64().is_some_and(|iat| iat + 3600 > now && iat <= now + 60) {
            return Err(reason(403, "InvalidProviderToken", format!("claims {claims}")));
        }
        if header(req, "apns-topic") != Some(BUNDLE_ID) {
            return Err(reason(400, "DeviceTokenNotForTopic", format!("apns-topic {:?}", header(req, "apns-topic"))));
        }
        if header(req, "apns-push-type") != Some("alert") {
            return Err(reason(400, "InvalidPushType", format!("apns-push-type {:?}", header(req, "apns-push-type"))));
        }
        if !matches!(header(req, "apns-priority"), Some("10" | "5")) {
            return Err(reason(400, "BadPriority", format!("apns-priority {:?}", header(req, "apns-priority"))));
        }
        if header(req, "apns-expiration").is_none_or(|e| e.parse::<u64>().is_err()) {
            return Err(reason(400, "BadExpirationDate", "apns-expiration".into()));
        }
        let id = header(req, "apns-id").map(str::to_owned);
        if id.as_deref().is_some_and(|i| !is_uuid(i)) {
            return Err(reason(400, "BadMessageId", format!("apns-id {id:?}")));
        }
        let collapse = header(req, "apns-collapse-id").map(str::to_owned);
        if collapse.as_ref().is_some_and(|c| c.len() > 64) {
            return Err(reason(400, "BadCollapseId", "apns-collapse-id longer than 64 bytes".into()));
        }
        if body.len() > 4096 {
            return Err(reason(413, "PayloadTooLarge", format!("{} bytes", body.len())));
        }
        let payload: Value = serde_json::from_slice(body).map_err(|e| reason(400, "PayloadEmpty", e.to_string()))?;
        let alert = payload.pointer("/aps/alert").ok_or_else(|| reason(400, "PayloadEmpty", "no aps.alert".into()))?;
        let mut rest = payload.clone();
        rest.as_object_mut().map(|o| o.remove("aps"));
        Ok(Seen {
            device: device.to_owned(),
            id,
            collapse,
            title: alert["title"].as_str().map(str::to_owned),
            body: alert["body"].as_str().unwrap_or_default().to_owned(),
            data: strings(Some(&rest)).map_err(|e| reason(400, "BadPayload", e))?,
            at: Instant::now(),
            held: false,
            status: 0,
        })
    }

    fn token(&self, req: &http::request::Parts, body: &[u8]) -> Response<Full<Bytes>> {
        let bad = |why: String| {
            self.state.violations.lock().push(format!("POST /token: {why}"));
            reply(400, json!({ "error": "invalid_grant", "error_description": why }), None)
        };
        if req.method != http::Method::POST || header(req, "content-type") != Some("application/x-www-form-urlencoded") {
            return bad(format!("{} with content-type {:?}", req.method, header(req, "content-type")));
        }
        let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
            return bad(format!("grant_type {:?}", form.get("grant_type")));
        }
        let Some(assertion) = form.get("assertion") else { return bad("no assertion".into()) };
        let head = match jsonwebtoken::decode_header(assertion) {
            Ok(h) => h,
            Err(e) => return bad(e.to_string()),
        };
        if head.alg != Algorithm::RS256 || head.kid.as_deref() != Some("k1") {
            return bad(format!("header alg {:?} kid {:?}", head.alg, head.kid));
        }
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[&self.token_uri]);
        v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        let key = DecodingKey::from_rsa_pem(self.fcm_public.as_bytes()).unwrap();
        let claims = match jsonwebtoken::decode::<Value>(assertion, &key, &v) {
            Ok(d) => d.claims,
            Err(e) => return bad(format!("assertion: {e}")),
        };
        let (iat, exp) = (claims["iat"].as_u64().unwrap_or(0), claims["exp"].as_u64().unwrap_or(0));
        let now = now_ms() / 1000;
        if claims["iss"] != CLIENT_EMAIL || claims["scope"] != crate::fcm::SCOPE || exp <= iat || exp - iat > 3600 || iat > now + 60 || iat + 300 < now {
            return bad(format!("claims {claims}"));
        }
        let lifetime = *self.state.token_lifetime.lock();
        let token = format!("ya29.fake-{:016x}", rand::random::<u64>());
        self.state.issued.lock().insert(token.clone(), Instant::now() + Duration::from_secs(lifetime));
        *self.state.tokens_requested.lock() += 1;
        reply(200, json!({ "access_token": token, "expires_in": lifetime, "token_type": "Bearer" }), None)
    }

    fn check_fcm(&self, req: &http::request::Parts, body: &[u8]) -> Result<Seen, Refusal> {
        let err = |code: u16, status: &str, why: String| refuse(code, fcm_error(code, status, ""), why);
        if req.method != http::Method::POST || req.uri.path() != format!("/v1/projects/{PROJECT_ID}/messages:send") {
            return Err(err(404, "NOT_FOUND", format!("{} {}", req.method, req.uri.path())));
        }
        let token = header(req, "authorization").and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
        if self.state.issued.lock().get(token).is_none_or(|until| Instant::now() >= *until) {
            return Err(err(401, "UNAUTHENTICATED", format!("bearer {token:?} was not issued or has expired")));
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| err(400, "INVALID_ARGUMENT", e.to_string()))?;
        let m = &v["message"];
        let device = m["token"].as_str().filter(|t| !t.is_empty()).ok_or_else(|| err(400, "INVALID_ARGUMENT", "no message.token".into()))?;
        if !matches!(m.pointer("/android/priority").and_then(Value::as_str), Some("HIGH" | "NORMAL")) {
            return Err(err(400, "INVALID_ARGUMENT", "android.priority".into()));
        }
        if m.pointer("/android/ttl").and_then(Value::as_str).and_then(|t| t.strip_suffix('s')).is_none_or(|n| n.parse::<u64>().is_err()) {
            return Err(err(400, "INVALID_ARGUMENT", "android.ttl is not a duration like 3600s".into()));
        }
        let body_text = m.pointer("/notification/body").and_then(Value::as_str).ok_or_else(|| err(400, "INVALID_ARGUMENT", "no notification.body".into()))?;
        Ok(Seen {
            device: device.to_owned(),
            id: None,
            collapse: m.pointer("/android/collapse_key").and_then(Value::as_str).map(str::to_owned),
            title: m.pointer("/notification/title").and_then(Value::as_str).map(str::to_owned),
            body: body_text.to_owned(),
            data: strings(m.get("data")).map_err(|e| err(400, "INVALID_ARGUMENT", e))?,
            at: Instant::now(),
            held: false,
            status: 0,
        })
    }
}

fn fcm_error(code: u16, status: &str, error_code: &str) -> Value {
    let mut e = json!({ "error": { "code": code, "message": status, "status": status } });
    if !error_code.is_empty() {
        e["error"]["details"] = json!([{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code }]);
    }
    e
}

fn reply(status: u16, body: Value, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let text = if body.is_null() { String::new() } else { body.to_string() };
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    if let Some(s) = retry_after {
        r.headers_mut().insert(http::header::RETRY_AFTER, s.into());
    }
    r
}

/// Waits (up to 60 s) until `f` holds, checking every 20 ms; panics naming `what` otherwise.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
