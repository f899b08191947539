//! One reading of the metrics registry, in the shape the status page draws.

use handoff_diag::metrics::{
    CLIENT_ABORTS, CONNECTION_REUSES, CONNECT_DURATION, FAILURES, HEADER_BYTES, HEADER_DURATION,
    HEADER_OVER_NGINX_BUFFER, IN_FLIGHT, REQUESTS, RESPONSE_DURATION,
};
use handoff_diag::{Metrics, Reason};
use pingora_prometheus::prometheus::proto::{Metric, MetricFamily};

/// `status_class` label values, in the order of [`UpstreamSnapshot::requests`].
pub(crate) const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// Every upstream's counters at one instant.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// In the order the names were asked for.
    pub(crate) upstreams: Vec<UpstreamSnapshot>,
}

/// One upstream's series.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpstreamSnapshot {
    /// The `upstream` label.
    pub(crate) name: String,
    /// Requests by status class, indexed like [`STATUS_CLASSES`].
    pub(crate) requests: [u64; 6],
    /// Final failures, indexed by [`Reason::index`].
    pub(crate) failures: Vec<u64>,
    /// Requests in flight now.
    pub(crate) in_flight: i64,
    /// Requests sent on a pooled connection.
    pub(crate) reuses: u64,
    /// Requests nginx abandoned.
    pub(crate) client_aborts: u64,
    /// Response headers larger than `nginx_buffer_bytes`.
    pub(crate) over_nginx_buffer: u64,
    /// `handoff_upstream_connect_duration_seconds`.
    pub(crate) connect: Histogram,
    /// `handoff_upstream_header_duration_seconds`.
    pub(crate) header: Histogram,
    /// `handoff_upstream_response_duration_seconds`.
    pub(crate) response: Histogram,
    /// `handoff_upstream_response_header_bytes`.
    pub(crate) header_bytes: Histogram,
}

/// A Prometheus histogram: cumulative counts per upper bound (the last is `+Inf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Histogram {
    /// `(le, cumulative count)`, ascending, ending with `+Inf`.
    pub(crate) buckets: Vec<(f64, u64)>,
    /// Observations.
    pub(crate) count: u64,
    /// Sum of the observations.
    pub(crate) sum: f64,
}

// === impl Snapshot ===

impl Snapshot {
    /// Reads `metrics` for the upstreams `names`.
    pub(crate) fn read(metrics: &Metrics, names: &[&str]) -> Snapshot {
        let families = metrics.registry().gather();
        let upstreams = names
            .iter()
            .map(|&name| UpstreamSnapshot::read(&families, name))
            .collect();
        Snapshot { upstreams }
    }
}

impl UpstreamSnapshot {
    fn read(families: &[MetricFamily], name: &str) -> UpstreamSnapshot {
        let mut up = UpstreamSnapshot {
            name: name.to_owned(),
            failures: vec![0; Reason::ALL.len()],
            ..UpstreamSnapshot::default()
        };
        for family in families {
            let series = family
                .get_metric()
                .iter()
                .filter(|m| label(m, "upstream") == Some(name));
            for m in series {
                match family.name() {
                    REQUESTS => {
                        if let Some(i) = label(m, "status_class")
                            .and_then(|c| STATUS_CLASSES.iter().position(|s| *s == c))
                        {
                            up.requests[i] = counter(m);
                        }
                    }
                    FAILURES => {
                        if let Some(r) = label(m, "reason").and_then(Reason::from_label) {
                            up.failures[r.index()] = counter(m);
                        }
                    }
                    IN_FLIGHT => up.in_flight = m.get_gauge().value() as i64,
                    CONNECTION_REUSES => up.reuses = counter(m),
                    CLIENT_ABORTS => up.client_aborts = counter(m),
                    HEADER_OVER_NGINX_BUFFER => up.over_nginx_buffer = counter(m),
                    CONNECT_DURATION => up.connect = Histogram::of(m),
                    HEADER_DURATION => up.header = Histogram::of(m),
                    RESPONSE_DURATION => up.response = Histogram::of(m),
                    HEADER_BYTES => up.header_bytes = Histogram::of(m),
                    _ => {}
                }
            }
        }
        up
    }

