//! A private nginx for end-to-end tests: its own prefix, config, logs and temp paths in a
//! fresh directory, listening on a free loopback port and proxying to a handoff listener with
//! the blocks handoff's nginx template ([`crate::nginx_conf`]) writes for the first upstream
//! of `deploy/handoff.toml`, the same as `deploy/nginx/handoff.conf` and `handoff
//! nginx-snippet`, and the `log_format handoff` of `deploy/nginx/log_format.conf`: the tests
//! use what users install.
//!
//! ```no_run
//! # fn demo(handoff: std::net::SocketAddr) {
//! use handoff::testing::nginx::{Nginx, NginxConfig};
//! let nginx = Nginx::start(&NginxConfig::new(handoff));
//! // send requests to nginx.addr(); read nginx.access_log() and nginx.error_log()
//! # }
//! ```
//!
//! nginx is `$HANDOFF_NGINX` or `/usr/sbin/nginx`; when it is missing, [`Nginx::start`]
//! panics with a message naming `scripts/test`, which installs it: the tests fail rather
//! than pass without having run.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::free_port;
use crate::nginx_conf::{Site, LOG_FORMAT};

/// `deploy/nginx/log_format.conf`, verbatim.
pub const LOG_FORMAT_CONF: &str = LOG_FORMAT;

/// `deploy/handoff.toml`, whose first upstream the recommended configuration is written for.
const EXAMPLE_CONFIG: &str = include_str!("../../../deploy/handoff.toml");

/// What to put into the test nginx's config: the recommended site, with what a test changes.
#[derive(Debug, Clone)]
pub struct NginxConfig {
    /// The handoff listener nginx proxies to.
    pub upstream: SocketAddr,
    /// `proxy_read_timeout` (recommended: `60s`, longer than handoff's timers).
    pub proxy_read_timeout: String,
    /// `proxy_send_timeout` (recommended `60s`).
    pub proxy_send_timeout: String,
    /// `proxy_buffer_size` (recommended `8k`).
    pub proxy_buffer_size: String,
    /// Extra directives for the `location /` block (e.g. `client_max_body_size 0;`); one the
    /// template writes already is replaced (see [`Site::extra`]).
    pub extra_location: String,
}

impl NginxConfig {
    /// The recommended configuration in front of `upstream`.
    pub fn new(upstream: SocketAddr) -> NginxConfig {
        let site = recommended();
        NginxConfig {
            upstream,
            proxy_read_timeout: site.read_timeout,
            proxy_send_timeout: site.send_timeout,
            proxy_buffer_size: site.buffer_size,
            extra_location: String::new(),
        }
    }

    /// The full `nginx.conf` text for an instance in `dir` listening on `port`.
    pub fn render(&self, dir: &Path, port: u16) -> String {
        let d = dir.display();
        let site = Site {
            server: self.upstream.to_string(),
            access_log: format!("{d}/access.log"),
            read_timeout: self.proxy_read_timeout.clone(),
            send_timeout: self.proxy_send_timeout.clone(),
            buffer_size: self.proxy_buffer_size.clone(),
            extra: self.extra_location.clone(),
            ..recommended()
        };
        format!(
            r#"# written by handoff::testing::nginx, with handoff's nginx template (nginx_conf)
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 512;
}}

http {{
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    # deploy/nginx/log_format.conf, verbatim:
{LOG_FORMAT}
    # Also requests nginx answers before any location (a malformed request line).
    access_log {d}/access.log handoff;

{upstream}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;

{location}    }}
}}
"#,
            upstream = site.upstream_block(4, true),
            location = site.location_block(8, true),
        )
    }
}

/// The site `deploy/nginx/handoff.conf` writes for `deploy/handoff.toml`'s first upstream.
fn recommended() -> Site {
    let example = handoff_config::from_str(EXAMPLE_CONFIG, "deploy/handoff.toml")
        .expect("deploy/handoff.toml is valid (deploy_files.rs checks it)");
    Site::for_upstream(&example.upstreams[0])
}

/// A running private nginx. Dropping it kills it, waits for it and removes its directory.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

/// The nginx binary: `$HANDOFF_NGINX`, else `/usr/sbin/nginx`. Panics, naming `scripts/test`,
/// when it is not there.
pub fn nginx_binary() -> PathBuf {
    let path = std::env::var_os("HANDOFF_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    assert!(
        path.is_file(),
        "nginx not found at {} (set $HANDOFF_NGINX): run scripts/test, which installs it \
         (Debian's nginx package) for the end-to-end tests",
        path.display()
    );
    path
}

/// A fresh, empty directory under the system temp dir; the caller removes it.
pub fn fresh_dir(prefix: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

impl Nginx {
    /// Starts nginx with `config` on a free loopback port and returns once it accepts
    /// connections (within 10 s, or panics with its error log).
    pub fn start(config: &NginxConfig) -> Nginx {
        let binary = nginx_binary();
        let dir = fresh_dir("handoff-nginx");
        // A port free a moment ago can be taken by a parallel test: try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config.render(&dir, port)).expect("write nginx.conf");
            let stderr = std::fs::File::create(dir.join("stderr.log")).expect("stderr.log");
            let mut child = Command::new(&binary)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-g")
                .arg("daemon off; master_process off;")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {}: {e}; run scripts/test, which installs nginx",
                        binary.display()
                    )
                });
            match wait_ready(&mut child, &dir, port, Duration::from_secs(10)) {
                Ok(()) => return Nginx { child, dir, port },
                Err(e) => {
                    last_error = e;
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_file(dir.join("error.log"));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("nginx did not start: {last_error}");
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The instance's directory (config, logs, temp paths).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// The access log so far, one JSON object per request (`log_format handoff`).
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Waits (up to `within`) for the access-log line whose `uri` is `uri` and returns it.
    /// nginx writes the line when the request ends, which can be after the client is done.
    pub async fn access_log_line(&self, uri: &str, within: Duration) -> serde_json::Value {
        let until = Instant::now() + within;
        loop {
            if let Some(line) = self.access_log().into_iter().find(|l| l["uri"] == uri) {
                return line;
            }
            assert!(
                Instant::now() < until,
                "no access-log line for {uri} within {within:?}; log: {:?}; error log: {}",
                self.access_log(),
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (up to `within`) until the error log contains `needle`; returns the log.
    pub async fn error_log_containing(&self, needle: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let log = self.error_log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < until,
                "nginx's error log never said {needle:?}: {log}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, dir: &Path, port: u16, within: Duration) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let logs = || {
        let mut text = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default());
        text
    };
    let until = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("nginx exited ({status}): {}", logs()));
        }
        // The port must be nginx's own: a parallel test may have bound the same "free"
        // port first, and nginx keeps retrying its bind for a while before it gives up.
        if owns_listener(child.id(), port)
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(format!(
                "nginx did not accept on {addr} within {within:?}: {}",
                logs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (read from the
/// process's own network namespace).
fn owns_listener(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A: LISTEN), ..., inode
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))
                .flatten()
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
