//! Reports: histograms that merge exactly across load processes, the merged summary, and an SVG
//! percentile plot.

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::io::BufRead;

/// A histogram as `[[value_us, count], …]` (its non-empty buckets), for JSON.
pub fn encode(h: &Histogram<u64>) -> Value {
    Value::Array(h.iter_recorded().map(|v| json!([v.value_iterated_to(), v.count_at_value()])).collect())
}

/// Adds an encoded histogram into `into`.
pub fn decode_into(v: &Value, into: &mut Histogram<u64>) -> anyhow::Result<()> {
    for pair in v.as_array().ok_or_else(|| anyhow::anyhow!("hist is not an array"))? {
        let (Some(value), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) else { anyhow::bail!("bad hist entry {pair}") };
        into.record_n(value.max(1), count)?;
    }
    Ok(())
}

/// The percentiles reported everywhere, milliseconds.
pub fn percentiles(h: &Histogram<u64>) -> Value {
    let ms = |q: f64| (h.value_at_quantile(q) as f64 / 1000.0 * 1000.0).round() / 1000.0;
    json!({ "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999), "p9999": ms(0.9999), "max": h.max() as f64 / 1000.0 })
}

/// `merge` flags.
#[derive(clap::Args)]
pub struct MergeArgs {
    /// Write an SVG percentile plot here.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
    /// Title of the plot.
    #[arg(long, default_value = "publish → delivery latency")]
    title: String,
}

/// Reads subscriber reports (JSON lines) on stdin, prints one merged report: counts summed, the
/// histograms merged, percentiles of the merge.
pub fn merge(a: MergeArgs) -> anyhow::Result<()> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut sums = serde_json::Map::new();
    let mut processes = 0u64;
    let mut seconds: f64 = 0.0;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        let Some(obj) = v.as_object() else { continue };
        processes += 1;
        if let Some(hist) = obj.get("hist") {
            decode_into(hist, &mut h)?;
        }
        seconds = seconds.max(obj.get("seconds").and_then(Value::as_f64).unwrap_or(0.0));
        for key in ["connections", "ready", "deliveries", "ws_messages", "gaps", "duplicates", "reconnects", "unrecovered", "cpu_seconds"] {
            let add = obj.get(key).and_then(Value::as_f64).unwrap_or(0.0);
            let now = sums.get(key).and_then(Value::as_f64).unwrap_or(0.0);
            sums.insert(key.into(), json!(now + add));
        }
    }
    let deliveries = sums.get("deliveries").and_then(Value::as_f64).unwrap_or(0.0);
    let mut out = Value::Object(sums);
    out["processes"] = json!(processes);
    out["seconds"] = json!(seconds);
    out["deliveries_per_sec"] = json!(if seconds > 0.0 { (deliveries / seconds).round() } else { 0.0 });
    out["latency_ms"] = percentiles(&h);
    if let Some(path) = &a.svg {
        std::fs::write(path, svg(&h, &a.title))?;
    }
    println!("{out}");
    Ok(())
}

/// A percentile-distribution plot: latency against 1/(1-q) on a log axis, p50 to max.
pub fn svg(h: &Histogram<u64>, title: &str) -> String {
    let qs: [f64; 10] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999];
    let pts: Vec<(f64, f64)> = qs.iter().map(|&q| ((1.0 / (1.0 - q)).log10(), h.value_at_quantile(q) as f64 / 1000.0)).collect();
    let (w, ht, pad) = (640.0, 360.0, 56.0);
    let xmax = 5.0;
    let ymax = (h.max() as f64 / 1000.0).max(1.0) * 1.1;
    let x = |v: f64| pad + (v - 0.3) / (xmax - 0.3) * (w - 2.0 * pad);
    let y = |v: f64| ht - pad - v / ymax * (ht - 2.0 * pad);
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{ht}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="#fff"/><text x="{pad}" y="24" font-size="14">{}</text>"##,
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    for (q, label) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9"), (0.9999, "p99.99"), (0.99999, "p99.999")] {
        let xv = x((1.0f64 / (1.0 - q)).log10());
        s += &format!(r##"<line x1="{xv:.1}" y1="{}" x2="{xv:.1}" y2="{}" stroke="#ddd"/><text x="{xv:.1}" y="{}" text-anchor="middle">{label}</text>"##, pad, ht - pad, ht - pad + 16.0);
    }
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        s += &format!(r##"<text x="{}" y="{:.1}" text-anchor="end">{v:.1} ms</text>"##, pad - 6.0, y(v) + 4.0);
    }
    let line: Vec<String> = pts.iter().map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b))).collect();
    s += &format!(r##"<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>"##, line.join(" "));
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_merge_exactly_through_their_encoding() {
        let mut a = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut b = a.clone();
        for v in 1..=1000u64 {
            a.record(v * 10).unwrap();
        }
        b.record_n(5_000_000, 10).unwrap();
        let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        decode_into(&encode(&a), &mut merged).unwrap();
        decode_into(&encode(&b), &mut merged).unwrap();
        let mut direct = a.clone();
        direct.add(&b).unwrap();
        assert_eq!(merged.len(), 1010);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(merged.value_at_quantile(q), direct.value_at_quantile(q), "q {q}");
        }
        let p = percentiles(&merged);
        assert!(p["max"].as_f64().unwrap() >= 5000.0);
        let plot = svg(&merged, "t");
        assert!(plot.starts_with("<svg") && plot.contains("polyline"));
    }
}
