//! Token verification with several keys at once: every accepted algorithm, rotation by `kid`,
//! keys bound to an account, a JWKS file, and the classic attacks (`alg: none`, algorithm
//! confusion, `nbf` in the future).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::PathBuf;

use herald_config::{AuthConfig, JwtKeyConfig};
use herald_edge::auth::{TokenClaims, TokenVerifier};
use herald_protocol::ErrorCode;

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys").join(name)
}

fn claims(account: &str, nbf: Option<u64>) -> TokenClaims {
    let now = herald_core::now_ms() / 1000;
    TokenClaims { sub: "u".into(), account: account.into(), exp: now + 600, iat: Some(now), nbf, jti: None, subscribe: vec!["*".into()], publish: vec![], presence: None }
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, c: &TokenClaims) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, c, key).unwrap()
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(key_file(name)).unwrap()
}

fn key(kid: Option<&str>, alg: &str, file: Option<&str>, secret: Option<&str>, account: Option<&str>) -> JwtKeyConfig {
    JwtKeyConfig {
        kid: kid.map(str::to_owned),
        algorithm: alg.into(),
        secret: secret.map(str::to_owned),
        secret_file: None,
        public_key_file: file.map(key_file),
        public_key_pem: None,
        account: account.map(|a| herald_core::AccountId::new(a).unwrap()),
    }
}

fn verifier(auth: AuthConfig) -> TokenVerifier {
    TokenVerifier::new(herald_edge::keys::load(&auth).unwrap(), 0)
}

