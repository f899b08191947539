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

/// Options of `handoff demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep everything running afterwards so you can curl it and open the admin pages.
    #[arg(long)]
    serve: bool,
}

/// Options of `handoff faults`.
#[derive(Debug, Args)]
pub struct FaultsArgs {
    /// Where to listen: host:port or unix:/path.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The failure to produce (see `handoff faults --list`).
    #[arg(long, value_name = "MODE", required_unless_present = "list")]
    mode: Option<String>,
    /// List the modes and exit.
    #[arg(long)]
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
            out.push(exercise(mode, handoff.addr(i)).await);
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

async fn exercise(mode: &Mode, addr: std::net::SocketAddr) -> Outcome {
    let expected = mode.expected_reason().unwrap_or("-");
    let upload = matches!(mode.as_str(), "slow-reader" | "reject-body");
    let path = if mode.as_str() == "ok" || mode.as_str().starts_with("keepalive") {
        "/"
    } else {
        "/demo"
    };
    let response = request(addr, path, upload).await;
    let (head, body) = match response {
        Ok(r) => r,
        Err(e) => {
            return Outcome {
                mode: mode.as_str(),
                expected,
                status: "-".into(),
                reason: format!("client error: {e}"),
                hint: String::new(),
                evidence: String::new(),
            }
        }
    };
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("-")
        .to_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let problem: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let mut reason = header("x-handoff-reason").unwrap_or_else(|| "-".into());
    let mut hint = problem
        .as_ref()
        .and_then(|p| p["hint"].as_str())
        .unwrap_or("")
        .to_owned();
    let mut evidence = String::new();
    if let Some(ev) = problem.as_ref().map(|p| &p["evidence"]) {
        evidence = summarize(ev);
    }
    if reason == "-"
        && !matches!(mode.as_str(), "ok" | "app-503")
        && !mode.as_str().starts_with("keepalive")
        && mode.as_str() != "big-header"
    {
        // The status line had gone out: the body was cut; the reason is in /failures.
        reason = String::from("(truncated body)");
        hint = format!(
            "{} bytes of body reached the client, then the connection closed",
            body.len()
        );
    }
    if matches!(mode.as_str(), "ok" | "app-503" | "big-header")
        || mode.as_str().starts_with("keepalive")
    {
        reason = "-".into();
        hint = format!("passed through: {} bytes of body", body.len());
    }
    Outcome {
        mode: mode.as_str(),
        expected,
        status,
        reason,
        hint,
        evidence,
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
    let Some(mode) = args.mode.as_deref() else {
        return ExitCode::from(crate::cli::EXIT_CONFIG);
    };
    let (mode, bind) = match (mode.parse::<Mode>(), args.listen.parse::<Bind>()) {
        (Ok(m), Ok(b)) => (m, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("handoff faults: {e}");
            return ExitCode::from(crate::cli::EXIT_CONFIG);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let server = match FaultServer::start(mode, bind).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("handoff faults: {e}");
                return ExitCode::FAILURE;
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
