//! Chat: many small rooms, every member publishes over its WebSocket and receives everyone's
//! messages. Each member checks every other member's sequence numbers: each message exactly once,
//! in that publisher's order.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `chat` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Server address, host:port.
    #[arg(long)]
    addr: String,
    /// Client token (must allow publishing on the rooms).
    #[arg(long)]
    token: String,
    /// Rooms in this process (named `room-<first_room + i>`).
    #[arg(long)]
    rooms: usize,
    /// First room number (so several processes share no room).
    #[arg(long, default_value_t = 0)]
    first_room: usize,
    /// Members per room.
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// Messages each member publishes per second.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// How long members publish, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Local source address to bind.
    #[arg(long)]
    source_ip: Option<String>,
}

#[derive(Default)]
struct Totals {
    received: AtomicU64,
    published: AtomicU64,
    gaps: AtomicU64,
    dups: AtomicU64,
    ready: AtomicU64,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let a = Arc::new(a);
    let totals = Arc::new(Totals::default());
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let members = a.rooms * a.members;
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for m in 0..members {
        let (a, totals, hist, go) = (a.clone(), totals.clone(), hist.clone(), go_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = member(&a, m, &totals, &hist, go).await {
                eprintln!("member {m} failed: {e}");
            }
        }));
        if tasks.len() % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while (totals.ready.load(Ordering::Relaxed) as usize) < members {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("ready {members}");
    let started = std::time::Instant::now();
    let _ = go_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(a.seconds + 60), t).await;
    }
    let h = hist.lock().await;
    let published = totals.published.load(Ordering::Relaxed);
    let received = totals.received.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "members": members,
            "published": published,
            // Every member gets every message of its room, its own included.
            "expected_deliveries": published * a.members as u64,
            "deliveries": received,
            "seconds": secs,
            "deliveries_per_sec": received as f64 / secs,
            "gaps": totals.gaps.load(Ordering::Relaxed),
            "duplicates": totals.dups.load(Ordering::Relaxed),
            "latency_ms": crate::report::percentiles(&h),
            "hist": crate::report::encode(&h),
            "cpu_seconds": crate::cpu_seconds(),
        })
    );
    std::process::exit(0);
}

async fn member(a: &Args, m: usize, totals: &Totals, hist: &Mutex<Histogram<u64>>, mut go: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let room = a.first_room + m / a.members;
    let me = format!("{}-{}", room, m % a.members);
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = &a.source_ip {
        sock.bind(format!("{ip}:0").parse()?)?;
    }
    let tcp = sock.connect(a.addr.parse()?).await?;
    tcp.set_nodelay(true)?;
    let mut req = format!("ws://{}/v1/ws", a.addr).into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {}", a.token).parse()?);
    let (ws, _) = tokio_tungstenite::client_async(req, tcp).await?;
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::Text(format!(r#"{{"type":"subscribe","id":0,"channel":"room-{room}"}}"#).into())).await?;
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut expect: HashMap<String, u64> = HashMap::new();
    let mut seq = 0u64;
    let total = (a.rate * a.seconds as f64).round() as u64;
    let every = Duration::from_secs_f64(1.0 / a.rate);
    let mut next = tokio::time::Instant::now() + Duration::from_secs(3600);
    let mut started = false;
    // Members expected to have published everything, then a grace for the last deliveries.
    let deadline = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = go.changed(), if !started => {
                started = true;
                // Spread members' first messages over one interval.
                next = tokio::time::Instant::now() + every.mul_f64((m % 97) as f64 / 97.0);
                deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(a.seconds) + Duration::from_secs(5));
            }
            _ = tokio::time::sleep_until(next), if started && seq < total => {
                let t = crate::now_us();
                tx.send(Message::Text(format!(r#"{{"type":"publish","id":{seq},"channel":"room-{room}","data":{{"from":"{me}","seq":{seq},"t":{t}}}}}"#).into())).await?;
                seq += 1;
                totals.published.fetch_add(1, Ordering::Relaxed);
                next += every;
            }
            _ = &mut deadline => break,
            msg = rx.next() => {
                let Some(msg) = msg else { break };
                let Message::Text(t) = msg? else { continue };
                let now = crate::now_us();
                for line in t.as_str().split('\n') {
                    if line.starts_with("{\"type\":\"message\"") {
                        let (Some(from), Some(s), Some(ts)) = (str_field(line, "\"from\":\""), num_field(line, "\"seq\":"), num_field(line, "\"t\":")) else { continue };
                        let e = expect.entry(from.to_owned()).or_insert(0);
                        if s < *e {
                            totals.dups.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if s > *e {
                            totals.gaps.fetch_add(s - *e, Ordering::Relaxed);
                        }
                        *e = s + 1;
                        totals.received.fetch_add(1, Ordering::Relaxed);
                        let _ = local.record(now.saturating_sub(ts).max(1));
                    } else if line.starts_with("{\"type\":\"subscribed\"") {
                        totals.ready.fetch_add(1, Ordering::Relaxed);
                    } else if line.starts_with("{\"type\":\"ping\"") {
                        tx.send(Message::Text("{\"type\":\"pong\"}".into())).await?;
                    } else if line.starts_with("{\"type\":\"error\"") {
                        anyhow::bail!("server refused: {line}");
                    }
                }
            }
        }
    }
    hist.lock().await.add(&local)?;
    Ok(())
}

fn num_field(frame: &str, key: &str) -> Option<u64> {
    let at = frame.find(key)? + key.len();
    let digits = &frame[at..];
    digits[..digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len())].parse().ok()
}

fn str_field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let at = frame.find(key)? + key.len();
    let rest = &frame[at..];
    Some(&rest[..rest.find('"')?])
}
