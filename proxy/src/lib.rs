//! handoff: a pingora reverse-proxy sidecar that passes traffic between nginx and an app and,
//! when the handoff fails, says why (Proxy-Status, `X-Handoff-Reason`, problem+json, metrics,
//! one log line, `/failures`).
//!
//! # Layout
//!
//! - [`cli`]: the command line (`run`, `check`, `doctor`, `demo`, `faults`, `nginx-snippet`).
//! - [`server`]: assembles the pingora `Server` from validated settings.
//! - [`service`]: the `ProxyHttp` hooks; records facts in [`ctx::Ctx`] and hands failures to
//!   `handoff_diag`.
//! - [`upstream`]: the runtime form of one `[[upstream]]` (peer template, timeouts, metrics).
//! - [`state`]: what the services of one process share, and reload.
//! - `header_deadline`: the client header deadline (slowloris) around each connection.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/failures`, the status page.
//! - [`signals`], [`notify`]: SIGTERM drain, SIGHUP reload, systemd notifications.
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
pub mod ctx;
pub mod demo;
pub mod faults;
mod header_deadline;
pub mod logging;
pub mod notify;
pub mod server;
pub mod service;
pub mod signals;
pub mod snippet;
pub mod state;
pub mod testing;
pub mod upstream;
