//! `handoff doctor` against real processes on this machine: nginx started with its own
//! config on a loopback port, a php-fpm pool in a temporary directory, handoff and an app.
//! Each check's status follows the setup as the test changes it; as `nobody` the checks it
//! may not do are skips, not crashes; and doctor writes nothing.

#[path = "../../doctor/tests/support/mod.rs"]
mod fixture_tree;
mod support;

use fixture_tree::copy_tree;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::nginx::{Nginx, NginxConfig};
use support::{PhpFpm, Proc};

/// The handoff in front of the app: nginx's buffer is 8k in the test nginx.
const HANDOFF: &str = "[admin]\nlisten = \"{ADMIN}\"\n[[upstream]]\nname = \"app\"\n\
    listen = \"127.0.0.1:{PORT0}\"\naddress = \"APP\"\nnginx_buffer_bytes = 8192\n";

/// A site: the app, handoff, a php-fpm pool and nginx in front of both.
struct Site {
    dir: tempfile::TempDir,
    app: Option<FaultServer>,
    handoff: Proc,
    _php: PhpFpm,
    nginx: Nginx,
}

impl Site {
    async fn start() -> Site {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let handoff = Proc::start(&HANDOFF.replace("APP", &app.target()), true).await;
        // handoff's config is in a private directory; doctor (also as nobody) reads a copy.
        std::fs::write(dir.path().join("handoff.toml"), handoff.config_text()).unwrap();
        chmod(&dir.path().join("handoff.toml"), 0o644);

        let run = dir.path().join("run/php");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(dir.path().join("pool.d")).unwrap();
        let socket = run.join("php8.2-fpm.sock");
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("pool.d/www.conf"),
            format!(
                "[www]\nuser = root\ngroup = root\nlisten = {}\nlisten.mode = 0666\npm = static\n\
                 pm.max_children = 8\nrequest_terminate_timeout = 50s\npm.status_path = /status\n\
                 slowlog = {d}/slow.log\nrequest_slowlog_timeout = 5s\n",
                socket.display()
            ),
        )
        .unwrap();
        let conf = dir.path().join("php-fpm.conf");
        std::fs::write(
            &conf,
            format!("[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/php-fpm.log\ndaemonize = no\ninclude = {d}/pool.d/*.conf\n"),
        )
        .unwrap();
        let php = PhpFpm::start(dir.path(), &conf, socket.to_str().unwrap());
        let nginx = Nginx::start(&php_site(&handoff, &socket, "60s"));
        Site {
            dir,
            app: Some(app),
            handoff,
            _php: php,
            nginx,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/php/php8.2-fpm.sock")
    }

    /// `handoff doctor --json` over this site; exit code and report.
    fn doctor(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        doctor_as(self, None, extra)
    }
}

/// The test nginx in front of handoff, with a PHP location nested in `location /`.
fn php_site(handoff: &Proc, socket: &Path, read_timeout: &str) -> NginxConfig {
    let mut config = NginxConfig::new(handoff.addr(0));
    config.proxy_read_timeout = read_timeout.into();
    config.extra_location = format!(
        "            location ~ \\.php$ {{\n                fastcgi_pass unix:{};\n            }}\n",
        socket.display()
    );
    config
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs doctor over `site` (as `user` via setpriv when given); exit code and parsed JSON.
fn doctor_as(site: &Site, user: Option<&str>, extra: &[&str]) -> (i32, serde_json::Value) {
    let dir = site.dir.path();
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={user}"))
                .args(["--regid=nogroup", "--clear-groups", "--"])
                .arg(env!("CARGO_BIN_EXE_handoff"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_handoff")),
    };
    let out = cmd
        .args(["doctor", "--json", "-c"])
        .arg(dir.join("handoff.toml"))
        .arg("--nginx-conf")
        .arg(site.nginx.dir().join("nginx.conf"))
        .arg("--php-fpm-pools")
        .arg(dir.join("pool.d"))
        .arg("--php-fpm-run")
        .arg(dir.join("run/php"))
        .args(extra)
        .env_remove("HANDOFF_CONFIG")
        .current_dir("/")
        .output()
        .expect("run handoff doctor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "doctor crashed: {stderr}");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().expect("an exit code"), json)
}

/// The one finding of `id` whose subject contains `subject`.
fn finding<'a>(report: &'a serde_json::Value, id: &str, subject: &str) -> &'a serde_json::Value {
    let all: Vec<&serde_json::Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == id && c["subject"].as_str().unwrap_or("").contains(subject))
        .collect();
    assert_eq!(all.len(), 1, "{id} {subject:?}: {all:#?}\n{report:#}");
    all[0]
}

