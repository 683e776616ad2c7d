//! `herald control` (a control-plane node), `herald ctl` (the operator's client) and the edge's
//! side of the control plane (the agent's hooks into a running edge).

use anyhow::Context;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use herald_control::agent::{AgentConfig, EdgeHooks};
use herald_control::pb::admin_client::AdminClient;
use herald_control::pb::{self, AccountLimits};
use herald_control::tls::{ClientTls, ClientTlsFiles, PemFile, ServerTls, ServerTlsFiles};
use herald_control::{ControlConfig, ControlNode, MemberTls};
use herald_core::AccountId;
use herald_edge::Edge;

use crate::{ControlArgs, CtlArgs, CtlCommand};

/// `println!` that ignores a closed stdout (`herald ctl nodes | head -1` must not panic).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `herald control`: runs one control-plane node until SIGINT or SIGTERM.
pub async fn control(a: ControlArgs) -> anyhow::Result<()> {
    let tls = member_tls(&a).map_err(anyhow::Error::msg)?;
    let presence = presence_login(&a).map_err(anyhow::Error::msg)?;
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
pub fn check(a: &ControlArgs) -> Result<(), String> {
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
    let login = crate::run::redis_login(presence.login(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?);
    herald_presence_redis::client(&url, &login).map_err(|e| format!("--presence: {e}"))?;
    Ok(Some((url, login)))
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

/// `herald ctl …`: exit 0 on success, 1 when the control plane refused or could not be reached.
pub async fn ctl(a: CtlArgs) -> ExitCode {
    match ctl_inner(a).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald ctl: {e:#}");
            ExitCode::from(1)
        }
    }
}

type Admin = AdminClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, herald_control::network::Bearer>>;

/// `herald ctl`'s TLS from `--ca`, `--cert` and `--key` (none of them: plaintext, or the
/// public web PKI for `https://` members).
fn ctl_tls(a: &CtlArgs) -> anyhow::Result<Option<Arc<ClientTls>>> {
    if a.ca.is_none() && a.cert.is_none() && a.key.is_none() {
        return Ok(None);
    }
    if a.ca.is_none() && !a.control.split(',').map(str::trim).all(|e| e.starts_with("https://")) {
        anyhow::bail!("--cert and --key need TLS to every member: give the control plane's CA with --ca (HERALD_CONTROL_CA), or write the members https://HOST:PORT");
    }
    let files = ClientTlsFiles {
        ca: a.ca.as_ref().map(|p| PemFile::new("--ca", p)),
        cert: a.cert.as_ref().map(|p| PemFile::new("--cert", p)),
        key: a.key.as_ref().map(|p| PemFile::new("--key", p)),
    };
    Ok(Some(Arc::new(ClientTls::new(files)?)))
}

/// What went wrong, with the cause a transport error hides in its sources, and what to do
/// about the usual TLS mistakes.
fn explain(s: &tonic::Status, tls: Option<&ClientTls>) -> String {
    let mut text = format!("{}: {}", code_name(s.code()), s.message());
    let transport = std::error::Error::source(s).is_some();
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        let m = e.to_string();
        if !text.contains(&m) && m != "transport error" {
            text = format!("{text}: {m}");
        }
        source = e.source();
    }
    let hint = if text.contains("CertificateRequired") || text.contains("peer sent no certificates") {
        Some("the control plane requires a client certificate (mutual TLS): give one with --cert and --key (HERALD_CONTROL_CERT, HERALD_CONTROL_KEY)".to_owned())
    } else if text.contains("alert: UnknownCA") || text.contains("alert: BadCertificate") || text.contains("alert: CertificateUnknown") {
        Some("the control plane refused this client certificate: it must be signed by the CA the members trust (their --tls-client-ca)".to_owned())
    } else if text.contains("invalid peer certificate") {
        Some(match tls.and_then(ClientTls::ca) {
            Some(ca) => format!("the control plane's certificate does not check out against {} ({}): is that the CA that signed it, and does the certificate name the address used here?", ca.path.display(), ca.name),
            None => "the control plane's certificate is not trusted by the public web PKI: give its CA with --ca (HERALD_CONTROL_CA)".to_owned(),
        })
    } else if transport && tls.is_none() && !text.contains("tcp connect error") {
        Some("if the control plane serves TLS, give its CA with --ca (HERALD_CONTROL_CA)".to_owned())
    } else {
        None
    };
    match hint {
        Some(h) => format!("{text} ({h})"),
        None => text,
    }
}

async fn admin(endpoints: &str, token: Option<&str>, tls: Option<&Arc<ClientTls>>) -> anyhow::Result<Admin> {
    // The first member that answers; any member can take any call.
    let mut last = None;
    for e in endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let ch = herald_control::network::channel(e, tls)?;
        let mut c = AdminClient::with_interceptor(ch, herald_control::network::Bearer(token.map(Arc::from)));
        match c.status(pb::StatusRequest {}).await {
            Ok(_) => return Ok(c),
            Err(s) if s.code() == tonic::Code::Unauthenticated => anyhow::bail!("{e}: {}", explain(&s, tls.map(|t| &**t))),
            Err(s) => last = Some(anyhow::anyhow!("{e}: {}", explain(&s, tls.map(|t| &**t)))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no control-plane endpoint given")))
}

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    r.map(|r| r.into_inner()).map_err(|s| anyhow::anyhow!("{}: {}", code_name(s.code()), s.message()))
}

fn code_name(c: tonic::Code) -> &'static str {
    match c {
        tonic::Code::InvalidArgument => "invalid",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::Unauthenticated => "unauthenticated (set HERALD_CONTROL_ADMIN_TOKEN)",
        _ => "error",
    }
}

fn account_json(a: &pb::Account) -> serde_json::Value {
    let l = a.limits.unwrap_or_default();
    serde_json::json!({
        "name": a.name,
        "keys": a.keys.iter().map(|k| serde_json::json!({"id": k.id, "sha256": k.sha256})).collect::<Vec<_>>(),
        "limits": {"connections": l.connections, "publish_per_second": l.publish_per_second, "max_subscriptions": l.max_subscriptions, "max_message_bytes": l.max_message_bytes},
        "token_keys": a.token_keys.iter().map(|k| serde_json::json!({"kid": k.kid, "algorithm": k.algorithm})).collect::<Vec<_>>(),
    })
}

fn status_json(s: &pb::ClusterStatus) -> serde_json::Value {
    serde_json::json!({
        "this_node": s.this_node, "leader": s.leader, "term": s.term, "last_log_index": s.last_log_index, "last_applied": s.last_applied,
        "members": s.members.iter().map(|m| serde_json::json!({"id": m.id, "address": m.address, "voter": m.voter})).collect::<Vec<_>>(),
    })
}

/// Prints rows as an aligned table.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<String>| cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned();
    out!("{}", line(header.iter().map(|s| s.to_string()).collect()));
    for r in rows {
        out!("{}", line(r));
    }
}