#[test]
fn every_accepted_algorithm_verifies_and_kids_allow_rotation() {
    let auth = AuthConfig {
        keys: vec![
            key(Some("old"), "HS256", None, Some("old-secret-0123456789"), None),
            key(Some("new"), "HS256", None, Some("new-secret-0123456789"), None),
            key(Some("rsa"), "RS256", Some("rs256.pub"), None, None),
            key(Some("ec"), "ES256", Some("es256.pub"), None, None),
            key(Some("ed"), "EdDSA", Some("ed25519.pub"), None, None),
        ],
        ..Default::default()
    };
    let v = verifier(auth);
    let c = claims("acme", None);
    let tokens = [
        sign(Algorithm::HS256, Some("old"), &EncodingKey::from_secret(b"old-secret-0123456789"), &c),
        sign(Algorithm::HS256, Some("new"), &EncodingKey::from_secret(b"new-secret-0123456789"), &c),
        sign(Algorithm::RS256, Some("rsa"), &EncodingKey::from_rsa_pem(&pem("rs256.key")).unwrap(), &c),
        sign(Algorithm::ES256, Some("ec"), &EncodingKey::from_ec_pem(&pem("es256.key")).unwrap(), &c),
        sign(Algorithm::EdDSA, Some("ed"), &EncodingKey::from_ed_pem(&pem("ed25519.key")).unwrap(), &c),
    ];
    for t in &tokens {
        assert_eq!(v.verify(t).unwrap().account.as_str(), "acme");
    }
    // A kid nobody configured, or a secret under the wrong kid, is refused.
    let unknown = sign(Algorithm::HS256, Some("gone"), &EncodingKey::from_secret(b"old-secret-0123456789"), &c);
    assert_eq!(v.verify(&unknown).unwrap_err().code, ErrorCode::Unauthorized);
    let crossed = sign(Algorithm::HS256, Some("new"), &EncodingKey::from_secret(b"old-secret-0123456789"), &c);
    assert_eq!(v.verify(&crossed).unwrap_err().code, ErrorCode::Unauthorized);
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let auth = AuthConfig { keys: vec![key(None, "RS256", Some("rs256.pub"), None, None)], ..Default::default() };
    let v = verifier(auth);
    let c = claims("acme", None);
    // The classic confusion: HMAC-sign with the RSA *public* key as the secret, claim HS256.
    let confused = sign(Algorithm::HS256, None, &EncodingKey::from_secret(&pem("rs256.pub")), &c);
    assert_eq!(v.verify(&confused).unwrap_err().code, ErrorCode::Unauthorized);
    // alg: none, with and without a trailing signature.
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let body = b64(&serde_json::to_string(&c).unwrap());
    for t in [format!("{}.{body}.", b64(r#"{"alg":"none","typ":"JWT"}"#)), format!("{}.{body}", b64(r#"{"alg":"none"}"#))] {
        assert_eq!(v.verify(&t).unwrap_err().code, ErrorCode::Unauthorized, "{t}");
    }
    // HS384 is not an accepted algorithm at all.
    let hs384 = sign(Algorithm::HS384, None, &EncodingKey::from_secret(b"x-secret-0123456789"), &c);
    assert_eq!(v.verify(&hs384).unwrap_err().code, ErrorCode::Unauthorized);
}

#[test]
fn a_key_bound_to_an_account_signs_for_that_account_only() {
    let auth = AuthConfig { keys: vec![key(Some("acme-key"), "ES256", Some("es256.pub"), None, Some("acme"))], ..Default::default() };
    let v = verifier(auth);
    let k = EncodingKey::from_ec_pem(&pem("es256.key")).unwrap();
    assert!(v.verify(&sign(Algorithm::ES256, Some("acme-key"), &k, &claims("acme", None))).is_ok());
    let err = v.verify(&sign(Algorithm::ES256, Some("acme-key"), &k, &claims("beta", None))).unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert!(err.message.contains("account"));
}

#[test]
fn keys_from_a_jwks_file_verify_tokens() {
    let auth = AuthConfig { jwks_file: Some(key_file("jwks.json")), ..Default::default() };
    let v = verifier(auth);
    let k = EncodingKey::from_ed_pem(&pem("ed25519.key")).unwrap();
    assert!(v.verify(&sign(Algorithm::EdDSA, Some("jwks-ed"), &k, &claims("acme", None))).is_ok());
    assert!(v.verify(&sign(Algorithm::EdDSA, None, &k, &claims("acme", None))).is_err(), "JWKS keys are chosen by kid");
}

#[test]
fn a_token_not_valid_yet_is_refused_and_bad_key_config_names_the_key() {
    let v = TokenVerifier::hs256(b"secret-0123456789abcdef", 0);
    let later = herald_core::now_ms() / 1000 + 300;
    let t = sign(Algorithm::HS256, None, &EncodingKey::from_secret(b"secret-0123456789abcdef"), &claims("acme", Some(later)));
    assert!(v.verify(&t).unwrap_err().message.contains("nbf"));
    let auth = AuthConfig { keys: vec![key(Some("broken"), "RS256", Some("es256.pub"), None, None)], ..Default::default() };
    let err = herald_edge::keys::load(&auth).err().unwrap();
    assert!(matches!(err.problem, herald_edge::keys::KeyProblem::BadKey { .. }), "{err}");
    let err = err.to_string();
    assert!(err.contains("broken") && err.contains("RS256"), "{err}");
    assert!(herald_edge::keys::load(&AuthConfig::default()).is_err(), "no key at all is an error");
}

#[test]
fn an_hs256_secret_can_come_from_a_file_and_a_short_or_missing_one_names_the_key() {
    let dir = std::env::temp_dir().join(format!("herald-hs256-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let from_file = |kid: &str, path: PathBuf| JwtKeyConfig { secret: None, secret_file: Some(path), ..key(Some(kid), "HS256", None, None, None) };
    let good = write("good", "file-secret-0123456789\n");
    let v = verifier(AuthConfig { keys: vec![from_file("f", good)], ..Default::default() });
    let t = sign(Algorithm::HS256, Some("f"), &EncodingKey::from_secret(b"file-secret-0123456789"), &claims("acme", None));
    assert!(v.verify(&t).is_ok(), "the file's secret, its newline dropped, verifies");
    for (kid, path, needle) in [("short", write("short", "too-short\n"), "at least 16 bytes"), ("gone", dir.join("missing"), "cannot read")] {
        let err = herald_edge::keys::load(&AuthConfig { keys: vec![from_file(kid, path)], ..Default::default() }).err().unwrap().to_string();
        assert!(err.contains(kid) && err.contains(needle), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Serves `body()` at any path over plain HTTP on 127.0.0.1:0.
async fn serve_jwks(body: std::sync::Arc<parking_lot::Mutex<String>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let b = body.lock().clone();
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(b)))) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_jwks_url_are_fetched_and_refreshed_without_a_restart() {
    let body = std::sync::Arc::new(parking_lot::Mutex::new(std::fs::read_to_string(key_file("jwks.json")).unwrap()));
    let jwks = serve_jwks(body.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = herald_config::Config::default();
    config.auth.jwks_url = Some(format!("http://{jwks}/.well-known/jwks.json"));
    config.auth.jwks_refresh_secs = 1;
    let mut bc = herald_bus_memory::MemoryBusConfig::new(herald_core::RegionName::new("local").unwrap());
    bc.partitions = 2;
    let deps = herald_edge::EdgeDeps {
        bus: std::sync::Arc::new(herald_bus_memory::MemoryBus::new(bc)),
        presence: std::sync::Arc::new(herald_presence_memory::MemoryPresence::new()),
        metrics: herald_edge::EdgeMetrics::new(),
        dev: None,
        devices: None,
        orders: std::sync::Arc::new(herald_presence_memory::MemoryOrders::new()),
    };
    let edge = herald_edge::Edge::new(&config, deps).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(herald_edge::serve(listener, edge.clone(), stop.clone()));
    let connect = |token: String| async move {
        let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/v1/ws")).unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            Err(_) => 0,
        }
    };
    let ed = sign(Algorithm::EdDSA, Some("jwks-ed"), &EncodingKey::from_ed_pem(&pem("ed25519.key")).unwrap(), &claims("acme", None));
    let ec = sign(Algorithm::ES256, Some("jwks-ec"), &EncodingKey::from_ec_pem(&pem("es256.key")).unwrap(), &claims("acme", None));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while connect(ed.clone()).await != 101 {
        assert!(tokio::time::Instant::now() < deadline, "the JWKS key was never accepted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(connect(ec.clone()).await, 401, "a key the JWKS does not have yet");
    // The issuer rotates: the JWKS now has the EC key only.
    *body.lock() = std::fs::read_to_string(key_file("jwks-ec.json")).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while connect(ec.clone()).await != 101 {
        assert!(tokio::time::Instant::now() < deadline, "the rotated key was never picked up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(connect(ed.clone()).await, 401, "the key removed from the JWKS no longer works");
    stop.cancel();
}
