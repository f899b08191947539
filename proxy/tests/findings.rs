//! The on-the-spot findings name the concrete cause, each with the fault made for real: a
//! regular file where the socket should be, a directory handoff's user cannot search, the
//! app on a neighbouring port, a certificate expired / for another name / from an unknown
//! CA, an HTTP/2-only upstream, and handoff out of file descriptors.
//!
//! Permission cases run the `handoff` binary as `nobody` (root bypasses the checks); the
//! others run handoff in-process, except where the fault is handoff's own process.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use handoff::faults::{Bind, FaultServer, Mode, TlsIdentity};
use handoff::testing::client::{get, Client};
use handoff::testing::{free_port, TestHandoff};
use support::{handoff_as_nobody, Killed};

mod support;

/// The newest `/failures` entry of `reason`, waiting for it (it is recorded when the
/// request ends, just after the client has its answer).
async fn failure_entry(admin: std::net::SocketAddr, reason: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = get(admin, &format!("/failures?reason={reason}")).await {
            let entry = r.json()["failures"][0].clone();
            if !entry.is_null() {
                return entry;
            }
        }
        assert!(Instant::now() < until, "no /failures entry for {reason}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One GET through handoff; returns the `/failures` entry, after checking the reason.
async fn fail_through(handoff: &TestHandoff, reason: &str) -> serde_json::Value {
    let r = get(handoff.addr(0), "/").await.unwrap();
    assert_eq!(r.header("x-handoff-reason"), Some(reason), "{r:?}");
    failure_entry(handoff.admin(), reason).await
}

/// One GET through handoff as nobody, which must fail with `socket_permission_denied`; the
/// findings of its `/failures` entry.
async fn denied_findings(
    listener: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> Vec<String> {
    let r = get(listener, "/").await.unwrap();
    assert_eq!(
        r.header("x-handoff-reason"),
        Some("socket_permission_denied")
    );
    findings(&failure_entry(admin, "socket_permission_denied").await)
}

fn findings(entry: &serde_json::Value) -> Vec<String> {
    entry["evidence"]["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A regular file at the socket path: root's connect is refused, nobody's denied, and both
/// findings say the path is not a socket (so nobody reaches for chmod).
#[tokio::test(flavor = "multi_thread")]
async fn a_regular_file_at_the_socket_path_is_named_whatever_the_errno() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("app.sock");
    std::fs::write(&path, "left over by a deploy script\n").unwrap();
    let address = format!("unix:{}", path.display());

    let handoff = TestHandoff::for_upstream(&address, "").unwrap();
    let entry = fail_through(&handoff, "connect_refused").await;
    let said = findings(&entry);
    assert!(
        said[0].contains("is a regular file, not a socket"),
        "{said:?}"
    );

    let (_child, admin, listener) = handoff_as_nobody(dir.path(), &address).await;
    let said = denied_findings(listener, admin).await;
    assert_eq!(
        said[0],
        format!(
            "{} is a regular file, not a socket (mode 644, owner uid 0 gid 0): no app listens \
             there; chmod will not help. Remove it and restart the app, or point the upstream \
             at the app's real socket",
            path.display()
        )
    );
}

/// The socket's own mode lets everyone in, but its directory is 0700 root: the finding
/// names that directory, its mode and owner, and handoff's uid.
#[tokio::test(flavor = "multi_thread")]
async fn a_directory_handoff_cannot_search_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    let app = FaultServer::start(Mode::Ok, Bind::Unix(private.join("app.sock")))
        .await
        .unwrap();
    std::fs::set_permissions(
        private.join("app.sock"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();

    let (_child, admin, listener) = handoff_as_nobody(dir.path(), &app.target()).await;
    let said = denied_findings(listener, admin).await;
    assert_eq!(
        said[0],
        format!(
            "directory {} (mode 700, owner uid 0 gid 0) cannot be searched by handoff's uid \
             65534: connecting to {} needs search (x) on every directory above it; allow \
             handoff's user or group through it",
            private.display(),
            private.join("app.sock").display()
        )
    );
}

/// Nothing on the configured port, the app one port up in its own process: the finding
/// names that listener with the process's name and pid.
#[tokio::test(flavor = "multi_thread")]
async fn the_app_on_a_neighbouring_port_is_named() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["faults", "--listen", "127.0.0.1:0", "--mode", "ok"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let app = Killed(child);
    // "ok on 127.0.0.1:PORT: a healthy HTTP/1.1 app ..."
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let handoff = TestHandoff::for_upstream(&format!("127.0.0.1:{}", port - 1), "").unwrap();
    let said = findings(&fail_through(&handoff, "connect_refused").await);
    let near = said
        .iter()
        .find(|f| f.starts_with("listening on nearby ports"))
        .unwrap_or_else(|| panic!("{said:?}"));
    assert!(
        near.contains(&format!("127.0.0.1:{port} (handoff, pid {})", app.0.id())),
        "{near}"
    );
}

/// Expired, for another name, signed by an unknown CA: three findings, each with the dates
/// or the names.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_certificate_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            TlsIdentity::expired(&["localhost"]),
            "expired on 2021-01-01 00:00:00 UTC",
        ),
        (
            TlsIdentity::generate(&["other.example"]),
            "is for other.example, not for \"localhost\"",
        ),
        (
            TlsIdentity::self_signed(&["localhost"]),
            "signed by a CA handoff does not trust",
        ),
    ];
    for (i, (identity, says)) in cases.into_iter().enumerate() {
        let ca = dir.path().join(format!("ca{i}.pem"));
        std::fs::write(&ca, &identity.ca_pem).unwrap();
        let app = FaultServer::start_tls(
            Mode::Ok,
            Bind::Tcp("127.0.0.1:0".parse().unwrap()),
            identity,
        )
        .await
        .unwrap();
        let port = app.local_addr().unwrap().port();
        let handoff = TestHandoff::for_upstream(
            &format!("tls://127.0.0.1:{port}"),
            &format!("sni = \"localhost\"\nca_file = \"{}\"\n", ca.display()),
        )
        .unwrap();
        let entry = fail_through(&handoff, "tls_certificate_invalid").await;
        let said = findings(&entry);
        assert!(
            said.iter().any(|f| f.contains(says)),
            "{says:?} not in {said:?}"
        );
        assert!(
            entry["hint_detail"].as_str().unwrap().contains(says),
            "{entry}"
        );
    }
}

/// An upstream that speaks HTTP/2 only: the hint names the protocol.
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_only_upstream_is_named() {
    let app = FaultServer::start(Mode::Http2Only, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let handoff = TestHandoff::for_upstream(&app.target(), "").unwrap();
    let entry = fail_through(&handoff, "invalid_response_header").await;
    let detail = entry["hint_detail"].as_str().unwrap();
    assert!(detail.contains("the upstream speaks HTTP/2"), "{detail}");
}

/// handoff with a limit of 64 descriptors, all taken by idle client connections: a request
/// on the last one needs a descriptor for the upstream connection, which fails with
/// EMFILE, and the finding gives the count and the limit.
#[tokio::test(flavor = "multi_thread")]
async fn out_of_descriptors_says_so_with_the_limit_and_the_count() {
    const LIMIT: u64 = 64;
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[[upstream]]\nname = \"app\"\n\
             listen = \"127.0.0.1:{port}\"\naddress = \"{}\"\n",
            app.target()
        ),
    )
    .unwrap();
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={LIMIT}:{LIMIT}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_handoff"))
        .args(["run", "-c"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux)");
    let stderr = child.stderr.take().unwrap();
    let _handoff = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let admin_addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !get(admin_addr, "/readyz")
        .await
        .is_ok_and(|r| r.status == 200)
    {
        assert!(Instant::now() < until, "handoff never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listener: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let queued = || {
        handoff_probe::sock_diag::tcp_listeners()
            .unwrap()
            .into_iter()
            .find(|l| l.addr == listener)
            .map_or(0, |l| l.queued)
    };
    // Idle connections, each waited for until handoff has accepted it, until an accept
    // fails for want of a descriptor (that connection stays queued) or the last one is
    // taken: either way the newest accepted connection holds the last descriptor.
    let mut idle = Vec::new();
    loop {
        let c = Client::connect(listener).await.unwrap();
        let until = Instant::now() + Duration::from_secs(2);
        while queued() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if queued() > 0 {
            break; // accept() failed with EMFILE: no descriptor left
        }
        idle.push(c);
        assert!(idle.len() < LIMIT as usize, "never ran out of descriptors");
    }
    let last = idle.last_mut().unwrap();
    let r = last
        .request("GET", "/", &[("X-Request-Id", "out-of-fds")], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.header("x-handoff-reason"), Some("proxy_internal_error"));
    let until = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let line = rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .expect("a log line for the failure");
        if line.contains("\"request_id\":\"out-of-fds\"") {
            break line;
        }
    };
    let log: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(log["errno"], "EMFILE", "{log}");
    let findings = log["findings"].as_str().unwrap();
    assert!(
        findings.contains(&format!(
            "file descriptors open, its limit (RLIMIT_NOFILE) is {LIMIT} (hard {LIMIT})"
        )),
        "{findings}"
    );
    // The kernel's count (the size of /proc/PID/fd) includes a descriptor being set up.
    let open: u64 = findings
        .strip_prefix("handoff has ")
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count in {findings}"));
    assert!(open >= LIMIT, "{findings}");
}

/// A TCP app whose accept queue is full (it never accepts): the connect times out, and the
/// finding gives the queue against the backlog, so it is not mistaken for a firewall.
#[tokio::test(flavor = "multi_thread")]
async fn a_connect_timeout_names_the_full_accept_queue() {
    let app = FaultServer::start(
        Mode::ConnectTimeout,
        Bind::Tcp("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let handoff =
        TestHandoff::for_upstream(&app.target(), "connect_timeout = \"300ms\"\n").unwrap();
    let said = findings(&fail_through(&handoff, "connect_timeout").await);
    let queue = said
        .iter()
        .find(|f| f.starts_with("the accept queue of"))
        .unwrap_or_else(|| panic!("{said:?}"));
    assert!(
        queue.contains(&format!("the accept queue of {} holds", app.target())),
        "{queue}"
    );
    assert!(queue.contains("the app is not calling accept()"), "{queue}");
}

/// HTTP sent to php-fpm on TCP (127.0.0.1:9000 style): it closes at once without a byte,
/// and the finding names php-fpm and the protocol it speaks.
#[tokio::test(flavor = "multi_thread")]
async fn php_fpm_behind_an_http_address_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let listen = format!("127.0.0.1:{}", free_port());
    let conf = dir.path().join("php-fpm.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/php-fpm.log\ndaemonize = no\n\
             [www]\nuser = root\ngroup = root\nlisten = {listen}\npm = static\npm.max_children = 1\n"
        ),
    )
    .unwrap();
    let php = support::PhpFpm::start(dir.path(), &conf, &listen);
    let handoff = TestHandoff::for_upstream(&listen, "").unwrap();
    let r = get(handoff.addr(0), "/").await.unwrap();
    let reason = r.header("x-handoff-reason").unwrap().to_owned();
    assert!(
        ["closed_before_response", "reset_before_response"].contains(&reason.as_str()),
        "{r:?}"
    );
    let said = findings(&failure_entry(handoff.admin(), &reason).await);
    assert!(
        said.iter().any(
            |f| f.starts_with("the address belongs to php-fpm, which speaks FastCGI, not HTTP")
        ),
        "{said:?}"
    );
    assert!(
        said.iter()
            .any(|f| f.ends_with(&format!("(pid {}))", php.pid()))
                || f.contains(&format!("(pid {})", php.pid()))),
        "{said:?}"
    );
}