fn print_status(s: &pb::ClusterStatus, json: bool) {
    if json {
        out!("{}", status_json(s));
        return;
    }
    out!("leader {} · term {} · log index {} · applied {} · answered by {}", s.leader, s.term, s.last_log_index, s.last_applied, s.this_node);
    table(
        &["ID", "ADDRESS", "ROLE"],
        s.members
            .iter()
            .map(|m| vec![m.id.to_string(), m.address.clone(), if m.id == s.leader { "leader" } else if m.voter { "voter" } else { "learner" }.to_owned()])
            .collect(),
    );
}

fn print_accounts(list: &[pb::Account], json: bool) {
    if json {
        out!("{}", serde_json::Value::Array(list.iter().map(account_json).collect()));
        return;
    }
    let n = |v: u64| if v == 0 { "default".to_owned() } else { v.to_string() };
    table(
        &["ACCOUNT", "KEYS", "TOKEN KEYS", "CONNECTIONS", "PUBLISH/S", "SUBSCRIPTIONS", "MESSAGE BYTES"],
        list.iter()
            .map(|a| {
                let l = a.limits.unwrap_or_default();
                vec![
                    a.name.clone(),
                    a.keys.iter().map(|k| k.id.clone()).collect::<Vec<_>>().join(","),
                    a.token_keys.iter().map(|k| format!("{}:{}", k.kid, k.algorithm)).collect::<Vec<_>>().join(","),
                    n(l.connections),
                    n(l.publish_per_second),
                    n(l.max_subscriptions.into()),
                    n(l.max_message_bytes.into()),
                ]
            })
            .collect(),
    );
}

