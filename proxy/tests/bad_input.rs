//! Malformed and hostile input on both sides of handoff.
//!
//! Client side (raw TCP to handoff): each bad request gets a 4xx or a closed connection,
//! never reaches the app in an ambiguous form (the app counts request heads: at most the one
//! request the client framed unambiguously, never a smuggled second one), is never counted as
//! an upstream failure, and handoff answers a normal request afterwards.
//!
//! Upstream side (small raw servers written here): invalid bytes in header values,
//! duplicate differing Content-Length, a huge chunk size. The client gets a clean response
//! (200 passed through or an annotated 502) or a closed connection, and handoff lives on.
//!
//! Run: `cargo test -p handoff --test bad_input -- --nocapture`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::Client;
use handoff::testing::TestHandoff;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What came back for one raw exchange.
#[derive(Debug)]
struct Outcome {
    /// The status of the first response, if one started.
    status: Option<u16>,
    /// Everything read until EOF (or until `within` passed).
    bytes: Vec<u8>,
    /// The connection was closed by handoff (EOF or reset) within the bound.
    closed: bool,
}

/// Sends `request` (write errors ignored: handoff may close first), shuts the write side
/// down when `half_close`, and reads until EOF or `within`.
async fn exchange(addr: SocketAddr, request: &[u8], half_close: bool, within: Duration) -> Outcome {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    read_outcome(&mut s, within).await
}

async fn read_outcome(s: &mut TcpStream, within: Duration) -> Outcome {
    let until = tokio::time::Instant::now() + within;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let status = bytes
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|r| std::str::from_utf8(&r[..3.min(r.len())]).ok())
        .and_then(|s| s.parse().ok());
    Outcome {
        status,
        bytes,
        closed,
    }
}

/// Sum of every `handoff_upstream_failures_total` series.
fn upstream_failures(h: &TestHandoff) -> f64 {
    h.shared()
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("handoff_upstream_failures_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn normal_request_works(addr: SocketAddr) {
    let r = Client::connect(addr)
        .await
        .unwrap()
        .request("GET", "/echo?after=1", &[], b"")
        .await
        .expect("a normal request after the bad one");
    assert_eq!(r.status, 200, "{r:?}");
}

/// The case may be forwarded, framed one unambiguous way.
const FORWARD: bool = true;

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_never_reach_the_app_ambiguously() {
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let h = TestHandoff::start_toml(&format!(
        "[admin]\nlisten = \"{{ADMIN}}\"\n[[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{{PORT0}}\"\naddress = \"{}\"\n",
        app.target()
    ))
    .unwrap();
    let addr = h.addr(0);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2 << 20)
    );
    // (name, bytes, half-close after sending, may be forwarded: framed unambiguously
    // by the rules of RFC 9112 §6.3, with the connection closed afterwards)
    let cases: Vec<(&str, Vec<u8>, bool, bool)> = vec![
        ("garbage request line", b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(), false, false),
        ("not HTTP at all", b"HELLO THERE\r\n\r\n".to_vec(), false, false),
        ("2 MiB request header", big.into_bytes(), false, false),
        (
            "Content-Length and Transfer-Encoding",
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            )
            .into_bytes(),
            false,
            FORWARD,
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            )
            .into_bytes(),
            false,
            false,
        ),
        (
            "invalid chunk size",
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n{SMUGGLED}"
            )
            .into_bytes(),
            false,
            false,
        ),
        (
            "body cut short (Content-Length 1000, 10 sent, closed)",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789".to_vec(),
            true,
            false,
        ),
    ];

    for (name, request, half_close, forward) in cases {
        let before = app.requests();
        let o = exchange(addr, &request, half_close, Duration::from_secs(5)).await;
        let reached = app.requests() - before;
        println!(
            "bad input: {name}: status {:?}, closed {}, app saw {reached} request(s)",
            o.status, o.closed
        );
        // A 4xx, or a closed connection with nothing (or an incomplete response) sent.
        let text = String::from_utf8_lossy(&o.bytes);
        match o.status {
            Some(s) if (400..500).contains(&s) => {}
            // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3): pingora forwards
            // the request chunked, drops Content-Length, and closes the connection after the
            // response so nothing after the body is read as a request.
            Some(200) if forward => {
                assert!(
                    o.closed,
                    "{name}: connection kept open after an ambiguous request"
                );
                assert!(
                    text.contains("[\"Transfer-Encoding\",\"chunked\"]"),
                    "{name}: {text}"
                );
                assert!(
                    !text.contains("[\"Content-Length\""),
                    "{name}: both framings forwarded: {text}"
                );
            }
            Some(s) => panic!("{name}: {s}\n{text}"),
            None => assert!(o.closed, "{name}: no answer and still open"),
        }
        // Never a smuggled second request; at most the one unambiguous first request.
        assert!(reached <= 1, "{name}: the app saw {reached} requests");
        assert!(
            !String::from_utf8_lossy(&o.bytes).contains("/smuggled"),
            "{name}: the smuggled request was answered"
        );
        normal_request_works(addr).await;
    }
    assert_eq!(
        upstream_failures(&h),
        0.0,
        "a client error counted as an upstream failure"
    );
}

