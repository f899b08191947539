//! What to check next, in the operator's words, and what nginx would have logged.

use std::fmt::Write as _;

use crate::classify::Failure;
use crate::escape;
use crate::evidence::{human, Errno};
use crate::reason::{Phase, Reason};

/// The next thing to check for a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// Generic advice for the reason; no evidence, safe at exposure `reason`.
    pub summary: &'static str,
    /// The advice with this failure's evidence (addresses, idle age, errno, first bytes,
    /// findings); only for exposure `full`, logs and `/failures`.
    pub detail: String,
}

/// What the upstream's first bytes say it speaks, when it is not HTTP/1.x.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        // A TLS record: handshake (0x16) or alert (0x15), version 3.x.
        [0x15 | 0x16, 0x03, ..] => Some(
            "the upstream speaks TLS: use a tls:// address (handoff sent plain HTTP to a TLS port)",
        ),
        [b'P', b'R', b'I', b' ', b'*', b' ', b'H', b'T', b'T', b'P', b'/', b'2', ..] => {
            Some("the upstream speaks HTTP/2 with prior knowledge (h2c): handoff talks HTTP/1.1 to upstreams; enable HTTP/1.1 on the app")
        }
        // An HTTP/2 SETTINGS (4) or GOAWAY (7) frame on stream 0: an h2c-only server.
        [0, _, _, 4 | 7, _, 0, 0, 0, 0, ..] => {
            Some("the upstream speaks HTTP/2 (it answered with an HTTP/2 frame): handoff talks HTTP/1.1 to upstreams; enable HTTP/1.1 on the app")
        }
        // FastCGI record header: version 1, type 1..=11.
        [1, 1..=11, ..] => Some(
            "the upstream speaks FastCGI (php-fpm?): nginx needs fastcgi_pass, handoff cannot proxy FastCGI",
        ),
        [b'S', b'S', b'H', b'-', ..] => Some("the upstream is an SSH server: wrong port"),
        [b'-', b'E', b'R', b'R', ..] => Some("the upstream looks like Redis: wrong port"),
        _ => None,
    }
}

impl Reason {
    /// The generic hint for the reason.
    pub const fn hint_summary(self) -> &'static str {
        use Reason::*;
        match self {
            ConnectRefused => "Nothing accepts connections at the upstream address: is the app running and listening on that port (ss -ltnp)? Check its supervisor and logs.",
            ConnectTimeout => "The upstream did not accept the connection in time: its accept queue may be full (event loop stalled, all workers busy) or a firewall drops packets. Check the app's CPU and `nstat -az TcpExtListenOverflows`.",
            ConnectUnreachable => "There is no route to the upstream address: check the configured IP, the network namespace and that the interface is up.",
            SocketNotFound => "The upstream unix socket does not exist: compare the configured path with the socket the app creates (a version in the name, e.g. php8.2 vs php8.3?) and check that the app has started.",
            SocketPermissionDenied => "handoff may not connect to the upstream unix socket: compare the socket's owner, group and mode with handoff's user and groups, and check SELinux/AppArmor.",
            SocketBacklogFull => "The app's unix-socket listen backlog is full: it does not accept connections fast enough. Add workers, raise its backlog, or find what blocks accept().",
            LocalPortsExhausted => "No local port is free for a new upstream connection (many in TIME_WAIT): keep connections pooled and check net.ipv4.ip_local_port_range.",
            DnsFailed => "The upstream host name could not be resolved: check the name, /etc/resolv.conf and /etc/hosts.",
            TlsHandshakeFailed => "The TLS handshake with the upstream failed: does the upstream speak TLS on that port (not plain HTTP), with a protocol version and cipher in common?",
            TlsCertificateInvalid => "The upstream's TLS certificate was rejected: check the CA that signed it, its expiry, and that its names (SAN) match the host handoff connects to.",
            RequestWriteFailed => "The upstream closed the connection while handoff was sending the request: check the app's request body size limit and its logs for an early error response or a crash.",
            RequestWriteTimeout => "The upstream stopped reading the request: the app is busy or blocked, or the body arrives slowly. nginx's proxy_send_timeout must stay longer than handoff's write_timeout.",
            ClosedBeforeResponse => "The upstream closed the connection without responding: check the app's logs for a crash, an OOM kill or a worker timeout. On a reused connection it is the keep-alive race: keep pool_idle_timeout below the app's keep-alive timeout.",
            ClosedMidHeader => "The upstream closed the connection in the middle of the response header: the app likely died while answering; check its logs.",
            ResetBeforeResponse => "The upstream reset the connection before responding: the app was killed, closed with unread request bytes, or (on a reused connection) raced the keep-alive timeout; check its logs.",
            InvalidResponseHeader => "The upstream's response is not valid HTTP/1.x: does that port speak another protocol (TLS, HTTP/2, FastCGI) or print stray output before the headers?",
            ResponseHeaderTooLarge => "The upstream's response header is too large: look for huge Set-Cookie or other headers. nginx's proxy_buffer_size must hold it too.",
            ResponseHeaderTimeout => "The upstream did not send a response header before the timer fired: find out why the app is slow (database, locks, saturated workers). nginx's proxy_read_timeout must stay longer than handoff's timers.",
            ClosedMidBody => "The upstream closed the connection in the middle of the response body: check the app's logs for a crash or a failing streaming handler, and for a wrong Content-Length.",
            ResetMidBody => "The upstream reset the connection in the middle of the response body: check the app's logs for a crash or a kill mid-stream.",
            InvalidResponseBody => "The upstream's response body framing is broken (chunked encoding or length): check the app's encoder and any compression middleware.",
            BodyReadTimeout => "The upstream stopped sending the response body: a stalled app, or a stream (SSE, long poll) without heartbeats. nginx's proxy_read_timeout must stay longer than handoff's read_timeout.",
            NoHealthyUpstream => "No upstream peer is healthy: the cause is in the failures that marked them down; see the recent failures.",
            ProxyInternalError => "handoff itself failed (for example out of file descriptors): check its limits (ulimit -n) and its logs.",
            Unclassified => "The failure matched no known reason: the raw error is logged and kept in the recent failures; please report it so the gap can be closed.",
        }
    }
}

