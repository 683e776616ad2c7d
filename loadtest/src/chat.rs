//! Chat: many small rooms, every member publishes over its WebSocket (`publish` frames) and
//! receives everyone's messages, its own included. Every member checks every publisher of its
//! room: each message exactly once, in that publisher's order. A room's members all live in one
//! process, so the number each member sent is known exactly and so is what each member lost.

use crate::hist::Recorder;
use crate::seq::PerPublisher;
use crate::{find, num_field};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `chat` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Server address, host:port.
    #[arg(long)]
    pub addr: String,
    /// Client token (must allow subscribing and publishing on the rooms).
    #[arg(long)]
    pub token: String,
    /// Rooms in this process (named `room-<first_room + i>`).
    #[arg(long)]
    pub rooms: usize,
    /// First room number (so several processes share no room).
    #[arg(long, default_value_t = 0)]
    pub first_room: usize,
    /// Members per room.
    #[arg(long, default_value_t = 5)]
    pub members: usize,
    /// Messages each member publishes per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// How long members publish, seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// After publishing: how long to wait for the last messages, at most.
    #[arg(long, default_value_t = 15)]
    pub grace_secs: u64,
    /// Give up waiting for every member to be subscribed after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub ready_timeout_secs: u64,
    /// Approximate message payload size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Local source address to bind.
    #[arg(long)]
    pub source_ip: Option<String>,
}

#[derive(Default)]
struct Totals {
    received: AtomicU64,
    gaps: AtomicU64,
    dups: AtomicU64,
    lost: AtomicU64,
    acked: AtomicU64,
    publish_errors: AtomicU64,
    failed_members: AtomicU64,
    ready: AtomicU64,
    frames: AtomicU64,
    first_at_us: AtomicU64,
    last_at_us: AtomicU64,
}

struct Shared {
    a: Args,
    rec: Mutex<Recorder>,
    /// Messages sent by each member (room-local index × members + member).
    sent: Vec<AtomicU64>,
    /// Members done publishing (or failed).
    done: Vec<AtomicBool>,
    t: Totals,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn error(&self, what: String) {
        let mut e = self.errors.lock().unwrap();
        if e.len() < 5 {
            eprintln!("{what}");
            e.push(what);
        }
    }
}

