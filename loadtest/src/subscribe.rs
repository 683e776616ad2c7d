//! Subscribers: N connections, each on one channel, each checking the publisher's sequence
//! numbers exactly once and in order, across every reconnect.
//!
//! A client behaves like the SDKs: whenever its connection ends (the server cut it as `lagged`,
//! closed it, the network failed, or the scenario cut it on purpose) it reconnects, to the next
//! server of `--addr`, and resumes from the cursor of the last record it processed; a
//! subscription the server ends as `lagged` is resubscribed from that cursor. So any loss or
//! duplicate it counts is one the protocol promised not to produce.

use crate::hist::Recorder;
use crate::seq::SeqCheck;
use crate::{Rng, find, num_field, str_field};
use herald_protocol::proto::Lean;
use memchr::memmem::Finder;
use std::sync::LazyLock;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// `subscribe` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Server address, host:port; several, comma-separated, spread the connections over them
    /// and move each reconnect to the next one (edges of one cluster on a shared bus).
    #[arg(long)]
    pub addr: String,
    /// Client token (any text for `--transport nats`).
    #[arg(long, default_value = "-")]
    pub token: String,
    /// Channel (with `--channels C` > 1: `<channel>-0` … `<channel>-<C-1>`).
    #[arg(long, default_value = "fanout")]
    pub channel: String,
    /// Channels the clients spread over: client i (counting from `--first-client`) takes channel
    /// i mod C.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Number of this process's first client among all processes of the run.
    #[arg(long, default_value_t = 0)]
    pub first_client: usize,
    /// Connections to open.
    #[arg(long)]
    pub connections: usize,
    /// Local source address to bind (spreads ports over 127.0.0.x).
    #[arg(long)]
    pub source_ip: Option<String>,
    /// Without `--control-stdin`: stop after this many seconds with no record on any connection
    /// (after the first one). With it: stop once the publisher's count is known and nothing has
    /// arrived for this long while no client is away.
    #[arg(long, default_value_t = 5)]
    pub idle_exit_secs: u64,
    /// Stop after this many seconds in any case.
    #[arg(long, default_value_t = 300)]
    pub max_secs: u64,
    /// Give up waiting for every connection to be subscribed after this many seconds (the line
    /// `ready R` on stderr then says how many are).
    #[arg(long, default_value_t = 120)]
    pub ready_timeout_secs: u64,
    /// Idle scenario: hold the connections open (answering heartbeats), not subscribed unless
    /// `--idle-subscribe`, for this many seconds after all are ready, then exit.
    #[arg(long)]
    pub idle_hold_secs: Option<u64>,
    /// With `--idle-hold-secs`: each idle connection holds one subscription.
    #[arg(long)]
    pub idle_subscribe: bool,
    /// Start one connection every this many milliseconds (0: 200 every 20 ms): a slow arrival
    /// pattern, as opposed to a burst.
    #[arg(long, default_value_t = 0)]
    pub connect_gap_ms: u64,
    /// Resume after this cursor (replay), instead of subscribing live.
    #[arg(long)]
    pub since: Option<String>,
    /// Mobile: each connection goes to the background (disconnects) after a random time in the
    /// foreground (exponential, this mean in seconds), stays away a random time (the same
    /// mean), and comes back resuming from its cursor; no new background period starts once
    /// the publisher has finished.
    #[arg(long)]
    pub mobile_mean_secs: Option<f64>,
    /// `ws` (WebSocket), `sse` (Server-Sent Events) or `poll` (long-poll); `nats`: a NATS
    /// server's WebSocket listener at `addr` (the peer comparison; subject = the channel).
    #[arg(long, default_value = "ws")]
    pub transport: String,
    /// WebSocket only: speak the compact encoding (`herald.v1.proto`) instead of JSON v1.
    #[arg(long)]
    pub proto: bool,
    /// WebSocket only: ask for `permessage-deflate` (and fail when the server does not grant
    /// it); the bytes on the wire are then counted as read, compressed.
    #[arg(long)]
    pub deflate: bool,
    /// Read control lines on stdin: `storm <unix_ms> <within_ms>` (every connection is cut at
    /// that time, without a close handshake, and reconnects after a uniform delay below
    /// `within_ms`) and `end <n>[,<n>…]` (the publisher sent n records on each channel).
    #[arg(long)]
    pub control_stdin: bool,
    /// Every this many milliseconds, a line `status <unix_ms> <live> <deliveries> <lagged>
    /// <reconnects>` on stderr (`live`: clients whose connection is subscribed right now), so an
    /// orchestrator can time how long clients took to be live again after a fault; 0: none.
    #[arg(long, default_value_t = 0)]
    pub status_ms: u64,
    /// Slow consumer (WebSocket): this many seconds after start, every client stops reading its
    /// socket for `--stall-secs` (once), as an app frozen in the background would; the server must
    /// cut it as `lagged`, and it then resumes from its cursor.
    #[arg(long)]
    pub stall_after_secs: Option<f64>,
    /// How long a `--stall-after-secs` stall lasts.
    #[arg(long, default_value_t = 20.0)]
    pub stall_secs: f64,
    /// The socket's receive buffer (`SO_RCVBUF`), bytes; small values make a stalled reader's
    /// backlog reach the server's queue sooner. 0: the kernel's default.
    #[arg(long, default_value_t = 0)]
    pub recv_buffer: u32,
}

/// The `i`th channel of `channels` named after `base`.
pub fn channel_name(base: &str, channels: usize, i: usize) -> String {
    if channels <= 1 { base.to_owned() } else { format!("{base}-{}", i % channels) }
}

/// A storm: every connection cut at `at_us` (Unix µs), back within `within_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Storm {
    pub at_us: u64,
    pub within_ms: u64,
}

