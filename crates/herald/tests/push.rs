//! `herald push` as an operator meets it: `--check` reads the config and the credentials and
//! names what is wrong, connecting to nothing; and the whole path with real processes, the
//! pushing process killed mid-stream.

mod support;

use std::process::Command;
use support::BIN;

fn config(fake_apns: &herald_push::testing::Fake, fake_fcm: &herald_push::testing::Fake, edit: impl Fn(String) -> String) -> String {
    let a = fake_apns.apns_config();
    let f = fake_fcm.fcm_config();
    edit(format!(
        r#"
[edge]
region = "eu"
[bus]
url = "kafka://127.0.0.1:9"
[presence]
url = "redis://127.0.0.1:9"
[push.apns]
key_file = "{}"
key_id = "KEY1234567"
team_id = "TEAM765432"
[push.fcm]
service_account_file = "{}"
[[push.channels]]
pattern = "incidents"
title = "Incident {{/id}}"
body = "{{/summary}}"
collapse_key = "incident-{{/id}}"
"#,
        a.key_file.display(),
        f.service_account_file.display()
    ))
}

fn check(text: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("herald-push-check-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("herald.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN).args(["push", "--config", path.to_str().unwrap(), "--check"]).env_remove("HERALD_REGION").output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn check_reads_the_credentials_and_names_what_is_wrong() {
    let (apns, fcm) = (herald_push::testing::Fake::apns().await, herald_push::testing::Fake::fcm().await);
    let (code, out) = check(&config(&apns, &fcm, |c| c));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration ok"), "{out}");
    let key = apns.keys.apns_key_file.to_str().unwrap().to_owned();
    let garbage = apns.keys.apns_key_file.with_file_name("garbage.p8").to_str().unwrap().to_owned();
    std::fs::write(&garbage, "not a key").unwrap();
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|c: String| c.replace("AuthKey_", "NoSuchKey_")), "push.apns.key_file"),
        (Box::new(move |c: String| c.replace(&key, &garbage)), "push.apns.key_file"),
        (Box::new(|c: String| c.replace("service-account.json", "missing.json")), "push.fcm.service_account_file"),
        (Box::new(|c: String| c.replace("{/summary}", "{summary}")), "body"),
        (Box::new(|c: String| c.replace("kafka://127.0.0.1:9", "memory")), "bus.url"),
        (Box::new(|c: String| c.replace("redis://127.0.0.1:9", "memory")), "presence.url"),
        (Box::new(|c: String| c.replace("pattern = \"incidents\"", "pattern = \"in*ci*\"")), "pattern"),
    ];
    for (edit, named) in cases {
        let (code, out) = check(&config(&apns, &fcm, &edit));
        assert_eq!(code, 64, "{named}: {out}");
        assert!(out.contains(named), "the error names {named}: {out}");
    }
}

const SECRET: &str = "push-e2e-secret-0123456789";
const KEY: &str = "push-e2e-admin-key-0123456789";
const ALICE_PHONE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const CAROL_PHONE: &str = "c1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const BOB_PHONE: &str = "bob-fcm-registration-token:APA91b";
const EVE_PHONE: &str = "eve-fcm-registration-token:APA91b";
/// Records of the counted stream.
const RECORDS: u32 = 60;

/// A `herald push` process, killed on drop.
struct Push {
    child: std::process::Child,
    /// Its metrics listener, `127.0.0.1:PORT`.
    addr: String,
}

impl Drop for Push {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Push {
    fn start(config: &std::path::Path, name: &str) -> Self {
        use std::io::BufRead;
        // HERALD_TEST_LOGS=DIR keeps its log in DIR (for debugging).
        let logs = std::env::var("HERALD_TEST_LOGS").ok();
        let mut child = Command::new(BIN)
            .args(["push", "--config", config.to_str().unwrap(), "--metrics-listen", "127.0.0.1:0", "--name", name])
            .env("RUST_LOG", if logs.is_some() { "info" } else { "error" })
            .stdout(std::process::Stdio::piped())
            .stderr(logs.map_or_else(std::process::Stdio::null, |dir| std::fs::File::create(format!("{dir}/push-{name}.log")).unwrap().into()))
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("herald push listening on http://").unwrap_or_else(|| panic!("herald push did not start: {line:?}")).to_owned();
        Self { child, addr }
    }