/// Runs every room of this process to the end; returns the report.
pub async fn run(a: Args) -> anyhow::Result<Value> {
    anyhow::ensure!(a.rooms > 0 && a.members > 0 && a.rate > 0.0, "--rooms, --members and --rate must be positive");
    let members = a.rooms * a.members;
    let sh = Arc::new(Shared {
        sent: (0..members).map(|_| AtomicU64::new(0)).collect(),
        done: (0..members).map(|_| AtomicBool::new(false)).collect(),
        a,
        rec: Mutex::new(Recorder::default()),
        t: Totals::default(),
        errors: Mutex::new(Vec::new()),
    });
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for m in 0..members {
        let (sh, go) = (sh.clone(), go_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = member(&sh, m, go).await {
                sh.t.failed_members.fetch_add(1, Ordering::Relaxed);
                sh.error(format!("member {m}: {e}"));
            }
        }));
        if (m + 1) % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let start = Instant::now();
    while (sh.t.ready.load(Ordering::Relaxed) as usize) < members && start.elapsed() < Duration::from_secs(sh.a.ready_timeout_secs) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("ready {}", sh.t.ready.load(Ordering::Relaxed));
    let started = Instant::now();
    let _ = go_tx.send(true);
    let bound = Duration::from_secs(sh.a.seconds + sh.a.grace_secs + 10);
    for t in &tasks {
        while !t.is_finished() && started.elapsed() < bound {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for t in &tasks {
        t.abort();
    }
    let t = &sh.t;
    let ld = |x: &AtomicU64| x.load(Ordering::Relaxed);
    let published: u64 = sh.sent.iter().map(ld).sum();
    let received = ld(&t.received);
    let (first, last) = (ld(&t.first_at_us), ld(&t.last_at_us));
    let span = last.saturating_sub(first) as f64 / 1e6;
    let mut rec = sh.rec.lock().unwrap();
    let hists = rec.to_json();
    Ok(json!({
        "role": "chat",
        "rooms": sh.a.rooms,
        "members": members,
        "ready": ld(&t.ready),
        "published": published,
        "acked": ld(&t.acked),
        "publish_errors": ld(&t.publish_errors),
        "failed_members": ld(&t.failed_members),
        // Every member gets every message of its room, its own included.
        "expected_deliveries": published * sh.a.members as u64,
        "deliveries": received,
        "frames": ld(&t.frames),
        "gaps": ld(&t.gaps),
        "duplicates": ld(&t.dups),
        "lost": ld(&t.lost),
        "first_unix_us": first,
        "last_unix_us": last,
        "seconds": span,
        "deliveries_per_sec": if span > 0.0 { (received as f64 / span).round() } else { 0.0 },
        "latency_ms": crate::hist::percentiles(&rec.total),
        "hist": hists["hist"],
        "intervals": hists["intervals"],
        "error_samples": *sh.errors.lock().unwrap(),
        "cpu_seconds": crate::cpu_seconds(),
    }))
}

/// One member, start to end; what it lost is counted however it ends.
async fn member(sh: &Shared, m: usize, go: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let a = &sh.a;
    let mut seen = PerPublisher::new(a.members);
    let result = member_inner(sh, m, go, &mut seen).await;
    sh.done[m].store(true, Ordering::Relaxed);
    let room = m / a.members * a.members..(m / a.members + 1) * a.members;
    let published: Vec<u64> = sh.sent[room].iter().map(|s| s.load(Ordering::Relaxed)).collect();
    sh.t.lost.fetch_add(seen.lost(&published), Ordering::Relaxed);
    result
}

async fn member_inner(sh: &Shared, m: usize, mut go: tokio::sync::watch::Receiver<bool>, seen: &mut PerPublisher) -> anyhow::Result<()> {
    let a = &sh.a;
    let local_room = m / a.members;
    let room = a.first_room + local_room;
    let me = m % a.members;
    let room_range = local_room * a.members..(local_room + 1) * a.members;
    let tcp = crate::connect(&a.addr, a.source_ip.as_deref()).await?;
    let mut req = format!("ws://{}/v1/ws", a.addr).into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {}", a.token).parse()?);
    let (ws, _) = tokio_tungstenite::client_async(req, tcp).await?;
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::Text(format!(r#"{{"type":"subscribe","id":0,"channel":"room-{room}"}}"#).into())).await?;
    let mut lat: Vec<u64> = Vec::with_capacity(16);
    let total = (a.rate * a.seconds as f64).round() as u64;
    let every = Duration::from_secs_f64(1.0 / a.rate);
    let pad = "x".repeat(a.size.saturating_sub(40));
    let mut seq = 0u64;
    let far = Instant::now() + Duration::from_secs(86_400);
    let mut next = far;
    let mut started = false;
    let mut deadline = far;
    let mut subscribed = false;
    let (mut counted_gaps, mut counted_dups) = (0, 0);
    // This member's publishes answered (`published` or an error): a room's messages can all be
    // here before the last answer, which the run must still count.
    let mut answered = 0u64;
    loop {
        // Done: everyone in the room has published everything (or failed), it is all here, and
        // this member's own publishes are all answered.
        if started && seq >= total && answered >= total && sh.done[room_range.clone()].iter().all(|d| d.load(Ordering::Relaxed)) {
            let published: Vec<u64> = sh.sent[room_range.clone()].iter().map(|s| s.load(Ordering::Relaxed)).collect();
            if seen.complete(&published) {
                break;
            }
        }
        tokio::select! {
            _ = go.changed(), if !started => {
                started = true;
                // Spread members' first messages over one interval.
                next = Instant::now() + every.mul_f64((m % 97) as f64 / 97.0);
                deadline = Instant::now() + Duration::from_secs(a.seconds + a.grace_secs);
                if total == 0 {
                    sh.done[m].store(true, Ordering::Relaxed);
                }
            }
            _ = tokio::time::sleep_until(next), if started && seq < total => {
                let t = crate::now_us();
                tx.send(Message::Text(format!(r#"{{"type":"publish","id":{seq},"channel":"room-{room}","data":{{"from":{me},"seq":{seq},"t":{t},"pad":"{pad}"}}}}"#).into())).await?;
                seq += 1;
                sh.sent[m].store(seq, Ordering::Relaxed);
                next += every;
                if seq == total {
                    sh.done[m].store(true, Ordering::Relaxed);
                    next = far;
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
            // Re-check completion now and then (other members finish publishing).
            _ = tokio::time::sleep(Duration::from_millis(200)), if started && seq >= total => {}
            msg = rx.next() => {
                let Some(msg) = msg else { anyhow::bail!("the server closed the connection") };
                let Message::Text(text) = msg? else { continue };
                sh.t.frames.fetch_add(1, Ordering::Relaxed);
                let now = crate::now_us();
                let mut n = 0;
                for line in text.as_bytes().split(|&b| b == b'\n') {
                    if line.starts_with(b"{\"type\":\"message\"") {
                        let (Some(from), Some(s), Some(ts)) = (num_field(line, b"\"from\":"), num_field(line, b"\"seq\":"), num_field(line, b"\"t\":")) else { continue };
                        if seen.see(from as usize, s) {
                            lat.push(now.saturating_sub(ts));
                            n += 1;
                        }
                    } else if line.starts_with(b"{\"type\":\"published\"") {
                        answered += 1;
                        sh.t.acked.fetch_add(1, Ordering::Relaxed);
                    } else if line.starts_with(b"{\"type\":\"subscribed\"") {
                        if !subscribed {
                            subscribed = true;
                            sh.t.ready.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if line.starts_with(b"{\"type\":\"ping\"") {
                        tx.send(Message::Text("{\"type\":\"pong\"}".into())).await?;
                    } else if line.starts_with(b"{\"type\":\"error\"") {
                        if find(line, b"\"id\":").is_some() {
                            answered += 1;
                            sh.t.publish_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        sh.error(format!("member {m}: {}", String::from_utf8_lossy(line)));
                    }
                }
                if n > 0 {
                    sh.rec.lock().unwrap().record_all(now, &lat);
                    lat.clear();
                    sh.t.received.fetch_add(n, Ordering::Relaxed);
                    let _ = sh.t.first_at_us.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                    sh.t.last_at_us.fetch_max(now, Ordering::Relaxed);
                }
                // Keep the totals current, so a member cut off at the deadline still counts.
                let (g, d) = (seen.gaps(), seen.dups());
                sh.t.gaps.fetch_add(g - counted_gaps, Ordering::Relaxed);
                sh.t.dups.fetch_add(d - counted_dups, Ordering::Relaxed);
                (counted_gaps, counted_dups) = (g, d);
            }
        }
    }
    Ok(())
}
