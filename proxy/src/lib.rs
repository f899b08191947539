//! handoff: a pingora reverse-proxy sidecar that passes traffic between nginx and an app and,
//! when the handoff fails, says why (Proxy-Status, `X-Handoff-Reason`, problem+json, metrics,
//! one log line, `/failures`).
//!
//! # Layout
//!
//! - [`cli`]: the command line (`run`, `check`, `doctor`, `demo`, `faults`, `nginx-snippet`).
//! - [`server`]: assembles the pingora `Server` from validated settings;
//!   [`listen`] is its listening services: pingora's listeners in an accept loop that
//!   gives each connection one small task.
//! - [`conn`]: the life of a client connection, handoff's own HTTP/1 proxy loop on
//!   pingora-core: read → attempt → respond → reuse, with its [`conn::Hooks`].
//! - [`diagnostics`]: handoff's hooks: metrics, annotated answers, the log line,
//!   `/failures`; failures go to `handoff_diag` for classification.
//! - [`upstream`]: the runtime form of one `[[upstream]]` (peer template, timeouts, idle
//!   pool, metrics) and the HTTP/1 protocol spoken to it.
//! - [`state`]: what the services of one process share, and reload.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/failures`, the status page.
//! - [`signals`], [`notify`]: SIGTERM drain, SIGHUP reload, systemd notifications.
//! - [`nginx_conf`]: the nginx configuration in front of handoff, from one template
//!   (`handoff nginx-snippet`, `deploy/nginx/handoff.conf`, the end-to-end tests' nginx).
//! - [`faults`]: misbehaving upstreams, one per failure a real socket can produce.
//! - [`demo`]: the `handoff demo` walk-through and `handoff faults`.
//! - [`testing`]: start handoff in-process on free ports (used by tests and benches).
//!
//! # Sketch
//!
//! ```no_run
//! let settings = handoff_config::from_str(handoff_config::DEFAULT_CONFIG, "default").unwrap();
//! let handoff = handoff::server::Handoff::build(settings).unwrap();
//! handoff.run_until_signalled(None);
//! ```

pub mod admin;
pub mod cli;
pub mod conn;
pub mod demo;
pub mod diagnostics;
pub mod faults;
pub mod listen;
pub mod logging;
pub mod nginx_conf;
pub mod notify;
pub mod server;
pub mod signals;
pub mod state;
pub mod testing;
pub mod upstream;
