//! handoff-probe: the host probes that turn a failure into a finding, and that
//! `handoff doctor` runs before anything fails: what a socket path really is and who may
//! open it, which sockets listen and for which process, how many descriptors are left.
//!
//! # Layout
//!
//! - [`prober`]: [`Prober`], the bounded pool that runs the probes of a failure off the
//!   event loop, with a deadline and a cache;
//! - `findings`: the findings for one failure ([`Question`]), in the operator's words;
//! - [`access`]: a socket path's kind, owner and mode, and every directory's search bit,
//!   for a given uid and groups;
//! - [`identity`]: the uid and groups a check is for (this process's, or a named user's);
//! - [`sock_diag`]: TCP and unix listeners over netlink, with their accept queues;
//! - [`process`]: the process holding a socket, and a process's descriptors against its
//!   limit.
//!
//! Everything reads local state only (no network) and needs no root for the process's own
//! namespace; what a non-root user may not look at is reported as such, never a panic.
//!
//! # Usage
//!
//! ```
//! use handoff_probe::access::{socket_access, SocketAccess};
//! use handoff_probe::identity::Identity;
//!
//! let access = socket_access("/nonexistent/app.sock".as_ref(), &Identity::current());
//! assert_eq!(access, SocketAccess::MissingDirectory("/nonexistent".into()));
//! ```
#![forbid(unsafe_code)]

pub mod access;
mod findings;
pub mod identity;
pub mod prober;
pub mod process;
pub mod sock_diag;

pub use findings::{near_listeners, Question};
pub use prober::{Prober, ProberConfig, ProberStats};
