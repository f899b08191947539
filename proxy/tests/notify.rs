//! The systemd notification handshake (`Type=notify`), with this test playing systemd's
//! part: a datagram socket named by `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::free_port;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// READY=1 only once the listeners accept; SIGHUP: RELOADING=1 with MONOTONIC_USEC, then
/// READY=1; SIGTERM: STOPPING=1 and exit 0. Both a path and an abstract socket name.
#[tokio::test(flavor = "multi_thread")]
async fn notify_handshake_with_systemd() {
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for abstract_name in [false, true] {
        let (socket, name) = if abstract_name {
            let name = format!("handoff-notify-test-{}", std::process::id());
            let addr = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
                name.as_bytes(),
            )
            .unwrap();
            (UnixDatagram::bind_addr(&addr).unwrap(), format!("@{name}"))
        } else {
            let path = dir.path().join("notify.sock");
            (
                UnixDatagram::bind(&path).unwrap(),
                path.display().to_string(),
            )
        };
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
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
        let child = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(["run", "-c"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &name)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = Killed(child);
        let pid = child.0.id();

        let ready = recv(&socket);
        assert!(ready.contains("READY=1"), "{ready}");
        // READY=1 means the listeners accept: connect right away.
        std::net::TcpStream::connect(("127.0.0.1", port))
            .expect("proxy listener accepts after READY=1");
        std::net::TcpStream::connect(("127.0.0.1", admin))
            .expect("admin listener accepts after READY=1");

        signal(pid, "-HUP");
        let reloading = recv(&socket);
        assert!(
            reloading.contains("RELOADING=1") && reloading.contains("MONOTONIC_USEC="),
            "{reloading}"
        );
        assert!(recv(&socket).contains("READY=1"));

        signal(pid, "-TERM");
        assert!(recv(&socket).contains("STOPPING=1"));
        let until = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < until, "handoff did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(0));
    }
}
