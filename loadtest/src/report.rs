//! The run report: merges what the load processes sent (counts summed, histograms merged exactly
//! from their base64 V2 serialization, second by second too), the server and load-generator
//! samples, decides pass or fail, and writes `report.json`, `summary.txt` and `latency.svg`.
//!
//! Its input is one JSON document, the orchestrator's account of the run:
//!
//! ```json
//! {"name": "fanout-1k", "scenario": "fanout", "server": "herald", "strict": true,
//!  "params": {…}, "processes": [<subscribe or chat output>, …], "publishers": [<publish output>, …],
//!  "servers": [{"name": "herald", "connections": 1000, "rss_before_kib": …, "rss_ready_kib": …,
//!               "samples": [[unix_s, cpu_s, rss_kib], …]}],
//!  "loadgen_samples": [[unix_s, cpu_s], …], "notes": ["…"]}
//! ```
//!
//! `strict` says the semantics promise no loss and no duplicate (Herald); without it (core NATS,
//! at most once) loss is reported but does not fail the run.

use crate::hist;
use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `report` flags.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The run document (JSON); `-` reads stdin.
    #[arg(long, default_value = "-")]
    pub input: String,
    /// Write report.json, summary.txt and latency.svg here.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `compare` flags.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The reference run's report.json (Herald).
    pub base: PathBuf,
    /// The other run's report.json (the peer).
    pub other: PathBuf,
    /// Write comparison.json and comparison.txt here.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn f(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(|x| x.as_u64().or_else(|| x.as_f64().map(|f| f as u64))).unwrap_or(0)
}

/// What the report is computed from, merged.
pub struct Merged {
    pub total: Histogram<u64>,
    /// Unix second → that second's histogram, over every process.
    pub seconds: BTreeMap<u64, Histogram<u64>>,
}

/// Merges the processes' histograms.
pub fn merge_histograms(processes: &[Value]) -> anyhow::Result<Merged> {
    let mut total = hist::new();
    let mut seconds: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
    for p in processes {
        if let Some(h) = p.get("hist").and_then(Value::as_str) {
            hist::add_base64(h, &mut total)?;
        }
        for iv in p.get("intervals").and_then(Value::as_array).into_iter().flatten() {
            let (Some(sec), Some(h)) = (iv[0].as_u64(), iv[1].as_str()) else { anyhow::bail!("bad interval {iv}") };
            hist::add_base64(h, seconds.entry(sec).or_insert_with(hist::new))?;
        }
    }
    Ok(Merged { total, seconds })
}

