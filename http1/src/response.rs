//! The response head: parsed in place, and framed by RFC 9112 §6.3, which depends on the
//! request it answers (a `HEAD` response has no body whatever its fields say).

use crate::fields::{self, ConnectionOptions, Field, FieldKind, Span};
use crate::request::Method;
use crate::{Parsed, Version, MAX_FIELDS};

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseBody {
    /// No body: a 1xx, 204 or 304, or the answer to a `HEAD`.
    #[default]
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the upstream closes the connection (no length given, or a final coding other
    /// than chunked).
    Close,
}

/// Why a response head is not one handoff can pass on. Each is the app's framing bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The head is larger than the limit it was parsed with.
    #[error("response header larger than the limit")]
    TooLarge,
    /// More header fields than handoff parses.
    #[error("more than {MAX_FIELDS} header fields")]
    TooManyFields,
    /// Not an HTTP/1.x status line and fields (the httparse error says where).
    #[error("{0}")]
    Invalid(httparse::Error),
    /// A `Content-Length` that is not 1*DIGIT.
    #[error("invalid Content-Length header")]
    BadContentLength,
    /// `Content-Length` fields that disagree.
    #[error("differing Content-Length headers")]
    DifferingContentLengths,
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3: a sender must not).
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
}

/// A parsed response head, reused from response to response.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase as sent (may be empty).
    pub reason: Span,
    /// The status line's version.
    pub version: Version,
    /// Every field, in order.
    pub fields: Vec<Field>,
    /// The `Connection` options.
    pub connection: ConnectionOptions,
    /// How the body is delimited.
    pub body: ResponseBody,
    /// The `Content-Length` of a response without a body (`HEAD`, 304): the length the
    /// representation would have, passed on as sent.
    pub length: Option<u64>,
    /// The `Transfer-Encoding` value when it is more than `chunked` alone: passed on, since
    /// the codings under the chunked one stay in the body.
    pub coding: Option<Span>,
    /// The head's length in the buffer, blank line included.
    pub len: usize,
}

impl ResponseHead {
    /// Parses the response head at the start of `buf`, answering a `method` request.
    /// `limit` bounds the head's size: a head not complete within it is `TooLarge`.
    pub fn parse(
        &mut self,
        buf: &[u8],
        limit: usize,
        method: Method,
    ) -> Result<Parsed, ResponseError> {
        let mut raw = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut resp = httparse::Response::new(&mut raw);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= limit => {
                return Err(ResponseError::TooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyFields),
            Err(e) => return Err(ResponseError::Invalid(e)),
        };
        if len > limit {
            return Err(ResponseError::TooLarge);
        }
        self.len = len;
        self.status = resp.code.unwrap_or(0);
        self.version = match resp.version {
            Some(0) => Version::Http10,
            _ => Version::Http11,
        };
        self.reason = Span::within(buf, resp.reason.unwrap_or("").as_bytes());
        self.fields.clear();
        self.fields.extend(resp.headers.iter().map(|h| Field {
            name: Span::within(buf, h.name.as_bytes()),
            value: Span::within(buf, h.value.trim_ascii()),
            kind: FieldKind::of(h.name.as_bytes()),
        }));
        self.frame(buf, method)?;
        Ok(Parsed::Complete)
    }

    fn frame(&mut self, buf: &[u8], method: Method) -> Result<(), ResponseError> {
        self.connection.clear();
        self.length = None;
        self.coding = None;
        let mut chunked = None;
        for f in &self.fields {
            let value = f.value.of(buf);
            match f.kind {
                FieldKind::ContentLength => {
                    let n = fields::content_length(value).ok_or(ResponseError::BadContentLength)?;
                    // Identical duplicates are one length; differing ones are no length.
                    if self.length.is_some_and(|m| m != n) {
                        return Err(ResponseError::DifferingContentLengths);
                    }
                    self.length = Some(n);
                }
                FieldKind::TransferEncoding => {
                    let (final_chunked, alone) = fields::transfer_coding(value);
                    chunked = Some(final_chunked);
                    if !alone {
                        self.coding = Some(f.value);
                    }
                }
                FieldKind::Connection => self.connection.add(buf, f.value),
                _ => {}
            }
        }
        let no_body = method == Method::Head
            || self.is_informational()
            || self.status == 204
            || self.status == 304;
        self.body = match (no_body, chunked, self.length) {
            (true, _, _) => ResponseBody::None,
            (false, Some(_), Some(_)) => return Err(ResponseError::LengthAndChunked),
            (false, Some(true), None) => ResponseBody::Chunked,
            (false, Some(false), None) => ResponseBody::Close,
            (false, None, Some(n)) => ResponseBody::Length(n),
            (false, None, None) => ResponseBody::Close,
        };
        if !no_body {
            // The length went into `body`; `length` is only for bodiless answers.
            self.length = None;
        }
        Ok(())
    }