/// What the orchestrator tells a running process.
#[derive(Clone)]
pub struct Control {
    storm: watch::Receiver<Option<Storm>>,
    end: watch::Receiver<Option<Arc<Vec<u64>>>>,
    ready: Arc<AtomicU64>,
}

/// The orchestrator's side of [`Control`].
pub struct ControlTx {
    storm: watch::Sender<Option<Storm>>,
    end: watch::Sender<Option<Arc<Vec<u64>>>>,
    ready: Arc<AtomicU64>,
}

pub fn control() -> (ControlTx, Control) {
    let (storm_tx, storm) = watch::channel(None);
    let (end_tx, end) = watch::channel(None);
    let ready = Arc::new(AtomicU64::new(0));
    (ControlTx { storm: storm_tx, end: end_tx, ready: ready.clone() }, Control { storm, end, ready })
}

impl ControlTx {
    /// Clients subscribed so far (for the first time).
    pub fn ready(&self) -> u64 {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn storm(&self, s: Storm) {
        let _ = self.storm.send(Some(s));
    }

    /// The publisher is done: it sent `published[c]` records on channel c.
    pub fn end(&self, published: Vec<u64>) {
        let _ = self.end.send(Some(Arc::new(published)));
    }

    /// Applies one control line; an error for a line it does not understand.
    pub fn line(&self, line: &str) -> anyhow::Result<()> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("storm"), Some(at), Some(within)) => self.storm(Storm { at_us: at.parse::<u64>()? * 1000, within_ms: within.parse()? }),
            (Some("end"), Some(counts), None) => self.end(counts.split(',').map(str::parse).collect::<Result<_, _>>()?),
            (None, ..) => {}
            _ => anyhow::bail!("bad control line {line:?}"),
        }
        Ok(())
    }

    /// Feeds stdin's lines in, on a thread of its own.
    pub fn from_stdin(self) {
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if let Err(e) = self.line(&line) {
                    eprintln!("{e}");
                }
            }
            // Keep the senders: a closed stdin is not a new instruction.
            std::thread::park();
        });
    }
}

/// One client's numbers, readable while it runs.
#[derive(Default)]
struct Slot {
    next: AtomicU64,
    gaps: AtomicU64,
    dups: AtomicU64,
    received: AtomicU64,
}

#[derive(Default)]
struct Counters {
    deliveries: AtomicU64,
    frames: AtomicU64,
    /// WebSocket message payload bytes received (after decompression, before decoding).
    wire_bytes: AtomicU64,
    reconnects: AtomicU64,
    planned_cuts: AtomicU64,
    lagged: AtomicU64,
    closed: AtomicU64,
    errors: AtomicU64,
    connect_errors: AtomicU64,
    resubscribes: AtomicU64,
    unrecovered: AtomicU64,
    drains: AtomicU64,
    /// Connections subscribed right now.
    live: AtomicI64,
    /// Stalls done (slow consumer).
    stalls: AtomicU64,
    first_at_us: AtomicU64,
    last_at_us: AtomicU64,
    /// Clients away on purpose or backing off: a quiet moment is not the end while any is.
    away: AtomicI64,
}

struct Shared {
    args: Args,
    rec: Mutex<Recorder>,
    slots: Vec<Slot>,
    ready: AtomicU64,
    n: Counters,
    error_samples: Mutex<Vec<String>>,
    /// The last cursor of the first few clients, when they stopped (where each one's log ended).
    final_cursors: Mutex<Vec<String>>,
}

impl Shared {
    fn error(&self, what: String) {
        let mut s = self.error_samples.lock().unwrap();
        if s.len() < 5 {
            eprintln!("{what}");
            s.push(what);
        }
    }
}

/// How a connection ended.
enum End {
    /// The run is over.
    Stopped,
    /// Cut on purpose (storm, background): come back after this long.
    Cut(Duration),
    /// Lost: reconnect with backoff.
    Lost(Why),
}

enum Why {
    Connect(String),
    Lagged,
    Closed,
    Drain(u64),
    Error(String),
}

/// What one client carries from one connection to the next.
struct Client {
    server: usize,
    channel: String,
    seq: SeqCheck,
    /// The cursor of the last record processed (or of the `subscribed` reply): where a
    /// reconnect resumes. Empty: none yet.
    cursor: String,
    ever_subscribed: bool,
    storm_done: bool,
    /// The slow-consumer stall happened (`--stall-after-secs`).
    stalled: bool,
    /// When the client started (the stall is timed from it).
    started: Instant,
    rng: Rng,
    /// Latencies of the frame being read (µs), recorded together.
    lat: Vec<u64>,
}

impl Client {
    fn set_cursor(&mut self, c: &[u8]) {
        self.cursor.clear();
        self.cursor.push_str(std::str::from_utf8(c).unwrap_or(""));
    }

    /// Counts one record (`line` holds its fields); true if it was new.
    fn record(&mut self, line: &[u8], now: u64) -> bool {
        // The cursor comes before the data: read it, then look for the payload's fields after it.
        static CURSOR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"cursor\":\""));
        let data = match CURSOR.find(line).map(|at| at + CURSOR.needle().len()) {
            Some(at) => {
                let Some(len) = memchr::memchr(b'"', &line[at..]) else { return false };
                self.set_cursor(&line[at..at + len]);
                &line[at + len..]
            }
            None => line,
        };
        self.count(data, now)
    }

    /// Counts one record by the `seq` and `t` of its payload; true if it was new. The publisher
    /// writes `"t"` right after `"seq"`; anything else is found by searching.
    fn count(&mut self, data: &[u8], now: u64) -> bool {
        static SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\":"));
        let Some(at) = SEQ.find(data).map(|at| at + SEQ.needle().len()) else { return false };
        let Some((seq, end)) = digits(data, at) else { return false };
        let t = match data[end..].starts_with(b",\"t\":") {
            true => digits(data, end + 5).map(|(t, _)| t),
            false => num_field(data, b"\"t\":"),
        };
        let Some(t) = t else { return false };
        if self.seq.see(seq) {
            self.lat.push(now.saturating_sub(t));
            true
        } else {
            false
        }
    }
}