    /// The sum of a metric's series (0 when it has none yet).
    fn metric(&self, name: &str) -> f64 {
        let text = support::http(&self.addr, "GET", "/metrics", None, "");
        text.lines().filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }
}

/// Waits (up to two minutes) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within two minutes");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Accepted notifications (answered 200, not left hanging by a crash) per record number `n`
/// for one device, counted at the fake service.
fn accepted(fake: &herald_push::testing::Fake, device: &str) -> std::collections::BTreeMap<u32, usize> {
    let mut m = std::collections::BTreeMap::new();
    for s in fake.seen().into_iter().filter(|s| s.device == device && !s.held && s.status == 200) {
        *m.entry(s.data["n"].parse::<u32>().unwrap()).or_default() += 1;
    }
    m
}

/// The whole path with real processes: a Kafka broker, Redis, `herald edge` (registrations over
/// HTTP, a looking user's presence), two `herald push` replicas and fake APNs and FCM servers
/// that check each request. The active replica is killed with SIGKILL while records are being
/// published and notifications are in flight (the fakes hold their answers); the standby takes
/// over from the stored positions. Counted at the fakes: every record reaches each backgrounded
/// device exactly once (a request cut by the crash never got its answer, so it was not
/// accepted; it is sent again, with the same apns-id), the looking user and the user who may
/// not read the channel get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_pushing_process_mid_stream_sends_nothing_twice_and_skips_nothing() {
    use herald_bus_kafka::testing::{Broker, unique_topic};
    use herald_presence_redis::testing::RedisServer;
    use herald_push::testing::{BUNDLE_ID, Fake, PROJECT_ID};

