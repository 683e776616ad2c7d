//! Two edge processes sharing presence in a real `redis-server`: members of one are seen by
//! clients of the other, and when an edge is killed its members leave within the TTL. The
//! control plane reads the same Redis: presence and push device registrations for `herald ctl`.

mod support;

use herald_client::{Client, ClientConfig};
use herald_presence_redis::testing::RedisServer;
use support::{Herald, ctl, member, next_presence, spawn};

const SECRET: &str = "presence-test-secret-0123456789";
const APNS_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// An edge on its own in-memory bus: presence is all these edges share.
fn edge(redis: &RedisServer, node: &str) -> Herald {
    spawn(
        &["edge", "--listen", "127.0.0.1:0", "--bus", "memory", "--node", node],
        &[("HERALD_JWT_SECRET", SECRET), ("HERALD_PRESENCE", &redis.url()), ("HERALD_PRESENCE_TTL_SECS", "3")],
    )
}

fn client(e: &Herald, user: &str) -> Client {
    let token = support::token_for_user(SECRET, "acme", user, "*", "");
    Client::connect(ClientConfig::new(e.url.clone(), token))
}

fn users(presence: &serde_json::Value) -> Vec<String> {
    let mut u: Vec<String> = presence["members"].as_array().unwrap().iter().map(|m| m["user"].as_str().unwrap().to_owned()).collect();
    u.sort();
    u
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_edges_and_a_killed_edges_members_leave() {
    let redis = RedisServer::start();
    let a = edge(&redis, "edge-a");
    let mut b = edge(&redis, "edge-b");

    let alice = client(&a, "alice");
    let mut watch = alice.subscribe_with("room", None, true).await.unwrap();
    assert_eq!(next_presence(&mut watch).await, (true, "alice".into()), "alice sees herself join");

    let bob = client(&b, "bob");
    let _bob_sub = bob.subscribe_with("room", None, false).await.unwrap();
    assert_eq!(next_presence(&mut watch).await, (true, "bob".into()), "a member of edge B is seen on edge A");
    let here = alice.presence("room").await.unwrap();
    assert_eq!(users(&here), ["alice", "bob"]);

    // Operators see the same through the control plane.
    let data = std::env::temp_dir().join(format!("herald-presence-{:08x}", rand::random::<u32>()));
    let port = herald_presence_redis::testing::free_port();
    let _control = member(1, port, &data, Some(&format!("1=127.0.0.1:{port}")), &["--presence", &redis.url()]);
    let seen = ctl(&format!("127.0.0.1:{port}"), &["presence", "acme", "room"]);
    assert_eq!(seen["occupancy"], 2);
    assert_eq!(users(&seen), ["alice", "bob"]);

    // A device alice registers on edge A is in the region's registry: operators list and
    // remove it through the control plane; a remove naming another account removes nothing.
    alice.register_device("apns", APNS_TOKEN, "com.example.oncall").await.unwrap();
    let listed = ctl(&format!("127.0.0.1:{port}"), &["devices", "acme", "alice"]);
    assert_eq!(listed["devices"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!((listed["devices"][0]["platform"].as_str(), listed["devices"][0]["token_tail"].as_str()), (Some("apns"), Some("7e8f90")));
    assert_eq!(ctl(&format!("127.0.0.1:{port}"), &["remove-device", "globex", "apns", APNS_TOKEN])["removed"], false);
    assert_eq!(ctl(&format!("127.0.0.1:{port}"), &["remove-device", "acme", "apns", APNS_TOKEN])["removed"], true);
    assert!(ctl(&format!("127.0.0.1:{port}"), &["devices", "acme", "alice"])["devices"].as_array().unwrap().is_empty());

    // Edge B dies without a goodbye: bob leaves once its TTL (3 s) runs out.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    assert_eq!(next_presence(&mut watch).await, (false, "bob".into()));
    assert_eq!(users(&alice.presence("room").await.unwrap()), ["alice"]);
    let _ = std::fs::remove_dir_all(&data);
}

/// `[presence]` over TLS with an ACL user, the password from the environment: two edges share
/// presence through a Redis that serves TLS only and requires a client certificate. A config
/// with a client certificate but no key is refused by `--check`, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_share_presence_through_redis_over_tls_with_an_acl_user() {
    let pki = herald_core::testing::pki::Pki::new("presence-edge");
    let port = herald_presence_redis::testing::free_port();
    let _redis = RedisServer::start_tls(port, &pki.path("server.pem"), &pki.path("server.key"), &pki.path("ca.pem"), "edge-presence-password");
    let config = pki.dir.join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[presence]\nurl = \"rediss://127.0.0.1:{port}\"\nusername = \"herald\"\nttl_secs = 3\n[presence.tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
            pki.path("ca.pem"),
            pki.path("client.pem"),
            pki.path("client.key")
        ),
    )
    .unwrap();
    let env = [("HERALD_JWT_SECRET", SECRET), ("HERALD_PRESENCE_PASSWORD", "edge-presence-password")];
    let edge = |node: &str| spawn(&["edge", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0", "--bus", "memory", "--node", node], &env);
    let a = edge("edge-a");
    let b = edge("edge-b");
    let alice = client(&a, "alice");
    let mut watch = alice.subscribe_with("room", None, true).await.unwrap();
    assert_eq!(next_presence(&mut watch).await, (true, "alice".into()));
    let bob = client(&b, "bob");
    let _bob_sub = bob.subscribe_with("room", None, false).await.unwrap();
    assert_eq!(next_presence(&mut watch).await, (true, "bob".into()), "a member of edge B is seen on edge A through Redis over TLS");
    assert_eq!(users(&alice.presence("room").await.unwrap()), ["alice", "bob"]);

    // The control plane reads the same store, its login from --config with a password file.
    let password = pki.dir.join("redis-password");
    std::fs::write(&password, "edge-presence-password\n").unwrap();
    let control_cfg = pki.dir.join("control.toml");
    let edge_cfg = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&control_cfg, edge_cfg.replace("ttl_secs = 3\n", &format!("ttl_secs = 3\npassword_file = {:?}\n", password.to_str().unwrap()))).unwrap();
    let data = pki.dir.join("control-data");
    let cport = herald_presence_redis::testing::free_port();
    let url = format!("rediss://127.0.0.1:{port}");
    let _control = member(1, cport, &data, Some(&format!("1=127.0.0.1:{cport}")), &["--presence", &url, "--config", control_cfg.to_str().unwrap()]);
    assert_eq!(users(&ctl(&format!("127.0.0.1:{cport}"), &["presence", "acme", "room"])), ["alice", "bob"]);

    let broken = pki.dir.join("broken.toml");
    std::fs::write(&broken, format!("[presence]\nurl = \"rediss://127.0.0.1:{port}\"\n[presence.tls]\ncert_file = {:?}\n", pki.path("client.pem"))).unwrap();
    let out = std::process::Command::new(support::BIN).args(["edge", "--config", broken.to_str().unwrap(), "--check"]).env("HERALD_JWT_SECRET", SECRET).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("presence.tls") && err.contains("go together"), "{err}");
}

