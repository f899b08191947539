//! handoff's Prometheus metrics: every name, help string and bucket lives here.
//!
//! Families (names are contract, see `DESIGN.md`):
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `handoff_upstream_requests_total` | counter | `upstream`, `status_class` (`1xx`..`5xx`, `none`) |
//! | `handoff_upstream_failures_total` | counter | `upstream`, `reason` |
//! | `handoff_upstream_attempt_failures_total` | counter | `upstream`, `reason` (extension) |
//! | `handoff_upstream_connect_duration_seconds` | histogram | `upstream` |
//! | `handoff_upstream_header_duration_seconds` | histogram | `upstream` |
//! | `handoff_upstream_response_duration_seconds` | histogram | `upstream` |
//! | `handoff_upstream_response_header_bytes` | histogram | `upstream` |
//! | `handoff_upstream_header_over_nginx_buffer_total` | counter | `upstream` (extension) |
//! | `handoff_upstream_requests_in_flight` | gauge | `upstream` |
//! | `handoff_upstream_connection_reuses_total` | counter | `upstream` |
//! | `handoff_client_aborts_total` | counter | `upstream` |
//! | `handoff_client_errors_total` | counter | `upstream` | (extension)
//! | `handoff_config_reloads_total` | counter | `result` (`success`, `failure`) (extension) |
//! | `handoff_build_info` | gauge (1) | `version` |
//!
//! Labels come from bounded sets only: upstream names from the config, reasons from
//! [`Reason::ALL`], fixed status classes. Every series is registered at start-up, so a
//! dashboard shows zeros rather than gaps, and the request path only touches pre-resolved
//! handles: no label lookup, no allocation, no formatting.
//!
//! What handoff reads back itself (the status page, the SIGTERM drain) comes from the same
//! handles, typed: [`UpstreamMetrics::read`] and [`Metrics::in_flight_total`] (module
//! `reading`), never from the registry's text.

use std::sync::Arc;
use std::time::Duration;

use pingora_prometheus::prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::reason::Reason;

mod histogram;
mod reading;

use histogram::{Histogram, HistogramFamily};

pub use reading::{HistogramReading, UpstreamReading};

/// Every metric family handoff exports (for doc and dashboard tests).
pub const METRIC_NAMES: &[&str] = &[
    REQUESTS,
    FAILURES,
    ATTEMPT_FAILURES,
    CONNECT_DURATION,
    HEADER_DURATION,
    RESPONSE_DURATION,
    HEADER_BYTES,
    HEADER_OVER_NGINX_BUFFER,
    IN_FLIGHT,
    CONNECTION_REUSES,
    CLIENT_ABORTS,
    CLIENT_ERRORS,
    CONFIG_RELOADS,
    BUILD_INFO,
];

/// Requests by upstream and status class; `none` when handoff answered itself.
pub const REQUESTS: &str = "handoff_upstream_requests_total";
/// Final failures of requests, by reason.
pub const FAILURES: &str = "handoff_upstream_failures_total";
/// Extension: every failed attempt, including ones a retry recovered. The difference to
/// `FAILURES` is what retries saved; a rising count here with flat failures is the
/// keep-alive race being retried away.
pub const ATTEMPT_FAILURES: &str = "handoff_upstream_attempt_failures_total";
/// Time to connect to the upstream (new connections only).
pub const CONNECT_DURATION: &str = "handoff_upstream_connect_duration_seconds";
/// Request start to complete response header.
pub const HEADER_DURATION: &str = "handoff_upstream_header_duration_seconds";
/// Request start to last response byte.
pub const RESPONSE_DURATION: &str = "handoff_upstream_response_duration_seconds";
/// Size of the upstream's response header.
pub const HEADER_BYTES: &str = "handoff_upstream_response_header_bytes";
/// Extension: responses whose header would not fit nginx's `proxy_buffer_size`
/// (`nginx_buffer_bytes`): nginx would answer "upstream sent too big header".
pub const HEADER_OVER_NGINX_BUFFER: &str = "handoff_upstream_header_over_nginx_buffer_total";
/// Requests being proxied now.
pub const IN_FLIGHT: &str = "handoff_upstream_requests_in_flight";
/// Requests served on a pooled keep-alive connection.
pub const CONNECTION_REUSES: &str = "handoff_upstream_connection_reuses_total";
/// Requests the client (nginx) abandoned.
pub const CLIENT_ABORTS: &str = "handoff_client_aborts_total";
/// Extension: requests that failed because of the client's side (e.g. a request body cut
/// short) and reached handoff's hooks; never upstream failures. Requests pingora rejects
/// while parsing (a malformed request line) are answered 400 before handoff sees them.
pub const CLIENT_ERRORS: &str = "handoff_client_errors_total";
/// Extension: configuration reloads by result.
pub const CONFIG_RELOADS: &str = "handoff_config_reloads_total";
/// Always 1; the `version` label carries the build.
pub const BUILD_INFO: &str = "handoff_build_info";