async fn ctl_inner(a: CtlArgs) -> anyhow::Result<()> {
    let tls = ctl_tls(&a)?;
    let mut c = admin(&a.control, a.token.as_deref(), tls.as_ref()).await?;
    let json = a.json;
    match a.command {
        CtlCommand::Status => print_status(&rpc(c.status(pb::StatusRequest {}).await)?, json),
        CtlCommand::Nodes => {
            let nodes = rpc(c.list_nodes(pb::ListNodesRequest {}).await)?.nodes;
            if json {
                let v: Vec<_> = nodes
                    .iter()
                    .map(|n| {
                        let i = n.node.clone().unwrap_or_default();
                        serde_json::json!({"node": i.node_id, "region": i.region, "address": i.address, "capacity": i.capacity,
                            "healthy": n.healthy, "draining": n.draining, "connections": n.connections, "last_heartbeat_ms_ago": n.last_heartbeat_ms_ago})
                    })
                    .collect();
                out!("{}", serde_json::Value::Array(v));
            } else {
                table(
                    &["NODE", "REGION", "ADDRESS", "HEALTH", "STATE", "CONNECTIONS", "LAST HEARTBEAT"],
                    nodes
                        .iter()
                        .map(|n| {
                            let i = n.node.clone().unwrap_or_default();
                            vec![
                                i.node_id,
                                i.region,
                                i.address,
                                if n.healthy { "healthy" } else { "unhealthy" }.into(),
                                if n.draining { "draining" } else { "active" }.into(),
                                n.connections.to_string(),
                                if n.last_heartbeat_ms_ago < 0 { "never".into() } else { format!("{:.1}s ago", n.last_heartbeat_ms_ago as f64 / 1000.0) },
                            ]
                        })
                        .collect(),
                );
            }
        }
        CtlCommand::Drain { node } => {
            rpc(c.drain(pb::DrainRequest { node_id: node.clone() }).await)?;
            if json { out!("{}", serde_json::json!({"drained": node})) } else { out!("drain ordered for {node}: it sends reconnect to its clients and stops taking new ones") }
        }
        CtlCommand::Accounts => print_accounts(&rpc(c.list_accounts(pb::ListAccountsRequest {}).await)?.accounts, json),
        CtlCommand::Account { name, connections, publish_per_second, max_subscriptions, max_message_bytes } => {
            AccountId::new(&name).context("account name")?;
            let limits = AccountLimits { connections, publish_per_second, max_subscriptions, max_message_bytes };
            let acct = rpc(c.put_account(pb::PutAccountRequest { name, limits: Some(limits) }).await)?;
            print_accounts(&[acct], json);
        }
        CtlCommand::AddKey { account } => {
            let r = rpc(c.add_key(pb::AddKeyRequest { account }).await)?;
            if json {
                out!("{}", serde_json::json!({"key": r.key, "key_id": r.key_id}));
            } else {
                out!("{}\n(key id {}; shown once: only its digest is stored. Edges accept it within a second.)", r.key, r.key_id);
            }
        }
        CtlCommand::RevokeKey { account, key_id } => {
            let acct = rpc(c.revoke_key(pb::RevokeKeyRequest { account, key_id }).await)?;
            print_accounts(&[acct], json);
        }
        CtlCommand::AddTokenKey { account, kid, algorithm, public_key_file } => {
            let id = AccountId::new(&account).context("account name")?;
            let pem = std::fs::read_to_string(&public_key_file).with_context(|| format!("cannot read {}", public_key_file.display()))?;
            // Checked here exactly as edges will parse it, so a bad key is refused before it is stored.
            herald_edge::keys::account_public_key(id, &kid, &algorithm, &pem).map_err(|e| anyhow::anyhow!("{e}"))?;
            let key = pb::TokenKey { kid, algorithm, public_key_pem: pem };
            print_accounts(&[rpc(c.add_token_key(pb::AddTokenKeyRequest { account, key: Some(key) }).await)?], json);
        }
        CtlCommand::RevokeTokenKey { account, kid } => {
            print_accounts(&[rpc(c.revoke_token_key(pb::RevokeTokenKeyRequest { account, kid }).await)?], json);
        }
        CtlCommand::Presence { account, channel, limit } => {
            let r = rpc(c.presence(pb::PresenceRequest { account, channel, limit }).await)?;
            if json {
                let members: Vec<_> = r.members.iter().map(|m| serde_json::json!({"connection_id": m.connection_id, "user": m.user})).collect();
                out!("{}", serde_json::json!({"occupancy": r.occupancy, "members": members}));
            } else {
                out!("{} present", r.occupancy);
                table(&["USER", "CONNECTION"], r.members.into_iter().map(|m| vec![m.user, m.connection_id]).collect());
            }
        }
        CtlCommand::AddMember { id, address } => print_status(&rpc(c.add_member(pb::AddMemberRequest { id, address }).await)?, json),
        CtlCommand::RemoveMember { id } => print_status(&rpc(c.remove_member(pb::RemoveMemberRequest { id }).await)?, json),
    }
    Ok(())
}