    let broker = Broker::start();
    let redis = RedisServer::start();
    let (apns, fcm) = (Fake::apns().await, Fake::fcm().await);
    let dir = std::env::temp_dir().join(format!("herald-push-e2e-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("herald.toml");
    let (a, f) = (apns.apns_config(), fcm.fcm_config());
    std::fs::write(
        &config,
        format!(
            r#"[edge]
region = "eu"
[bus]
url = "kafka://{broker}"
topic = "{topic}"
partitions = 2
[presence]
url = "{redis}"
ttl_secs = 3
[push]
lease_ttl_secs = 2
# Every record of the burst counts here, none may be dropped by the per-device limit.
per_device_per_minute = 6000
[push.apns]
key_file = {apns_key:?}
key_id = "{key_id}"
team_id = "{team_id}"
endpoint = "{apns_url}"
ca_file = {apns_ca:?}
[push.fcm]
service_account_file = {sa:?}
endpoint = "{fcm_url}"
ca_file = {fcm_ca:?}
[[push.channels]]
pattern = "incidents"
title = "Incident {{/id}}"
body = "{{/summary}}"
data = {{ n = "{{/n}}" }}
collapse_key = "incident-{{/id}}"
"#,
            broker = broker.addr,
            topic = unique_topic("push"),
            redis = redis.url(),
            apns_key = a.key_file,
            key_id = a.key_id,
            team_id = a.team_id,
            apns_url = a.endpoint,
            apns_ca = a.ca_file.unwrap(),
            sa = f.service_account_file,
            fcm_url = f.endpoint,
            fcm_ca = f.ca_file.unwrap(),
        ),
    )
    .unwrap();
    let edge = support::spawn(&["edge", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap(), "--node", "edge-a"], &[("HERALD_JWT_SECRET", SECRET), ("HERALD_ADMIN_API_KEY", KEY)]);
    let register = |user: &str, readable: &str, platform: &str, device: &str, app: &str| {
        let token = support::token_for_user(SECRET, "acme", user, readable, "");
        let out = support::http(edge.addr(), "POST", "/v1/devices", Some(&token), &format!(r#"{{"platform":"{platform}","token":"{device}","app":"{app}"}}"#));
        assert!(out.starts_with("HTTP/1.1 201"), "{user}'s registration: {out}");
    };
    register("alice", "incident*", "apns", ALICE_PHONE, BUNDLE_ID);
    register("bob", "*", "fcm", BOB_PHONE, PROJECT_ID);
    register("carol", "incidents", "apns", CAROL_PHONE, BUNDLE_ID);
    register("eve", "other", "fcm", EVE_PHONE, PROJECT_ID);
    // Carol is looking at the channel: the socket brings her every record, no notification.
    let carol = herald_client::Client::connect(herald_client::ClientConfig::new(edge.url.clone(), support::token_for_user(SECRET, "acme", "carol", "incidents", "")));
    let mut carol_sub = carol.subscribe("incidents").await.unwrap();

    let first = Push::start(&config, "push-a");
    until("push-a takes the lease", || first.metric("herald_push_active") == 1.0).await;
    let second = Push::start(&config, "push-b");
    let publish = {
        let addr = edge.addr().to_owned();
        move |n: u32| {
            let body = format!(r#"{{"account":"acme","channel":"incidents","data":{{"id":"PAM4FGS","summary":"disk full","n":"{n}"}}}}"#);
            let out = support::http(&addr, "POST", "/v1/publish", Some(KEY), &body);
            assert!(out.starts_with("HTTP/1.1 200"), "publish {n}: {out}");
        }
    };
    // Record 0 until one reaches alice: the worker has stored its starting positions.
    until("the first notification", || {
        publish(0);
        std::thread::sleep(std::time::Duration::from_millis(300));
        !accepted(&apns, ALICE_PHONE).is_empty()
    })
    .await;

    // The counted stream, published at a steady pace while the worker is killed and replaced.
    let publisher = tokio::task::spawn_blocking({
        let publish = publish.clone();
        move || {
            for n in 1..=RECORDS {
                publish(n);
                std::thread::sleep(std::time::Duration::from_millis(40));
            }
        }
    });
    until("a third of the stream pushed", || accepted(&apns, ALICE_PHONE).keys().filter(|n| **n > 0).count() >= (RECORDS / 3) as usize).await;
    // From now on the services take requests and do not answer them: those are in flight.
    apns.hold();
    fcm.hold();
    until("requests in flight", || apns.seen().iter().chain(fcm.seen().iter()).any(|s| s.held)).await;
    // Every answered request is recorded (the sent counter moves after the marker is written).
    let answered = || apns.seen().iter().chain(fcm.seen().iter()).filter(|s| !s.held && s.status == 200).count() as f64;
    until("answered requests recorded", || first.metric("herald_push_sent_total") == answered()).await;
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    apns.release();
    fcm.release();
    until("push-b takes over", || second.metric("herald_push_active") == 1.0).await;
    publisher.await.unwrap();

    let complete = |fake: &Fake, device: &str| (1..=RECORDS).all(|n| accepted(fake, device).contains_key(&n));
    let missing = |fake: &Fake, device: &str| (1..=RECORDS).filter(|n| !accepted(fake, device).contains_key(n)).collect::<Vec<_>>();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !(complete(&apns, ALICE_PHONE) && complete(&fcm, BOB_PHONE)) {
        assert!(
            std::time::Instant::now() < deadline,
            "not every record was pushed: alice misses {:?}, bob misses {:?}",
            missing(&apns, ALICE_PHONE),
            missing(&fcm, BOB_PHONE)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Carol's socket got the whole stream, so the absence of her notifications is not silence.
    let mut got = std::collections::BTreeSet::new();
    while got.len() < RECORDS as usize {
        let m = tokio::time::timeout(std::time::Duration::from_secs(60), carol_sub.next_message()).await.expect("carol's records").unwrap();
        let data: serde_json::Value = serde_json::from_str(m.data.get()).unwrap();
        if let Some(n) = data["n"].as_str().and_then(|n| n.parse::<u32>().ok()).filter(|n| *n > 0) {
            got.insert(n);
        }
    }
    // Let the second worker finish anything still queued before counting duplicates.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for (fake, device) in [(&apns, ALICE_PHONE), (&fcm, BOB_PHONE)] {
        let counts = accepted(fake, device);
        for n in 1..=RECORDS {
            assert_eq!(counts.get(&n), Some(&1), "record {n} reached {device} {:?} times (accepted at the service)", counts.get(&n));
        }
        let resent: Vec<_> = fake.seen().into_iter().filter(|s| s.device == device && s.held).collect();
        for r in &resent {
            let again = fake.seen().into_iter().find(|s| s.device == device && !s.held && s.data == r.data).expect("a request cut by the crash is sent again");
            assert_eq!(again.id, r.id, "the resend carries the same apns-id");
        }
    }
    assert!(accepted(&apns, CAROL_PHONE).is_empty(), "carol was looking: no notification");
    assert!(accepted(&fcm, EVE_PHONE).is_empty() && fcm.seen().iter().all(|s| s.device != EVE_PHONE), "eve may not read the channel: nothing ever sent");
    assert_eq!((apns.violations(), fcm.violations()), (vec![], vec![]), "every request as the real services require");
    carol.close().await;
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}
