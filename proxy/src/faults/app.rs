//! The healthy app behind `ok` and `keepalive-close`: a small, correct HTTP/1.1 server
//! whose answers tests can check byte for byte (transparency tests).

use std::fmt::Write as _;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::wire::{Conn, Head};
use super::Stats;

/// How the app behaves beyond the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AppOptions {
    /// Close a keep-alive connection that stays idle this long (Node's `keepAliveTimeout`).
    pub(crate) idle: Option<Duration>,
    /// Answer this many requests per connection, then close the connection (without a
    /// byte, and without counting it) when the next request arrives.
    pub(crate) max_requests: Option<u64>,
}

/// Size of each write when streaming `/bytes/N`.
const WRITE_SIZE: usize = 64 * 1024;
/// Size of each chunk of `/chunked/N`.
const CHUNK_SIZE: usize = 16 * 1024;
/// The pattern repeats every 251 bytes (251 is prime, so `i*31` cycles through all residues).
const PERIOD: usize = 251;
/// The largest `/bytes/N` or `/chunked/N` served.
const MAX_BYTES: u64 = 1 << 30;

/// `n` bytes of the deterministic pattern `/bytes/N` serves: byte `i` is `(i*31+7) % 251`.
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n).map(pattern_byte).collect()
}

/// FNV-1a 64-bit hash, as reported in `/echo`'s `body_fnv64`.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::default();
    h.update(bytes);
    h.0
}

/// Streaming FNV-1a 64.
#[derive(Debug, Clone, Copy)]
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn pattern_byte(i: usize) -> u8 {
    ((i % PERIOD * 31 + 7) % PERIOD) as u8
}

/// `len` (at most [`WRITE_SIZE`]) pattern bytes starting at absolute offset `offset`.
fn pattern_slice(offset: u64, len: usize) -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    let table = TABLE.get_or_init(|| pattern_bytes(WRITE_SIZE + PERIOD));
    let start = (offset % PERIOD as u64) as usize;
    &table[start..start + len]
}

/// Serves requests on one connection until the peer closes, asks to close, or idles out.
pub(crate) async fn serve<S>(mut c: Conn<S>, stats: &Stats, opts: AppOptions) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut served = 0u64;
    loop {
        let head = match opts.idle {
            Some(idle) if c.buf.is_empty() => match tokio::time::timeout(idle, c.read_head()).await
            {
                Ok(head) => head,
                // Idle keep-alive connection: close it like Node does, without a word.
                Err(_) => return Ok(()),
            },
            _ => c.read_head().await,
        };
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let status = if e.to_string().contains("too large") {
                    431
                } else {
                    400
                };
                c.write_all(&simple(
                    status,
                    "text/plain",
                    b"bad request\n",
                    false,
                    false,
                ))
                .await?;
                return c.io.shutdown().await;
            }
            Err(e) => return Err(e),
        };
        if opts.max_requests.is_some_and(|max| served >= max) {
            // The keep-alive race made deterministic: the app had given up on this
            // connection; the request arrives and meets a close.
            return c.io.shutdown().await;
        }
        served += 1;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let keep = head.keep_alive();
        if head.expects_continue() && head.body_kind()? != super::wire::BodyKind::None {
            c.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let mut hash = Fnv64::default();
        let body_len = c.read_body(&head, &mut |b| hash.update(b)).await?;
        let keep = route(&mut c, &head, body_len, hash.0, keep).await?;
        if !keep {
            return c.io.shutdown().await;
        }
    }
}

