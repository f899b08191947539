//! Header fields as offsets into the buffer they were read into, and the field names and
//! values a proxy has to understand rather than pass along.

/// A byte range of the buffer a head was parsed from. Offsets, not a slice, so that a
/// parsed head can live next to the buffer it describes (and be kept across reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The span of `part`, a sub-slice of `buf` (an empty `part` may be any empty slice).
    ///
    /// # Panics
    /// When a non-empty `part` does not lie within `buf` (a bug in the caller).
    pub fn within(buf: &[u8], part: &[u8]) -> Span {
        if part.is_empty() {
            return Span::default();
        }
        let start = (part.as_ptr() as usize)
            .checked_sub(buf.as_ptr() as usize)
            .filter(|&s| s + part.len() <= buf.len())
            .expect("a sub-slice of the buffer");
        Span::new(start, start + part.len())
    }

    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= u32::MAX as usize);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The bytes this span covers in `buf`.
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether it covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// One header field of a parsed head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The name as sent (case preserved).
    pub name: Span,
    /// The value, without leading or trailing whitespace.
    pub value: Span,
    /// What the name means to a proxy.
    pub kind: FieldKind,
}

/// What a field's name means to a proxy. Names are compared case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// An end-to-end field: forwarded as it came.
    Other,
    /// `Connection`: hop-by-hop, and names more hop-by-hop fields.
    Connection,
    /// `Keep-Alive`: hop-by-hop (RFC 9112 §9.3).
    KeepAlive,
    /// `Proxy-Connection`: a non-standard hop-by-hop field some clients still send.
    ProxyConnection,
    /// `TE`: hop-by-hop.
    Te,
    /// `Trailer`: names the trailer fields of a chunked body; dropped with the trailers.
    Trailer,
    /// `Transfer-Encoding`: hop-by-hop framing, written anew on each side.
    TransferEncoding,
    /// `Upgrade`: hop-by-hop, except on a request the proxy passes through as an upgrade.
    Upgrade,
    /// `Content-Length`: framing, written anew on each side.
    ContentLength,
    /// `Host`.
    Host,
    /// `Expect`: handoff answers `100-continue` itself.
    Expect,
    /// `X-Request-Id`.
    RequestId,
    /// `X-Handoff-*`: handoff's own namespace; never taken from an app.
    Handoff,
}

impl FieldKind {
    /// Classifies a field name.
    pub fn of(name: &[u8]) -> FieldKind {
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name.len() {
            2 if is("te") => FieldKind::Te,
            4 if is("host") => FieldKind::Host,
            6 if is("expect") => FieldKind::Expect,
            7 if is("upgrade") => FieldKind::Upgrade,
            7 if is("trailer") => FieldKind::Trailer,
            10 if is("connection") => FieldKind::Connection,
            10 if is("keep-alive") => FieldKind::KeepAlive,
            12 if is("x-request-id") => FieldKind::RequestId,
            14 if is("content-length") => FieldKind::ContentLength,
            16 if is("proxy-connection") => FieldKind::ProxyConnection,
            17 if is("transfer-encoding") => FieldKind::TransferEncoding,
            n if n > 10 && name[..10].eq_ignore_ascii_case(b"x-handoff-") => FieldKind::Handoff,
            _ => FieldKind::Other,
        }
    }

    /// Fields that describe one connection, never forwarded as they are (RFC 9110 §7.6.1),
    /// framing included.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            FieldKind::Connection
                | FieldKind::KeepAlive
                | FieldKind::ProxyConnection
                | FieldKind::Te
                | FieldKind::Trailer
                | FieldKind::TransferEncoding
                | FieldKind::Upgrade
                | FieldKind::ContentLength
        )
    }
}

