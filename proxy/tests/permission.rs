//! `socket_permission_denied` needs handoff to run as an unprivileged user: root bypasses
//! the permission check on a unix socket. The binary runs as `nobody` via `setpriv`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::{get, Client};
use handoff::testing::free_port;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A socket owned by root with mode 0600: handoff (as nobody) answers 502
/// `socket_permission_denied`, names the owner, mode and its own uid, counts it and logs it.
#[tokio::test(flavor = "multi_thread")]
async fn socket_permission_denied_as_an_unprivileged_user() {
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap();
    assert!(
        is_root,
        "this test needs root to start handoff as nobody (scripts/test runs as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = FaultServer::start(
        Mode::SocketPermission,
        Bind::Unix(dir.path().join("app.sock")),
    )
    .await
    .unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{port}\"\naddress = \"{}\"\n",
            app.target()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_handoff"))
        .args(["run", "-c"])
        .arg(&config)
        .current_dir("/")
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) runs handoff as nobody");
    let stderr = child.stderr.take().unwrap();
    let _guard = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin_addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !get(admin_addr, "/readyz")
        .await
        .is_ok_and(|r| r.status == 200)
    {
        assert!(
            Instant::now() < until,
            "handoff (as nobody) never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = Client::connect(addr).await.unwrap();
    let r = c
        .request(
            "GET",
            "/",
            &[("Accept", "application/json"), ("X-Request-Id", "perm-1")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(
        r.header("x-handoff-reason"),
        Some("socket_permission_denied")
    );
    assert!(r
        .header("proxy-status")
        .unwrap()
        .contains("error=proxy_configuration_error"));
    assert_eq!(r.json()["reason"], "socket_permission_denied");

    // Recorded when the request ends, which can be just after the client has its answer.
    let until = Instant::now() + Duration::from_secs(5);
    let entry = loop {
        let failures = get(admin_addr, "/failures?reason=socket_permission_denied")
            .await
            .unwrap()
            .json();
        if !failures["failures"][0].is_null() {
            break failures["failures"][0].clone();
        }
        assert!(Instant::now() < until, "no /failures entry");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let findings = entry["evidence"]["findings"].to_string();
    assert!(
        findings.contains("mode 600") && findings.contains("uid 0"),
        "{findings}"
    );
    assert!(findings.contains("handoff runs as uid 65534"), "{findings}");
    let metrics = String::from_utf8(get(admin_addr, "/metrics").await.unwrap().body).unwrap();
    assert!(metrics.contains("handoff_upstream_failures_total{reason=\"socket_permission_denied\",upstream=\"app\"} 1"), "{metrics}");

    let until = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let line = rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .expect("a log line for the failure");
        if line.contains("\"request_id\":\"perm-1\"") {
            break line;
        }
    };
    let log: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(log["reason"], "socket_permission_denied");
    assert_eq!(log["errno"], "EACCES");
    assert!(log["nginx_equivalent"]
        .as_str()
        .unwrap()
        .contains("(13: Permission denied)"));
}
