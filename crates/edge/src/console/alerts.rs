//! The alerts of the Health page: the PrometheusRule's `herald` group (`helm/herald/templates/
//! prometheusrule.yaml`), word for word, evaluated over the console's own samples of the edges. A
//! test fails when the two lists differ, so the page and Prometheus alert on the same
//! expressions. The `herald-workers` group (push, webhooks) is on metrics of processes the
//! console does not sample: Prometheus alone evaluates it.
//!
//! The evaluator knows the part of PromQL those rules use: a metric name, `rate` and `increase`
//! over a range, `sum` with an optional `by (label)`, `histogram_quantile`, a comparison with a
//! number, and `and`. Ranges are read from the samples the console kept (ten minutes at most; right
//! after start, less), and `rate` divides by the time the samples span.

use std::collections::BTreeMap;

use super::samples::{History, Sample, increase};
#[cfg(test)]
use super::samples::Series;

/// One alerting rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The alert's name.
    pub name: &'static str,
    /// Its PromQL expression, as in the PrometheusRule.
    pub expr: &'static str,
    /// How long the expression must hold before the alert fires (seconds; 0: at once).
    pub for_secs: u64,
    /// `critical` or `warning`.
    pub severity: &'static str,
    /// The runbook section (docs/operations.md#…).
    pub runbook: &'static str,
}

/// The rules, in the PrometheusRule's order.
pub const RULES: &[Rule] = &[
    Rule { name: "HeraldEdgeNotReady", expr: "herald_ready == 0 and herald_draining == 0", for_secs: 120, severity: "critical", runbook: "heraldedgenotready" },
    Rule { name: "HeraldProbeStalled", expr: "herald_probe_ok == 0 and herald_draining == 0", for_secs: 60, severity: "critical", runbook: "heraldprobestalled" },
    Rule { name: "HeraldBusGap", expr: "increase(herald_bus_gaps_total[10m]) > 0", for_secs: 0, severity: "critical", runbook: "heraldbusgap" },
    Rule { name: "HeraldHighLaggedDisconnects", expr: "sum(rate(herald_lagged_disconnects_total[5m])) > 1", for_secs: 600, severity: "warning", runbook: "heraldhighlaggeddisconnects" },
    Rule { name: "HeraldPublishErrors", expr: "sum by (code) (rate(herald_publish_errors_total[5m])) > 0.1", for_secs: 300, severity: "warning", runbook: "heraldpublisherrors" },
    Rule {
        name: "HeraldFanoutLatencyHigh",
        expr: "histogram_quantile(0.99, sum by (le) (rate(herald_publish_to_fanout_seconds_bucket[5m]))) > 0.05",
        for_secs: 300,
        severity: "warning",
        runbook: "heraldfanoutlatencyhigh",
    },
    Rule {
        name: "HeraldNoDeliveries",
        expr: "sum(rate(herald_records_in_total[5m])) > 0 and sum(rate(herald_deliveries_total[5m])) == 0 and sum(herald_subscriptions) > 0",
        for_secs: 300,
        severity: "critical",
        runbook: "heraldnodeliveries",
    },
    Rule { name: "HeraldSourceDeadLetters", expr: "sum by (source) (rate(herald_source_dead_lettered_total[5m])) > 0", for_secs: 600, severity: "warning", runbook: "heraldsourcedeadletters" },
    Rule { name: "HeraldPresenceUnavailable", expr: "sum by (pod) (rate(herald_presence_errors_total[5m])) > 0", for_secs: 300, severity: "warning", runbook: "heraldpresenceunavailable" },
    Rule { name: "HeraldReplicationLagHigh", expr: "herald_replication_lag_seconds > 30", for_secs: 300, severity: "warning", runbook: "heraldreplicationlaghigh" },
    Rule { name: "HeraldReplicationErrors", expr: "increase(herald_replication_errors_total[10m]) > 3", for_secs: 0, severity: "warning", runbook: "heraldreplicationerrors" },
];

/// Every metric name the rules read (the samples keep only these and the pages' own).
pub fn metric_names() -> Vec<String> {
    let mut names: Vec<String> = RULES.iter().flat_map(|r| tokens(r.expr)).filter_map(|t| match t {
        Tok::Ident(i) if i.starts_with("herald_") => Some(i),
        _ => None,
    }).collect();
    names.sort();
    names.dedup();
    names
}

/// A value per label set.
pub type Vector = Vec<(Vec<(String, String)>, f64)>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Range(u64),
    Op(&'static str),
    Open,
    Close,
    Comma,
}

