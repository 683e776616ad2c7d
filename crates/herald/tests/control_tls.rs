//! The control plane over TLS, with real processes: three `herald control` members that call
//! each other over mutual TLS, an edge and `herald ctl` that verify them, clients without the
//! CA or without a trusted certificate refused with a clear error, a member's certificate
//! replaced on disk and used by the next connection, and `--check` naming a bad file or flag.

mod support;

use herald_bus_kafka::testing::free_port;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{ADMIN_TOKEN, BIN, EDGE_TOKEN, member, spawn};

const SECRET: &str = "control-tls-test-secret-0123456789";
const PATIENCE: Duration = Duration::from_secs(30);

/// Certificates for one test, in a directory of their own.
struct Pki {
    dir: PathBuf,
}

type Ca = (rcgen::Certificate, rcgen::KeyPair);

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-control-tls-{name}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }

    /// Writes `file` as a Secret update does: a new file renamed over the old one.
    fn write(&self, file: &str, text: &str) {
        let tmp = self.dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.join(file)).unwrap();
    }

    /// A CA, written to `<name>.pem`.
    fn ca(&self, name: &str) -> Ca {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        self.write(&format!("{name}.pem"), &cert.pem());
        (cert, key)
    }

    /// A certificate for 127.0.0.1 (members) or nothing in particular (clients), signed by `ca`,
    /// written to `<name>.pem` and `<name>.key`.
    fn leaf(&self, ca: &Ca, name: &str) {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.signed_by(&key, &ca.0, &ca.1).unwrap();
        self.write(&format!("{name}.key"), &key.serialize_pem());
        self.write(&format!("{name}.pem"), &cert.pem());
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `herald ctl --json` with TLS flags: (exit ok, stdout, stderr). Refusals must come back
/// quickly, not hang.
fn ctl_with(control: &str, tls: &[&str], args: &[&str]) -> (bool, String, String) {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["ctl", "--control", control, "--json"])
        .args(tls)
        .args(args)
        .env("HERALD_CONTROL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("HERALD_CONTROL_CA")
        .env_remove("HERALD_CONTROL_CERT")
        .env_remove("HERALD_CONTROL_KEY")
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "ctl {args:?} took {:?}", started.elapsed());
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `ctl_with`, retried while the control plane elects a leader; its JSON output.
fn ctl(control: &str, tls: &[&str], args: &[&str]) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (ok, out, err) = ctl_with(control, tls, args);
        if ok {
            return serde_json::from_str(&out).unwrap_or_else(|_| panic!("ctl {args:?} printed {out:?}"));
        }
        assert!(err.contains("no leader") && Instant::now() < deadline, "ctl {args:?} failed: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ctl_with` that must fail; its error.
fn refused(control: &str, tls: &[&str]) -> String {
    let (ok, _, err) = ctl_with(control, tls, &["status"]);
    assert!(!ok, "ctl {tls:?} was let in");
    err
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("herald-{name}-{:08x}", rand::random::<u32>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_edges_and_ctl_work_over_mutual_tls_and_strangers_are_refused_with_the_reason() {
    let pki = Pki::new("mtls");
    let ca = pki.ca("ca");
    let other = pki.ca("other-ca");
    pki.leaf(&ca, "member");
    pki.leaf(&ca, "operator");
    pki.leaf(&ca, "edge");
    pki.leaf(&other, "stranger");
    let data = temp_dir("ctls");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let control = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let init: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1)).collect();
    let init = init.join(",");
    let (cert, key, ca_file) = (pki.path("member.pem"), pki.path("member.key"), pki.path("ca.pem"));
    let tls_flags = ["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca_file, "--tls-client-ca", &ca_file];
    let _members: Vec<_> = ports.iter().enumerate().map(|(i, p)| member(i as u64 + 1, *p, &data, (i == 0).then_some(init.as_str()), &tls_flags)).collect();
    let (op_cert, op_key) = (pki.path("operator.pem"), pki.path("operator.key"));
    let operator = ["--ca", &ca_file, "--cert", &op_cert, "--key", &op_key];

    // The members elect a leader over TLS (Raft between them needs their client certificates).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = ctl(&control, &operator, &["status"]);
        if status["leader"] != 0 {
            assert_eq!(status["members"].as_array().unwrap().len(), 3);
            break;
        }
        assert!(Instant::now() < deadline, "no leader elected: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A config change is committed and every member applies it.
    ctl(&control, &operator, &["account", "acme"]);
    let index = ctl(&control, &operator, &["status"])["last_log_index"].as_u64().unwrap();
    for p in &ports {
        let one = format!("127.0.0.1:{p}");
        let deadline = Instant::now() + PATIENCE;
        while ctl(&one, &operator, &["status"])["last_applied"].as_u64().unwrap() < index {
            assert!(Instant::now() < deadline, "member {one} never applied index {index}");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Any member answers, forwarding to the leader over TLS when it is not the leader.
        assert!(ctl(&one, &operator, &["accounts"]).as_array().unwrap().iter().any(|a| a["name"] == "acme"));
    }

    // An edge with [control.tls] registers and shows in `herald ctl nodes`.
    let edge_toml = pki.dir.join("edge.toml");
    let endpoints: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    std::fs::write(
        &edge_toml,
        format!(
            "[control]\nendpoints = [{}]\n[control.tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
            endpoints.join(", "),
            ca_file,
            pki.path("edge.pem"),
            pki.path("edge.key")
        ),
    )
    .unwrap();
    let _edge = spawn(
        &["edge", "--config", edge_toml.to_str().unwrap(), "--listen", "127.0.0.1:0", "--bus", "memory", "--node", "edge-tls"],
        &[("HERALD_JWT_SECRET", SECRET), ("HERALD_CONTROL_EDGE_TOKEN", EDGE_TOKEN)],
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let nodes = ctl(&control, &operator, &["nodes"]);
        if nodes.as_array().unwrap().iter().any(|n| n["node"] == "edge-tls" && n["healthy"] == true) {
            break;
        }
        assert!(Instant::now() < deadline, "the edge never registered: {nodes}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Clients that do not trust the members, or that the members do not trust, are refused
    // with the reason and what to do about it.
    let first = format!("127.0.0.1:{}", ports[0]);
    let err = refused(&first, &[]);
    assert!(err.contains("--ca"), "plaintext against TLS: {err}");
    let other_ca = pki.path("other-ca.pem");
    let err = refused(&first, &["--ca", &other_ca, "--cert", &op_cert, "--key", &op_key]);
    assert!(err.contains("UnknownIssuer") && err.contains("other-ca.pem"), "the wrong CA: {err}");
    let err = refused(&first, &["--ca", &ca_file]);
    assert!(err.contains("requires a client certificate"), "no client certificate: {err}");
    let (s_cert, s_key) = (pki.path("stranger.pem"), pki.path("stranger.key"));
    let err = refused(&first, &["--ca", &ca_file, "--cert", &s_cert, "--key", &s_key]);
    assert!(err.contains("refused this client certificate"), "a certificate from another CA: {err}");
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_replaced_member_certificate_is_used_by_the_next_connection_without_a_restart() {
    let pki = Pki::new("rotate");
    let old_ca = pki.ca("old-ca");
    let new_ca = pki.ca("new-ca");
    pki.leaf(&old_ca, "member");
    let data = temp_dir("ctls-rotate");
    let port = free_port();
    let (cert, key, ca_file) = (pki.path("member.pem"), pki.path("member.key"), pki.path("old-ca.pem"));
    // TLS without client certificates: the CA alone lets a client in.
    let _member = member(1, port, &data, Some(&format!("1=127.0.0.1:{port}")), &["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca_file]);
    let control = format!("127.0.0.1:{port}");
    let (old, new) = (pki.path("old-ca.pem"), pki.path("new-ca.pem"));
    // `status` answers before the single member has elected itself: wait for the leader.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = ctl(&control, &["--ca", &old], &["status"]);
        if status["leader"] == 1 {
            break;
        }
        assert!(status["leader"] == 0 && Instant::now() < deadline, "never led by member 1: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(refused(&control, &["--ca", &new]).contains("UnknownIssuer"), "not yet the new CA's certificate");

    // The certificate and key are replaced with ones the new CA signed, as a Secret update does.
    pki.leaf(&new_ca, "member");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (ok, _, err) = ctl_with(&control, &["--ca", &new], &["status"]);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was never served: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(refused(&control, &["--ca", &old]).contains("UnknownIssuer"), "the old certificate is no longer served");
    let _ = std::fs::remove_dir_all(&data);
}

/// `herald control --check` / `herald edge --check`: exit code and stderr.
fn check(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("HERALD_CONTROL_CA").env_remove("HERALD_CONTROL_CERT").env_remove("HERALD_CONTROL_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn check_names_the_flag_or_field_of_a_bad_tls_file_and_exits_64() {
    let pki = Pki::new("check");
    let ca = pki.ca("ca");
    pki.leaf(&ca, "member");
    pki.leaf(&ca, "other");
    let p = |f: &str| pki.path(f);
    let data = pki.dir.join("data");
    let control = |extra: &[&str]| {
        let mut args = vec!["control", "--id", "1", "--data", data.to_str().unwrap(), "--check"];
        args.extend_from_slice(extra);
        check(&args, &[])
    };
    let (cert, key, ca_file, other_key, missing) = (p("member.pem"), p("member.key"), p("ca.pem"), p("other.key"), p("missing.pem"));
    let (code, err) = control(&["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca_file, "--tls-client-ca", &ca_file]);
    assert_eq!(code, Some(0), "{err}");
    for (flags, needle) in [
        (vec!["--tls-cert", &missing, "--tls-key", &key, "--tls-ca", &ca_file], "--tls-cert"),
        (vec!["--tls-cert", &cert, "--tls-ca", &ca_file], "--tls-key"),
        (vec!["--tls-cert", &cert, "--tls-key", &cert, "--tls-ca", &ca_file], "--tls-key"),
        (vec!["--tls-cert", &cert, "--tls-key", &other_key, "--tls-ca", &ca_file], "do not go together"),
        (vec!["--tls-cert", &cert, "--tls-key", &key], "--tls-ca"),
        (vec!["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca_file, "--tls-client-ca", &missing], "--tls-client-ca"),
        (vec!["--tls-client-ca", &ca_file], "need --tls-cert"),
    ] {
        let (code, err) = control(&flags);
        assert_eq!(code, Some(64), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    let (code, err) = check(&["control", "--id", "1", "--data", data.to_str().unwrap(), "--check"], &[("HERALD_CONTROL_TLS_CERT", &cert)]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("--tls-key"), "{err}");

    let toml = pki.dir.join("edge.toml");
    let edge = |tls: &str, env: &[(&str, &str)]| {
        std::fs::write(&toml, format!("[control]\nendpoints = [\"127.0.0.1:7100\"]\n{tls}")).unwrap();
        let mut env = env.to_vec();
        env.push(("HERALD_JWT_SECRET", SECRET));
        check(&["edge", "--config", toml.to_str().unwrap(), "--check"], &env)
    };
    let section = |ca: &str, cert: &str, key: &str| format!("[control.tls]\nca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}\n");
    let (code, err) = edge(&section(&ca_file, &cert, &key), &[]);
    assert_eq!(code, Some(0), "{err}");
    for (tls, env, needle) in [
        (section(&missing, &cert, &key), vec![], "control.tls.ca_file"),
        (section(&ca_file, &missing, &key), vec![], "control.tls.cert_file"),
        (section(&ca_file, &cert, &cert), vec![], "control.tls.key_file"),
        (format!("[control.tls]\nca_file = {ca_file:?}\ncert_file = {cert:?}\n"), vec![], "control.tls.key_file"),
        (String::new(), vec![("HERALD_CONTROL_CA", missing.as_str())], "control.tls.ca_file"),
    ] {
        let (code, err) = edge(&tls, &env);
        assert_eq!(code, Some(64), "{tls} {env:?}: {err}");
        assert!(err.contains(needle), "{tls} {env:?}: {err}");
    }
}