fn status<'a>(report: &'a serde_json::Value, id: &str, subject: &str) -> &'a str {
    finding(report, id, subject)["status"].as_str().unwrap()
}

const ONLY: &str = "--only=nginx,handoff,target,firewall,phpfpm";

/// All well, then the app stops, the socket moves, its directory closes and nginx's
/// timeout shrinks: each check turns to fail with the reason it would cause, and back.
#[tokio::test(flavor = "multi_thread")]
async fn each_check_follows_the_host_as_it_changes() {
    let mut site = Site::start().await;
    let handoff_listen = format!("proxy_pass {}", site.handoff.addr(0));

    let (code, r) = site.doctor(&[ONLY]);
    assert_eq!(r["summary"]["fail"], 0, "{r:#}");
    assert_eq!(code, 0);
    assert_eq!(status(&r, "nginx.config", "nginx.conf"), "ok");
    assert_eq!(status(&r, "nginx.targets", &handoff_listen), "ok");
    assert_eq!(status(&r, "handoff.coverage", "upstream app"), "ok");
    assert_eq!(status(&r, "target.listening", "upstream app address"), "ok");
    assert_eq!(status(&r, "target.listening", &handoff_listen), "ok");
    let socket = finding(&r, "target.socket", "fastcgi_pass");
    assert_eq!(socket["status"], "ok", "{socket}");
    assert!(
        socket["message"]
            .as_str()
            .unwrap()
            .contains("listening by php-fpm"),
        "{socket}"
    );
    assert_eq!(status(&r, "firewall", "upstream app address"), "ok");
    assert_eq!(status(&r, "phpfpm.drift", "fastcgi_pass"), "ok");
    assert_eq!(status(&r, "nginx.timeouts", "proxy_read_timeout 60s"), "ok");
    assert_eq!(status(&r, "nginx.buffers", "proxy_buffer_size 8k"), "ok");
    assert_eq!(status(&r, "handoff.live", "admin"), "ok");
    assert_eq!(
        finding(&r, "target.socket", "fastcgi_pass")["source"]["file"],
        site.nginx.dir().join("nginx.conf").display().to_string()
    );

    // nginx -t, only when asked: the test nginx's config keeps its pid and logs in its dir.
    let (_, r) = site.doctor(&["--only=nginx.test"]);
    assert_eq!(status(&r, "nginx.test", "nginx"), "skip");
    let (_, r) = site.doctor(&["--only=nginx.test", "--exec-nginx-test"]);
    let test = finding(&r, "nginx.test", "nginx");
    assert_eq!(test["status"], "ok", "{test}");
    assert!(
        test["message"]
            .as_str()
            .unwrap()
            .contains("test is successful"),
        "{test}"
    );

    // The app stops.
    drop(site.app.take());
    let (code, r) = site.doctor(&[ONLY]);
    assert_eq!(code, 1);
    let app = finding(&r, "target.listening", "upstream app address");
    assert_eq!(
        (app["status"].as_str(), app["reason"].as_str()),
        (Some("fail"), Some("connect_refused")),
        "{app}"
    );

    // The socket is moved away.
    let moved = site.dir.path().join("run/php/old-fpm.sock");
    std::fs::rename(site.socket(), &moved).unwrap();
    let (_, r) = site.doctor(&[ONLY]);
    let socket = finding(&r, "target.socket", "fastcgi_pass");
    assert_eq!(
        (socket["status"].as_str(), socket["reason"].as_str()),
        (Some("fail"), Some("socket_not_found")),
        "{socket}"
    );
    assert!(
        socket["message"]
            .as_str()
            .unwrap()
            .contains("old-fpm.sock listens, served by php-fpm"),
        "{socket}"
    );
    std::fs::rename(&moved, site.socket()).unwrap();

    // Its directory is closed to nginx's worker user (nobody: the config names none).
    chmod(&site.dir.path().join("run/php"), 0o700);
    let (_, r) = site.doctor(&[ONLY]);
    let socket = finding(&r, "target.socket", "fastcgi_pass");
    assert_eq!(socket["reason"], "socket_permission_denied", "{socket}");
    let message = socket["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("directory {} (mode 700, owner uid 0 gid 0) cannot be searched by nginx's worker user nobody", site.dir.path().join("run/php").display())),
        "{message}"
    );
    chmod(&site.dir.path().join("run/php"), 0o755);
    let (_, r) = site.doctor(&[ONLY]);
    assert_eq!(status(&r, "target.socket", "fastcgi_pass"), "ok");

    // nginx's read timeout shorter than handoff's timers.
    let socket_path = site.socket();
    site.nginx = Nginx::start(&php_site(&site.handoff, &socket_path, "30s"));
    let (code, r) = site.doctor(&[ONLY]);
    assert_eq!(code, 1);
    let read = finding(&r, "nginx.timeouts", "proxy_read_timeout 30s");
    assert_eq!(
        (read["status"].as_str(), read["reason"].as_str()),
        (Some("fail"), Some("response_header_timeout")),
        "{read}"
    );
    assert_eq!(
        read["source"]["file"],
        site.nginx.dir().join("nginx.conf").display().to_string()
    );
}

