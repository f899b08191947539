//! The status page: server-rendered HTML with inline SVG charts, readable without
//! JavaScript; a small inline script refreshes the live part from `/status.json`.
//!
//! Every value that comes from the configuration or the network goes through
//! [`handoff_diag::escape::html`]. Numbers the tests compare with `/metrics` carry
//! `data-metric` (and `data-upstream`, `data-reason` or `data-status-class`) attributes.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use handoff_config::{Settings, UpstreamSettings};
use handoff_diag::escape::html as esc;
use handoff_diag::{FailureRecord, Reason};
use serde::Serialize;

use super::history::{self, Point, Sample, INTERVAL, SLOTS};
use super::snapshot::{Histogram, Snapshot, UpstreamSnapshot, STATUS_CLASSES};

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// Recent failures shown on the page.
pub(crate) const RECENT_ROWS: usize = 25;

/// Everything one rendering needs, read once.
#[derive(Debug)]
pub(crate) struct View<'a> {
    /// The settings in force.
    pub(crate) settings: &'a Settings,
    /// The metrics now.
    pub(crate) snapshot: Snapshot,
    /// The sampled history, oldest first.
    pub(crate) samples: Vec<Sample>,
    /// Newest failures first.
    pub(crate) recent: Vec<Arc<FailureRecord>>,
    /// Whether `/readyz` answers 200.
    pub(crate) ready: bool,
    /// Time since start.
    pub(crate) uptime: Duration,
    /// Unix milliseconds of this rendering.
    pub(crate) now_ms: u64,
}

/// `/status.json`: the numbers, and the live part of the page as HTML.
#[derive(Debug, Serialize)]
struct Json<'a> {
    version: &'static str,
    generated_unix_ms: u64,
    uptime_seconds: u64,
    ready: bool,
    upstreams: Vec<JsonUpstream<'a>>,
    html: String,
}

#[derive(Debug, Serialize)]
struct JsonUpstream<'a> {
    name: &'a str,
    requests_total: u64,
    requests: std::collections::BTreeMap<&'static str, u64>,
    failures_total: u64,
    /// Reasons with a count above zero.
    failures: std::collections::BTreeMap<&'static str, u64>,
    in_flight: i64,
}

// === impl View ===

