//! Pooled keep-alive connections: reuse never turns into a false "premature close" for the
//! client; where a stale connection still fails, it is named with `reused` and its idle age.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::Client;
use handoff::testing::{eventually, TestHandoff};

fn handoff_for(app: &FaultServer, extra: &str) -> TestHandoff {
    TestHandoff::start_toml(&format!(
        "[admin]\nlisten = \"{{ADMIN}}\"\n[annotate]\ndebug_token = \"sesame\"\n[[upstream]]\nname = \"app\"\n\
         listen = \"127.0.0.1:{{PORT0}}\"\naddress = \"{}\"\n{extra}",
        app.target()
    ))
    .unwrap()
}

/// A GET on a pooled connection the app had given up on is retried once on a fresh
/// connection: the client sees 200, the failed attempt is counted, the request is not.
#[tokio::test(flavor = "multi_thread")]
async fn stale_pooled_connection_get_is_retried() {
    let app = FaultServer::start(
        Mode::StaleKeepalive,
        Bind::Tcp("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let handoff = handoff_for(&app, "pool_idle_timeout = \"5s\"\n");
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    for _ in 0..2 {
        let r = c.request("GET", "/", &[], b"").await.unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        app.connections(),
        2,
        "the second request went to a fresh connection"
    );
    let attempts = eventually(
        || handoff.metric_sum("handoff_upstream_attempt_failures_total"),
        1.0,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(attempts, 1.0);
    let race = handoff.metric(
        "handoff_upstream_attempt_failures_total",
        &[("upstream", "app"), ("reason", "closed_before_response")],
    );
    assert_eq!(race, Some(1.0));
    assert_eq!(handoff.metric_sum("handoff_upstream_failures_total"), 0.0);
}

/// A POST is never replayed: on a stale pooled connection it fails as
/// `closed_before_response`, with `reused=true`, the idle age, and a hint naming the
/// keep-alive race.
#[tokio::test(flavor = "multi_thread")]
async fn stale_pooled_connection_post_is_named_the_keepalive_race() {
    let app = FaultServer::start(
        Mode::StaleKeepalive,
        Bind::Tcp("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let handoff = handoff_for(&app, "pool_idle_timeout = \"5s\"\n");
    let mut c = Client::connect(handoff.addr(0)).await.unwrap();
    let r = c.request("GET", "/", &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
    let r = c
        .request(
            "POST",
            "/echo",
            &[
                ("Accept", "application/json"),
                ("x-handoff-debug", "sesame"),
            ],
            b"order=1",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-handoff-reason"), Some("closed_before_response"));
    let problem = r.json();
    assert_eq!(problem["evidence"]["reused"], true, "{problem}");
    assert!(
        problem["evidence"]["idle_ms"].as_f64().is_some(),
        "idle age in {problem}"
    );
    let detail = problem["evidence"]["hint_detail"]
        .as_str()
        .or(problem["hint_detail"].as_str())
        .unwrap_or("");
    let text = format!("{} {}", problem["hint"], detail).to_lowercase();
    assert!(
        text.contains("keep-alive"),
        "hint should name the keep-alive race: {text}"
    );
    assert_eq!(app.requests(), 1, "the POST was not replayed");
    let failures = eventually(
        || {
            handoff
                .metric(
                    "handoff_upstream_failures_total",
                    &[("upstream", "app"), ("reason", "closed_before_response")],
                )
                .unwrap_or(0.0)
        },
        1.0,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(failures, 1.0);
}

/// 20,000 keep-alive requests, GET and POST, at irregular intervals, to an app that closes
/// idle connections after one second, with the pool idle timeout below it: zero failures.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_keepalive_requests_without_a_failure() {
    let app = FaultServer::start(
        Mode::KeepAliveClose(Duration::from_secs(1)),
        Bind::Tcp("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let handoff = handoff_for(&app, "pool_idle_timeout = \"500ms\"\n");
    let addr = handoff.addr(0);
    const CLIENTS: u64 = 16;
    const PER_CLIENT: u64 = 1250;
    let ok = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let ok = ok.clone();
        tasks.push(tokio::spawn(async move {
            // A small deterministic generator per client: irregular but reproducible gaps.
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (client + 1);
            let mut c = Client::connect(addr).await.unwrap();
            for i in 0..PER_CLIENT {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // 1 in 100 requests waits 400..1200 ms: across the pool's 500 ms and the
                // app's 1 s idle limits. The others follow at once or after up to 2 ms.
                let pause = if x % 100 == 0 { 400 + x % 800 } else { x % 3 };
                if pause > 0 {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                let r = if i % 2 == 0 {
                    c.request("GET", "/", &[], b"").await
                } else {
                    c.request("POST", "/echo", &[], b"payload").await
                };
                let r = r.unwrap_or_else(|e| panic!("client {client} request {i}: {e}"));
                assert_eq!(r.status, 200, "client {client} request {i}: {r:?}");
                ok.fetch_add(1, Ordering::Relaxed);
                // At `keepalive_requests` handoff answers `Connection: close`, as nginx
                // does; the client then opens a new connection.
                if r.header("connection") == Some("close") {
                    c = Client::connect(addr).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(ok.load(Ordering::Relaxed), CLIENTS * PER_CLIENT);
    assert_eq!(
        app.requests(),
        CLIENTS * PER_CLIENT,
        "every request reached the app once"
    );
    assert_eq!(handoff.metric_sum("handoff_upstream_failures_total"), 0.0);
    let attempts = handoff.metric_sum("handoff_upstream_attempt_failures_total");
    println!(
        "20,000 keep-alive requests: {} app connections, {} failed attempts retried, 0 failures",
        app.connections(),
        attempts
    );
}
