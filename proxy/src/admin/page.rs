//! The status page: server-rendered HTML with inline SVG charts, readable without
//! JavaScript; a small inline script refreshes the live part from `/status.json`.
//!
//! The markup is written with `maud`, whose `html!` templates escape every value spliced
//! into text or an attribute: a value from the configuration or the network cannot become
//! markup, whether or not its author remembered it came from there. The only unescaped
//! text is the page's own CSS and script ([`PreEscaped`]). Text that came from the network
//! also goes through [`visible`], so control characters show as `\xNN`. Numbers the tests
//! compare with `/metrics` carry `data-metric` (and `data-upstream`, `data-reason` or
//! `data-status-class`) attributes.

use std::sync::Arc;
use std::time::Duration;

use handoff_config::{Settings, UpstreamSettings};
use handoff_diag::escape::visible;
use handoff_diag::metrics::STATUS_CLASSES;
use handoff_diag::{FailureRecord, HistogramReading, Reason};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Serialize;

use super::history::{self, Point, Sample, INTERVAL, SLOTS};
use super::snapshot::{Snapshot, UpstreamSnapshot};

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

/// One histogram panel: what it shows and how its axis reads.
struct Chart<'a> {
    /// The `data-metric` prefix of its observation count.
    id: &'a str,
    title: &'a str,
    histogram: &'a HistogramReading,
    unit: fn(f64) -> String,
    /// Vertical lines: (value, label). Buckets at or above the first are drawn as warnings.
    markers: &'a [(f64, &'a str)],
}

// === impl View ===

impl View<'_> {
    /// The whole document.
    pub(crate) fn page(&self) -> String {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width,initial-scale=1";
                    title { "handoff status" }
                    // Without JavaScript the page reloads itself instead.
                    noscript { meta http-equiv="refresh" content="10"; }
                    style { (PreEscaped(CSS)) }
                }
                body {
                    header.top {
                        h1 { "handoff" }
                        nav {
                            a href="/metrics" { "/metrics" }
                            a href="/failures" { "/failures" }
                            a href="/status.json" { "/status.json" }
                        }
                        p.live-state {
                            span #live-dot .dot aria-hidden="true" {}
                            span #live-text { "updated " (clock(self.now_ms)) }
                        }
                    }
                    main #live { (self.live_markup()) }
                    footer {
                        "Counters since start come from " a href="/metrics" { "/metrics" }
                        "; rates over the last 15 minutes are sampled here every 5 s. \
                         This page refreshes every 2 s with JavaScript, every 10 s without."
                    }
                    script { (PreEscaped(JS)) }
                }
            }
        }
        .into_string()
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
                    requests_total: u.metrics.requests_total(),
                    requests: STATUS_CLASSES
                        .iter()
                        .zip(u.metrics.requests)
                        .map(|(c, n)| (*c, n))
                        .collect(),
                    failures_total: u.metrics.failures_total(),
                    failures: Reason::ALL
                        .iter()
                        .map(|r| (r.as_str(), u.metrics.failures[r.index()]))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                    in_flight: u.metrics.in_flight,
                })
                .collect(),
            html: self.live_markup().into_string(),
        };
        serde_json::to_string(&json).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The part of the page the script replaces: summary, upstreams, recent failures.
    fn live_markup(&self) -> Markup {
        let now = Sample::from_snapshot(&self.snapshot);
        let upstreams = self
            .snapshot
            .upstreams
            .iter()
            .zip(&self.settings.upstreams)
            .enumerate();
        html! {
            (self.summary())
            @for (i, (up, conf)) in upstreams {
                (upstream(i, up, conf, &history::deltas(&self.samples, &now, i)))
            }
            (self.recent_failures())
        }
    }

    fn summary(&self) -> Markup {
        let ups = &self.snapshot.upstreams;
        let requests: u64 = ups.iter().map(|u| u.metrics.requests_total()).sum();
        let failures: u64 = ups.iter().map(|u| u.metrics.failures_total()).sum();
        let in_flight: i64 = ups.iter().map(|u| u.metrics.in_flight).sum();
        let (state, class) = if self.ready {
            ("ready", "ok")
        } else {
            ("not ready", "bad")
        };
        html! {
            section.summary aria-label="summary" {
                div.tile { span.k { "status" } span.v.(class) { (state) } }
                div.tile { span.k { "version" } span.v { (env!("CARGO_PKG_VERSION")) } }
                div.tile { span.k { "up" } span.v { (fmt_uptime(self.uptime)) } }
                div.tile { span.k { "upstreams" } span.v { (ups.len()) } }
                div.tile {
                    span.k { "requests" }
                    span.v data-metric="requests_all" { (requests) }
                }
                div.tile {
                    span.k { "failed handoffs" }
                    span.v.bad[failures > 0] data-metric="failures_all" { (failures) }
                }
                div.tile {
                    span.k { "in flight" }
                    span.v data-metric="in_flight_all" { (in_flight) }
                }
            }
        }
    }

    fn recent_failures(&self) -> Markup {
        html! {
            section.card #recent {
                h2 { "Recent failures" }
                @if self.recent.is_empty() {
                    p.empty { "No failed handoffs yet." }
                } @else {
                    p.sub {
                        "newest first; the last " (self.recent.len().min(RECENT_ROWS)) " of "
                        a href="/failures" { "/failures" }
                    }
                    table.recent {
                        thead { tr {
                            th { "time (UTC)" } th { "upstream" } th { "reason" }
                            th.num { "status" } th { "what to check" }
                        } }
                        tbody {
                            @for r in self.recent.iter().take(RECENT_ROWS) { (failure_row(r)) }
                        }
                    }
                }
            }
        }
    }
}

