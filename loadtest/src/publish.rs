//! A paced publisher: `rate` records per second in batches every `tick_ms`, each record
//! `{"seq":n,"t":<µs>,"pad":"…"}`, through `POST /v1/publish` on one keep-alive connection.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// `publish` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Server address, host:port.
    #[arg(long)]
    addr: String,
    /// Admin API key.
    #[arg(long)]
    key: String,
    /// Account.
    #[arg(long, default_value = "load")]
    account: String,
    /// Channel.
    #[arg(long, default_value = "fanout")]
    channel: String,
    /// Records per second.
    #[arg(long)]
    rate: u64,
    /// How long, in seconds.
    #[arg(long)]
    seconds: u64,
    /// Approximate record payload size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Batch interval.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(&a.addr).await?;
    tcp.set_nodelay(true)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    // Slow rates tick less often, so that the rate is exact (one record per tick at most).
    let tick_ms = if a.rate * a.tick_ms < 1000 { 1000 / a.rate.max(1) } else { a.tick_ms };
    let ticks = a.seconds * 1000 / tick_ms;
    let per_tick = (a.rate * tick_ms).div_ceil(1000).max(1);
    let pad = "x".repeat(a.size.saturating_sub(40));
    let mut seq = 0u64;
    let mut interval = tokio::time::interval(Duration::from_millis(tick_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = std::time::Instant::now();
    for _ in 0..ticks {
        interval.tick().await;
        let mut body = String::with_capacity(per_tick as usize * (a.size + 80));
        body.push_str("{\"records\":[");
        let t = crate::now_us();
        for i in 0..per_tick {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(r#"{{"account":"{}","channel":"{}","data":{{"seq":{seq},"t":{t},"pad":"{pad}"}}}}"#, a.account, a.channel));
            seq += 1;
        }
        body.push_str("]}");
        let req = hyper::Request::post("/v1/publish")
            .header("host", "load")
            .header("authorization", format!("Bearer {}", a.key))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        send.ready().await?;
        let resp = send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::ensure!(status.is_success(), "publish failed: {status} {}", String::from_utf8_lossy(&body));
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({ "published": seq, "seconds": secs, "rate": seq as f64 / secs, "cpu_seconds": crate::cpu_seconds() }));
    Ok(())
}