/// Seconds buckets for all duration histograms. The low end reaches 100 µs because a
/// loopback or unix-socket connect takes 50-300 µs and a fast app answers in under a
/// millisecond; the high end is 60 s, the longest timeout that makes sense behind nginx
/// (its `proxy_read_timeout` defaults to 60 s). Roughly 1-2.5-5 steps keep the series
/// count at 18 per upstream and histogram.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Response-header size buckets. 4096 and 8192 are nginx's `proxy_buffer_size` defaults
/// (one memory page), so the buckets show how close headers come to that limit;
/// 65536 is handoff's default `max_response_header_bytes`; 1 MiB is pingora's hard cap.
pub const HEADER_BYTES_BUCKETS: &[f64] = &[
    256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0, 131072.0, 262144.0,
    1048576.0,
];

/// `status_class` label values, in the order of [`UpstreamReading::requests`].
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// handoff's metrics, in a registry of their own (not the process-global default), so
/// several servers can run in one test process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    upstreams: Vec<(Arc<str>, UpstreamMetrics)>,
    reloads_success: IntCounter,
    reloads_failure: IntCounter,
}

/// Pre-resolved handles for one upstream; cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    inner: Arc<UpstreamInner>,
}

#[derive(Debug)]
struct UpstreamInner {
    requests: [IntCounter; 6],
    failures: Vec<IntCounter>,
    attempt_failures: Vec<IntCounter>,
    client_aborts: IntCounter,
    client_errors: IntCounter,
    reuses: IntCounter,
    connect: Arc<Histogram>,
    header: Arc<Histogram>,
    response: Arc<Histogram>,
    header_bytes: Arc<Histogram>,
    over_nginx_buffer: IntCounter,
    in_flight: IntGauge,
}

/// Decrements the in-flight gauge when dropped.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard lives"]
pub struct InFlightGuard {
    gauge: IntGauge,
}

impl Metrics {
    /// Registers every family and pre-registers every series for `upstreams` at zero.
    pub fn new(upstreams: &[&str], version: &str) -> Metrics {
        let registry = Registry::new();
        let up = &["upstream"];
        let requests = counter_vec(&registry, REQUESTS, "Requests proxied to the upstream, by status class of the response sent (none: handoff answered itself).", &["upstream", "status_class"]);
        let failures = counter_vec(
            &registry,
            FAILURES,
            "Requests that failed to be handed off to the upstream, by reason.",
            &["upstream", "reason"],
        );
        let attempts = counter_vec(&registry, ATTEMPT_FAILURES, "Failed attempts to hand a request off, by reason, including attempts a retry recovered.", &["upstream", "reason"]);
        let seconds =
            |name, help| histogram_family(&registry, name, help, SECONDS_BUCKETS, NANOS, upstreams);
        let connect = seconds(
            CONNECT_DURATION,
            "Time to open a new connection to the upstream, in seconds.",
        );
        let header = seconds(
            HEADER_DURATION,
            "Time from request start to the complete response header, in seconds.",
        );
        let response = seconds(
            RESPONSE_DURATION,
            "Time from request start to the last response byte, in seconds.",
        );
        let header_bytes = histogram_family(
            &registry,
            HEADER_BYTES,
            "Size of the upstream's response header, in bytes.",
            HEADER_BYTES_BUCKETS,
            1.0,
            upstreams,
        );
        let over = counter_vec(
            &registry,
            HEADER_OVER_NGINX_BUFFER,
            "Responses whose header is larger than nginx's proxy_buffer_size (nginx_buffer_bytes).",
            up,
        );
        let in_flight = gauge_vec(
            &registry,
            IN_FLIGHT,
            "Requests being proxied to the upstream now.",
            up,
        );
        let reuses = counter_vec(
            &registry,
            CONNECTION_REUSES,
            "Requests sent on a pooled keep-alive connection.",
            up,
        );
        let aborts = counter_vec(
            &registry,
            CLIENT_ABORTS,
            "Requests the client (nginx) abandoned before the response was complete.",
            up,
        );
        let client_errors = counter_vec(
            &registry,
            CLIENT_ERRORS,
            "Requests that failed on the client's side (malformed, a header too slow, a bad body); not upstream failures.",
            up,
        );
        let reloads = counter_vec(
            &registry,
            CONFIG_RELOADS,
            "Configuration reloads, by result.",
            &["result"],
        );
        let build = gauge_vec(
            &registry,
            BUILD_INFO,
            "Always 1; the version label names the build.",
            &["version"],
        );
        build.with_label_values(&[version]).set(1);

        let upstreams = upstreams
            .iter()
            .map(|&name| {
                let per_reason = |vec: &IntCounterVec| {
                    Reason::ALL
                        .iter()
                        .map(|r| vec.with_label_values(&[name, r.as_str()]))
                        .collect()
                };
                let inner = UpstreamInner {
                    requests: STATUS_CLASSES.map(|c| requests.with_label_values(&[name, c])),
                    failures: per_reason(&failures),
                    attempt_failures: per_reason(&attempts),
                    client_aborts: aborts.with_label_values(&[name]),
                    client_errors: client_errors.with_label_values(&[name]),
                    reuses: reuses.with_label_values(&[name]),
                    connect: connect.series(name).expect("a series per upstream"),
                    header: header.series(name).expect("a series per upstream"),
                    response: response.series(name).expect("a series per upstream"),
                    header_bytes: header_bytes.series(name).expect("a series per upstream"),
                    over_nginx_buffer: over.with_label_values(&[name]),
                    in_flight: in_flight.with_label_values(&[name]),
                };
                (
                    Arc::from(name),
                    UpstreamMetrics {
                        inner: Arc::new(inner),
                    },
                )
            })
            .collect();
        Metrics {
            reloads_success: reloads.with_label_values(&["success"]),
            reloads_failure: reloads.with_label_values(&["failure"]),
            registry,
            upstreams,
        }
    }

