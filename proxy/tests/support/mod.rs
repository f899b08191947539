//! Shared by the tests that run the `handoff` binary (load, reload): start it with a config
//! file, wait until it is ready, read its metrics, fds and RSS, signal it, and kill it on drop.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use handoff::testing::client::{get, Client};
use handoff::testing::{free_port, metric_value};

/// A running `handoff run -c FILE`, killed (SIGKILL) on drop unless it has exited.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    /// The config file (in `dir`), rewritten by reload tests.
    pub config: PathBuf,
    /// The admin listener.
    pub admin: SocketAddr,
    /// Listener ports substituted for `{PORT0}`, `{PORT1}`...
    pub ports: Vec<u16>,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Writes `template` (with `{ADMIN}` and `{PORTn}` replaced by free loopback ports) to a
    /// file, starts the binary on it, and waits until `/readyz` answers 200. stderr (the JSON
    /// log) is collected line by line; `quiet` discards it instead (load tests log one line
    /// per failure, tens of thousands of them).
    pub async fn start(template: &str, quiet: bool) -> Proc {
        let admin_port = free_port();
        let mut text = template.replace("{ADMIN}", &format!("127.0.0.1:{admin_port}"));
        let mut ports = Vec::new();
        while text.contains(&format!("{{PORT{}}}", ports.len())) {
            let p = free_port();
            text = text.replace(&format!("{{PORT{}}}", ports.len()), &p.to_string());
            ports.push(p);
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("handoff.toml");
        write_file(&config, &text);
        let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .env_remove("HANDOFF_CONFIG")
            .env_remove("HANDOFF_LISTEN")
            .env_remove("HANDOFF_UPSTREAM")
            .args(["run", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(if quiet { Stdio::null() } else { Stdio::piped() })
            .spawn()
            .expect("spawn handoff");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let lines = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let proc = Proc {
            child: Some(child),
            config,
            admin: format!("127.0.0.1:{admin_port}").parse().unwrap(),
            ports,
            stderr,
            _dir: dir,
        };
        proc.wait_ready().await;
        proc
    }

    /// The listener of upstream `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        format!("127.0.0.1:{}", self.ports[i]).parse().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    async fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = Client::connect(self.admin).await {
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

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let mut c = Client::connect(self.admin).await.expect("admin connect");
        let r = c
            .request("GET", "/metrics", &[], b"")
            .await
            .expect("GET /metrics");
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).unwrap()
    }

    /// One series of `/metrics` (0 when absent).
    pub async fn metric(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics().await, family, labels).unwrap_or(0.0)
    }

    /// Open file descriptors of the process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The names of the process's threads (`/proc/PID/task/*/comm`).
    pub fn thread_names(&self) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    }

    /// Resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Sends `signal` (e.g. "TERM", "HUP") with kill(1): the workspace denies `unsafe`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Rewrites the config file.
    pub fn rewrite_config(&self, text: &str) {
        write_file(&self.config, text);
    }

    /// The config text currently on disk.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap()
    }

    /// stderr lines so far (empty when started quiet).
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the process to exit within `within`; its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let until = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            assert!(
                Instant::now() < until,
                "handoff did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write_file(path: &std::path::Path, text: &str) {
    // Write and rename, so a SIGHUP never reads half a file.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Polls `f` every 20 ms until it returns true or `within` passes; whether it did.
pub async fn poll_until<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The php-fpm binary: `$HANDOFF_PHP_FPM`, else the newest `/usr/sbin/php-fpm*`.
pub fn php_fpm_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HANDOFF_PHP_FPM") {
        return p.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/sbin")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("php-fpm"))
        })
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("php-fpm not found in /usr/sbin: run scripts/test, which installs Debian's php-fpm")
    })
}

/// A private php-fpm master in the foreground (`-F`), killed on drop.
#[derive(Debug)]
pub struct PhpFpm {
    child: Child,
}

impl PhpFpm {
    /// Starts php-fpm on `conf` (a php-fpm.conf with `[global]` and its pools) with `dir` as
    /// its prefix, and waits until `listen` (a socket path, or `host:port`) accepts
    /// connections.
    pub fn start(dir: &Path, conf: &Path, listen: &str) -> PhpFpm {
        let child = Command::new(php_fpm_binary())
            .arg("-n")
            .arg("-p")
            .arg(dir)
            .arg("-y")
            .arg(conf)
            .args(["-F", "-R"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start php-fpm (scripts/test installs it)");
        let mut fpm = PhpFpm { child };
        let until = Instant::now() + Duration::from_secs(10);
        let accepts = || {
            if listen.starts_with('/') {
                std::os::unix::net::UnixStream::connect(listen).is_ok()
            } else {
                std::net::TcpStream::connect(listen).is_ok()
            }
        };
        while !accepts() {
            if let Ok(Some(status)) = fpm.child.try_wait() {
                panic!("php-fpm exited ({status}); see {}", dir.display());
            }
            assert!(
                Instant::now() < until,
                "php-fpm did not listen on {listen} in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        fpm
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        // TERM: php-fpm's master stops its workers and removes its socket.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed and reaped on drop.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// handoff's binary as `nobody`, with one upstream at `address`; the admin address and the
/// listener. Waits until it is ready.
pub async fn handoff_as_nobody(
    dir: &Path,
    address: &str,
) -> (Killed, std::net::SocketAddr, std::net::SocketAddr) {
    assert!(
        handoff_probe::identity::Identity::current().is_root(),
        "this test needs root to start handoff as nobody (scripts/test runs as root)"
    );
    let (port, admin) = (free_port(), free_port());
    let config = dir.join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[[upstream]]\nname = \"app\"\n\
             listen = \"127.0.0.1:{port}\"\naddress = \"{address}\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let child = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_handoff"))
        .args(["run", "-c"])
        .arg(&config)
        .current_dir("/")
        .stderr(Stdio::null())
        .spawn()
        .expect("setpriv (util-linux) runs handoff as nobody");
    let child = Killed(child);
    let admin = format!("127.0.0.1:{admin}").parse().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !get(admin, "/readyz").await.is_ok_and(|r| r.status == 200) {
        assert!(
            Instant::now() < until,
            "handoff (as nobody) never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, admin, format!("127.0.0.1:{port}").parse().unwrap())
}
