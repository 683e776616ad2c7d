//! `herald-loadtest`: see the library's documentation and loadtest/README.md.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use herald_loadtest::{chat, publish, report, subscribe};

#[derive(Parser)]
#[command(name = "herald-loadtest", about = "Load generator for Herald")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open subscribers and count what they receive (one JSON line on stdout at the end).
    Subscribe(subscribe::Args),
    /// Publish records at a fixed or stepped rate.
    Publish(publish::Args),
    /// Chat rooms: every member publishes and receives.
    Chat(chat::Args),
    /// Merge a run's process outputs into report.json, summary.txt and latency.svg; exits 1 if
    /// the run failed (loss or duplicates where none are allowed, clients that never subscribed).
    Report(report::ReportArgs),
    /// Two reports side by side, as ratios (Herald and a peer).
    Compare(report::CompareArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One runtime thread: the generator shares the machine with the server.
    let rt = || tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
    let out = match cli.cmd {
        Cmd::Subscribe(a) => {
            let (tx, ctl) = subscribe::control();
            if a.control_stdin {
                tx.from_stdin();
            }
            rt()?.block_on(subscribe::run(a, ctl))?
        }
        Cmd::Publish(a) => rt()?.block_on(publish::run(a))?,
        Cmd::Chat(a) => rt()?.block_on(chat::run(a))?,
        Cmd::Report(a) => std::process::exit(if report::report(a)? { 0 } else { 1 }),
        Cmd::Compare(a) => return report::compare(a),
    };
    println!("{out}");
    // Tasks still parked on sockets need not be waited for.
    std::process::exit(0);
}
