//! Assembling the pingora `Server`: one proxy service per upstream listener, the admin
//! service, and a start-up watcher that reports readiness once every listener accepts.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use handoff_config::{ListenAddress, Settings};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};

use crate::admin::Admin;
use crate::conn::{ClientLimits, ProxyApp};
use crate::diagnostics::Diagnostics;
use crate::listen::Listening;
use crate::state::Shared;
use crate::upstream::UpstreamError;

/// Why handoff could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address is taken or not ours to bind.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// An upstream could not be prepared (socket path, CA file).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// A built but not yet running handoff.
pub struct Handoff {
    server: Server,
    shared: Arc<Shared>,
}

// === impl Handoff ===

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Handoff {
    /// Builds every service for `settings` without serving yet. Listen addresses are checked
    /// here so a taken port is one clear error instead of pingora's 30 s of bind retries.
    pub fn build(settings: Settings) -> Result<Handoff, StartError> {
        check_listeners(&settings)?;
        let conf = ServerConf {
            threads: settings.server.threads,
            // handoff drains on its own (see `signals`): pingora's fixed sleep is only the
            // upper bound, and runtimes get one more second to wind down.
            grace_period_seconds: Some(settings.server.grace_period.as_secs_f64().ceil() as u64),
            graceful_shutdown_timeout_seconds: Some(1),
            // The one pingora timer left, the connect timer, on tokio's wheel like handoff's
            // own: pingora's fast timers keep a cancelled timer until its deadline.
            fast_timeout_to_tokio_threshold_seconds: Some(0),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let shared = Shared::new(settings.clone())?;
        let limits = ClientLimits::from(&settings.server);
        let hooks = Diagnostics::new(shared.clone());
        for (upstream, slot) in settings.upstreams.iter().zip(&shared.upstreams) {
            let app = ProxyApp::new(slot.clone(), hooks.clone(), limits);
            let name = format!("upstream {}", upstream.name);
            server.add_service(Listening::new(name, upstream.listen.clone(), app));
        }
        let admin = Admin::new(shared.clone());
        server
            .add_service(Listening::new("admin", settings.admin.listen.clone(), admin).threads(1));
        server.add_service(background_service(
            "startup",
            Startup {
                shared: shared.clone(),
            },
        ));
        Ok(Handoff { server, shared })
    }

    /// The state shared by the services (metrics, recent failures, settings).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until `signals` asks to stop. Blocks the calling thread, which must not be
    /// inside a tokio runtime.
    pub fn run(self, signals: Box<dyn ShutdownSignalWatch>) {
        self.server.run(RunArgs {
            shutdown_signal: signals,
        });
    }

    /// Serves until SIGTERM/SIGINT, reloading `config` on SIGHUP, and draining in-flight
    /// requests for at most the configured grace period on SIGTERM.
    pub fn run_until_signalled(self, config: Option<PathBuf>) {
        let phases = self.server.watch_execution_phase();
        let signals = crate::signals::Signals::new(self.shared.clone(), config, phases);
        self.run(Box::new(signals));
    }
}

fn check_listeners(settings: &Settings) -> Result<(), StartError> {
    let mut all: Vec<(String, &ListenAddress)> = settings
        .upstreams
        .iter()
        .map(|u| (format!("upstream {}", u.name), &u.listen))
        .collect();
    all.push(("admin".into(), &settings.admin.listen));
    for (key, listen) in all {
        if let ListenAddress::Tcp(addr) = listen {
            TcpListener::bind(addr).map_err(|source| StartError::Bind {
                key,
                addr: addr.to_string(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Waits until every listener accepts connections, then marks handoff ready (and tells
/// systemd, when it is the supervisor).
struct Startup {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for Startup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let settings = self.shared.settings.load_full();
        let mut listeners: Vec<&ListenAddress> =
            settings.upstreams.iter().map(|u| &u.listen).collect();
        listeners.push(&settings.admin.listen);
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let mut all = true;
            for listen in &listeners {
                all &= accepts(listen).await;
            }
            if all {
                break;
            }
        }
        self.shared.ready.store(true, Ordering::Relaxed);
        crate::notify::notify("READY=1\nSTATUS=serving");
        tracing::info!(
            upstreams = settings.upstreams.len(),
            admin = %settings.admin.listen,
            "handoff is ready"
        );
    }
}

async fn accepts(listen: &ListenAddress) -> bool {
    match listen {
        ListenAddress::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
        ListenAddress::Unix(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
    }
}
