//! The request head: parsed in place, framed by RFC 9112 §6, and refused with a named
//! [`RequestError`] wherever two parties could read its framing two ways.
//!
//! The request line is parsed here rather than by httparse: nginx forwards targets that
//! httparse refuses (`"`, `<`, `>`, `` ` ``, `{`, `}` and bytes above 0x7F), and what
//! nginx passes is the app's business. What could split or smuggle a request (controls,
//! spaces, a line that is not `METHOD SP target SP version`) is still refused. The fields
//! are parsed by httparse, which refuses obsolete line folding and whitespace before the
//! colon (RFC 9112 §5.1-2).

use crate::fields::{self, ConnectionOptions, Field, FieldKind, Span};
use crate::{BodyLength, Limits, Parsed, Version, MAX_FIELDS};

/// A request method, with the ones the proxy treats specially named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// `GET`.
    #[default]
    Get,
    /// `HEAD`: the response has no body, whatever its framing says.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `OPTIONS`.
    Options,
    /// `TRACE`.
    Trace,
    /// `CONNECT`: a tunnel request, which a reverse proxy refuses.
    Connect,
    /// `PATCH`.
    Patch,
    /// Any other token.
    Other,
}

impl Method {
    fn of(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// Safe to send twice (RFC 9110 §9.2.2): the only requests handoff retries.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// Why a request head was refused. Each maps to the status nginx answers for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request line alone does not fit in the header limit.
    #[error("request line longer than the request header limit")]
    LineTooLong,
    /// The head does not fit in the header limit.
    #[error("request header larger than the request header limit")]
    TooLarge,
    /// More header fields than handoff parses.
    #[error("more than {MAX_FIELDS} header fields")]
    TooManyFields,
    /// Not `METHOD SP request-target SP HTTP-version`.
    #[error("malformed request line")]
    BadRequestLine,
    /// A field httparse refused (a bad name, a control in a value, line folding).
    #[error("malformed header field ({0})")]
    BadField(httparse::Error),
    /// Not HTTP/1.0 or HTTP/1.1 (HTTP/2's preface included).
    #[error("HTTP version not supported")]
    Version,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    #[error("HTTP/1.1 request without Host")]
    NoHost,
    /// Two `Host` fields.
    #[error("more than one Host")]
    DuplicateHost,
    /// A `Host` value that cannot be a host (empty, a path, a control).
    #[error("invalid Host")]
    BadHost,
    /// A `Content-Length` that is not 1*DIGIT.
    #[error("invalid Content-Length")]
    BadContentLength,
    /// Two `Content-Length` fields, equal or not (nginx refuses both).
    #[error("more than one Content-Length")]
    DuplicateContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: the classic smuggling shape.
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    /// `Transfer-Encoding` in an HTTP/1.0 request (RFC 9112 §6.1: faulty framing).
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    ChunkedHttp10,
    /// A transfer coding other than exactly `chunked`.
    #[error("unsupported Transfer-Encoding")]
    UnsupportedCoding,
}

impl RequestError {
    /// The status to answer with (the connection is closed afterwards).
    pub fn status(self) -> u16 {
        match self {
            RequestError::LineTooLong => 414,
            RequestError::TooLarge | RequestError::TooManyFields => 431,
            RequestError::Version => 505,
            RequestError::UnsupportedCoding => 501,
            _ => 400,
        }
    }
}

/// A parsed request head. Reused from request to request on one connection, so that its
/// vectors keep their allocations.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// The method token.
    pub method: Span,
    /// What the method is.
    pub kind: Method,
    /// The request target as sent.
    pub target: Span,
    /// The version of the request line.
    pub version: Version,
    /// Every field, in order.
    pub fields: Vec<Field>,
    /// The `Connection` options.
    pub connection: ConnectionOptions,
    /// How the body is delimited.
    pub body: BodyLength,
    /// `Expect: 100-continue` (HTTP/1.1 only): the client waits before sending its body.
    pub expect_continue: bool,
    /// Asks to switch protocols (`Connection: upgrade` with an `Upgrade` field, HTTP/1.1).
    pub upgrade: bool,
    /// Index in `fields` of `X-Request-Id`, if there is one.
    pub request_id: Option<usize>,
    /// The head's length in the buffer, blank line (and skipped leading CRLFs) included.
    pub len: usize,
}

