//! A paced publisher: on each of C channels, `rate` records per second in batches every
//! `tick_ms`, each record `{"seq":n,"t":<µs>,"pad":"…"}` with its own sequence per channel,
//! through `POST /v1/publish` on one keep-alive connection (or as core NATS `PUB`s over TCP).
//! The rate can be stepped: `--rate 100,200,400 --step-secs 10`.
//!
//! With `--retry-secs N` (the chaos runs) it behaves like a careful backend: every record carries
//! an idempotency key (`<prefix>:<channel>:<seq>`), a batch that fails (an error status, a broken
//! connection, no answer within `--request-timeout-ms`) is sent again, whole and with the same
//! keys, to the next server of `--addr`, with backoff, until it is acknowledged or N seconds of
//! failing have passed; the next batch only goes once this one is acknowledged, so per-channel
//! order holds. `published` then counts acknowledged records only.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// `publish` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Server address, host:port; with `--retry-secs`, several (comma-separated): a failed batch
    /// is retried on the next one.
    #[arg(long)]
    pub addr: String,
    /// Admin API key.
    #[arg(long, default_value = "-")]
    pub key: String,
    /// Account.
    #[arg(long, default_value = "load")]
    pub account: String,
    /// Channel (with `--channels C` > 1: `<channel>-0` … `<channel>-<C-1>`).
    #[arg(long, default_value = "fanout")]
    pub channel: String,
    /// Channels, each with its own sequence.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Records per second on each channel; a comma-separated list steps through the rates,
    /// `--step-secs` each.
    #[arg(long, value_delimiter = ',')]
    pub rate: Vec<u64>,
    /// How long, in seconds (with several rates: the default is `--step-secs` per rate).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Seconds per rate step.
    #[arg(long, default_value_t = 10)]
    pub step_secs: u64,
    /// Approximate record payload size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Batch interval.
    #[arg(long, default_value_t = 10)]
    pub tick_ms: u64,
    /// Publish to a NATS server at `addr` instead (core NATS protocol over TCP, subject = the
    /// channel), for the peer comparison.
    #[arg(long)]
    pub nats: bool,
    /// Retry a failed batch (same idempotency keys, next server) for up to this many seconds of
    /// continuous failure; 0: the first failure ends the run.
    #[arg(long, default_value_t = 0)]
    pub retry_secs: u64,
    /// With `--retry-secs`: a batch not answered within this long is treated as failed.
    #[arg(long, default_value_t = 5000)]
    pub request_timeout_ms: u64,
    /// With `--retry-secs`: idempotency keys are `<prefix>:<channel>:<seq>` (unique per run).
    #[arg(long, default_value = "load")]
    pub idempotency_prefix: String,
    /// Publish over one WebSocket with this client token (it needs publish rights): each tick's
    /// records go as `publish` frames, newline-separated in one message, and every `published`
    /// reply is counted (the ingest path of an SDK that publishes; the account's and the
    /// connection's publish limits apply).
    #[arg(long)]
    pub ws_token: Option<String>,
    /// Stop publishing (before `--seconds` is up) once this file exists: an orchestrator ends the
    /// load when its fault is over.
    #[arg(long)]
    pub until_file: Option<std::path::PathBuf>,
}

/// What retrying cost: attempts that failed, moves to another server, the longest time one batch
/// took to be acknowledged, records the server answered as duplicates of an earlier attempt.
#[derive(Default)]
struct RetryStats {
    retries: u64,
    failovers: u64,
    longest_batch_ms: u64,
    duplicates_answered: u64,
    errors: Vec<String>,
    /// The answers to the last few batches (their cursors say where the records landed).
    last_answers: std::collections::VecDeque<String>,
}

/// One step of the rate.
struct Step {
    rate: u64,
    secs: u64,
}

