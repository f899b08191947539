//! handoff-http1: the HTTP/1.1 framing that handoff's proxy loop speaks on both of its
//! sides, as pure functions over byte buffers: no sockets, no allocation per message once a
//! connection's buffers exist.
//!
//! A head is parsed where it was read ([`RequestHead::parse`], [`ResponseHead::parse`]):
//! fields are offsets into the connection's buffer, each tagged with what a proxy must know
//! about its name ([`FieldKind`]), so forwarding a head is copying the fields that stay and
//! writing the framing anew. The rules a proxy must enforce on the way (RFC 9112 §6 message
//! framing, RFC 9110 §7.6 hop-by-hop fields, the request-smuggling refusals nginx makes) are
//! decided here, once, with a named error for each refusal.
//!
//! # Layout
//!
//! - [`fields`]: spans, header fields, field-name classes, `Content-Length` and
//!   `Connection` values;
//! - [`request`]: the request head, its framing and the refusals (400, 431, 501, 505);
//! - [`response`]: the response head and its framing, which depends on the request;
//! - [`chunked`]: the incremental chunked decoder and the chunk-size line encoder.
//!
//! # Sketch
//!
//! ```
//! use handoff_http1::{BodyLength, Limits, Parsed, RequestHead};
//!
//! let buf = b"POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nhello";
//! let mut head = RequestHead::default();
//! assert_eq!(head.parse(buf, &Limits::default()), Ok(Parsed::Complete));
//! assert_eq!(head.method.of(buf), b"POST");
//! assert_eq!(head.body, BodyLength::Length(5));
//! assert_eq!(&buf[head.len..], b"hello");
//! ```

#![forbid(unsafe_code)]

pub mod chunked;
pub mod fields;
pub mod request;
pub mod response;

pub use chunked::{ChunkedDecoder, ChunkedError, Step};
pub use fields::{Field, FieldKind, Span};
pub use request::{Method, RequestError, RequestHead};
pub use response::{ResponseBody, ResponseError, ResponseHead};

/// The HTTP/1 minor version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// HTTP/1.0: no chunked coding, keep-alive only when asked for.
    Http10,
    /// HTTP/1.1.
    #[default]
    Http11,
}

/// How a request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyLength {
    /// No body.
    #[default]
    None,
    /// Exactly this many bytes (`Content-Length`; zero when the client said so).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Whether a head was complete in the bytes given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The head is complete; its length is in the head's `len`.
    Complete,
    /// More bytes are needed (and the limit has not been reached yet).
    Partial,
}

/// Size limits of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole head (start line, fields, the blank line), in bytes.
    pub head_bytes: usize,
}

impl BodyLength {
    /// Whether there are body bytes to read.
    pub fn is_empty(self) -> bool {
        matches!(self, BodyLength::None | BodyLength::Length(0))
    }
}

impl Default for Limits {
    /// 32 KiB, as nginx's `large_client_header_buffers` (4 × 8 KiB).
    fn default() -> Self {
        Limits {
            head_bytes: 32 * 1024,
        }
    }
}

/// Most fields in one head: the same as pingora's (and so the limit handoff had before).
/// httparse parses into a fixed array, on the stack.
pub const MAX_FIELDS: usize = 256;