/// Builds the report from the run document: the numbers, the verdict, the summary text.
pub fn build(run: &Value) -> anyhow::Result<(Value, String, Merged)> {
    let procs: Vec<Value> = run.get("processes").and_then(Value::as_array).cloned().unwrap_or_default();
    let pubs: Vec<Value> = run.get("publishers").and_then(Value::as_array).cloned().unwrap_or_default();
    let servers: Vec<Value> = run.get("servers").and_then(Value::as_array).cloned().unwrap_or_default();
    let scenario = run.get("scenario").and_then(Value::as_str).unwrap_or("fanout").to_owned();
    let server_kind = run.get("server").and_then(Value::as_str).unwrap_or("herald").to_owned();
    let strict = run.get("strict").and_then(Value::as_bool).unwrap_or(true);
    let merged = merge_histograms(&procs)?;
    let sum = |k: &str| procs.iter().map(|p| u(p, k)).sum::<u64>();
    let connections = procs.iter().map(|p| u(p, "connections").max(u(p, "members"))).sum::<u64>();
    let ready = sum("ready");
    let deliveries = sum("deliveries");
    let idle = scenario == "idle";
    // Expected deliveries: what every process knew it should get (the publisher's count per
    // channel times its clients; chat: every message of a room to each member).
    let expected = if procs.iter().all(|p| p.get("expected_deliveries").is_some()) { Some(sum("expected_deliveries")) } else { None };
    let lost = if idle {
        0
    } else if procs.iter().all(|p| p.get("lost").is_some()) {
        sum("lost")
    } else {
        expected.map(|e| e.saturating_sub(deliveries)).unwrap_or(0)
    };
    let first = procs.iter().map(|p| u(p, "first_unix_us")).filter(|&t| t > 0).min().unwrap_or(0);
    let last = procs.iter().map(|p| u(p, "last_unix_us")).max().unwrap_or(0);
    let span = last.saturating_sub(first) as f64 / 1e6;
    let published: u64 = pubs.iter().map(|p| u(p, "published_total")).sum::<u64>() + sum("published");
    // The server side: CPU over the samples, peak RSS, RSS per connection.
    let mut server_cpu = 0.0;
    let mut peak_rss = 0u64;
    let mut server_rows = Vec::new();
    for s in &servers {
        let samples = s.get("samples").and_then(Value::as_array).cloned().unwrap_or_default();
        let cpu = match (samples.first(), samples.last()) {
            (Some(a), Some(b)) => b[1].as_f64().unwrap_or(0.0) - a[1].as_f64().unwrap_or(0.0),
            _ => 0.0,
        };
        let peak = samples.iter().filter_map(|x| x[2].as_u64()).max().unwrap_or(0);
        server_cpu += cpu;
        peak_rss += peak;
        let conns = u(s, "connections");
        let per_conn = if conns > 0 && u(s, "rss_ready_kib") > 0 { (u(s, "rss_ready_kib") as f64 - u(s, "rss_before_kib") as f64) / conns as f64 } else { 0.0 };
        server_rows.push(json!({
            "name": s.get("name").cloned().unwrap_or(Value::Null), "cpu_s": round2(cpu), "peak_rss_kib": peak,
            "rss_before_kib": u(s, "rss_before_kib"), "rss_ready_kib": u(s, "rss_ready_kib"), "connections": conns,
            "rss_per_conn_kib": round2(per_conn),
        }));
    }
    let rss_per_conn = {
        let conns: u64 = servers.iter().map(|s| u(s, "connections")).sum();
        let grown: f64 = servers.iter().filter(|s| u(s, "rss_ready_kib") > 0).map(|s| u(s, "rss_ready_kib") as f64 - u(s, "rss_before_kib") as f64).sum();
        if conns > 0 { grown / conns as f64 } else { 0.0 }
    };
    let loadgen_cpu: f64 = procs.iter().map(|p| f(p, "cpu_seconds")).sum();
    let publisher_cpu: f64 = pubs.iter().map(|p| f(p, "cpu_seconds")).sum();
    let gaps = sum("gaps");
    let dups = sum("duplicates");
    let unrecovered = sum("unrecovered");
    let failed_members = sum("failed_members");
    let publish_errors = sum("publish_errors");
    // Over time: each second's percentiles and deliveries, with the server's CPU.
    let cpu_at = server_cpu_by_second(&servers);
    let timeline: Vec<Value> = merged
        .seconds
        .iter()
        .map(|(sec, h)| {
            json!({
                "unix_s": sec, "deliveries": h.len(), "p50": ms(h.value_at_quantile(0.5)), "p99": ms(h.value_at_quantile(0.99)),
                "p999": ms(h.value_at_quantile(0.999)), "max": ms(h.max()), "server_cpu_pct": cpu_at.get(sec).map(|c| round2(c * 100.0)),
            })
        })
        .collect();
    // Stepped rates: each step's numbers from the seconds inside it.
    let steps: Vec<Value> = pubs
        .first()
        .and_then(|p| p.get("steps"))
        .and_then(Value::as_array)
        .filter(|s| s.len() > 1)
        .map(|steps| steps.iter().map(|s| step_numbers(s, &merged, &cpu_at)).collect())
        .unwrap_or_default();
    let mut problems = Vec::new();
    if ready < connections {
        problems.push(format!("only {ready} of {connections} clients subscribed"));
    }
    if !idle {
        if deliveries == 0 {
            problems.push("nothing was delivered".to_owned());
        }
        if strict {
            for (what, n) in [("lost", lost), ("gaps", gaps), ("duplicates", dups), ("unrecovered resumes", unrecovered), ("failed members", failed_members), ("publish errors", publish_errors)] {
                if n > 0 {
                    problems.push(format!("{what}: {n}"));
                }
            }
            if let Some(e) = expected
                && e != deliveries + lost
            {
                problems.push(format!("deliveries {deliveries} + lost {lost} != expected {e}"));
            }
        }
    }
    let mut out = Map::new();
    out.insert("name".into(), run.get("name").cloned().unwrap_or(Value::Null));
    out.insert("scenario".into(), json!(scenario));
    out.insert("server".into(), json!(server_kind));
    out.insert("semantics".into(), json!(if strict { "no loss, no duplicates (checked)" } else { "at most once: loss reported, not a failure" }));
    out.insert("params".into(), run.get("params").cloned().unwrap_or(json!({})));
    out.insert("ok".into(), json!(problems.is_empty()));
    out.insert("problems".into(), json!(problems));
    out.insert("connections".into(), json!(connections));
    out.insert("ready".into(), json!(ready));
    out.insert("processes".into(), json!(procs.len()));
    if !idle {
        out.insert("published".into(), json!(published));
        out.insert("expected_deliveries".into(), json!(expected));
        out.insert("deliveries".into(), json!(deliveries));
        out.insert("lost".into(), json!(lost));
        out.insert("gaps".into(), json!(gaps));
        out.insert("duplicates".into(), json!(dups));
        out.insert("deliveries_per_sec".into(), json!(if span > 0.0 { (deliveries as f64 / span).round() as u64 } else { 0 }));
        out.insert("delivery_span_s".into(), json!(round2(span)));
        out.insert("latency_ms".into(), hist::percentiles(&merged.total));
        out.insert("frames_per_delivery".into(), json!(round3(sum("frames") as f64 / deliveries.max(1) as f64)));
        if procs.iter().any(|p| p.get("wire_bytes").is_some()) {
            out.insert("wire_bytes_per_delivery".into(), json!(round2(sum("wire_bytes") as f64 / deliveries.max(1) as f64)));
        }
        for k in ["reconnects", "planned_cuts", "lagged", "closed_by_server", "errors", "connect_errors", "resubscribes", "unrecovered", "drains", "acked", "publish_errors", "failed_members"] {
            if procs.iter().any(|p| p.get(k).is_some()) {
                out.insert(k.into(), json!(sum(k)));
            }
        }
    }
    out.insert("server_cpu_s".into(), json!(round2(server_cpu)));
    if !idle && deliveries > 0 {
        out.insert("server_cpu_us_per_delivery".into(), json!(round3(server_cpu * 1e6 / deliveries as f64)));
    }
    out.insert("server_peak_rss_kib".into(), json!(peak_rss));
    out.insert("server_rss_per_conn_kib".into(), json!(round2(rss_per_conn)));
    out.insert("servers".into(), json!(server_rows));
    out.insert("loadgen_cpu_s".into(), json!(round2(loadgen_cpu)));
    out.insert("publisher_cpu_s".into(), json!(round2(publisher_cpu)));
    if !steps.is_empty() {
        out.insert("steps".into(), json!(steps));
    }
    out.insert("timeline".into(), json!(timeline));
    out.insert("server_samples".into(), json!(servers.iter().map(|s| json!({"name": s.get("name"), "samples": s.get("samples")})).collect::<Vec<_>>()));
    out.insert("loadgen_samples".into(), run.get("loadgen_samples").cloned().unwrap_or(json!([])));
    let errors: Vec<Value> = procs.iter().flat_map(|p| p.get("error_samples").and_then(Value::as_array).cloned().unwrap_or_default()).take(10).collect();
    out.insert("error_samples".into(), json!(errors));
    out.insert("notes".into(), run.get("notes").cloned().unwrap_or(json!([])));
    out.insert("hist_v2_base64".into(), json!(hist::to_base64(&merged.total)));
    let report = Value::Object(out);
    let summary = summary(&report);
    Ok((report, summary, merged))
}

