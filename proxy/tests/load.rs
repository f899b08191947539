//! Bounded load with faults: the `handoff` binary in front of one healthy app and two
//! failing upstreams (refused, closed without a byte), hit by concurrent clients, some on
//! keep-alive connections, some reconnecting for every request.
//!
//! Asserts: no healthy request lost or duplicated (every id answered exactly once with its
//! own echo, and the app counted exactly as many requests as were sent); every failing
//! request answered with its reason and counted once (`unclassified` stays 0); handoff's open
//! fds back to exactly their baseline and RSS within [`RSS_BOUND_KIB`] of it afterwards.
//!
//! `HANDOFF_SOAK_REQUESTS=N` overrides the request count (default [`DEFAULT_REQUESTS`]);
//! see docs/reliability.md for the soak variant.
//!
//! Run: `cargo test -p handoff --test load -- --nocapture` (prints the figures).

mod support;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::Client;
use support::{poll_until, Proc};

/// Requests per run unless `HANDOFF_SOAK_REQUESTS` says otherwise (~35 s on 2 cores, about
/// 90,000 connections).
const DEFAULT_REQUESTS: u64 = 300_000;
/// Concurrent client tasks; every fourth one reconnects for each request.
const CLIENTS: u64 = 32;
/// How long a client waits for handoff to close after a `Connection: close` response. The
/// side that closes first keeps the TIME_WAIT socket; letting handoff close leaves the
/// client's ephemeral ports free (loopback has ~28,000 of them, for 60 s each).
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// One request in `FAIL_EVERY` goes to the refused upstream, one to the closing one.
const FAIL_EVERY: u64 = 50;
/// How far RSS may stay above its post-warm-up baseline (measured: +3 MiB). It once grew
/// with every failure served (+80 MiB after 10,000): each failure's probe ran on tokio's
/// blocking pool, which kept a thread (and an allocator cache) per concurrent failure.
const RSS_BOUND_KIB: u64 = 16 * 1024;

const CONFIG: &str = r#"
[admin]
listen = "{ADMIN}"
[log]
format = "json"
[[upstream]]
name = "app"
listen = "127.0.0.1:{PORT0}"
address = "{APP}"
pool_idle_timeout = "300ms"
[[upstream]]
name = "refused"
listen = "127.0.0.1:{PORT1}"
address = "{REFUSED}"
[[upstream]]
name = "closed"
listen = "127.0.0.1:{PORT2}"
address = "{CLOSED}"
"#;

/// Which upstream request `i` goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    App,
    Refused,
    Closed,
}

fn target(i: u64) -> Target {
    match i % FAIL_EVERY {
        3 => Target::Refused,
        13 => Target::Closed,
        _ => Target::App,
    }
}

#[derive(Debug, Default)]
struct Tally {
    app_ok: AtomicU64,
    /// Healthy requests without a 200 carrying their own echo (io error, other status).
    app_lost: AtomicU64,
    refused_ok: AtomicU64,
    closed_ok: AtomicU64,
    /// Failing requests not answered with the expected 502 and reason.
    failures_wrong: AtomicU64,
    new_connections: AtomicU64,
}

