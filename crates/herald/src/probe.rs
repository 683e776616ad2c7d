//! `herald probe`: a synthetic client that publishes and waits for its own record, one JSON line
//! per round trip (for smoke tests and external monitoring).

use std::process::ExitCode;
use std::time::Duration;

use crate::common::usage_error;

/// `herald probe`: a synthetic client.
pub fn run(a: crate::ProbeArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return usage_error(format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        let mut config = herald_client::ClientConfig::new(a.url.clone(), a.token.clone());
        config.ca_file = a.ca_file.clone();
        let client = herald_client::Client::connect(config);
        let timeout = Duration::from_millis(a.timeout_ms);
        if let Err(e) = client.wait_connected(timeout).await {
            println!("{}", serde_json::json!({ "ok": false, "error": format!("connect: {e}") }));
            return ExitCode::FAILURE;
        }
        let mut sub = match client.subscribe(&a.channel).await {
            Ok(s) => s,
            Err(e) => {
                println!("{}", serde_json::json!({ "ok": false, "error": format!("subscribe: {e}") }));
                return ExitCode::FAILURE;
            }
        };
        let mut failures = 0u64;
        let mut n = 0u64;
        loop {
            n += 1;
            let started = std::time::Instant::now();
            let tag = format!("{:016x}", rand::random::<u64>());
            let round_trip = async {
                client.publish(&a.channel, &serde_json::json!({ "probe": tag }), None).await.map_err(|e| format!("publish: {e}"))?;
                loop {
                    let m = sub.next_message().await.ok_or("connection closed")?;
                    if m.data.get().contains(&tag) {
                        return Ok::<_, String>(());
                    }
                }
            };
            let result = tokio::time::timeout(timeout, round_trip).await.unwrap_or_else(|_| Err("timed out".into()));
            match result {
                Ok(()) => println!("{}", serde_json::json!({ "ok": true, "n": n, "round_trip_ms": started.elapsed().as_secs_f64() * 1000.0 })),
                Err(e) => {
                    failures += 1;
                    println!("{}", serde_json::json!({ "ok": false, "n": n, "error": e }));
                }
            }
            if a.count > 0 && n >= a.count {
                return if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE };
            }
            tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
        }
    })
}