/// The unsigned number at `at` and the position after it.
fn digits(s: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut n: u64 = 0;
    let mut end = at;
    while let Some(&b) = s.get(end).filter(|b| b.is_ascii_digit()) {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        end += 1;
    }
    (end > at).then_some((n, end))
}

/// Runs the subscribers until the run is over; returns this process's report.
pub async fn run(a: Args, ctl: Control) -> anyhow::Result<Value> {
    anyhow::ensure!(a.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(matches!(a.transport.as_str(), "ws" | "sse" | "poll" | "nats"), "unknown transport {} (ws, sse, poll or nats)", a.transport);
    let n = a.connections;
    let sh = Arc::new(Shared {
        slots: (0..n).map(|_| Slot::default()).collect(),
        args: a,
        rec: Mutex::new(Recorder::default()),
        ready: AtomicU64::new(0),
        n: Counters::default(),
        error_samples: Mutex::new(Vec::new()),
        final_cursors: Mutex::new(vec![String::new(); n.min(4)]),
    });
    let a = &sh.args;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let (sh, ctl, stop) = (sh.clone(), ctl.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move { client(sh, i, ctl, stop).await }));
        // Pace the handshakes a little so the listen backlog never overflows.
        if a.connect_gap_ms > 0 {
            tokio::time::sleep(Duration::from_millis(a.connect_gap_ms)).await;
        } else if (i + 1) % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut announced_at: Option<Instant> = None;
    let mut last_count = 0u64;
    let mut last_progress = Instant::now();
    let mut last_status = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(if a.status_ms > 0 { a.status_ms.min(100) } else { 100 })).await;
        if a.status_ms > 0 && last_status.elapsed() >= Duration::from_millis(a.status_ms) {
            last_status = Instant::now();
            eprintln!(
                "status {} {} {} {} {}",
                crate::now_us() / 1000,
                sh.n.live.load(Ordering::Relaxed),
                sh.n.deliveries.load(Ordering::Relaxed),
                sh.n.lagged.load(Ordering::Relaxed),
                sh.n.reconnects.load(Ordering::Relaxed)
            );
        }
        let ready = sh.ready.load(Ordering::Relaxed) as usize;
        ctl.ready.store(ready as u64, Ordering::Relaxed);
        if announced_at.is_none() && (ready == n || start.elapsed() > Duration::from_secs(a.ready_timeout_secs)) {
            eprintln!("ready {ready}");
            announced_at = Some(Instant::now());
        }
        if start.elapsed() > Duration::from_secs(a.max_secs) {
            break;
        }
        if let Some(hold) = a.idle_hold_secs {
            // Held long enough, or the orchestrator has measured and says `end`.
            if announced_at.is_some_and(|t| t.elapsed() > Duration::from_secs(hold)) || (a.control_stdin && ctl.end.borrow().is_some()) {
                break;
            }
            continue;
        }
        let count = sh.n.deliveries.load(Ordering::Relaxed);
        if count != last_count {
            last_count = count;
            last_progress = Instant::now();
        }
        let quiet = last_progress.elapsed() > Duration::from_secs(a.idle_exit_secs);
        if a.control_stdin {
            let Some(published) = ctl.end.borrow().clone() else { continue };
            let all = sh.slots.iter().enumerate().all(|(i, s)| s.next.load(Ordering::Relaxed) >= published_on(&published, a, i));
            // Nothing new for a while, nobody away or backing off: what is missing will not come.
            if all || (quiet && sh.n.away.load(Ordering::Relaxed) <= 0) {
                break;
            }
        } else if count > 0 && quiet {
            break;
        }
    }
    let _ = stop_tx.send(true);
    for t in &tasks {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !t.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for t in &tasks {
        t.abort();
    }
    let published = ctl.end.borrow().clone();
    Ok(report(&sh, published.as_deref().map(Vec::as_slice)))
}

/// Records on client `i`'s channel.
fn published_on(published: &[u64], a: &Args, i: usize) -> u64 {
    let c = (a.first_client + i) % a.channels.max(1);
    published.get(c).copied().unwrap_or_else(|| published.first().copied().unwrap_or(0))
}

fn report(sh: &Shared, published: Option<&[u64]>) -> Value {
    let a = &sh.args;
    let n = &sh.n;
    let ld = |x: &AtomicU64| x.load(Ordering::Relaxed);
    let (mut gaps, mut dups, mut received, mut tail, mut complete, mut expected) = (0, 0, 0, 0, 0, 0);
    for (i, s) in sh.slots.iter().enumerate() {
        gaps += ld(&s.gaps);
        dups += ld(&s.dups);
        received += ld(&s.received);
        if let Some(p) = published {
            let want = published_on(p, a, i);
            let next = ld(&s.next);
            expected += want;
            tail += want.saturating_sub(next);
            complete += u64::from(next >= want);
        }
    }
    let (first, last) = (ld(&n.first_at_us), ld(&n.last_at_us));
    let span = last.saturating_sub(first) as f64 / 1e6;
    let mut rec = sh.rec.lock().unwrap();
    let hists = rec.to_json();
    let mut out = json!({
        "role": "subscribe",
        "transport": a.transport,
        "connections": a.connections,
        "ready": ld(&sh.ready),
        "deliveries": received,
        "frames": ld(&n.frames),
        "wire_bytes": ld(&n.wire_bytes),
        "gaps": gaps,
        "duplicates": dups,
        "reconnects": ld(&n.reconnects),
        "planned_cuts": ld(&n.planned_cuts),
        "lagged": ld(&n.lagged),
        "closed_by_server": ld(&n.closed),
        "errors": ld(&n.errors),
        "connect_errors": ld(&n.connect_errors),
        "resubscribes": ld(&n.resubscribes),
        "unrecovered": ld(&n.unrecovered),
        "drains": ld(&n.drains),
        "stalls": ld(&n.stalls),
        "first_unix_us": first,
        "last_unix_us": last,
        "seconds": span,
        "deliveries_per_sec": if span > 0.0 { (received as f64 / span).round() } else { 0.0 },
        "latency_ms": crate::hist::percentiles(&rec.total),
        "hist": hists["hist"],
        "intervals": hists["intervals"],
        "error_samples": *sh.error_samples.lock().unwrap(),
        "final_cursors": *sh.final_cursors.lock().unwrap(),
        "cpu_seconds": crate::cpu_seconds(),
    });
    if let Some(p) = published {
        out["published"] = json!(p);
        out["expected_deliveries"] = json!(expected);
        out["missing_tail"] = json!(tail);
        out["lost"] = json!(gaps + tail);
        out["complete_clients"] = json!(complete);
    }
    out
}