/// Header bytes trickled one every 100 ms. handoff (pingora 0.9.1) sets no timeout on
/// reading a new downstream request header, so a slow client holds a connection and a task
/// for as long as it keeps trickling. This pins the current behaviour: the connection is
/// still open after the bound; a normal request is served meanwhile. See
/// docs/reliability.md for the proposed fix (a downstream header read timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_header_trickle() {
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let h = TestHandoff::start_toml(&format!(
        "[admin]\nlisten = \"{{ADMIN}}\"\n[[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{{PORT0}}\"\naddress = \"{}\"\n",
        app.target()
    ))
    .unwrap();
    let addr = h.addr(0);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let header = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: {}", "s".repeat(200));
    let bound = Duration::from_secs(6);
    let started = Instant::now();
    let mut closed_after = None;
    for b in header.bytes() {
        if started.elapsed() >= bound {
            break;
        }
        if s.write_all(&[b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // A read that ends (EOF/RST) means handoff gave up on us.
        let mut buf = [0u8; 1024];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            if matches!(r, Ok(0) | Err(_)) {
                closed_after = Some(started.elapsed());
                break;
            }
        }
    }
    println!(
        "bad input: slowloris (1 byte / 100 ms for {bound:?}): {}",
        match closed_after {
            Some(t) => format!("closed by handoff after {t:?}"),
            None => "still open: no downstream header timeout".to_owned(),
        }
    );
    normal_request_works(addr).await;
    // Current behaviour (see the doc comment): not closed within the bound.
    assert!(
        closed_after.is_none_or(|t| t <= bound),
        "closed, but only after the bound"
    );
    assert_eq!(app.requests(), 1, "the slow header never reached the app");
    assert_eq!(upstream_failures(&h), 0.0);
}

/// A raw upstream answering by path with hostile bytes.
async fn hostile_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let path = String::from_utf8_lossy(&head)
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .to_owned();
                let response: &[u8] = match path.as_str() {
                    "/obs-text" => b"HTTP/1.1 200 OK\r\nX-Bad: caf\xe9 \xff\xfe\x80\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    "/bare-cr" => b"HTTP/1.1 200 OK\r\nX-Bad: a\rInjected: yes\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    "/nul" => b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    "/dup-cl" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 40\r\nConnection: close\r\n\r\nok\nHTTP/1.1 200 OK\r\nX-Smuggled: 1\r\n\r\n",
                    "/huge-chunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nffffffffffffffff\r\nabc",
                    _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                };
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_upstream_responses_are_contained() {
    let (upstream, task) = hostile_upstream().await;
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let h = TestHandoff::start_toml(&format!(
        "[admin]\nlisten = \"{{ADMIN}}\"\n\
         [[upstream]]\nname = \"hostile\"\nlisten = \"127.0.0.1:{{PORT0}}\"\naddress = \"{upstream}\"\nread_timeout = \"2s\"\nheader_timeout = \"2s\"\n\
         [[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{{PORT1}}\"\naddress = \"{}\"\n",
        app.target()
    ))
    .unwrap();
    for path in ["/obs-text", "/bare-cr", "/nul", "/dup-cl", "/huge-chunk"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
        let o = exchange(h.addr(0), request.as_bytes(), false, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&o.bytes);
        let reason = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("x-handoff-reason: ")
                    .or(l.strip_prefix("X-Handoff-Reason: "))
            })
            .map(str::to_owned);
        println!(
            "bad input: upstream {path}: status {:?}, reason {reason:?}, closed {}, {} bytes",
            o.status,
            o.closed,
            o.bytes.len()
        );
        assert!(o.closed, "{path}: connection left open");
        match o.status {
            Some(502) => assert!(reason.is_some(), "{path}: 502 without a reason:\n{text}"),
            // Passed through: the header section must be clean (no bytes that could split it).
            Some(200) => {
                let head_end = o
                    .bytes
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or(o.bytes.len());
                let head = &o.bytes[..head_end];
                assert!(
                    !head.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'),
                    "{path}: bare CR forwarded in the header:\n{text}"
                );
                assert!(!head.contains(&0), "{path}: NUL forwarded");
                assert!(
                    !text.contains("X-Smuggled"),
                    "{path}: a second response was forwarded"
                );
            }
            None => {}
            Some(s) => panic!("{path}: unexpected status {s}:\n{text}"),
        }
        // handoff lives on: the healthy upstream still answers.
        normal_request_works(h.addr(1)).await;
    }
    let text = h.shared().metrics.encode();
    for line in text
        .lines()
        .filter(|l| l.starts_with("handoff_upstream_failures_total{") && !l.ends_with(" 0"))
    {
        println!("bad input: {line}");
    }
    assert_eq!(
        h.metric(
            "handoff_upstream_failures_total",
            &[("upstream", "hostile"), ("reason", "unclassified")]
        ),
        Some(0.0)
    );
    task.abort();
}