fn failure_row(r: &FailureRecord) -> Markup {
    let key = format!("{}-{}-{}", r.unix_ms, r.upstream, r.evidence.request_id);
    let status = if r.status == 0 {
        "sent".to_owned()
    } else {
        r.status.to_string()
    };
    html! {
        tr data-failure {
            td.mono title=(r.time) { (clock(r.unix_ms)) }
            td { (visible(&r.upstream)) }
            td { span.reason { (r.reason.as_str()) } }
            td.num { (status) }
            td {
                details data-key=(visible(&key)) {
                    summary { (visible(&r.hint)) }
                    @if r.hint_detail != r.hint && !r.hint_detail.is_empty() {
                        p.detail { (visible(&r.hint_detail)) }
                    }
                    p.nginx {
                        span.k { "nginx would have logged" } " "
                        code { (visible(&r.nginx_equivalent)) }
                    }
                    (evidence(r))
                }
            }
        }
    }
}

fn upstream(
    i: usize,
    up: &UpstreamSnapshot,
    conf: &UpstreamSettings,
    deltas: &[Option<Point>],
) -> Markup {
    let name = up.name.as_str();
    let m = &up.metrics;
    let requests = m.requests_total();
    let failures = m.failures_total();
    let ratio = if requests > 0 {
        format!(
            "{:.1}% of requests",
            failures as f64 * 100.0 / requests as f64
        )
    } else {
        "no requests yet".to_owned()
    };
    let buffer = conf.nginx_buffer_bytes as f64;
    let tiles = [
        (
            "requests",
            "requests_total",
            requests.to_string(),
            "since start".to_owned(),
            false,
        ),
        (
            "failed handoffs",
            "failures_total",
            failures.to_string(),
            ratio,
            failures > 0,
        ),
        (
            "in flight",
            "in_flight",
            m.in_flight.to_string(),
            "now".to_owned(),
            false,
        ),
        (
            "reused connections",
            "reuses",
            m.reuses.to_string(),
            "keep-alive pool".to_owned(),
            false,
        ),
        (
            "client aborts",
            "client_aborts",
            m.client_aborts.to_string(),
            "nginx went away".to_owned(),
            false,
        ),
        (
            "headers over nginx buffer",
            "over_nginx_buffer",
            m.over_nginx_buffer.to_string(),
            format!("> {}", fmt_bytes(buffer)),
            m.over_nginx_buffer > 0,
        ),
    ];
    let tile = |label: &str, metric: &str, value: &str, note: &str, bad: bool| {
        html! {
            div.tile {
                span.k { (label) }
                span.v.bad[bad] data-metric=(metric) data-upstream=(name) { (value) }
                span.note { (note) }
            }
        }
    };
    // Rates over the window.
    let window_requests: u64 = deltas.iter().flatten().map(|p| p.requests).sum();
    let window_failures: u64 = deltas
        .iter()
        .flatten()
        .map(|p| p.failures.iter().sum::<u64>())
        .sum();
    let charts = [
        Chart {
            id: "connect",
            title: "Connect (new connections)",
            histogram: &m.connect,
            unit: fmt_secs,
            markers: &[],
        },
        Chart {
            id: "header",
            title: "Time to response header",
            histogram: &m.header,
            unit: fmt_secs,
            markers: &[],
        },
        Chart {
            id: "response",
            title: "Time to last byte",
            histogram: &m.response,
            unit: fmt_secs,
            markers: &[],
        },
        Chart {
            id: "header_bytes",
            title: "Response header size",
            histogram: &m.header_bytes,
            unit: fmt_bytes,
            markers: &[
                (buffer, "nginx buffer"),
                (conf.max_response_header_bytes as f64, "limit"),
            ],
        },
    ];
    html! {
        section.card id=(format!("upstream-{i}")) data-upstream=(name) {
            header.up-head {
                h2 { (name) }
                p.route { code { (conf.listen) } " → " code { (conf.address) } }
            }
            div.tiles {
                @for (label, metric, value, note, bad) in &tiles {
                    (tile(label, metric, value, note, *bad))
                }
            }
            div.row {
                figure.timeline {
                    figcaption {
                        "Requests and failures per 5 s, last 15 min "
                        span.legend { i.sw-req {} "requests " i.sw-fail {} "failed" }
                        span.note { (window_requests) " requests, " (window_failures) " failed" }
                    }
                    (timeline(deltas))
                }
                div.reasons {
                    (reasons(name, m.failures.as_slice(), deltas))
                    table.classes {
                        thead { tr {
                            th { "status class" }
                            @for class in STATUS_CLASSES {
                                th.num { (if class == "none" { "handoff" } else { class }) }
                            }
                        } }
                        tbody { tr {
                            td { "requests" }
                            @for (class, n) in STATUS_CLASSES.iter().zip(m.requests) {
                                td.num.zero[n == 0] {
                                    span data-metric="requests" data-upstream=(name)
                                        data-status-class=(class) { (n) }
                                }
                            }
                        } }
                    }
                }
            }
            div.charts {
                @for chart in &charts { (histogram(name, chart)) }
            }
        }
    }
}

