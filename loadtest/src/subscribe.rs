//! Subscribers: N connections to one channel, each checking the sequence it receives.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// `subscribe` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Server address, host:port; several, comma-separated, spread the connections over them
    /// and move each reconnect to the next one (edges of one cluster).
    #[arg(long)]
    addr: String,
    /// Client token.
    #[arg(long)]
    token: String,
    /// Channel.
    #[arg(long, default_value = "fanout")]
    channel: String,
    /// Connections to open.
    #[arg(long)]
    connections: usize,
    /// Local source address to bind (spreads ports over 127.0.0.x).
    #[arg(long)]
    source_ip: Option<String>,
    /// Stop after this many seconds with no message on any connection (after the first one).
    #[arg(long, default_value_t = 3)]
    idle_exit_secs: u64,
    /// Stop after this many seconds in any case.
    #[arg(long, default_value_t = 120)]
    max_secs: u64,
    /// Hold the connections open without subscribing for this many seconds, then exit
    /// (the idle-memory scenario).
    #[arg(long)]
    idle_hold_secs: Option<u64>,
    /// Resume after this cursor (replay), instead of subscribing live.
    #[arg(long)]
    since: Option<String>,
    /// Print a line on stderr once every connection is subscribed.
    #[arg(long, default_value_t = true)]
    announce: bool,
    /// Reconnect storm: this many seconds after subscribing, every connection drops (as a
    /// network cut would) and reconnects within `--storm-within-ms`, resuming from its cursor.
    #[arg(long)]
    storm_at_secs: Option<f64>,
    /// Spread of the storm's reconnects, milliseconds.
    #[arg(long, default_value_t = 5000)]
    storm_within_ms: u64,
    /// Mobile: each connection goes to the background (disconnects) after a random time in the
    /// foreground (mean this many seconds), stays away a random time (mean the same), and comes
    /// back resuming from its cursor, until the run ends.
    #[arg(long)]
    mobile_mean_secs: Option<f64>,
    /// `ws` (WebSocket), `sse` (Server-Sent Events) or `poll` (long-poll); `nats`: a NATS
    /// server's WebSocket listener at `addr` (the peer comparison; subject = the channel).
    #[arg(long, default_value = "ws")]
    transport: String,
}

#[derive(Default)]
struct Totals {
    messages: AtomicU64,
    ws_messages: AtomicU64,
    gaps: AtomicU64,
    dups: AtomicU64,
    reconnects: AtomicU64,
    unrecovered: AtomicU64,
    last_at_us: AtomicU64,
    first_at_us: AtomicU64,
}

/// Finds `"key":<digits>` in a frame and parses the number.
fn field(frame: &str, key: &str) -> Option<u64> {
    let at = frame.find(key)? + key.len();
    let digits: &str = &frame[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let totals = Arc::new(Totals::default());
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let ready = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(a.connections);
    let args = Arc::new(a);
    for index in 0..args.connections {
        let (args, totals, hist, ready, stop) = (args.clone(), totals.clone(), hist.clone(), ready.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = one(&args, index, &totals, &hist, &ready, stop).await {
                eprintln!("connection failed: {e}");
            }
        }));
        // Pace the handshakes a little so the listen backlog never overflows.
        if tasks.len() % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let start = std::time::Instant::now();
    let mut announced = false;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = ready.load(Ordering::Relaxed) as usize;
        if !announced && r == args.connections && args.announce {
            eprintln!("ready {r}");
            announced = true;
        }
        if let Some(hold) = args.idle_hold_secs {
            if announced && start.elapsed() > Duration::from_secs(hold) {
                break;
            }
            continue;
        }
        let last = totals.last_at_us.load(Ordering::Relaxed);
        if last > 0 && crate::now_us().saturating_sub(last) > args.idle_exit_secs * 1_000_000 {
            break;
        }
        if start.elapsed() > Duration::from_secs(args.max_secs) {
            break;
        }
    }
    if args.idle_hold_secs.is_some() {
        println!("{}", serde_json::json!({ "connections": args.connections, "ready": ready.load(Ordering::Relaxed), "cpu_seconds": crate::cpu_seconds() }));
        std::process::exit(0);
    }
    // Every connection flushes its own histogram, then the totals are read.
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let h = hist.lock().await;
    let msgs = totals.messages.load(Ordering::Relaxed);
    let span = (totals.last_at_us.load(Ordering::Relaxed).saturating_sub(totals.first_at_us.load(Ordering::Relaxed))) as f64 / 1e6;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "connections": args.connections,
            "ready": ready.load(Ordering::Relaxed),
            "deliveries": msgs,
            "ws_messages": totals.ws_messages.load(Ordering::Relaxed),
            "seconds": span,
            "deliveries_per_sec": if span > 0.0 { msgs as f64 / span } else { 0.0 },
            "gaps": totals.gaps.load(Ordering::Relaxed),
            "duplicates": totals.dups.load(Ordering::Relaxed),
            "reconnects": totals.reconnects.load(Ordering::Relaxed),
            "unrecovered": totals.unrecovered.load(Ordering::Relaxed),
            "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "p9999": ms(0.9999), "max": h.max() as f64 / 1000.0 },
            // The histogram itself (µs value, count), so runs over several processes merge exactly.
            "hist": crate::report::encode(&h),
            "cpu_seconds": crate::cpu_seconds(),
        })
    );
    std::process::exit(0);
}

