//! Just enough HTTP/1.1 request parsing for the fault upstreams and the healthy app:
//! a bounded header reader, request-body decoding (Content-Length and chunked) and the
//! canned byte sequences the fault modes send.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request header section read before giving up (a bounded buffer).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line accepted in a chunked request body.
const MAX_LINE: usize = 4 * 1024;

/// A parsed request line and header section.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) method: String,
    /// The request target as sent, query included.
    pub(crate) target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor: u8,
    /// Headers in the order they arrived, names as sent.
    pub(crate) headers: Vec<(String, String)>,
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// A connection with a read buffer that keeps bytes read past the current message.
#[derive(Debug)]
pub(crate) struct Conn<S> {
    pub(crate) io: S,
    pub(crate) buf: BytesMut,
}

impl Head {
    /// The first header with this name (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether any header with this name lists `token` in its comma-separated value.
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 only with `keep-alive`.
    pub(crate) fn keep_alive(&self) -> bool {
        if self.minor == 0 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }

    pub(crate) fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }

    pub(crate) fn body_kind(&self) -> io::Result<BodyKind> {
        if self.header("transfer-encoding").is_some() {
            // RFC 9112 §6.3: chunked must be the final coding; anything else is unframed.
            let last = self
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
                .flat_map(|(_, v)| v.split(','))
                .next_back()
                .map(str::trim)
                .unwrap_or_default();
            return if last.eq_ignore_ascii_case("chunked") {
                Ok(BodyKind::Chunked)
            } else {
                Err(invalid("transfer-encoding without final chunked"))
            };
        }
        let mut length = None;
        for (_, v) in self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            let n: u64 = v
                .trim()
                .parse()
                .map_err(|_| invalid("bad content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid("conflicting content-length"));
            }
            length = Some(n);
        }
        Ok(match length {
            Some(0) | None => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        })
    }

    /// The target without its query.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub(crate) fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) fn new(io: S) -> Self {
        Conn {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// Reads more bytes into the buffer; 0 means end of stream.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        self.buf.reserve(16 * 1024);
        self.io.read_buf(&mut self.buf).await
    }

    /// Reads one request header section. `None` when the peer closed before sending a
    /// byte (an idle keep-alive connection ending); an error for malformed or oversized
    /// heads and for end of stream mid-head.
    pub(crate) async fn read_head(&mut self) -> io::Result<Option<Head>> {
        let mut searched: usize = 0;
        loop {
            if let Some(end) = find(&self.buf[searched.saturating_sub(3)..], b"\r\n\r\n") {
                let end = searched.saturating_sub(3) + end + 4;
                let raw = self.buf.split_to(end);
                return parse_head(&raw).map(Some);
            }
            searched = self.buf.len();
            if searched > MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request header too large",
                ));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// Reads a request head one byte per read call and stops after `\r\n\r`, leaving the
    /// final `\n` in the socket. Closing a socket with unread data is how a unix socket
    /// produces ECONNRESET at its peer (TCP uses SO_LINGER 0 as well).
    pub(crate) async fn read_head_leaving_last_byte(&mut self) -> io::Result<()> {
        let mut seen: Vec<u8> = Vec::with_capacity(512);
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"\r\n\r") {
            if seen.len() > MAX_HEAD {
                return Err(invalid("request header too large"));
            }
            if self.io.read(&mut byte).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            seen.push(byte[0]);
        }
        Ok(())
    }

    /// Reads and decodes the body `head` announces, passing each piece to `sink`.
    /// Returns the decoded length.
    pub(crate) async fn read_body(
        &mut self,
        head: &Head,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> io::Result<u64> {
        match head.body_kind()? {
            BodyKind::None => Ok(0),
            BodyKind::Length(n) => {
                self.read_exact_into(n, sink).await?;
                Ok(n)
            }
            BodyKind::Chunked => {
                let mut total = 0u64;
                loop {
                    let line = self.read_line().await?;
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let size =
                        u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
                    if size == 0 {
                        // Trailer section, ended by an empty line.
                        while !self.read_line().await?.is_empty() {}
                        return Ok(total);
                    }
                    self.read_exact_into(size, sink).await?;
                    if !self.read_line().await?.is_empty() {
                        return Err(invalid("chunk not followed by CRLF"));
                    }
                    total += size;
                }
            }
        }
    }

    /// Reads and discards until the peer closes or errors.
    pub(crate) async fn drain_to_eof(&mut self) {
        self.buf.clear();
        while let Ok(n) = self.fill().await {
            if n == 0 {
                break;
            }
            self.buf.clear();
        }
    }

    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await
    }

    async fn read_exact_into(
        &mut self,
        mut n: u64,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() && self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = self.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            sink(&self.buf[..take]);
            self.buf.advance(take);
            n -= take as u64;
        }
        Ok(())
    }

    /// One CRLF-terminated line, without the CRLF.
    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = self.buf.split_to(end + 2);
                return String::from_utf8(line[..end].to_vec())
                    .map_err(|_| invalid("non-UTF-8 line"));
            }
            if self.buf.len() > MAX_LINE {
                return Err(invalid("line too long"));
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// Position of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn parse_head(raw: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(raw).map_err(|_| invalid("non-UTF-8 request head"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return Err(invalid("unsupported HTTP version")),
    };
    if method.is_empty() || !target.starts_with('/') && target != "*" {
        return Err(invalid("bad request line"));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| invalid("bad header"))?;
        // Obsolete line folding and whitespace before the colon are rejected (RFC 9112 §5).
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(invalid("bad header name"));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        minor,
        headers,
    })
}