/// Failures by reason: the reasons that occurred, with their count over the window and a
/// sparkline of it.
fn reasons(name: &str, failures: &[u64], deltas: &[Option<Point>]) -> Markup {
    let occurred: Vec<(Reason, u64)> = Reason::ALL
        .into_iter()
        .map(|r| (r, failures.get(r.index()).copied().unwrap_or(0)))
        .filter(|(_, total)| *total > 0)
        .collect();
    html! {
        table {
            thead { tr {
                th { "failure reason" } th.num { "total" } th.num { "15 min" }
                th { "last 15 min" }
            } }
            tbody {
                @for (reason, total) in &occurred {
                    @let per_slot: Vec<u64> = deltas
                        .iter()
                        .map(|d| d.as_ref().map_or(0, |p| p.failures[reason.index()]))
                        .collect();
                    tr {
                        td { span.reason { (reason.as_str()) } }
                        td.num {
                            span data-metric="failures" data-upstream=(name)
                                data-reason=(reason.as_str()) { (total) }
                        }
                        td.num { (per_slot.iter().sum::<u64>()) }
                        td { (sparkline(&per_slot)) }
                    }
                }
                @if occurred.is_empty() {
                    tr { td.empty colspan="4" { "no failed handoffs" } }
                }
            }
        }
    }
}

/// Requests (neutral) and failures (red) per slot, as bars.
fn timeline(deltas: &[Option<Point>]) -> Markup {
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
    let width = f1((bw - 0.6).max(0.5));
    let scale = |n: u64| (n as f64 / max as f64) * (H - TOP);
    let slot_secs = INTERVAL.as_secs();
    html! {
        svg.chart viewBox=(format!("0 0 {W} {}", H + 16.0)) preserveAspectRatio="none" role="img"
            aria-label="requests and failures per 5 seconds" {
            // Grid: the max line and the base line.
            line.grid x1="0" x2=(W) y1=(TOP) y2=(TOP) {}
            line.axis x1="0" x2=(W) y1=(H) y2=(H) {}
            text.lbl x="2" y=(TOP - 2.0) { (max) }
            @for (i, p) in deltas.iter().enumerate() {
                @if let Some(p) = p {
                    @let failed: u64 = p.failures.iter().sum();
                    @if p.requests > 0 || failed > 0 {
                        @let x = f1(i as f64 * bw);
                        @let ago = (SLOTS - 1 - i) as u64 * slot_secs;
                        @let h = scale(p.requests);
                        g {
                            title { (ago) " s ago: " (p.requests) " requests, " (failed) " failed" }
                            rect.req x=(x) y=(f1(H - h)) width=(width) height=(f1(h)) {}
                            @if failed > 0 {
                                @let fh = scale(failed).max(1.5);
                                rect.fail x=(x) y=(f1(H - fh)) width=(width) height=(f1(fh)) {}
                            }
                        }
                    }
                }
            }
            @for (x, label, anchor) in [
                (0.0, "−15 min", "start"),
                (W / 3.0, "−10", "middle"),
                (2.0 * W / 3.0, "−5", "middle"),
                (W, "now", "end"),
            ] {
                text.lbl x=(f1(x)) y=(H + 13.0) text-anchor=(anchor) { (label) }
            }
        }
    }
}

