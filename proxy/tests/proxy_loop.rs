//! What handoff's own HTTP/1 loop decides that pingora-proxy used to: the idle client's
//! keep-alive limit, the response header as a deadline, pipelined requests answered in
//! order, and an idle connection's footprint.
//!
//! Run: `cargo test -p handoff --test proxy_loop -- --nocapture`.

mod support;

use std::time::{Duration, Instant};

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::{Client, Response};
use handoff::testing::{captured_logs, eventually, TestHandoff};
use support::Proc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn app() -> FaultServer {
    FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
}

fn handoff(target: &str, server: &str, upstream: &str) -> TestHandoff {
    TestHandoff::start_toml(&format!(
        "[server]\n{server}\n[admin]\nlisten = \"{{ADMIN}}\"\n[[upstream]]\nname = \"app\"\n\
         listen = \"127.0.0.1:{{PORT0}}\"\naddress = \"{target}\"\n{upstream}"
    ))
    .unwrap()
}

/// Reads from `s` until the peer closes it; how long that took, or `None` within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

/// Reads one whole response off `s` (Content-Length framing, as the app's echo answers).
async fn one_response(s: &mut TcpStream, pending: &mut Vec<u8>) -> (String, Vec<u8>) {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end + 4]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a Content-Length");
            if pending.len() >= end + 4 + length {
                let body = pending[end + 4..end + 4 + length].to_vec();
                pending.drain(..end + 4 + length);
                return (head, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed with {:?} pending",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&buf[..n]);
    }
}

/// A client connection left idle after a response is closed once `keepalive_timeout` has
/// passed (nginx: 75 s by default), not before; many idle connections are all freed, and a
/// new client is served after them.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_client_connection_is_closed_at_keepalive_timeout() {
    const KEEPALIVE: Duration = Duration::from_millis(400);
    let app = app().await;
    let h = handoff(&app.target(), "keepalive_timeout = \"400ms\"", "");
    let mut idle = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(h.addr(0)).await.unwrap();
        s.write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = one_response(&mut s, &mut Vec::new()).await;
        assert!(head.contains("Connection: keep-alive"), "{head}");
        idle.push(s);
    }
    // The first was idle longest; each is closed after the limit, none before it.
    for s in &mut idle {
        let after = closed_within(s, Duration::from_secs(5))
            .await
            .expect("closed within 5 s");
        assert!(after < Duration::from_secs(3), "closed after {after:?}");
    }
    let mut s = TcpStream::connect(h.addr(0)).await.unwrap();
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (head, _) = one_response(&mut s, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let closed = closed_within(&mut s, Duration::from_secs(5)).await.unwrap();
    let idle_for = started.elapsed();
    assert!(
        idle_for >= KEEPALIVE,
        "closed after {closed:?} of idleness, before keepalive_timeout"
    );
    // Idle connections closed by the limit are no client errors.
    assert_eq!(
        h.metric("handoff_client_errors_total", &[("upstream", "app")]),
        Some(0.0)
    );
}

/// An app that sends its response header one byte every 100 ms makes every read quick,
/// so a per-read timer never fires; `header_timeout` is a deadline from the request's
/// write, and fires: 504 `response_header_timeout`, the header timer named with its value.
#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_header_trips_header_timeout_as_a_deadline() {
    let app = FaultServer::start(
        Mode::TrickleHeader,
        Bind::Tcp("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let h = handoff(
        &app.target(),
        "",
        "header_timeout = \"700ms\"\nread_timeout = \"5s\"\n",
    );
    let mut c = Client::connect(h.addr(0)).await.unwrap();
    let started = Instant::now();
    let r = c
        .request(
            "GET",
            "/slow",
            &[
                ("Accept", "application/json"),
                ("X-Request-Id", "trickle-1"),
            ],
            b"",
        )
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(
        r.header("x-handoff-reason"),
        Some("response_header_timeout")
    );
    assert!(
        r.header("proxy-status")
            .unwrap()
            .contains("error=http_response_timeout"),
        "{r:?}"
    );
    assert_eq!(r.json()["reason"], "response_header_timeout");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "answered after {took:?}: the deadline is 700 ms, the trickle takes 60 s"
    );
    let failures = eventually(
        || {
            h.metric(
                "handoff_upstream_failures_total",
                &[("upstream", "app"), ("reason", "response_header_timeout")],
            )
            .unwrap_or(0.0)
        },
        1.0,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(failures, 1.0);
    let line = eventually_log("trickle-1").await;
    assert!(line.contains("\"timer\":\"header_timeout\""), "{line}");
    assert!(line.contains("\"timer_value_ms\":700"), "{line}");
}

async fn eventually_log(request_id: &str) -> String {
    let needle = format!("\"request_id\":\"{request_id}\"");
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(line) = captured_logs().into_iter().find(|l| l.contains(&needle)) {
            return line;
        }
        assert!(Instant::now() < until, "no log line for {request_id}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A connection idle for longer than a second gives its buffers back and waits without
/// one; the next request on it is served as any other.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_idle_past_its_buffers_serves_the_next_request() {
    let app = app().await;
    let h = handoff(&app.target(), "", "");
    let mut c = Client::connect(h.addr(0)).await.unwrap();
    assert_eq!(
        c.request("GET", "/echo?n=1", &[], b"")
            .await
            .unwrap()
            .status,
        200
    );
    // The idleness is the scenario: past handoff's one second, well within keepalive_timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = c
        .request("POST", "/echo?n=2", &[], b"after a pause")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 13);
    assert_eq!(r.header("connection"), Some("keep-alive"));
}

