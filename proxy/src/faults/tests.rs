//! Each fault mode observed from a raw client on a real socket, and the healthy app's
//! routes. Timeouts are upper bounds, or the thing under test (a hang).

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::wire::{find, Conn, Head};
use super::*;

/// Upper bound for anything that should happen promptly.
const PROMPT: Duration = Duration::from_secs(5);

fn tcp_bind() -> Bind {
    "127.0.0.1:0".parse().unwrap()
}

/// A unix bind in a fresh directory, which the caller removes.
fn unix_bind() -> (Bind, PathBuf) {
    let dir = fresh_dir().unwrap();
    (Bind::Unix(dir.join("up.sock")), dir)
}

async fn start(mode: Mode) -> FaultServer {
    FaultServer::start(mode, tcp_bind()).await.unwrap()
}

async fn connect(server: &FaultServer) -> TcpStream {
    TcpStream::connect(server.local_addr().unwrap())
        .await
        .unwrap()
}

/// Sends `req`, then reads until EOF or error: the bytes, and the error if any.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &[u8],
) -> (Vec<u8>, Option<io::Error>) {
    s.write_all(req).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match timeout(PROMPT, s.read(&mut buf))
            .await
            .expect("peer neither answered nor closed")
        {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e)),
        }
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: app\r\n\r\n";

/// Reads one response: status, headers in order, decoded body (none for HEAD/204/304).
async fn read_response<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    head_request: bool,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    loop {
        if let Some(end) = find(&c.buf, b"\r\n\r\n") {
            let raw = c.buf.split_to(end + 4);
            let text = String::from_utf8(raw.to_vec()).unwrap();
            let mut lines = text.split("\r\n");
            let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (n, v) = l.split_once(':').unwrap();
                    (n.to_owned(), v.trim().to_owned())
                })
                .collect();
            if status < 200 && status != 101 {
                continue; // interim response
            }
            let mut body = Vec::new();
            if !head_request && status != 204 && status != 304 && status != 101 {
                let as_head = Head {
                    method: "GET".into(),
                    target: "/".into(),
                    minor: 1,
                    headers: headers.clone(),
                };
                c.read_body(&as_head, &mut |b| body.extend_from_slice(b))
                    .await
                    .unwrap();
            }
            return (status, headers, body);
        }
        assert!(
            timeout(PROMPT, c.fill()).await.unwrap().unwrap() > 0,
            "EOF mid-response"
        );
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Labels round-trip, parameters parse, and every mode says what it should produce.
#[test]
fn labels_round_trip() {
    for mode in Mode::ALL {
        assert_eq!(mode.as_str().parse::<Mode>().unwrap(), *mode);
        assert_eq!(mode.to_string().parse::<Mode>().unwrap(), *mode);
        assert!(!mode.describe().is_empty());
    }
    assert_eq!(
        "huge-header:2MiB".parse::<Mode>().unwrap(),
        Mode::HugeHeader(2 << 20)
    );
    assert_eq!(
        "big-header:6000".parse::<Mode>().unwrap(),
        Mode::BigHeader(6000)
    );
    let ka: Mode = "keepalive-close:500ms".parse().unwrap();
    assert_eq!(ka, Mode::KeepAliveClose(Duration::from_millis(500)));
    assert_eq!(ka.to_string(), "keepalive-close:500ms");
    assert!("reset:1s".parse::<Mode>().is_err());
    assert!("nope".parse::<Mode>().is_err());
    assert_eq!(Mode::Reset.expected_reason(), Some("reset_before_response"));
    assert_eq!(Mode::App503.expected_reason(), None);
    for s in ["127.0.0.1:0", "[::1]:8080", "unix:/tmp/x.sock"] {
        assert_eq!(s.parse::<Bind>().unwrap().to_string(), s);
    }
    assert!("localhost:80".parse::<Bind>().is_err());
}

