//! What the client (nginx) does wrong is never an upstream failure, and what handoff says
//! about an upstream depends on who asks.

use std::time::Duration;

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::Client;
use handoff::testing::{eventually, TestHandoff};

/// nginx going away mid-download is counted as a client abort, not an upstream failure.
#[tokio::test(flavor = "multi_thread")]
async fn client_abort_is_not_an_upstream_failure() {
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let handoff = TestHandoff::for_upstream(&app.target(), "").unwrap();
    {
        let mut c = Client::connect(handoff.addr(0)).await.unwrap();
        c.send(b"GET /bytes/104857600 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let (reader, _) = c.halves();
        let mut buf = [0u8; 4096];
        tokio::io::AsyncReadExt::read_exact(reader, &mut buf)
            .await
            .unwrap();
        // Dropping the client closes the connection with most of 100 MiB unsent.
    }
    let aborts = eventually(
        || {
            handoff
                .metric("handoff_client_aborts_total", &[("upstream", "app")])
                .unwrap_or(0.0)
        },
        1.0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(aborts, 1.0);
    assert_eq!(handoff.metric_sum("handoff_upstream_failures_total"), 0.0);
}

/// A request body cut short by the client is a client error (or abort), never an upstream
/// failure, and handoff keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn request_body_cut_short_is_a_client_problem() {
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let handoff = TestHandoff::for_upstream(&app.target(), "").unwrap();
    {
        let mut c = Client::connect(handoff.addr(0)).await.unwrap();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789")
            .await
            .unwrap();
    }
    let client_side = eventually(
        || {
            handoff
                .metric("handoff_client_aborts_total", &[("upstream", "app")])
                .unwrap_or(0.0)
                + handoff
                    .metric("handoff_client_errors_total", &[("upstream", "app")])
                    .unwrap_or(0.0)
        },
        1.0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(client_side, 1.0);
    assert_eq!(handoff.metric_sum("handoff_upstream_failures_total"), 0.0);
    let r = handoff::testing::client::get(handoff.addr(0), "/")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

/// At the default exposure no address, socket path, errno or upstream byte reaches the
/// client; with the debug header and token they do.
#[tokio::test(flavor = "multi_thread")]
async fn exposure_levels_through_a_real_failure() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret-app.sock");
    let handoff = TestHandoff::start_toml(&format!(
        "[admin]\nlisten = \"{{ADMIN}}\"\n[annotate]\ndebug_token = \"sesame\"\n[[upstream]]\nname = \"app\"\n\
         listen = \"127.0.0.1:{{PORT0}}\"\naddress = \"unix:{}\"\n",
        secret.display()
    ))
    .unwrap();
    let secrets = [
        "secret-app.sock",
        &dir.path().display().to_string(),
        "ENOENT",
        "No such file",
    ];
    for accept in ["application/json", "text/html", "text/plain"] {
        let mut c = Client::connect(handoff.addr(0)).await.unwrap();
        let r = c
            .request("GET", "/", &[("Accept", accept)], b"")
            .await
            .unwrap();
        assert_eq!(r.status, 502);
        assert_eq!(r.header("x-handoff-reason"), Some("socket_not_found"));
        let everything = format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body));
        for s in secrets {
            assert!(
                !everything.contains(s),
                "{s} leaked at the default exposure ({accept}): {everything}"
            );
        }
    }
    // A wrong token changes nothing.
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    let r = c
        .request("GET", "/", &[("x-handoff-debug", "guess")], b"")
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&r.body).contains("secret-app.sock"));
    // The right token shows the evidence.
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    let r = c
        .request(
            "GET",
            "/",
            &[
                ("Accept", "application/json"),
                ("x-handoff-debug", "sesame"),
            ],
            b"",
        )
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        body.contains("secret-app.sock") && body.contains("ENOENT"),
        "{body}"
    );
    assert!(r.header("proxy-status").unwrap().contains("next-hop="));
}