fn tokens(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            out.push(Tok::Close);
            i += 1;
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if c == '[' {
            let end = s[i..].find(']').map_or(b.len(), |e| i + e);
            let d = &s[i + 1..end];
            let (n, unit) = d.split_at(d.len().saturating_sub(1));
            let secs = n.parse::<u64>().unwrap_or(0) * match unit { "s" => 1, "m" => 60, "h" => 3600, _ => 0 };
            out.push(Tok::Range(secs * 1000));
            i = end + 1;
        } else if let Some(op) = ["==", "!=", ">=", "<=", ">", "<"].into_iter().find(|op| s[i..].starts_with(op)) {
            out.push(Tok::Op(op));
            i += op.len();
        } else if c.is_ascii_digit() {
            let end = s[i..].find(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(b.len(), |e| i + e);
            out.push(Tok::Num(s[i..end].parse().unwrap_or(f64::NAN)));
            i = end;
        } else {
            let end = s[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(b.len(), |e| i + e).max(i + 1);
            out.push(Tok::Ident(s[i..end].to_owned()));
            i = end;
        }
    }
    out
}

/// An expression, parsed.
#[derive(Debug, Clone)]
enum Expr {
    Metric(String),
    Range { func: String, metric: String, window_ms: u64 },
    Sum { by: Option<String>, inner: Box<Expr> },
    Quantile { q: f64, inner: Box<Expr> },
    Compare { lhs: Box<Expr>, op: &'static str, rhs: f64 },
    And(Box<Expr>, Box<Expr>),
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(format!("expected {t:?}, found {other:?}")),
        }
    }
    fn expr(&mut self) -> Result<Expr, String> {
        let mut e = self.cmp()?;
        while self.peek() == Some(&Tok::Ident("and".into())) {
            self.at += 1;
            e = Expr::And(Box::new(e), Box::new(self.cmp()?));
        }
        Ok(e)
    }
    fn cmp(&mut self) -> Result<Expr, String> {
        let lhs = self.term()?;
        if let Some(Tok::Op(op)) = self.peek().cloned() {
            self.at += 1;
            let Some(Tok::Num(rhs)) = self.next() else { return Err("a comparison needs a number".into()) };
            return Ok(Expr::Compare { lhs: Box::new(lhs), op, rhs });
        }
        Ok(lhs)
    }
    fn term(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Ident(f)) if f == "sum" => {
                let by = if self.peek() == Some(&Tok::Ident("by".into())) {
                    self.at += 1;
                    self.expect(Tok::Open)?;
                    let Some(Tok::Ident(l)) = self.next() else { return Err("by needs a label".into()) };
                    self.expect(Tok::Close)?;
                    Some(l)
                } else {
                    None
                };
                self.expect(Tok::Open)?;
                let inner = self.expr()?;
                self.expect(Tok::Close)?;
                Ok(Expr::Sum { by, inner: Box::new(inner) })
            }
            Some(Tok::Ident(f)) if f == "rate" || f == "increase" => {
                self.expect(Tok::Open)?;
                let Some(Tok::Ident(metric)) = self.next() else { return Err(format!("{f} needs a metric")) };
                let Some(Tok::Range(window_ms)) = self.next() else { return Err(format!("{f} needs a range")) };
                self.expect(Tok::Close)?;
                Ok(Expr::Range { func: f, metric, window_ms })
            }
            Some(Tok::Ident(f)) if f == "histogram_quantile" => {
                self.expect(Tok::Open)?;
                let Some(Tok::Num(q)) = self.next() else { return Err("histogram_quantile needs a quantile".into()) };
                self.expect(Tok::Comma)?;
                let inner = self.expr()?;
                self.expect(Tok::Close)?;
                Ok(Expr::Quantile { q, inner: Box::new(inner) })
            }
            Some(Tok::Ident(m)) => Ok(Expr::Metric(m)),
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

fn parse(expr: &str) -> Result<Expr, String> {
    let mut p = Parser { toks: tokens(expr), at: 0 };
    let e = p.expr()?;
    match p.next() {
        None => Ok(e),
        Some(t) => Err(format!("unexpected {t:?} at the end")),
    }
}

fn eval(e: &Expr, latest: &Sample, history: &History) -> Vector {
    match e {
        Expr::Metric(m) => latest.values.iter().filter(|(s, _)| &s.name == m).map(|(s, v)| (s.labels.clone(), *v)).collect(),
        Expr::Range { func, metric, window_ms } => {
            let window = history.window(*window_ms);
            latest
                .values
                .iter()
                .filter(|(s, _)| &s.name == metric)
                .filter_map(|(s, _)| {
                    let (inc, ms) = increase(&window, s)?;
                    Some((s.labels.clone(), if func == "rate" { inc / (ms as f64 / 1000.0) } else { inc }))
                })
                .collect()
        }
        Expr::Sum { by, inner } => {
            let mut groups: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
            let v = eval(inner, latest, history);
            if v.is_empty() && by.is_none() {
                return Vec::new();
            }
            for (labels, x) in v {
                let key = match by {
                    Some(l) => labels.into_iter().filter(|(k, _)| k == l).collect(),
                    None => Vec::new(),
                };
                *groups.entry(key).or_default() += x;
            }
            groups.into_iter().collect()
        }
        Expr::Quantile { q, inner } => {
            let mut buckets: Vec<(f64, f64)> = eval(inner, latest, history)
                .into_iter()
                .filter_map(|(l, v)| l.iter().find(|(k, _)| k == "le").and_then(|(_, le)| if le == "+Inf" { Some(f64::INFINITY) } else { le.parse().ok() }).map(|le| (le, v)))
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            quantile(*q, &buckets).map(|x| vec![(Vec::new(), x)]).unwrap_or_default()
        }
        Expr::Compare { lhs, op, rhs } => eval(lhs, latest, history)
            .into_iter()
            .filter(|(_, v)| match *op {
                "==" => v == rhs,
                "!=" => v != rhs,
                ">" => v > rhs,
                "<" => v < rhs,
                ">=" => v >= rhs,
                _ => v <= rhs,
            })
            .collect(),
        Expr::And(a, b) => {
            let rhs = eval(b, latest, history);
            eval(a, latest, history).into_iter().filter(|(l, _)| rhs.iter().any(|(r, _)| r.is_empty() || l.is_empty() || r == l)).collect()
        }
    }
}

/// Prometheus's `histogram_quantile` over cumulative buckets sorted by bound: linear within
/// the bucket the rank falls in. `None` without observations.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let in_bucket = count - below;
            return Some(if in_bucket > 0.0 { lower + (le - lower) * (rank - below) / in_bucket } else { le });
        }
        lower = le;
        below = count;
    }
    Some(lower)
}

