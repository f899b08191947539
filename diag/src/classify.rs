//! Turning a pingora error plus the proxy's evidence into a named reason.
//!
//! pingora alone does not tell the reasons apart (`research/pingora.md` §2): a missing unix
//! socket is a generic `ConnectError`, permission denied an `InternalError`, oversized and
//! malformed headers share `InvalidHTTPHeader`, and "before any byte" vs "mid-header" differ
//! only in a context string. So [`classify`] reads the root `io::Error`'s errno, the
//! contexts of every pingora layer, and the phase the proxy tracked. The context strings are
//! not a stable API: pingora is pinned to `=0.9.1` and the tests copy its strings.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use pingora_error::{Error, ErrorSource, ErrorType};
use serde::Serialize;

use crate::escape::{self, FIRST_BYTES_MAX};
use crate::evidence::{Errno, Evidence, Timer, TimerFired};
use crate::reason::{Phase, Reason};

/// Raised by the proxy when a response header exceeds `max_response_header_bytes`.
pub const HEADER_TOO_LARGE: ErrorType = ErrorType::Custom("ResponseHeaderTooLarge");
/// Raised by the proxy when the upstream host name does not resolve.
pub const DNS_FAILED: ErrorType = ErrorType::Custom("DnsFailed");
/// Raised by the proxy when no upstream peer is healthy.
pub const NO_HEALTHY_UPSTREAM: ErrorType = ErrorType::Custom("NoHealthyUpstream");

/// pingora's body-decoding error types (`pingora-core/src/protocols/http/v1/body.rs`).
const INVALID_CHUNK: ErrorType = ErrorType::Custom("InvalidChunk");
const INVALID_TRAILER_END: ErrorType = ErrorType::Custom("InvalidTrailerEnd");
const PREMATURE_BODY_END: ErrorType = ErrorType::Custom("PrematureBodyEnd");

/// The longest `raw_error` kept: pingora's display of an invalid header carries the whole
/// header buffer (up to 1 MiB).
const RAW_ERROR_MAX: usize = 1024;
/// Deepest error chain walked; real chains are 2-4 links.
const CHAIN_MAX: usize = 32;

/// Who is to blame for an error.
#[derive(Debug)]
pub enum Verdict {
    /// The handoff to the upstream failed.
    Upstream(Box<Failure>),
    /// The client (nginx) went away; nothing to send, counted on its own.
    ClientAborted,
    /// The client sent something handoff could not proxy; never an upstream failure.
    ClientError,
}

/// A classified upstream failure with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The named cause.
    pub reason: Reason,
    /// What proves it.
    pub evidence: Evidence,
}

impl Failure {
    /// The status handoff answers when nothing has been sent yet.
    pub fn status(&self) -> u16 {
        self.reason.status()
    }
}

/// The finding for a TLS handshake that never completed.
const TLS_STALLED: &str = "the TCP connection was established but the TLS handshake did not \
     finish: is the upstream speaking TLS on this port, or is it a plain-HTTP server waiting \
     for a request?";

