//! `handoff demo`: handoff in front of one misbehaving upstream per failure mode (and one
//! healthy app), one request to each, and what handoff said about it. `handoff faults`: one
//! misbehaving upstream on its own.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::faults::{Bind, FaultServer, Mode};
use crate::testing::TestHandoff;
use handoff_diag::Filter;

/// Options of `handoff demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep everything running afterwards so you can curl it and open the admin pages.
    #[arg(long)]
    serve: bool,
}

/// Options of `handoff faults`. A mode or address that does not parse is a usage error,
/// reported by clap like any other (exit 64, see [`crate::cli::main`]).
#[derive(Debug, Args)]
pub struct FaultsArgs {
    /// Where to listen: host:port or unix:/path.
    #[arg(long, value_name = "ADDR", required_unless_present = "list")]
    listen: Option<Bind>,
    /// The failure to produce (see `handoff faults --list`).
    #[arg(long, value_name = "MODE", required_unless_present = "list")]
    mode: Option<Mode>,
    /// List the modes and exit.
    #[arg(long, conflicts_with_all = ["listen", "mode"])]
    list: bool,
}

const DEBUG_TOKEN: &str = "demo";

/// One row of the demo's table.
#[derive(Debug)]
struct Outcome {
    mode: &'static str,
    expected: &'static str,
    status: String,
    reason: String,
    hint: String,
    evidence: String,
}

/// Runs the demo; returns non-zero if any mode did not produce the reason it should.
pub fn demo(args: DemoArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let modes: Vec<Mode> = Mode::ALL
        .iter()
        .filter(|m| demo_can_show(m))
        .copied()
        .collect();
    let faults: Vec<FaultServer> = runtime.block_on(async {
        let mut servers = Vec::new();
        for mode in &modes {
            let bind = if needs_unix(mode) {
                Bind::Unix(std::env::temp_dir().join(format!(
                    "handoff-demo-{}-{}.sock",
                    std::process::id(),
                    mode.as_str()
                )))
            } else {
                Bind::Tcp("127.0.0.1:0".parse().expect("literal"))
            };
            servers.push(
                FaultServer::start(*mode, bind)
                    .await
                    .expect("start a fault upstream"),
            );
        }
        servers
    });
    let mut toml = String::from("[admin]\nlisten = \"{ADMIN}\"\n[annotate]\nexpose = \"reason\"\n");
    let _ = writeln!(
        toml,
        "debug_token = \"{DEBUG_TOKEN}\"\n[log]\nformat = \"text\"\nlevel = \"off\""
    );
    for (i, (mode, server)) in modes.iter().zip(&faults).enumerate() {
        let _ = write!(
            toml,
            "[[upstream]]\nname = \"{}\"\nlisten = \"127.0.0.1:{{PORT{}}}\"\naddress = \"{}\"\n\
             connect_timeout = \"300ms\"\nheader_timeout = \"600ms\"\nread_timeout = \"600ms\"\n\
             write_timeout = \"600ms\"\npool_idle_timeout = \"500ms\"\n",
            mode.as_str().replace(':', "_"),
            i,
            server.target()
        );
    }
    let handoff = match TestHandoff::start_toml(&toml) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("handoff demo: could not start handoff: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "handoff {} demo: {} upstreams, each misbehaving in its own way.\n",
        env!("CARGO_PKG_VERSION"),
        modes.len()
    );
    let outcomes: Vec<Outcome> = runtime.block_on(async {
        let mut out = Vec::new();
        for (i, mode) in modes.iter().enumerate() {
            let name = mode.as_str().replace(':', "_");
            out.push(exercise(mode, handoff.addr(i), &handoff, &name).await);
        }
        out
    });
    let mut mismatches = 0;
    for o in &outcomes {
        let ok = o.reason == o.expected;
        mismatches += usize::from(!ok);
        let note = if ok {
            String::new()
        } else {
            format!("   (expected {})", o.expected)
        };
        println!("{:<18} -> {:<4} {}{note}", o.mode, o.status, o.reason);
        println!("{:<18}    hint: {}", "", o.hint);
        if !o.evidence.is_empty() {
            println!("{:<18}    evidence: {}", "", o.evidence);
        }
        println!();
    }
    let metrics = handoff.shared().metrics.encode();
    println!("Failure counters from /metrics (non-zero):");
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("handoff_upstream_failures_total{"))
    {
        if !line.ends_with(" 0") {
            println!("  {line}");
        }
    }
    let total: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("handoff_upstream_requests_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    println!("  ({total} requests in all)\n");
    if args.serve {
        println!("Serving until Ctrl-C. Try:");
        for (i, mode) in modes.iter().enumerate().take(4) {
            println!(
                "  curl -i http://{}/   # {}",
                handoff.addr(i),
                mode.as_str()
            );
        }
        println!(
            "  admin: http://{}/  /metrics  /failures\n",
            handoff.admin()
        );
        runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }
    drop(handoff);
    runtime.block_on(async {
        for server in faults {
            server.shutdown().await;
        }
    });
    println!(
        "* the status line had already gone to the client: handoff cut the connection so nginx"
    );
    println!("  sees the truncation, and the reason went to /metrics, the log and /failures.\n");
    if mismatches == 0 {
        println!("Every failure mode was named as expected.");
        ExitCode::SUCCESS
    } else {
        println!("{mismatches} failure modes were not named as expected.");
        ExitCode::FAILURE
    }
}