/// What a rule says now: the label sets and values for which its expression holds.
pub fn evaluate(rule: &Rule, history: &History) -> Result<Vector, String> {
    let e = parse(rule.expr)?;
    let Some(latest) = history.latest() else { return Ok(Vec::new()) };
    Ok(eval(&e, latest, history))
}

/// One rule's state for the Health page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertState {
    /// The rule's name.
    pub name: &'static str,
    /// Its expression.
    pub expr: &'static str,
    /// Its severity.
    pub severity: &'static str,
    /// `ok`, `pending` (true for less than `for`) or `firing`.
    pub state: &'static str,
    /// The `for` of the rule, seconds.
    pub for_secs: u64,
    /// Since when it holds (ms since the epoch).
    pub since_ms: Option<u64>,
    /// The values it holds for.
    pub values: Vec<(BTreeMap<String, String>, f64)>,
    /// The runbook anchor in docs/operations.md.
    pub runbook: &'static str,
}

/// Tracks how long each rule has held, sample after sample.
#[derive(Default)]
pub struct AlertTracker {
    since: BTreeMap<&'static str, u64>,
    last: Vec<AlertState>,
}

impl AlertTracker {
    /// Evaluates every rule on the newest sample.
    pub fn update(&mut self, history: &History) {
        let Some(now) = history.latest().map(|s| s.at_ms) else { return };
        self.last = RULES
            .iter()
            .map(|r| {
                let v = evaluate(r, history).unwrap_or_default();
                let since = if v.is_empty() {
                    self.since.remove(r.name);
                    None
                } else {
                    Some(*self.since.entry(r.name).or_insert(now))
                };
                let state = match since {
                    None => "ok",
                    Some(s) if now.saturating_sub(s) >= r.for_secs * 1000 => "firing",
                    Some(_) => "pending",
                };
                AlertState {
                    name: r.name,
                    expr: r.expr,
                    severity: r.severity,
                    state,
                    for_secs: r.for_secs,
                    since_ms: since,
                    values: v.into_iter().map(|(l, x)| (l.into_iter().collect(), x)).collect(),
                    runbook: r.runbook,
                }
            })
            .collect();
    }

    /// The states after the last update.
    pub fn states(&self) -> &[AlertState] {
        &self.last
    }
}