/// The agent's hooks into a running edge.
struct Hooks(Arc<Edge>);

impl EdgeHooks for Hooks {
    fn apply_config(&self, config: &pb::ConfigSnapshot) {
        let mut keys = Vec::new();
        for a in &config.accounts {
            match AccountId::new(&a.name) {
                Ok(id) => keys.extend(a.keys.iter().map(|k| (k.sha256.clone(), id.clone()))),
                Err(e) => tracing::warn!(account = %a.name, error = %e, "control plane: account name not usable here; skipped"),
            }
        }
        let bad = self.0.api_keys.set_managed(keys);
        let mut token_keys = Vec::new();
        for a in &config.accounts {
            let Ok(id) = AccountId::new(&a.name) else { continue };
            for k in &a.token_keys {
                match herald_edge::keys::account_public_key(id.clone(), &k.kid, &k.algorithm, &k.public_key_pem) {
                    Ok(key) => token_keys.push(key),
                    Err(e) => tracing::warn!(account = %a.name, kid = %k.kid, error = %e, "control plane: token key not usable; skipped"),
                }
            }
        }
        self.0.verifier.set_managed_keys(token_keys);
        // 0 means "the edge's default": leave the field unset.
        let some = |v: u64| (v > 0).then_some(v);
        let limits = config
            .accounts
            .iter()
            .map(|a| {
                let l = a.limits.unwrap_or_default();
                let over = herald_config::AccountLimits {
                    connections: some(l.connections).map(|v| v as usize),
                    publish_per_second: some(l.publish_per_second).map(|v| v.min(u32::MAX as u64) as u32),
                    max_subscriptions: some(l.max_subscriptions.into()).map(|v| v as usize),
                    // Never above the frame limit, whatever the control plane says.
                    max_message_bytes: some(l.max_message_bytes.into()).map(|v| (v as usize).min(self.0.config.max_frame_bytes)),
                };
                (a.name.clone(), over)
            })
            .collect();
        self.0.limits.set_managed(limits);
        if bad > 0 {
            tracing::warn!(bad, "control plane: keys that are not SHA-256 digests were skipped");
        }
        tracing::info!(version = config.version, accounts = config.accounts.len(), "control plane: config applied");
    }

    fn connections(&self) -> u64 {
        self.0.session_count() as u64
    }

    fn drain(&self) {
        self.0.drain.cancel();
    }
}

/// The edge's TLS to the control plane from `[control.tls]` (none when it sets no file). The
/// files are read now: an error names the field of the one that cannot be used.
pub fn agent_tls(config: &herald_config::Config) -> Result<Option<Arc<ClientTls>>, String> {
    let t = &config.control.tls;
    if t.ca_file.is_none() && t.cert_file.is_none() && t.key_file.is_none() {
        return Ok(None);
    }
    let files = ClientTlsFiles {
        ca: t.ca_file.as_ref().map(|p| PemFile::new("control.tls.ca_file", p)),
        cert: t.cert_file.as_ref().map(|p| PemFile::new("control.tls.cert_file", p)),
        key: t.key_file.as_ref().map(|p| PemFile::new("control.tls.key_file", p)),
    };
    ClientTls::new(files).map(|t| Some(Arc::new(t))).map_err(|e| e.to_string())
}

/// Starts the edge's agent when `[control]` has endpoints.
pub fn start_agent(
    config: &herald_config::Config,
    edge: &Arc<Edge>,
    listen: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if config.control.endpoints.is_empty() {
        return Ok(None);
    }
    let address = if config.control.advertise.is_empty() { format!("http://{listen}") } else { config.control.advertise.clone() };
    let node = pb::NodeInfo {
        node_id: config.edge.node.clone(),
        region: config.edge.region.clone(),
        address,
        capacity: 0,
        instance: format!("{:016x}", rand::random::<u64>()),
    };
    let tls = agent_tls(config).map_err(anyhow::Error::msg)?;
    let cfg = AgentConfig { endpoints: config.control.endpoints.clone(), node, token: config.control.token.clone(), tls };
    Ok(Some(tokio::spawn(herald_control::agent::run(cfg, Arc::new(Hooks(edge.clone())), stop))))
}
