//! Herald's edge node: one hyper server for WebSocket, SSE and long-poll clients, the publish API
//! and the operational endpoints, with the local fan-out hub that feeds every connection.
//!
//! # Layout
//! - [`state`]: `Edge`, the shared state (config, adapters, the fan-out engine, auth, metrics,
//!   drain signal), and `publish`, which every publishing path goes through.
//! - The fan-out itself (hub, seam, send queues, subscriptions with exact resume, partition
//!   consumers) is the `herald-engine` crate; the edge holds one [`herald_engine::Engine`].
//! - `ws` + `session`: the WebSocket transport (handshake, connection loop, socket writer)
//!   and its protocol state; `sse`, `poll`: the HTTP streaming transports; `lifecycle`:
//!   what every session goes through whatever its transport (id, welcome, presence, drain,
//!   expiry) and the node's live sessions; `publish`: the backend API; `history`: a channel's
//!   history, in pages; `devices`: device registration for mobile push; `server_api`: a
//!   backend's disconnects, revocations and a user's connections; `caller`: who calls those
//!   (a key or a client token).
//! - `orders`: the region's standing revocations as this node knows them, and the pump that
//!   applies every order (disconnect, revocation) to the live sessions.
//! - `presence_pump`: join/leave events from presence storage to local subscribers.
//! - [`auth`] + [`keys`]: tokens, their verification keys and API keys; [`limits`]: connection
//!   and publish limits; [`tls`]: the listener's certificate; [`metrics`]: the metrics
//!   registry; `router`: method and path to handler; [`http`]: response and request helpers
//!   (a leaf).
//! - [`admin`]: the admin listener (health, readiness, metrics, the console; no PROXY header, no
//!   TLS), from start to exit.
//! - [`console`]: the operator's web console (Cluster, Regions, Accounts, Channels with a live
//!   tail, Health), its login and JSON API; its pages are the static files in `console/`.
//! - `proxy_header`: the PROXY protocol header a load balancer sends first; `client_addr`:
//!   the client's address from it and from trusted proxies' forwarding headers.
//!
//! The edge depends on the `Bus`, `Presence` and `Orders` traits only; which adapters run is the binary's
//! choice. [`serve`] takes a bound listener, the built [`Edge`] and a fast-stop token; cancelling
//! `edge.drain` starts a graceful drain.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
mod caller;
mod client_addr;
pub mod console;
mod dev;
mod devices;
mod history;
pub mod http;
pub mod keys;
mod lifecycle;
mod orders;
pub mod limits;
pub mod metrics;
mod poll;
mod presence_pump;
mod probe;
pub mod proxy;
mod proxy_header;
mod publish;
mod router;
mod server_api;
mod session;
mod sse;
pub mod state;
mod stream_request;
pub mod tls;
mod ws;

pub use auth::{TokenClaims, TokenIssuer};
pub use herald_engine::{outbox, subscribe};
pub use metrics::EdgeMetrics;
pub use state::{DevMode, Edge, EdgeDeps, EdgeError};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::task::TaskTracker;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Fetches the JWKS again every `jwks_refresh_secs`, and early (at most every 30 s) when a token
/// names an unknown `kid`. A failed fetch keeps the keys it had.
async fn refresh_jwks(edge: Arc<Edge>, url: String, stop: CancellationToken) {
    let every = Duration::from_secs(edge.jwks_refresh_secs);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = edge.verifier.unknown_kid_seen() => {
                let earliest = last + Duration::from_secs(30).min(every);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(earliest) => {}
                }
            }
        }
        last = tokio::time::Instant::now();
        match keys::fetch_jwks(&url).await {
            Ok(k) => {
                tracing::info!(keys = k.len(), "JWKS refreshed");
                edge.verifier.set_remote_keys(k);
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys"),
        }
    }
}

