//! Signals: SIGTERM drains and exits, SIGINT exits now, SIGHUP reloads the configuration.
//!
//! pingora's own graceful shutdown sleeps for the whole grace period. handoff instead stops
//! accepting, waits until the requests in flight are done (or the grace period is over), and
//! exits 0 at once: a sidecar that is idle should not hold up a rollout.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

use crate::notify::{monotonic_usec, notify};
use crate::state::Shared;

/// The production signal handler.
#[derive(Debug)]
pub struct Signals {
    shared: Arc<Shared>,
    config: Option<PathBuf>,
    phases: std::sync::Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

// === impl Signals ===

impl Signals {
    /// Handles signals for `shared`; `config` is the file SIGHUP re-reads, if there is one.
    pub fn new(
        shared: Arc<Shared>,
        config: Option<PathBuf>,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Self {
        Signals {
            shared,
            config,
            phases: std::sync::Mutex::new(Some(phases)),
        }
    }

    fn start_drain(&self) {
        let grace = self.shared.settings.load().server.grace_period;
        let phases = self.phases.lock().ok().and_then(|mut p| p.take());
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("handoff-drain".into())
            .spawn(move || drain(shared, phases, grace))
            .expect("spawn the drain thread");
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
        let mut quit = signal(SignalKind::quit()).expect("install SIGQUIT handler");
        let mut hup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = quit.recv() => break,
                _ = int.recv() => {
                    tracing::info!("SIGINT: exiting now");
                    return ShutdownSignal::FastShutdown;
                }
                _ = hup.recv() => reload(&self.shared, self.config.as_deref()),
            }
        }
        self.shared.ready.store(false, Ordering::Relaxed);
        notify("STOPPING=1");
        tracing::info!("SIGTERM: no longer accepting; finishing the requests in flight");
        self.start_drain();
        ShutdownSignal::GracefulTerminate
    }
}

/// Re-reads `config` and applies it; a bad file is reported and the old settings stay.
pub fn reload(shared: &Shared, config: Option<&std::path::Path>) {
    let Some(path) = config else {
        tracing::warn!("SIGHUP: handoff runs without a config file; nothing to reload");
        return;
    };
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    let result = handoff_config::from_file(path)
        .map_err(|e| e.problems().join("; "))
        .and_then(|settings| shared.apply(settings).map_err(|e| e.to_string()));
    match result {
        Ok(()) => {
            shared.metrics.record_reload(true);
            tracing::info!(config = %path.display(), "configuration reloaded");
        }
        Err(problems) => {
            shared.metrics.record_reload(false);
            tracing::error!(
                config = %path.display(),
                problems = %problems,
                "configuration not reloaded; the previous one stays in force"
            );
        }
    }
    notify("READY=1\nSTATUS=serving");
}

fn drain(
    shared: Arc<Shared>,
    phases: Option<broadcast::Receiver<ExecutionPhase>>,
    grace: Duration,
) {
    let deadline = Instant::now() + grace;
    // Listeners are closed once pingora has broadcast the shutdown.
    if let Some(mut phases) = phases {
        while !matches!(
            phases.blocking_recv(),
            Ok(ExecutionPhase::GracefulTerminate) | Err(_)
        ) {}
    }
    let mut idle_checks = 0;
    while Instant::now() < deadline {
        if in_flight(&shared) == 0 {
            idle_checks += 1;
            // Twice in a row, so a request whose header was just read is not cut off.
            if idle_checks == 2 {
                tracing::info!("all requests finished; exiting");
                std::process::exit(0);
            }
        } else {
            idle_checks = 0;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::warn!(in_flight = in_flight(&shared), "grace period over; exiting");
}

/// Requests in flight over every upstream, read from the gauges' own handles: this runs
/// every 10 ms while draining, so it gathers nothing.
fn in_flight(shared: &Shared) -> u64 {
    shared.metrics.in_flight_total().max(0) as u64
}
