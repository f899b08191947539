//! Signals under load, against the `handoff` binary: SIGTERM loses no in-flight request;
//! SIGHUP applies a new upstream address without a failed request; SIGHUP with a broken
//! file keeps the old configuration and logs why.
//!
//! Run: `cargo test -p handoff --test reload -- --nocapture`.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::Client;
use support::{poll_until, Proc};

fn tcp() -> Bind {
    Bind::Tcp("127.0.0.1:0".parse().unwrap())
}

fn config(address: &str, admin: &str, port: &str) -> String {
    format!(
        "[server]\ngrace_period = \"10s\"\n[admin]\nlisten = \"{admin}\"\n[log]\nformat = \"json\"\n\
         [[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{port}\"\naddress = \"{address}\"\n"
    )
}

/// SIGTERM mid-load: every request whose connection was accepted completes with 200;
/// connections refused after it are counted apart as "not sent"; exit status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_in_flight_request() {
    let app = FaultServer::start(Mode::Ok, tcp()).await.unwrap();
    let mut proc = Proc::start(&config(&app.target(), "{ADMIN}", "{PORT0}"), true).await;
    let addr = proc.addr(0);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let not_sent = Arc::new(AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (ok, failed, not_sent) = (ok.clone(), failed.clone(), not_sent.clone());
        clients.spawn(async move {
            loop {
                // One request per connection: an accepted connection is a request sent.
                let mut c = match Client::connect(addr).await {
                    Ok(c) => c,
                    Err(e) => {
                        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                        not_sent.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                match c
                    .request("GET", "/slow/200", &[("Connection", "close")], b"")
                    .await
                {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("in-flight request failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
    }
    // Mid-load: some requests done, others in flight at the app.
    assert!(
        poll_until(Duration::from_secs(10), || async {
            ok.load(Ordering::Relaxed) >= 32
        })
        .await
    );
    proc.signal("TERM");
    let code = proc.wait_exit(Duration::from_secs(15)).await;
    while let Some(r) = clients.join_next().await {
        r.unwrap();
    }
    println!(
        "reload: SIGTERM under load: {} completed with 200, {} failed, {} not sent (connection refused), exit {code:?}",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        not_sent.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "an in-flight request was lost"
    );
    assert_eq!(
        not_sent.load(Ordering::Relaxed),
        16,
        "every client ended refused"
    );
    assert_eq!(code, Some(0));
    assert_eq!(app.requests(), ok.load(Ordering::Relaxed));
}

/// Continuous load on keep-alive and fresh connections; returns (ok, failed) counters and
/// a stop flag.
fn load(
    addr: std::net::SocketAddr,
    clients: usize,
) -> (
    Arc<AtomicU64>,
    Arc<AtomicU64>,
    Arc<AtomicBool>,
    tokio::task::JoinSet<()>,
) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    for w in 0..clients {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        set.spawn(async move {
            let mut conn: Option<Client> = None;
            while !stop.load(Ordering::Relaxed) {
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => Client::connect(addr).await.expect("connect"),
                };
                match c.request("GET", "/echo", &[], b"").await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if w % 2 == 0 {
                            conn = Some(c);
                        }
                    }
                    other => {
                        eprintln!("request failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    (ok, failed, stop, set)
}

/// SIGHUP with a new upstream address under load: B starts receiving, no request fails,
/// one successful reload is counted. Then a broken file: the old config (B) stays, a
/// failed reload is counted, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_applies_without_a_failed_request_and_rejects_a_broken_file() {
    let a = FaultServer::start(Mode::Ok, tcp()).await.unwrap();
    let b = FaultServer::start(Mode::Ok, tcp()).await.unwrap();
    let proc = Proc::start(&config(&a.target(), "{ADMIN}", "{PORT0}"), false).await;
    let (admin, port) = (proc.admin.to_string(), proc.ports[0].to_string());
    let (ok, failed, stop, mut set) = load(proc.addr(0), 8);

    assert!(
        poll_until(Duration::from_secs(10), || async { a.requests() >= 200 }).await,
        "load never reached A"
    );
    proc.rewrite_config(&config(&b.target(), &admin, &port));
    proc.signal("HUP");
    assert!(
        poll_until(Duration::from_secs(10), || async { b.requests() >= 200 }).await,
        "requests never moved to B"
    );
    let a_after_switch = a.requests();
    let reloads_ok = proc
        .metric("handoff_config_reloads_total", &[("result", "success")])
        .await;

    // (c) A broken file: the old one (B) stays in force.
    proc.rewrite_config("[[upstream]]\nname = \"app\"\nlisten = 7\n");
    proc.signal("HUP");
    assert!(
        poll_until(Duration::from_secs(10), || async {
            proc.metric("handoff_config_reloads_total", &[("result", "failure")])
                .await
                >= 1.0
        })
        .await,
        "the failed reload was not counted"
    );
    let b_before = b.requests();
    assert!(
        poll_until(Duration::from_secs(10), || async {
            b.requests() >= b_before + 200
        })
        .await,
        "requests stopped reaching B after the broken reload"
    );
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let reloads_failed = proc
        .metric("handoff_config_reloads_total", &[("result", "failure")])
        .await;
    let reloads_ok_end = proc
        .metric("handoff_config_reloads_total", &[("result", "success")])
        .await;
    let log = proc.stderr();
    let why = log
        .iter()
        .find(|l| l.contains("configuration not reloaded"))
        .cloned();
    println!(
        "reload: SIGHUP under load: {} ok, {} failed; A {} (at switch {a_after_switch}), B {}; reloads success {reloads_ok}/{reloads_ok_end}, failure {reloads_failed}",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        a.requests(),
        b.requests()
    );
    println!("reload: broken file logged: {why:?}");

    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a request failed around a reload"
    );
    assert_eq!(reloads_ok, 1.0);
    assert_eq!(reloads_ok_end, 1.0);
    assert_eq!(reloads_failed, 1.0);
    // Pooled connections to A may finish a request or two after the switch; no more.
    assert!(a.requests() <= a_after_switch + 16, "A still receives load");
    let why = why.expect("a log line saying why the reload failed");
    let line: serde_json::Value = serde_json::from_str(&why).expect("JSON log line");
    let problems = line["problems"].as_str().unwrap_or_default();
    assert!(
        problems.contains("listen") || problems.contains("upstream[0]"),
        "the log names the problem: {why}"
    );
}