/// refuse (TCP): a bound port with no listener answers SYN with RST.
#[tokio::test]
async fn refuse_tcp_is_econnrefused() {
    let server = start(Mode::Refuse).await;
    let err = TcpStream::connect(server.local_addr().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
}

/// refuse (unix): a stale socket file with no listener.
#[tokio::test]
async fn refuse_unix_is_econnrefused() {
    let (bind, dir) = unix_bind();
    let server = FaultServer::start(Mode::Refuse, bind).await.unwrap();
    let path = server.socket_path().unwrap().to_owned();
    assert!(path.exists());
    let err = UnixStream::connect(&path).await.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
    server.shutdown().await;
    assert!(!path.exists(), "shutdown removes the stale socket file");
    std::fs::remove_dir_all(dir).unwrap();
}

/// connect-timeout: the accept queue is full, so connect() hangs past 300 ms.
#[tokio::test]
async fn connect_timeout_hangs() {
    let server = start(Mode::ConnectTimeout).await;
    let attempt = timeout(
        Duration::from_millis(300),
        connect_raw(server.local_addr().unwrap()),
    );
    assert!(
        attempt.await.is_err(),
        "connect completed; SYNs were not dropped"
    );
    assert_eq!(server.connections(), 0);
}

async fn connect_raw(addr: SocketAddr) -> io::Result<TcpStream> {
    TcpStream::connect(addr).await
}

/// missing-socket: ENOENT, in a directory that exists.
#[tokio::test]
async fn missing_socket_is_enoent() {
    let server = start(Mode::MissingSocket).await;
    let path = server.socket_path().unwrap();
    assert!(path.parent().unwrap().is_dir());
    let err = UnixStream::connect(path).await.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert!(server.target().starts_with("unix:/"));
}

/// socket-permission: 0600, owned by root, in a 0755 directory (root itself may connect,
/// so only the bits are checked here).
#[tokio::test]
async fn socket_permission_bits() {
    let server = start(Mode::SocketPermission).await;
    let path = server.socket_path().unwrap();
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    if nix_is_root() {
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
    }
    let dir = std::fs::metadata(path.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o755);
    let dir_path = path.parent().unwrap().to_owned();
    server.shutdown().await;
    assert!(!dir_path.exists(), "the temporary directory is removed");
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// backlog-full: a non-blocking connect gets EAGAIN.
#[tokio::test]
async fn backlog_full_is_eagain() {
    let server = start(Mode::BacklogFull).await;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    socket.set_nonblocking(true).unwrap();
    let err = socket
        .connect(&SockAddr::unix(server.socket_path().unwrap()).unwrap())
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EAGAIN));
}

/// close: EOF without a byte, even after a request with a body.
#[tokio::test]
async fn close_sends_nothing() {
    let server = start(Mode::Close).await;
    let req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    let (got, err) = exchange(connect(&server).await, req).await;
    assert!(got.is_empty() && err.is_none(), "{got:?} {err:?}");
    assert_eq!(server.requests(), 1);
}

/// close-mid-header: half a header, then EOF.
#[tokio::test]
async fn close_mid_header() {
    let server = start(Mode::CloseMidHeader).await;
    let (got, err) = exchange(connect(&server).await, GET).await;
    assert_eq!(got, b"HTTP/1.1 200 OK\r\nContent-Type: text/pl");
    assert!(err.is_none());
}

