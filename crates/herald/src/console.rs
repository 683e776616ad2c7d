//! The console's view of the control plane ([`herald_edge::console::ControlView`]) over its
//! `Admin` gRPC service, with `[console] control_admin_token`.

use std::sync::Arc;

use herald_control::pb::admin_client::AdminClient;
use herald_control::pb;
use herald_control::tls::ClientTls;
use herald_edge::console::control::{AccountView, ControlStatus, EdgeNode, KeyDigest, Limits, Member};
use herald_edge::console::{ControlCallError, ControlView};

/// The `Admin` service of the first member that answers.
pub struct AdminView {
    endpoints: Vec<String>,
    token: Option<Arc<str>>,
    tls: Option<Arc<ClientTls>>,
}

impl AdminView {
    /// Calls `endpoints` in turn with the admin `token`.
    pub fn new(endpoints: Vec<String>, token: Option<String>, tls: Option<Arc<ClientTls>>) -> Self {
        Self { endpoints, token: token.map(Arc::from), tls }
    }

    /// Runs `call` on the first member that answers (any member takes any call); a member's
    /// own refusal is returned at once.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, ControlCallError>
    where
        F: Fn(Admin) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = ControlCallError::Unavailable("no control-plane endpoint".into());
        for e in &self.endpoints {
            let ch = match herald_control::network::channel(e, self.tls.as_ref()) {
                Ok(ch) => ch,
                Err(err) => {
                    last = ControlCallError::Unavailable(format!("{e}: {err}"));
                    continue;
                }
            };
            let client = AdminClient::with_interceptor(ch, herald_control::network::Bearer(self.token.clone()));
            match tokio::time::timeout(std::time::Duration::from_secs(5), call(client)).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) => {
                    let err = mapped(&s);
                    if !matches!(err, ControlCallError::Unavailable(_)) {
                        return Err(err);
                    }
                    last = err;
                }
                Err(_) => last = ControlCallError::Unavailable(format!("{e}: no answer within 5 s")),
            }
        }
        Err(last)
    }
}

type Admin = AdminClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, herald_control::network::Bearer>>;

/// The one mapping from a gRPC status to what the console reports.
fn mapped(s: &tonic::Status) -> ControlCallError {
    let m = s.message().to_owned();
    match s.code() {
        tonic::Code::InvalidArgument => ControlCallError::Invalid(m),
        tonic::Code::FailedPrecondition | tonic::Code::NotFound | tonic::Code::AlreadyExists => ControlCallError::Refused(m),
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => ControlCallError::Unauthenticated(m),
        _ => ControlCallError::Unavailable(if m.is_empty() { format!("{:?}", s.code()) } else { m }),
    }
}

fn account_view(a: pb::Account) -> AccountView {
    let l = a.limits.unwrap_or_default();
    AccountView {
        name: a.name,
        keys: a.keys.into_iter().map(|k| KeyDigest { id: k.id, sha256: format!("sha256:{}", k.sha256) }).collect(),
        token_keys: a.token_keys.into_iter().map(|k| (k.kid, k.algorithm)).collect(),
        limits: Limits { connections: l.connections, publish_per_second: l.publish_per_second, max_subscriptions: l.max_subscriptions, max_message_bytes: l.max_message_bytes },
    }
}

#[async_trait::async_trait]
impl ControlView for AdminView {
    async fn status(&self) -> Result<ControlStatus, ControlCallError> {
        let s = self.call(|mut c| async move { c.status(pb::StatusRequest {}).await }).await?;
        let members = s
            .members
            .iter()
            .map(|m| Member { id: m.id, address: m.address.clone(), role: if m.id == s.leader { "leader" } else if m.voter { "voter" } else { "learner" } })
            .collect();
        Ok(ControlStatus { this_node: s.this_node, leader: s.leader, term: s.term, last_log_index: s.last_log_index, last_applied: s.last_applied, members })
    }

    async fn nodes(&self) -> Result<Vec<EdgeNode>, ControlCallError> {
        let r = self.call(|mut c| async move { c.list_nodes(pb::ListNodesRequest {}).await }).await?;
        let mut nodes: Vec<EdgeNode> = r
            .nodes
            .into_iter()
            .map(|n| {
                let i = n.node.unwrap_or_default();
                let load = n.load.unwrap_or_default();
                EdgeNode {
                    node: i.node_id,
                    region: i.region,
                    address: i.address,
                    healthy: n.healthy,
                    draining: n.draining,
                    connections: n.connections,
                    last_heartbeat_ms_ago: n.last_heartbeat_ms_ago,
                    version: load.version,
                    deliveries_per_second: load.deliveries_per_second,
                    fanout_lag_ms: load.fanout_lag_ms,
                }
            })
            .collect();
        nodes.sort_by(|a, b| (&a.region, &a.node).cmp(&(&b.region, &b.node)));
        Ok(nodes)
    }

    async fn drain(&self, node: &str) -> Result<(), ControlCallError> {
        let node = node.to_owned();
        self.call(|mut c| {
            let node_id = node.clone();
            async move { c.drain(pb::DrainRequest { node_id }).await }
        })
        .await?;
        Ok(())
    }

    async fn accounts(&self) -> Result<Vec<AccountView>, ControlCallError> {
        let r = self.call(|mut c| async move { c.list_accounts(pb::ListAccountsRequest {}).await }).await?;
        Ok(r.accounts.into_iter().map(account_view).collect())
    }

    async fn put_limits(&self, account: &str, l: Limits) -> Result<AccountView, ControlCallError> {
        let name = account.to_owned();
        let limits = pb::AccountLimits { connections: l.connections, publish_per_second: l.publish_per_second, max_subscriptions: l.max_subscriptions, max_message_bytes: l.max_message_bytes };
        let a = self
            .call(|mut c| {
                let name = name.clone();
                async move { c.put_account(pb::PutAccountRequest { name, limits: Some(limits) }).await }
            })
            .await?;
        Ok(account_view(a))
    }
}
