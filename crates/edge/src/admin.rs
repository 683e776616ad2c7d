//! The admin listener (`edge.admin_listen`): `/healthz`, `/readyz` and `/metrics` in plain HTTP,
//! with no PROXY header and no TLS, from the moment the process starts until it exits. Kubelet
//! probes and Prometheus use it when the client listener expects PROXY headers (which they do not
//! send) or TLS, and it answers the same way while the node is starting (its bus not connected
//! yet) as once it serves. Once the edge serves, it also serves the operator's console
//! ([`crate::console`]) at `/console/`.

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{self, Body};
use crate::{Edge, Starting};

/// What the admin listener reports on: the starting node, then the edge once it is built.
pub struct AdminPhase {
    phase: RwLock<Phase>,
    console: RwLock<Option<Arc<crate::console::Console>>>,
}

enum Phase {
    Starting(Arc<Starting>),
    Serving(Arc<Edge>),
}

impl AdminPhase {
    /// Reporting on a starting node.
    pub fn new(starting: Arc<Starting>) -> Arc<Self> {
        Arc::new(Self { phase: RwLock::new(Phase::Starting(starting)), console: RwLock::new(None) })
    }

    /// From now on, reporting on `edge`.
    pub fn serving(&self, edge: Arc<Edge>) {
        *self.phase.write() = Phase::Serving(edge);
    }

    /// From now on, serving `console` at `/console/` too.
    pub fn with_console(&self, console: Arc<crate::console::Console>) {
        *self.console.write() = Some(console);
    }

    /// The console and its edge, once both are there.
    fn console(&self) -> Option<(Arc<crate::console::Console>, Arc<Edge>)> {
        let edge = match &*self.phase.read() {
            Phase::Serving(e) => e.clone(),
            Phase::Starting(_) => return None,
        };
        self.console.read().clone().map(|c| (c, edge))
    }

    fn answer(&self, method: &Method, path: &str) -> hyper::Response<Body> {
        if method != Method::GET {
            return http::error_response(StatusCode::METHOD_NOT_ALLOWED, herald_protocol::ErrorCode::BadRequest, "method not allowed");
        }
        let phase = self.phase.read();
        match (path, &*phase) {
            ("/healthz", _) => http::json_response(StatusCode::OK, r#"{"status":"ok"}"#),
            ("/readyz", Phase::Starting(s)) => starting_readyz(s),
            ("/readyz", Phase::Serving(e)) => crate::router::readyz(e),
            ("/metrics", Phase::Starting(s)) => http::metrics_response(s.metrics.render()),
            ("/metrics", Phase::Serving(e)) => http::metrics_response(e.metrics.render()),
            _ => http::error_response(StatusCode::NOT_FOUND, herald_protocol::ErrorCode::BadRequest, "the admin listener serves /healthz, /readyz, /metrics and /console/"),
        }
    }
}

/// `/readyz` of a starting node: 503 `starting`, with the cause when one is known.
pub fn starting_readyz(starting: &Starting) -> hyper::Response<Body> {
    let body = match starting.cause.lock().as_deref() {
        Some(c) => serde_json::json!({"status": "starting", "cause": c}).to_string(),
        None => r#"{"status":"starting"}"#.to_owned(),
    };
    http::json_response(StatusCode::SERVICE_UNAVAILABLE, body)
}

/// Serves `listener` until `stop`; each connection gets 10 s to send its request headers.
pub async fn serve(listener: TcpListener, phase: Arc<AdminPhase>, stop: CancellationToken) {
    loop {
        let tcp = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::debug!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let phase = phase.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(
                    TokioIo::new(tcp),
                    service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let phase = phase.clone();
                        async move {
                            let resp = match phase.console() {
                                Some((console, edge)) if crate::console::serves(req.uri().path()) => crate::console::handle(&console, &edge, req, false).await,
                                _ => phase.answer(req.method(), req.uri().path()),
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    }),
                );
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}
