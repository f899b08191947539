//! Probes off the event loop: a small pool of worker threads, a deadline per failure, and a
//! cache, so that a failure storm costs one look per second per question and never stalls
//! the threads that serve requests.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use handoff_diag::Failure;
use tokio::sync::watch;

use crate::findings::{find, Question, Sink};

/// How the prober is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProberConfig {
    /// How long a failure waits for its findings before it answers with what is known.
    pub deadline: Duration,
    /// How long a probe's findings answer the same question again.
    pub cache_for: Duration,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Questions waiting for a worker, at most; beyond that a failure gets no findings.
    pub queue: usize,
}

/// The on-the-spot prober. Cheap to clone (one `Arc`); the workers stop when the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

/// What the prober has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProberStats {
    /// Probes run to the end.
    pub probes: u64,
    /// Failures answered before their probe finished (the deadline passed).
    pub cut_short: u64,
    /// Failures that found the queue full and got no findings.
    pub busy: u64,
    /// The longest probe.
    pub longest: Duration,
}

#[derive(Debug)]
struct Inner {
    config: ProberConfig,
    jobs: SyncSender<Job>,
    entries: Mutex<HashMap<Question, Entry>>,
    stats: Arc<Counters>,
}

#[derive(Debug)]
struct Entry {
    started: Instant,
    progress: watch::Receiver<Progress>,
}

#[derive(Debug, Clone, Default)]
struct Progress {
    findings: Vec<String>,
    done: bool,
}

#[derive(Debug)]
struct Job {
    question: Question,
    progress: watch::Sender<Progress>,
}

#[derive(Debug, Default)]
struct Counters {
    probes: AtomicU64,
    cut_short: AtomicU64,
    busy: AtomicU64,
    longest_us: AtomicU64,
}

/// What a worker runs for a question: [`find`], except in the prober's own tests.
type Finder = dyn Fn(&Question, &mut dyn Sink) + Send + Sync;

/// Publishes each finding as it is made, for a failure whose deadline passes mid-probe.
struct Publish<'a>(&'a watch::Sender<Progress>);

// === impl ProberConfig ===

impl Default for ProberConfig {
    /// 250 ms, 1 s, 2 workers, 32 queued. A probe is microseconds of netlink and a few
    /// `stat`s; only the walk of `/proc` for a socket's process takes longer, and it has a
    /// budget of its own (150 ms).
    fn default() -> Self {
        ProberConfig {
            deadline: Duration::from_millis(250),
            cache_for: Duration::from_secs(1),
            workers: 2,
            queue: 32,
        }
    }
}

// === impl Prober ===

impl Prober {
    /// Starts the worker threads (`handoff-probe`).
    pub fn new(config: ProberConfig) -> Prober {
        Prober::with_finder(config, Arc::new(find))
    }