/// Modes whose failure only a unix socket can produce.
fn needs_unix(mode: &Mode) -> bool {
    matches!(
        mode.as_str(),
        "missing-socket" | "socket-permission" | "backlog-full"
    )
}

/// Modes that need handoff to run as an unprivileged user cannot be shown by a root demo.
fn demo_can_show(mode: &Mode) -> bool {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    !(root && mode.as_str() == "socket-permission")
}

async fn exercise(
    mode: &Mode,
    addr: std::net::SocketAddr,
    handoff: &TestHandoff,
    upstream: &str,
) -> Outcome {
    let expected = mode.expected_reason().unwrap_or("-");
    let upload = matches!(mode, Mode::SlowReader | Mode::RejectBody);
    let failed = |reason: String, hint: String| Outcome {
        mode: mode.as_str(),
        expected,
        status: "-".into(),
        reason,
        hint,
        evidence: String::new(),
    };
    let (head, body) = match request(addr, "/", upload).await {
        Ok(r) => r,
        Err(e) => return failed(format!("client error: {e}"), String::new()),
    };
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("-")
        .to_owned();
    let reason_header = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("x-handoff-reason")
            .then(|| v.trim().to_owned())
    });
    if let Some(reason) = reason_header {
        // handoff answered itself: everything is in the problem+json body.
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        // At full exposure (the demo sends the debug token) the detailed hint names what
        // handoff found out on the spot; the summary is what every client sees.
        let hint = problem["evidence"]["hint_detail"]
            .as_str()
            .or(problem["hint"].as_str());
        return Outcome {
            mode: mode.as_str(),
            expected,
            status,
            reason,
            hint: hint.unwrap_or("").to_owned(),
            evidence: summarize(&problem["evidence"]),
        };
    }
    // The status line had gone out (or the app answered): a failure, if any, is in the
    // recent-failure buffer, recorded as the request ended.
    let filter = Filter {
        upstream: Some(upstream.to_owned()),
        reason: None,
        limit: 1,
    };
    let mut record = None;
    for _ in 0..100 {
        record = handoff.shared().recent.list(&filter).into_iter().next();
        if record.is_some() || mode.expected_reason().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match record {
        Some(r) => Outcome {
            mode: mode.as_str(),
            expected,
            status: format!("{status}*"),
            reason: r.reason.as_str().to_owned(),
            hint: r.hint_detail.clone(),
            evidence: format!(
                "{} bytes of body reached the client before handoff closed the connection; {}",
                body.len(),
                summarize(&serde_json::to_value(&r.evidence).unwrap_or_default())
            ),
        },
        None => Outcome {
            mode: mode.as_str(),
            expected,
            status,
            reason: "-".into(),
            hint: format!("passed through untouched: {} bytes of body", body.len()),
            evidence: String::new(),
        },
    }
}

fn summarize(ev: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    for key in [
        "next_hop",
        "phase",
        "errno",
        "timer",
        "reused",
        "idle",
        "first_bytes",
        "findings",
    ] {
        let v = &ev[key];
        if v.is_null() || v == &serde_json::json!([]) {
            continue;
        }
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) if o.contains_key("name") => {
                o["name"].as_str().unwrap_or("").to_owned()
            }
            other => other.to_string(),
        };
        parts.push(format!("{key}={text}"));
    }
    parts.join(" ")
}

/// One request with `Connection: close`; returns the header block and whatever body arrived.
async fn request(
    addr: std::net::SocketAddr,
    path: &str,
    upload: bool,
) -> std::io::Result<(String, Vec<u8>)> {
    let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await??;
    let (mut rd, mut wr) = stream.into_split();
    let body_len: usize = if upload { 32 << 20 } else { 0 };
    let method = if upload { "POST" } else { "GET" };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: demo\r\nAccept: application/json\r\n\
         x-handoff-debug: {DEBUG_TOKEN}\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 << 10];
        let mut left = body_len;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(&chunk[..n]).await?;
            left -= n;
        }
        std::io::Result::Ok(wr)
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut buf)).await;
    writer.abort();
    if read.is_err() && buf.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no response within 5s",
        ));
    }
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    Ok((head, buf[split..].to_vec()))
}

/// Runs one misbehaving upstream until Ctrl-C.
pub fn faults(args: FaultsArgs) -> ExitCode {
    if args.list {
        for mode in Mode::ALL {
            println!("{:<18} {}", mode.as_str(), mode.describe());
        }
        return ExitCode::SUCCESS;
    }
    let (Some(mode), Some(bind)) = (args.mode, args.listen) else {
        // Unreachable: without --list, clap requires both.
        return ExitCode::from(crate::cli::EXIT_USAGE);
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let server = match FaultServer::start(mode, bind.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("handoff faults: cannot listen on {bind}: {e}");
                return ExitCode::from(crate::cli::EXIT_START);
            }
        };
        println!(
            "{} on {}: {}",
            mode.as_str(),
            server.target(),
            mode.describe()
        );
        let _ = tokio::signal::ctrl_c().await;
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}