impl RequestHead {
    /// Parses the head at the start of `buf`.
    ///
    /// `Ok(Parsed::Partial)` asks for more bytes; once `buf` holds `limits.head_bytes`
    /// without a complete head, that is [`RequestError::TooLarge`] (or `LineTooLong`).
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<Parsed, RequestError> {
        let full = buf.len() >= limits.head_bytes;
        // RFC 9112 §2.2: ignore empty lines before the request line.
        let skip = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(buf.len());
        let Some(line_len) = buf[skip..].iter().position(|&b| b == b'\n') else {
            return if full {
                Err(RequestError::LineTooLong)
            } else {
                Ok(Parsed::Partial)
            };
        };
        let line_end = skip + line_len + 1;
        if line_end > limits.head_bytes {
            return Err(RequestError::LineTooLong);
        }
        self.request_line(buf, skip, line_end)?;

        let mut raw = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let (fields_len, raw) = match httparse::parse_headers(&buf[line_end..], &mut raw) {
            Ok(httparse::Status::Complete((n, raw))) => (n, raw),
            Ok(httparse::Status::Partial) if full => return Err(RequestError::TooLarge),
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyFields),
            Err(e) => return Err(RequestError::BadField(e)),
        };
        self.len = line_end + fields_len;
        if self.len > limits.head_bytes {
            return Err(RequestError::TooLarge);
        }
        self.fields.clear();
        self.fields.extend(raw.iter().map(|h| Field {
            name: Span::within(buf, h.name.as_bytes()),
            value: Span::within(buf, h.value.trim_ascii()),
            kind: FieldKind::of(h.name.as_bytes()),
        }));
        self.frame(buf)?;
        Ok(Parsed::Complete)
    }

    /// `method SP request-target SP HTTP-version [CR] LF` in `buf[start..end]`.
    fn request_line(&mut self, buf: &[u8], start: usize, end: usize) -> Result<(), RequestError> {
        let line = &buf[start..end];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut parts = line.splitn(3, |&b| b == b' ');
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(RequestError::BadRequestLine);
        };
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return Err(RequestError::BadRequestLine);
        }
        // Visible ASCII and obs-text: no controls, no spaces (a second SP lands here too).
        if target.is_empty() || !target.iter().all(|&b| b > 0x20 && b != 0x7f) {
            return Err(RequestError::BadRequestLine);
        }
        self.version = match version {
            b"HTTP/1.1" => Version::Http11,
            b"HTTP/1.0" => Version::Http10,
            // HTTP/1.2 and later minors are answered as 1.1 (RFC 9110 §6.2); anything
            // else that looks like a version is one handoff does not speak.
            [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
                Version::Http11
            }
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                return Err(RequestError::Version)
            }
            _ => return Err(RequestError::BadRequestLine),
        };
        self.kind = Method::of(method);
        // origin-form, absolute-form, or `*` for OPTIONS; CONNECT's authority-form is
        // refused by the proxy, which tunnels nothing.
        let form_ok = target[0] == b'/'
            || (target == b"*" && self.kind == Method::Options)
            || starts_with_ignore_case(target, b"http://")
            || starts_with_ignore_case(target, b"https://")
            || self.kind == Method::Connect;
        if !form_ok {
            return Err(RequestError::BadRequestLine);
        }
        self.method = Span::within(buf, method);
        self.target = Span::within(buf, target);
        Ok(())
    }

    /// Reads the fields that decide framing and forwarding, and refuses the ambiguous.
    fn frame(&mut self, buf: &[u8]) -> Result<(), RequestError> {
        self.connection.clear();
        self.body = BodyLength::None;
        self.expect_continue = false;
        self.request_id = None;
        let mut host = false;
        let mut length = None;
        let mut chunked = false;
        let mut upgrade_field = false;
        for (i, f) in self.fields.iter().enumerate() {
            let value = f.value.of(buf);
            match f.kind {
                FieldKind::Host => {
                    if std::mem::replace(&mut host, true) {
                        return Err(RequestError::DuplicateHost);
                    }
                    if !valid_host(value) {
                        return Err(RequestError::BadHost);
                    }
                }
                FieldKind::ContentLength => {
                    if length.is_some() {
                        return Err(RequestError::DuplicateContentLength);
                    }
                    length =
                        Some(fields::content_length(value).ok_or(RequestError::BadContentLength)?);
                }
                FieldKind::TransferEncoding => {
                    // One field, exactly `chunked`: nginx answers 501 to anything else.
                    if chunked || fields::transfer_coding(value) != (true, true) {
                        return Err(RequestError::UnsupportedCoding);
                    }
                    chunked = true;
                }
                FieldKind::Connection => self.connection.add(buf, f.value),
                FieldKind::Expect => {
                    self.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
                }
                FieldKind::Upgrade => upgrade_field = true,
                FieldKind::RequestId if self.request_id.is_none() => self.request_id = Some(i),
                _ => {}
            }
        }
        let http11 = self.version == Version::Http11;
        if http11 && !host {
            return Err(RequestError::NoHost);
        }
        self.body = match (length, chunked) {
            (Some(_), true) => return Err(RequestError::LengthAndChunked),
            (_, true) if !http11 => return Err(RequestError::ChunkedHttp10),
            (_, true) => BodyLength::Chunked,
            (None, false) => BodyLength::None,
            (Some(n), false) => BodyLength::Length(n),
        };
        self.expect_continue &= http11;
        self.upgrade = http11 && upgrade_field && self.connection.upgrade;
        Ok(())
    }

    /// Whether the client wants the connection kept after this request.
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection.close,
            Version::Http10 => self.connection.keep_alive && !self.connection.close,
        }
    }

    /// The value of the first field of `kind`.
    pub fn value<'a>(&self, buf: &'a [u8], kind: FieldKind) -> Option<&'a [u8]> {
        self.fields
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| f.value.of(buf))
    }

    /// The fields that travel on to the next hop: not hop-by-hop (framing included), not
    /// named by `Connection`, not `Expect` (handoff answers it itself).
    pub fn end_to_end<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = &'a Field> + 'a {
        let named = !self.connection.named.is_empty();
        self.fields.iter().filter(move |f| {
            !f.kind.is_hop_by_hop()
                && f.kind != FieldKind::Expect
                && !(named && self.connection.names(buf, f.name.of(buf)))
        })
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// A `Host` value nginx would accept: not empty, no path separators, no `..`.
fn valid_host(v: &[u8]) -> bool {
    !v.is_empty()
        && !v
            .iter()
            .any(|&b| b == b'/' || b == b'\\' || b < 0x21 || b == 0x7f)
        && !v.windows(2).any(|w| w == b"..")
}

#[cfg(test)]
mod tests;
