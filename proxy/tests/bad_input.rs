//! Malformed and hostile input on both sides of handoff.
//!
//! Client side (raw TCP to handoff): each bad request gets a 4xx or a closed connection,
//! never reaches the app in an ambiguous form (the app counts request heads: at most the one
//! request the client framed unambiguously, never a smuggled second one), is counted once as
//! a client error and never as an upstream failure, and handoff answers a normal request
//! afterwards. A client too slow with its header (slowloris) is answered 408 and closed;
//! an idle keep-alive connection and a slow request body are not.
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
use handoff::testing::{eventually, TestHandoff};
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

/// `handoff_client_errors_total` plus `handoff_client_aborts_total` for upstream `app`.
fn client_errors(h: &TestHandoff) -> f64 {
    ["handoff_client_errors_total", "handoff_client_aborts_total"]
        .iter()
        .map(|family| h.metric(family, &[("upstream", "app")]).unwrap_or(0.0))
        .sum()
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
        let errors_before = client_errors(&h);
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
                // Not an error: one request, framed by Transfer-Encoding.
                assert_eq!(client_errors(&h), errors_before, "{name}");
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
        if o.status != Some(200) {
            let errors = eventually(|| client_errors(&h), errors_before + 1.0, WITHIN).await;
            assert_eq!(
                errors,
                errors_before + 1.0,
                "{name}: counted as a client error"
            );
        }
        normal_request_works(addr).await;
    }
    assert_eq!(
        upstream_failures(&h),
        0.0,
        "a client error counted as an upstream failure"
    );
}

/// How long a counter may take to reach its value (connections are counted as they close).
const WITHIN: Duration = Duration::from_secs(3);

/// The header deadline the slow-client tests run with.
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);

/// handoff with `client_header_timeout = 500ms` in front of an app that answers 200.
async fn with_header_timeout() -> (TestHandoff, FaultServer) {
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let h = TestHandoff::start_toml(&format!(
        "[server]\nclient_header_timeout = \"{}ms\"\n[admin]\nlisten = \"{{ADMIN}}\"\n\
         [[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{{PORT0}}\"\naddress = \"{}\"\n",
        HEADER_TIMEOUT.as_millis(),
        app.target()
    ))
    .unwrap();
    (h, app)
}

/// Slowloris: header bytes trickled one every 100 ms, on a keep-alive connection that has
/// already served one request. The client gets `408 Request Timeout` and a closed
/// connection once `client_header_timeout` has passed since the first byte; nothing
/// reaches the app; it counts as one client error, not an upstream failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_header_trickle_is_cut_off() {
    let (h, app) = with_header_timeout().await;
    let addr = h.addr(0);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /echo?n=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let first = read_one_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    let header = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: {}", "s".repeat(200));
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut closed_after = None;
    'trickle: for b in header.bytes() {
        if s.write_all(&[b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 1024];
        let pause = tokio::time::Instant::now() + Duration::from_millis(100);
        while let Ok(r) = tokio::time::timeout_at(pause, s.read(&mut buf)).await {
            match r {
                Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
                _ => {
                    closed_after = Some(started.elapsed());
                    break 'trickle;
                }
            }
        }
    }
    let closed_after = closed_after.expect("the trickling client was never cut off");
    println!("bad input: slowloris (1 byte / 100 ms): 408 and closed after {closed_after:?}");
    assert!(
        closed_after >= HEADER_TIMEOUT && closed_after < HEADER_TIMEOUT * 4,
        "closed after {closed_after:?} with client_header_timeout {HEADER_TIMEOUT:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n")
            && answer.contains("Connection: close"),
        "{answer}"
    );
    assert_eq!(eventually(|| client_errors(&h), 1.0, WITHIN).await, 1.0);
    assert_eq!(app.requests(), 1, "the slow header never reached the app");
    assert_eq!(upstream_failures(&h), 0.0);
    normal_request_works(addr).await;
}

/// Reads one response with a Content-Length body from `s`.
async fn read_one_response(s: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")?
                        .parse()
                        .ok()
                })
                .expect("a Content-Length");
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(WITHIN, s.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed before the response was complete");
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// A client that connects and sends nothing is closed after the deadline too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed() {
    let (h, _app) = with_header_timeout().await;
    let started = Instant::now();
    let o = exchange(h.addr(0), b"", false, Duration::from_secs(5)).await;
    assert!(o.closed, "a silent connection was kept");
    assert_eq!(o.status, Some(408));
    assert!(
        started.elapsed() < HEADER_TIMEOUT * 4,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(eventually(|| client_errors(&h), 1.0, WITHIN).await, 1.0);
}

/// The deadline is on headers only: an idle keep-alive connection outlives it (its clock
/// starts with the next request's first byte), and a request body may arrive slowly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_and_slow_bodies_are_not_cut_off() {
    let (h, app) = with_header_timeout().await;
    let mut client = Client::connect(h.addr(0)).await.unwrap();
    let first = client.request("GET", "/echo?n=1", &[], b"").await.unwrap();
    assert_eq!(first.status, 200);
    // Idle for three deadlines: pingora's keep-alive timeout governs this, not ours.
    tokio::time::sleep(HEADER_TIMEOUT * 3).await;
    let second = client.request("GET", "/echo?n=2", &[], b"").await.unwrap();
    assert_eq!(second.status, 200, "the idle keep-alive connection was cut");

    // A body trickled over three deadlines, after a header sent at once.
    let body = b"0123456789";
    client
        .send(
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    for chunk in body.chunks(2) {
        tokio::time::sleep(HEADER_TIMEOUT * 3 / 5).await;
        client.send(chunk).await.unwrap();
    }
    let (third, _) = client.read_response(false).await.unwrap();
    assert_eq!(third.status, 200, "a slow body was cut: {third:?}");
    assert_eq!(app.requests(), 3);
    assert_eq!(client_errors(&h), 0.0);
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
