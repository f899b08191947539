//! Where things are on the host doctor examines. Every path is a field, so that a test can
//! point doctor at a fixture tree; [`Host::system`] is this machine as Debian and RHEL lay
//! it out.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The host's roots and doctor's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The nginx binary (`nginx -V` for its `--conf-path`; `nginx -t` when asked).
    pub nginx_binary: PathBuf,
    /// nginx's main configuration file; `None`: from `nginx -V`, else
    /// `/etc/nginx/nginx.conf`.
    pub nginx_conf: Option<PathBuf>,
    /// `/etc`: `passwd`, `group`, `hosts`.
    pub etc: PathBuf,
    /// The directories of php-fpm pool files (`/etc/php/*/fpm/pool.d`, `/etc/php-fpm.d`).
    pub php_pools: Vec<PathBuf>,
    /// Where php-fpm's sockets live (`/run/php`).
    pub php_run: PathBuf,
    /// `/proc`.
    pub proc: PathBuf,
    /// `/sys/fs/selinux`.
    pub selinux: PathBuf,
    /// `/sys/fs/cgroup`.
    pub cgroup: PathBuf,
    /// Whether to look at live state: listeners, socket files' listeners, processes,
    /// loopback connects, handoff's admin endpoints, `systemctl`. Off for fixture trees.
    pub live: bool,
    /// How long a loopback connect or an admin request may take.
    pub connect_timeout: Duration,
}

// === impl Host ===

impl Host {
    /// This machine.
    pub fn system() -> Host {
        let mut php_pools: Vec<PathBuf> = std::fs::read_dir("/etc/php")
            .map(|versions| {
                versions
                    .filter_map(|v| Some(v.ok()?.path().join("fpm/pool.d")))
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        php_pools.sort();
        php_pools.push(PathBuf::from("/etc/php-fpm.d"));
        Host {
            nginx_binary: std::env::var_os("HANDOFF_NGINX")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx")),
            nginx_conf: None,
            etc: PathBuf::from("/etc"),
            php_pools,
            php_run: PathBuf::from("/run/php"),
            proc: PathBuf::from("/proc"),
            selinux: PathBuf::from("/sys/fs/selinux"),
            cgroup: PathBuf::from("/sys/fs/cgroup"),
            live: true,
            connect_timeout: Duration::from_secs(1),
        }
    }

    /// A fixture tree laid out like a host under `root` (`root/etc`, `root/run/php`,
    /// `root/proc`, ...), nginx's config at `root/etc/nginx/nginx.conf`, live checks off.
    pub fn fixture(root: &Path) -> Host {
        let mut php_pools: Vec<PathBuf> = std::fs::read_dir(root.join("etc/php"))
            .map(|versions| {
                versions
                    .filter_map(|v| Some(v.ok()?.path().join("fpm/pool.d")))
                    .collect()
            })
            .unwrap_or_default();
        php_pools.sort();
        php_pools.push(root.join("etc/php-fpm.d"));
        Host {
            nginx_binary: root.join("usr/sbin/nginx"),
            nginx_conf: Some(root.join("etc/nginx/nginx.conf")),
            etc: root.join("etc"),
            php_pools,
            php_run: root.join("run/php"),
            proc: root.join("proc"),
            selinux: root.join("sys/fs/selinux"),
            cgroup: root.join("sys/fs/cgroup"),
            live: false,
            connect_timeout: Duration::from_secs(1),
        }
    }

    /// nginx's main file: the one given, else `--conf-path` from `nginx -V` (which prints
    /// to stderr and writes nothing), else `/etc/nginx/nginx.conf`.
    pub fn nginx_conf(&self) -> PathBuf {
        if let Some(conf) = &self.nginx_conf {
            return conf.clone();
        }
        let from_v = std::process::Command::new(&self.nginx_binary)
            .arg("-V")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .output()
            .ok()
            .and_then(|out| {
                let text = String::from_utf8_lossy(&out.stderr).into_owned();
                text.split_whitespace()
                    .find_map(|a| a.strip_prefix("--conf-path=").map(PathBuf::from))
            });
        from_v.unwrap_or_else(|| PathBuf::from("/etc/nginx/nginx.conf"))
    }
}