/// The `i`th server of `--addr` (round robin).
fn server_addr(a: &Args, i: usize) -> &str {
    let n = a.addr.split(',').count();
    a.addr.split(',').nth(i % n).unwrap_or(&a.addr)
}

/// One client, from its first connection to the end of the run.
async fn client(sh: Arc<Shared>, i: usize, mut ctl: Control, mut stop: watch::Receiver<bool>) {
    let a = &sh.args;
    let mut c = Client {
        server: i,
        channel: channel_name(&a.channel, a.channels, a.first_client + i),
        seq: SeqCheck::new(0),
        cursor: a.since.clone().unwrap_or_default(),
        ever_subscribed: false,
        storm_done: false,
        stalled: false,
        started: Instant::now(),
        rng: Rng::new(i as u64),
        lat: Vec::with_capacity(64),
    };
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            break;
        }
        let ended = match a.transport.as_str() {
            "ws" | "nats" => ws_session(&sh, i, &mut c, &mut ctl, &mut stop).await,
            _ => http_session(&sh, i, &mut c, &mut ctl, &mut stop).await,
        };
        let pause = match ended {
            End::Stopped => break,
            End::Cut(away) => {
                sh.n.planned_cuts.fetch_add(1, Ordering::Relaxed);
                failures = 0;
                away
            }
            End::Lost(why) => {
                match why {
                    Why::Connect(e) => {
                        sh.n.connect_errors.fetch_add(1, Ordering::Relaxed);
                        sh.error(format!("connect: {e}"));
                    }
                    Why::Lagged => {
                        sh.n.lagged.fetch_add(1, Ordering::Relaxed);
                    }
                    Why::Closed => {
                        sh.n.closed.fetch_add(1, Ordering::Relaxed);
                    }
                    Why::Drain(after) => {
                        // The node is going away: come back when it says, resuming.
                        sh.n.drains.fetch_add(1, Ordering::Relaxed);
                        failures = 0;
                        sh.n.reconnects.fetch_add(1, Ordering::Relaxed);
                        c.server += 1;
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(after)) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                    Why::Error(e) => {
                        sh.n.errors.fetch_add(1, Ordering::Relaxed);
                        sh.error(e);
                    }
                }
                // Full-jitter exponential backoff, 100 ms doubling to 5 s, as the SDKs do.
                failures = failures.saturating_add(1);
                let cap = (100u64 << failures.min(6)).min(5000);
                Duration::from_millis(c.rng.below(cap) + 10)
            }
        };
        sh.n.reconnects.fetch_add(1, Ordering::Relaxed);
        // With several servers, a reconnect goes to the next one: resume works across edges.
        c.server += 1;
        sh.n.away.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
        sh.n.away.fetch_sub(1, Ordering::Relaxed);
    }
    if let Some(slot) = sh.final_cursors.lock().unwrap().get_mut(i) {
        slot.clone_from(&c.cursor);
    }
}

/// Waits for what can end a connection from our side: the end of the run, the storm, the
/// background. Cancel-safe: sessions race it against the server's next frame.
struct Waits {
    session_start_us: u64,
    mobile_at: Option<Instant>,
    storm_closed: bool,
}

enum Interrupt {
    Stop,
    Cut(Duration),
}

impl Waits {
    fn new(a: &Args, c: &mut Client, ctl: &Control) -> Self {
        let mobile_at = match a.mobile_mean_secs {
            Some(mean) if ctl.end.borrow().is_none() && a.idle_hold_secs.is_none() => {
                Some(Instant::now() + Duration::from_secs_f64(c.rng.exp(mean).max(0.1)))
            }
            _ => None,
        };
        Waits { session_start_us: crate::now_us(), mobile_at, storm_closed: false }
    }

    /// When the pending storm cuts this connection, if it does.
    fn storm_at(&self, c: &mut Client, ctl: &Control) -> Option<(Instant, u64)> {
        if c.storm_done {
            return None;
        }
        let s = (*ctl.storm.borrow())?;
        if s.at_us < self.session_start_us {
            // The storm passed while this client was away: it is over for it.
            c.storm_done = true;
            return None;
        }
        let now = crate::now_us();
        Some((Instant::now() + Duration::from_micros(s.at_us.saturating_sub(now)), s.within_ms))
    }

