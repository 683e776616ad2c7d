//! The console's short memory of metrics: every few seconds it reads this node's registry (and
//! the replicators' `/metrics`, when configured) and keeps the last ten minutes, so that rates,
//! the Regions chart and the alerts of the Health page need no Prometheus.

use std::collections::VecDeque;
use std::sync::Arc;

/// One time series: a metric name and its labels (sorted).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Series {
    /// The metric's name (`herald_deliveries_total`, `…_bucket`).
    pub name: String,
    /// Its labels, sorted by name.
    pub labels: Vec<(String, String)>,
}

impl Series {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Every kept series at one moment.
#[derive(Debug, Default)]
pub struct Sample {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// The values.
    pub values: Vec<(Series, f64)>,
}

/// Parses Prometheus's text format, keeping the series whose metric name `keep` accepts.
/// Comments, malformed lines and non-numbers are skipped.
pub fn parse(text: &str, keep: impl Fn(&str) -> bool) -> Vec<(Series, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rfind('}') {
            Some(i) => (&line[..=i], line[i + 1..].trim()),
            None => match line.split_once(char::is_whitespace) {
                Some((h, v)) => (h, v.trim()),
                None => continue,
            },
        };
        let value = value.split_whitespace().next().unwrap_or("");
        let Ok(v) = value.parse::<f64>().or_else(|_| if value == "+Inf" { Ok(f64::INFINITY) } else { Err(()) }) else { continue };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}').unwrap_or(rest))),
            None => (head, Vec::new()),
        };
        if keep(name) {
            out.push((Series { name: name.to_owned(), labels }, v));
        }
    }
    out
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((k, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((k.trim_matches(|c: char| c == ',' || c.is_whitespace()).to_owned(), value));
        rest = &after[end.min(after.len())..];
    }
    out.sort();
    out
}

/// The last samples, oldest first.
pub struct History {
    samples: VecDeque<Arc<Sample>>,
    keep_ms: u64,
}

impl History {
    /// Keeps samples for `keep_ms`.
    pub fn new(keep_ms: u64) -> Self {
        Self { samples: VecDeque::new(), keep_ms }
    }

    /// Adds a sample, forgetting those too old.
    pub fn push(&mut self, s: Sample) {
        let oldest = s.at_ms.saturating_sub(self.keep_ms);
        self.samples.push_back(Arc::new(s));
        while self.samples.front().is_some_and(|s| s.at_ms < oldest) {
            self.samples.pop_front();
        }
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<&Arc<Sample>> {
        self.samples.back()
    }

    /// Samples taken within `window_ms` of the newest, oldest first.
    pub fn window(&self, window_ms: u64) -> Vec<Arc<Sample>> {
        let Some(last) = self.latest() else { return Vec::new() };
        let from = last.at_ms.saturating_sub(window_ms);
        self.samples.iter().filter(|s| s.at_ms >= from).cloned().collect()
    }
}

/// The increase of counter `series` across `samples` (oldest first), counting a drop as a
/// restart from zero; `None` with fewer than two samples holding it.
pub fn increase(samples: &[Arc<Sample>], series: &Series) -> Option<(f64, u64)> {
    let mut points = samples.iter().filter_map(|s| s.values.iter().find(|(k, _)| k == series).map(|(_, v)| (s.at_ms, *v)));
    let (t0, mut prev) = points.next()?;
    let (mut t1, mut total) = (t0, 0.0);
    for (t, v) in points {
        total += if v >= prev { v - prev } else { v };
        prev = v;
        t1 = t;
    }
    (t1 > t0).then_some((total, t1 - t0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_is_parsed_with_labels_and_filtered_by_name() {
        let text = "# HELP x y\nherald_ready 1\nherald_publish_errors_total{code=\"rate_limited\",x=\"a\\\"b\"} 3\nherald_publish_to_fanout_seconds_bucket{le=\"+Inf\"} 7\nother 5\nbroken\n";
        let v = parse(text, |n| n.starts_with("herald_"));
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].0.name, "herald_ready");
        assert_eq!(v[1].0.label("code"), Some("rate_limited"));
        assert_eq!(v[1].0.label("x"), Some("a\"b"));
        assert_eq!(v[1].1, 3.0);
        assert_eq!(v[2].0.label("le"), Some("+Inf"));
    }

    #[test]
    fn increase_spans_the_window_and_survives_a_counter_reset() {
        let s = Series { name: "c".into(), labels: vec![] };
        let at = |ms, v| Arc::new(Sample { at_ms: ms, values: vec![(s.clone(), v)] });
        assert_eq!(increase(&[at(0, 5.0)], &s), None);
        assert_eq!(increase(&[at(0, 5.0), at(1000, 8.0), at(2000, 2.0)], &s), Some((5.0, 2000)));
        let mut h = History::new(10_000);
        for t in [0, 5_000, 20_000, 25_000] {
            h.push(Sample { at_ms: t, values: vec![] });
        }
        assert_eq!(h.window(60_000).len(), 2, "older samples are forgotten");
    }
}