/// `--check` reads the presence login's files without connecting: a missing CA file, TLS
/// settings on a plain `redis://` URL and a Sentinel URL are each refused with exit 64, naming
/// the problem, for `herald edge` and for `herald replicate`'s presence links.
#[test]
fn check_reads_the_presence_login_and_names_what_is_wrong() {
    let dir = std::env::temp_dir().join(format!("herald-presence-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("check.toml");
    let run = |toml: &str, args: &[&str]| {
        std::fs::write(&cfg, toml).unwrap();
        let mut all = args.to_vec();
        all.extend(["--config", cfg.to_str().unwrap(), "--check"]);
        std::process::Command::new(support::BIN).args(&all).env("HERALD_JWT_SECRET", SECRET).output().unwrap()
    };
    let edge = ["edge"];
    let replicate = ["replicate", "--region", "a", "--to", "kafka://127.0.0.1:9", "--from", "b=kafka://127.0.0.1:9"];
    let tls_missing_ca = "[presence.tls]\nca_file = \"/nonexistent/redis-ca.pem\"\n";
    for (what, args, toml, extra, needle) in [
        ("edge: missing CA file", &edge[..], format!("[presence]\nurl = \"rediss://127.0.0.1:6380\"\n{tls_missing_ca}"), &[][..], "/nonexistent/redis-ca.pem"),
        ("edge: TLS on redis://", &edge[..], format!("[presence]\nurl = \"redis://127.0.0.1:6379\"\n{tls_missing_ca}"), &[][..], "rediss://"),
        ("edge: Sentinel", &edge[..], "[presence]\nurl = \"redis+sentinel://127.0.0.1:26379/m\"\n".to_owned(), &[][..], "Sentinel"),
        ("replicate: missing CA file", &replicate[..], format!("[presence]\n{tls_missing_ca}"), &["--presence", "rediss://127.0.0.1:6380"][..], "/nonexistent/redis-ca.pem"),
        ("replicate: TLS on redis://", &replicate[..], format!("[presence]\n{tls_missing_ca}"), &["--presence", "redis://127.0.0.1:6379"][..], "rediss://"),
    ] {
        let mut args = args.to_vec();
        args.extend(extra);
        let out = run(&toml, &args);
        assert_eq!(out.status.code(), Some(64), "{what}: {}", String::from_utf8_lossy(&out.stdout));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{what}: {err}");
    }
    let ok = run("[presence]\nurl = \"redis://herald@127.0.0.1:6379/2\"\n", &edge);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}