    async fn next(&mut self, a: &Args, c: &mut Client, ctl: &mut Control, stop: &mut watch::Receiver<bool>) -> Interrupt {
        loop {
            let storm = self.storm_at(c, ctl);
            let at = match (storm.map(|s| s.0), self.mobile_at) {
                (Some(s), Some(m)) => Some(s.min(m)),
                (s, m) => s.or(m),
            };
            tokio::select! {
                _ = stop.changed() => return Interrupt::Stop,
                changed = ctl.storm.changed(), if !self.storm_closed => {
                    if changed.is_err() {
                        self.storm_closed = true;
                    }
                }
                _ = tokio::time::sleep_until(at.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))), if at.is_some() => {
                    if let Some((s, within)) = storm
                        && Instant::now() >= s {
                            c.storm_done = true;
                            return Interrupt::Cut(Duration::from_millis(c.rng.below(within.max(1))));
                        }
                    // The background; but not once the publisher is done (the run winds down).
                    self.mobile_at = None;
                    if ctl.end.borrow().is_none() {
                        let mean = a.mobile_mean_secs.unwrap_or(1.0);
                        return Interrupt::Cut(Duration::from_secs_f64(c.rng.exp(mean).max(0.1)));
                    }
                }
            }
        }
    }
}

/// Records what a frame delivered.
fn delivered(sh: &Shared, i: usize, c: &mut Client, n: u64, now: u64) {
    let s = &sh.slots[i];
    s.next.store(c.seq.next, Ordering::Relaxed);
    s.gaps.store(c.seq.gaps, Ordering::Relaxed);
    s.dups.store(c.seq.dups, Ordering::Relaxed);
    s.received.store(c.seq.received, Ordering::Relaxed);
    if n > 0 {
        sh.rec.lock().unwrap().record_all(now, &c.lat);
        c.lat.clear();
        sh.n.deliveries.fetch_add(n, Ordering::Relaxed);
        let _ = sh.n.first_at_us.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        sh.n.last_at_us.fetch_max(now, Ordering::Relaxed);
    }
}

