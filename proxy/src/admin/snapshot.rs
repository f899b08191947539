//! One reading of every upstream's metrics, in config order, for the status page.
//!
//! The numbers come from the typed readers of `handoff_diag`'s handles
//! ([`UpstreamMetrics::read`](handoff_diag::UpstreamMetrics::read)), not from the
//! registry's text.

use handoff_diag::{Metrics, Reason, UpstreamReading};

/// Every upstream's series at one instant.
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
    /// Its counters, gauge and histograms.
    pub(crate) metrics: UpstreamReading,
}

// === impl Snapshot ===

impl Snapshot {
    /// Reads `metrics` for the upstreams `names`. A name without series (none in a running
    /// handoff: a reload keeps the names) reads as zeros.
    pub(crate) fn read(metrics: &Metrics, names: &[&str]) -> Snapshot {
        let upstreams = names
            .iter()
            .map(|&name| UpstreamSnapshot {
                name: name.to_owned(),
                metrics: metrics.upstream(name).map_or_else(zeros, |m| m.read()),
            })
            .collect();
        Snapshot { upstreams }
    }
}

fn zeros() -> UpstreamReading {
    UpstreamReading {
        failures: vec![0; Reason::ALL.len()],
        attempt_failures: vec![0; Reason::ALL.len()],
        ..UpstreamReading::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_series_of_an_upstream() {
        let metrics = Metrics::new(&["a", "b"], "test");
        let a = metrics.upstream("a").unwrap();
        a.request_done(200);
        a.request_done(0);
        a.failure(Reason::ConnectRefused);
        a.observe_header(std::time::Duration::from_millis(3));
        let _guard = a.in_flight();
        let snap = Snapshot::read(&metrics, &["a", "b", "gone"]);
        let (sa, sb) = (&snap.upstreams[0].metrics, &snap.upstreams[1].metrics);
        assert_eq!(sa.requests, [0, 1, 0, 0, 0, 1]);
        assert_eq!(sa.failures[Reason::ConnectRefused.index()], 1);
        assert_eq!(sa.failures_total(), 1);
        assert_eq!(sa.in_flight, 1);
        assert_eq!(sa.header.count, 1);
        assert_eq!(sa.header.buckets.len(), 19);
        assert_eq!(sb.requests_total(), 0);
        let gone = &snap.upstreams[2];
        assert_eq!(gone.name, "gone");
        assert_eq!(gone.metrics.failures.len(), Reason::ALL.len());
    }
}
