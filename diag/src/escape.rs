//! Sanitising bytes that come from the network before they reach a header, HTML or a log.
//!
//! One textual form is used for raw bytes everywhere: printable ASCII kept, `\` doubled,
//! `\t` `\r` `\n` named, anything else as `\xNN` — the same form as Rust's `escape_ascii`,
//! which pingora uses for the `buf: ...` context, so [`unescape`] reads both.

use std::borrow::Cow;

use http::HeaderValue;

/// Most bytes of upstream output kept as evidence.
pub const FIRST_BYTES_MAX: usize = 64;

/// Raw bytes as printable ASCII (see the module doc).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for &b in bytes {
        push_escaped(&mut out, b);
    }
    out
}

/// A string as printable ASCII: control characters and non-ASCII become `\xNN` per byte.
pub fn printable(s: &str) -> String {
    escape_bytes(s.as_bytes())
}

/// The inverse of [`escape_bytes`]; also reads `\'` and `\"` as written by `escape_ascii`.
/// Malformed escapes are kept literally.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match b[i + 1] {
            b't' => (b'\t', 2),
            b'r' => (b'\r', 2),
            b'n' => (b'\n', 2),
            b'0' => (0, 2),
            c @ (b'\\' | b'\'' | b'"') => (c, 2),
            b'x' if i + 3 < b.len() => match (hex(b[i + 2]), hex(b[i + 3])) {
                (Some(h), Some(l)) => (h << 4 | l, 4),
                _ => (b'\\', 1),
            },
            _ => (b'\\', 1),
        };
        out.push(byte);
        i += used;
    }
    out
}

/// Appends `s` as an RFC 8941 sf-string (quotes included): printable ASCII only, `"` and
/// `\` escaped; any other byte is written as the text `\xNN` (with its backslash escaped).
pub fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                out.push_str("\\\\x");
                push_hex(out, b);
            }
        }
    }
    out.push('"');
}

/// Appends `s` escaped for HTML text and attribute values (`& < > " '`); control
/// characters other than newline and tab become `\xNN` (see [`visible`]).
pub fn push_html(out: &mut String, s: &str) {
    for c in visible(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `s` with its control characters other than newline and tab written as `\xNN` per byte,
/// so that terminal escapes and stray carriage returns from the network show as text.
/// Everything else, non-ASCII letters included, is kept; nothing is escaped for a markup
/// language (a template engine does that).
pub fn visible(s: &str) -> Cow<'_, str> {
    let hidden = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.contains(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            let mut buf = [0; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                out.push_str("\\x");
                push_hex(&mut out, b);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` escaped for HTML.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_html(&mut out, s);
    out
}

/// A header value that is always valid and single-line: `s` must already be printable
/// ASCII (as produced here); anything else is escaped first.
pub fn header_value(s: &str) -> HeaderValue {
    if s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        if let Ok(v) = HeaderValue::from_str(s) {
            return v;
        }
    }
    HeaderValue::from_str(&printable(s)).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn push_escaped(out: &mut String, b: u8) {
    match b {
        b'\\' => out.push_str("\\\\"),
        b'\t' => out.push_str("\\t"),
        b'\r' => out.push_str("\\r"),
        b'\n' => out.push_str("\\n"),
        0x20..=0x7e => out.push(b as char),
        _ => {
            out.push_str("\\x");
            push_hex(out, b);
        }
    }
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes survive escape → unescape, and pingora's `escape_ascii` form reads back too.
    #[test]
    fn escape_round_trip() {
        let raw: Vec<u8> = (0u8..=255).collect();
        let esc = escape_bytes(&raw);
        assert!(esc.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert_eq!(unescape(&esc), raw);
        let pingora = format!("{}", b"\x16\x03\x01\"a'\\\r\n".escape_ascii());
        assert_eq!(unescape(&pingora), b"\x16\x03\x01\"a'\\\r\n");
        assert_eq!(unescape("a\\"), b"a\\");
        assert_eq!(unescape("\\xZZ"), b"\\xZZ");
    }

    /// sf-strings hold printable ASCII only, with quotes and backslashes escaped.
    #[test]
    fn sf_string() {
        let mut s = String::new();
        push_sf_string(&mut s, "a\"b\\c\r\né");
        assert_eq!(s, r#""a\"b\\c\\x0d\\x0a\\xc3\\xa9""#);
        assert!(HeaderValue::from_str(&s).is_ok());
    }

    /// HTML special characters and control characters never pass through.
    #[test]
    fn html_escape() {
        assert_eq!(
            html("<a href='x'>&\"</a>\u{1b}"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;\\x1b"
        );
    }

    /// Control characters show as text; letters, newlines and markup are left alone.
    #[test]
    fn visible_text() {
        assert!(matches!(
            visible("café <b>\n\t"),
            Cow::Borrowed("café <b>\n\t")
        ));
        assert_eq!(
            visible("a\r\u{1b}[31m\u{85}z"),
            "a\\x0d\\x1b[31m\\xc2\\x85z"
        );
    }

    /// Header values are single-line whatever the input.
    #[test]
    fn header_values() {
        assert_eq!(header_value("ok value").to_str().unwrap(), "ok value");
        assert_eq!(header_value("a\r\nb: c").to_str().unwrap(), "a\\r\\nb: c");
        assert_eq!(truncate("héllo", 2), "h");
    }
}