/// Classifies `err`, the error pingora reported, with the evidence the proxy gathered.
/// Fills `errno`, `timer`, `raw_error` and (for invalid headers) `first_bytes`.
pub fn classify(err: &Error, mut ev: Evidence) -> Verdict {
    use ErrorType::*;
    let io = find_io(err);
    let errno = io.and_then(io::Error::raw_os_error);
    let etype = err.etype();
    let at_connect = ev.phase <= Phase::Connect
        && matches!(
            etype,
            ConnectError | BindError | SocketError | InternalError
        );
    let in_body = ev.phase == Phase::ResponseBody || has_context(err, is_body_context);

    ev.errno = errno.map(Errno::from_code);
    ev.raw_error = escape::truncate(&err.to_string(), RAW_ERROR_MAX).to_owned();

    let reason = match etype {
        // The client (nginx) closed or broke its side: never the upstream's failure.
        _ if *err.esource() == ErrorSource::Downstream => {
            return match etype {
                ReadError | WriteError | ConnectionClosed => Verdict::ClientAborted,
                _ => Verdict::ClientError,
            };
        }
        // nginx's request body ended before its Content-Length: a client-side failure.
        t if *t == PREMATURE_BODY_END => return Verdict::ClientError,
        // handoff itself ran out of file descriptors or buffers.
        _ if matches!(
            errno,
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        ) =>
        {
            Reason::ProxyInternalError
        }
        // TCP RST to SYN, or a unix socket file with no listener behind it.
        ConnectRefused => Reason::ConnectRefused,
        // pingora's connect timer (TCP, UDS or the TLS handshake) or the kernel's ETIMEDOUT.
        ConnectTimedout => {
            ev.timer = Some(fired(Timer::Connect, ev.timeouts.connect));
            // pingora words the TLS handshake timer "connecting to server X, timeout T" and
            // the TCP one "timeout T connecting to server X": the socket was open, TLS stalled.
            if has_context(err, |c| {
                c.starts_with("connecting to server") && c.contains(", timeout")
            }) {
                ev.findings.push(TLS_STALLED.to_owned());
            }
            Reason::ConnectTimeout
        }
        // ENETUNREACH / EHOSTUNREACH.
        ConnectNoRoute => Reason::ConnectUnreachable,
        // Unix socket path missing: pingora's generic ConnectError with ENOENT.
        _ if at_connect && errno == Some(libc::ENOENT) => Reason::SocketNotFound,
        // Unix socket not accessible: pingora maps EACCES (and EPERM) to InternalError.
        _ if at_connect && matches!(errno, Some(libc::EACCES | libc::EPERM)) => {
            Reason::SocketPermissionDenied
        }
        // Linux answers EAGAIN to a unix-socket connect when the listen backlog is full.
        _ if at_connect && errno == Some(libc::EAGAIN) => Reason::SocketBacklogFull,
        // No ephemeral port left (pingora: BindError).
        _ if at_connect && matches!(errno, Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE)) => {
            Reason::LocalPortsExhausted
        }
        // Connect errors whose errno names a known reason under another pingora type.
        _ if at_connect && errno == Some(libc::ECONNREFUSED) => Reason::ConnectRefused,
        _ if at_connect && errno == Some(libc::ETIMEDOUT) => {
            ev.timer = Some(fired(Timer::Connect, ev.timeouts.connect));
            Reason::ConnectTimeout
        }
        _ if at_connect && matches!(errno, Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => {
            Reason::ConnectUnreachable
        }
        // Certificate rejected by rustls ("invalid peer certificate: ..."): its cause, with
        // the dates or names, becomes a finding.
        InvalidCert => {
            ev.findings.extend(certificate_finding(err));
            Reason::TlsCertificateInvalid
        }
        TLSHandshakeFailure | HandshakeError | TLSWantX509Lookup
            if has_text(err, "invalid peer certificate") =>
        {
            ev.findings.extend(certificate_finding(err));
            Reason::TlsCertificateInvalid
        }
        // Any other handshake failure: plaintext on a TLS port, no shared protocol, ...
        TLSHandshakeFailure | HandshakeError | TLSWantX509Lookup => Reason::TlsHandshakeFailed,
        TLSHandshakeTimedout => {
            ev.timer = Some(fired(Timer::Connect, ev.timeouts.connect));
            Reason::TlsHandshakeFailed
        }
        // The proxy's own header-size limit.
        t if *t == HEADER_TOO_LARGE => Reason::ResponseHeaderTooLarge,
        // pingora's hard limits: 1 MiB of header, or more than 256 header lines.
        InvalidHTTPHeader
            if has_context(err, |c| c.starts_with("Response header larger than"))
                || has_text(err, "too many headers") =>
        {
            Reason::ResponseHeaderTooLarge
        }
        // A header-type error while reading the body is a body framing error.
        InvalidHTTPHeader | H1Error if in_body => Reason::InvalidResponseBody,
        // Not HTTP/1.x: keep the first bytes pingora quoted, for sniffing the protocol.
        InvalidHTTPHeader | H1Error => {
            if ev.first_bytes.is_none() {
                ev.first_bytes = first_bytes_from_context(err);
            }
            Reason::InvalidResponseHeader
        }
        // The upstream stopped reading the request.
        WriteTimedout => {
            ev.timer = Some(fired(Timer::Write, ev.timeouts.write));
            Reason::RequestWriteTimeout
        }
        // EPIPE / ECONNRESET while sending the request.
        WriteError => Reason::RequestWriteFailed,
        // pingora's per-read timer, mid-body.
        ReadTimedout if in_body => {
            ev.timer = Some(read_timer(&ev, Phase::ResponseBody));
            Reason::BodyReadTimeout
        }
        // pingora's per-read timer, waiting for the header.
        ReadTimedout => {
            ev.timer = Some(read_timer(&ev, Phase::ResponseHeader));
            Reason::ResponseHeaderTimeout
        }
        // EOF after the header: truncated body.
        ConnectionClosed if in_body => Reason::ClosedMidBody,
        // EOF or RST with nothing of the response read while the request body was still
        // being sent: the app hung up on the upload (the proxy moves the phase on to
        // `response_header` once the whole request has gone out).
        ConnectionClosed | ReadError
            if ev.phase == Phase::Request && bytes_already_read(err).unwrap_or(0) == 0 =>
        {
            Reason::RequestWriteFailed
        }
        // EOF before the header was complete: the context says how much had arrived.
        ConnectionClosed => match bytes_already_read(err).or(ev.response_header_bytes) {
            Some(n) if n > 0 => Reason::ClosedMidHeader,
            _ => Reason::ClosedBeforeResponse,
        },
        // RST (ECONNRESET) or another read error after the header; the errno tells which.
        ReadError if in_body => Reason::ResetMidBody,
        // RST (or another read error) before the header was complete.
        ReadError => Reason::ResetBeforeResponse,
        // Broken chunked encoding or trailers.
        t if *t == INVALID_CHUNK || *t == INVALID_TRAILER_END => Reason::InvalidResponseBody,
        // Errors the proxy raises itself.
        t if *t == DNS_FAILED => Reason::DnsFailed,
        t if *t == NO_HEALTHY_UPSTREAM => Reason::NoHealthyUpstream,
        // pingora's InternalError without an errno that names the cause.
        InternalError => Reason::ProxyInternalError,
        // No rule matched: the raw error is kept so the gap can be closed.
        _ => Reason::Unclassified,
    };
    Verdict::Upstream(Box::new(Failure {
        reason,
        evidence: ev,
    }))
}

