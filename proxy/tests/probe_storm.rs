//! Probes never stall the proxy: during a storm of failures whose probes are slow for real
//! (a walk of some 150,000 descriptors in `/proc` for the socket's process), successful
//! requests on the same listener, with the default single worker thread, keep their
//! latency.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use handoff::testing::client::Client;
use handoff::testing::TestHandoff;

/// Descriptors held, in all, by processes that each hold as many as their hard limit allows
/// (20,000 here; raising it needs CAP_SYS_RESOURCE, which a container's root may lack).
const HELD: usize = 150_000;
/// At most this many holders, whatever the limit.
const MAX_HOLDERS: usize = 200;

/// A child process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits for its first line of output.
fn start(cmd: &mut Command) -> (Killed, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Killed(child), line)
}

#[tokio::test(flavor = "multi_thread")]
async fn successful_requests_keep_their_latency_while_probes_run() {
    // The holders first, the app last: /proc lists processes by pid, so the walk for the
    // app's socket reads every holder's descriptors before it gets there.
    let mut holders: Vec<Killed> = Vec::new();
    let mut held = 0;
    while held < HELD {
        assert!(
            holders.len() < MAX_HOLDERS,
            "the descriptor limit is too low to hold {HELD}"
        );
        let (child, line) = start(Command::new("python3").args([
            "-c",
            &format!(
                "import os,resource,sys\n_,hard=resource.getrlimit(resource.RLIMIT_NOFILE)\n\
                 n=min(hard,{HELD})\nresource.setrlimit(resource.RLIMIT_NOFILE,(n,hard))\n\
                 fds=[os.open('/dev/null',os.O_RDONLY) for _ in range(n-100)]\n\
                 print('holding',len(fds),flush=True)\nsys.stdin.read()"
            ),
        ]));
        let n: usize = line
            .strip_prefix("holding ")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("a holder said {line:?}"));
        held += n;
        holders.push(child);
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let (_app, line) = start(
        Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(["faults", "--mode", "ok", "--listen"])
            .arg(format!("unix:{}", socket.display())),
    );
    assert!(line.starts_with("ok on unix:"), "{line}");

    // A /hang-up on a pooled connection is retried on a new one (the keep-alive race), so
    // every failure ends on a new connection, which is what gets probed.
    let handoff = TestHandoff::for_upstream(&format!("unix:{}", socket.display()), "").unwrap();
    assert_eq!(handoff.settings.server.threads, 1);
    let addr = handoff.addr(0);

    let latencies = |n: usize| async move {
        let mut c = Client::connect(addr).await.unwrap();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            let r = c.request("GET", "/", &[], b"").await.unwrap();
            assert_eq!(r.status, 200);
            out.push(started.elapsed());
        }
        out
    };
    let quiet = latencies(200).await;

    // The storm: two clients failing as fast as they can, for three seconds.
    let storm_until = Instant::now() + Duration::from_secs(3);
    let storm: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let mut failed = 0u32;
                while Instant::now() < storm_until {
                    let mut c = Client::connect(addr).await.unwrap();
                    let r = c.request("GET", "/hang-up", &[], b"").await.unwrap();
                    assert_eq!(r.header("x-handoff-reason"), Some("closed_before_response"));
                    failed += 1;
                }
                failed
            })
        })
        .collect();
    let mut during = Vec::new();
    while Instant::now() < storm_until {
        during.extend(latencies(20).await);
    }
    let mut failures = 0;
    for s in storm {
        failures += s.await.unwrap();
    }
    drop(holders);

    let stats = handoff.shared().prober.stats();
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    eprintln!(
        "quiet: max {:?}; storm: {failures} failures, {} successes, max {:?}; probes: {stats:?}",
        max(&quiet),
        during.len(),
        max(&during)
    );
    assert!(
        stats.probes >= 2,
        "the storm ran too few probes to show anything: {stats:?}"
    );
    // The probes themselves are slow: had one run on the listener's only thread, a request
    // arriving meanwhile would have waited for it.
    assert!(
        stats.longest >= Duration::from_millis(100),
        "the walk of {held} descriptors was quicker than expected: {stats:?}"
    );
    assert!(
        max(&during) < stats.longest / 2,
        "a successful request waited {:?} while probes took up to {:?}",
        max(&during),
        stats.longest
    );
}
