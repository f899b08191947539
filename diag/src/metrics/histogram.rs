//! The histograms of the success path, cheaper than the client library's.
//!
//! `prometheus::Histogram::observe` costs four atomic read-modify-writes (a hot/cold shard
//! switch so that a scrape never sees a half-counted observation, the bucket, a float sum
//! by compare-and-swap, the count), three times per request. Here an observation is the
//! same search of the buckets, over integer bounds, and two relaxed additions (the bucket,
//! an integer sum in nanoseconds or bytes): half the atomic operations, no float
//! compare-and-swap loop. The count is
//! the sum of the buckets when a scrape reads them, so `+Inf` always equals `_count`. A
//! scrape concurrent with an observation may see its bucket without its sum, or the other
//! way round: a difference of one observation, gone by the next scrape.
//!
//! A [`HistogramFamily`] is a `prometheus` collector: the registry exports it in the same
//! text format, under the same name, labels and bucket bounds as before.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use pingora_prometheus::prometheus::core::{Collector, Desc};
use pingora_prometheus::prometheus::proto;

/// One histogram series.
#[derive(Debug)]
pub(crate) struct Histogram {
    /// Upper bounds as exported (seconds, bytes), ascending.
    pub(crate) bounds: &'static [f64],
    /// Exported units per unit observed: `1e-9` for durations observed in nanoseconds.
    pub(crate) unit: f64,
    /// Upper bounds in the unit observed (nanoseconds, bytes).
    limits: Box<[u64]>,
    /// Observations per bucket; the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of the observations, in the unit observed.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64], unit: f64) -> Histogram {
        Histogram {
            bounds,
            unit,
            limits: bounds.iter().map(|b| (b / unit).round() as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Records `v`, in the unit the family was made with.
    #[inline]
    pub(crate) fn observe(&self, v: u64) {
        // Linear, like the client library: the common observation (a sub-millisecond
        // answer, a header of a few hundred bytes) sits in the first buckets.
        let i = self
            .limits
            .iter()
            .position(|&limit| v <= limit)
            .unwrap_or(self.limits.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
    }

    /// Observations per bucket (not cumulative), `+Inf` last, and the sum.
    pub(crate) fn snapshot(&self) -> (Vec<u64>, u64) {
        let counts = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        (counts, self.sum.load(Relaxed))
    }
}

/// A histogram family with one `upstream` label: the collector the registry exports.
#[derive(Debug)]
pub(crate) struct HistogramFamily {
    desc: Desc,
    series: Vec<(String, Arc<Histogram>)>,
}

impl HistogramFamily {
    /// A family `name` with `bounds` (in seconds or bytes), observed in units of `unit`,
    /// with one series per upstream.
    pub(crate) fn new(
        name: &str,
        help: &str,
        bounds: &'static [f64],
        unit: f64,
        upstreams: &[&str],
    ) -> HistogramFamily {
        let desc = Desc::new(
            name.to_owned(),
            help.to_owned(),
            vec!["upstream".to_owned()],
            Default::default(),
        )
        .expect("a valid histogram definition");
        HistogramFamily {
            desc,
            series: upstreams
                .iter()
                .map(|u| ((*u).to_owned(), Arc::new(Histogram::new(bounds, unit))))
                .collect(),
        }
    }

    /// The series of `upstream`.
    pub(crate) fn series(&self, upstream: &str) -> Option<Arc<Histogram>> {
        self.series
            .iter()
            .find(|(u, _)| u == upstream)
            .map(|(_, h)| h.clone())
    }
}

impl Collector for HistogramFamily {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let mut family = proto::MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(proto::MetricType::HISTOGRAM);
        for (upstream, h) in &self.series {
            let (counts, sum) = h.snapshot();
            let mut histogram = proto::Histogram::default();
            let mut cumulative = 0;
            let mut buckets = Vec::with_capacity(h.bounds.len());
            for (bound, count) in h.bounds.iter().zip(&counts) {
                cumulative += count;
                let mut b = proto::Bucket::default();
                b.set_cumulative_count(cumulative);
                b.set_upper_bound(*bound);
                buckets.push(b);
            }
            histogram.set_bucket(buckets);
            histogram.set_sample_count(counts.iter().sum());
            histogram.set_sample_sum(sum as f64 * h.unit);
            let mut label = proto::LabelPair::default();
            label.set_name("upstream".to_owned());
            label.set_value(upstream.clone());
            let mut metric = proto::Metric::default();
            metric.set_label(vec![label]);
            metric.set_histogram(histogram);
            family.mut_metric().push(metric);
        }
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        const BOUNDS: &[f64] = &[0.001, 0.01, 1.0];
        let h = Histogram::new(BOUNDS, 1e-9);
        h.observe(1_000_000); // exactly 1 ms: the 1 ms bucket (le is inclusive)
        h.observe(1_000_001);
        h.observe(5_000_000_000); // 5 s: +Inf
        h.observe(0);
        let (counts, sum) = h.snapshot();
        assert_eq!(counts, vec![2, 1, 0, 1]);
        assert_eq!(sum, 5_002_000_001);
    }
}
