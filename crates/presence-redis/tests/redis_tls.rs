//! Presence against a real `redis-server` that serves TLS only and logs clients in as ACL users:
//! a client with the CA, a client certificate and the right password works across two nodes;
//! a wrong password, an unknown CA and a missing client certificate each fail with an error that
//! says which part failed, and change nothing in the store.

use std::time::Duration;

use herald_core::testing::pki::Pki;
use herald_core::{ChannelKey, Presence, PresenceMember};
use herald_presence_redis::testing::{RedisServer, free_port};
use herald_presence_redis::{RedisLogin, RedisPresence, RedisPresenceOptions};

const PASSWORD: &str = "presence-acl-password-0123";

/// TLS on a free port, plain TCP off, client certificates required, the default user off and
/// one ACL user `herald` allowed everything presence does.
fn tls_redis(pki: &Pki) -> (RedisServer, String) {
    let port = free_port();
    let server = RedisServer::start_tls(port, &pki.path("server.pem"), &pki.path("server.key"), &pki.path("ca.pem"), PASSWORD);
    (server, format!("rediss://127.0.0.1:{port}"))
}

fn login(pki: &Pki, password: &str, ca: &str, client_cert: bool) -> RedisLogin {
    RedisLogin {
        username: Some("herald".into()),
        password: Some(password.into()),
        ca_file: Some(pki.path(ca).into()),
        client_cert: client_cert.then(|| (pki.path("client.pem").into(), pki.path("client.key").into())),
    }
}

fn opts(url: &str, login: RedisLogin) -> RedisPresenceOptions {
    RedisPresenceOptions { ttl: Duration::from_secs(15), login, ..RedisPresenceOptions::new(url) }
}

fn member(c: &str, u: &str) -> PresenceMember {
    PresenceMember { connection_id: c.into(), user: u.into(), info: None }
}

#[tokio::test]
async fn presence_over_tls_with_an_acl_user_spans_nodes() {
    let pki = Pki::new("redis-ok");
    let (_redis, url) = tls_redis(&pki);
    let a = RedisPresence::start(opts(&url, login(&pki, PASSWORD, "ca.pem", true)), "edge-a").await.unwrap();
    let b = RedisPresence::start(opts(&url, login(&pki, PASSWORD, "ca.pem", true)), "edge-b").await.unwrap();
    let ch = ChannelKey::parse("acme/room").unwrap();
    let mut seen_on_b = b.events();
    a.join("edge-a", &ch, member("ca", "alice")).await.unwrap();
    let e = herald_core::testing::presence_conformance::next_event(&mut seen_on_b, &ch).await;
    assert_eq!(e.member, member("ca", "alice"), "the join travelled over TLS pub/sub");
    b.join("edge-b", &ch, member("cb", "bob")).await.unwrap();
    let s = a.snapshot(&ch, 10).await.unwrap();
    assert_eq!(s.occupancy, 2);
}

#[tokio::test]
async fn a_wrong_password_an_unknown_ca_and_no_client_certificate_each_say_what_failed() {
    let pki = Pki::new("redis-bad");
    let (_redis, url) = tls_redis(&pki);
    let ch = ChannelKey::parse("acme/room").unwrap();
    for (what, login, needle) in [
        ("wrong password", login(&pki, "not-the-password", "ca.pem", true), "login refused"),
        ("unknown CA", login(&pki, PASSWORD, "other-ca.pem", true), "TLS failed"),
        ("no client certificate", login(&pki, PASSWORD, "ca.pem", false), "TLS failed"),
    ] {
        // Presence never stops an edge from starting: it serves without Redis and retries.
        let p = RedisPresence::start(opts(&url, login), "edge-x").await.unwrap();
        let err = p.join("edge-x", &ch, member("cx", "mallory")).await.expect_err(what).to_string();
        assert!(err.contains(needle), "{what}: {err}");
        p.abandon();
    }
    // Nothing reached the store: a good client sees an empty channel.
    let good = RedisPresence::start(opts(&url, login(&pki, PASSWORD, "ca.pem", true)), "edge-g").await.unwrap();
    assert_eq!(good.snapshot(&ch, 10).await.unwrap().occupancy, 0);
}