/// Serves one HTTP/1.1 connection (plain or TLS), with WebSocket upgrades. When the node starts
/// draining, in-flight requests finish and keep-alive connections close. Each request sees the
/// client's address: `peer`, or what a trusted proxy's forwarding header says.
async fn serve_http<I>(edge: Arc<Edge>, io: I, peer: std::net::SocketAddr, trusted: Arc<client_addr::TrustedProxies>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let draining = edge.drain.is_cancelled();
    let drain = edge.drain.clone();
    let edge2 = edge.clone();
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(!draining)
        .serve_connection(io, service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let client = trusted.client(req.headers(), peer);
            router::route(edge2.clone(), req, client)
        }))
        .with_upgrades();
    tokio::pin!(conn);
    let res = if draining {
        conn.await
    } else {
        tokio::select! {
            r = conn.as_mut() => r,
            _ = drain.cancelled() => {
                // Finish in-flight requests, then close keep-alive connections.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(e) = res {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}

/// What a starting node reports: its metrics (connect errors are counted there) and why it is
/// not ready yet (the last error connecting to the bus, e.g. a refused SASL login).
pub struct Starting {
    /// The node's metrics registry (the same one the edge uses once it runs).
    pub metrics: Arc<EdgeMetrics>,
    /// Why the node is not ready yet, if known.
    pub cause: parking_lot::Mutex<Option<String>>,
}

impl Starting {
    /// A starting node reporting into `metrics`.
    pub fn new(metrics: Arc<EdgeMetrics>) -> Arc<Self> {
        Arc::new(Self { metrics, cause: parking_lot::Mutex::new(None) })
    }
}

/// Answers on `listener` while the node starts (its bus is not connected yet): `/healthz` 200,
/// `/readyz` 503 `starting` with the cause when one is known, `/metrics`, everything else 503
/// `unavailable`. Returns `until`'s output once it completes, leaving the listener to [`serve`].
/// Load balancers and Kubernetes see a live but unready node instead of a refused port.
pub async fn serve_starting<T>(listener: &TcpListener, starting: &Arc<Starting>, until: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(until);
    loop {
        let (tcp, _) = tokio::select! {
            out = &mut until => return out,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = http1::Builder::new().keep_alive(false).serve_connection(
            TokioIo::new(tcp),
            service_fn({
                let starting = starting.clone();
                move |req: hyper::Request<hyper::body::Incoming>| {
                    let starting = starting.clone();
                    async move {
                        let resp = match req.uri().path() {
                            "/healthz" => http::json_response(hyper::StatusCode::OK, r#"{"status":"ok"}"#),
                            "/readyz" => admin::starting_readyz(&starting),
                            "/metrics" => http::metrics_response(starting.metrics.render()),
                            _ => http::code_response(herald_protocol::ErrorCode::Unavailable, "this node is starting; retry"),
                        };
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                }
            }),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// Serves `listener` until a drain completes (after `edge.drain` is cancelled) or `stop` is
/// cancelled (fast exit).
///
/// Start-up order: the presence pump, the orders pump (standing revocations loaded), then ready, then accept; partition consumers start on
/// demand, when a partition gets its first subscription. Drain: stop accepting, tell every client to reconnect (each session does so when it
/// sees the drain), wait for sessions to end or `drain_grace_ms`, then stop the consumers.
pub async fn serve(listener: TcpListener, edge: Arc<Edge>, stop: CancellationToken) -> Result<(), EdgeError> {
    let background = CancellationToken::new();
    if let Some(url) = edge.jwks_url.clone() {
        // Not ready until the keys are in: every client would be refused without them.
        let keys = loop {
            match keys::fetch_jwks(&url).await {
                Ok(k) => break k,
                Err(e) => tracing::warn!(error = %e, "cannot fetch the JWKS yet; retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
        edge.verifier.set_remote_keys(keys);
        tokio::spawn(refresh_jwks(edge.clone(), url, background.clone()));
    }
    let trusted = Arc::new(client_addr::TrustedProxies::new(&edge.config));
    let proxy_protocol = edge.config.proxy_protocol;
    let proxy_refused = edge.metrics.counter("herald_proxy_header_refused_total", "Connections closed for a missing or malformed PROXY header", &[]);
    let presence_pump = presence_pump::start(&edge, background.clone());
    // Before ready: a token revoked before this node started is refused from the first request.
    let orders_pump = orders::start(&edge, background.clone()).await;
    tokio::spawn(probe::run(edge.clone(), background.clone()));
    if let Some(tls) = &edge.tls {
        tokio::spawn(tls.clone().watch(Duration::from_secs(2), background.clone()));
    }
    edge.set_ready(true);
    // HTTP connections (upgraded WebSockets leave it at the upgrade; sessions are counted apart).
    let http_conns = TaskTracker::new();
    tracing::info!(node = %edge.node, region = %edge.region, addr = %listener.local_addr()?, "edge serving");
    // Resolves when a drain has finished: every session gone, or the grace period over. The
    // listener stays open meanwhile so that `/readyz` answers 503 instead of refusing.
    let drained = async {
        edge.drain.cancelled().await;
        edge.set_ready(false);
        edge.metrics.draining.set(1.0);
        tracing::info!(sessions = edge.session_count(), grace_ms = edge.config.drain_grace_ms, "draining");
        let all_done = async {
            edge.sessions_closed().await;
            http_conns.close();
            http_conns.wait().await;
        };
        tokio::select! {
            _ = all_done => tracing::info!("drain complete"),
            _ = tokio::time::sleep(Duration::from_millis(edge.config.drain_grace_ms)) => {
                tracing::warn!(sessions = edge.session_count(), "drain grace expired");
            }
        }
    };
    tokio::pin!(drained);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut drained => break,
            _ = stop.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        if edge.config.unsent_limit_bytes > 0 {
            // The backlog of a slow link waits in the outbox, where it can be reordered by
            // priority, conflated or declared lagged, not in a kernel buffer nobody can touch.
            let _ = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(edge.config.unsent_limit_bytes as u32);
        }
        let (edge2, trusted, proxy_refused) = (edge.clone(), trusted.clone(), proxy_refused.clone());
        http_conns.spawn(async move {
            let mut tcp = tcp;
            // The PROXY header comes first, before TLS: its source is the connection's address.
            let peer = match proxy_protocol {
                herald_config::ProxyProtocol::Off => peer,
                mode => match proxy_header::read(&mut tcp, mode).await {
                    Ok(source) => source.unwrap_or(peer),
                    Err(e) => {
                        proxy_refused.increment(1);
                        tracing::debug!(%peer, error = %e, "connection closed: no valid PROXY header");
                        return;
                    }
                },
            };
            match edge2.tls.as_ref().map(|t| t.acceptor()) {
                None => serve_http(edge2, TokioIo::new(tcp), peer, trusted).await,
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => serve_http(edge2, TokioIo::new(tls), peer, trusted).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    edge.set_ready(false);
    background.cancel();
    edge.engine.consumers.stop_all();
    let _ = presence_pump.await;
    let _ = orders_pump.await;
    if let Err(e) = edge.presence.node_gone(&edge.node).await {
        tracing::warn!(error = %e, "could not clear this node's presence");
    }
    Ok(())
}