impl View<'_> {
    /// The whole document.
    pub(crate) fn page(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        out.push_str(concat!(
            "<!doctype html>\n<html lang=en><head><meta charset=utf-8>",
            "<meta name=viewport content=\"width=device-width,initial-scale=1\">",
            "<title>handoff status</title>",
            // Without JavaScript the page reloads itself instead.
            "<noscript><meta http-equiv=refresh content=10></noscript>",
            "<style>"
        ));
        out.push_str(CSS);
        out.push_str("</style></head><body>\n<header class=top><h1>handoff</h1>");
        let _ = writeln!(
            out,
            "<nav><a href=\"/metrics\">/metrics</a><a href=\"/failures\">/failures</a>\
             <a href=\"/status.json\">/status.json</a></nav>\
             <p class=live-state><span id=live-dot class=\"dot\" aria-hidden=true></span>\
             <span id=live-text>updated {}</span></p></header>",
            clock(self.now_ms)
        );
        out.push_str("<main id=live>");
        out.push_str(&self.live());
        out.push_str(
            "</main>\n<footer>Counters since start come from <a href=\"/metrics\">/metrics</a>; \
            rates over the last 15 minutes are sampled here every 5 s. \
            This page refreshes every 2 s with JavaScript, every 10 s without.</footer>\n<script>",
        );
        out.push_str(JS);
        out.push_str("</script></body></html>\n");
        out
    }

    /// `/status.json`.
    pub(crate) fn json(&self) -> String {
        let json = Json {
            version: env!("CARGO_PKG_VERSION"),
            generated_unix_ms: self.now_ms,
            uptime_seconds: self.uptime.as_secs(),
            ready: self.ready,
            upstreams: self
                .snapshot
                .upstreams
                .iter()
                .map(|u| JsonUpstream {
                    name: &u.name,
                    requests_total: u.requests_total(),
                    requests: STATUS_CLASSES
                        .iter()
                        .zip(u.requests)
                        .map(|(c, n)| (*c, n))
                        .collect(),
                    failures_total: u.failures_total(),
                    failures: Reason::ALL
                        .iter()
                        .map(|r| (r.as_str(), u.failures[r.index()]))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                    in_flight: u.in_flight,
                })
                .collect(),
            html: self.live(),
        };
        serde_json::to_string(&json).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The part of the page the script replaces: summary, upstreams, recent failures.
    pub(crate) fn live(&self) -> String {
        let mut out = String::with_capacity(48 * 1024);
        self.summary(&mut out);
        let now = Sample::from_snapshot(&self.snapshot);
        for (i, (up, conf)) in self
            .snapshot
            .upstreams
            .iter()
            .zip(&self.settings.upstreams)
            .enumerate()
        {
            let deltas = history::deltas(&self.samples, &now, i);
            upstream(&mut out, i, up, conf, &deltas);
        }
        self.recent_failures(&mut out);
        out
    }

    fn summary(&self, out: &mut String) {
        let requests: u64 = self
            .snapshot
            .upstreams
            .iter()
            .map(|u| u.requests_total())
            .sum();
        let failures: u64 = self
            .snapshot
            .upstreams
            .iter()
            .map(|u| u.failures_total())
            .sum();
        let in_flight: i64 = self.snapshot.upstreams.iter().map(|u| u.in_flight).sum();
        let (state, class) = if self.ready {
            ("ready", "ok")
        } else {
            ("not ready", "bad")
        };
        let _ = writeln!(
            out,
            "<section class=summary aria-label=summary>\
             <div class=tile><span class=k>status</span><span class=\"v {class}\">{state}</span></div>\
             <div class=tile><span class=k>version</span><span class=v>{}</span></div>\
             <div class=tile><span class=k>up</span><span class=v>{}</span></div>\
             <div class=tile><span class=k>upstreams</span><span class=v>{}</span></div>\
             <div class=tile><span class=k>requests</span><span class=v data-metric=requests_all>{requests}</span></div>\
             <div class=tile><span class=k>failed handoffs</span><span class=\"v{}\" data-metric=failures_all>{failures}</span></div>\
             <div class=tile><span class=k>in flight</span><span class=v data-metric=in_flight_all>{in_flight}</span></div>\
             </section>",
            env!("CARGO_PKG_VERSION"),
            fmt_uptime(self.uptime),
            self.snapshot.upstreams.len(),
            if failures > 0 { " bad" } else { "" },
        );
    }

    fn recent_failures(&self, out: &mut String) {
        out.push_str("<section class=card id=recent><h2>Recent failures</h2>");
        if self.recent.is_empty() {
            out.push_str("<p class=empty>No failed handoffs yet.</p></section>\n");
            return;
        }
        let _ = write!(
            out,
            "<p class=sub>newest first; the last {} of <a href=\"/failures\">/failures</a></p>\
             <table class=recent><thead><tr><th>time (UTC)</th><th>upstream</th><th>reason</th>\
             <th class=num>status</th><th>what to check</th></tr></thead><tbody>",
            self.recent.len().min(RECENT_ROWS)
        );
        for r in self.recent.iter().take(RECENT_ROWS) {
            let key = format!("{}-{}-{}", r.unix_ms, r.upstream, r.evidence.request_id);
            let status = if r.status == 0 {
                "sent".to_owned()
            } else {
                r.status.to_string()
            };
            let _ = write!(
                out,
                "<tr data-failure><td class=mono title=\"{}\">{}</td><td>{}</td>\
                 <td><span class=reason>{}</span></td><td class=num>{}</td><td>\
                 <details data-key=\"{}\"><summary>{}</summary>",
                esc(&r.time),
                clock(r.unix_ms),
                esc(&r.upstream),
                r.reason.as_str(),
                status,
                esc(&key),
                esc(&r.hint),
            );
            if r.hint_detail != r.hint && !r.hint_detail.is_empty() {
                let _ = write!(out, "<p class=detail>{}</p>", esc(&r.hint_detail));
            }
            let _ = write!(
                out,
                "<p class=nginx><span class=k>nginx would have logged</span> <code>{}</code></p>",
                esc(&r.nginx_equivalent)
            );
            evidence(out, r);
            out.push_str("</details></td></tr>");
        }
        out.push_str("</tbody></table></section>\n");
    }
}