impl Failure {
    /// The generic hint plus the detail built from this failure's evidence.
    pub fn hint(&self) -> Hint {
        Hint {
            summary: self.reason.hint_summary(),
            detail: self.hint_detail(),
        }
    }

    /// The message nginx would have logged for this failure, filled with the next hop, so
    /// existing greps and alerts keep working.
    pub fn nginx_equivalent(&self) -> String {
        use Reason::*;
        let ev = &self.evidence;
        let hop = &*ev.next_hop;
        let errno = |default: i32| {
            let e = ev.errno.unwrap_or_else(|| Errno::from_code(default));
            format!("({}: {})", e.code, e.message())
        };
        let connect_to = |default: i32| {
            format!(
                "connect() to {hop} failed {} while connecting to upstream",
                errno(default)
            )
        };
        let msg = match self.reason {
            ConnectRefused => format!("connect() failed {} while connecting to upstream", errno(libc::ECONNREFUSED)),
            ConnectTimeout => "upstream timed out (110: Connection timed out) while connecting to upstream".to_owned(),
            ConnectUnreachable => format!("connect() failed {} while connecting to upstream", errno(libc::EHOSTUNREACH)),
            SocketNotFound => connect_to(libc::ENOENT),
            SocketPermissionDenied => connect_to(libc::EACCES),
            SocketBacklogFull => connect_to(libc::EAGAIN),
            LocalPortsExhausted => connect_to(libc::EADDRNOTAVAIL),
            DnsFailed => format!("{} could not be resolved (3: Host not found)", host_of(hop)),
            TlsHandshakeFailed => "SSL_do_handshake() failed while SSL handshaking to upstream".to_owned(),
            TlsCertificateInvalid => "upstream SSL certificate verify error while SSL handshaking to upstream".to_owned(),
            RequestWriteFailed => format!("writev() failed {} while sending request to upstream", errno(libc::EPIPE)),
            RequestWriteTimeout => "upstream timed out (110: Connection timed out) while sending request to upstream".to_owned(),
            ClosedBeforeResponse | ClosedMidHeader => "upstream prematurely closed connection while reading response header from upstream".to_owned(),
            ResetBeforeResponse => format!("recv() failed {} while reading response header from upstream", errno(libc::ECONNRESET)),
            InvalidResponseHeader => match &ev.first_bytes {
                Some(b) => format!("upstream sent invalid header: \"{}\" while reading response header from upstream", escape::truncate(b, 64)),
                None => "upstream sent invalid header while reading response header from upstream".to_owned(),
            },
            ResponseHeaderTooLarge => "upstream sent too big header while reading response header from upstream".to_owned(),
            ResponseHeaderTimeout => "upstream timed out (110: Connection timed out) while reading response header from upstream".to_owned(),
            ClosedMidBody => "upstream prematurely closed connection while reading upstream".to_owned(),
            ResetMidBody => format!("recv() failed {} while reading upstream", errno(libc::ECONNRESET)),
            InvalidResponseBody => "upstream sent invalid chunked response while reading upstream".to_owned(),
            BodyReadTimeout => "upstream timed out (110: Connection timed out) while reading upstream".to_owned(),
            NoHealthyUpstream => "no live upstreams while connecting to upstream".to_owned(),
            ProxyInternalError => match ev.errno {
                Some(e) => format!("socket() failed ({}: {}) while {}", e.code, e.message(), ev.phase.doing()),
                None => format!("(handoff's own fault while {})", ev.phase.doing()),
            },
            Unclassified => format!("(no nginx equivalent: unclassified failure while {})", ev.phase.doing()),
        };
        if hop.is_empty() || matches!(self.reason, ProxyInternalError | Unclassified) {
            msg
        } else {
            format!("{msg}, upstream: \"{hop}\"")
        }
    }

