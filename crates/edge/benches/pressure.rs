//! Behaviour under pressure, measured: `cargo bench -p herald-edge --bench pressure`.
//!
//! One in-process edge (in-memory bus) and one client on a slow link (a small socket receive
//! buffer, reading at a fixed byte rate), in three scenarios, each with the feature off and on:
//!
//! - **priority**: a flood on a low-priority channel that the link cannot carry, and an incident
//!   every 100 ms on a high-priority channel: how late the incidents arrive.
//! - **latest-value**: 4 vehicles report 50 positions a second each (2 KB records) to a reader
//!   that can take a quarter of it: how stale the newest position is when it arrives.
//! - **max_rate**: a 10 Hz location stream read at `max_rate: 1`: wake-ups (WebSocket messages)
//!   and bytes per second at the client.
//!
//! Numbers go to docs/benchmarks.md; they are timings, so they live here and not in tests.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

/// What the slow reader saw.
#[derive(Default)]
struct Seen {
    /// Per channel: (publish→receive latency µs, data).
    records: Vec<(String, u64, Value)>,
    ws_messages: u64,
    bytes: u64,
    ended: Vec<String>,
    closed: Option<String>,
}

/// A client whose link carries `bytes_per_sec`: a 16 KB receive buffer, and reads paced to the
/// rate. Subscribes to `subs` (frames sent as given) and reads for `secs`.
async fn slow_reader(addr: std::net::SocketAddr, subs: Vec<Value>, bytes_per_sec: f64, secs: f64) -> Seen {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 << 10).unwrap();
    let tcp = sock.connect(addr).await.unwrap();
    let mut req = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", token_with("acme", "phone", &["*"], &[], 3600)).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    for s in subs {
        ws.send(Message::Text(s.to_string().into())).await.unwrap();
    }
    let mut seen = Seen::default();
    let start = Instant::now();
    let mut paced = start;
    let end = start + Duration::from_secs_f64(secs);
    while let Ok(Some(m)) = tokio::time::timeout_at(end.into(), ws.next()).await {
        let t = match m {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(f)) => {
                seen.closed = Some(format!("{f:?}"));
                break;
            }
            Ok(_) => continue,
            Err(e) => {
                seen.closed = Some(e.to_string());
                break;
            }
        };
        let at = now_us();
        seen.ws_messages += 1;
        seen.bytes += t.len() as u64;
        for line in herald_protocol::split_batch(t.as_str()) {
            let v: Value = serde_json::from_str(line).unwrap();
            match v["type"].as_str() {
                Some("message") => {
                    let lat = at.saturating_sub(v["data"]["ts"].as_u64().unwrap_or(at));
                    seen.records.push((v["channel"].as_str().unwrap().to_owned(), lat, v["data"].clone()));
                }
                Some("unsubscribed") => seen.ended.push(v["channel"].as_str().unwrap_or("").to_owned()),
                Some("ping") => ws.send(Message::Text(r#"{"type":"pong"}"#.into())).await.unwrap(),
                _ => {}
            }
        }
        paced += Duration::from_secs_f64(t.len() as f64 / bytes_per_sec);
        if paced > end {
            break;
        }
        tokio::time::sleep_until(paced.into()).await;
    }
    seen
}

/// Publishes `per_tick` records from `make(i)` every `tick` for `secs`.
async fn publisher(addr: std::net::SocketAddr, tick: Duration, per_tick: usize, secs: f64, make: impl Fn(u64) -> Value) -> u64 {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0u64;
    let mut next = Instant::now();
    while Instant::now() < end {
        let records: Vec<Value> = (0..per_tick).map(|k| make(n + k as u64)).collect();
        n += per_tick as u64;
        let (status, v) = http_post(addr, "/v1/publish", ADMIN_KEY, &json!({ "records": records }).to_string()).await;
        assert_eq!(status, 200, "{v}");
        next += tick;
        tokio::time::sleep_until(next.into()).await;
    }
    n
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1000.0
}

