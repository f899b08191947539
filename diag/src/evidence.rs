//! The facts gathered about one failed handoff.

use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::reason::Phase;

/// What proves a failure. The proxy fills what it saw; [`crate::classify`] fills `errno`,
/// `timer`, `raw_error` and, when the error carries them, `first_bytes`.
///
/// Durations serialize as milliseconds (`*_ms` fields, fractional).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// The configured upstream name.
    pub upstream: Arc<str>,
    /// Where handoff connects: `127.0.0.1:3000`, `unix:/run/app.sock`, `tls://host:8443`.
    pub next_hop: Arc<str>,
    /// Where the proxy says the request was; authoritative for header vs body.
    pub phase: Phase,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The upstream connection came from the keep-alive pool.
    pub reused: bool,
    /// How long that pooled connection had been idle.
    #[serde(rename = "idle_ms", serialize_with = "ms_opt")]
    pub idle: Option<Duration>,
    /// Connect duration (new connections only).
    #[serde(rename = "connect_ms", serialize_with = "ms_opt")]
    pub connect: Option<Duration>,
    /// From request start until the request was written upstream.
    #[serde(rename = "to_request_written_ms", serialize_with = "ms_opt")]
    pub to_request_written: Option<Duration>,
    /// From request start until the response header was complete.
    #[serde(rename = "to_header_ms", serialize_with = "ms_opt")]
    pub to_header: Option<Duration>,
    /// From request start until the failure.
    #[serde(rename = "elapsed_ms", serialize_with = "ms")]
    pub elapsed: Duration,
    /// Request body bytes sent upstream.
    pub request_bytes_sent: u64,
    /// Response body bytes received from upstream.
    pub response_bytes_received: u64,
    /// Size of the response header, when one was read.
    pub response_header_bytes: Option<usize>,
    /// The configured `max_response_header_bytes`.
    pub header_limit: usize,
    /// The configured `nginx_buffer_bytes` (nginx's `proxy_buffer_size`).
    pub nginx_buffer_bytes: usize,
    /// The configured timers, so classification can name the one that fired.
    pub timeouts: Timeouts,
    /// The root `io::Error`'s errno (filled by classify).
    pub errno: Option<Errno>,
    /// Which timer fired (filled by classify for timeout reasons).
    pub timer: Option<TimerFired>,
    /// Up to [`crate::escape::FIRST_BYTES_MAX`] bytes the upstream sent, escaped with
    /// [`crate::escape::escape_bytes`].
    pub first_bytes: Option<String>,
    /// The request id (valid, see [`crate::valid_request_id`], or generated).
    pub request_id: String,
    /// The request method, as received.
    pub method: String,
    /// The request path, as received.
    pub path: String,
    /// pingora's error display, truncated (filled by classify).
    pub raw_error: String,
    /// Results of on-the-spot probes added by the proxy.
    pub findings: Vec<String>,
}

/// The configured timers of the upstream; zero means not configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    /// `connect_timeout`.
    #[serde(rename = "connect_ms", serialize_with = "ms")]
    pub connect: Duration,
    /// `header_timeout`.
    #[serde(rename = "header_ms", serialize_with = "ms")]
    pub header: Duration,
    /// `read_timeout`.
    #[serde(rename = "read_ms", serialize_with = "ms")]
    pub read: Duration,
    /// `write_timeout`.
    #[serde(rename = "write_ms", serialize_with = "ms")]
    pub write: Duration,
}

/// An errno with its symbolic name; serializes as `{"code":111,"name":"ECONNREFUSED"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Errno {
    /// The numeric value (Linux).
    pub code: i32,
    /// The symbolic name, or `E?` when unknown.
    pub name: &'static str,
}

/// One of the configured timers, named by its config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Timer {
    /// `connect_timeout`.
    #[serde(rename = "connect_timeout")]
    Connect,
    /// `header_timeout`.
    #[serde(rename = "header_timeout")]
    Header,
    /// `read_timeout`.
    #[serde(rename = "read_timeout")]
    Read,
    /// `write_timeout`.
    #[serde(rename = "write_timeout")]
    Write,
}

/// The timer that ended the handoff and its configured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimerFired {
    /// Which timer.
    pub timer: Timer,
    /// Its configured value (zero when unknown).
    #[serde(rename = "after_ms", serialize_with = "ms")]
    pub after: Duration,
}

impl Errno {
    /// The errno for a raw OS error code.
    pub fn from_code(code: i32) -> Errno {
        Errno {
            code,
            name: errno_text(code).0,
        }
    }

    /// strerror-like text, e.g. `Connection refused`.
    pub fn message(&self) -> &'static str {
        errno_text(self.code).1
    }
}