    fn hint_detail(&self) -> String {
        use Reason::*;
        let ev = &self.evidence;
        let hop = &*ev.next_hop;
        let path = hop.strip_prefix("unix:").unwrap_or(hop);
        let mut d = String::with_capacity(256);
        let _ = write!(
            d,
            "{} (upstream \"{}\", next hop {hop}, attempt {}, {} connection",
            self.reason.title(),
            ev.upstream,
            ev.attempt,
            if ev.reused { "reused" } else { "new" },
        );
        if let Some(e) = ev.errno {
            let _ = write!(d, ", errno {} ({}: {})", e.name, e.code, e.message());
        }
        let _ = write!(d, ", after {}).", human(ev.elapsed));
        let timer = ev.timer.map(|t| {
            if t.after.is_zero() {
                t.timer.as_str().to_owned()
            } else {
                format!("{} ({})", t.timer.as_str(), human(t.after))
            }
        });
        let keepalive_race =
            ev.reused && matches!(self.reason, ClosedBeforeResponse | ResetBeforeResponse);
        d.push(' ');
        match self.reason {
            ConnectRefused if hop.starts_with("unix:") => {
                let _ = write!(d, "The socket file {path} exists but no process listens on it: a stale socket left by a crashed or stopped app? Check the app's supervisor and logs.");
            }
            ConnectRefused => {
                let _ = write!(d, "Nothing listens on {hop}: check `ss -ltnp` for the port (is the app bound to another address or port?) and the app's supervisor and logs.");
            }
            SocketNotFound => {
                let dir = path
                    .rsplit_once('/')
                    .map_or(".", |(dir, _)| if dir.is_empty() { "/" } else { dir });
                let _ = write!(d, "{path} does not exist: list the sockets in {dir} (`ls -l {dir}`), compare with the configured address, and check the app has started (systemd RuntimeDirectory=, start order).");
            }
            SocketPermissionDenied => {
                let _ = write!(d, "Compare `ls -l {path}` (and the directory's mode) with handoff's user and groups (`id`); add handoff's user to the socket's group or fix the app's socket mode; check `getenforce` for SELinux.");
            }
            _ if keepalive_race => {
                let idle = ev.idle.map_or_else(|| "an unknown time".to_owned(), human);
                let _ = write!(d, "This is the keep-alive race: the app closed an idle keep-alive connection just as handoff reused it (idle for {idle}). Set pool_idle_timeout below the app's keep-alive timeout.");
            }
            ClosedBeforeResponse | ResetBeforeResponse => {
                d.push_str("The connection was new, so it is not the keep-alive race: check the app's logs for a crash, an OOM kill (dmesg) or a worker timeout (gunicorn timeout, php-fpm request_terminate_timeout).");
            }
            InvalidResponseHeader => {
                match &ev.first_bytes {
                    Some(b) => {
                        let _ = write!(d, "The upstream sent \"{b}\".");
                        if let Some(s) = sniff(&escape::unescape(b)) {
                            let _ = write!(d, " By its first bytes, {s}.");
                        }
                    }
                    None => d.push_str("No bytes were captured."),
                }
                let _ = write!(d, " {}", self.reason.hint_summary());
            }
            ResponseHeaderTooLarge => {
                if let Some(n) = ev.response_header_bytes {
                    let _ = write!(d, "The header was {n} bytes; ");
                }
                let _ = write!(d, "handoff's limit (max_response_header_bytes) is {} bytes and nginx's proxy_buffer_size here is {} bytes: trim the headers (Set-Cookie?) or raise both.", ev.header_limit, ev.nginx_buffer_bytes);
            }
            r if r.is_timeout() => {
                let timer = timer.unwrap_or_else(|| "a timer".to_owned());
                let _ = write!(d, "{timer} fired. nginx's own timeout for this phase must stay longer than that, or nginx gives up first and answers a bare 504. {}", r.hint_summary());
            }
            r => d.push_str(r.hint_summary()),
        }
        if !ev.findings.is_empty() {
            d.push_str(" Found: ");
            d.push_str(&ev.findings.join("; "));
            d.push('.');
        }
        if ev.phase == Phase::ResponseBody {
            let _ = write!(
                d,
                " {} body bytes had been received.",
                ev.response_bytes_received
            );
        }
        d
    }
}