fn upstream(
    out: &mut String,
    i: usize,
    up: &UpstreamSnapshot,
    conf: &UpstreamSettings,
    deltas: &[Option<Point>],
) {
    let name = esc(&up.name);
    let requests = up.requests_total();
    let failures = up.failures_total();
    let ratio = if requests > 0 {
        format!(
            "{:.1}% of requests",
            failures as f64 * 100.0 / requests as f64
        )
    } else {
        "no requests yet".to_owned()
    };
    let _ = write!(
        out,
        "<section class=card id=\"upstream-{i}\" data-upstream=\"{name}\">\
         <header class=up-head><h2>{name}</h2><p class=route><code>{}</code> &rarr; <code>{}</code></p></header>\
         <div class=tiles>",
        esc(&conf.listen.to_string()),
        esc(&conf.address.to_string()),
    );
    let tile =
        |out: &mut String, label: &str, metric: &str, value: String, note: &str, bad: bool| {
            let _ = write!(
                out,
                "<div class=tile><span class=k>{label}</span>\
             <span class=\"v{}\" data-metric={metric} data-upstream=\"{name}\">{value}</span>\
             <span class=note>{note}</span></div>",
                if bad { " bad" } else { "" }
            );
        };
    tile(
        out,
        "requests",
        "requests_total",
        requests.to_string(),
        "since start",
        false,
    );
    tile(
        out,
        "failed handoffs",
        "failures_total",
        failures.to_string(),
        &ratio,
        failures > 0,
    );
    tile(
        out,
        "in flight",
        "in_flight",
        up.in_flight.to_string(),
        "now",
        false,
    );
    tile(
        out,
        "reused connections",
        "reuses",
        up.reuses.to_string(),
        "keep-alive pool",
        false,
    );
    tile(
        out,
        "client aborts",
        "client_aborts",
        up.client_aborts.to_string(),
        "nginx went away",
        false,
    );
    tile(
        out,
        "headers over nginx buffer",
        "over_nginx_buffer",
        up.over_nginx_buffer.to_string(),
        &format!("&gt; {}", fmt_bytes(conf.nginx_buffer_bytes as f64)),
        up.over_nginx_buffer > 0,
    );
    out.push_str("</div>");

    // Rates over the window.
    let window_requests: u64 = deltas.iter().flatten().map(|p| p.requests).sum();
    let window_failures: u64 = deltas
        .iter()
        .flatten()
        .map(|p| p.failures.iter().sum::<u64>())
        .sum();
    let _ = write!(
        out,
        "<div class=row><figure class=timeline><figcaption>Requests and failures per 5 s, \
         last 15 min <span class=legend><i class=sw-req></i>requests <i class=sw-fail></i>failed</span>\
         <span class=note>{window_requests} requests, {window_failures} failed</span></figcaption>"
    );
    timeline(out, deltas);
    out.push_str("</figure>");

    // Failures by reason.
    out.push_str(
        "<div class=reasons><table><thead><tr><th>failure reason</th><th class=num>total</th>\
         <th class=num>15 min</th><th>last 15 min</th></tr></thead><tbody>",
    );
    let mut any = false;
    for reason in Reason::ALL {
        let total = up.failures[reason.index()];
        if total == 0 {
            continue;
        }
        any = true;
        let per_slot: Vec<u64> = deltas
            .iter()
            .map(|d| d.as_ref().map_or(0, |p| p.failures[reason.index()]))
            .collect();
        let window: u64 = per_slot.iter().sum();
        let _ = write!(
            out,
            "<tr><td><span class=reason>{r}</span></td>\
             <td class=num><span data-metric=failures data-upstream=\"{name}\" data-reason={r}>{total}</span></td>\
             <td class=num>{window}</td><td>",
            r = reason.as_str(),
        );
        sparkline(out, &per_slot);
        out.push_str("</td></tr>");
    }
    if !any {
        out.push_str("<tr><td colspan=4 class=empty>no failed handoffs</td></tr>");
    }
    out.push_str("</tbody></table><table class=classes><thead><tr><th>status class</th>");
    for class in STATUS_CLASSES {
        let label = if class == "none" { "handoff" } else { class };
        let _ = write!(out, "<th class=num>{label}</th>");
    }
    out.push_str("</tr></thead><tbody><tr><td>requests</td>");
    for (class, n) in STATUS_CLASSES.iter().zip(up.requests) {
        let _ = write!(
            out,
            "<td class=\"num{}\"><span data-metric=requests data-upstream=\"{name}\" \
             data-status-class={class}>{n}</span></td>",
            if n == 0 { " zero" } else { "" }
        );
    }
    out.push_str("</tr></tbody></table></div></div>");

    // Histograms.
    out.push_str("<div class=charts>");
    let secs = |v: f64| fmt_secs(v);
    histogram(
        out,
        &name,
        "connect",
        "Connect (new connections)",
        &up.connect,
        &secs,
        &[],
    );
    histogram(
        out,
        &name,
        "header",
        "Time to response header",
        &up.header,
        &secs,
        &[],
    );
    histogram(
        out,
        &name,
        "response",
        "Time to last byte",
        &up.response,
        &secs,
        &[],
    );
    histogram(
        out,
        &name,
        "header_bytes",
        "Response header size",
        &up.header_bytes,
        &fmt_bytes,
        &[
            (conf.nginx_buffer_bytes as f64, "nginx buffer"),
            (conf.max_response_header_bytes as f64, "limit"),
        ],
    );
    out.push_str("</div></section>\n");
}

