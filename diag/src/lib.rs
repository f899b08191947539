//! handoff's diagnostics: turns a failed upstream handoff into a named reason with
//! evidence, a hint, an annotated response, metrics and a recent-failure record.
//!
//! Pure logic: no sockets, no file I/O, no pingora runtime. The proxy hands in pingora's
//! error and the [`Evidence`] it gathered, and gets back a [`Failure`] and a
//! [`DiagResponse`] to write.
//!
//! # Layout
//!
//! - [`reason`]: the [`Reason`] enum, the labels, statuses and RFC 9209 types of `DESIGN.md`.
//! - [`evidence`]: [`Evidence`], errnos and timers.
//! - [`classify`]: one ordered function from pingora error to [`Verdict`].
//! - [`hint`]: what to check next, what nginx would have logged, protocol sniffing.
//! - [`respond`]: the annotated response ([`DiagResponse`]) at each [`Exposure`].
//! - [`header`]: the header names handoff writes.
//! - [`metrics`]: every Prometheus family, help string and bucket, and the typed readers
//!   ([`UpstreamMetrics::read`]) handoff reads its own numbers back with.
//! - [`recent`]: the ring buffer behind `/failures`.
//! - [`escape`]: sanitising network bytes for headers, HTML and logs.
//! - `tls`: what a rejected upstream certificate says (expired, another name, unknown CA).
//!
//! # Usage
//!
//! ```
//! use handoff_diag::{classify, Annotation, DiagResponse, Evidence, Exposure, Phase, Reason, Verdict};
//! use pingora_error::{Error, ErrorType};
//!
//! let err = Error::because(
//!     ErrorType::ConnectRefused,
//!     "Fail to connect to 127.0.0.1:3000",
//!     std::io::Error::from_raw_os_error(libc::ECONNREFUSED),
//! )
//! .into_up();
//! let evidence = Evidence { upstream: "app".into(), next_hop: "127.0.0.1:3000".into(), phase: Phase::Connect, attempt: 1, ..Evidence::default() };
//! let Verdict::Upstream(failure) = classify(&err, evidence) else { unreachable!() };
//! assert_eq!(failure.reason, Reason::ConnectRefused);
//!
//! let annotation = Annotation { proxy_name: "handoff", exposure: Exposure::Reason };
//! let response = DiagResponse::for_failure(&failure, Some(b"application/json"), &annotation);
//! assert_eq!(response.status, 502);
//! ```

#![forbid(unsafe_code)]

pub mod classify;
pub mod escape;
pub mod evidence;
pub mod header;
pub mod hint;
pub mod metrics;
pub mod reason;
pub mod recent;
pub mod respond;
mod tls;

pub use classify::{classify, Failure, Verdict, DNS_FAILED, HEADER_TOO_LARGE, NO_HEALTHY_UPSTREAM};
pub use evidence::{Errno, Evidence, Timeouts, Timer, TimerFired};
pub use hint::{sniff, Hint};
pub use metrics::{
    HistogramReading, InFlightGuard, Metrics, UpstreamMetrics, UpstreamReading, METRIC_NAMES,
};
pub use reason::{Phase, Reason};
pub use recent::{FailureRecord, Filter, RecentFailures};
pub use respond::{valid_request_id, Annotation, DiagResponse, Exposure};