impl Reason {
    /// The reason an nginx error-log line corresponds to, read by the same wording as
    /// [`Failure::nginx_equivalent`]: what handoff would have answered had it been asked.
    /// `None` for lines about something else. `closed_mid_header` reads as
    /// `closed_before_response` (nginx words both alike).
    pub fn from_nginx_log(line: &str) -> Option<Reason> {
        use Reason::*;
        let has = |s: &str| line.contains(s);
        let connecting = has("while connecting to upstream");
        Some(if has("upstream timed out") {
            if connecting {
                ConnectTimeout
            } else if has("while sending request to upstream") {
                RequestWriteTimeout
            } else if has("while reading response header from upstream") {
                ResponseHeaderTimeout
            } else if has("while reading upstream") {
                BodyReadTimeout
            } else {
                return None;
            }
        } else if has("no live upstreams") {
            NoHealthyUpstream
        } else if has("could not be resolved") {
            DnsFailed
        } else if has("upstream SSL certificate verify error") {
            TlsCertificateInvalid
        } else if has("SSL_do_handshake() failed") {
            TlsHandshakeFailed
        } else if has("Too many open files") || has("Too many open files in system") {
            ProxyInternalError
        } else if connecting && has("(111: Connection refused)") {
            ConnectRefused
        } else if connecting && has("(2: No such file or directory)") {
            SocketNotFound
        } else if connecting && has("(13: Permission denied)") {
            SocketPermissionDenied
        } else if connecting && has("(11: Resource temporarily unavailable)") {
            SocketBacklogFull
        } else if connecting && has("(99: Cannot assign requested address)") {
            LocalPortsExhausted
        } else if connecting
            && (has("(113: No route to host)") || has("(101: Network is unreachable)"))
        {
            ConnectUnreachable
        } else if has("while sending request to upstream") {
            RequestWriteFailed
        } else if has("upstream sent too big header") {
            ResponseHeaderTooLarge
        } else if has("upstream sent invalid header") {
            InvalidResponseHeader
        } else if has("upstream sent invalid chunked response") {
            InvalidResponseBody
        } else if has("upstream prematurely closed connection while reading response header") {
            ClosedBeforeResponse
        } else if has("(104: Connection reset by peer) while reading response header") {
            ResetBeforeResponse
        } else if has("upstream prematurely closed connection while reading upstream") {
            ClosedMidBody
        } else if has("(104: Connection reset by peer) while reading upstream") {
            ResetMidBody
        } else {
            return None;
        })
    }
}

/// The host part of a next hop (`tls://app.internal:8443` → `app.internal`).
fn host_of(hop: &str) -> &str {
    let h = hop.split_once("://").map_or(hop, |(_, rest)| rest);
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

#[cfg(test)]
mod tests;
