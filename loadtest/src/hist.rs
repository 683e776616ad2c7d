//! Latency histograms: one per process for the whole run plus one per wall-clock second, sent as
//! base64 V2 (HdrHistogram's interchange format) so that the report merges them exactly.

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde_json::{Value, json};

/// Highest latency recorded exactly: one hour, in microseconds (a phone can be away that long).
pub const MAX_US: u64 = 3_600_000_000;

/// An empty latency histogram (µs, 3 significant digits).
pub fn new() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds")
}

/// base64 of the V2 serialization.
pub fn to_base64(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new().serialize(h, &mut buf).expect("serializing into memory");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Adds a base64 V2 histogram into `into`.
pub fn add_base64(s: &str, into: &mut Histogram<u64>) -> anyhow::Result<()> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s.trim())?;
    let h: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| anyhow::anyhow!("bad histogram: {e:?}"))?;
    into.add(&h).map_err(|e| anyhow::anyhow!("cannot merge histogram: {e:?}"))?;
    Ok(())
}

/// Milliseconds, three decimals.
fn ms(us: u64) -> f64 {
    (us as f64).round() / 1000.0
}

/// The percentiles reported everywhere, in milliseconds.
pub fn percentiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.5)), "p90": ms(h.value_at_quantile(0.9)), "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)), "p9999": ms(h.value_at_quantile(0.9999)), "max": ms(h.max()),
    })
}

/// What a load process records: the whole run and each second apart.
pub struct Recorder {
    pub total: Histogram<u64>,
    current: Histogram<u64>,
    current_sec: u64,
    /// (Unix second, base64 V2) of each finished second that saw a delivery.
    pub intervals: Vec<(u64, String)>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { total: new(), current: new(), current_sec: 0, intervals: Vec::new() }
    }
}

impl Recorder {
    /// Records latencies (µs) of records delivered at `now_us`.
    pub fn record_all(&mut self, now_us: u64, latencies: &[u64]) {
        if latencies.is_empty() {
            return;
        }
        let sec = now_us / 1_000_000;
        if sec != self.current_sec {
            self.flush();
            self.current_sec = sec;
        }
        for &l in latencies {
            self.total.saturating_record(l.max(1));
            self.current.saturating_record(l.max(1));
        }
    }

    /// Closes the current second.
    pub fn flush(&mut self) {
        if !self.current.is_empty() {
            self.intervals.push((self.current_sec, to_base64(&self.current)));
            self.current.reset();
        }
    }

    /// `{"hist": …, "intervals": [[sec, …], …]}` for a process's report.
    pub fn to_json(&mut self) -> Value {
        self.flush();
        json!({
            "hist": to_base64(&self.total),
            "intervals": self.intervals.iter().map(|(s, h)| json!([s, h])).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_v2_merges_exactly() {
        let mut a = new();
        let mut b = new();
        for v in 1..=1000u64 {
            a.record(v * 10).unwrap();
        }
        b.record_n(5_000_000, 10).unwrap();
        let mut merged = new();
        add_base64(&to_base64(&a), &mut merged).unwrap();
        add_base64(&to_base64(&b), &mut merged).unwrap();
        let mut direct = a.clone();
        direct.add(&b).unwrap();
        assert_eq!(merged.len(), 1010);
        for q in [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(merged.value_at_quantile(q), direct.value_at_quantile(q), "q {q}");
        }
        // Not "the worst p99 of the processes": the merge's p99 is lower than b's alone.
        assert!(merged.value_at_quantile(0.5) < 10_100);
        let p = percentiles(&merged);
        assert_eq!(p["count"], 1010);
        assert!((p["max"].as_f64().unwrap() - 5000.0).abs() < 5.0);
        assert!(add_base64("not base64!", &mut merged).is_err());
    }

    #[test]
    fn recorder_splits_seconds() {
        let mut r = Recorder::default();
        r.record_all(10_000_000, &[100, 200]);
        r.record_all(10_500_000, &[300]);
        r.record_all(11_000_001, &[4_000_000_000]);
        let j = r.to_json();
        let iv = j["intervals"].as_array().unwrap();
        assert_eq!(iv.len(), 2);
        assert_eq!(iv[0][0], 10);
        assert_eq!(iv[1][0], 11);
        let mut first = new();
        add_base64(iv[0][1].as_str().unwrap(), &mut first).unwrap();
        assert_eq!(first.len(), 3);
        let mut total = new();
        add_base64(j["hist"].as_str().unwrap(), &mut total).unwrap();
        assert_eq!(total.len(), 4);
        // Beyond the range: kept, at the top.
        assert!(total.max() >= MAX_US - MAX_US / 1000);
    }
}
