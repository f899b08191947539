//! nginx's connection to handoff outlives a failure: handoff's annotated answer is a complete
//! response, so the connection takes the next request (pingora alone would close it, and a
//! failing app would cost nginx a new connection per request). Where the request was not
//! read whole, or the client asked for a close, the connection closes as before.

use std::time::Duration;

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::Client;
use handoff::testing::{eventually, free_port, TestHandoff};

const WITHIN: Duration = Duration::from_secs(5);

fn handoff_for(address: &str) -> TestHandoff {
    TestHandoff::start_toml(&format!(
        "[admin]\nlisten = \"{{ADMIN}}\"\n[server]\nclient_header_timeout = \"300ms\"\n\
         [[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{{PORT0}}\"\naddress = \"{address}\"\n"
    ))
    .unwrap()
}

/// handoff in front of a loopback port nothing listens on, and a client connected to it.
async fn refused() -> (TestHandoff, Client) {
    let handoff = handoff_for(&format!("127.0.0.1:{}", free_port()));
    let client = Client::connect(handoff.addr(0)).await.unwrap();
    (handoff, client)
}

/// Sends a request the refused upstream fails, which must be answered with
/// `Connection: close` and then closed.
async fn answered_then_closed(method: &str, headers: &[(&str, &str)], body: &[u8]) {
    let (_handoff, mut client) = refused().await;
    let r = client
        .request(method, "/orders", headers, body)
        .await
        .unwrap();
    assert_eq!(r.header("x-handoff-reason"), Some("connect_refused"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.until_closed(WITHIN).await);
}

fn failures(handoff: &TestHandoff, reason: &str) -> f64 {
    handoff
        .metric(
            "handoff_upstream_failures_total",
            &[("upstream", "app"), ("reason", reason)],
        )
        .unwrap_or(0.0)
}

/// Three failed requests in a row on one client connection: each is answered, each says
/// `Connection: keep-alive`, each is counted once.
async fn failures_keep_the_connection(mode: Mode, reason: &str) {
    let app = FaultServer::start(mode, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let handoff = handoff_for(&app.target());
    let mut client = Client::connect(handoff.addr(0)).await.unwrap();
    for i in 1..=3 {
        let id = format!("kept-{i}");
        let r = tokio::time::timeout(
            WITHIN,
            client.request("GET", "/", &[("X-Request-Id", id.as_str())], b""),
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("request {i} on the kept connection: {e}"));
        assert_eq!(r.status, 502, "{r:?}");
        assert_eq!(r.header("x-handoff-reason"), Some(reason));
        assert_eq!(r.header("x-request-id"), Some(id.as_str()));
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    assert_eq!(
        eventually(|| failures(&handoff, reason), 3.0, WITHIN).await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_refused_keeps_the_client_connection() {
    failures_keep_the_connection(Mode::Refuse, "connect_refused").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_before_response_keeps_the_client_connection() {
    failures_keep_the_connection(Mode::Close, "closed_before_response").await;
}

/// A HEAD answer has no body: the next response on the connection starts where it should.
#[tokio::test(flavor = "multi_thread")]
async fn a_head_answer_leaves_the_connection_in_step() {
    let (_handoff, mut client) = refused().await;
    let head = client.request("HEAD", "/", &[], b"").await.unwrap();
    assert_eq!(head.status, 502);
    assert!(head.body.is_empty());
    assert_eq!(head.header("connection"), Some("keep-alive"));
    let get = client.request("GET", "/", &[], b"").await.unwrap();
    assert_eq!(get.status, 502);
    assert_eq!(get.header("x-handoff-reason"), Some("connect_refused"));
    assert_eq!(
        get.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
}

/// The app is down, then comes back: the connection that saw the outage gets the app's
/// answer, as nginx's pooled connection to handoff would.
#[tokio::test(flavor = "multi_thread")]
async fn the_connection_that_saw_the_outage_serves_the_recovery() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let handoff = handoff_for(&address);
    let mut client = Client::connect(handoff.addr(0)).await.unwrap();
    let r = client.request("GET", "/", &[], b"").await.unwrap();
    assert_eq!(r.header("x-handoff-reason"), Some("connect_refused"));

    let app = FaultServer::start(Mode::Ok, Bind::Tcp(address.parse().unwrap()))
        .await
        .unwrap();
    let r = client.request("GET", "/", &[], b"").await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(app.requests(), 1);
}

/// A kept connection is still a client connection: its next header has the same deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_connection_still_has_the_header_deadline() {
    let (_handoff, mut client) = refused().await;
    let r = client.request("GET", "/", &[], b"").await.unwrap();
    assert_eq!(r.header("x-handoff-reason"), Some("connect_refused"));
    client.send(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let (r, _) = tokio::time::timeout(WITHIN, client.read_response(false))
        .await
        .expect("the half-sent header was timed")
        .unwrap();
    assert_eq!(r.status, 408);
    assert!(client.until_closed(WITHIN).await);
}

/// The client asked for a close: it gets `Connection: close` and the close.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_asks_for_a_close_is_closed() {
    answered_then_closed("GET", &[("Connection", "close")], b"").await;
}

/// A request body handoff never read (the connect failed first) is not left on the
/// connection for the next request to trip over: `Connection: close` and the close.
#[tokio::test(flavor = "multi_thread")]
async fn an_unread_body_closes_the_connection() {
    answered_then_closed("POST", &[], &[b'x'; 4096]).await;
}
