//! State shared by every proxy service and the admin server of one handoff process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use handoff_config::{AnnotateSettings, Expose, Settings};
use handoff_diag::{Exposure, Metrics, RecentFailures};
use http::HeaderName;

use crate::upstream::{Upstream, UpstreamError};

/// What one process shares across its listeners.
#[derive(Debug)]
pub struct Shared {
    /// Every metric, registered once per process.
    pub metrics: Metrics,
    /// The `/failures` buffer.
    pub recent: RecentFailures,
    /// How annotated responses are written; swapped on reload.
    pub annotate: ArcSwap<Annotate>,
    /// Whether the configured `debug_header` lies outside handoff's `X-Handoff-*`
    /// namespace. When it does not (the default, `x-handoff-debug`), a request without an
    /// `X-Handoff-*` field needs no look at `annotate` (see `diagnostics`).
    pub debug_outside_namespace: AtomicBool,
    /// One slot per `[[upstream]]`, in config order; swapped on reload.
    pub upstreams: Vec<Arc<ArcSwap<Upstream>>>,
    /// The settings in force (for the status page and reload comparisons).
    pub settings: ArcSwap<Settings>,
    /// Set once every listener accepts connections; cleared when draining.
    pub ready: AtomicBool,
    /// When the process started serving.
    pub started: Instant,
    /// The on-the-spot probes of failures, run off the event loop with a deadline.
    pub prober: handoff_probe::Prober,
    log_access: AtomicBool,
}

/// `[annotate]` in the form the request path uses.
#[derive(Debug)]
pub struct Annotate {
    /// Proxy-Status member name.
    pub proxy_name: String,
    /// Default exposure level.
    pub exposure: Exposure,
    /// Header that can raise exposure to full for one request.
    pub debug_header: HeaderName,
    /// Token that header must carry; `None` disables the debug header.
    pub debug_token: Option<String>,
}

// === impl Shared ===

impl Shared {
    /// Builds the shared state (metrics, buffers, upstream runtimes) for `settings`.
    pub fn new(settings: Settings) -> Result<Arc<Shared>, UpstreamError> {
        let names: Vec<&str> = settings.upstreams.iter().map(|u| u.name.as_str()).collect();
        let metrics = Metrics::new(&names, env!("CARGO_PKG_VERSION"));
        let (threads, pool_size) = (settings.server.threads, settings.server.upstream_pool_size);
        let upstreams = settings
            .upstreams
            .iter()
            .map(|u| {
                let handles = metrics.upstream(&u.name).expect("registered above");
                Upstream::new(u.clone(), handles, threads, pool_size)
                    .map(|u| Arc::new(ArcSwap::from_pointee(u)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Shared {
            recent: RecentFailures::new(settings.server.recent_failures),
            annotate: ArcSwap::from_pointee(Annotate::from(&settings.annotate)),
            debug_outside_namespace: AtomicBool::new(outside_namespace(&settings.annotate)),
            log_access: AtomicBool::new(settings.log.access),
            upstreams,
            metrics,
            settings: ArcSwap::from_pointee(settings),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            prober: handoff_probe::Prober::default(),
        }))
    }

    /// Whether successful requests are logged too.
    pub fn log_access(&self) -> bool {
        self.log_access.load(Ordering::Relaxed)
    }

    /// Applies a new configuration whose listeners are unchanged. Returns what changed.
    pub fn apply(&self, settings: Settings) -> Result<(), ReloadError> {
        let current = self.settings.load();
        let listeners = |s: &Settings| {
            let mut v: Vec<String> = s
                .upstreams
                .iter()
                .map(|u| format!("{}={}", u.name, u.listen))
                .collect();
            v.push(format!("admin={}", s.admin.listen));
            v
        };
        if listeners(&current) != listeners(&settings) || current.server != settings.server {
            return Err(ReloadError::RestartRequired);
        }
        let fresh = settings
            .upstreams
            .iter()
            .map(|u| {
                let handles = self.metrics.upstream(&u.name).expect("same upstream names");
                let server = &settings.server;
                Upstream::new(
                    u.clone(),
                    handles,
                    server.threads,
                    server.upstream_pool_size,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReloadError::Upstream)?;
        for (slot, upstream) in self.upstreams.iter().zip(fresh) {
            slot.store(Arc::new(upstream));
        }
        self.annotate
            .store(Arc::new(Annotate::from(&settings.annotate)));
        self.debug_outside_namespace
            .store(outside_namespace(&settings.annotate), Ordering::Relaxed);
        self.log_access
            .store(settings.log.access, Ordering::Relaxed);
        self.settings.store(Arc::new(settings));
        Ok(())
    }
}

/// Why a reload was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Listener addresses, upstream names or `[server]` changed: these need a restart.
    #[error("listeners, upstream names or [server] changed: restart handoff to apply them")]
    RestartRequired,
    /// An upstream could not be built.
    #[error(transparent)]
    Upstream(UpstreamError),
}

/// Whether the debug header is not an `X-Handoff-*` field (see
/// [`Shared::debug_outside_namespace`]).
fn outside_namespace(a: &AnnotateSettings) -> bool {
    !a.debug_header
        .to_ascii_lowercase()
        .starts_with("x-handoff-")
}

// === impl Annotate ===

impl From<&AnnotateSettings> for Annotate {
    fn from(a: &AnnotateSettings) -> Self {
        Annotate {
            proxy_name: a.proxy_name.clone(),
            exposure: match a.expose {
                Expose::None => Exposure::None,
                Expose::Reason => Exposure::Reason,
                Expose::Full => Exposure::Full,
            },
            debug_header: HeaderName::from_bytes(a.debug_header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-handoff-debug")),
            debug_token: a.debug_token.clone(),
        }
    }
}
