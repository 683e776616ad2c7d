//! The edge's side of the control plane: the hooks the agent calls in a running edge (new config,
//! connection count, drain orders), and starting the agent from `[control]`.

use std::sync::Arc;

use herald_control::agent::{AgentConfig, EdgeHooks};
use herald_control::pb;
use herald_control::tls::{ClientTls, ClientTlsFiles, PemFile};
use herald_core::AccountId;
use herald_edge::Edge;

/// The agent's hooks into a running edge (and its console, which measures its load).
struct Hooks(Arc<Edge>, Option<Arc<herald_edge::console::Console>>);

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
                    max_message_bytes: some(l.max_message_bytes.into()).map(|v| (v as usize).min(self.0.config().max_frame_bytes)),
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

    fn load(&self) -> (f64, u64) {
        self.1.as_ref().map_or((0.0, 0), |c| c.load())
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
    console: Option<Arc<herald_edge::console::Console>>,
    listen: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if config.control.endpoints.is_empty() {
        return Ok(None);
    }
    let address = if config.control.advertise.is_empty() { format!("http://{listen}") } else { config.control.advertise.clone() };
    let node = pb::NodeInfo {
        node_id: config.edge.node.clone(),
        region: config.edge.region.to_string(),
        address,
        capacity: 0,
        instance: format!("{:016x}", rand::random::<u64>()),
    };
    let tls = agent_tls(config).map_err(anyhow::Error::msg)?;
    let cfg = AgentConfig { endpoints: config.control.endpoints.clone(), node, token: config.control.token.clone(), tls };
    Ok(Some(tokio::spawn(herald_control::agent::run(cfg, Arc::new(Hooks(edge.clone(), console)), stop))))
}