/// Answers one request; returns whether the connection stays open.
async fn route<S>(
    c: &mut Conn<S>,
    head: &Head,
    body_len: u64,
    body_hash: u64,
    keep: bool,
) -> io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let is_head = head.method == "HEAD";
    let path = head.path();
    let number = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    let plain = |status: u16, body: &[u8]| simple(status, "text/plain", body, keep, is_head);

    if path == "/" {
        c.write_all(&plain(200, b"hello from the app\n")).await?;
    } else if let Some(n) = number("/bytes/").filter(|&n| n <= MAX_BYTES) {
        let head_bytes = response_head(
            200,
            &[
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Length", n.to_string()),
            ],
            keep,
        );
        c.write_all(head_bytes.as_bytes()).await?;
        if !is_head {
            let mut sent = 0u64;
            while sent < n {
                let len = (n - sent).min(WRITE_SIZE as u64) as usize;
                c.write_all(pattern_slice(sent, len)).await?;
                sent += len as u64;
            }
        }
    } else if let Some(n) = number("/chunked/").filter(|&n| n <= MAX_BYTES) {
        let head_bytes = response_head(
            200,
            &[
                ("Content-Type", "application/octet-stream".into()),
                ("Transfer-Encoding", "chunked".into()),
            ],
            keep,
        );
        c.write_all(head_bytes.as_bytes()).await?;
        if !is_head {
            let mut sent = 0u64;
            while sent < n {
                let len = (n - sent).min(CHUNK_SIZE as u64) as usize;
                c.write_all(format!("{len:x}\r\n").as_bytes()).await?;
                c.write_all(pattern_slice(sent, len)).await?;
                c.write_all(b"\r\n").await?;
                sent += len as u64;
            }
            c.write_all(b"0\r\n\r\n").await?;
        }
    } else if let Some(status) = number("/status/").and_then(|n| u16::try_from(n).ok()) {
        if !(200..=599).contains(&status) {
            c.write_all(&plain(400, b"status must be 200..=599\n"))
                .await?;
        } else if status == 204 || status == 304 {
            c.write_all(response_head(status, &[], keep).as_bytes())
                .await?;
        } else {
            let body = format!("{status} {}\n", reason_phrase(status));
            c.write_all(&plain(status, body.as_bytes())).await?;
        }
    } else if path == "/echo" {
        let body = echo_json(head, body_len, body_hash);
        c.write_all(&simple(
            200,
            "application/json",
            body.as_bytes(),
            keep,
            is_head,
        ))
        .await?;
    } else if path == "/headers" {
        match query_headers(head.query().unwrap_or_default()) {
            Some(extra) => {
                let mut headers = vec![
                    ("Content-Type", "text/plain".to_owned()),
                    ("Content-Length", "3".to_owned()),
                ];
                headers.extend(extra.iter().map(|(n, v)| (n.as_str(), v.clone())));
                let mut out = response_head(200, &headers, keep).into_bytes();
                if !is_head {
                    out.extend_from_slice(b"ok\n");
                }
                c.write_all(&out).await?;
            }
            None => c.write_all(&plain(400, b"bad header in query\n")).await?,
        }
    } else if path == "/early-hints" {
        c.write_all(
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n",
        )
        .await?;
        c.write_all(&plain(200, b"after early hints\n")).await?;
    } else if path == "/continue" {
        let body = format!("received {body_len} bytes\n");
        c.write_all(&plain(200, body.as_bytes())).await?;
    } else if let Some(ms) = number("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        c.write_all(&plain(200, b"slow hello\n")).await?;
    } else if path == "/hang-up" {
        // The app dies on this request: the connection closes without a byte.
        return Ok(false);
    } else if path == "/upgrade" {
        if head.has_token("connection", "upgrade") && head.has_token("upgrade", "websocket") {
            c.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            )
            .await?;
            echo_raw(c).await?;
            return Ok(false);
        }
        c.write_all(&plain(426, b"upgrade to websocket required\n"))
            .await?;
    } else if let Some(n) = number("/big-header/") {
        let mut out = response_head(
            200,
            &[
                ("Content-Type", "text/plain".into()),
                ("Content-Length", "3".into()),
            ],
            keep,
        );
        out.truncate(out.len() - 2);
        out.push_str(&filler_headers(
            usize::try_from(n).unwrap_or(usize::MAX).min(16 << 20),
        ));
        out.push_str("\r\n");
        if !is_head {
            out.push_str("ok\n");
        }
        c.write_all(out.as_bytes()).await?;
    } else {
        c.write_all(&plain(404, b"not found\n")).await?;
    }
    Ok(keep)
}

/// After a 101: echoes raw bytes back until the peer closes.
async fn echo_raw<S>(c: &mut Conn<S>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let leftover = c.buf.split();
    c.io.write_all(&leftover).await?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = c.io.read(&mut buf).await?;
        if n == 0 {
            return c.io.shutdown().await;
        }
        c.io.write_all(&buf[..n]).await?;
    }
}

/// A status line and headers, ending with the blank line. Adds `Connection: close` when
/// the connection will not be kept.
pub(crate) fn response_head(status: u16, headers: &[(&str, String)], keep: bool) -> String {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if !keep {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out
}

/// A complete response with a Content-Length body (headers only for HEAD).
pub(crate) fn simple(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep: bool,
    is_head: bool,
) -> Vec<u8> {
    let mut out = response_head(
        status,
        &[
            ("Content-Type", content_type.to_owned()),
            ("Content-Length", body.len().to_string()),
        ],
        keep,
    )
    .into_bytes();
    if !is_head {
        out.extend_from_slice(body);
    }
    out
}

/// `Set-Cookie` lines of about 1 KiB each, adding up to at least `n` bytes.
pub(crate) fn filler_headers(n: usize) -> String {
    let mut out = String::with_capacity(n + 1024);
    let mut i = 0;
    while out.len() < n {
        let value_len = (n - out.len()).clamp(1, 1000);
        let _ = write!(
            out,
            "Set-Cookie: filler{i}={}; Path=/\r\n",
            "x".repeat(value_len)
        );
        i += 1;
    }
    out
}

pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn echo_json(head: &Head, body_len: u64, body_hash: u64) -> String {
    let mut out = String::from("{\"method\":");
    json_str(&mut out, &head.method);
    out.push_str(",\"path\":");
    json_str(&mut out, &head.target);
    out.push_str(",\"headers\":[");
    for (i, (name, value)) in head.headers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        json_str(&mut out, name);
        out.push(',');
        json_str(&mut out, value);
        out.push(']');
    }
    let _ = write!(
        out,
        "],\"body_len\":{body_len},\"body_fnv64\":\"{body_hash:016x}\"}}"
    );
    out
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `name=value&...` with percent-decoding; `None` if a name is not a token or a value
/// holds a control character (which would split the response header).
fn query_headers(query: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?;
        let value = percent_decode(value)?;
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return None;
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return None;
        }
        out.push((name, value));
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
