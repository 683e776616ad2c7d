//! What an edge node runs to take part in the control plane: register, heartbeat, watch config
//! and obey drain orders. The control plane is never on the message path: while no member
//! answers, the edge keeps serving with the last config it applied and keeps retrying.

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::network::{Bearer, channel};
use crate::tls::ClientTls;
use crate::pb::membership_client::MembershipClient;
use crate::pb::{self, DeregisterRequest, HeartbeatRequest, RegisterRequest, WatchConfigRequest};

/// What the agent asks of the edge.
pub trait EdgeHooks: Send + Sync + 'static {
    /// A new config (every account with its keys and limits). Called on connect and after
    /// every change.
    fn apply_config(&self, config: &pb::ConfigSnapshot);
    /// Open connections now (reported in heartbeats).
    fn connections(&self) -> u64;
    /// A drain order arrived: stop taking clients and send `reconnect` to the ones here.
    fn drain(&self);
    /// Deliveries per second and mean publish-to-fan-out milliseconds over the last minute
    /// (reported in heartbeats, shown by the operator's console).
    fn load(&self) -> (f64, u64) {
        (0.0, 0)
    }
}

/// The edge as it registers.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Control-plane members (`host:port` or `https://host:port`); tried in turn.
    pub endpoints: Vec<String>,
    /// This edge.
    pub node: pb::NodeInfo,
    /// The edge token the control plane requires (`HERALD_CONTROL_EDGE_TOKEN`), if any.
    pub token: Option<String>,
    /// TLS to the members (none: plaintext, unless an endpoint says `https://`). Its files are
    /// read again at each new connection when they changed.
    pub tls: Option<Arc<ClientTls>>,
}

/// Runs until `stop`, then deregisters (best effort, 2 s).
pub async fn run(cfg: AgentConfig, hooks: Arc<dyn EdgeHooks>, stop: CancellationToken) {
    let mut delay = Duration::from_millis(200);
    // Start at a random member, so that edges do not all pile onto the first one.
    let mut turn = rand::random::<u32>() as usize % cfg.endpoints.len().max(1);
    while !stop.is_cancelled() {
        let endpoint = cfg.endpoints[turn % cfg.endpoints.len()].clone();
        turn += 1;
        let mut registered = false;
        match session(&cfg, &endpoint, hooks.as_ref(), &stop, &mut registered).await {
            Ok(()) => break,
            Err(e) => tracing::warn!(endpoint = %endpoint, error = %e, "control plane: lost or unreachable; serving with the last config, retrying"),
        }
        if registered {
            // It worked for a while: the next attempt starts with a short delay again.
            delay = Duration::from_millis(200);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(delay.mul_f64(0.5 + rand::random::<f64>() * 0.5)) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    // Deregister so operators see the node gone at once (a crash is seen by missed heartbeats).
    for endpoint in &cfg.endpoints {
        let Ok(mut client) = membership(endpoint, &cfg) else { continue };
        let call = client.deregister(DeregisterRequest { node_id: cfg.node.node_id.clone() });
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), call).await {
            break;
        }
    }
}

type Membership = MembershipClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>>;

/// A Membership client for `endpoint` that presents the edge token on every call.
fn membership(endpoint: &str, cfg: &AgentConfig) -> Result<Membership, crate::network::ChannelError> {
    Ok(MembershipClient::with_interceptor(channel(endpoint, cfg.tls.as_ref())?, Bearer(cfg.token.as_deref().map(std::sync::Arc::from))))
}

/// What a heartbeat reports of the edge's load.
fn load(hooks: &dyn EdgeHooks) -> pb::EdgeLoad {
    let (deliveries_per_second, fanout_lag_ms) = hooks.load();
    pb::EdgeLoad { version: env!("CARGO_PKG_VERSION").into(), deliveries_per_second, fanout_lag_ms }
}

/// One connected period: register, then watch and heartbeat until an error or `stop`.
async fn session(cfg: &AgentConfig, endpoint: &str, hooks: &dyn EdgeHooks, stop: &CancellationToken, registered: &mut bool) -> Result<(), tonic::Status> {
    let mut client = membership(endpoint, cfg).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let reply = client.register(RegisterRequest { node: Some(cfg.node.clone()) }).await?.into_inner();
    let interval = Duration::from_millis(reply.heartbeat_interval_ms.clamp(200, 60_000));
    let mut watch = client.watch_config(WatchConfigRequest { node_id: cfg.node.node_id.clone() }).await?.into_inner();
    *registered = true;
    tracing::info!(endpoint, "control plane: registered");
    let mut beat = tokio::time::interval(interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drained = false;
    let mut drain = |hooks: &dyn EdgeHooks| {
        if !drained {
            drained = true;
            tracing::info!("control plane: drain order received");
            hooks.drain();
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            msg = watch.next() => match msg {
                Some(Ok(config)) => {
                    hooks.apply_config(&config);
                    if config.drain {
                        drain(hooks);
                    }
                }
                Some(Err(status)) => return Err(status),
                None => return Err(tonic::Status::unavailable("config stream ended")),
            },
            _ = beat.tick() => {
                let r = client.heartbeat(HeartbeatRequest { node_id: cfg.node.node_id.clone(), connections: hooks.connections(), load: Some(load(hooks)) }).await?.into_inner();
                if !r.known {
                    // Deregistered behind our back (or a fresh cluster): register again.
                    client.register(RegisterRequest { node: Some(cfg.node.clone()) }).await?;
                }
                if r.drain {
                    drain(hooks);
                }
            }
        }
    }
}