/// As nobody: what it may not read is a skip with the reason, what it may is checked, and
/// nothing crashes.
#[tokio::test(flavor = "multi_thread")]
async fn as_nobody_the_checks_it_cannot_do_are_skips() {
    let site = Site::start().await;
    chmod(&site.nginx.dir().join("error.log"), 0o600);
    let (code, r) = doctor_as(&site, Some("nobody"), &[]);
    assert!(code == 0 || code == 1, "exit {code}");
    let logs = finding(&r, "logs", "error.log");
    assert_eq!(logs["status"], "skip", "{logs}");
    assert!(
        logs["skip_reason"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{logs}"
    );
    // The socket is still checked for nginx's worker user, through what nobody may see.
    assert_eq!(status(&r, "target.socket", "fastcgi_pass"), "ok");
    assert_eq!(status(&r, "handoff.live", "admin"), "ok");
    for c in r["checks"].as_array().unwrap() {
        if c["status"] == "skip" {
            assert!(
                c["skip_reason"].as_str().is_some_and(|s| !s.is_empty()),
                "a skip says why: {c}"
            );
        }
    }
}

/// Every file, its size, mode, mtime and content, under `root`.
fn snapshot(root: &Path) -> Vec<(PathBuf, u64, u32, std::time::SystemTime, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dirs.push(entry.path());
            }
            let content = if meta.is_file() {
                std::fs::read(entry.path()).unwrap()
            } else {
                Vec::new()
            };
            out.push((
                entry.path(),
                meta.len(),
                meta.permissions().mode(),
                meta.modified().unwrap(),
                content,
            ));
        }
    }
    out.sort();
    out
}

/// Doctor over a fixture tree, live checks on, under strace: the tree is unchanged, and no
/// file was opened for writing, created, removed, renamed or chmodded.
#[test]
fn doctor_writes_nothing() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../doctor/tests/fixtures/drift");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("drift");
    copy_tree(&fixtures, &root, &root);
    let before = snapshot(&root);
    let trace = dir.path().join("strace.out");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=%file,%desc", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_handoff"))
        .args(["doctor", "-c"])
        .arg(root.join("handoff.toml"))
        .arg("--nginx-conf")
        .arg(root.join("etc/nginx/nginx.conf"))
        .arg("--php-fpm-pools")
        .arg(root.join("etc/php/8.2/fpm/pool.d"))
        .arg("--php-fpm-run")
        .arg(root.join("run/php"))
        .env_remove("HANDOFF_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("strace (scripts/test installs it)");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the fixture has failures: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("phpfpm.drift"));
    assert_eq!(snapshot(&root), before, "the fixture tree changed");
    let trace = std::fs::read_to_string(&trace).unwrap();
    let writes: Vec<&str> = trace
        .lines()
        .filter(|l| {
            let open = (l.contains("open(") || l.contains("openat(") || l.contains("openat2("))
                && ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                    .iter()
                    .any(|f| l.contains(f));
            let change = [
                "creat(",
                "mkdir",
                "unlink",
                "rename",
                "chmod(",
                "fchmod",
                "chown",
                "truncate(",
                "link(",
                "symlink",
                "utime",
            ]
            .iter()
            .any(|c| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|call| call.starts_with(c))
            });
            open || change
        })
        .collect();
    assert!(writes.is_empty(), "doctor wrote: {writes:#?}");
    assert!(
        trace.lines().count() > 50,
        "strace saw doctor's file calls: {trace}"
    );
}