/// `(name, labels, value)`: one series of a test sample.
#[cfg(test)]
type Point<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// A sample built from `(name, labels, value)` triples (tests).
#[cfg(test)]
fn sample(at_ms: u64, values: &[Point<'_>]) -> Sample {
    Sample {
        at_ms,
        values: values
            .iter()
            .map(|(n, l, v)| {
                let mut labels: Vec<(String, String)> = l.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
                labels.sort();
                (Series { name: n.to_string(), labels }, *v)
            })
            .collect(),
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_parses() {
        for r in RULES {
            parse(r.expr).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        }
        assert!(metric_names().contains(&"herald_publish_to_fanout_seconds_bucket".to_owned()));
    }

    /// The `herald` group of the chart's PrometheusRule and [`RULES`] are the same list: names,
    /// expressions, `for` and severities, in order. Only that group: the rules after it (the
    /// `herald-workers` group, on the push and webhooks workers' metrics, which the console does
    /// not sample) are Prometheus's alone, so reading stops at `- name: herald-workers`.
    #[test]
    fn the_rules_are_the_prometheus_rules_of_the_helm_chart() {
        let yaml = include_str!("../../../../helm/herald/templates/prometheusrule.yaml");
        assert!(yaml.contains("\n    - name: herald-workers\n"), "the workers' group moved: change where this test stops");
        let mut chart = Vec::new();
        let mut cur: Option<(String, String, u64, String)> = None;
        for line in yaml.lines().map(str::trim).take_while(|l| *l != "- name: herald-workers") {
            if let Some(n) = line.strip_prefix("- alert: ") {
                chart.extend(cur.take());
                cur = Some((n.to_owned(), String::new(), 0, String::new()));
            } else if let Some(c) = cur.as_mut() {
                if let Some(e) = line.strip_prefix("expr: ") {
                    c.1 = e.to_owned();
                } else if let Some(f) = line.strip_prefix("for: ") {
                    let (n, unit) = f.split_at(f.len() - 1);
                    c.2 = n.parse::<u64>().unwrap() * if unit == "m" { 60 } else { 1 };
                } else if let Some(s) = line.strip_prefix("labels: { severity: ") {
                    c.3 = s.trim_end_matches(" }").to_owned();
                }
            }
        }
        chart.extend(cur);
        let ours: Vec<_> = RULES.iter().map(|r| (r.name.to_owned(), r.expr.to_owned(), r.for_secs, r.severity.to_owned())).collect();
        assert_eq!(ours, chart, "console/alerts.rs RULES and the chart's PrometheusRule differ: change both");
    }

    #[test]
    fn gauges_rates_sums_and_quantiles_evaluate_like_prometheus() {
        let mut h = History::new(600_000);
        h.push(sample(0, &[("herald_ready", &[], 1.0), ("herald_draining", &[], 0.0), ("herald_publish_errors_total", &[("code", "rate_limited")], 0.0)]));
        let rule = |name: &str| *RULES.iter().find(|r| r.name == name).unwrap();
        assert!(evaluate(&rule("HeraldEdgeNotReady"), &h).unwrap().is_empty());
        h.push(sample(60_000, &[("herald_ready", &[], 0.0), ("herald_draining", &[], 0.0), ("herald_publish_errors_total", &[("code", "rate_limited")], 60.0)]));
        assert_eq!(evaluate(&rule("HeraldEdgeNotReady"), &h).unwrap().len(), 1, "unready and not draining");
        let errors = evaluate(&rule("HeraldPublishErrors"), &h).unwrap();
        assert_eq!(errors, vec![(vec![("code".to_owned(), "rate_limited".to_owned())], 1.0)], "60 errors in 60 s by code");
        h.push(sample(61_000, &[("herald_ready", &[], 0.0), ("herald_draining", &[], 1.0)]));
        assert!(evaluate(&rule("HeraldEdgeNotReady"), &h).unwrap().is_empty(), "a draining node is not alerted on");
        // 100 observations: 90 below 10 ms, 10 between 50 and 100 ms: p99 = 95 ms.
        let b = |t, n: f64, m: f64| sample(t, &[("herald_publish_to_fanout_seconds_bucket", &[("le", "0.01")], n), ("herald_publish_to_fanout_seconds_bucket", &[("le", "0.05")], n), ("herald_publish_to_fanout_seconds_bucket", &[("le", "0.1")], n + m), ("herald_publish_to_fanout_seconds_bucket", &[("le", "+Inf")], n + m)]);
        let mut h = History::new(600_000);
        h.push(b(0, 0.0, 0.0));
        h.push(b(10_000, 90.0, 10.0));
        let p99 = evaluate(&rule("HeraldFanoutLatencyHigh"), &h).unwrap();
        assert_eq!(p99.len(), 1);
        assert!((p99[0].1 - 0.095).abs() < 1e-9, "{p99:?}");
    }

    #[test]
    fn an_alert_is_pending_until_its_for_has_passed() {
        let mut t = AlertTracker::default();
        let mut h = History::new(600_000);
        for at in [0, 60_000, 121_000] {
            h.push(sample(at, &[("herald_ready", &[], 0.0), ("herald_draining", &[], 0.0)]));
            t.update(&h);
        }
        let s = t.states().iter().find(|s| s.name == "HeraldEdgeNotReady").unwrap();
        assert_eq!((s.state, s.since_ms), ("firing", Some(0)));
        h.push(sample(122_000, &[("herald_ready", &[], 1.0), ("herald_draining", &[], 0.0)]));
        t.update(&h);
        assert_eq!(t.states().iter().find(|s| s.name == "HeraldEdgeNotReady").unwrap().state, "ok");
    }
}