    /// Requests that ended, every status class.
    pub(crate) fn requests_total(&self) -> u64 {
        self.requests.iter().sum()
    }

    /// Failed handoffs, every reason.
    pub(crate) fn failures_total(&self) -> u64 {
        self.failures.iter().sum()
    }
}

// === impl Histogram ===

impl Histogram {
    fn of(m: &Metric) -> Histogram {
        let h = m.get_histogram();
        let mut buckets: Vec<(f64, u64)> = h
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect();
        if buckets.last().is_none_or(|(le, _)| le.is_finite()) {
            buckets.push((f64::INFINITY, h.get_sample_count()));
        }
        Histogram {
            buckets,
            count: h.get_sample_count(),
            sum: h.get_sample_sum(),
        }
    }

    /// Observations per bucket (not cumulative), in bucket order.
    pub(crate) fn per_bucket(&self) -> Vec<u64> {
        let mut prev = 0;
        self.buckets
            .iter()
            .map(|&(_, c)| {
                let n = c.saturating_sub(prev);
                prev = c;
                n
            })
            .collect()
    }

    /// The `q` quantile, interpolated inside its bucket as PromQL's `histogram_quantile`
    /// does. `None` without observations; the largest finite bound when it falls in `+Inf`.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q * self.count as f64;
        let mut lower = (0.0, 0u64);
        for &(le, cum) in &self.buckets {
            if cum as f64 >= rank && cum > 0 {
                if !le.is_finite() {
                    return Some(lower.0);
                }
                let in_bucket = (cum - lower.1) as f64;
                let frac = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * frac.clamp(0.0, 1.0));
            }
            lower = (le, cum);
        }
        Some(lower.0)
    }
}

fn label<'a>(m: &'a Metric, name: &str) -> Option<&'a str> {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

fn counter(m: &Metric) -> u64 {
    m.get_counter().value() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(buckets: &[(f64, u64)]) -> Histogram {
        Histogram {
            buckets: buckets.to_vec(),
            count: buckets.last().map_or(0, |b| b.1),
            sum: 0.0,
        }
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let hist = h(&[(0.001, 0), (0.01, 10), (0.1, 20), (f64::INFINITY, 20)]);
        let p50 = hist.quantile(0.5).unwrap();
        assert!((p50 - 0.01).abs() < 1e-12, "{p50}");
        let p25 = hist.quantile(0.25).unwrap();
        assert!((p25 - 0.0055).abs() < 1e-9, "{p25}");
        assert_eq!(h(&[(1.0, 0), (f64::INFINITY, 0)]).quantile(0.5), None);
        // Everything above the last finite bound: that bound.
        assert_eq!(h(&[(1.0, 0), (f64::INFINITY, 4)]).quantile(0.99), Some(1.0));
        assert_eq!(hist.per_bucket(), vec![0, 10, 10, 0]);
    }

    #[test]
    fn reads_every_series_of_an_upstream() {
        let metrics = Metrics::new(&["a", "b"], "test");
        let a = metrics.upstream("a").unwrap();
        a.request_done(200);
        a.request_done(0);
        a.failure(Reason::ConnectRefused);
        a.observe_header(std::time::Duration::from_millis(3));
        let _guard = a.in_flight();
        let snap = Snapshot::read(&metrics, &["a", "b"]);
        let (sa, sb) = (&snap.upstreams[0], &snap.upstreams[1]);
        assert_eq!(sa.requests, [0, 1, 0, 0, 0, 1]);
        assert_eq!(sa.failures[Reason::ConnectRefused.index()], 1);
        assert_eq!(sa.failures_total(), 1);
        assert_eq!(sa.in_flight, 1);
        assert_eq!(sa.header.count, 1);
        assert_eq!(sa.header.buckets.len(), 19);
        assert_eq!(sb.requests_total(), 0);
    }
}