/// The options of the `Connection` fields of a head (RFC 9110 §7.6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionOptions {
    /// `close`.
    pub close: bool,
    /// `keep-alive` (what an HTTP/1.0 peer must say to keep the connection).
    pub keep_alive: bool,
    /// `upgrade`.
    pub upgrade: bool,
    /// Every other token: the names of further hop-by-hop fields, dropped when forwarding.
    pub named: Vec<Span>,
}

impl ConnectionOptions {
    /// Empties it for the next head, keeping the allocation.
    pub fn clear(&mut self) {
        self.close = false;
        self.keep_alive = false;
        self.upgrade = false;
        self.named.clear();
    }

    /// Adds the tokens of one `Connection` value (`value` is its span in `buf`).
    pub fn add(&mut self, buf: &[u8], value: Span) {
        let base = value.start as usize;
        let mut at = 0;
        for token in value.of(buf).split(|&b| b == b',') {
            let start = at;
            at += token.len() + 1;
            let lead = token.len() - token.trim_ascii_start().len();
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                let s = base + start + lead;
                self.named.push(Span::new(s, s + token.len()));
            }
        }
    }

    /// Whether `Connection` named the field called `name`.
    pub fn names(&self, buf: &[u8], name: &[u8]) -> bool {
        self.named
            .iter()
            .any(|n| n.of(buf).eq_ignore_ascii_case(name))
    }
}

/// A `Content-Length` value: 1*DIGIT (RFC 9110 §8.6), surrounding whitespace already
/// trimmed. Signs, inner spaces, commas and values past `u64` are refused.
pub fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 {
        // 19 digits always fit in a u64; no sane body has 20.
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Whether a `Transfer-Encoding` value ends in `chunked` (the only coding a message's
/// length can be read from), and whether it is `chunked` alone.
pub(crate) fn transfer_coding(value: &[u8]) -> (bool, bool) {
    if value.eq_ignore_ascii_case(b"chunked") {
        return (true, true);
    }
    let last = value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or(value)
        .trim_ascii();
    (last.eq_ignore_ascii_case(b"chunked"), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_case_insensitively() {
        assert_eq!(FieldKind::of(b"Content-Length"), FieldKind::ContentLength);
        assert_eq!(
            FieldKind::of(b"TRANSFER-ENCODING"),
            FieldKind::TransferEncoding
        );
        assert_eq!(FieldKind::of(b"x-request-id"), FieldKind::RequestId);
        assert_eq!(FieldKind::of(b"X-Handoff-Reason"), FieldKind::Handoff);
        assert_eq!(FieldKind::of(b"X-Handoff-"), FieldKind::Other);
        assert_eq!(FieldKind::of(b"Content-Type"), FieldKind::Other);
        assert_eq!(FieldKind::of(b"TE"), FieldKind::Te);
        assert!(FieldKind::of(b"keep-alive").is_hop_by_hop());
        assert!(!FieldKind::of(b"host").is_hop_by_hop());
    }

    #[test]
    fn connection_tokens_name_fields() {
        let buf = b"keep-alive, X-Secret ,,Upgrade";
        let mut c = ConnectionOptions::default();
        c.add(buf, Span::new(0, buf.len()));
        assert!(c.keep_alive && c.upgrade && !c.close);
        assert_eq!(c.named.len(), 1);
        assert_eq!(c.named[0].of(buf), b"X-Secret");
        assert!(c.names(buf, b"x-secret"));
        c.clear();
        assert!(!c.keep_alive && c.named.is_empty());
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b"0042"), Some(42));
        assert_eq!(
            content_length(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"5 5",
            b"5,5",
            b"0x10",
            b"12345678901234567890",
        ] {
            assert_eq!(
                content_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn transfer_codings() {
        assert_eq!(transfer_coding(b"chunked"), (true, true));
        assert_eq!(transfer_coding(b"CHUNKED"), (true, true));
        assert_eq!(transfer_coding(b"gzip, chunked"), (true, false));
        assert_eq!(transfer_coding(b"chunked, gzip"), (false, false));
        assert_eq!(transfer_coding(b"identity"), (false, false));
    }
}