fn ms(us: u64) -> f64 {
    (us as f64).round() / 1000.0
}

fn round2(x: f64) -> f64 {
    // `+ 0.0`: an empty sum is -0.0.
    (x * 100.0).round() / 100.0 + 0.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Each Unix second → the servers' CPU use during it (1.0 = one core), from the samples.
fn server_cpu_by_second(servers: &[Value]) -> BTreeMap<u64, f64> {
    let mut out: BTreeMap<u64, f64> = BTreeMap::new();
    for s in servers {
        let samples = s.get("samples").and_then(Value::as_array).cloned().unwrap_or_default();
        for w in samples.windows(2) {
            let (Some(t0), Some(c0), Some(t1), Some(c1)) = (w[0][0].as_f64(), w[0][1].as_f64(), w[1][0].as_f64(), w[1][1].as_f64()) else { continue };
            if t1 > t0 {
                *out.entry(t1.floor() as u64).or_default() += (c1 - c0) / (t1 - t0);
            }
        }
    }
    out
}

/// One rate step's numbers, from the seconds that fall inside it.
fn step_numbers(step: &Value, m: &Merged, cpu_at: &BTreeMap<u64, f64>) -> Value {
    let from = u(step, "from_unix_us") / 1_000_000;
    let to = u(step, "to_unix_us") / 1_000_000;
    let mut h = hist::new();
    // Whole seconds inside the step only, so that the neighbours' records do not mix in.
    let inside = (from + 1)..to.max(from + 1);
    for (_, s) in m.seconds.range(inside.clone()) {
        let _ = h.add(s);
    }
    let secs = (inside.end - inside.start).max(1) as f64;
    let cpu: Vec<f64> = cpu_at.range(inside).map(|(_, c)| *c).collect();
    json!({
        "rate": step.get("rate"), "published": step.get("published"),
        "deliveries_per_sec": (h.len() as f64 / secs).round() as u64,
        "latency_ms": hist::percentiles(&h),
        "server_cpu_pct": if cpu.is_empty() { Value::Null } else { json!(round2(cpu.iter().sum::<f64>() / cpu.len() as f64 * 100.0)) },
    })
}

/// The one-screen text summary.
pub fn summary(r: &Value) -> String {
    let mut s = String::new();
    let p = &r["params"];
    let name = r["name"].as_str().unwrap_or("");
    let _ = writeln!(s, "{} — {} on {} ({})", name, r["scenario"].as_str().unwrap_or(""), r["server"].as_str().unwrap_or(""), r["semantics"].as_str().unwrap_or(""));
    if let Some(obj) = p.as_object().filter(|o| !o.is_empty()) {
        let params: Vec<String> = obj.iter().map(|(k, v)| format!("{k}={}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect();
        let _ = writeln!(s, "  {}", params.join(" "));
    }
    let _ = writeln!(s, "  clients {} ready of {} in {} processes", r["ready"], r["connections"], r["processes"]);
    if r["scenario"] != "idle" {
        let _ = writeln!(
            s,
            "  deliveries {} of {}: lost {}, gaps {}, duplicates {}",
            r["deliveries"], if r["expected_deliveries"].is_null() { "?".to_owned() } else { r["expected_deliveries"].to_string() }, r["lost"], r["gaps"], r["duplicates"]
        );
        let mut extra = Vec::new();
        for k in ["reconnects", "planned_cuts", "lagged", "closed_by_server", "errors", "connect_errors", "resubscribes", "unrecovered", "drains", "publish_errors", "failed_members"] {
            if r.get(k).and_then(Value::as_u64).unwrap_or(0) > 0 {
                extra.push(format!("{k} {}", r[k]));
            }
        }
        if !extra.is_empty() {
            let _ = writeln!(s, "  {}", extra.join(", "));
        }
        let l = &r["latency_ms"];
        let _ = writeln!(s, "  {} deliveries/s over {} s; {:.3} frames per delivery; {:.1} bytes per delivery on the wire", r["deliveries_per_sec"], r["delivery_span_s"], f(r, "frames_per_delivery"), f(r, "wire_bytes_per_delivery"));
        let _ = writeln!(s, "  latency ms: p50 {} p90 {} p99 {} p99.9 {} p99.99 {} max {}", l["p50"], l["p90"], l["p99"], l["p999"], l["p9999"], l["max"]);
        for st in r.get("steps").and_then(Value::as_array).into_iter().flatten() {
            let l = &st["latency_ms"];
            let _ = writeln!(s, "    step {}/s: {} deliveries/s, p50 {} p99 {} max {} ms, server CPU {}%", st["rate"], st["deliveries_per_sec"], l["p50"], l["p99"], l["max"], st["server_cpu_pct"]);
        }
    }
    let per = r.get("server_cpu_us_per_delivery").map(|v| format!(" ({v} µs per delivery)")).unwrap_or_default();
    let _ = writeln!(
        s,
        "  server CPU {} s{per}, peak RSS {} MiB, {} KiB per connection; load generator CPU {} s (+ publisher {} s)",
        r["server_cpu_s"], u(r, "server_peak_rss_kib") / 1024, r["server_rss_per_conn_kib"], r["loadgen_cpu_s"], r["publisher_cpu_s"]
    );
    for e in r["error_samples"].as_array().into_iter().flatten().take(3) {
        let _ = writeln!(s, "  error: {}", e.as_str().unwrap_or(""));
    }
    for n in r["notes"].as_array().into_iter().flatten() {
        let _ = writeln!(s, "  note: {}", n.as_str().unwrap_or(""));
    }
    if r["ok"] == true {
        let _ = writeln!(s, "  OK");
    } else {
        let problems: Vec<&str> = r["problems"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let _ = writeln!(s, "  FAILED: {}", problems.join("; "));
    }
    s
}

/// `herald-loadtest report`: reads the run document, writes the files, prints the summary (on
/// stderr) and the report (one JSON line, without the samples, on stdout). False: the run failed.
pub fn report(a: ReportArgs) -> anyhow::Result<bool> {
    let text = if a.input == "-" { std::io::read_to_string(std::io::stdin())? } else { std::fs::read_to_string(&a.input)? };
    let run: Value = serde_json::from_str(&text)?;
    let (report, summary, merged) = build(&run)?;
    if let Some(dir) = &a.dir {
        write(dir, &report, &summary, &merged)?;
    }
    eprint!("{summary}");
    println!("{}", serde_json::to_string(&compact(&report))?);
    Ok(report["ok"] == true)
}

/// The report without its long series (for one-line JSON logs).
pub fn compact(r: &Value) -> Value {
    let mut c = r.clone();
    if let Some(o) = c.as_object_mut() {
        for k in ["timeline", "server_samples", "loadgen_samples", "hist_v2_base64"] {
            o.remove(k);
        }
    }
    c
}

/// Writes report.json, summary.txt and latency.svg into `dir`.
pub fn write(dir: &Path, report: &Value, summary: &str, merged: &Merged) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(report)? + "\n")?;
    std::fs::write(dir.join("summary.txt"), summary)?;
    std::fs::write(dir.join("latency.svg"), svg(report, merged))?;
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A log10 axis from `lo` to `hi` (decades) mapped onto [y0, y1] (y0 at the bottom).
struct LogAxis {
    lo: f64,
    hi: f64,
    y0: f64,
    y1: f64,
}

impl LogAxis {
    fn new(min: f64, max: f64, y0: f64, y1: f64) -> Self {
        let lo = min.max(0.001).log10().floor();
        let hi = max.max(min * 10.0).max(0.01).log10().ceil().max(lo + 1.0);
        LogAxis { lo, hi, y0, y1 }
    }

    fn y(&self, v: f64) -> f64 {
        let l = v.max(10f64.powf(self.lo)).log10();
        self.y0 - (l - self.lo) / (self.hi - self.lo) * (self.y0 - self.y1)
    }

    fn ticks(&self) -> Vec<f64> {
        (self.lo as i32..=self.hi as i32).map(|e| 10f64.powi(e)).collect()
    }
}

fn label_ms(v: f64) -> String {
    if v >= 1000.0 { format!("{} s", v / 1000.0) } else { format!("{v} ms") }
}

/// Two panels: the latency percentile distribution (log axes), and latency p50/p99/max with the
/// server's CPU second by second.
pub fn svg(r: &Value, m: &Merged) -> String {
    let (w, h) = (820.0, 640.0);
    let (left, right) = (70.0, 70.0);
    let mut s = format!(r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="#fff"/>"##);
    let title = format!("{} — {} on {}", r["name"].as_str().unwrap_or(""), r["scenario"].as_str().unwrap_or(""), r["server"].as_str().unwrap_or(""));
    let _ = write!(s, r##"<text x="{left}" y="22" font-size="15" font-weight="bold">{}</text>"##, esc(&title));
    let l = &r["latency_ms"];
    let sub = if m.total.is_empty() {
        format!("no deliveries; server RSS {} KiB per connection", r["server_rss_per_conn_kib"])
    } else {
        format!(
            "{} deliveries, lost {}, duplicates {}; p50 {} p99 {} p99.9 {} max {} ms; server CPU {} s",
            r["deliveries"], r["lost"], r["duplicates"], l["p50"], l["p99"], l["p999"], l["max"], r["server_cpu_s"]
        )
    };
    let _ = write!(s, r##"<text x="{left}" y="40" fill="#444">{}</text>"##, esc(&sub));
    // Panel 1: the percentile distribution.
    let (top, bottom) = (70.0, 300.0);
    let x_of = |q: f64| left + (1.0 / (1.0 - q)).log10() / 5.0 * (w - left - right);
    let _ = write!(s, r##"<text x="{left}" y="{}" font-weight="bold">latency by percentile</text>"##, top - 10.0);
    if m.total.is_empty() {
        let _ = write!(s, r##"<text x="{}" y="{}" fill="#888">no latency recorded</text>"##, w / 2.0 - 60.0, (top + bottom) / 2.0);
    } else {
        let qs: Vec<f64> = (0..=50).map(|i| 1.0 - 10f64.powf(-(i as f64) / 10.0)).filter(|q| *q < 0.999_999_5).collect();
        let vals: Vec<(f64, f64)> = qs.iter().map(|&q| (q, m.total.value_at_quantile(q) as f64 / 1000.0)).collect();
        let ax = LogAxis::new(vals.iter().map(|v| v.1).fold(f64::MAX, f64::min), m.total.max() as f64 / 1000.0, bottom, top);
        axis_y(&mut s, &ax, left, w - right);
        for (q, label) in [(0.0, "p0"), (0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9"), (0.9999, "p99.99"), (0.99999, "p99.999")] {
            let x = x_of(q);
            let _ = write!(s, r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##, bottom + 16.0);
        }
        let pts: Vec<String> = vals.iter().filter(|(q, _)| (1.0 / (1.0 - q)).log10() <= 5.0).map(|(q, v)| format!("{:.1},{:.1}", x_of(*q), ax.y(*v))).collect();
        let _ = write!(s, r##"<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>"##, pts.join(" "));
    }
    // Panel 2: over time.
    let (top, bottom) = (370.0, 590.0);
    let _ = write!(s, r##"<text x="{left}" y="{}" font-weight="bold">over time (s): latency p50 / p99 / max (log, left), server CPU % (right)</text>"##, top - 10.0);
    let tl: Vec<&Value> = r["timeline"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let samples: Vec<(f64, f64)> = {
        let mut v: BTreeMap<u64, f64> = BTreeMap::new();
        for srv in r["server_samples"].as_array().into_iter().flatten() {
            for w2 in srv["samples"].as_array().map(|a| a.windows(2).map(|p| p.to_vec()).collect::<Vec<_>>()).unwrap_or_default() {
                let (Some(t0), Some(c0), Some(t1), Some(c1)) = (w2[0][0].as_f64(), w2[0][1].as_f64(), w2[1][0].as_f64(), w2[1][1].as_f64()) else { continue };
                if t1 > t0 {
                    *v.entry((t1 * 10.0) as u64).or_default() += (c1 - c0) / (t1 - t0) * 100.0;
                }
            }
        }
        v.into_iter().map(|(t, c)| (t as f64 / 10.0, c)).collect()
    };
    let t_first = tl.first().and_then(|t| t["unix_s"].as_f64()).into_iter().chain(samples.first().map(|s| s.0)).fold(f64::MAX, f64::min);
    let t_last = tl.last().and_then(|t| t["unix_s"].as_f64()).into_iter().chain(samples.last().map(|s| s.0)).fold(0.0, f64::max);
    if t_first < f64::MAX && t_last > t_first {
        let span = t_last - t_first;
        let x_t = |t: f64| left + (t - t_first) / span * (w - left - right);
        let cpu_max = samples.iter().map(|s| s.1).fold(100.0, f64::max).ceil();
        let y_cpu = |c: f64| bottom - c / cpu_max * (bottom - top);
        for i in 0..=4 {
            let c = cpu_max * i as f64 / 4.0;
            let _ = write!(s, r##"<text x="{}" y="{:.1}" fill="#999">{c:.0}%</text>"##, w - right + 6.0, y_cpu(c) + 4.0);
        }
        for i in 0..=5 {
            let t = span * i as f64 / 5.0;
            let label = if span < 10.0 { format!("{t:.1}") } else { format!("{t:.0}") };
            let _ = write!(s, r##"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"##, x_t(t_first + t), bottom + 16.0);
        }
        let cpu_pts: Vec<String> = samples.iter().map(|(t, c)| format!("{:.1},{:.1}", x_t(*t), y_cpu(*c))).collect();
        let _ = write!(s, r##"<polyline fill="none" stroke="#bbb" stroke-width="1.5" stroke-dasharray="4 3" points="{}"/>"##, cpu_pts.join(" "));
        if !tl.is_empty() {
            let lo = tl.iter().filter_map(|t| t["p50"].as_f64()).fold(f64::MAX, f64::min);
            let hi = tl.iter().filter_map(|t| t["max"].as_f64()).fold(0.0, f64::max);
            let ax = LogAxis::new(lo, hi, bottom, top);
            axis_y(&mut s, &ax, left, w - right);
            for (key, color) in [("p50", "#1f6feb"), ("p99", "#d97706"), ("max", "#dc2626")] {
                // A point in the middle of its second.
                let pts: Vec<String> = tl.iter().filter_map(|t| Some(format!("{:.1},{:.1}", x_t(t["unix_s"].as_f64()? + 0.5), ax.y(t[key].as_f64()?)))).collect();
                let _ = write!(s, r##"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"##, pts.join(" "));
            }
        }
        let legend = [("p50", "#1f6feb"), ("p99", "#d97706"), ("max", "#dc2626"), ("server CPU", "#bbb")];
        for (i, (name, color)) in legend.iter().enumerate() {
            let x = left + i as f64 * 110.0;
            let _ = write!(s, r##"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{name}</text>"##, x + 20.0, x + 26.0, bottom + 40.0, y = bottom + 36.0);
        }
    } else {
        let _ = write!(s, r##"<text x="{}" y="{}" fill="#888">no samples</text>"##, w / 2.0 - 40.0, (top + bottom) / 2.0);
    }
    s += "</svg>\n";
    s
}

fn axis_y(s: &mut String, ax: &LogAxis, x0: f64, x1: f64) {
    for t in ax.ticks() {
        let y = ax.y(t);
        let _ = write!(s, r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##, x0 - 6.0, y + 4.0, label_ms(t));
    }
}

/// `herald-loadtest compare`: two reports of the same scenario side by side, as ratios.
pub fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let base: Value = serde_json::from_str(&std::fs::read_to_string(&a.base)?)?;
    let other: Value = serde_json::from_str(&std::fs::read_to_string(&a.other)?)?;
    let (table, text) = comparison(&base, &other);
    if let Some(dir) = &a.dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("comparison.json"), serde_json::to_string_pretty(&table)? + "\n")?;
        std::fs::write(dir.join("comparison.txt"), &text)?;
    }
    eprint!("{text}");
    println!("{table}");
    Ok(())
}

/// The metrics two runs share, each with both values and other/base.
pub fn comparison(base: &Value, other: &Value) -> (Value, String) {
    let bn = base["server"].as_str().unwrap_or("base").to_owned();
    let on = other["server"].as_str().unwrap_or("other").to_owned();
    let get = |r: &Value, path: &str| -> Option<f64> {
        let mut v = r;
        for k in path.split('.') {
            v = v.get(k)?;
        }
        v.as_f64()
    };
    let metrics = [
        ("deliveries_per_sec", "deliveries/s"),
        ("lost", "lost"),
        ("duplicates", "duplicates"),
        ("latency_ms.p50", "latency p50 ms"),
        ("latency_ms.p90", "latency p90 ms"),
        ("latency_ms.p99", "latency p99 ms"),
        ("latency_ms.p999", "latency p99.9 ms"),
        ("latency_ms.max", "latency max ms"),
        ("server_cpu_s", "server CPU s"),
        ("server_cpu_us_per_delivery", "server CPU µs/delivery"),
        ("server_peak_rss_kib", "server peak RSS KiB"),
        ("server_rss_per_conn_kib", "server RSS KiB/conn"),
        ("loadgen_cpu_s", "load generator CPU s"),
    ];
    let mut rows = Vec::new();
    let mut text = format!("{} vs {} — {} ({} / {})\n", bn, on, base["scenario"].as_str().unwrap_or(""), on, bn);
    let _ = writeln!(text, "  {:<26} {:>14} {:>14} {:>8}", "", bn, on, "ratio");
    for (path, label) in metrics {
        let (Some(b), Some(o)) = (get(base, path), get(other, path)) else { continue };
        let ratio = if b != 0.0 { Some(round3(o / b)) } else { None };
        let mut row = json!({ "metric": path, "ratio": ratio });
        row[bn.as_str()] = json!(b);
        row[on.as_str()] = json!(o);
        rows.push(row);
        let _ = writeln!(text, "  {label:<26} {b:>14} {o:>14} {:>8}", ratio.map(|r| r.to_string()).unwrap_or_else(|| "-".into()));
    }
    if other["ok"] != true || base["ok"] != true {
        let _ = writeln!(text, "  note: {} ok={}, {} ok={}", bn, base["ok"], on, other["ok"]);
    }
    let _ = writeln!(text, "  {}: {}", on, other["semantics"].as_str().unwrap_or(""));
    (json!({ "base": bn, "other": on, "scenario": base["scenario"], "params": base["params"], "rows": rows }), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(latencies: &[u64], sec: u64, deliveries: u64, lost: u64) -> Value {
        let mut rec = hist::Recorder::default();
        rec.record_all(sec * 1_000_000, latencies);
        let h = rec.to_json();
        json!({
            "connections": 2, "ready": 2, "deliveries": deliveries, "expected_deliveries": deliveries + lost, "lost": lost,
            "gaps": 0, "duplicates": 0, "frames": deliveries, "first_unix_us": sec * 1_000_000, "last_unix_us": sec * 1_000_000 + 2_000_000,
            "hist": h["hist"], "intervals": h["intervals"], "cpu_seconds": 1.5, "reconnects": 2,
        })
    }

    fn run(procs: Vec<Value>, strict: bool) -> Value {
        json!({
            "name": "t", "scenario": "fanout", "server": "herald", "strict": strict, "params": {"subscribers": 4},
            "processes": procs, "publishers": [{"published_total": 10, "cpu_seconds": 0.1}],
            "servers": [{"name": "herald", "connections": 4, "rss_before_kib": 1000, "rss_ready_kib": 1400,
                          "samples": [[100.0, 1.0, 2000], [101.0, 1.5, 2100], [102.0, 2.5, 2050]]}],
            "loadgen_samples": [[100.0, 0.5], [101.0, 0.9]],
        })
    }

    #[test]
    fn merges_processes_and_passes_a_clean_run() {
        let r = run(vec![process(&[1000, 2000], 100, 20, 0), process(&[100_000; 2], 101, 20, 0)], true);
        let (rep, text, merged) = build(&r).unwrap();
        assert_eq!(rep["ok"], true, "{text}");
        assert_eq!(rep["deliveries"], 40);
        assert_eq!(rep["connections"], 4);
        assert_eq!(rep["latency_ms"]["count"], 4);
        // The merge's median is the second process's low value, not "the worse process".
        assert!(rep["latency_ms"]["p50"].as_f64().unwrap() < 3.0);
        assert!((rep["latency_ms"]["max"].as_f64().unwrap() - 100.0).abs() < 0.1);
        assert_eq!(merged.seconds.len(), 2);
        assert_eq!(rep["timeline"].as_array().unwrap().len(), 2);
        assert_eq!(rep["server_cpu_s"], 1.5);
        assert_eq!(rep["server_rss_per_conn_kib"], 100.0);
        assert_eq!(rep["server_peak_rss_kib"], 2100);
        assert_eq!(rep["reconnects"], 4);
        assert!(text.contains("OK") && text.contains("p99.99"), "{text}");
        let svg = svg(&rep, &merged);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 5, "distribution, p50, p99, max, CPU");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let dir = std::env::temp_dir().join(format!("herald-loadtest-report-{}", std::process::id()));
        write(&dir, &rep, &text, &merged).unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(back["deliveries"], 40);
        assert!(std::fs::read_to_string(dir.join("summary.txt")).unwrap().contains("deliveries 40 of 40"));
        assert!(std::fs::read_to_string(dir.join("latency.svg")).unwrap().contains("latency by percentile"));
        std::fs::remove_dir_all(dir).unwrap();
        assert!(compact(&rep).get("timeline").is_none());
    }

    #[test]
    fn loss_fails_a_strict_run_only() {
        let procs = vec![process(&[1000], 100, 19, 1), process(&[1000], 100, 20, 0)];
        let (rep, text, _) = build(&run(procs.clone(), true)).unwrap();
        assert_eq!(rep["ok"], false);
        assert_eq!(rep["lost"], 1);
        assert!(text.contains("FAILED: lost: 1"), "{text}");
        let (rep, _, _) = build(&run(procs, false)).unwrap();
        assert_eq!(rep["ok"], true, "at most once: loss is reported, not a failure");
        assert_eq!(rep["lost"], 1);
        // Clients that never subscribed fail any run.
        let mut p = process(&[1000], 100, 20, 0);
        p["ready"] = json!(1);
        let (rep, _, _) = build(&run(vec![p], false)).unwrap();
        assert_eq!(rep["ok"], false);
    }

    #[test]
    fn idle_and_empty_runs_draw() {
        let r = json!({"name": "idle", "scenario": "idle", "server": "nats", "processes": [{"connections": 3, "ready": 3, "cpu_seconds": 0.1}],
                       "servers": [{"name": "nats", "connections": 3, "rss_before_kib": 100, "rss_ready_kib": 130, "samples": []}]});
        let (rep, text, merged) = build(&r).unwrap();
        assert_eq!(rep["ok"], true, "{text}");
        assert_eq!(rep["server_rss_per_conn_kib"], 10.0);
        let svg = svg(&rep, &merged);
        assert!(svg.contains("no latency recorded") && svg.contains("no samples"));
    }

    #[test]
    fn comparison_ratios() {
        let a = json!({"server": "herald", "scenario": "fanout", "ok": true, "deliveries_per_sec": 100.0, "latency_ms": {"p50": 2.0}, "server_cpu_s": 4.0, "lost": 0});
        let b = json!({"server": "nats", "scenario": "fanout", "ok": true, "deliveries_per_sec": 50.0, "latency_ms": {"p50": 3.0}, "server_cpu_s": 2.0, "lost": 5});
        let (t, text) = comparison(&a, &b);
        let rows = t["rows"].as_array().unwrap();
        let p50 = rows.iter().find(|r| r["metric"] == "latency_ms.p50").unwrap();
        assert_eq!(p50["ratio"], 1.5);
        assert_eq!(p50["herald"], 2.0);
        let lost = rows.iter().find(|r| r["metric"] == "lost").unwrap();
        assert!(lost["ratio"].is_null());
        assert!(text.contains("server CPU s") && text.contains("0.5"), "{text}");
    }
}
