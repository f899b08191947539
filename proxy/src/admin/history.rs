//! The status page's memory: request and failure counters sampled every few seconds for the
//! last minutes, so the page can show rates rather than only totals since start.
//!
//! A small thread samples the registry; it needs no runtime, and ends on its own once the
//! admin app (the owner of the [`History`]) is gone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::state::Shared;

use super::snapshot::Snapshot;

/// Time between two samples.
pub(crate) const INTERVAL: Duration = Duration::from_secs(5);
/// How far back the page looks.
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Samples kept: one per interval over the window, plus the baseline.
pub(crate) const SLOTS: usize = (WINDOW.as_secs() / INTERVAL.as_secs()) as usize;

/// The counters of one upstream at one sample.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    /// Requests that ended, all status classes.
    pub(crate) requests: u64,
    /// Failures by [`handoff_diag::Reason::index`].
    pub(crate) failures: Vec<u64>,
}

/// One sample of every upstream.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// In config order.
    pub(crate) upstreams: Vec<Point>,
}

/// The ring of samples.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
}

// === impl History ===

impl History {
    /// A history sampled every [`INTERVAL`] by a thread that lives as long as it does.
    pub(crate) fn start(shared: &Arc<Shared>) -> Arc<History> {
        let history = Arc::new(History::default());
        history.record(Sample::of(shared));
        let weak_history = Arc::downgrade(&history);
        let weak_shared = Arc::downgrade(shared);
        let spawned = std::thread::Builder::new()
            .name("handoff-status".into())
            .spawn(move || sample_until_dropped(weak_shared, weak_history));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "status page: no sampler thread; it shows totals only");
        }
        history
    }

    /// Adds a sample, dropping the oldest beyond the window.
    pub(crate) fn record(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.push_back(sample);
        while samples.len() > SLOTS + 1 {
            samples.pop_front();
        }
    }

    /// Every sample kept, oldest first.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

impl Sample {
    /// The counters now.
    pub(crate) fn of(shared: &Shared) -> Sample {
        let settings = shared.settings.load();
        let names: Vec<&str> = settings.upstreams.iter().map(|u| u.name.as_str()).collect();
        Sample::from_snapshot(&Snapshot::read(&shared.metrics, &names))
    }

    /// The counters of `snapshot`.
    pub(crate) fn from_snapshot(snapshot: &Snapshot) -> Sample {
        Sample {
            upstreams: snapshot
                .upstreams
                .iter()
                .map(|u| Point {
                    requests: u.metrics.requests_total(),
                    failures: u.metrics.failures.clone(),
                })
                .collect(),
        }
    }
}

/// Per-interval increases of upstream `i` over the window, oldest first, the last being the
/// interval still running (from the newest sample to `now`). Slots before the first
/// sample are `None`. Always [`SLOTS`] long.
pub(crate) fn deltas(samples: &[Sample], now: &Sample, i: usize) -> Vec<Option<Point>> {
    let mut out: Vec<Option<Point>> = Vec::with_capacity(SLOTS);
    let series: Vec<&Sample> = samples.iter().chain(std::iter::once(now)).collect();
    for pair in series.windows(2) {
        let (Some(a), Some(b)) = (pair[0].upstreams.get(i), pair[1].upstreams.get(i)) else {
            out.push(None);
            continue;
        };
        out.push(Some(Point {
            requests: b.requests.saturating_sub(a.requests),
            failures: b
                .failures
                .iter()
                .zip(&a.failures)
                .map(|(b, a)| b.saturating_sub(*a))
                .collect(),
        }));
    }
    // The running interval replaces nothing: keep the newest SLOTS.
    let skip = out.len().saturating_sub(SLOTS);
    let mut out: Vec<Option<Point>> = out.into_iter().skip(skip).collect();
    while out.len() < SLOTS {
        out.insert(0, None);
    }
    out
}

fn sample_until_dropped(shared: Weak<Shared>, history: Weak<History>) {
    let step = Duration::from_millis(250);
    let mut waited = Duration::ZERO;
    loop {
        std::thread::sleep(step);
        waited += step;
        let (Some(shared), Some(history)) = (shared.upgrade(), history.upgrade()) else {
            return;
        };
        if waited >= INTERVAL {
            waited = Duration::ZERO;
            history.record(Sample::of(&shared));
        }
    }
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(_ms: u64, requests: u64, refused: u64) -> Sample {
        Sample {
            upstreams: vec![Point {
                requests,
                failures: vec![refused, 0],
            }],
        }
    }

    #[test]
    fn deltas_are_per_interval_and_padded() {
        let samples = vec![sample(0, 0, 0), sample(5000, 10, 2)];
        let d = deltas(&samples, &sample(7000, 13, 5), 0);
        assert_eq!(d.len(), SLOTS);
        let last = d[SLOTS - 1].as_ref().unwrap();
        assert_eq!((last.requests, last.failures[0]), (3, 3));
        let prev = d[SLOTS - 2].as_ref().unwrap();
        assert_eq!((prev.requests, prev.failures[0]), (10, 2));
        assert!(d[SLOTS - 3].is_none());
    }

    #[test]
    fn the_ring_keeps_the_window() {
        let h = History::default();
        for i in 0..(SLOTS as u64 + 50) {
            h.record(sample(i * 5000, i, 0));
        }
        let s = h.samples();
        assert_eq!(s.len(), SLOTS + 1);
        let d = deltas(&s, &sample(u64::MAX, 10_000, 0), 0);
        assert_eq!(d.len(), SLOTS);
        assert!(d.iter().all(Option::is_some));
    }
}
