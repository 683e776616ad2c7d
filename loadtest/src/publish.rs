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
    /// Publish to a NATS server at `addr` instead (core NATS protocol over TCP, subject = the
    /// channel), for the peer comparison.
    #[arg(long)]
    nats: bool,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    if a.nats {
        return run_nats(a).await;
    }
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

/// The same paced records as `PUB`s to a NATS server, one write per tick.
async fn run_nats(a: Args) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let tcp = TcpStream::connect(&a.addr).await?;
    tcp.set_nodelay(true)?;
    let (r, mut w) = tcp.into_split();
    let mut lines = BufReader::new(r).lines();
    let info = lines.next_line().await?.unwrap_or_default();
    anyhow::ensure!(info.starts_with("INFO"), "not a NATS server: {info}");
    w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n").await?;
    // The server's PINGs are answered from the publishing loop (PONGs go with the next write).
    let (tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<&'static [u8]>();
    let reader = tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.starts_with("PING") && tx.send(b"PONG\r\n").is_err() {
                break;
            }
        }
    });
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
        let mut out = Vec::with_capacity(per_tick as usize * (a.size + 64));
        while let Ok(p) = pong_rx.try_recv() {
            out.extend_from_slice(p);
        }
        let t = crate::now_us();
        for _ in 0..per_tick {
            let payload = format!(r#"{{"seq":{seq},"t":{t},"pad":"{pad}"}}"#);
            out.extend_from_slice(format!("PUB {} {}\r\n{payload}\r\n", a.channel, payload.len()).as_bytes());
            seq += 1;
        }
        w.write_all(&out).await?;
    }
    // A round trip, so everything was read by the server before we report.
    w.write_all(b"PING\r\n").await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    reader.abort();
    let secs = started.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({ "published": seq, "seconds": secs, "rate": seq as f64 / secs, "cpu_seconds": crate::cpu_seconds() }));
    Ok(())
}