/// A small bar sparkline of one reason over the window, in 15 s bins.
fn sparkline(per_slot: &[u64]) -> Markup {
    const BINS: usize = 60;
    let per_bin = per_slot.len().div_ceil(BINS).max(1);
    let bins: Vec<u64> = per_slot.chunks(per_bin).map(|c| c.iter().sum()).collect();
    let max = bins.iter().copied().max().unwrap_or(0).max(1);
    html! {
        svg.spark viewBox=(format!("0 0 {} 16", bins.len() * 2)) preserveAspectRatio="none"
            aria-hidden="true" {
            @for (i, n) in bins.iter().enumerate().filter(|(_, n)| **n > 0) {
                @let h = (*n as f64 / max as f64 * 15.0).max(1.5);
                rect x=(i * 2) y=(f1(16.0 - h)) width="1.6" height=(f1(h)) {}
            }
        }
    }
}

/// A histogram's buckets as bars, with p50/p99 and its markers.
fn histogram(upstream: &str, chart: &Chart<'_>) -> Markup {
    const W: f64 = 340.0;
    const H: f64 = 70.0;
    const TOP: f64 = 10.0;
    let h = chart.histogram;
    let fmt = chart.unit;
    let counts = h.per_bucket();
    let n = counts.len().max(1);
    let bw = W / n as f64;
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let q = |p: f64| h.quantile(p).map_or_else(|| "–".to_owned(), fmt);
    let over = chart.markers.first().map(|m| m.0);
    // Each bucket with the bound below it.
    let lowers = std::iter::once(0.0).chain(h.buckets.iter().map(|b| b.0));
    let buckets = h.buckets.iter().zip(&counts).zip(lowers).enumerate();
    html! {
        figure.hist {
            figcaption {
                (chart.title)
                span.note {
                    span data-metric=(format!("{}_count", chart.id)) data-upstream=(upstream) {
                        (h.count)
                    }
                    " obs. · p50 " (q(0.5)) " · p99 " (q(0.99))
                }
            }
            svg.chart viewBox=(format!("0 0 {W} {}", H + 16.0)) role="img"
                aria-label=(format!("{} histogram", chart.title)) {
                line.axis x1="0" x2=(W) y1=(H) y2=(H) {}
                @for (i, ((&(le, _), &c), lower)) in buckets {
                    @let x = i as f64 * bw;
                    @if c > 0 {
                        @let bh = (c as f64 / max as f64 * (H - TOP)).max(1.5);
                        @let range = if le.is_finite() {
                            format!("{} – {}", fmt(lower), fmt(le))
                        } else {
                            format!("> {}", fmt(lower))
                        };
                        g {
                            title { (range) ": " (c) }
                            @let warn = over.is_some_and(|o| lower >= o);
                            @let class = if warn { "warn" } else { "bar" };
                            rect class=(class) x=(f1(x + 0.5)) y=(f1(H - bh))
                                width=(f1(bw - 1.0)) height=(f1(bh)) {}
                        }
                    }
                    // Every other bucket bound, plus the last.
                    @if i % 2 == 0 || i + 1 == n {
                        text.lbl x=(f1(x + bw / 2.0)) y=(H + 12.0) text-anchor="middle" {
                            (if le.is_finite() { fmt(le) } else { "+Inf".to_owned() })
                        }
                    }
                }
                @for &(value, label) in chart.markers {
                    @if let Some(x) = position(&h.buckets, value, bw) {
                        g.marker {
                            title { (label) ": " (fmt(value)) }
                            line x1=(f1(x)) x2=(f1(x)) y1="0" y2=(H) {}
                            text x=(f1(x - 2.0)) y="9" text-anchor="end" {
                                (label) " " (fmt(value))
                            }
                        }
                    }
                }
            }
        }
    }
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

/// The evidence of a failure as a definition list, in the order of its JSON form.
fn evidence(r: &FailureRecord) -> Markup {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&r.evidence) else {
        return html! {};
    };
    let rows = map.iter().filter_map(|(k, v)| {
        let text = match v {
            serde_json::Value::Null => return None,
            serde_json::Value::String(s) if s.is_empty() => return None,
            serde_json::Value::Array(a) if a.is_empty() => return None,
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
        Some((k, text))
    });
    html! {
        dl.evidence {
            @for (k, text) in rows {
                dt { (k) }
                dd { (visible(&text)) }
            }
        }
    }
}

/// One decimal: the precision of every SVG coordinate on the page.
fn f1(v: f64) -> String {
    format!("{v:.1}")
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
mod tests;
