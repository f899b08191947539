//! HTTP/1.1 towards the upstream: the request head written anew from the client's, and
//! the errors of each step in the form classification reads.
//!
//! This is the protocol seam of the proxy loop. Everything protocol-specific about an
//! attempt is here: how the request head is written ([`write_request_head`]), how its body
//! is framed ([`Framing`]), and what each failure is called ([`fail`]). The loop itself
//! (`crate::conn`) only moves bytes and keeps time; a FastCGI upstream is another module
//! beside this one.
//!
//! The errors are pingora's `Error`s with the types and contexts pingora's own HTTP/1
//! client gives the same failures, so that `handoff_diag::classify` reads handoff's loop
//! exactly as it read pingora-proxy (its tests pin those strings).

use handoff_diag::HEADER_TOO_LARGE;
use handoff_http1::{BodyLength, ChunkedError, Field, FieldKind, RequestHead, ResponseError};
use pingora::{Error, ErrorType};

use crate::conn::io::Waited;

/// `Custom("InvalidChunk")`: pingora's name for broken chunked coding.
const INVALID_CHUNK: ErrorType = ErrorType::Custom("InvalidChunk");
/// `Custom("PrematureBodyEnd")`: pingora's name for a request body cut short.
pub(crate) const PREMATURE_BODY_END: ErrorType = ErrorType::Custom("PrematureBodyEnd");
/// At most this much of a bad response head is quoted in the error (pingora's limit).
const QUOTED_MAX: usize = 2048;

/// How the request body travels upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length`.
    Length(u64),
    /// Re-chunked as it is decoded from the client.
    Chunked,
}

impl From<BodyLength> for Framing {
    fn from(b: BodyLength) -> Self {
        match b {
            BodyLength::None => Framing::None,
            BodyLength::Length(n) => Framing::Length(n),
            BodyLength::Chunked => Framing::Chunked,
        }
    }
}

/// Writes the upstream request head for the client's `head` (parsed from `buf`) into
/// `out`: the request line as HTTP/1.1, the end-to-end fields `keep` accepts, `extra`'s
/// lines, a `Host` when an HTTP/1.0 client sent none, the body's framing, and the upgrade
/// fields when the client asked to switch protocols.
pub(crate) fn write_request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    buf: &[u8],
    default_host: &[u8],
    mut keep: impl FnMut(&Field) -> bool,
    extra: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(head.method.of(buf));
    out.push(b' ');
    out.extend_from_slice(head.target.of(buf));
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host = false;
    for f in head.end_to_end(buf) {
        if keep(f) {
            host |= f.kind == FieldKind::Host;
            field(out, f.name.of(buf), f.value.of(buf));
        }
    }
    if !host {
        field(out, b"Host", default_host);
    }
    extra(out);
    match Framing::from(head.body) {
        Framing::None => {}
        Framing::Length(n) => field(
            out,
            b"Content-Length",
            itoa::Buffer::new().format(n).as_bytes(),
        ),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if head.upgrade {
        if let Some(upgrade) = head.value(buf, FieldKind::Upgrade) {
            out.extend_from_slice(b"Connection: upgrade\r\n");
            field(out, b"Upgrade", upgrade);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: value` and CRLF.
pub(crate) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The failures of an attempt, named as pingora's HTTP/1 client names them.
pub(crate) mod fail {
    use super::*;

    /// Writing the request head failed or stalled.
    pub(crate) fn write_head(w: Waited) -> Box<Error> {
        write(w, "while writing request headers")
    }

    /// Writing the request body failed or stalled.
    pub(crate) fn write_body(w: Waited) -> Box<Error> {
        write(w, "while writing body")
    }

    fn write(w: Waited, context: &'static str) -> Box<Error> {
        match w {
            Waited::Timeout => {
                Error::explain(ErrorType::WriteTimedout, format!("{context} (timeout)"))
            }
            Waited::Io(e) => Error::because(ErrorType::WriteError, context, e),
            Waited::Closed => Error::explain(ErrorType::WriteError, context),
        }
        .into_up()
    }

    /// The connection ended or stalled before the response head was complete; `already`
    /// bytes of it had arrived.
    pub(crate) fn read_head(w: Waited, already: usize) -> Box<Error> {
        let context = || format!("while reading response headers, bytes already read: {already}");
        match w {
            Waited::Timeout => {
                Error::explain(ErrorType::ReadTimedout, "while reading response headers")
            }
            Waited::Closed => Error::explain(ErrorType::ConnectionClosed, context()),
            Waited::Io(e) => Error::because(ErrorType::ReadError, context(), e),
        }
        .into_up()
    }

    /// A response head that is not one to pass on; `buf` is what had arrived.
    pub(crate) fn bad_head(e: ResponseError, buf: &[u8]) -> Box<Error> {
        let quoted = || format!("buf: {}", buf[..buf.len().min(QUOTED_MAX)].escape_ascii());
        match e {
            ResponseError::TooLarge => Error::explain(
                HEADER_TOO_LARGE,
                "response header larger than max_response_header_bytes",
            ),
            ResponseError::TooManyFields => Error::because(
                ErrorType::InvalidHTTPHeader,
                quoted(),
                httparse::Error::TooManyHeaders,
            ),
            ResponseError::Invalid(cause) => {
                Error::because(ErrorType::InvalidHTTPHeader, quoted(), cause)
            }
            framing => Error::explain(ErrorType::InvalidHTTPHeader, framing.to_string()),
        }
        .into_up()
    }

    /// A 101 answer to a request that asked for no upgrade.
    pub(crate) fn unasked_upgrade() -> Box<Error> {
        Error::explain(
            ErrorType::InvalidHTTPHeader,
            "101 Switching Protocols to a request that asked for no upgrade",
        )
        .into_up()
    }

    /// The body ended or stalled early. `remaining` is what a `Content-Length` body still
    /// lacked (`None`: chunked, `read` bytes in).
    pub(crate) fn read_body(
        w: Waited,
        remaining: Option<u64>,
        read: u64,
        gap: std::time::Duration,
    ) -> Box<Error> {
        match (w, remaining) {
            (Waited::Timeout, _) => {
                Error::explain(ErrorType::ReadTimedout, format!("reading body, timeout: {gap:?}"))
            }
            (Waited::Closed, Some(left)) => Error::explain(
                ErrorType::ConnectionClosed,
                format!("Peer prematurely closed connection with {left} bytes of body remaining to read"),
            ),
            (Waited::Closed, None) => Error::explain(
                ErrorType::ConnectionClosed,
                format!("Connection prematurely closed without the termination chunk, read {read} bytes"),
            ),
            (Waited::Io(e), _) => Error::because(ErrorType::ReadError, "when reading body", e),
        }
        .into_up()
    }

    /// Broken chunked coding in the response body.
    pub(crate) fn bad_chunk(e: ChunkedError) -> Box<Error> {
        Error::explain(INVALID_CHUNK, format!("Invalid chunked encoding: {e}")).into_up()
    }

    /// The client went away (or its socket failed) while handoff read from or wrote to it.
    pub(crate) fn client_gone(w: Waited, context: &'static str) -> Box<Error> {
        match w {
            Waited::Io(e) => Error::because(ErrorType::WriteError, context, e),
            Waited::Timeout => Error::explain(ErrorType::WriteTimedout, context),
            Waited::Closed => Error::explain(ErrorType::ConnectionClosed, context),
        }
        .into_down()
    }
}