/// 64 for a bad flag or configuration, 66 for a file that is not there.
#[test]
fn exit_codes_as_for_check() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_handoff"))
            .arg("doctor")
            .args(args)
            .env_remove("HANDOFF_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .code()
    };
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[admin]\nlisten = 9180\n").unwrap();
    assert_eq!(run(&["--only", "nginx.nope"]), Some(64));
    assert_eq!(run(&["-c", bad.to_str().unwrap()]), Some(64));
    assert_eq!(run(&["-c", "/nonexistent/handoff.toml"]), Some(66));
    assert_eq!(run(&["--nginx-conf", "/nonexistent/nginx.conf"]), Some(66));
}

/// handoff runs as nobody in front of a root-only socket: doctor (as root) checks the socket
/// for the user handoff runs as, found from the process holding its admin listener.
#[tokio::test(flavor = "multi_thread")]
async fn the_apps_socket_is_checked_for_the_user_handoff_runs_as() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let app = FaultServer::start(
        Mode::SocketPermission,
        Bind::Unix(dir.path().join("app.sock")),
    )
    .await
    .unwrap();
    let nginx_conf = dir.path().join("nginx.conf");
    std::fs::write(&nginx_conf, "events {}\nhttp {}\n").unwrap();
    let (_handoff, _, _) = support::handoff_as_nobody(dir.path(), &app.target()).await;
    let config = dir.path().join("handoff.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["doctor", "--json", "--only", "target.socket", "-c"])
        .arg(&config)
        .arg("--nginx-conf")
        .arg(&nginx_conf)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let socket = finding(&r, "target.socket", "upstream app address");
    assert_eq!(socket["reason"], "socket_permission_denied", "{socket}");
    let message = socket["message"].as_str().unwrap();
    assert!(message.starts_with("handoff's user (pid "), "{message}");
    assert!(
        message.contains("uid 65534") && message.contains("mode 600, owner uid 0 gid 0"),
        "{message}"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// nginx's proxy_pass and handoff's address both pointed at php-fpm's socket: php-fpm speaks
/// FastCGI, and doctor says so for each (fastcgi_pass there is fine).
#[test]
fn http_pointed_at_php_fpm_is_named() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let d = dir.path().display();
    let socket = dir.path().join("php.sock");
    let conf = dir.path().join("php-fpm.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/php-fpm.log\ndaemonize = no\n\
             [www]\nuser = root\ngroup = root\nlisten = {}\nlisten.mode = 0666\npm = static\npm.max_children = 1\n",
            socket.display()
        ),
    )
    .unwrap();
    let _php = PhpFpm::start(dir.path(), &conf, socket.to_str().unwrap());
    let s = socket.display();
    let nginx_conf = dir.path().join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        format!(
            "events {{}}\nhttp {{\n  server {{\n    location / {{ proxy_pass http://unix:{s}:/; }}\n    \
             location ~ \\.php$ {{ fastcgi_pass unix:{s}; }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let handoff = dir.path().join("handoff.toml");
    std::fs::write(
        &handoff,
        format!(
            "[[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:18080\"\naddress = \"unix:{s}\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["doctor", "--json", "--only", "target.socket", "-c"])
        .arg(&handoff)
        .arg("--nginx-conf")
        .arg(&nginx_conf)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for subject in ["proxy_pass unix:", "upstream app address"] {
        let f = finding(&r, "target.socket", subject);
        assert_eq!(f["status"], "fail", "{f}");
        assert_eq!(f["reason"], "closed_before_response", "{f}");
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains("php-fpm speaks FastCGI, not HTTP"),
            "{f}"
        );
    }
    assert_eq!(status(&r, "target.socket", "fastcgi_pass"), "ok");
}

/// Without --nginx-conf, nginx's main file is the `--conf-path` that `nginx -V` reports.
#[test]
fn the_nginx_conf_comes_from_nginx_dash_v() {
    let nginx = handoff::testing::nginx::nginx_binary();
    let out = Command::new(&nginx).arg("-V").output().unwrap();
    let reported = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .find_map(|a| a.strip_prefix("--conf-path=").map(PathBuf::from))
        .expect("Debian's nginx is built with --conf-path");
    let host = handoff_doctor::Host {
        nginx_binary: nginx,
        ..handoff_doctor::Host::system()
    };
    assert_eq!(host.nginx_conf(), reported);
}