/// Two requests in one write (pipelining, RFC 9112 §9.3.2) are both answered, in order, on
/// the same connection; so are a POST with a body and the GET behind it, and HTTP/1.0
/// keep-alive requests.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let app = app().await;
    let h = handoff(&app.target(), "", "");
    let cases: [&[u8]; 3] = [
        b"GET /echo?n=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?n=2 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /echo?n=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /echo?n=2 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /echo?n=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /echo?n=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ];
    for (i, bytes) in cases.into_iter().enumerate() {
        let before = app.requests();
        let mut s = TcpStream::connect(h.addr(0)).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut pending = Vec::new();
        for n in 1..=2 {
            let (head, body) = one_response(&mut s, &mut pending).await;
            assert!(
                head.starts_with("HTTP/1.1 200"),
                "case {i}, response {n}: {head}"
            );
            assert!(head.contains("Connection: keep-alive"), "case {i}: {head}");
            let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(echo["path"], format!("/echo?n={n}"), "case {i}: in order");
        }
        assert_eq!(app.requests() - before, 2, "case {i}: both reached the app");
        // And the connection is still in step for a third.
        s.write_all(b"GET /echo?n=3 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let (_, body) = one_response(&mut s, &mut pending).await;
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["path"], "/echo?n=3", "case {i}");
    }
}

/// An app that answers an upload it will not read (a 413, say) and keeps the connection
/// open: handoff stops sending, relays the answer, and closes the client's connection (its
/// body was not read); nothing is blamed on the app. Without watching the app while the
/// upload's writes wait, handoff would wait out `write_timeout` and answer 504.
#[tokio::test(flavor = "multi_thread")]
async fn an_early_answer_to_an_upload_is_relayed() {
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = app.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = app.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        s.write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\n\r\ntoo large")
            .await
            .unwrap();
        // Open, never reading the body: the sender's buffers fill and its writes wait.
        std::future::pending::<()>().await;
    });
    let h = handoff(&target, "", "write_timeout = \"30s\"\n");
    let mut c = Client::connect(h.addr(0)).await.unwrap();
    let started = Instant::now();
    let (r, _) = tokio::time::timeout(Duration::from_secs(10), async {
        c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 67108864\r\n\r\n")
            .await
            .unwrap();
        c.upload_and_read(64 << 20).await
    })
    .await
    .expect("an answer well before write_timeout")
    .unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.body, b"too large");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(started.elapsed() < Duration::from_secs(10));
    let requests = eventually(
        || {
            h.metric(
                "handoff_upstream_requests_total",
                &[("upstream", "app"), ("status_class", "4xx")],
            )
            .unwrap_or(0.0)
        },
        1.0,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(requests, 1.0);
    assert_eq!(h.metric_sum("handoff_upstream_failures_total"), 0.0);
}

/// A thousand client connections, each idle after one request, hold little memory: the
/// buffers a request needs are given back while a connection idles. The bound here is
/// loose, 20 KiB a connection in a test build (the benchmark holds the target, on the
/// release build); pingora-proxy's loop took 44 KiB each.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_idle_connections_stay_small() {
    const CONNECTIONS: usize = 1000;
    let app = app().await;
    let proc = Proc::start(
        &format!(
            "[admin]\nlisten = \"{{ADMIN}}\"\n[log]\nlevel = \"warn\"\n[[upstream]]\nname = \"app\"\n\
             listen = \"127.0.0.1:{{PORT0}}\"\naddress = \"{}\"\n",
            app.target()
        ),
        true,
    )
    .await;
    // Warm up: allocator arenas, the pool, the first connection.
    for _ in 0..20 {
        let r = handoff::testing::client::get(proc.addr(0), "/echo")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let before = proc.rss_kib();
    let mut idle: Vec<Client> = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut c = Client::connect(proc.addr(0)).await.unwrap();
        let r: Response = c.request("GET", "/echo", &[], b"").await.unwrap();
        assert_eq!(r.status, 200);
        idle.push(c);
    }
    // A connection idle for a second gives its buffers back: wait for that (at most 5 s).
    let bound = before + 20 * CONNECTIONS as u64;
    let until = Instant::now() + Duration::from_secs(5);
    while proc.rss_kib() > bound && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = proc.rss_kib();
    let per_connection = (after.saturating_sub(before)) as f64 * 1024.0 / CONNECTIONS as f64;
    println!(
        "1,000 idle connections: RSS {before} KiB -> {after} KiB ({per_connection:.0} bytes each)"
    );
    assert!(
        after <= bound,
        "1,000 idle connections took {} KiB",
        after - before
    );
    // Still all usable.
    for c in idle.iter_mut().step_by(100) {
        assert_eq!(
            c.request("GET", "/echo", &[], b"").await.unwrap().status,
            200
        );
    }
}
