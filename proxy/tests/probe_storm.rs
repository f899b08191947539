//! Probes never stall the proxy: during a storm of failures whose probes are slow for real
//! (a walk of some 100,000 descriptors in `/proc` for the socket's process), successful
//! requests on the same listener, with the default single worker thread, keep their
//! latency.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use handoff::testing::client::Client;
use handoff::testing::TestHandoff;

/// Processes holding descriptors, and how many each (under the hard limit of 20,000 seen
/// here; raising it needs CAP_SYS_RESOURCE, which a container's root may lack).
const HOLDERS: usize = 5;
const HELD_EACH: usize = 19_000;

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
    let holders: Vec<Killed> = (0..HOLDERS)
        .map(|_| {
            let (child, line) = start(Command::new("python3").args([
                "-c",
                &format!(
                    "import os,resource\nresource.setrlimit(resource.RLIMIT_NOFILE,({n},{n}))\n\
                     fds=[os.open('/dev/null',os.O_RDONLY) for _ in range({HELD_EACH})]\n\
                     print('holding',flush=True)\nimport sys\nsys.stdin.read()",
                    n = HELD_EACH + 100
                ),
            ]));
            assert_eq!(line.trim(), "holding");
            child
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let (_app, line) = start(
        Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(["faults", "--mode", "ok", "--listen"])
            .arg(format!("unix:{}", socket.display())),
    );
    assert!(line.starts_with("ok on unix:"), "{line}");

    // No pooling: every /hang-up fails on a new connection, which is what gets probed.
    let handoff = TestHandoff::for_upstream(
        &format!("unix:{}", socket.display()),
        "pool_idle_timeout = \"0s\"\n",
    )
    .unwrap();
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
        "the walk of {} descriptors was quicker than expected: {stats:?}",
        HOLDERS * HELD_EACH
    );
    assert!(
        max(&during) < stats.longest / 2,
        "a successful request waited {:?} while probes took up to {:?}",
        max(&during),
        stats.longest
    );
}