async fn priority(with: bool, unsent: usize) {
    let e = TestEdge::start_with(|c| {
        c.edge.max_queued_bytes = 4 << 20;
        c.edge.unsent_limit_bytes = unsent;
        if with {
            use herald_config::{Priority, PriorityConfig};
            c.edge.priority = vec![
                PriorityConfig { channels: herald_core::ChannelPattern::parse("incidents").unwrap(), priority: Priority::High },
                PriorityConfig { channels: herald_core::ChannelPattern::parse("telemetry").unwrap(), priority: Priority::Low },
            ];
        }
    })
    .await;
    let subs = vec![json!({"type":"subscribe","id":1,"channel":"telemetry"}), json!({"type":"subscribe","id":2,"channel":"incidents"})];
    let secs = 8.0;
    let reader = tokio::spawn(slow_reader(e.addr, subs, 1_000_000.0, secs));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pad = "x".repeat(4000);
    // 2 MB/s of telemetry into a 1 MB/s link; an incident every 100 ms.
    let flood = tokio::spawn(publisher(e.addr, Duration::from_millis(10), 5, secs - 1.0, move |i| json!({"account":"acme","channel":"telemetry","data":{"seq":i,"ts":now_us(),"pad":pad}})));
    let incidents = publisher(e.addr, Duration::from_millis(100), 1, secs - 1.0, |i| json!({"account":"acme","channel":"incidents","data":{"seq":i,"ts":now_us()}})).await;
    let flooded = flood.await.unwrap();
    let seen = reader.await.unwrap();
    let mut lat: Vec<u64> = seen.records.iter().filter(|(c, _, _)| c == "incidents").map(|(_, l, _)| *l).collect();
    let got = lat.len();
    let low = seen.records.iter().filter(|(c, _, _)| c == "telemetry").count();
    println!(
        "priority {:>3}, unsent limit {unsent:>6}: incidents {got}/{incidents} received, latency p50 {:.0} ms p99 {:.0} ms max {:.0} ms; telemetry {low}/{flooded} received; shed {:?}; closed {:?}",
        if with { "on" } else { "off" },
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0),
        seen.ended,
        seen.closed,
    );
}

async fn latest_value(with: bool, unsent: usize) {
    let e = TestEdge::start_with(|c| {
        c.edge.max_queued_bytes = 4 << 20;
        c.edge.unsent_limit_bytes = unsent;
        if with {
            c.edge.latest_value = vec![herald_config::LatestValueConfig { channels: herald_core::ChannelPattern::parse("bus-location:*").unwrap(), key: "/vehicle".into() }];
        }
    })
    .await;
    let secs = 8.0;
    let subs = vec![json!({"type":"subscribe","id":1,"channel":"bus-location:42"})];
    let reader = tokio::spawn(slow_reader(e.addr, subs, 100_000.0, secs));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pad = "x".repeat(2000);
    // 4 vehicles × 50 positions/s × 2 KB = 400 KB/s into a 100 KB/s link.
    let sent = publisher(e.addr, Duration::from_millis(20), 4, secs - 1.0, move |i| json!({"account":"acme","channel":"bus-location:42","data":{"vehicle": i % 4, "seq": i, "ts": now_us(), "pad": pad}})).await;
    let seen = reader.await.unwrap();
    let mut lat: Vec<u64> = seen.records.iter().map(|(_, l, _)| *l).collect();
    let got = lat.len();
    println!(
        "latest-value {:>3}, unsent limit {unsent:>6}: {got}/{sent} positions received, age on arrival p50 {:.0} ms p99 {:.0} ms max {:.0} ms, {} KB read; closed {:?}",
        if with { "on" } else { "off" },
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0),
        seen.bytes / 1000,
        seen.closed,
    );
}

async fn max_rate(rate: Option<f64>) {
    let e = TestEdge::start_with(|c| {
        c.edge.latest_value = vec![herald_config::LatestValueConfig { channels: herald_core::ChannelPattern::parse("bus-location:*").unwrap(), key: "/vehicle".into() }];
    })
    .await;
    let secs = 10.0;
    let mut sub = json!({"type":"subscribe","id":1,"channel":"bus-location:42"});
    if let Some(r) = rate {
        sub["max_rate"] = json!(r);
    }
    let reader = tokio::spawn(slow_reader(e.addr, vec![sub], 1e9, secs));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 4 vehicles, 10 positions a second each, 200-byte records.
    let pad = "x".repeat(150);
    let sent = publisher(e.addr, Duration::from_millis(100), 4, secs - 1.0, move |i| json!({"account":"acme","channel":"bus-location:42","data":{"vehicle": i % 4, "seq": i, "ts": now_us(), "pad": pad}})).await;
    let seen = reader.await.unwrap();
    let mut lat: Vec<u64> = seen.records.iter().map(|(_, l, _)| *l).collect();
    let active = secs - 1.0;
    println!(
        "max_rate {:>4}: {}/{sent} records, {:.1} wake-ups/s, {:.1} KB/s, age on arrival p50 {:.0} ms max {:.0} ms",
        rate.map_or("none".to_string(), |r| r.to_string()),
        lat.len(),
        seen.ws_messages as f64 / active,
        seen.bytes as f64 / active / 1000.0,
        pct(&mut lat, 0.5),
        pct(&mut lat, 1.0),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        for (with, unsent) in [(false, 0), (true, 0), (false, 64 << 10), (true, 64 << 10)] {
            priority(with, unsent).await;
        }
        for (with, unsent) in [(false, 0), (true, 0), (false, 64 << 10), (true, 64 << 10)] {
            latest_value(with, unsent).await;
        }
        for rate in [None, Some(1.0)] {
            max_rate(rate).await;
        }
    });
}
