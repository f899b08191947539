//! Typed readers: what handoff's own code reads back from its metrics (the status page, the
//! SIGTERM drain), taken from the handles themselves, never by gathering the registry and
//! matching names in its text.

use super::histogram::Histogram;
use super::{Metrics, UpstreamMetrics};

/// One upstream's series at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamReading {
    /// Requests by status class, indexed like [`STATUS_CLASSES`](super::STATUS_CLASSES).
    pub requests: [u64; 6],
    /// Final failures, indexed by [`Reason::index`](crate::Reason::index).
    pub failures: Vec<u64>,
    /// Failed attempts, retries included, indexed by [`Reason::index`](crate::Reason::index).
    pub attempt_failures: Vec<u64>,
    /// Requests in flight now.
    pub in_flight: i64,
    /// Requests sent on a pooled connection.
    pub reuses: u64,
    /// Requests the client (nginx) abandoned.
    pub client_aborts: u64,
    /// Requests that failed on the client's side.
    pub client_errors: u64,
    /// Response headers larger than `nginx_buffer_bytes`.
    pub over_nginx_buffer: u64,
    /// Time to connect (new connections).
    pub connect: HistogramReading,
    /// Request start to complete response header.
    pub header: HistogramReading,
    /// Request start to last response byte.
    pub response: HistogramReading,
    /// Response header sizes.
    pub header_bytes: HistogramReading,
}

/// A histogram at one instant: cumulative counts per upper bound, the last one `+Inf`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramReading {
    /// `(le, cumulative count)`, ascending, ending with `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
}

impl Metrics {
    /// Requests in flight now, over every upstream: what the SIGTERM drain waits on.
    pub fn in_flight_total(&self) -> i64 {
        self.upstreams.iter().map(|(_, m)| m.in_flight_now()).sum()
    }
}

impl UpstreamMetrics {
    /// Every series of this upstream, now.
    pub fn read(&self) -> UpstreamReading {
        let m = &self.inner;
        UpstreamReading {
            requests: m.requests.each_ref().map(|c| c.get()),
            failures: m.failures.iter().map(|c| c.get()).collect(),
            attempt_failures: m.attempt_failures.iter().map(|c| c.get()).collect(),
            in_flight: m.in_flight.get(),
            reuses: m.reuses.get(),
            client_aborts: m.client_aborts.get(),
            client_errors: m.client_errors.get(),
            over_nginx_buffer: m.over_nginx_buffer.get(),
            connect: HistogramReading::of(&m.connect),
            header: HistogramReading::of(&m.header),
            response: HistogramReading::of(&m.response),
            header_bytes: HistogramReading::of(&m.header_bytes),
        }
    }

    /// Requests of this upstream in flight now.
    pub fn in_flight_now(&self) -> i64 {
        self.inner.in_flight.get()
    }
}

impl UpstreamReading {
    /// Requests that ended, every status class.
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().sum()
    }

    /// Failed handoffs, every reason.
    pub fn failures_total(&self) -> u64 {
        self.failures.iter().sum()
    }
}

impl HistogramReading {
    fn of(h: &Histogram) -> HistogramReading {
        let (counts, sum) = h.snapshot();
        let mut cumulative = 0;
        let bounds = h.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&counts)
            .map(|(le, n)| {
                cumulative += n;
                (le, cumulative)
            })
            .collect();
        HistogramReading {
            buckets,
            count: cumulative,
            sum: sum as f64 * h.unit,
        }
    }

    /// Observations per bucket (not cumulative), in bucket order.
    pub fn per_bucket(&self) -> Vec<u64> {
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
    pub fn quantile(&self, q: f64) -> Option<f64> {
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