    /// A prober whose workers answer with `finder` (the tests' controlled probe).
    fn with_finder(config: ProberConfig, finder: Arc<Finder>) -> Prober {
        crate::process::keep_own_limits_open();
        let (jobs, queue) = sync_channel(config.queue.max(1));
        let queue = Arc::new(Mutex::new(queue));
        let stats = Arc::new(Counters::default());
        for _ in 0..config.workers.max(1) {
            let (queue, stats, finder) = (queue.clone(), stats.clone(), finder.clone());
            let spawned = std::thread::Builder::new()
                .name("handoff-probe".into())
                .spawn(move || work(&queue, &stats, &*finder));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start a probe worker");
            }
        }
        Prober {
            inner: Arc::new(Inner {
                config,
                jobs,
                entries: Mutex::new(HashMap::new()),
                stats,
            }),
        }
    }

    /// Adds what the host says about `failure` to its findings, waiting at most the
    /// configured deadline. The probe itself runs on a worker thread; a failure whose
    /// deadline passes answers with the findings made so far, and the probe goes on to
    /// serve the next failure from the cache.
    pub async fn investigate(&self, failure: &mut Failure) {
        let ev = &failure.evidence;
        let question = Question {
            reason: failure.reason,
            next_hop: ev.next_hop.to_string(),
            errno: ev.errno.map(|e| e.code),
            reused: ev.reused,
        };
        if !question.wants_probe() {
            return;
        }
        let Some(mut progress) = self.subscribe(question) else {
            return;
        };
        let deadline = self.inner.config.deadline;
        let done = match tokio::time::timeout(deadline, progress.wait_for(|p| p.done)).await {
            Ok(Ok(done)) => Some(done.findings.clone()),
            _ => None,
        };
        let findings = done.unwrap_or_else(|| {
            self.inner.stats.cut_short.fetch_add(1, Ordering::Relaxed);
            let mut so_far = progress.borrow().findings.clone();
            so_far.push(format!(
                "(more host checks were still running after {} ms)",
                deadline.as_millis()
            ));
            so_far
        });
        failure.evidence.findings.extend(findings);
    }

    /// The findings for `question` now, on the calling thread (for `handoff doctor` and
    /// tests; never on an event loop).
    pub fn probe_now(question: &Question) -> Vec<String> {
        let mut out = Vec::new();
        find(question, &mut out);
        out
    }

    /// What the prober has done so far.
    pub fn stats(&self) -> ProberStats {
        let c = &self.inner.stats;
        ProberStats {
            probes: c.probes.load(Ordering::Relaxed),
            cut_short: c.cut_short.load(Ordering::Relaxed),
            busy: c.busy.load(Ordering::Relaxed),
            longest: Duration::from_micros(c.longest_us.load(Ordering::Relaxed)),
        }
    }

    /// The running or recent probe for `question`, or a new one queued; `None` when the
    /// queue is full.
    fn subscribe(&self, question: Question) -> Option<watch::Receiver<Progress>> {
        let now = Instant::now();
        let cache_for = self.inner.config.cache_for;
        let fresh = |e: &Entry| !e.progress.borrow().done || now - e.started < cache_for;
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get(&question).filter(|e| fresh(e)) {
            return Some(entry.progress.clone());
        }
        entries.retain(|_, e| fresh(e));
        let (tx, rx) = watch::channel(Progress::default());
        let job = Job {
            question: question.clone(),
            progress: tx,
        };
        match self.inner.jobs.try_send(job) {
            Ok(()) => {
                let entry = Entry {
                    started: now,
                    progress: rx.clone(),
                };
                entries.insert(question, entry);
                Some(rx)
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner.stats.busy.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Default for Prober {
    fn default() -> Self {
        Prober::new(ProberConfig::default())
    }
}

impl Sink for Publish<'_> {
    fn push(&mut self, finding: String) {
        self.0.send_modify(|p| p.findings.push(finding));
    }
}

/// A worker: one question at a time until the prober is dropped.
fn work(queue: &Mutex<Receiver<Job>>, stats: &Counters, finder: &Finder) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return; // every Prober clone is gone
        };
        let started = Instant::now();
        // A panic in a finder must not take the worker with it; the failure keeps what was
        // found before it.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            finder(&job.question, &mut Publish(&job.progress));
        }));
        // Counted before the waiters are woken, so that what they read agrees.
        let took = started.elapsed().as_micros() as u64;
        stats.probes.fetch_add(1, Ordering::Relaxed);
        stats.longest_us.fetch_max(took, Ordering::Relaxed);
        job.progress.send_modify(|p| p.done = true);
    }
}

#[cfg(test)]
mod tests {
    use handoff_diag::{Evidence, Reason};

    use super::*;

    fn refused(port: u16) -> Failure {
        Failure {
            reason: Reason::ConnectRefused,
            evidence: Evidence {
                next_hop: format!("127.0.0.1:{port}").into(),
                ..Evidence::default()
            },
        }
    }

    /// The first failure waits for its probe, the next ones within a second reuse it, and
    /// reasons no finder looks at cost nothing.
    #[tokio::test]
    async fn findings_are_probed_once_and_then_cached() {
        let prober = Prober::default();
        let mut first = refused(1);
        prober.investigate(&mut first).await;
        assert_eq!(
            first.evidence.findings[0],
            "nothing listens on port 1 on any local address"
        );
        let mut second = refused(1);
        prober.investigate(&mut second).await;
        assert_eq!(second.evidence.findings, first.evidence.findings);
        assert_eq!(
            prober.stats().probes,
            1,
            "the second failure was answered from the cache"
        );

        let mut other = Failure {
            reason: Reason::ResponseHeaderTimeout,
            evidence: Evidence::default(),
        };
        prober.investigate(&mut other).await;
        assert!(other.evidence.findings.is_empty());
        assert_eq!(prober.stats().probes, 1);
    }

    /// A probe slower than the deadline: the failure answers at its deadline with what was
    /// found so far, and once the probe is done its result serves the next failure.
    #[tokio::test]
    async fn a_failure_answers_at_its_deadline_and_the_probe_serves_the_next() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let finder = move |_: &Question, out: &mut dyn Sink| {
            out.push("found at once".into());
            let _ = wait.lock().unwrap().recv();
            out.push("found later".into());
        };
        let prober = Prober::with_finder(
            ProberConfig {
                deadline: Duration::from_millis(50),
                ..ProberConfig::default()
            },
            Arc::new(finder),
        );
        let started = Instant::now();
        let mut first = refused(2);
        prober.investigate(&mut first).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            first.evidence.findings,
            [
                "found at once",
                "(more host checks were still running after 50 ms)"
            ]
        );
        assert_eq!(prober.stats().cut_short, 1);
        release.send(()).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while prober.stats().probes == 0 {
            assert!(Instant::now() < until, "the probe never finished");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut next = refused(2);
        prober.investigate(&mut next).await;
        assert_eq!(next.evidence.findings, ["found at once", "found later"]);
        assert_eq!(prober.stats().probes, 1, "one probe served both failures");
    }
}