/// Requests (neutral) and failures (red) per slot, as bars.
fn timeline(out: &mut String, deltas: &[Option<Point>]) {
    const W: f64 = 720.0;
    const H: f64 = 96.0;
    const TOP: f64 = 12.0;
    let max = deltas
        .iter()
        .flatten()
        .map(|p| p.requests.max(p.failures.iter().sum()))
        .max()
        .unwrap_or(0)
        .max(1);
    let bw = W / SLOTS as f64;
    let _ = write!(
        out,
        "<svg class=chart viewBox=\"0 0 {W} {}\" preserveAspectRatio=none role=img \
         aria-label=\"requests and failures per 5 seconds\">",
        H + 16.0
    );
    // Grid: the max line and the base line.
    let _ = write!(
        out,
        "<line class=grid x1=0 x2={W} y1={TOP} y2={TOP}></line>\
         <line class=axis x1=0 x2={W} y1={H} y2={H}></line>\
         <text class=lbl x=2 y={}>{max}</text>",
        TOP - 2.0
    );
    let slot_secs = INTERVAL.as_secs();
    for (i, d) in deltas.iter().enumerate() {
        let Some(p) = d else { continue };
        let failed: u64 = p.failures.iter().sum();
        if p.requests == 0 && failed == 0 {
            continue;
        }
        let x = i as f64 * bw;
        let ago = (SLOTS - 1 - i) as u64 * slot_secs;
        let title = format!("{ago} s ago: {} requests, {failed} failed", p.requests);
        let scale = |n: u64| (n as f64 / max as f64) * (H - TOP);
        let h = scale(p.requests);
        let _ = write!(
            out,
            "<g><title>{title}</title><rect class=req x={x:.1} y={:.1} width={:.1} height={h:.1}></rect>",
            H - h,
            (bw - 0.6).max(0.5)
        );
        if failed > 0 {
            let fh = scale(failed).max(1.5);
            let _ = write!(
                out,
                "<rect class=fail x={x:.1} y={:.1} width={:.1} height={fh:.1}></rect>",
                H - fh,
                (bw - 0.6).max(0.5)
            );
        }
        out.push_str("</g>");
    }
    for (x, label, anchor) in [
        (0.0, "−15 min", "start"),
        (W / 3.0, "−10", "middle"),
        (2.0 * W / 3.0, "−5", "middle"),
        (W, "now", "end"),
    ] {
        let _ = write!(
            out,
            "<text class=lbl x={x:.1} y={} text-anchor={anchor}>{label}</text>",
            H + 13.0
        );
    }
    out.push_str("</svg>");
}