/// What one client carries from one connection to the next.
struct Client {
    /// The server it connects to now (an index into `--addr`).
    server: usize,
    /// Counted as subscribed (once, whichever of its connections got there first).
    counted: bool,
    /// The next publisher sequence number expected.
    expect: Option<u64>,
    /// The cursor of the last record received: where a reconnect resumes.
    cursor: Option<String>,
}

async fn one(a: &Args, index: usize, totals: &Totals, hist: &Mutex<Histogram<u64>>, ready: &AtomicU64, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut client = Client { server: index, counted: false, expect: None, cursor: a.since.clone() };
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut first = true;
    let mut storm = a.storm_at_secs;
    loop {
        // When this connection ends by itself (storm or mobile), and how long it stays away.
        let (cut_after, away) = match (storm.take(), a.mobile_mean_secs) {
            (Some(at), _) => (Some(Duration::from_secs_f64(at)), Duration::from_millis(rand_below(a.storm_within_ms.max(1)))),
            (None, Some(mean)) => (Some(Duration::from_secs_f64(exp_sample(mean))), Duration::from_secs_f64(exp_sample(mean))),
            (None, None) => (None, Duration::ZERO),
        };
        let ended = match a.transport.as_str() {
            "ws" => session(a, totals, &mut local, ready, &mut stop, &mut client, cut_after).await?,
            "sse" | "poll" => http_session(a, totals, &mut local, ready, &mut stop, &mut client, first).await?,
            "nats" => nats_session(a, totals, &mut local, ready, &mut stop, &mut client).await?,
            t => anyhow::bail!("unknown transport {t} (ws, sse, poll or nats)"),
        };
        first = false;
        if ended {
            break;
        }
        totals.reconnects.fetch_add(1, Ordering::Relaxed);
        // With several servers, a reconnect goes to the next one: resume works across edges.
        client.server += 1;
        tokio::select! {
            _ = tokio::time::sleep(away) => {}
            _ = stop.changed() => break,
        }
    }
    hist.lock().await.add(&local)?;
    Ok(())
}

/// The `i`th server of `--addr` (round robin).
fn server_addr(a: &Args, i: usize) -> &str {
    let n = a.addr.split(',').count();
    a.addr.split(',').nth(i % n).unwrap_or(&a.addr)
}

