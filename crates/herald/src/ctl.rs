//! `herald ctl`: the operator's client of the control plane (status, nodes, accounts, keys,
//! drains, members, presence, a backend's disconnects and revocations, a user's connections), as
//! tables or JSON.

use herald_http_client::query_value as q;
use anyhow::Context;
use std::process::ExitCode;
use std::sync::Arc;

use herald_control::pb::admin_client::AdminClient;
use herald_control::pb::{self, AccountLimits};
use herald_control::tls::{ClientTls, ClientTlsFiles, PemFile};
use herald_core::AccountId;

use crate::common::out;
use crate::common::runtime;
use crate::{CtlArgs, CtlCommand};

/// `herald ctl …`: exit 0 on success, 1 when the control plane refused or could not be reached.
pub fn run(a: CtlArgs) -> ExitCode {
    match runtime(false) {
        Ok(rt) => rt.block_on(ctl(a)),
        Err(code) => code,
    }
}

async fn ctl(a: CtlArgs) -> ExitCode {
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

/// GETs `path` from an edge with the API key; the JSON answer, or the edge's error.
async fn edge_get(e: &crate::EdgeApi, path: &str) -> anyhow::Result<serde_json::Value> {
    let key = e.api_key.as_deref().context("an API key is needed: --api-key or HERALD_ADMIN_API_KEY")?;
    let target = herald_http_client::Target::new(&format!("{}{path}", e.edge.trim_end_matches('/')), e.edge_ca.as_deref().and_then(|p| p.to_str()))
        .map_err(|err| anyhow::anyhow!("--edge: {err}"))?;
    let mut conn = herald_http_client::Connection::new(std::sync::Arc::new(target), std::time::Duration::from_secs(10));
    let auth = http::HeaderValue::from_str(&format!("Bearer {key}")).context("the API key is not a header value")?;
    let r = conn.send(http::Method::GET, None, &[(http::header::AUTHORIZATION, auth)], bytes::Bytes::new(), 64 << 20).await.map_err(|err| anyhow::anyhow!("{}: {err}", e.edge))?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).with_context(|| format!("{} answered {} without JSON", e.edge, r.status))?;
    if !r.status.is_success() {
        anyhow::bail!("{}: {} ({})", v["error"]["code"].as_str().unwrap_or("error"), v["error"]["message"].as_str().unwrap_or(""), r.status);
    }
    Ok(v)
}

/// `herald ctl history` and `herald ctl channel`: through an edge's HTTP API.
async fn edge_command(command: &CtlCommand, json: bool) -> anyhow::Result<()> {
    match command {
        CtlCommand::History { account, channel, limit, before, since, edge } => {
            let mut path = format!("/v1/history?account={}&channel={}&limit={limit}", q(account), q(channel));
            for (k, v) in [("before", before), ("since", since)] {
                if let Some(v) = v {
                    path.push_str(&format!("&{k}={}", q(v)));
                }
            }
            let v = edge_get(edge, &path).await?;
            if json {
                out!("{v}");
            } else {
                let rows = v["messages"].as_array().map(|m| m.iter().map(|m| vec![m["ts"].to_string(), m["id"].as_str().unwrap_or("").to_owned(), m["cursor"].as_str().unwrap_or("").to_owned(), m["data"].to_string()]).collect()).unwrap_or_default();
                table(&["TS", "ID", "CURSOR", "DATA"], rows);
                if v["more"] == true {
                    out!("older: --before {}", v["before"].as_str().unwrap_or(""));
                }
            }
        }
        CtlCommand::Channel { account, channel, edge } => {
            let v = edge_get(edge, &format!("/v1/channels/info?account={}&channel={}", q(account), q(channel))).await?;
            if json {
                out!("{v}");
            } else {
                out!("{} present ({}); last message {}; cursor {}", v["occupancy"], v["users"], v["last_message"]["id"].as_str().unwrap_or("none"), v["cursor"].as_str().unwrap_or(""));
            }
        }
        _ => unreachable!("only the edge commands come here"),
    }
    Ok(())
}

async fn ctl_inner(a: CtlArgs) -> anyhow::Result<()> {
    // History and channel info read the bus: an edge answers them, not the control plane.
    if matches!(a.command, CtlCommand::History { .. } | CtlCommand::Channel { .. }) {
        return edge_command(&a.command, a.json).await;
    }
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
        CtlCommand::Devices { account, user } => {
            let r = rpc(c.list_devices(pb::ListDevicesRequest { account, user }).await)?;
            if json {
                let devices: Vec<_> = r
                    .devices
                    .iter()
                    .map(|d| serde_json::json!({"user": d.user, "platform": d.platform, "token_tail": d.token_tail, "app": d.app, "readable": d.readable, "registered_at_ms": d.registered_at_ms}))
                    .collect();
                out!("{}", serde_json::json!({ "devices": devices }));
            } else {
                table(&["PLATFORM", "TOKEN", "APP", "READABLE", "REGISTERED"], r.devices.into_iter().map(|d| vec![d.platform, format!("…{}", d.token_tail), d.app, d.readable.join(","), d.registered_at_ms.to_string()]).collect());
            }
        }
        CtlCommand::RemoveDevice { account, platform, token } => {
            let r = rpc(c.remove_device(pb::RemoveDeviceRequest { account, platform, token }).await)?;
            if json {
                out!("{}", serde_json::json!({ "removed": r.removed }));
            } else {
                out!("{}", if r.removed { "removed" } else { "no such device in this account" });
            }
        }
        CtlCommand::Disconnect { account, user, connection, reason, no_reconnect } => {
            let req = pb::DisconnectRequest { account, user: user.unwrap_or_default(), connection_id: connection.unwrap_or_default(), reason, reconnect: !no_reconnect };
            let r = rpc(c.disconnect(req).await)?;
            if json { out!("{}", serde_json::json!({"order": r.order})) } else { out!("disconnect ordered ({}): every edge of the region ends the connections", r.order) }
        }
        CtlCommand::Revoke { account, jti, user, for_secs, reason } => {
            let until = herald_core::now_ms() / 1000 + for_secs;
            let req = pb::RevokeRequest { account, jti: jti.unwrap_or_default(), user: user.unwrap_or_default(), until, reason };
            let r = rpc(c.revoke(req).await)?;
            if json { out!("{}", serde_json::json!({"order": r.order, "until": until})) } else { out!("revoked until {until} ({}): every edge refuses the tokens and ends their sessions", r.order) }
        }
        CtlCommand::Connections { account, user } => {
            let list = rpc(c.list_connections(pb::ListConnectionsRequest { account, user }).await)?.connections;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|c| serde_json::json!({"connection_id": c.connection_id, "node": c.node, "transport": c.transport, "opened_at_ms": c.opened_at_ms}))
                    .collect();
                out!("{}", serde_json::json!({"connections": v}));
            } else {
                table(
                    &["CONNECTION", "NODE", "TRANSPORT", "OPENED AT (MS)"],
                    list.into_iter().map(|c| vec![c.connection_id, c.node, c.transport, c.opened_at_ms.to_string()]).collect(),
                );
            }
        }
        CtlCommand::History { .. } | CtlCommand::Channel { .. } => unreachable!("answered through an edge, above"),
        CtlCommand::AddMember { id, address } => print_status(&rpc(c.add_member(pb::AddMemberRequest { id, address }).await)?, json),
        CtlCommand::RemoveMember { id } => print_status(&rpc(c.remove_member(pb::RemoveMemberRequest { id }).await)?, json),
    }
    Ok(())
}