/// The timer behind a read timeout: the proxy loop times the response header with
/// `header_timeout`, a deadline from the request's write, and the body with
/// `read_timeout`, the longest gap between two reads. The phase says which one ran.
fn read_timer(ev: &Evidence, phase: Phase) -> TimerFired {
    match phase {
        Phase::ResponseBody => fired(Timer::Read, ev.timeouts.read),
        _ => fired(Timer::Header, ev.timeouts.header),
    }
}

fn fired(timer: Timer, after: Duration) -> TimerFired {
    TimerFired { timer, after }
}

/// The next link of an error chain: a pingora layer's `cause`, the error inside a
/// `Box<Error>` (how `more_context` and `because` nest pingora errors), or `source()`.
fn next_link<'a>(cur: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(pe) = cur.downcast_ref::<Error>() {
        return pe.cause.as_deref().map(|c| c as &(dyn StdError + 'static));
    }
    if let Some(pe) = cur.downcast_ref::<Box<Error>>() {
        return Some(pe.as_ref());
    }
    cur.source()
}

/// Every link of the chain, `err` first.
fn chain<'a>(err: &'a Error) -> impl Iterator<Item = &'a (dyn StdError + 'static)> + 'a {
    let first: &'a (dyn StdError + 'static) = err;
    std::iter::successors(Some(first), |&c| next_link(c)).take(CHAIN_MAX)
}

/// Every pingora layer's context string, outermost first.
fn contexts<'a>(err: &'a Error) -> impl Iterator<Item = &'a str> + 'a {
    chain(err).filter_map(|l| {
        let pe = l
            .downcast_ref::<Error>()
            .or_else(|| l.downcast_ref::<Box<Error>>().map(|b| &**b))?;
        pe.context.as_ref().map(|c| c.as_str())
    })
}

/// The first `io::Error` anywhere in the chain (pingora.md §2.4: for TCP it sits below
/// the crate-private `ConnectErrorDetails`, one `source()` hop down).
fn find_io(err: &Error) -> Option<&io::Error> {
    chain(err).find_map(|l| l.downcast_ref::<io::Error>())
}

fn has_context(err: &Error, f: impl Fn(&str) -> bool) -> bool {
    contexts(err).any(f)
}

/// Whether any context or non-pingora cause's message contains `needle`.
fn has_text(err: &Error, needle: &str) -> bool {
    has_context(err, |c| c.contains(needle))
        || chain(err)
            .filter(|l| !l.is::<Error>() && !l.is::<Box<Error>>())
            .any(|l| l.to_string().contains(needle))
}

/// The finding for a rejected certificate, from whichever link of the chain carries
/// rustls's text.
fn certificate_finding(err: &Error) -> Option<String> {
    contexts(err)
        .find_map(crate::tls::certificate_finding)
        .or_else(|| {
            chain(err)
                .filter(|l| !l.is::<Error>() && !l.is::<Box<Error>>())
                .find_map(|l| crate::tls::certificate_finding(&l.to_string()))
        })
}

/// Contexts only pingora's body reader produces (`v1/body.rs`, `v1/client.rs`).
fn is_body_context(c: &str) -> bool {
    c.contains("bytes of body remaining")
        || c.contains("without the termination chunk")
        || c.starts_with("when reading body")
        || c.starts_with("reading body")
}

/// N from "while reading response headers, bytes already read: N" (`v1/client.rs`).
fn bytes_already_read(err: &Error) -> Option<usize> {
    contexts(err).find_map(|c| {
        let (_, n) = c.split_once("bytes already read: ")?;
        let digits = n
            .find(|ch: char| !ch.is_ascii_digit())
            .map_or(n, |end| &n[..end]);
        digits.parse().ok()
    })
}

/// The first bytes quoted by pingora's "buf: <escape_ascii>" context, re-escaped in
/// handoff's form and cut to [`FIRST_BYTES_MAX`] raw bytes.
fn first_bytes_from_context(err: &Error) -> Option<String> {
    let buf = contexts(err).find_map(|c| c.strip_prefix("buf: "))?;
    // Each raw byte is at most 4 escaped characters: this bounds the work on a 1 MiB buffer.
    let head = escape::truncate(buf, FIRST_BYTES_MAX * 4);
    let mut raw = escape::unescape(head);
    raw.truncate(FIRST_BYTES_MAX);
    Some(escape::escape_bytes(&raw))
}

#[cfg(test)]
mod tests;