fn env_requests() -> u64 {
    std::env::var("HANDOFF_SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(DEFAULT_REQUESTS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_faults_loses_nothing_and_leaks_nothing() {
    let total = env_requests();
    let tcp = || Bind::Tcp("127.0.0.1:0".parse().unwrap());
    let app = FaultServer::start(Mode::Ok, tcp()).await.unwrap();
    let refused = FaultServer::start(Mode::Refuse, tcp()).await.unwrap();
    let closed = FaultServer::start(Mode::Close, tcp()).await.unwrap();
    let proc = Proc::start(
        &CONFIG
            .replace("{APP}", &app.target())
            .replace("{REFUSED}", &refused.target())
            .replace("{CLOSED}", &closed.target()),
        true,
    )
    .await;
    let addrs = [proc.addr(0), proc.addr(1), proc.addr(2)];
    // The binary's jemalloc options (proxy/src/main.rs) took effect: the thread that
    // returns freed pages to the kernel, which is what brings RSS back after load.
    assert!(
        proc.thread_names().iter().any(|t| t == "jemalloc_bg_thd"),
        "no jemalloc background thread: {:?}",
        proc.thread_names()
    );
    let fd_start = proc.fds();
    let rss_start = proc.rss_kib();

    // Warm-up: one of each, so lazily built state (pools, probe caches, allocator arenas)
    // exists before the RSS baseline. Not counted in the figures below.
    for (i, addr) in addrs.iter().enumerate() {
        let r = Client::connect(*addr)
            .await
            .unwrap()
            .request("GET", "/echo?id=warm", &[], b"")
            .await
            .unwrap();
        assert_eq!(r.status, if i == 0 { 200 } else { 502 }, "{r:?}");
    }
    // The warm-up failures are counted when their requests end, just after the answers.
    let until = Instant::now() + Duration::from_secs(5);
    let metrics_before = loop {
        let text = proc.metrics().await;
        let counted = failures(&text, "refused", "connect_refused") == 1
            && failures(&text, "closed", "closed_before_response") == 1;
        assert!(
            Instant::now() < until,
            "warm-up failures not counted:\n{text}"
        );
        if counted {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let app_before = app.requests();
    let closed_before = closed.requests();
    let refused_base = failures(&metrics_before, "refused", "connect_refused");
    let closed_base = failures(&metrics_before, "closed", "closed_before_response");
    // Baseline with no connection open: the warm-up's pooled one idles out after 300 ms.
    let fd_base = settled(|| proc.fds()).await;
    let rss_base = proc.rss_kib();

    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let seen: Arc<Vec<AtomicU8>> = Arc::new((0..total).map(|_| AtomicU8::new(0)).collect());
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..CLIENTS {
        let (next, tally, seen) = (next.clone(), tally.clone(), seen.clone());
        let keep_alive = w % 4 != 0;
        workers.spawn(async move {
            // One connection per listener: handoff keeps a connection open after a
            // failure it answered, as after a success.
            let mut conns: [Option<Client>; 3] = [None, None, None];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let t = target(i);
                let addr = addrs[t as usize];
                let conn = &mut conns[t as usize];
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => {
                        tally.new_connections.fetch_add(1, Ordering::Relaxed);
                        match Client::connect(addr).await {
                            Ok(c) => c,
                            Err(e) => {
                                eprintln!("request {i}: connect failed: {e}");
                                lost(&tally, t);
                                continue;
                            }
                        }
                    }
                };
                let path = format!("/echo?id={i}");
                let id = format!("load-{i}");
                let mut headers = vec![("X-Request-Id", id.as_str())];
                if !keep_alive {
                    headers.push(("Connection", "close"));
                }
                match c.request("GET", &path, &headers, b"").await {
                    Ok(r) => match t {
                        Target::App => {
                            let own = format!("\"path\":\"{path}\"");
                            let body = String::from_utf8_lossy(&r.body);
                            if r.status == 200 && body.contains(&own) {
                                seen[i as usize].fetch_add(1, Ordering::Relaxed);
                                tally.app_ok.fetch_add(1, Ordering::Relaxed);
                                // A connection at `keepalive_requests` is answered with
                                // `Connection: close`, as nginx does: reconnect.
                                if keep_alive && r.header("connection") != Some("close") {
                                    *conn = Some(c);
                                } else if !keep_alive {
                                    c.until_closed(CLOSE_WITHIN).await;
                                }
                            } else {
                                eprintln!("request {i}: {} {body}", r.status);
                                lost(&tally, t);
                            }
                        }
                        Target::Refused | Target::Closed => {
                            let want = if t == Target::Refused {
                                "connect_refused"
                            } else {
                                "closed_before_response"
                            };
                            if r.status == 502 && r.header("x-handoff-reason") == Some(want) {
                                let counter = if t == Target::Refused {
                                    &tally.refused_ok
                                } else {
                                    &tally.closed_ok
                                };
                                counter.fetch_add(1, Ordering::Relaxed);
                                if keep_alive {
                                    assert_eq!(r.header("connection"), Some("keep-alive"));
                                    *conn = Some(c);
                                } else {
                                    c.until_closed(CLOSE_WITHIN).await;
                                }
                            } else {
                                eprintln!("request {i} ({t:?}): {r:?}");
                                lost(&tally, t);
                            }
                        }
                    },
                    Err(e) => {
                        eprintln!("request {i} ({t:?}, keep-alive={keep_alive}): {e}");
                        lost(&tally, t);
                    }
                }
            }
        });
    }
    while let Some(r) = workers.join_next().await {
        r.unwrap();
    }
    let took = started.elapsed();

    let sent_app = (0..total).filter(|&i| target(i) == Target::App).count() as u64;
    let sent_refused = (0..total).filter(|&i| target(i) == Target::Refused).count() as u64;
    let sent_closed = total - sent_app - sent_refused;
    let app_counted = app.requests() - app_before;
    let closed_counted = closed.requests() - closed_before;
    let duplicates = seen
        .iter()
        .filter(|s| s.load(Ordering::Relaxed) > 1)
        .count();

    // Counters are updated when a request ends, which can be just after the client has
    // its answer: poll until they reach the expected totals (or stop moving).
    let want_refused = refused_base + sent_refused;
    let want_closed = closed_base + sent_closed;
    let until = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let text = proc.metrics().await;
        let done = failures(&text, "refused", "connect_refused") >= want_refused
            && failures(&text, "closed", "closed_before_response") >= want_closed;
        if done || Instant::now() >= until {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let failures_by = |upstream: &str| -> Vec<(String, u64)> {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("handoff_upstream_failures_total{")
                    && l.contains(&format!("upstream=\"{upstream}\""))
            })
            .filter_map(|l| {
                let (series, v) = l.rsplit_once(' ')?;
                let n = v.parse::<f64>().ok()? as u64;
                let reason = series.split("reason=\"").nth(1)?.split('"').next()?;
                (n > 0).then(|| (reason.to_owned(), n))
            })
            .collect()
    };
    let unclassified: u64 = ["app", "refused", "closed"]
        .iter()
        .filter_map(|u| {
            handoff::testing::metric_value(
                &metrics,
                "handoff_upstream_failures_total",
                &[("upstream", u), ("reason", "unclassified")],
            )
        })
        .sum::<f64>() as u64;

    // fds: every client connection is closed now; pooled upstream connections go after
    // pool_idle_timeout (300 ms). Exactly the baseline, within a deadline.
    let fd_settled = poll_until(Duration::from_secs(10), || async { proc.fds() == fd_base }).await;
    let fd_end = proc.fds();
    let rss_end = proc.rss_kib();

    println!("load: {total} requests in {took:.2?} ({:.0} req/s), {CLIENTS} clients (1 in 4 reconnecting per request), {} connections opened",
        total as f64 / took.as_secs_f64(), tally.new_connections.load(Ordering::Relaxed));
    println!(
        "load: healthy sent {sent_app}, answered 200 with own echo {}, lost {}, duplicated {duplicates}, app counted {app_counted}",
        tally.app_ok.load(Ordering::Relaxed),
        tally.app_lost.load(Ordering::Relaxed),
    );
    println!(
        "load: failures injected {} (refused {sent_refused}, closed {sent_closed}); answered with the right reason {} + {}; wrong {}; closed app saw {closed_counted}",
        sent_refused + sent_closed,
        tally.refused_ok.load(Ordering::Relaxed),
        tally.closed_ok.load(Ordering::Relaxed),
        tally.failures_wrong.load(Ordering::Relaxed),
    );
    println!(
        "load: failure counters (after warm-up base {refused_base}/{closed_base}): refused {:?}; closed {:?}; app {:?}; unclassified {unclassified}",
        failures_by("refused"),
        failures_by("closed"),
        failures_by("app"),
    );
    println!(
        "load: handoff fds at start {fd_start}, after warm-up {fd_base}, end {fd_end}; RSS start {rss_start} KiB, after warm-up {rss_base} KiB, end {rss_end} KiB (+{} KiB, bound {RSS_BOUND_KIB})",
        rss_end.saturating_sub(rss_base)
    );

    assert_eq!(tally.app_lost.load(Ordering::Relaxed), 0, "lost requests");
    assert_eq!(tally.app_ok.load(Ordering::Relaxed), sent_app);
    assert_eq!(duplicates, 0, "a request answered twice");
    assert_eq!(
        app_counted, sent_app,
        "the app saw a request lost or repeated"
    );
    assert_eq!(tally.failures_wrong.load(Ordering::Relaxed), 0);
    assert_eq!(
        closed_counted, sent_closed,
        "the closing upstream saw a retry"
    );
    assert_eq!(unclassified, 0, "an unclassified failure");
    assert_eq!(
        failures_by("refused"),
        vec![("connect_refused".to_owned(), want_refused)]
    );
    assert_eq!(
        failures_by("closed"),
        vec![("closed_before_response".to_owned(), want_closed)]
    );
    assert_eq!(failures_by("app"), vec![], "the healthy upstream failed");
    assert!(
        fd_settled,
        "fds did not return to the baseline {fd_base} (now {fd_end})"
    );
    assert!(
        rss_end <= rss_base + RSS_BOUND_KIB,
        "RSS grew by {} KiB",
        rss_end - rss_base
    );
}

fn lost(tally: &Tally, t: Target) {
    let counter = match t {
        Target::App => &tally.app_lost,
        _ => &tally.failures_wrong,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

fn failures(metrics: &str, upstream: &str, reason: &str) -> u64 {
    handoff::testing::metric_value(
        metrics,
        "handoff_upstream_failures_total",
        &[("upstream", upstream), ("reason", reason)],
    )
    .unwrap_or(0.0) as u64
}

/// A value once it has stayed the same for 500 ms (at most 10 s).
async fn settled(value: impl Fn() -> usize) -> usize {
    let until = Instant::now() + Duration::from_secs(10);
    let mut last = value();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let v = value();
        if v != last {
            (last, since) = (v, Instant::now());
        } else if since.elapsed() >= Duration::from_millis(500) || Instant::now() >= until {
            return v;
        }
    }
}
