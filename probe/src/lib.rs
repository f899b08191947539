//! handoff-probe: on-the-spot checks of the host that turn a failure into a finding: what
//! exists next to a missing socket, who may open a forbidden one, whether the refused port
//! listens elsewhere.
//!
//! # Layout
//!
//! - this file: [`investigate`], the findings for one failure, and the checks behind them;
//! - `sock_diag`: the TCP listeners, asked of the kernel over netlink.
//!
//! They run on the failure path only, read local state (no network), and their results are
//! cached per upstream and reason for a second so that a failure storm costs one look.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use handoff_diag::{Failure, Reason};

mod sock_diag;

const CACHE_FOR: Duration = Duration::from_secs(1);

type Cache = Mutex<HashMap<(String, Reason), (Instant, Vec<String>)>>;

/// Adds what can be found out now to `failure.evidence.findings`.
///
/// Runs on the request's own thread: the checks read a few files under `/proc` and the
/// socket's directory, and one lock makes concurrent failures of the same kind wait for the
/// first look and reuse it, instead of each starting its own (a failure storm costs one
/// look per second, not one thread per failure).
pub fn investigate(failure: &mut Failure) {
    let reason = failure.reason;
    let fresh_unix = !failure.evidence.reused && failure.evidence.next_hop.starts_with("unix:");
    let early_hang_up = matches!(
        reason,
        Reason::ResetBeforeResponse | Reason::ClosedBeforeResponse | Reason::RequestWriteFailed
    );
    if !(matches!(
        reason,
        Reason::SocketNotFound | Reason::SocketPermissionDenied | Reason::ConnectRefused
    ) || (early_hang_up && fresh_unix))
    {
        return;
    }
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let Ok(mut cache) = CACHE.get_or_init(Default::default).lock() else {
        return;
    };
    let key = (failure.evidence.next_hop.to_string(), reason);
    let now = Instant::now();
    let findings = match cache.get(&key) {
        Some((at, findings)) if now.duration_since(*at) < CACHE_FOR => findings.clone(),
        _ => {
            let findings = find(reason, &key.0);
            cache.retain(|_, (at, _)| now.duration_since(*at) < CACHE_FOR);
            cache.insert(key, (now, findings.clone()));
            findings
        }
    };
    failure.evidence.findings = findings;
}

fn find(reason: Reason, next_hop: &str) -> Vec<String> {
    match (reason, next_hop.strip_prefix("unix:")) {
        (Reason::SocketNotFound, Some(path)) => missing_socket(Path::new(path)),
        (Reason::SocketPermissionDenied, Some(path)) => forbidden_socket(Path::new(path)),
        (Reason::ConnectRefused, Some(path)) => stale_socket(Path::new(path)),
        (Reason::ConnectRefused, None) => refused_port(next_hop),
        (_, Some(path)) => socket_server(Path::new(path)),
        _ => Vec::new(),
    }
}

fn missing_socket(path: &Path) -> Vec<String> {
    let Some(dir) = path.parent() else {
        return Vec::new();
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return vec![format!("directory {} cannot be read: {e}", dir.display())],
    };
    let mut sockets: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    sockets.sort();
    if sockets.is_empty() {
        vec![format!("no socket exists in {}", dir.display())]
    } else {
        vec![format!(
            "sockets that do exist in {}: {}",
            dir.display(),
            sockets.join(", ")
        )]
    }
}

fn forbidden_socket(path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    match std::fs::metadata(path) {
        Ok(meta) => out.push(format!(
            "socket owner uid {} gid {}, mode {:o}",
            meta.uid(),
            meta.gid(),
            meta.permissions().mode() & 0o7777
        )),
        Err(e) => out.push(format!("cannot stat {}: {e}", path.display())),
    }
    out.push(format!(
        "handoff runs as uid {} with groups {}",
        uid(),
        groups().join(",")
    ));
    if let Ok(mode) = std::fs::read_to_string("/sys/fs/selinux/enforce") {
        if mode.trim() == "1" {
            out.push("SELinux is enforcing: check the socket's label too".into());
        }
    }
    out
}

fn stale_socket(path: &Path) -> Vec<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            vec!["the socket file exists but nothing listens on it: the app stopped without removing it".into()]
        }
        Ok(_) => vec![format!("{} exists but is not a socket", path.display())],
        Err(_) => Vec::new(),
    }
}