/// A small bar sparkline of one reason over the window, in 15 s bins.
fn sparkline(out: &mut String, per_slot: &[u64]) {
    const BINS: usize = 60;
    let per_bin = per_slot.len().div_ceil(BINS).max(1);
    let bins: Vec<u64> = per_slot.chunks(per_bin).map(|c| c.iter().sum()).collect();
    let max = bins.iter().copied().max().unwrap_or(0).max(1);
    let _ = write!(
        out,
        "<svg class=spark viewBox=\"0 0 {} 16\" preserveAspectRatio=none aria-hidden=true>",
        bins.len() * 2
    );
    for (i, n) in bins.iter().enumerate().filter(|(_, n)| **n > 0) {
        let h = (*n as f64 / max as f64 * 15.0).max(1.5);
        let _ = write!(
            out,
            "<rect x={} y={:.1} width=1.6 height={h:.1}></rect>",
            i * 2,
            16.0 - h
        );
    }
    out.push_str("</svg>");
}

/// A histogram's buckets as bars, with p50/p99 and optional markers (value, label).
fn histogram(
    out: &mut String,
    upstream: &str,
    id: &str,
    title: &str,
    h: &Histogram,
    fmt: &dyn Fn(f64) -> String,
    markers: &[(f64, &str)],
) {
    const W: f64 = 340.0;
    const H: f64 = 70.0;
    const TOP: f64 = 10.0;
    let counts = h.per_bucket();
    let n = counts.len().max(1);
    let bw = W / n as f64;
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let q = |p: f64| h.quantile(p).map_or_else(|| "–".to_owned(), fmt);
    let _ = write!(
        out,
        "<figure class=hist><figcaption>{title}<span class=note>\
         <span data-metric={id}_count data-upstream=\"{upstream}\">{}</span> obs. \
         &middot; p50 {} &middot; p99 {}</span></figcaption>\
         <svg class=chart viewBox=\"0 0 {W} {}\" role=img aria-label=\"{title} histogram\">\
         <line class=axis x1=0 x2={W} y1={H} y2={H}></line>",
        h.count,
        q(0.5),
        q(0.99),
        H + 16.0
    );
    let over = markers.first().map(|m| m.0);
    let mut lower = 0.0;
    for (i, (&(le, _), &c)) in h.buckets.iter().zip(&counts).enumerate() {
        let x = i as f64 * bw;
        let range = if le.is_finite() {
            format!("{} – {}", fmt(lower), fmt(le))
        } else {
            format!("&gt; {}", fmt(lower))
        };
        if c > 0 {
            let bh = (c as f64 / max as f64 * (H - TOP)).max(1.5);
            let class = if over.is_some_and(|o| lower >= o) {
                "warn"
            } else {
                "bar"
            };
            let _ = write!(
                out,
                "<g><title>{range}: {c}</title><rect class={class} x={:.1} y={:.1} width={:.1} height={bh:.1}></rect></g>",
                x + 0.5,
                H - bh,
                bw - 1.0
            );
        }
        // Every other bucket bound, plus the last.
        if i % 2 == 0 || i + 1 == n {
            let label = if le.is_finite() {
                fmt(le)
            } else {
                "+Inf".into()
            };
            let _ = write!(
                out,
                "<text class=lbl x={:.1} y={} text-anchor=middle>{label}</text>",
                x + bw / 2.0,
                H + 12.0
            );
        }
        lower = le;
    }
    for (value, label) in markers {
        if let Some(x) = position(&h.buckets, *value, bw) {
            let _ = write!(
                out,
                "<g class=marker><title>{label}: {}</title><line x1={x:.1} x2={x:.1} y1=0 y2={H}></line>\
                 <text x={:.1} y=9 text-anchor=end>{label} {}</text></g>",
                fmt(*value),
                x - 2.0,
                fmt(*value)
            );
        }
    }
    out.push_str("</svg></figure>");
}

