//! Every classification branch, with errors built the way pingora 0.9.1 builds them; the
//! context strings are copied from `pingora-core-0.9.1/src/protocols/http/v1/{client,body}.rs`.

use std::fmt;
use std::io;
use std::time::Duration;

use pingora_error::{BError, Error, ErrorType::*, RetryType};

use super::*;
use crate::evidence::Timeouts;

/// A stand-in for pingora's crate-private `ConnectErrorDetails`: the io::Error is one
/// `source()` hop below it.
#[derive(Debug)]
struct ConnectDetails(io::Error);

impl fmt::Display for ConnectDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (local address 127.0.0.1:40000)", self.0)
    }
}

impl StdError for ConnectDetails {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

/// A non-io cause with a message, like `httparse::Error`.
#[derive(Debug)]
struct Msg(&'static str);

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Msg {}

fn os(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn evidence(phase: Phase) -> Evidence {
    Evidence {
        upstream: "app".into(),
        next_hop: "127.0.0.1:3000".into(),
        phase,
        attempt: 1,
        timeouts: Timeouts {
            connect: Duration::from_secs(3),
            header: Duration::from_secs(55),
            read: Duration::from_secs(55),
            write: Duration::from_secs(55),
        },
        ..Evidence::default()
    }
}

fn failure(err: &BError, ev: Evidence) -> Failure {
    match classify(err, ev) {
        Verdict::Upstream(f) => *f,
        v => panic!("expected an upstream failure, got {v:?} for {err}"),
    }
}

fn reason(err: &BError, phase: Phase) -> Reason {
    failure(err, evidence(phase)).reason
}

/// The header-read errors of `v1/client.rs`, with the retry flag pingora sets.
fn header_read(etype: ErrorType, already_read: usize, cause: Option<io::Error>) -> BError {
    let ctx = format!("while reading response headers, bytes already read: {already_read}");
    let mut e = match cause {
        Some(io) => Error::because(etype, ctx, io),
        None => Error::explain(etype, ctx),
    };
    e.retry = RetryType::ReusedOnly;
    e.into_up()
}

/// Errors from nginx's side are never upstream failures.
#[test]
fn downstream_errors_are_the_clients() {
    for etype in [ReadError, WriteError, ConnectionClosed] {
        let e = Error::because(
            etype,
            "during HTTP body-or-idle state",
            os(libc::ECONNRESET),
        )
        .into_down();
        assert!(matches!(
            classify(&e, evidence(Phase::ResponseBody)),
            Verdict::ClientAborted
        ));
        let wrapped = e.more_context("error while proxying");
        assert!(matches!(
            classify(&wrapped, evidence(Phase::ResponseBody)),
            Verdict::ClientAborted
        ));
    }
    let e = Error::explain(InvalidHTTPHeader, "invalid request").into_down();
    assert!(matches!(
        classify(&e, evidence(Phase::Select)),
        Verdict::ClientError
    ));
    let e = Error::explain(PREMATURE_BODY_END, "Content-length: 10 bytes written: 3").into_up();
    assert!(matches!(
        classify(&e, evidence(Phase::Request)),
        Verdict::ClientError
    ));
}

/// TCP refused: errno found below the ConnectErrorDetails-like wrapper and more_context.
#[test]
fn tcp_refused_through_the_chain() {
    let e = Error::because(
        ConnectRefused,
        "Fail to connect to 127.0.0.1:1",
        ConnectDetails(os(libc::ECONNREFUSED)),
    )
    .into_up()
    .more_context("Fail to connect to upstream");
    let f = failure(&e, evidence(Phase::Connect));
    assert_eq!(f.reason, Reason::ConnectRefused);
    assert_eq!(f.evidence.errno, Some(Errno::from_code(libc::ECONNREFUSED)));
    assert!(
        f.evidence.raw_error.contains("ConnectRefused"),
        "{}",
        f.evidence.raw_error
    );
}

/// A unix socket file with no listener is refused too, with the io::Error directly below.
#[test]
fn uds_stale_socket_is_refused() {
    let e = Error::because(
        ConnectRefused,
        "Fail to connect to unix:/run/app.sock",
        os(libc::ECONNREFUSED),
    )
    .into_up();
    assert_eq!(reason(&e, Phase::Connect), Reason::ConnectRefused);
}

/// Connect timeouts (TCP and TLS wording) name the connect timer and its value.
#[test]
fn connect_timeouts() {
    for ctx in [
        "timeout 500ms connecting to server 127.0.0.1:3000",
        "connecting to server 127.0.0.1:3000, timeout 500ms",
    ] {
        let e = Error::explain(ConnectTimedout, ctx).into_up();
        let f = failure(&e, evidence(Phase::Connect));
        assert_eq!(f.reason, Reason::ConnectTimeout);
        assert_eq!(
            f.evidence.timer,
            Some(TimerFired {
                timer: Timer::Connect,
                after: Duration::from_secs(3)
            })
        );
    }
    let kernel = Error::because(
        ConnectTimedout,
        "Fail to connect",
        ConnectDetails(os(libc::ETIMEDOUT)),
    )
    .into_up();
    assert_eq!(reason(&kernel, Phase::Connect), Reason::ConnectTimeout);
}

/// ENETUNREACH / EHOSTUNREACH.
#[test]
fn no_route() {
    let e = Error::because(
        ConnectNoRoute,
        "Fail to connect to 10.9.9.9:80",
        ConnectDetails(os(libc::EHOSTUNREACH)),
    )
    .into_up();
    assert_eq!(reason(&e, Phase::Connect), Reason::ConnectUnreachable);
}

/// The unix-socket errnos pingora hides behind ConnectError / InternalError / BindError.
#[test]
fn connect_errnos() {
    let cases = [
        (ConnectError, libc::ENOENT, Reason::SocketNotFound),
        (InternalError, libc::EACCES, Reason::SocketPermissionDenied),
        (ConnectError, libc::EAGAIN, Reason::SocketBacklogFull),
        (BindError, libc::EADDRNOTAVAIL, Reason::LocalPortsExhausted),
        (
            ConnectError,
            libc::EADDRNOTAVAIL,
            Reason::LocalPortsExhausted,
        ),
        (SocketError, libc::EMFILE, Reason::ProxyInternalError),
        (ConnectError, libc::ENFILE, Reason::ProxyInternalError),
        (ConnectError, libc::ECONNREFUSED, Reason::ConnectRefused),
        (ConnectError, libc::ENETUNREACH, Reason::ConnectUnreachable),
    ];
    for (etype, errno, want) in cases {
        let e = Error::because(
            etype.clone(),
            "Fail to connect to unix:/run/app.sock",
            os(errno),
        )
        .into_up();
        let f = failure(&e, evidence(Phase::Connect));
        assert_eq!(f.reason, want, "{etype:?} {errno}");
        assert_eq!(f.evidence.errno.map(|e| e.code), Some(errno));
        // Wrapped the way error_while_proxy / fail_to_connect do.
        assert_eq!(
            reason(&e.more_context("Fail to proxy"), Phase::Connect),
            want
        );
    }
    // The proxy had not updated the phase yet: still a connect error.
    let e = Error::because(ConnectError, "x", os(libc::ENOENT)).into_up();
    assert_eq!(reason(&e, Phase::Select), Reason::SocketNotFound);
}

/// TLS: certificate problems apart from other handshake failures.
#[test]
fn tls() {
    let cert = Error::explain(
        TLSHandshakeFailure,
        "TLS connect() failed: invalid peer certificate: UnknownIssuer, SNI: app.internal",
    )
    .into_up();
    assert_eq!(reason(&cert, Phase::Connect), Reason::TlsCertificateInvalid);
    let corrupt = Error::because(
        TLSHandshakeFailure,
        "TLS connect() failed: received corrupt message of type InvalidContentType, SNI: app",
        Msg("local address 127.0.0.1:5000"),
    )
    .into_up();
    assert_eq!(reason(&corrupt, Phase::Connect), Reason::TlsHandshakeFailed);
    assert_eq!(
        reason(
            &Error::explain(InvalidCert, "bad cert").into_up(),
            Phase::Connect
        ),
        Reason::TlsCertificateInvalid
    );
    assert_eq!(
        reason(
            &Error::explain(HandshakeError, "alert").into_up(),
            Phase::Connect
        ),
        Reason::TlsHandshakeFailed
    );
    let stalled = Error::explain(TLSHandshakeTimedout, "handshake").into_up();
    let f = failure(&stalled, evidence(Phase::Connect));
    assert_eq!(f.reason, Reason::TlsHandshakeFailed);
    assert_eq!(f.evidence.timer.map(|t| t.timer), Some(Timer::Connect));
}

/// Oversized headers: the proxy's own limit, pingora's 1 MiB cap and its 256-line cap.
#[test]
fn header_too_large() {
    let own =
        Error::explain(HEADER_TOO_LARGE, "response header 70000 bytes, limit 65536").into_up();
    assert_eq!(
        reason(&own, Phase::ResponseBody),
        Reason::ResponseHeaderTooLarge
    );
    let cap = Error::explain(InvalidHTTPHeader, "Response header larger than 1048575").into_up();
    assert_eq!(reason(&cap, Phase::Request), Reason::ResponseHeaderTooLarge);
    let lines = Error::because(
        InvalidHTTPHeader,
        "buf: HTTP/1.1 200 OK\\r\\nA: b\\r\\n",
        Msg("too many headers"),
    )
    .into_up();
    assert_eq!(
        reason(&lines.more_context("upstream"), Phase::Request),
        Reason::ResponseHeaderTooLarge
    );
}

/// Invalid headers keep up to 64 escaped bytes of what the upstream sent.
#[test]
fn invalid_header_first_bytes() {
    let sent = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03";
    let ctx = format!("buf: {}", sent.escape_ascii());
    let e = Error::because(InvalidHTTPHeader, ctx, Msg("invalid HTTP version")).into_up();
    let f = failure(&e, evidence(Phase::Request));
    assert_eq!(f.reason, Reason::InvalidResponseHeader);
    let first = f.evidence.first_bytes.expect("first bytes");
    assert_eq!(escape::unescape(&first), sent);

    let long = vec![b'\n'; 5000];
    let e = Error::because(
        InvalidHTTPHeader,
        format!("buf: {}", long.escape_ascii()),
        Msg("invalid response status"),
    )
    .into_up();
    let f = failure(&e, evidence(Phase::Request));
    assert_eq!(
        escape::unescape(f.evidence.first_bytes.as_deref().unwrap()).len(),
        FIRST_BYTES_MAX
    );
    assert!(f.evidence.raw_error.len() <= RAW_ERROR_MAX);

    // Bytes the proxy captured itself win; errors without a buffer leave none.
    let mut ev = evidence(Phase::Request);
    ev.first_bytes = Some("SSH-2.0".into());
    assert_eq!(
        failure(&e, ev).evidence.first_bytes.as_deref(),
        Some("SSH-2.0")
    );
    let cl = Error::explain(InvalidHTTPHeader, "invalid Content-Length header").into_up();
    let f = failure(&cl, evidence(Phase::Request));
    assert_eq!(
        (f.reason, f.evidence.first_bytes),
        (Reason::InvalidResponseHeader, None)
    );
}

/// Body-phase framing errors.
#[test]
fn invalid_body() {
    let chunk =
        Error::explain(INVALID_CHUNK, "Invalid chunked encoding: InvalidChunkSize").into_up();
    assert_eq!(
        reason(&chunk, Phase::ResponseBody),
        Reason::InvalidResponseBody
    );
    let trailer = Error::explain(
        INVALID_TRAILER_END,
        "Invalid chunked encoding: b\"x\" was not CRLF",
    )
    .into_up();
    assert_eq!(
        reason(&trailer, Phase::ResponseBody),
        Reason::InvalidResponseBody
    );
    let header_type = Error::explain(InvalidHTTPHeader, "invalid Content-Length header").into_up();
    assert_eq!(
        reason(&header_type, Phase::ResponseBody),
        Reason::InvalidResponseBody
    );
}

/// Request writes: timeouts name the write timer, other errors are write failures.
#[test]
fn request_write() {
    let t = Error::because(
        WriteTimedout,
        "while writing request headers (timeout)",
        io::Error::from(io::ErrorKind::TimedOut),
    )
    .into_up();
    let f = failure(&t, evidence(Phase::Request));
    assert_eq!(f.reason, Reason::RequestWriteTimeout);
    assert_eq!(
        f.evidence.timer,
        Some(TimerFired {
            timer: Timer::Write,
            after: Duration::from_secs(55)
        })
    );
    assert_eq!(f.evidence.errno, None);
    for errno in [libc::EPIPE, libc::ECONNRESET] {
        let e = Error::because(WriteError, "while writing body", os(errno)).into_up();
        assert_eq!(reason(&e, Phase::Request), Reason::RequestWriteFailed);
    }
    let h = Error::because(WriteError, "while writing request headers", os(libc::EPIPE)).into_up();
    assert_eq!(reason(&h, Phase::Request), Reason::RequestWriteFailed);
}

/// The header is timed by `header_timeout` (a deadline) and the body by `read_timeout` (a
/// gap): the phase names the timer, whatever the two values.
#[test]
fn read_timeouts_name_the_timer() {
    let header = Error::explain(ReadTimedout, "while reading response headers").into_up();
    let body = Error::explain(ReadTimedout, "reading body, timeout: 800ms").into_up();
    let secs = Duration::from_secs;
    let header_timeout = Reason::ResponseHeaderTimeout;
    let cases = [
        (
            &header,
            Phase::Request,
            30,
            55,
            header_timeout,
            Timer::Header,
            30,
        ),
        (
            &header,
            Phase::Request,
            55,
            10,
            header_timeout,
            Timer::Header,
            55,
        ),
        (
            &header,
            Phase::ResponseHeader,
            55,
            55,
            header_timeout,
            Timer::Header,
            55,
        ),
        (
            &header,
            Phase::ResponseHeader,
            20,
            5,
            header_timeout,
            Timer::Header,
            20,
        ),
        (
            &body,
            Phase::ResponseBody,
            55,
            55,
            Reason::BodyReadTimeout,
            Timer::Read,
            55,
        ),
        (
            &body,
            Phase::ResponseBody,
            5,
            55,
            Reason::BodyReadTimeout,
            Timer::Read,
            55,
        ),
        // The body context alone marks the body phase.
        (
            &body,
            Phase::Request,
            55,
            30,
            Reason::BodyReadTimeout,
            Timer::Read,
            30,
        ),
    ];
    for (e, phase, h, r, want, timer, after) in cases {
        let mut ev = evidence(phase);
        ev.timeouts.header = secs(h);
        ev.timeouts.read = secs(r);
        let f = failure(e, ev);
        assert_eq!(f.reason, want);
        assert_eq!(
            f.evidence.timer,
            Some(TimerFired {
                timer,
                after: secs(after)
            }),
            "{h} {r}"
        );
    }
}

/// EOF: "bytes already read: 0" before the response, N>0 mid-header, body phase mid-body.
#[test]
fn connection_closed() {
    let zero = header_read(ConnectionClosed, 0, None);
    assert_eq!(
        reason(&zero, Phase::ResponseHeader),
        Reason::ClosedBeforeResponse
    );
    assert_eq!(
        reason(
            &header_read(ConnectionClosed, 0, None).more_context("Peer closed"),
            Phase::ResponseHeader
        ),
        Reason::ClosedBeforeResponse
    );
    let partial = header_read(ConnectionClosed, 27, None);
    assert_eq!(
        reason(&partial, Phase::ResponseHeader),
        Reason::ClosedMidHeader
    );
    assert_eq!(
        reason(
            &partial.more_context("x").more_context("y"),
            Phase::ResponseHeader
        ),
        Reason::ClosedMidHeader
    );

    let remaining = Error::explain(
        ConnectionClosed,
        "Peer prematurely closed connection with 90 bytes of body remaining to read",
    )
    .into_up();
    assert_eq!(
        reason(&remaining, Phase::ResponseBody),
        Reason::ClosedMidBody
    );
    assert_eq!(
        reason(&remaining, Phase::ResponseHeader),
        Reason::ClosedMidBody
    );
    let chunked = Error::explain(
        ConnectionClosed,
        "Connection prematurely closed without the termination chunk, read 5 bytes",
    )
    .into_up();
    assert_eq!(reason(&chunked, Phase::ResponseBody), Reason::ClosedMidBody);
    // The phase is authoritative.
    assert_eq!(reason(&zero, Phase::ResponseBody), Reason::ClosedMidBody);

    // No context: the byte counters decide.
    let bare = Error::new_up(ConnectionClosed);
    assert_eq!(
        reason(&bare, Phase::ResponseHeader),
        Reason::ClosedBeforeResponse
    );
    let mut ev = evidence(Phase::ResponseHeader);
    ev.response_header_bytes = Some(12);
    assert_eq!(failure(&bare, ev).reason, Reason::ClosedMidHeader);
}

/// RST: before the response or mid-body, by phase; errno or io kind.
#[test]
fn resets() {
    let before = header_read(ReadError, 0, Some(os(libc::ECONNRESET)));
    let f = failure(&before, evidence(Phase::ResponseHeader));
    assert_eq!(f.reason, Reason::ResetBeforeResponse);
    assert_eq!(f.evidence.errno.map(|e| e.name), Some("ECONNRESET"));
    let kind = header_read(ReadError, 0, Some(io::ErrorKind::ConnectionReset.into()));
    assert_eq!(
        reason(&kind, Phase::ResponseHeader),
        Reason::ResetBeforeResponse
    );
    let body = Error::because(ReadError, "when reading body", os(libc::ECONNRESET)).into_up();
    assert_eq!(reason(&body, Phase::ResponseBody), Reason::ResetMidBody);
    assert_eq!(reason(&body, Phase::ResponseHeader), Reason::ResetMidBody);
    let tls = header_read(ReadError, 0, Some(io::Error::other("tls decode")));
    assert_eq!(
        reason(&tls, Phase::ResponseHeader),
        Reason::ResetBeforeResponse
    );
}

/// The proxy's own error types, InternalError and the catch-all.
#[test]
fn own_types_internal_and_unclassified() {
    assert_eq!(
        reason(
            &Error::explain(DNS_FAILED, "app.internal").into_up(),
            Phase::Connect
        ),
        Reason::DnsFailed
    );
    assert_eq!(
        reason(
            &Error::explain(NO_HEALTHY_UPSTREAM, "all down").into_in(),
            Phase::Select
        ),
        Reason::NoHealthyUpstream
    );
    assert_eq!(
        reason(
            &Error::explain(InternalError, "bug").into_in(),
            Phase::Request
        ),
        Reason::ProxyInternalError
    );
    // EACCES outside connect is not a socket permission problem.
    let late = Error::because(InternalError, "x", os(libc::EACCES)).into_in();
    assert_eq!(
        reason(&late, Phase::ResponseBody),
        Reason::ProxyInternalError
    );
    let h2 = Error::explain(H2Error, "GOAWAY").into_up();
    let f = failure(&h2, evidence(Phase::Request));
    assert_eq!(f.reason, Reason::Unclassified);
    assert!(f.evidence.raw_error.contains("H2Error") && f.evidence.raw_error.contains("GOAWAY"));
}

/// EOF or RST while the request body was still going out is a failed request write.
#[test]
fn hang_up_during_the_upload_is_a_request_write_failure() {
    let closed = Error::explain(
        ErrorType::ConnectionClosed,
        "while reading response headers, bytes already read: 0",
    )
    .into_up();
    assert_eq!(reason(&closed, Phase::Request), Reason::RequestWriteFailed);
    assert_eq!(
        reason(&closed, Phase::ResponseHeader),
        Reason::ClosedBeforeResponse
    );
    let reset = Error::because(
        ErrorType::ReadError,
        "while reading response headers, bytes already read: 0",
        std::io::Error::from_raw_os_error(libc::ECONNRESET),
    )
    .into_up();
    assert_eq!(reason(&reset, Phase::Request), Reason::RequestWriteFailed);
    assert_eq!(
        reason(&reset, Phase::ResponseHeader),
        Reason::ResetBeforeResponse
    );
}
