//! A small plain-HTTP GET, for what the console reads from other processes: the other edges'
//! `/readyz` and `/metrics`, the replicators' `/metrics`.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Answers larger than this are refused.
const MAX_BODY: usize = 4 << 20;

/// GETs `url` (`http://HOST:PORT/PATH`) within `timeout`: the status and the body as text.
pub async fn get(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    tokio::time::timeout(timeout, get_inner(url)).await.map_err(|_| format!("{url}: no answer within {} ms", timeout.as_millis()))?
}

async fn get_inner(url: &str) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// is read"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| format!("{url}: {e}"))?;
    let (mut send, conn) = http1::handshake(TokioIo::new(tcp)).await.map_err(|e| format!("{url}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(path).header(http::header::HOST, authority).body(Empty::<bytes::Bytes>::new()).map_err(|e| format!("{url}: {e}"))?;
    let resp = send.send_request(req).await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_BODY).collect().await.map_err(|e| format!("{url}: {e}"))?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