    /// The handles of a configured upstream; `None` for an unknown name.
    pub fn upstream(&self, name: &str) -> Option<UpstreamMetrics> {
        self.upstreams
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, m)| m.clone())
    }

    /// Everything in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The registry, for serving or for adding more collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts a configuration reload.
    pub fn record_reload(&self, ok: bool) {
        if ok {
            &self.reloads_success
        } else {
            &self.reloads_failure
        }
        .inc();
    }
}

impl UpstreamMetrics {
    /// Counts a finished request by the status class sent; 0 means handoff answered itself.
    pub fn request_done(&self, status: u16) {
        self.inner.requests[status_class_index(status)].inc();
    }

    /// Counts the final failure of a request.
    pub fn failure(&self, reason: Reason) {
        self.inner.failures[reason.index()].inc();
    }

    /// Counts a failed attempt, including attempts a retry recovered.
    pub fn attempt_failure(&self, reason: Reason) {
        self.inner.attempt_failures[reason.index()].inc();
    }

    /// Counts a request the client (nginx) abandoned.
    pub fn client_abort(&self) {
        self.inner.client_aborts.inc();
    }

    /// Counts a request that failed on the client's side.
    pub fn client_error(&self) {
        self.inner.client_errors.inc();
    }

    /// Counts a request sent on a pooled connection.
    pub fn connection_reused(&self) {
        self.inner.reuses.inc();
    }

    /// Records the time to open a new connection.
    pub fn observe_connect(&self, d: Duration) {
        self.inner.connect.observe(nanos(d));
    }

    /// Records request start to complete response header.
    pub fn observe_header(&self, d: Duration) {
        self.inner.header.observe(nanos(d));
    }

    /// Records request start to last response byte.
    pub fn observe_response(&self, d: Duration) {
        self.inner.response.observe(nanos(d));
    }

    /// Records the response header size.
    pub fn observe_header_bytes(&self, n: usize) {
        self.inner.header_bytes.observe(n as u64);
    }

    /// Counts a response header larger than `nginx_buffer_bytes`.
    pub fn header_over_nginx_buffer(&self) {
        self.inner.over_nginx_buffer.inc();
    }

    /// Counts a request as in flight, until [`leave`](Self::leave). For a caller that
    /// holds the upstream's handles anyway: the guard of [`in_flight`](Self::in_flight)
    /// costs a handle of its own.
    pub fn enter(&self) {
        self.inner.in_flight.inc();
    }

    /// Ends what [`enter`](Self::enter) began.
    pub fn leave(&self) {
        self.inner.in_flight.dec();
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlightGuard {
        self.inner.in_flight.inc();
        InFlightGuard {
            gauge: self.inner.in_flight.clone(),
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Index into [`STATUS_CLASSES`]: 1xx..5xx, anything else (0: handoff answered) `none`.
const fn status_class_index(status: u16) -> usize {
    match status {
        100..=599 => (status / 100 - 1) as usize,
        _ => 5,
    }
}

// Registration only fails for invalid names or duplicates, both fixed at compile time
// here: a panic means a bug in this module, caught by its tests.
fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition");
    r.register(Box::new(v.clone()))
        .expect("counter registered once");
    v
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge definition");
    r.register(Box::new(v.clone()))
        .expect("gauge registered once");
    v
}

fn histogram_family(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &'static [f64],
    unit: f64,
    upstreams: &[&str],
) -> Arc<HistogramFamily> {
    let family = Arc::new(HistogramFamily::new(name, help, buckets, unit, upstreams));
    r.register(Box::new(SharedFamily(family.clone())))
        .expect("histogram registered once");
    family
}

/// The registry owns its collectors; the family is shared with the handles made from it.
#[derive(Debug)]
struct SharedFamily(Arc<HistogramFamily>);

impl pingora_prometheus::prometheus::core::Collector for SharedFamily {
    fn desc(&self) -> Vec<&pingora_prometheus::prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<pingora_prometheus::prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

/// Durations are observed in nanoseconds (as integers), exported in seconds.
const NANOS: f64 = 1e-9;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