/// Uniform in [0, n).
fn rand_below(n: u64) -> u64 {
    (crate::now_us() ^ (crate::now_us() >> 7).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % n
}

/// An exponentially distributed time with this mean, seconds (at least 0.1 s).
fn exp_sample(mean: f64) -> f64 {
    let u = (rand_below(1_000_000) as f64 + 1.0) / 1_000_001.0;
    (-u.ln() * mean).max(0.1)
}

/// One connection: subscribes (resuming from the client's cursor), counts what arrives, and
/// returns true when the run is over, false when it was cut on purpose (`cut_after`).
#[allow(clippy::too_many_arguments)]
async fn session(
    a: &Args,
    totals: &Totals,
    local: &mut Histogram<u64>,
    ready: &AtomicU64,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    client: &mut Client,
    cut_after: Option<Duration>,
) -> anyhow::Result<bool> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = &a.source_ip {
        sock.bind(format!("{ip}:0").parse()?)?;
    }
    let addr = server_addr(a, client.server);
    let tcp = sock.connect(addr.parse()?).await?;
    tcp.set_nodelay(true)?;
    let mut req = format!("ws://{addr}/v1/ws").into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {}", a.token).parse()?);
    let cfg = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(cfg)).await?;
    if a.idle_hold_secs.is_some() {
        ready.fetch_add(1, Ordering::Relaxed);
        // Answer heartbeats, nothing else.
        while let Some(m) = ws.next().await {
            if let Message::Text(t) = m?
                && t.contains("\"ping\"") {
                    ws.send(Message::Text("{\"type\":\"pong\"}".into())).await?;
                }
        }
        return Ok(true);
    }
    let since = client.cursor.as_ref().map(|c| format!(r#","since":"{c}""#)).unwrap_or_default();
    ws.send(Message::Text(format!(r#"{{"type":"subscribe","id":1,"channel":"{}"{since}}}"#, a.channel).into())).await?;
    let cut = tokio::time::sleep(cut_after.unwrap_or(Duration::from_secs(86_400)));
    tokio::pin!(cut);
    let mut n = 0u64;
    loop {
        let m = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => return Ok(true),
            _ = &mut cut, if cut_after.is_some() => {
                // Drop the socket without a close handshake, as a lost network would.
                drop(ws);
                return Ok(false);
            }
        };
        let Some(m) = m else { return Ok(true) };
        let Message::Text(t) = m? else { continue };
        totals.ws_messages.fetch_add(1, Ordering::Relaxed);
        let now = crate::now_us();
        for line in t.as_str().split('\n') {
            if line.starts_with("{\"type\":\"message\"") {
                n += count(a, totals, local, client, line, now);
            } else if line.starts_with("{\"type\":\"subscribed\"") {
                if !client.counted {
                    client.counted = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                if client.cursor.is_none() {
                    client.cursor = text_field(line, "\"cursor\":\"").map(str::to_owned);
                } else if line.contains("\"recovered\":false") {
                    totals.unrecovered.fetch_add(1, Ordering::Relaxed);
                }
            } else if line.starts_with("{\"type\":\"ping\"") {
                ws.send(Message::Text("{\"type\":\"pong\"}".into())).await?;
            }
        }
        if n > 0 {
            totals.messages.fetch_add(n, Ordering::Relaxed);
            let _ = totals.first_at_us.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            totals.last_at_us.fetch_max(now, Ordering::Relaxed);
            n = 0;
        }
    }
}

/// Counts one `message` frame: its sequence number against the client's, its latency. Returns 1
/// for a new record, 0 for a duplicate or a frame without the load tool's fields.
fn count(a: &Args, totals: &Totals, local: &mut Histogram<u64>, client: &mut Client, line: &str, now: u64) -> u64 {
    let (Some(seq), Some(ts)) = (field(line, "\"seq\":"), field(line, "\"t\":")) else { return 0 };
    match client.expect {
        Some(e) if seq < e => {
            totals.dups.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        Some(e) if seq > e => {
            totals.gaps.fetch_add(seq - e, Ordering::Relaxed);
        }
        _ => {}
    }
    client.expect = Some(seq + 1);
    if a.storm_at_secs.is_some() || a.mobile_mean_secs.is_some() || a.transport == "poll" {
        client.cursor = text_field(line, "\"cursor\":\"").map(str::to_owned);
    }
    let _ = local.record(now.saturating_sub(ts).max(1));
    1
}

/// One SSE stream, or long-polls until the run ends: the same counting as a WebSocket session.
#[allow(clippy::too_many_arguments)]
async fn http_session(
    a: &Args,
    totals: &Totals,
    local: &mut Histogram<u64>,
    ready: &AtomicU64,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    client: &mut Client,
    first: bool,
) -> anyhow::Result<bool> {
    use http_body_util::BodyExt;
    let sse = a.transport == "sse";
    let mut announced = !first;
    // One keep-alive connection: SSE holds it, long-poll reuses it request after request.
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = &a.source_ip {
        sock.bind(format!("{ip}:0").parse()?)?;
    }
    let addr = server_addr(a, client.server);
    let tcp = sock.connect(addr.parse()?).await?;
    tcp.set_nodelay(true)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    loop {
        let since = client.cursor.as_ref().map(|c| format!("&since={c}")).unwrap_or_default();
        let path = if sse { "sse" } else { "poll" };
        let wait = if !sse && client.cursor.is_none() { "&timeout_ms=1" } else { "" };
        let uri = format!("/v1/{path}?channels={}&token={}{since}{wait}", a.channel, a.token);
        let req = hyper::Request::get(uri).header("host", addr).body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let resp = send.send_request(req).await?;
        anyhow::ensure!(resp.status() == 200, "{path} answered {}", resp.status());
        let mut body = resp.into_body();
        let mut pending = String::new();
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = stop.changed() => return Ok(true),
            };
            let Some(frame) = frame else { break };
            let Ok(data) = frame?.into_data() else { continue };
            let now = crate::now_us();
            pending.push_str(std::str::from_utf8(&data)?);
            let mut n = 0;
            if sse {
                // Events end with an empty line; `data:` holds one frame.
                while let Some(end) = pending.find("\n\n") {
                    for line in pending[..end].lines().filter_map(|l| l.strip_prefix("data: ")) {
                        if line.starts_with("{\"type\":\"message\"") {
                            n += count(a, totals, local, client, line, now);
                        } else if line.starts_with("{\"type\":\"subscribed\"") && !announced {
                            announced = true;
                            ready.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    pending.drain(..end + 2);
                }
            }
            if n > 0 {
                totals.messages.fetch_add(n, Ordering::Relaxed);
                totals.ws_messages.fetch_add(1, Ordering::Relaxed);
                let _ = totals.first_at_us.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                totals.last_at_us.fetch_max(now, Ordering::Relaxed);
            }
        }
        if sse {
            return Ok(true);
        }
        // A poll's answer: its messages, then the position to continue from.
        let now = crate::now_us();
        let mut n = 0;
        for part in pending.split("{\"type\":\"message\"").skip(1) {
            // `count` reads the fields after the type; the part holds exactly those.
            n += count(a, totals, local, client, part, now);
        }
        if let Some(i) = pending.rfind("],\"cursor\":\"") {
            client.cursor = text_field(&pending[i..], "\"cursor\":\"").map(str::to_owned);
        }
        if !announced {
            announced = true;
            ready.fetch_add(1, Ordering::Relaxed);
        }
        if n > 0 {
            totals.messages.fetch_add(n, Ordering::Relaxed);
            totals.ws_messages.fetch_add(1, Ordering::Relaxed);
            let _ = totals.first_at_us.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            totals.last_at_us.fetch_max(now, Ordering::Relaxed);
        }
    }
}

/// A subscriber of a NATS server's WebSocket listener, counted exactly like Herald's. Core NATS
/// is at-most-once: loss here is reported, not a protocol breach.
async fn nats_session(
    a: &Args,
    totals: &Totals,
    local: &mut Histogram<u64>,
    ready: &AtomicU64,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    client: &mut Client,
) -> anyhow::Result<bool> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = &a.source_ip {
        sock.bind(format!("{ip}:0").parse()?)?;
    }
    let addr = server_addr(a, client.server);
    let tcp = sock.connect(addr.parse()?).await?;
    tcp.set_nodelay(true)?;
    let req = format!("ws://{addr}/").into_client_request()?;
    let cfg = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(cfg)).await?;
    let hello = format!("CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1}}\r\nSUB {} 1\r\nPING\r\n", a.channel);
    ws.send(Message::Binary(hello.into_bytes().into())).await?;
    let mut buf: Vec<u8> = Vec::new();
    let mut subscribed = false;
    loop {
        let m = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => return Ok(true),
        };
        let Some(m) = m else { return Ok(true) };
        let data = match m? {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            _ => continue,
        };
        totals.ws_messages.fetch_add(1, Ordering::Relaxed);
        buf.extend_from_slice(&data);
        let now = crate::now_us();
        let mut n = 0;
        let mut at = 0;
        // Protocol lines end in CRLF; a MSG line is followed by its payload and CRLF.
        while let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") {
            let line = std::str::from_utf8(&buf[at..at + eol])?;
            if let Some(rest) = line.strip_prefix("MSG ") {
                let len: usize = rest.rsplit(' ').next().and_then(|l| l.parse().ok()).ok_or_else(|| anyhow::anyhow!("bad MSG line {line}"))?;
                let start = at + eol + 2;
                if buf.len() < start + len + 2 {
                    break;
                }
                let payload = std::str::from_utf8(&buf[start..start + len])?.to_owned();
                n += count(a, totals, local, client, &payload, now);
                at = start + len + 2;
                continue;
            }
            if line.starts_with("PING") {
                ws.send(Message::Binary(b"PONG\r\n".to_vec().into())).await?;
            } else if line.starts_with("PONG") && !subscribed {
                // The server has processed CONNECT and SUB.
                subscribed = true;
                ready.fetch_add(1, Ordering::Relaxed);
            } else if line.starts_with("-ERR") {
                anyhow::bail!("NATS: {line}");
            }
            at += eol + 2;
        }
        buf.drain(..at);
        if n > 0 {
            totals.messages.fetch_add(n, Ordering::Relaxed);
            let _ = totals.first_at_us.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            totals.last_at_us.fetch_max(now, Ordering::Relaxed);
        }
    }
}

/// Finds `key` (ending in an opening quote) and returns the string up to the closing quote.
fn text_field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let at = frame.find(key)? + key.len();
    let rest = &frame[at..];
    Some(&rest[..rest.find('"')?])
}