/// Which process serves a unix socket that hung up on a new connection without a byte.
///
/// The classic case is php-fpm: it speaks FastCGI, and an HTTP request makes it reset at
/// once, so there are no first bytes to recognise it by. The listening socket's inode (from
/// `/proc/net/unix`) leads to the process holding it; without permission to look (handoff
/// not root), the socket's name is the only clue.
fn socket_server(path: &Path) -> Vec<String> {
    const FASTCGI: &str = "the socket belongs to php-fpm, which speaks FastCGI, not HTTP: \
        nginx needs fastcgi_pass for it; handoff cannot proxy FastCGI";
    let owner = listening_inode(path).and_then(process_holding);
    match owner {
        Some((pid, comm)) if comm.starts_with("php-fpm") || comm.starts_with("php") => {
            vec![FASTCGI.to_owned(), format!("served by {comm} (pid {pid})")]
        }
        Some((pid, comm)) => vec![format!("the socket is served by {comm} (pid {pid})")],
        None => {
            let name = path.to_string_lossy().to_ascii_lowercase();
            if name.contains("php") || name.contains("fpm") {
                vec![format!("{FASTCGI} (judging by the socket's name)")]
            } else {
                Vec::new()
            }
        }
    }
}

/// The inode of the listening unix socket bound at `path`.
fn listening_inode(path: &Path) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let path = path.to_str()?;
    table.lines().skip(1).find_map(|line| {
        // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is __SO_ACCEPTCON.
        let cols: Vec<&str> = line.split_whitespace().collect();
        let listening = u32::from_str_radix(cols.get(3)?, 16).ok()? & 0x1_0000 != 0;
        (listening && cols.get(7) == Some(&path))
            .then(|| cols.get(6)?.parse().ok())
            .flatten()
    })
}

/// The process (pid, command name) holding the socket with `inode`.
fn process_holding(inode: u64) -> Option<(u32, String)> {
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.filter_map(Result::ok).any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str())
        });
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some((pid, comm.trim().to_owned()));
        }
    }
    None
}

/// Is something listening on the refused port, but on another address?
fn refused_port(next_hop: &str) -> Vec<String> {
    let Ok(addr) = next_hop.parse::<SocketAddr>() else {
        return Vec::new();
    };
    let port = addr.port();
    let listeners = match sock_diag::tcp_listeners() {
        Ok(listeners) => listeners,
        Err(e) => return vec![format!("the listening sockets could not be listed: {e}")],
    };
    let mut elsewhere: Vec<String> = listeners
        .iter()
        .filter(|listener| listener.port() == port)
        .map(|listener| match listener.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        })
        .collect();
    elsewhere.sort();
    elsewhere.dedup();
    if elsewhere.is_empty() {
        vec![format!(
            "nothing listens on port {port} on any local address"
        )]
    } else {
        vec![format!(
            "port {port} listens on {} instead",
            elsewhere.join(", ")
        )]
    }
}

fn uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn groups() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for line in status.lines() {
        if let Some(gid) = line.strip_prefix("Gid:") {
            out.extend(gid.split_whitespace().next().map(str::to_owned));
        }
        if let Some(groups) = line.strip_prefix("Groups:") {
            out.extend(groups.split_whitespace().map(str::to_owned));
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_port_that_listens_on_another_address_says_where() {
        let elsewhere = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let port = elsewhere.local_addr().unwrap().port();
        assert_eq!(
            refused_port(&format!("127.0.0.1:{port}")),
            vec![format!("port {port} listens on 127.0.0.2 instead")]
        );
        drop(elsewhere);
        assert_eq!(
            refused_port(&format!("127.0.0.1:{port}")),
            vec![format!(
                "nothing listens on port {port} on any local address"
            )]
        );
    }

    #[test]
    fn the_process_serving_a_unix_socket_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let found = socket_server(&path);
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(
            found,
            vec![format!(
                "the socket is served by {} (pid {})",
                me.trim(),
                std::process::id()
            )]
        );
        let php = dir.path().join("php8.2-fpm.sock");
        assert!(
            socket_server(&php)[0].contains("FastCGI"),
            "a php-named socket nobody serves"
        );
    }

    #[test]
    fn missing_socket_lists_the_sockets_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let _l =
            std::os::unix::net::UnixListener::bind(dir.path().join("php8.2-fpm.sock")).unwrap();
        let found = missing_socket(&dir.path().join("php8.3-fpm.sock"));
        assert!(found[0].contains("php8.2-fpm.sock"), "{found:?}");
    }
}
