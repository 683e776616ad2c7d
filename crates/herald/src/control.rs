//! `herald control`: one control-plane member (Raft, the gRPC services, an optional presence
//! store for `herald ctl presence|connections|disconnect|revoke`), from flags and environment; `--check` validates them.

use anyhow::Context;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use herald_config::Config;
use herald_control::tls::{ClientTls, ClientTlsFiles, PemFile, ServerTls, ServerTlsFiles};
use herald_control::{ControlConfig, ControlNode, MemberTls};

use crate::ControlArgs;
use crate::common::out;
use crate::common::{config_ok, init_tracing, redis_login, runtime, usage_error};

/// `herald control`: checks, then runs the member until SIGINT or SIGTERM.
pub fn run(a: ControlArgs) -> ExitCode {
    let mut config = Config::default();
    if let Err(e) = config.apply_env(|k| std::env::var(k).ok()) {
        return usage_error(e);
    }
    if let Err(e) = check(&a) {
        return usage_error(e);
    }
    if a.check {
        return config_ok("control");
    }
    init_tracing(&config);
    let rt = match runtime(true) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(member(a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one control-plane node until SIGINT or SIGTERM.
async fn member(a: ControlArgs) -> anyhow::Result<()> {
    let tls = member_tls(&a).map_err(anyhow::Error::msg)?;
    let presence = presence_login(&a).map_err(anyhow::Error::msg)?;
    let device_prefix = push_prefix(&a)?;
    let listener = tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("cannot listen on {}", a.listen))?;
    let advertise = a.advertise.unwrap_or_else(|| listener.local_addr().map(|x| x.to_string()).unwrap_or_default());
    let mut cfg = ControlConfig::new(a.id, advertise.clone(), a.data);
    cfg.tokens = herald_control::Tokens { cluster: a.cluster_token, edge: a.edge_token, admin: a.admin_token };
    for (name, t) in [("cluster", &cfg.tokens.cluster), ("edge", &cfg.tokens.edge), ("admin", &cfg.tokens.admin)] {
        if t.is_none() {
            tracing::warn!("no {name} token: that service is open to anyone who can reach {advertise} (docs/control-plane.md)");
        } else if t.as_ref().is_some_and(|t| t.len() < 16) {
            anyhow::bail!("the {name} token must be at least 16 characters");
        }
    }
    cfg.edge_heartbeat = Duration::from_millis(a.edge_heartbeat_ms);
    cfg.tls = tls;
    if cfg.tls.is_none() {
        tracing::warn!("no TLS (--tls-cert): tokens and config travel in plaintext to and from {advertise} (docs/control-plane.md)");
    }
    if let Some((url, login)) = presence {
        let opts = herald_presence_redis::RedisPresenceOptions { login, ..herald_presence_redis::RedisPresenceOptions::new(url) };
        let device_conn = herald_push::store::connect(&opts.url, &opts.login).map_err(|e| anyhow::anyhow!("--presence (device registry): {e}"))?;
        cfg.devices = Some(Arc::new(herald_push::RedisRegistry::new(device_conn, &device_prefix)));
        cfg.orders = Some(Arc::new(herald_presence_redis::RedisOrders::start(&opts).await.context("--presence (orders)")?));
        cfg.presence = Some(Arc::new(herald_presence_redis::RedisPresence::start(opts, &format!("control-{}", a.id)).await.context("--presence")?));
    }
    let node = ControlNode::start(cfg, listener).await?;
    if let Some(init) = a.init {
        let members = parse_members(&init)?;
        node.initialize(members).await.context("initialize")?;
    }
    out!("herald control {} listening on {advertise}", a.id);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    node.shutdown().await;
    Ok(())
}

/// Checks `herald control`'s flags and environment without starting anything (`--check`, and
/// before every start): the id, the token lengths, the `--init` list.
fn check(a: &ControlArgs) -> Result<(), String> {
    if a.id == 0 {
        return Err("--id must be a positive number".into());
    }
    for (name, t) in [("HERALD_CONTROL_CLUSTER_TOKEN", &a.cluster_token), ("HERALD_CONTROL_EDGE_TOKEN", &a.edge_token), ("HERALD_CONTROL_ADMIN_TOKEN", &a.admin_token)] {
        if t.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(format!("{name} must be at least 16 characters"));
        }
    }
    if let Some(init) = &a.init {
        let members = parse_members(init).map_err(|e| format!("{e:#}"))?;
        if !members.contains_key(&a.id) {
            return Err(format!("--init does not name this member (--id {})", a.id));
        }
    }
    if a.edge_heartbeat_ms < 100 {
        return Err("--edge-heartbeat-ms must be at least 100".into());
    }
    // The files are read now, so a missing or mismatched one fails here, naming its flag.
    member_tls(a)?;
    presence_login(a)?;
    Ok(())
}

/// `--presence` and its login from `--config`'s `[presence]` (or the environment), the password
/// and TLS files read now; `None` without `--presence`.
fn presence_login(a: &ControlArgs) -> Result<Option<(String, herald_presence_redis::RedisLogin)>, String> {
    let Some(url) = a.presence.clone() else { return Ok(None) };
    let mut presence = match &a.config {
        Some(p) => herald_config::Config::from_file(p).map_err(|e| e.to_string())?.presence,
        None => herald_config::PresenceConfig::default(),
    };
    presence.url = url.clone();
    presence.validate().map_err(|e| format!("--presence: {e}"))?;
    let login = redis_login(presence.login(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?);
    herald_presence_redis::client(&url, &login).map_err(|e| format!("--presence: {e}"))?;
    Ok(Some((url, login)))
}

/// The device registry's key prefix: `[push] prefix` of `--config` (the edges' and `herald
/// push`'s), else its default.
fn push_prefix(a: &ControlArgs) -> anyhow::Result<String> {
    Ok(match &a.config {
        Some(p) => herald_config::Config::from_file(p).map_err(|e| anyhow::anyhow!("{e}"))?.push.prefix,
        None => herald_config::PushConfig::default().prefix,
    })
}

/// A member's TLS from its flags (none without `--tls-cert`); an error names the flag at fault.
fn member_tls(a: &ControlArgs) -> Result<Option<MemberTls>, String> {
    let (cert, key) = match (&a.tls_cert, &a.tls_key) {
        (None, None) if a.tls_ca.is_some() || a.tls_client_ca.is_some() => {
            return Err("--tls-ca and --tls-client-ca need --tls-cert and --tls-key (HERALD_CONTROL_TLS_CERT, HERALD_CONTROL_TLS_KEY): TLS on this member's port".into());
        }
        (None, None) => return Ok(None),
        (Some(_), None) => return Err("--tls-cert needs --tls-key (HERALD_CONTROL_TLS_KEY): the certificate's private key".into()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert (HERALD_CONTROL_TLS_CERT): the certificate of that key".into()),
        (Some(c), Some(k)) => (PemFile::new("--tls-cert", c), PemFile::new("--tls-key", k)),
    };
    let Some(ca) = &a.tls_ca else {
        return Err("--tls-ca (HERALD_CONTROL_TLS_CA) is required with --tls-cert: members call each other and check each other's certificate against it".into());
    };
    let client_ca = a.tls_client_ca.as_ref().map(|p| PemFile::new("--tls-client-ca", p));
    let server = ServerTls::new(ServerTlsFiles { cert: cert.clone(), key: key.clone(), client_ca }).map_err(|e| e.to_string())?;
    // Towards the other members this member is a client: it presents the same certificate.
    let peers = ClientTls::new(ClientTlsFiles { ca: Some(PemFile::new("--tls-ca", ca)), cert: Some(cert), key: Some(key) }).map_err(|e| e.to_string())?;
    Ok(Some(MemberTls { server: Arc::new(server), peers: Arc::new(peers) }))
}

/// `1=host:port,2=host:port,…`
fn parse_members(s: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    s.split(',')
        .map(|m| {
            let (id, addr) = m.split_once('=').with_context(|| format!("--init: {m:?} is not ID=HOST:PORT"))?;
            Ok((id.trim().parse().with_context(|| format!("--init: bad id {id:?}"))?, addr.trim().to_owned()))
        })
        .collect()
}