fn steps(a: &Args) -> anyhow::Result<Vec<Step>> {
    anyhow::ensure!(!a.rate.is_empty() && a.rate.iter().all(|&r| r > 0), "--rate must be positive");
    anyhow::ensure!(a.channels >= 1, "--channels must be at least 1");
    Ok(match (a.rate.len(), a.seconds) {
        (1, secs) => vec![Step { rate: a.rate[0], secs: secs.unwrap_or(a.step_secs) }],
        (n, Some(total)) => a.rate.iter().enumerate().map(|(i, &rate)| Step { rate, secs: total / n as u64 + u64::from((i as u64) < total % n as u64) }).collect(),
        (_, None) => a.rate.iter().map(|&rate| Step { rate, secs: a.step_secs }).collect(),
    })
}

/// Where the records go.
enum Sink {
    Http(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Nats(tokio::net::tcp::OwnedWriteHalf, tokio::sync::mpsc::UnboundedReceiver<()>),
    /// Retrying mode, connected.
    Retrying(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// Retrying mode, not connected (at start, or after a failure).
    None,
    /// A WebSocket: the writing half, the reader's pings to answer, and its counts of replies.
    Ws(WsWriter, tokio::sync::mpsc::UnboundedReceiver<()>, std::sync::Arc<WsReplies>),
}

type WsWriter = futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Message>;

/// What the server answered to WebSocket publishes.
#[derive(Default)]
struct WsReplies {
    published: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
    closed: std::sync::atomic::AtomicBool,
}

/// Publishes every step; returns the report (counts per channel, each step's window).
pub async fn run(a: Args) -> anyhow::Result<Value> {
    let steps = steps(&a)?;
    let addrs: Vec<String> = a.addr.split(',').map(str::to_owned).collect();
    let mut server = 0usize;
    let mut stats = RetryStats::default();
    let mut sink = if a.nats {
        nats_connect(&a.addr).await?
    } else if let Some(token) = &a.ws_token {
        ws_connect(&a.addr, token).await?
    } else if a.retry_secs > 0 {
        // Retrying: the first connection may fail too (a server that is down right now).
        Sink::None
    } else {
        http_connect(&a.addr).await?
    };
    // Text like an incident's, rather than one repeated letter, so that a compressed run
    // (`permessage-deflate`) does not shrink it unrealistically.
    const WORDS: &str = "PAM4FGS acknowledged by ann.lee on db-primary-3: replication lag 41s, runbook ops/db/lag, escalation L2 ";
    let pad: String = WORDS.chars().cycle().take(a.size.saturating_sub(40)).collect();
    let names: Vec<String> = (0..a.channels).map(|c| crate::subscribe::channel_name(&a.channel, a.channels, c)).collect();
    let mut seqs = vec![0u64; a.channels];
    let mut done_steps = Vec::new();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // Retrying mode: why publishing stopped early (a batch failed for `--retry-secs`); the counts
    // so far are still reported, so that subscribers can be checked against what was acknowledged.
    let mut failure: Option<String> = None;
    'steps: for step in &steps {
        // Slow rates tick less often, so that the rate is exact (one record per tick at most).
        let tick_ms = if step.rate * a.tick_ms < 1000 { 1000 / step.rate } else { a.tick_ms };
        let ticks = step.secs * 1000 / tick_ms;
        let per_tick = (step.rate * tick_ms).div_ceil(1000).max(1);
        let from = crate::now_us();
        let before: u64 = seqs.iter().sum();
        let mut interval = tokio::time::interval(Duration::from_millis(tick_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..ticks {
            interval.tick().await;
            if a.until_file.as_ref().is_some_and(|f| f.exists()) {
                let after: u64 = seqs.iter().sum();
                done_steps.push(json!({ "rate": step.rate, "from_unix_us": from, "to_unix_us": crate::now_us(), "published": after - before }));
                break 'steps;
            }
            buf.clear();
            let t = crate::now_us();
            match &mut sink {
                Sink::Http(send) => {
                    // Batches of at most 1000 records (the API's limit).
                    let mut in_batch = 0;
                    for (c, name) in names.iter().enumerate() {
                        for _ in 0..per_tick {
                            buf.extend_from_slice(if in_batch == 0 { b"{\"records\":[" } else { b"," });
                            buf.extend_from_slice(format!(r#"{{"account":"{}","channel":"{name}","data":{{"seq":{},"t":{t},"pad":"{pad}"}}}}"#, a.account, seqs[c]).as_bytes());
                            seqs[c] += 1;
                            in_batch += 1;
                            if in_batch == 1000 {
                                post(send, &a.key, &mut buf).await?;
                                in_batch = 0;
                            }
                        }
                    }
                    if in_batch > 0 {
                        post(send, &a.key, &mut buf).await?;
                    }
                }
                Sink::None | Sink::Retrying(_) => {
                    // One batch for every channel's records of this tick (at most 1000), acknowledged
                    // before the next one goes: per-channel order holds across retries.
                    let mut pending = vec![0u64; names.len()];
                    let mut in_batch = 0;
                    for (c, name) in names.iter().enumerate() {
                        for _ in 0..per_tick {
                            buf.extend_from_slice(if in_batch == 0 { b"{\"records\":[" } else { b"," });
                            let seq = seqs[c] + pending[c];
                            buf.extend_from_slice(
                                format!(r#"{{"account":"{}","channel":"{name}","idempotency_key":"{}:{name}:{seq}","data":{{"seq":{seq},"t":{t},"pad":"{pad}"}}}}"#, a.account, a.idempotency_prefix).as_bytes(),
                            );
                            pending[c] += 1;
                            in_batch += 1;
                            if in_batch == 1000 {
                                if let Err(e) = post_retrying(&mut sink, &a, &addrs, &mut server, &mut stats, &buf).await {
                                    failure = Some(e.to_string());
                                    break 'steps;
                                }
                                buf.clear();
                                in_batch = 0;
                                for (s, p) in seqs.iter_mut().zip(pending.iter_mut()) {
                                    *s += std::mem::take(p);
                                }
                            }
                        }
                    }
                    if in_batch > 0 {
                        if let Err(e) = post_retrying(&mut sink, &a, &addrs, &mut server, &mut stats, &buf).await {
                            failure = Some(e.to_string());
                            break 'steps;
                        }
                        for (s, p) in seqs.iter_mut().zip(pending.iter_mut()) {
                            *s += std::mem::take(p);
                        }
                    }
                }
                Sink::Ws(w, pings, _) => {
                    use futures_util::SinkExt;
                    use tokio_tungstenite::tungstenite::Message;
                    while pings.try_recv().is_ok() {
                        w.send(Message::Text("{\"type\":\"pong\"}".into())).await?;
                    }
                    let mut id = seqs.iter().sum::<u64>();
                    for (c, name) in names.iter().enumerate() {
                        for _ in 0..per_tick {
                            if !buf.is_empty() {
                                buf.push(b'\n');
                            }
                            id += 1;
                            buf.extend_from_slice(format!(r#"{{"type":"publish","id":{id},"channel":"{name}","data":{{"seq":{},"t":{t},"pad":"{pad}"}}}}"#, seqs[c]).as_bytes());
                            seqs[c] += 1;
                            // Messages stay under the server's 64 KiB default.
                            if buf.len() > 48 << 10 {
                                w.send(Message::Text(String::from_utf8(std::mem::take(&mut buf))?.into())).await?;
                            }
                        }
                    }
                    if !buf.is_empty() {
                        w.send(Message::Text(String::from_utf8(std::mem::take(&mut buf))?.into())).await?;
                    }
                }
                Sink::Nats(w, pings) => {
                    // The server's PINGs are answered with the next write.
                    while pings.try_recv().is_ok() {
                        buf.extend_from_slice(b"PONG\r\n");
                    }
                    for (c, name) in names.iter().enumerate() {
                        for _ in 0..per_tick {
                            let payload = format!(r#"{{"seq":{},"t":{t},"pad":"{pad}"}}"#, seqs[c]);
                            buf.extend_from_slice(format!("PUB {name} {}\r\n{payload}\r\n", payload.len()).as_bytes());
                            seqs[c] += 1;
                        }
                    }
                    w.write_all(&buf).await?;
                }
            }
        }
        let after: u64 = seqs.iter().sum();
        done_steps.push(json!({ "rate": step.rate, "from_unix_us": from, "to_unix_us": crate::now_us(), "published": after - before }));
    }
    if let Sink::Nats(w, _) = &mut sink {
        // A round trip, so everything was read by the server before we report.
        w.write_all(b"PING\r\n").await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ws_counts = None;
    if let Sink::Ws(_, _, replies) = &sink {
        // Every publish answered (or the connection gone, or 30 s): acknowledged ones count.
        use std::sync::atomic::Ordering::Relaxed;
        let total: u64 = seqs.iter().sum();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while replies.published.load(Relaxed) + replies.errors.load(Relaxed) < total && !replies.closed.load(Relaxed) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ws_counts = Some((replies.published.load(Relaxed), replies.errors.load(Relaxed)));
    }
    let secs = started.elapsed().as_secs_f64();
    let total: u64 = seqs.iter().sum();
    let mut out = json!({
        "role": "publish",
        "published": seqs,
        "published_total": total,
        "seconds": secs,
        "rate": total as f64 / secs,
        "steps": done_steps,
        "cpu_seconds": crate::cpu_seconds(),
    });
    if let Some((published, errors)) = ws_counts {
        // Over a WebSocket the acknowledged records are the `published` replies.
        out["sent"] = json!(total);
        out["acknowledged"] = json!(published);
        out["refused"] = json!(errors);
        out["rate"] = json!(published as f64 / secs);
    }
    if a.retry_secs > 0 {
        out["retries"] = json!(stats.retries);
        out["failovers"] = json!(stats.failovers);
        out["longest_batch_ms"] = json!(stats.longest_batch_ms);
        out["duplicates_answered"] = json!(stats.duplicates_answered);
        out["retry_errors"] = json!(stats.errors);
        out["last_answers"] = json!(stats.last_answers);
        if let Some(f) = failure {
            out["failed"] = json!(f);
        }
    }
    Ok(out)
}

/// Sends one batch (`{"records":[…` without its closing `]}`) until it is acknowledged: on any failure the connection is dropped and the
/// same bytes (same idempotency keys) go to the next server after a backoff (50 ms doubling to
/// 1 s), for at most `--retry-secs` of failing.
async fn post_retrying(sink: &mut Sink, a: &Args, addrs: &[String], server: &mut usize, stats: &mut RetryStats, body: &[u8]) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let timeout = Duration::from_millis(a.request_timeout_ms);
    let mut failures = 0u32;
    loop {
        let attempt = async {
            if matches!(sink, Sink::None) {
                let addr = &addrs[*server % addrs.len()];
                let Sink::Http(send) = http_connect(addr).await? else { unreachable!() };
                *sink = Sink::Retrying(send);
            }
            let Sink::Retrying(send) = sink else { unreachable!() };
            // `post_answer` closes the batch (`]}`) in its own copy.
            let mut copy = body.to_vec();
            post_answer(send, &a.key, &mut copy).await
        };
        let err = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(answer)) => {
                stats.duplicates_answered += answer.matches("\"duplicate\":true").count() as u64;
                if stats.last_answers.len() == 3 {
                    stats.last_answers.pop_front();
                }
                stats.last_answers.push_back(answer.chars().take(2000).collect());
                stats.longest_batch_ms = stats.longest_batch_ms.max(started.elapsed().as_millis() as u64);
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", a.request_timeout_ms),
        };
        *sink = Sink::None;
        stats.retries += 1;
        if stats.errors.len() < 10 {
            stats.errors.push(format!("{}: {err}", addrs[*server % addrs.len()]));
        }
        if started.elapsed() > Duration::from_secs(a.retry_secs) {
            anyhow::bail!("a batch failed for {} s: {err}", a.retry_secs);
        }
        if addrs.len() > 1 {
            *server += 1;
            stats.failovers += 1;
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(Duration::from_millis((50u64 << failures.min(5)).min(1000))).await;
    }
}

/// Sends the batch in `buf` (closing it) and empties `buf`.
async fn post(send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, key: &str, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    post_answer(send, key, buf).await.map(|_| ())
}

/// [`post`], returning the answer's body.
async fn post_answer(send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, key: &str, buf: &mut Vec<u8>) -> anyhow::Result<String> {
    buf.extend_from_slice(b"]}");
    let req = hyper::Request::post("/v1/publish")
        .header("host", "load")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(buf)))?;
    buf.clear();
    send.ready().await?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status.is_success(), "publish failed: {status} {}", String::from_utf8_lossy(&body));
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn http_connect(addr: &str) -> anyhow::Result<Sink> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(Sink::Http(send))
}

async fn ws_connect(addr: &str, token: &str) -> anyhow::Result<Sink> {
    use futures_util::StreamExt;
    use std::sync::atomic::Ordering::Relaxed;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut req = format!("ws://{addr}/v1/ws").into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let (ws, _) = tokio_tungstenite::client_async(req, tcp).await?;
    let (w, mut r) = ws.split();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let replies = std::sync::Arc::new(WsReplies::default());
    let counts = replies.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = r.next().await {
            let Message::Text(text) = m else { continue };
            for line in text.as_str().lines() {
                if line.starts_with("{\"type\":\"published\"") {
                    counts.published.fetch_add(1, Relaxed);
                } else if line.starts_with("{\"type\":\"error\"") {
                    if counts.errors.fetch_add(1, Relaxed) < 3 {
                        eprintln!("server: {line}");
                    }
                } else if line.starts_with("{\"type\":\"ping\"") {
                    let _ = tx.send(());
                }
            }
        }
        counts.closed.store(true, Relaxed);
    });
    Ok(Sink::Ws(w, rx, replies))
}

async fn nats_connect(addr: &str) -> anyhow::Result<Sink> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (r, mut w) = tcp.into_split();
    let mut lines = BufReader::new(r).lines();
    let info = lines.next_line().await?.unwrap_or_default();
    anyhow::ensure!(info.starts_with("INFO"), "not a NATS server: {info}");
    w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n").await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.starts_with("PING") && tx.send(()).is_err() {
                break;
            }
            if l.starts_with("-ERR") {
                eprintln!("NATS: {l}");
            }
        }
    });
    Ok(Sink::Nats(w, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rate: Vec<u64>, seconds: Option<u64>) -> Args {
        Args {
            addr: String::new(), key: String::new(), account: "a".into(), channel: "c".into(), channels: 1, rate, seconds, step_secs: 3, size: 100, tick_ms: 10, nats: false,
            retry_secs: 0, request_timeout_ms: 5000, idempotency_prefix: "p".into(), until_file: None, ws_token: None,
        }
    }

    #[test]
    fn rate_steps() {
        let s = steps(&args(vec![100], Some(7))).unwrap();
        assert_eq!((s.len(), s[0].rate, s[0].secs), (1, 100, 7));
        let s = steps(&args(vec![1, 2, 3], None)).unwrap();
        assert_eq!(s.iter().map(|s| (s.rate, s.secs)).collect::<Vec<_>>(), vec![(1, 3), (2, 3), (3, 3)]);
        let s = steps(&args(vec![1, 2], Some(5))).unwrap();
        assert_eq!(s.iter().map(|s| s.secs).sum::<u64>(), 5);
        assert!(steps(&args(vec![], None)).is_err());
        assert!(steps(&args(vec![0], None)).is_err());
    }
}