impl Timer {
    /// The config key of the timer.
    pub const fn as_str(self) -> &'static str {
        match self {
            Timer::Connect => "connect_timeout",
            Timer::Header => "header_timeout",
            Timer::Read => "read_timeout",
            Timer::Write => "write_timeout",
        }
    }
}

/// Name and strerror text of the errnos handoff meets (glibc wording).
fn errno_text(code: i32) -> (&'static str, &'static str) {
    match code {
        libc::EPERM => ("EPERM", "Operation not permitted"),
        libc::ENOENT => ("ENOENT", "No such file or directory"),
        libc::EINTR => ("EINTR", "Interrupted system call"),
        libc::EAGAIN => ("EAGAIN", "Resource temporarily unavailable"),
        libc::ENOMEM => ("ENOMEM", "Cannot allocate memory"),
        libc::EACCES => ("EACCES", "Permission denied"),
        libc::EINVAL => ("EINVAL", "Invalid argument"),
        libc::ENFILE => ("ENFILE", "Too many open files in system"),
        libc::EMFILE => ("EMFILE", "Too many open files"),
        libc::EPIPE => ("EPIPE", "Broken pipe"),
        libc::ENOTSOCK => ("ENOTSOCK", "Socket operation on non-socket"),
        libc::EPROTOTYPE => ("EPROTOTYPE", "Protocol wrong type for socket"),
        libc::EADDRINUSE => ("EADDRINUSE", "Address already in use"),
        libc::EADDRNOTAVAIL => ("EADDRNOTAVAIL", "Cannot assign requested address"),
        libc::ENETDOWN => ("ENETDOWN", "Network is down"),
        libc::ENETUNREACH => ("ENETUNREACH", "Network is unreachable"),
        libc::ECONNABORTED => ("ECONNABORTED", "Software caused connection abort"),
        libc::ECONNRESET => ("ECONNRESET", "Connection reset by peer"),
        libc::ENOBUFS => ("ENOBUFS", "No buffer space available"),
        libc::ENOTCONN => ("ENOTCONN", "Transport endpoint is not connected"),
        libc::ETIMEDOUT => ("ETIMEDOUT", "Connection timed out"),
        libc::ECONNREFUSED => ("ECONNREFUSED", "Connection refused"),
        libc::EHOSTDOWN => ("EHOSTDOWN", "Host is down"),
        libc::EHOSTUNREACH => ("EHOSTUNREACH", "No route to host"),
        libc::EINPROGRESS => ("EINPROGRESS", "Operation now in progress"),
        _ => ("E?", "Unknown error"),
    }
}

/// A duration for people, ASCII only: `3s`, `1.5s`, `150ms`, `0.25ms`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 {
        // f64 Display drops trailing zeros: 3s, 1.5s, 4.999s.
        format!("{}s", ms as f64 / 1000.0)
    } else if ms >= 1 || d.is_zero() {
        format!("{ms}ms")
    } else {
        format!("{:.2}ms", d.as_secs_f64() * 1000.0)
    }
}

fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Microsecond resolution is plenty and keeps the JSON short.
    s.serialize_f64((d.as_micros() as f64) / 1000.0)
}

fn ms_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ms(d, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errnos carry their symbolic name and message, unknown ones `E?`.
    #[test]
    fn errno_names() {
        let e = Errno::from_code(libc::ECONNREFUSED);
        assert_eq!(
            (e.name, e.message()),
            ("ECONNREFUSED", "Connection refused")
        );
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":111,"name":"ECONNREFUSED"}"#
        );
        for code in [
            libc::ENOENT,
            libc::EACCES,
            libc::EAGAIN,
            libc::ECONNRESET,
            libc::EPIPE,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::EADDRNOTAVAIL,
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
        ] {
            assert_ne!(Errno::from_code(code).name, "E?", "{code}");
        }
        assert_eq!(Errno::from_code(9999).name, "E?");
    }

    /// Durations serialize as milliseconds under `_ms` names; timers by their config key.
    #[test]
    fn serialization() {
        let ev = Evidence {
            idle: Some(Duration::from_micros(1500)),
            timer: Some(TimerFired {
                timer: Timer::Read,
                after: Duration::from_secs(55),
            }),
            ..Evidence::default()
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["idle_ms"], 1.5);
        assert_eq!(v["connect_ms"], serde_json::Value::Null);
        assert_eq!(v["phase"], "select");
        assert_eq!(v["timer"]["timer"], "read_timeout");
        assert_eq!(v["timer"]["after_ms"], 55000.0);
        assert_eq!(human(Duration::from_secs(3)), "3s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(150)), "150ms");
        assert_eq!(human(Duration::from_millis(4999)), "4.999s");
        assert_eq!(human(Duration::from_micros(250)), "0.25ms");
    }
}
