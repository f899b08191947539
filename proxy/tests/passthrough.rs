//! Transparency: what the app sends is what nginx gets, byte for byte, through real sockets
//! and a real pingora server started in-process.

use std::time::Duration;

use handoff::faults::{self as app, Bind, FaultServer, Mode, TlsIdentity};
use handoff::testing::client::{get, Client};
use handoff::testing::{eventually, TestHandoff};

async fn app_server() -> FaultServer {
    FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
}

fn handoff_for(target: &str, extra: &str) -> TestHandoff {
    TestHandoff::for_upstream(target, extra).unwrap()
}

/// Small, 10 MiB content-length and chunked bodies arrive byte-identical.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_byte_identical() {
    let app = app_server().await;
    let handoff = handoff_for(&app.target(), "");
    let r = get(handoff.addr(0), "/").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello from the app\n");

    let n = 10 << 20;
    let r = get(handoff.addr(0), &format!("/bytes/{n}")).await.unwrap();
    assert_eq!(r.header("content-length"), Some(n.to_string().as_str()));
    assert!(r.body == app::pattern_bytes(n), "10 MiB body differs");

    let r = get(handoff.addr(0), "/chunked/1000003").await.unwrap();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(
        r.body == app::pattern_bytes(1_000_003),
        "chunked body differs"
    );
}

/// A 10 MiB upload reaches the app intact (length and FNV-1a hash checked by the app).
#[tokio::test(flavor = "multi_thread")]
async fn large_upload_reaches_the_app_intact() {
    let app = app_server().await;
    let handoff = handoff_for(&app.target(), "");
    let body = app::pattern_bytes(10 << 20);
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    let r = c.request("POST", "/echo", &[], &body).await.unwrap();
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(echo["body_fnv64"], format!("{:016x}", app::fnv64(&body)));

    // And a chunked upload of the same bytes.
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for part in body.chunks(100_000) {
        c.send(format!("{:x}\r\n", part.len()).as_bytes())
            .await
            .unwrap();
        c.send(part).await.unwrap();
        c.send(b"\r\n").await.unwrap();
    }
    c.send(b"0\r\n\r\n").await.unwrap();
    let (r, _) = c.read_response(false).await.unwrap();
    assert_eq!(
        r.json()["body_fnv64"],
        format!("{:016x}", app::fnv64(&body))
    );
}

/// Status codes and end-to-end headers pass unchanged, including 204, 304 and HEAD.
#[tokio::test(flavor = "multi_thread")]
async fn statuses_and_headers_pass_unchanged() {
    let app = app_server().await;
    let handoff = handoff_for(&app.target(), "");
    let path = "/headers?x-a=1&x-a=2&set-cookie=a%3Db&cache-control=max-age%3D60";
    let direct = get(app.local_addr().unwrap(), path).await.unwrap();
    let proxied = get(handoff.addr(0), path).await.unwrap();
    for name in [
        "x-a",
        "set-cookie",
        "cache-control",
        "content-type",
        "content-length",
    ] {
        assert_eq!(
            direct.header_all(name),
            proxied.header_all(name),
            "header {name}"
        );
    }
    assert!(proxied.header("x-handoff-reason").is_none());
    assert!(proxied.header("proxy-status").is_none());

    for status in [200u16, 201, 204, 301, 304, 404, 418, 500, 503] {
        let r = get(handoff.addr(0), &format!("/status/{status}"))
            .await
            .unwrap();
        assert_eq!(r.status, status);
        if status == 204 || status == 304 {
            assert!(r.body.is_empty());
        }
        assert!(
            r.header("x-handoff-reason").is_none(),
            "the app's own {status} is not a handoff failure"
        );
    }
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    let head = c.request("HEAD", "/bytes/5000", &[], b"").await.unwrap();
    assert_eq!(head.header("content-length"), Some("5000"));
    assert!(head.body.is_empty());
    // The connection is still usable after HEAD.
    let r = c.request("GET", "/", &[], b"").await.unwrap();
    assert_eq!(r.status, 200);

    let failures = handoff.metric("handoff_upstream_failures_total", &[("upstream", "app")]);
    assert_eq!(failures, Some(0.0));
}