    /// A 1xx other than 101: another head follows.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// Whether the upstream lets the connection carry another request after this one.
    pub fn keep_alive(&self) -> bool {
        let said = match self.version {
            Version::Http11 => !self.connection.close,
            Version::Http10 => self.connection.keep_alive && !self.connection.close,
        };
        said && self.body != ResponseBody::Close && self.status != 101
    }

    /// The fields that travel on to the client: not hop-by-hop (framing included), not
    /// named by `Connection`, not in handoff's own `X-Handoff-*` namespace.
    pub fn end_to_end<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = &'a Field> + 'a {
        let named = !self.connection.named.is_empty();
        self.fields.iter().filter(move |f| {
            !f.kind.is_hop_by_hop()
                && f.kind != FieldKind::Handoff
                && !(named && self.connection.names(buf, f.name.of(buf)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8], method: Method) -> Result<ResponseHead, ResponseError> {
        let mut head = ResponseHead::default();
        match head.parse(bytes, 65536, method)? {
            Parsed::Complete => Ok(head),
            Parsed::Partial => panic!("partial: {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn length_chunked_and_close_delimited_bodies() {
        let cl = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            Method::Get,
        )
        .unwrap();
        assert_eq!(
            (cl.status, cl.body, cl.len),
            (200, ResponseBody::Length(5), 38)
        );
        assert!(cl.keep_alive());
        let ch = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get,
        )
        .unwrap();
        assert_eq!((ch.body, ch.coding), (ResponseBody::Chunked, None));
        let close = parse(b"HTTP/1.1 200 OK\r\n\r\n", Method::Get).unwrap();
        assert_eq!(close.body, ResponseBody::Close);
        assert!(
            !close.keep_alive(),
            "a close-delimited body ends the connection"
        );
    }

    #[test]
    fn head_204_and_304_have_no_body_but_keep_their_length() {
        let head = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            Method::Head,
        )
        .unwrap();
        assert_eq!((head.body, head.length), (ResponseBody::None, Some(99)));
        for status in ["204 No Content", "304 Not Modified", "103 Early Hints"] {
            let text = format!("HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n");
            assert_eq!(
                parse(text.as_bytes(), Method::Get).unwrap().body,
                ResponseBody::None
            );
        }
        let hints = parse(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            Method::Get,
        )
        .unwrap();
        assert!(hints.is_informational());
        let switch = parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Method::Get).unwrap();
        assert!(!switch.is_informational() && !switch.keep_alive());
    }

    #[test]
    fn framing_bugs_of_the_app_are_refused() {
        let both = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            parse(both, Method::Get).unwrap_err(),
            ResponseError::LengthAndChunked
        );
        let differ = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(
            parse(differ, Method::Get).unwrap_err(),
            ResponseError::DifferingContentLengths
        );
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            parse(same, Method::Get).unwrap().body,
            ResponseBody::Length(5)
        );
        let bad = b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n";
        assert_eq!(
            parse(bad, Method::Get).unwrap_err(),
            ResponseError::BadContentLength
        );
        assert!(matches!(
            parse(b"\x16\x03\x01\x00\x05hello\r\n\r\n", Method::Get),
            Err(ResponseError::Invalid(_))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", Method::Get),
            Err(ResponseError::Invalid(_))
        ));
    }

    #[test]
    fn codings_under_chunked_are_kept_and_others_are_close_delimited() {
        let gz = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Method::Get,
        )
        .unwrap();
        assert_eq!(gz.body, ResponseBody::Chunked);
        let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(gz.coding.unwrap().of(buf), b"gzip, chunked");
        let only_gz = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Method::Get,
        )
        .unwrap();
        assert_eq!(only_gz.body, ResponseBody::Close);
    }

    #[test]
    fn the_limit_bounds_a_partial_head() {
        let mut head = ResponseHead::default();
        let big = format!("HTTP/1.1 200 OK\r\nX-Big: {}", "a".repeat(2000));
        assert_eq!(
            head.parse(big.as_bytes(), 4096, Method::Get),
            Ok(Parsed::Partial)
        );
        assert_eq!(
            head.parse(big.as_bytes(), 1024, Method::Get),
            Err(ResponseError::TooLarge)
        );
        let complete = format!("{big}\r\n\r\n");
        assert_eq!(
            head.parse(complete.as_bytes(), 1024, Method::Get),
            Err(ResponseError::TooLarge)
        );
    }

    #[test]
    fn hop_by_hop_and_handoff_fields_stay_behind() {
        let buf: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nX-Handoff-Reason: connect_refused\r\nContent-Length: 0\r\nX-App: yes\r\n\r\n";
        let head = parse(buf, Method::Get).unwrap();
        let names: Vec<&[u8]> = head.end_to_end(buf).map(|f| f.name.of(buf)).collect();
        assert_eq!(names, vec![&b"X-App"[..]]);
    }

    #[test]
    fn http10_keeps_the_connection_only_when_asked() {
        let plain = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::Get).unwrap();
        assert!(!plain.keep_alive());
        let kept = parse(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            Method::Get,
        )
        .unwrap();
        assert!(kept.keep_alive());
    }
}