/// reset (TCP and unix): ECONNRESET on read, no byte first.
#[tokio::test]
async fn reset_before_response() {
    let server = start(Mode::Reset).await;
    let (got, err) = exchange(connect(&server).await, GET).await;
    assert!(got.is_empty());
    assert_eq!(err.unwrap().kind(), io::ErrorKind::ConnectionReset);

    let (bind, dir) = unix_bind();
    let server = FaultServer::start(Mode::Reset, bind).await.unwrap();
    let stream = UnixStream::connect(server.socket_path().unwrap())
        .await
        .unwrap();
    let (got, err) = exchange(stream, GET).await;
    assert!(got.is_empty());
    assert_eq!(err.unwrap().kind(), io::ErrorKind::ConnectionReset);
    server.shutdown().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// garbage, tls-bytes, fastcgi-bytes, http2-only: non-HTTP bytes, then EOF.
#[tokio::test]
async fn non_http_answers() {
    for (mode, prefix) in [
        (Mode::Garbage, &b"SSH-2.0-"[..]),
        (Mode::TlsBytes, &[0x16, 0x03, 0x03][..]),
        (Mode::FastcgiBytes, &[1, 6, 0, 1][..]),
        (
            Mode::Http2Only,
            &[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8, 7][..],
        ),
    ] {
        let server = start(mode).await;
        let (got, err) = exchange(connect(&server).await, GET).await;
        assert!(got.starts_with(prefix), "{mode}: {got:?}");
        assert!(err.is_none());
    }
    assert_eq!(TLS_SERVER_HELLO.len(), 5 + usize::from(TLS_SERVER_HELLO[4]));
    let fcgi = fastcgi_response();
    let len = usize::from(u16::from_be_bytes([fcgi[4], fcgi[5]])) + usize::from(fcgi[6]);
    assert_eq!(
        fcgi.len(),
        8 + len + 16,
        "one STDOUT and one END_REQUEST record"
    );
}

/// huge-header: a header section above 64 KiB and below 1 MiB; big-header: about 6 KiB,
/// valid, and kept alive.
#[tokio::test]
async fn header_sizes() {
    let server = start(Mode::HugeHeader(96 * 1024)).await;
    let (got, _) = exchange(connect(&server).await, GET).await;
    let head_len = find(&got, b"\r\n\r\n").unwrap() + 4;
    assert!((96 * 1024..100 * 1024).contains(&head_len), "{head_len}");
    assert!(got.ends_with(b"\r\n\r\nok\n"));

    let server = start(Mode::BigHeader(6 * 1024)).await;
    let mut c = Conn::new(connect(&server).await);
    for _ in 0..2 {
        c.write_all(GET).await.unwrap();
        let (status, headers, body) = read_response(&mut c, false).await;
        let size: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
        assert!((6 * 1024..7 * 1024).contains(&size), "{size}");
    }
    assert_eq!(server.connections(), 1);
}

/// stall-header: nothing arrives (bounded wait), the connection stays open.
#[tokio::test]
async fn stall_header() {
    let server = start(Mode::StallHeader).await;
    let mut s = connect(&server).await;
    s.write_all(GET).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(timeout(Duration::from_millis(200), s.read(&mut buf))
        .await
        .is_err());
}

/// stall-body: the header and 10 of 1000 bytes, then nothing.
#[tokio::test]
async fn stall_body() {
    let server = start(Mode::StallBody).await;
    let mut c = Conn::new(connect(&server).await);
    c.write_all(GET).await.unwrap();
    let expected = partial_body_response(10);
    while c.buf.len() < expected.len() {
        assert!(timeout(PROMPT, c.fill()).await.unwrap().unwrap() > 0);
    }
    assert_eq!(&c.buf[..], &expected[..]);
    assert!(timeout(Duration::from_millis(200), c.fill()).await.is_err());
}

/// close-mid-body and reset-mid-body: 100 of 1000 body bytes, then EOF or ECONNRESET, on
/// TCP and on a unix socket.
#[tokio::test]
async fn truncated_bodies() {
    let expected = partial_body_response(100);
    for (mode, reset) in [(Mode::CloseMidBody, false), (Mode::ResetMidBody, true)] {
        let server = start(mode).await;
        let (got, err) = exchange(connect(&server).await, GET).await;
        assert_eq!(got, expected, "{mode} over TCP");
        assert_eq!(
            err.map(|e| e.kind()),
            reset.then_some(io::ErrorKind::ConnectionReset)
        );

        let (bind, dir) = unix_bind();
        let server = FaultServer::start(mode, bind).await.unwrap();
        let stream = UnixStream::connect(server.socket_path().unwrap())
            .await
            .unwrap();
        let (got, err) = exchange(stream, GET).await;
        assert_eq!(got, expected, "{mode} over unix");
        assert_eq!(
            err.map(|e| e.kind()),
            reset.then_some(io::ErrorKind::ConnectionReset)
        );
        server.shutdown().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// bad-chunked: a chunked header followed by an invalid chunk size.
#[tokio::test]
async fn bad_chunked() {
    let server = start(Mode::BadChunked).await;
    let mut c = Conn::new(connect(&server).await);
    c.write_all(GET).await.unwrap();
    while find(&c.buf, b"zz\r\n").is_none() {
        assert!(timeout(PROMPT, c.fill()).await.unwrap().unwrap() > 0);
    }
    let text = String::from_utf8_lossy(&c.buf).into_owned();
    assert!(
        text.contains("Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
        "{text}"
    );
}

/// app-503: a valid 503 on a kept-alive connection.
#[tokio::test]
async fn app_503() {
    let server = start(Mode::App503).await;
    let mut c = Conn::new(connect(&server).await);
    for _ in 0..2 {
        c.write_all(GET).await.unwrap();
        let (status, _, body) = read_response(&mut c, false).await;
        assert_eq!(
            (status, body.as_slice()),
            (503, &b"the app is unavailable\n"[..])
        );
    }
}

/// slow-reader: a 64 MiB upload stops making progress.
#[tokio::test]
async fn slow_reader_blocks_uploads() {
    let server = start(Mode::SlowReader).await;
    let mut s = connect(&server).await;
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 67108864\r\n\r\n")
        .await
        .unwrap();
    let body = vec![b'x'; 64 << 20];
    assert!(timeout(Duration::from_millis(500), s.write_all(&body))
        .await
        .is_err());
}

/// reject-body: the upload fails with a reset or broken pipe.
#[tokio::test]
async fn reject_body_fails_uploads() {
    let server = start(Mode::RejectBody).await;
    let mut s = connect(&server).await;
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 67108864\r\n\r\n")
        .await
        .unwrap();
    let body = vec![b'x'; 64 << 20];
    let err = timeout(PROMPT, s.write_all(&body))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ),
        "{err}"
    );
}

/// keepalive-close: an idle kept-alive connection is closed after the idle time.
#[tokio::test]
async fn keepalive_close_closes_idle() {
    let server = start(Mode::KeepAliveClose(Duration::from_millis(100))).await;
    let mut c = Conn::new(connect(&server).await);
    c.write_all(GET).await.unwrap();
    let (status, _, _) = read_response(&mut c, false).await;
    assert_eq!(status, 200);
    let started = tokio::time::Instant::now();
    assert_eq!(timeout(PROMPT, c.fill()).await.unwrap().unwrap(), 0);
    assert!(started.elapsed() >= Duration::from_millis(90));
}

/// The app keeps a connection alive: two requests, one connection.
#[tokio::test]
async fn app_keep_alive() {
    let server = start(Mode::Ok).await;
    let mut c = Conn::new(connect(&server).await);
    for _ in 0..2 {
        c.write_all(GET).await.unwrap();
        let (status, _, body) = read_response(&mut c, false).await;
        assert_eq!(
            (status, body.as_slice()),
            (200, &b"hello from the app\n"[..])
        );
    }
    assert_eq!((server.connections(), server.requests()), (1, 2));
    c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, headers, _) = read_response(&mut c, false).await;
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(timeout(PROMPT, c.fill()).await.unwrap().unwrap(), 0);
}

/// /echo decodes a chunked request body and reports its hash and the headers in order.
#[tokio::test]
async fn app_echo_chunked_body() {
    let server = start(Mode::Ok).await;
    let mut c = Conn::new(connect(&server).await);
    c.write_all(
        b"POST /echo?x=1 HTTP/1.1\r\nHost: a\r\nX-B: 2\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
    )
    .await
    .unwrap();
    let (status, headers, body) = read_response(&mut c, false).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let body = String::from_utf8(body).unwrap();
    let expected = format!(
        "{{\"method\":\"POST\",\"path\":\"/echo?x=1\",\"headers\":[[\"Host\",\"a\"],[\"X-B\",\"2\"],[\"X-A\",\"1\"],[\"Transfer-Encoding\",\"chunked\"]],\"body_len\":11,\"body_fnv64\":\"{:016x}\"}}",
        fnv64(b"hello world")
    );
    assert_eq!(body, expected);
}

/// HEAD gets GET's Content-Length without a body; 204 has neither.
#[tokio::test]
async fn app_head_and_204() {
    let server = start(Mode::Ok).await;
    let mut c = Conn::new(connect(&server).await);
    c.write_all(b"HEAD /bytes/1234 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (status, headers, _) = read_response(&mut c, true).await;
    assert_eq!(
        (status, header(&headers, "content-length")),
        (200, Some("1234"))
    );
    c.write_all(b"GET /status/204 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (status, headers, _) = read_response(&mut c, false).await;
    assert_eq!((status, header(&headers, "content-length")), (204, None));
    c.write_all(b"GET /status/502 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (status, _, body) = read_response(&mut c, false).await;
    assert_eq!((status, body.as_slice()), (502, &b"502 Bad Gateway\n"[..]));
    c.write_all(b"GET /nope HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut c, false).await.0, 404);
    // The connection is still in sync after all of that.
    assert_eq!(server.requests(), 4);
}

/// /bytes/N and /chunked/N serve the pattern, large and exact.
#[tokio::test]
async fn app_large_bodies() {
    let server = start(Mode::Ok).await;
    let mut c = Conn::new(connect(&server).await);
    let n = 5 * 1024 * 1024 + 17;
    c.write_all(format!("GET /bytes/{n} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (_, _, body) = read_response(&mut c, false).await;
    assert!(body == pattern_bytes(n), "/bytes body differs");
    c.write_all(b"GET /chunked/40000 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (_, headers, body) = read_response(&mut c, false).await;
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    assert!(body == pattern_bytes(40000), "/chunked body differs");
    assert_eq!(pattern_bytes(3), vec![7, 38, 69]);
}

/// /headers adds response headers, repeated names included; /early-hints sends a 103.
#[tokio::test]
async fn app_headers_and_hints() {
    let server = start(Mode::Ok).await;
    let mut c = Conn::new(connect(&server).await);
    c.write_all(b"GET /headers?X-Multi=a&X-Multi=b%20c&Cache-Control=no-store HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (_, headers, _) = read_response(&mut c, false).await;
    let multi: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "X-Multi")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(multi, ["a", "b c"]);
    c.write_all(b"GET /headers?Bad=a%0d%0aX:1 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut c, false).await.0, 400);

    c.write_all(b"GET /early-hints HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    while find(&c.buf, b"\r\n\r\n").is_none() {
        c.fill().await.unwrap();
    }
    assert!(c.buf.starts_with(b"HTTP/1.1 103 Early Hints\r\nLink: "));
    assert_eq!(read_response(&mut c, false).await.0, 200);
}

/// Expect: 100-continue gets a 100 before the body is read.
#[tokio::test]
async fn app_expect_continue() {
    let server = start(Mode::Ok).await;
    let mut c = Conn::new(connect(&server).await);
    c.write_all(b"POST /continue HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .await
        .unwrap();
    while find(&c.buf, b"\r\n\r\n").is_none() {
        assert!(timeout(PROMPT, c.fill()).await.unwrap().unwrap() > 0);
    }
    assert!(c.buf.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
    c.write_all(b"data").await.unwrap();
    let (status, _, body) = read_response(&mut c, false).await;
    assert_eq!((status, body.as_slice()), (200, &b"received 4 bytes\n"[..]));
}

/// /upgrade switches protocols, then echoes raw bytes.
#[tokio::test]
async fn app_upgrade_echo() {
    let server = start(Mode::Ok).await;
    let mut c = Conn::new(connect(&server).await);
    c.write_all(b"GET /upgrade HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly")
        .await
        .unwrap();
    let (status, headers, _) = read_response(&mut c, false).await;
    assert_eq!(
        (status, header(&headers, "upgrade")),
        (101, Some("websocket"))
    );
    c.write_all(b" and late").await.unwrap();
    while c.buf.len() < 14 {
        assert!(timeout(PROMPT, c.fill()).await.unwrap().unwrap() > 0);
    }
    assert_eq!(&c.buf[..], b"early and late");
}

/// HTTP/1.0 closes by default; a malformed request gets a 400 and a close.
#[tokio::test]
async fn app_http10_and_bad_request() {
    let server = start(Mode::Ok).await;
    let (got, _) = exchange(connect(&server).await, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n") && got.ends_with(b"hello from the app\n"));
    let (got, _) = exchange(connect(&server).await, b"NONSENSE\r\n\r\n").await;
    assert!(got.starts_with(b"HTTP/1.1 400 "));
}

/// Over TLS: a client trusting `generate`'s CA gets the app; `self_signed` is refused as
/// an unknown issuer.
#[tokio::test]
async fn tls_app_and_untrusted_certificate() {
    let identity = TlsIdentity::generate(&["localhost", "127.0.0.1"]);
    let server = FaultServer::start_tls(Mode::Ok, tcp_bind(), identity.clone())
        .await
        .unwrap();
    let tls = tls_connect(&identity.ca_pem, connect(&server).await)
        .await
        .unwrap();
    let mut c = Conn::new(tls);
    c.write_all(GET).await.unwrap();
    assert_eq!(read_response(&mut c, false).await.0, 200);

    let bad = TlsIdentity::self_signed(&["localhost"]);
    let server = FaultServer::start_tls(Mode::Ok, tcp_bind(), bad.clone())
        .await
        .unwrap();
    let err = tls_connect(&bad.ca_pem, connect(&server).await)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

/// stall-header over TLS: the handshake completes, then nothing.
#[tokio::test]
async fn tls_stall_header() {
    let identity = TlsIdentity::generate(&["localhost"]);
    let server = FaultServer::start_tls(Mode::StallHeader, tcp_bind(), identity.clone())
        .await
        .unwrap();
    let mut tls = tls_connect(&identity.ca_pem, connect(&server).await)
        .await
        .unwrap();
    tls.write_all(GET).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(timeout(Duration::from_millis(200), tls.read(&mut buf))
        .await
        .is_err());
}

async fn tls_connect(
    ca_pem: &str,
    tcp: TcpStream,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}
