//! The binary: `check` exit codes, `--version`, start-up errors, and SIGTERM draining.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::Client;
use handoff::testing::free_port;

fn handoff() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_handoff"));
    c.env_remove("HANDOFF_CONFIG")
        .env_remove("HANDOFF_LISTEN")
        .env_remove("HANDOFF_UPSTREAM");
    c
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("handoff.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

/// `handoff check` exits 0 on a valid file and 64 with one line per problem otherwise.
#[test]
fn check_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(
        &dir,
        "[[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:8080\"\naddress = \"127.0.0.1:3000\"\n",
    );
    let out = handoff().args(["check", "-c"]).arg(&good).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = write_config(
        &dir,
        "[annotate]\nexpose = \"everything\"\n[[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:8080\"\naddress = \"unix:relative.sock\"\nconnect_timeout = \"0s\"\nbogus = 1\n",
    );
    let out = handoff().args(["check", "-c"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "annotate.expose",
        "upstream[0].address",
        "upstream[0].connect_timeout",
        "bogus",
    ] {
        assert!(stderr.contains(key), "{key} missing from:\n{stderr}");
    }
    assert!(
        stderr.lines().count() >= 4,
        "one line per problem:\n{stderr}"
    );

    let out = handoff()
        .args(["check", "-c", "/nonexistent/handoff.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66));

    // The embedded default is valid.
    let out = handoff().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // So is the example in deploy/.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/handoff.toml");
    let out = handoff().args(["check", "-c", example]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--version` prints the crate version.
#[test]
fn version() {
    let out = handoff().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// `handoff faults --list`, as the README shows it, needs no `--listen`: every mode, one
/// line each, exit 0.
#[test]
fn faults_list_needs_nothing_else() {
    let out = handoff().args(["faults", "--list"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), Mode::ALL.len(), "{stdout}");
    for mode in Mode::ALL {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{} ", mode.as_str()))),
            "{} missing:\n{stdout}",
            mode.as_str()
        );
    }
}

/// Every command line handoff cannot use exits 64 (`EX_USAGE`) with the problem on stderr:
/// clap's own errors as much as a fault mode or an address that does not parse. `--help`
/// and `--version` are not errors.
#[test]
fn usage_errors_exit_64() {
    for (args, says) in [
        (
            &["faults", "--listen", "127.0.0.1:0", "--mode", "bogus"][..],
            "bogus",
        ),
        (
            &["faults", "--listen", "nowhere", "--mode", "close"],
            "nowhere",
        ),
        (
            &[
                "faults",
                "--listen",
                "127.0.0.1:0",
                "--mode",
                "keepalive-close:soon",
            ],
            "soon",
        ),
        (&["faults", "--mode", "close"], "--listen"),
        (&["faults", "--listen", "127.0.0.1:0"], "--mode"),
        (&["faults", "--list", "--mode", "close"], "--mode"),
        (&["--no-such-flag"], "--no-such-flag"),
        (&["run", "--listen", "127.0.0.1:0"], "--upstream"),
        (&["no-such-command"], "no-such-command"),
    ] {
        let out = handoff().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?} should name {says:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    for args in [["--help"], ["--version"]] {
        let out = handoff().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

/// A fault upstream that cannot bind is not a usage error: exit 1 (serving could not start,
/// as for `handoff run`), with the address in the message.
#[test]
fn faults_bind_failure_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = handoff()
        .args(["faults", "--listen", &addr, "--mode", "close"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("handoff faults: cannot listen on {addr}")),
        "{stderr}"
    );
}

/// A taken port is one clear line and a non-zero exit, not a hang.
#[test]
fn port_in_use_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let started = Instant::now();
    let out = handoff()
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            "127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&port.to_string()) && stderr.contains("cannot listen"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// SIGTERM: a slow in-flight request completes, new connections are refused, exit 0 well
/// within the grace period.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests() {
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let (port, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        &format!(
            "[server]\ngrace_period = \"8s\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[log]\nformat = \"json\"\n\
             [[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{port}\"\naddress = \"{}\"\n",
            app.target()
        ),
    );
    let mut child = handoff()
        .args(["run", "-c"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_ready(admin).await;

    let mut c = Client::connect(addr).await.unwrap();
    c.send(b"GET /slow/1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // The request is in flight once the app has it.
    let until = Instant::now() + Duration::from_secs(5);
    while app.requests() < 1 {
        assert!(Instant::now() < until, "request never reached the app");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let term_at = Instant::now();
    kill(child.id(), libc::SIGTERM);

    // New connections are refused while the slow request is still running. While the
    // listener closes, a connection the kernel had queued for it is reset instead.
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => assert!(
                Instant::now() < until,
                "listener still accepting 2 s after SIGTERM: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (r, _) = c.read_response(false).await.unwrap();
    assert_eq!(r.status, 200, "the in-flight request completed");

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let took = term_at.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM; the grace period is 8s"
    );
}

async fn wait_ready(admin: u16) {
    let addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = Client::connect(addr).await {
            if let Ok(r) = c.request("GET", "/readyz", &[], b"").await {
                if r.status == 200 {
                    return;
                }
            }
        }
        assert!(Instant::now() < until, "handoff never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}
