//! `herald-loadtest`: the pieces of a load run, each its own process so that big connection
//! counts spread over several processes (a process here may hold at most 20,000 files).
//!
//! - `subscribe`: N WebSocket connections to one channel; checks that every connection sees the
//!   publisher's sequence numbers exactly once and in order (a gap or a duplicate is counted and
//!   fails the run), measures publish→receive latency from a timestamp in each record, and reports
//!   deliveries/s and its own CPU time as JSON on stdout.
//! - `publish`: publishes numbered, timestamped records at a fixed rate through the HTTP API.
//! - `idle`: holds N connections open and reports the server's RSS before and after.
//! - `merge`: merges the subscribers' reports, histograms included, and draws the SVG plot.
//!
//! `subscribe --storm-at-secs` (every connection cut and resumed from its cursor within a spread)
//! and `--mobile-mean-secs` (connections that go to the background and come back at random) are
//! the reconnect-storm and mobile scenarios; loss and duplicates are counted across reconnects.
#![forbid(unsafe_code)]

mod chat;
mod publish;
mod report;
mod subscribe;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "herald-loadtest", about = "Load generator for Herald")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open subscribers and count what they receive.
    Subscribe(subscribe::Args),
    /// Publish records at a fixed rate.
    Publish(publish::Args),
    /// Chat rooms: every member publishes and receives.
    Chat(chat::Args),
    /// Merge subscriber reports (JSON lines on stdin) into one, histograms included.
    Merge(report::MergeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    match cli.cmd {
        Cmd::Subscribe(a) => rt.block_on(subscribe::run(a)),
        Cmd::Publish(a) => rt.block_on(publish::run(a)),
        Cmd::Merge(a) => report::merge(a),
        Cmd::Chat(a) => rt.block_on(chat::run(a)),
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// This process's CPU time (user + system), in seconds, from /proc.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0) + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}