/// Keep-alive on both sides: 50 requests on one client connection use one app connection.
#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_reuses_upstream_connections() {
    let app = app_server().await;
    let handoff = handoff_for(&app.target(), "pool_idle_timeout = \"5s\"\n");
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    for _ in 0..50 {
        let r = c.request("GET", "/", &[], b"").await.unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(app.requests(), 50);
    assert_eq!(
        app.connections(),
        1,
        "the upstream connection is pooled and reused"
    );
    let reuses = handoff.metric(
        "handoff_upstream_connection_reuses_total",
        &[("upstream", "app")],
    );
    assert_eq!(reuses, Some(49.0));
    let ok = eventually(
        || {
            handoff
                .metric(
                    "handoff_upstream_requests_total",
                    &[("upstream", "app"), ("status_class", "2xx")],
                )
                .unwrap_or(0.0)
        },
        50.0,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(ok, 50.0);
}

/// X-Request-Id: kept when nginx sends one, generated and forwarded when it does not or
/// when the one it sent cannot be kept (then it is replaced, not repeated).
#[tokio::test(flavor = "multi_thread")]
async fn request_id_is_kept_or_generated() {
    let app = app_server().await;
    let handoff = handoff_for(&app.target(), "");
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    let r = c
        .request("GET", "/echo", &[("X-Request-Id", "nginx-abc123")], b"")
        .await
        .unwrap();
    let sent: Vec<String> = header_values(&r.json(), "x-request-id");
    assert_eq!(sent, vec!["nginx-abc123".to_string()]);
    let r = c.request("GET", "/echo", &[], b"").await.unwrap();
    let sent = header_values(&r.json(), "x-request-id");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].len(), 16, "a generated id: {sent:?}");
    let r = c
        .request("GET", "/echo", &[("X-Request-Id", "has\tcontrol")], b"")
        .await
        .unwrap();
    let replaced = header_values(&r.json(), "x-request-id");
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert_eq!(replaced[0].len(), 16, "a generated id: {replaced:?}");
    assert_ne!(replaced[0], sent[0], "each request gets its own id");
}

fn header_values(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

/// Hop-by-hop request headers are not forwarded (RFC 9110 §7.6.1); end-to-end ones are.
#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_request_headers_are_dropped() {
    let app = app_server().await;
    let handoff = handoff_for(&app.target(), "");
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    let r = c
        .request(
            "GET",
            "/echo",
            &[
                ("Connection", "keep-alive, X-Secret"),
                ("X-Secret", "1"),
                ("Keep-Alive", "timeout=5"),
                ("X-Kept", "yes"),
            ],
            b"",
        )
        .await
        .unwrap();
    let echo = r.json();
    assert!(header_values(&echo, "x-secret").is_empty());
    assert!(header_values(&echo, "keep-alive").is_empty());
    assert_eq!(header_values(&echo, "x-kept"), vec!["yes".to_string()]);
}

/// 1xx responses and Expect: 100-continue work through the proxy.
#[tokio::test(flavor = "multi_thread")]
async fn informational_responses_pass() {
    let app = app_server().await;
    let handoff = handoff_for(&app.target(), "");
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    let r = c.request("GET", "/early-hints", &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
    let body = app::pattern_bytes(1000);
    let r = c
        .request("POST", "/echo", &[("Expect", "100-continue")], &body)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 1000);
}

/// A WebSocket upgrade passes through and bytes flow both ways afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_passes_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = app_server().await;
    let handoff = handoff_for(&app.target(), "");
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    c.send(b"GET /upgrade HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let (r, _) = c.read_response(false).await.unwrap();
    assert_eq!(r.status, 101);
    let (reader, writer) = c.halves();
    writer.write_all(b"ping through handoff").await.unwrap();
    let mut buf = [0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), reader.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping through handoff");
}

/// A unix-socket upstream works like a TCP one.
#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let app = FaultServer::start(Mode::Ok, Bind::Unix(dir.path().join("app.sock")))
        .await
        .unwrap();
    assert!(app.target().starts_with("unix:/"));
    let handoff = handoff_for(&app.target(), "");
    let r = get(handoff.addr(0), "/bytes/100000").await.unwrap();
    assert!(r.body == app::pattern_bytes(100_000));
}

/// A TLS upstream verified against a CA generated for the test.
#[tokio::test(flavor = "multi_thread")]
async fn tls_upstream_with_a_test_ca() {
    let identity = TlsIdentity::generate(&["localhost", "127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &identity.ca_pem).unwrap();
    let app = FaultServer::start_tls(
        Mode::Ok,
        Bind::Tcp("127.0.0.1:0".parse().unwrap()),
        identity,
    )
    .await
    .unwrap();
    let port = app.local_addr().unwrap().port();
    let handoff = handoff_for(
        &format!("tls://127.0.0.1:{port}"),
        &format!("sni = \"localhost\"\nca_file = \"{}\"\n", ca.display()),
    );
    let r = get(handoff.addr(0), "/bytes/70000").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == app::pattern_bytes(70_000));
}