/// Where `value` falls on a bucket axis (log-interpolated inside its bucket).
fn position(buckets: &[(f64, u64)], value: f64, bw: f64) -> Option<f64> {
    let mut lower = 0.0f64;
    for (i, &(le, _)) in buckets.iter().enumerate() {
        if !le.is_finite() {
            return None;
        }
        if value <= le {
            let frac = if lower <= 0.0 {
                value / le
            } else {
                (value / lower).ln() / (le / lower).ln()
            };
            return Some((i as f64 + frac.clamp(0.0, 1.0)) * bw);
        }
        lower = le;
    }
    None
}

fn evidence(out: &mut String, r: &FailureRecord) {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&r.evidence) else {
        return;
    };
    out.push_str("<dl class=evidence>");
    for (k, v) in &map {
        let text = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) if s.is_empty() => continue,
            serde_json::Value::Array(a) if a.is_empty() => continue,
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join("; "),
            serde_json::Value::Object(o) => o
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    format!("{k}={v}")
                })
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&text));
    }
    out.push_str("</dl>");
}

/// `HH:MM:SS` (UTC) of Unix milliseconds.
fn clock(unix_ms: u64) -> String {
    let s = unix_ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn fmt_uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86_400, s / 3600 % 24),
    }
}

/// Seconds as `250µs`, `2.5ms`, `1s`.
pub(crate) fn fmt_secs(v: f64) -> String {
    if v < 0.001 {
        format!("{}µs", trim(v * 1e6))
    } else if v < 1.0 {
        format!("{}ms", trim(v * 1e3))
    } else {
        format!("{}s", trim(v))
    }
}

/// Bytes as `512B`, `4K`, `1M` (binary units).
pub(crate) fn fmt_bytes(v: f64) -> String {
    if v < 1024.0 {
        format!("{}B", trim(v))
    } else if v < 1024.0 * 1024.0 {
        format!("{}K", trim(v / 1024.0))
    } else {
        format!("{}M", trim(v / 1024.0 / 1024.0))
    }
}

/// At most one decimal for small values, none for large ones, no trailing `.0`.
fn trim(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(fmt_secs(0.0001), "100µs");
        assert_eq!(fmt_secs(0.00025), "250µs");
        assert_eq!(fmt_secs(0.0025), "2.5ms");
        assert_eq!(fmt_secs(60.0), "60s");
        assert_eq!(fmt_bytes(256.0), "256B");
        assert_eq!(fmt_bytes(4096.0), "4K");
        assert_eq!(fmt_bytes(1048576.0), "1M");
        assert_eq!(clock(3_723_000), "01:02:03");
    }

    #[test]
    fn markers_sit_inside_their_bucket() {
        let b = [(1024.0, 0), (4096.0, 0), (8192.0, 0), (f64::INFINITY, 0)];
        assert_eq!(position(&b, 4096.0, 10.0), Some(20.0));
        assert_eq!(position(&b, 512.0, 10.0), Some(5.0));
        assert!(position(&b, 1e9, 10.0).is_none());
    }
}