fn first_ready(sh: &Shared, c: &mut Client) {
    if !c.ever_subscribed {
        c.ever_subscribed = true;
        sh.ready.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a connection in `live` from its `subscribed` reply until it ends.
struct Live<'a> {
    n: &'a AtomicI64,
    on: bool,
}

impl Live<'_> {
    fn set(&mut self) {
        if !self.on {
            self.on = true;
            self.n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        if self.on {
            self.n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One WebSocket connection (Herald's, or a NATS server's WebSocket listener).
async fn ws_session(sh: &Shared, i: usize, c: &mut Client, ctl: &mut Control, stop: &mut watch::Receiver<bool>) -> End {
    let a = &sh.args;
    let nats = a.transport == "nats";
    let addr = server_addr(a, c.server).to_owned();
    let handshake = async {
        let tcp = crate::connect_with(&addr, a.source_ip.as_deref(), a.recv_buffer).await?;
        let mut req = if nats { format!("ws://{addr}/") } else { format!("ws://{addr}/v1/ws") }.into_client_request()?;
        if !nats {
            req.headers_mut().insert("authorization", format!("Bearer {}", a.token).parse()?);
        }
        if a.proto {
            req.headers_mut().insert("sec-websocket-protocol", herald_protocol::SUBPROTOCOL_PROTO.parse()?);
        }
        // The Rust SDK's reader of compressed messages (tungstenite cannot read them).
        let io = if a.deflate {
            req.headers_mut().insert("sec-websocket-extensions", herald_client::deflate::OFFER.parse()?);
            herald_client::deflate::DeflateIo::inflating(tcp, 64 << 20)
        } else {
            herald_client::deflate::DeflateIo::plain(tcp)
        };
        let cfg = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let (ws, resp) = tokio_tungstenite::client_async_with_config(req, io, Some(cfg)).await?;
        if a.deflate && !herald_client::deflate::granted(resp.headers().get("sec-websocket-extensions").and_then(|v| v.to_str().ok())) {
            anyhow::bail!("the server did not grant permessage-deflate");
        }
        anyhow::Ok(ws)
    };
    let mut ws = tokio::select! {
        r = handshake => match r {
            Ok(ws) => ws,
            Err(e) => return End::Lost(Why::Connect(format!("{addr}: {e}"))),
        },
        _ = stop.changed() => return End::Stopped,
    };
    let mut waits = Waits::new(a, c, ctl);
    let mut raw_seen = ws.get_ref().raw_bytes();
    let idle = a.idle_hold_secs.is_some();
    let subscribe = !idle || a.idle_subscribe;
    let hello = if nats {
        // CONNECT, SUB when subscribing, and a PING whose PONG says both were processed.
        let sub = if subscribe { format!("SUB {} 1\r\n", c.channel) } else { String::new() };
        Some(Message::Binary(format!("CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1}}\r\n{sub}PING\r\n").into_bytes().into()))
    } else if subscribe {
        Some(herald_frame(a, &subscribe_frame(c)))
    } else {
        // An idle Herald connection is ready once the server accepted it.
        first_ready(sh, c);
        None
    };
    if let Some(hello) = hello
        && let Err(e) = ws.send(hello).await {
            return End::Lost(Why::Error(format!("send: {e}")));
        }
    // NATS: protocol bytes not yet parsed (a MSG may span WebSocket messages).
    let mut pending: Vec<u8> = Vec::new();
    // The compact encoding, read back as JSON v1 lines (the subscriptions it numbered).
    let mut reader = a.proto.then(herald_protocol::proto::ProtoReader::new);
    let mut live = Live { n: &sh.n.live, on: false };
    loop {
        if let Some(after) = a.stall_after_secs
            && !c.stalled
            && c.started.elapsed() >= Duration::from_secs_f64(after)
        {
            // Stop reading: the kernel's buffers fill, then the server's queue for us.
            c.stalled = true;
            sh.n.stalls.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(a.stall_secs)) => {}
                _ = stop.changed() => return End::Stopped,
            }
        }
        let m = tokio::select! {
            m = ws.next() => m,
            i = waits.next(a, c, ctl, stop) => match i {
                Interrupt::Stop => return End::Stopped,
                Interrupt::Cut(away) => {
                    if a.mobile_mean_secs.is_some() {
                        // Going to the background closes the socket; a storm just loses it.
                        let _ = tokio::time::timeout(Duration::from_millis(100), ws.close(None)).await;
                    }
                    return End::Cut(away);
                }
            },
        };
        let m = match m {
            None => return End::Lost(Why::Closed),
            Some(Err(e)) => return End::Lost(Why::Error(format!("read: {e}"))),
            Some(Ok(m)) => m,
        };
        let now = crate::now_us();
        let mut n = 0;
        let mut replies: Option<&'static [u8]> = None;
        let mut resubscribe = false;
        if a.deflate {
            // What the socket delivered, compressed (frame headers included).
            let raw = ws.get_ref().raw_bytes();
            sh.n.wire_bytes.fetch_add(raw - raw_seen, Ordering::Relaxed);
            raw_seen = raw;
        } else if let Message::Text(_) | Message::Binary(_) = &m {
            sh.n.wire_bytes.fetch_add(m.len() as u64, Ordering::Relaxed);
        }
        // A compact message: its records counted straight from their payloads (the cursor built
        // once, for the last), every other frame as the JSON v1 line it stands for.
        let decoded: Option<String> = match (&m, reader.as_mut()) {
            (Message::Binary(b), Some(r)) => {
                let mut s = String::new();
                let mut last = None;
                for f in herald_protocol::proto::split_batch(b) {
                    match f.map_err(|e| e.to_string()).and_then(|f| r.frame_lean(&b.slice_ref(f)).map_err(|e| e.to_string())) {
                        Ok(Lean::Record(rec)) => {
                            n += u64::from(c.count(&rec.data, now));
                            last = Some(rec);
                        }
                        Ok(Lean::Json(json)) => s.push_str(std::str::from_utf8(json.as_ref()).unwrap_or("")),
                        Ok(Lean::Skipped) => {}
                        Err(e) => return End::Lost(Why::Error(format!("compact frame: {e}"))),
                    }
                }
                if let Some(rec) = last {
                    match r.cursor(&rec) {
                        Ok(cursor) => c.cursor = cursor,
                        Err(e) => return End::Lost(Why::Error(format!("compact frame: {e}"))),
                    }
                }
                Some(s)
            }
            _ => None,
        };
        let text: Option<&str> = match (&m, &decoded) {
            (_, Some(s)) => Some(s.as_str()),
            (Message::Text(t), None) if !nats => Some(t.as_str()),
            _ => None,
        };
        match &m {
            _ if text.is_some() => {
                let t = text.unwrap_or("");
                sh.n.frames.fetch_add(1, Ordering::Relaxed);
                let bytes = t.as_bytes();
                let mut from = 0;
                while from < bytes.len() {
                    let end = memchr::memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |e| from + e);
                    let line = &bytes[from..end];
                    from = end + 1;
                    if line.starts_with(b"{\"type\":\"message\"") {
                        n += u64::from(c.record(line, now));
                    } else if line.starts_with(b"{\"type\":\"subscribed\"") {
                        first_ready(sh, c);
                        live.set();
                        if c.cursor.is_empty() {
                            if let Some(cur) = str_field(line, b"\"cursor\":\"") {
                                c.set_cursor(cur);
                            }
                        } else if find(line, b"\"recovered\":false").is_some() {
                            sh.n.unrecovered.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if line.starts_with(b"{\"type\":\"ping\"") {
                        replies = Some(b"{\"type\":\"pong\"}");
                    } else if line.starts_with(b"{\"type\":\"unsubscribed\"") && find(line, b"\"code\":\"lagged\"").is_some() {
                        // A shed subscription: resubscribe from the cursor, the connection stays.
                        resubscribe = true;
                    } else if line.starts_with(b"{\"type\":\"error\"") {
                        if find(line, b"\"code\":\"lagged\"").is_some() {
                            delivered(sh, i, c, n, now);
                            return End::Lost(Why::Lagged);
                        }
                        sh.error(format!("server: {}", String::from_utf8_lossy(line)));
                        if find(line, b"\"code\":\"unavailable\"").is_some() {
                            // The subscribe was refused for now (the bus did not answer): as the
                            // SDKs do, back off and try again, resuming from the cursor.
                            delivered(sh, i, c, n, now);
                            return End::Lost(Why::Error("subscribe: unavailable".into()));
                        }
                    } else if line.starts_with(b"{\"type\":\"reconnect\"") {
                        delivered(sh, i, c, n, now);
                        let after = num_field(line, b"\"after_ms\":").unwrap_or(1000);
                        return End::Lost(Why::Drain(after));
                    }
                }
            }
            Message::Binary(b) if nats => {
                sh.n.frames.fetch_add(1, Ordering::Relaxed);
                pending.extend_from_slice(b);
                match nats_parse(&mut pending, c, now) {
                    Ok((got, ping, pong)) => {
                        n += got;
                        if pong {
                            first_ready(sh, c);
                        }
                        if ping {
                            replies = Some(b"PONG\r\n");
                        }
                    }
                    Err(e) => return End::Lost(Why::Error(e.to_string())),
                }
            }
            Message::Close(f) => {
                delivered(sh, i, c, n, now);
                let code = f.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
                return End::Lost(if code == 4008 { Why::Lagged } else { Why::Closed });
            }
            _ => {}
        }
        delivered(sh, i, c, n, now);
        if let Some(r) = replies {
            let msg = if nats { Message::Binary(r.to_vec().into()) } else { herald_frame(a, std::str::from_utf8(r).unwrap_or("")) };
            if let Err(e) = ws.send(msg).await {
                return End::Lost(Why::Error(format!("send: {e}")));
            }
        }
        if resubscribe {
            sh.n.resubscribes.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = ws.send(herald_frame(a, &subscribe_frame(c))).await {
                return End::Lost(Why::Error(format!("send: {e}")));
            }
        }
    }
}

/// A client frame (JSON v1 text) in the connection's encoding.
fn herald_frame(a: &Args, json: &str) -> Message {
    match herald_protocol::decode_client_frame(json) {
        Ok(frame) if a.proto => Message::Binary(herald_protocol::proto::encode_client_frame(&frame)),
        _ => Message::Text(json.into()),
    }
}

fn subscribe_frame(c: &Client) -> String {
    if c.cursor.is_empty() {
        format!(r#"{{"type":"subscribe","id":1,"channel":"{}"}}"#, c.channel)
    } else {
        format!(r#"{{"type":"subscribe","id":1,"channel":"{}","since":"{}"}}"#, c.channel, c.cursor)
    }
}

/// Parses what `buf` holds of the NATS protocol (lines end in CRLF; a MSG line is followed by
/// its payload and CRLF), counts the records, keeps an incomplete tail. Returns (records new,
/// a PING came, a PONG came).
fn nats_parse(buf: &mut Vec<u8>, c: &mut Client, now: u64) -> anyhow::Result<(u64, bool, bool)> {
    let (mut n, mut ping, mut pong) = (0, false, false);
    let mut at = 0;
    static CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n"));
    while let Some(eol) = CRLF.find(&buf[at..]) {
        let line = &buf[at..at + eol];
        if let Some(rest) = line.strip_prefix(b"MSG ") {
            let len_text = rest.rsplit(|&b| b == b' ').next().unwrap_or(b"");
            let len: usize = std::str::from_utf8(len_text)?.parse().map_err(|_| anyhow::anyhow!("bad MSG line {}", String::from_utf8_lossy(line)))?;
            let start = at + eol + 2;
            if buf.len() < start + len + 2 {
                break;
            }
            n += u64::from(c.count(&buf[start..start + len], now));
            at = start + len + 2;
            continue;
        }
        if line.starts_with(b"PING") {
            ping = true;
        } else if line.starts_with(b"PONG") {
            pong = true;
        } else if line.starts_with(b"-ERR") {
            anyhow::bail!("NATS: {}", String::from_utf8_lossy(line));
        }
        at += eol + 2;
    }
    buf.drain(..at);
    Ok((n, ping, pong))
}

/// One SSE stream, or long-polls one after another on one keep-alive connection.
async fn http_session(sh: &Shared, i: usize, c: &mut Client, ctl: &mut Control, stop: &mut watch::Receiver<bool>) -> End {
    use http_body_util::BodyExt;
    let a = &sh.args;
    let sse = a.transport == "sse";
    let addr = server_addr(a, c.server).to_owned();
    let handshake = async {
        let tcp = crate::connect(&addr, a.source_ip.as_deref()).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        anyhow::Ok(send)
    };
    let mut send = tokio::select! {
        r = handshake => match r {
            Ok(s) => s,
            Err(e) => return End::Lost(Why::Connect(format!("{addr}: {e}"))),
        },
        _ = stop.changed() => return End::Stopped,
    };
    let mut waits = Waits::new(a, c, ctl);
    let path = if sse { "sse" } else { "poll" };
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let mut uri = format!("/v1/{path}?channels={}&token={}", c.channel, a.token);
        if !c.cursor.is_empty() {
            uri += "&since=";
            uri += &c.cursor;
        } else if !sse {
            // No cursor yet: a poll that answers at once with the current position.
            uri += "&timeout_ms=1";
        }
        let req = match hyper::Request::get(uri).header("host", &addr).body(http_body_util::Empty::<bytes::Bytes>::new()) {
            Ok(r) => r,
            Err(e) => return End::Lost(Why::Error(e.to_string())),
        };
        let resp = tokio::select! {
            r = send.send_request(req) => r,
            i = waits.next(a, c, ctl, stop) => match i {
                Interrupt::Stop => return End::Stopped,
                Interrupt::Cut(away) => return End::Cut(away),
            },
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return End::Lost(Why::Error(format!("{path}: {e}"))),
        };
        if resp.status() != 200 {
            return End::Lost(Why::Error(format!("{path} answered {}", resp.status())));
        }
        let mut body = resp.into_body();
        pending.clear();
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                i = waits.next(a, c, ctl, stop) => match i {
                    Interrupt::Stop => return End::Stopped,
                    Interrupt::Cut(away) => return End::Cut(away),
                },
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => return End::Lost(Why::Error(format!("{path}: {e}"))),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
            };
            if !sse {
                pending.extend_from_slice(&data);
                continue;
            }
            sh.n.frames.fetch_add(1, Ordering::Relaxed);
            pending.extend_from_slice(&data);
            let now = crate::now_us();
            let mut n = 0;
            // Events end with an empty line; each `data:` line holds one frame.
            let mut at = 0;
            while let Some(end) = find(&pending[at..], b"\n\n") {
                for line in pending[at..at + end].split(|&b| b == b'\n') {
                    let Some(frame) = line.strip_prefix(b"data: ") else { continue };
                    if frame.starts_with(b"{\"type\":\"message\"") {
                        n += u64::from(c.record(frame, now));
                    } else if frame.starts_with(b"{\"type\":\"subscribed\"") {
                        first_ready(sh, c);
                        if c.cursor.is_empty() {
                            // Live from here: a cut before the first record resumes from this.
                            if let Some(cur) = str_field(frame, b"\"cursor\":\"") {
                                c.set_cursor(cur);
                            }
                        } else if find(frame, b"\"recovered\":false").is_some() {
                            sh.n.unrecovered.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if frame.starts_with(b"{\"type\":\"error\"") {
                        if find(frame, b"\"code\":\"lagged\"").is_some() {
                            delivered(sh, i, c, n, now);
                            return End::Lost(Why::Lagged);
                        }
                        sh.error(format!("server: {}", String::from_utf8_lossy(frame)));
                    }
                }
                at += end + 2;
            }
            pending.drain(..at);
            delivered(sh, i, c, n, now);
        }
        if sse {
            return End::Lost(Why::Closed);
        }
        // A poll's answer: {"messages":[…],"cursor":"…","recovered":…}.
        sh.n.frames.fetch_add(1, Ordering::Relaxed);
        let now = crate::now_us();
        let mut n = 0;
        let body = &pending[..];
        let tail = body.windows(12).rposition(|w| w == b"],\"cursor\":\"").unwrap_or(body.len());
        let mut at = 0;
        while let Some(p) = find(&body[at..tail], b"{\"type\":\"message\"") {
            let start = at + p;
            let end = find(&body[start + 1..tail], b"{\"type\":\"message\"").map(|e| start + 1 + e).unwrap_or(tail);
            n += u64::from(c.record(&body[start..end], now));
            at = end;
        }
        if let Some(cur) = str_field(&body[tail..], b"\"cursor\":\"") {
            // A resume (a poll with a cursor) whose history was incomplete.
            if !c.cursor.is_empty() && c.ever_subscribed && find(&body[tail..], b"\"recovered\":false").is_some() {
                sh.n.unrecovered.fetch_add(1, Ordering::Relaxed);
            }
            let cur = cur.to_vec();
            c.set_cursor(&cur);
        }
        first_ready(sh, c);
        delivered(sh, i, c, n, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            server: 0, channel: "fanout".into(), seq: SeqCheck::new(0), cursor: String::new(), ever_subscribed: false, storm_done: false, stalled: false,
            started: Instant::now(), rng: Rng::new(1), lat: Vec::new(),
        }
    }

    #[test]
    fn records_count_and_move_the_cursor() {
        let mut c = client();
        let now = 2_000_000;
        assert!(c.record(br#"{"type":"message","channel":"fanout","cursor":"c1.x.local.7","data":{"seq":0,"t":1000000}}"#, now));
        assert_eq!(c.cursor, "c1.x.local.7");
        assert_eq!(c.lat, vec![1_000_000]);
        assert!(!c.record(br#"{"type":"message","cursor":"c1.x.local.7","data":{"seq":0,"t":1000000}}"#, now));
        assert_eq!(c.seq.dups, 1);
        assert!(!c.record(br#"{"type":"message","data":{"other":1}}"#, now), "a frame without the load fields is not counted");
        assert!(c.record(br#"{"type":"message","cursor":"c1.x.local.9","data":{"seq":2,"t":1500000}}"#, now));
        assert_eq!(c.seq.gaps, 1);
        assert_eq!(subscribe_frame(&c), r#"{"type":"subscribe","id":1,"channel":"fanout","since":"c1.x.local.9"}"#);
        // Fields in another order are found by searching.
        assert!(c.record(br#"{"type":"message","cursor":"c1.x.local.10","data":{"t":1900000,"seq":3}}"#, now));
        assert_eq!((c.seq.next, c.lat.last()), (4, Some(&100_000)));
    }

    #[test]
    fn nats_messages_split_across_websocket_frames() {
        let mut c = client();
        let mut buf = b"INFO {}\r\nPONG\r\nMSG fanout 1 24\r\n{\"seq\":0,\"t\":1,\"pad\":\"\"}\r\nMSG fanout 1 24\r\n{\"seq\":1,".to_vec();
        let (n, ping, pong) = nats_parse(&mut buf, &mut c, 10).unwrap();
        assert_eq!((n, ping, pong), (1, false, true));
        assert!(buf.starts_with(b"MSG fanout 1 24"), "the incomplete message waits");
        buf.extend_from_slice(b"\"t\":2,\"pad\":\"\"}\r\nPING\r\n");
        let (n, ping, _) = nats_parse(&mut buf, &mut c, 10).unwrap();
        assert_eq!((n, ping), (1, true));
        assert!(buf.is_empty());
        assert_eq!(c.seq.next, 2);
        let mut bad = b"-ERR 'Slow Consumer'\r\n".to_vec();
        assert!(nats_parse(&mut bad, &mut c, 10).is_err());
    }

    #[test]
    fn control_lines() {
        let (tx, ctl) = control();
        tx.line("storm 1700000000000 5000").unwrap();
        assert_eq!(*ctl.storm.borrow(), Some(Storm { at_us: 1_700_000_000_000_000, within_ms: 5000 }));
        tx.line("end 10,20").unwrap();
        assert_eq!(ctl.end.borrow().as_deref(), Some(&vec![10, 20]));
        assert!(tx.line("bogus 1").is_err());
        assert!(tx.line("end x").is_err());
        let a = Args {
            addr: "a,b".into(), token: "-".into(), channel: "f".into(), channels: 2, first_client: 1, connections: 2, source_ip: None,
            idle_exit_secs: 1, max_secs: 1, ready_timeout_secs: 1, idle_hold_secs: None, idle_subscribe: false, connect_gap_ms: 0, since: None,
            mobile_mean_secs: None, transport: "ws".into(), proto: false, deflate: false, control_stdin: true, status_ms: 0, stall_after_secs: None, stall_secs: 1.0, recv_buffer: 0,
        };
        assert_eq!(published_on(&[10, 20], &a, 0), 20);
        assert_eq!(published_on(&[10, 20], &a, 1), 10);
        assert_eq!(server_addr(&a, 3), "b");
        assert_eq!(channel_name("f", 2, 3), "f-1");
        assert_eq!(channel_name("f", 1, 3), "f");
    }
}
