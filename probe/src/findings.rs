//! The findings for one failure: what the host says about the next hop, in the operator's
//! words, for the reasons where handoff can find out more on the spot.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use handoff_diag::Reason;

use crate::access::{socket_access, FileInfo, Kind, SocketAccess};
use crate::identity::Identity;
use crate::process::{fd_usage, held_sockets, socket_owners};
use crate::sock_diag::{self, TcpListener, UnixListener};

/// How long the walk of `/proc` for a socket's process may take inside one probe.
const OWNER_BUDGET: Duration = Duration::from_millis(150);
/// Listeners named as "near" a refused port, at most.
const NEAR_MAX: usize = 5;

/// What a probe is asked: the failure's reason and next hop, as the evidence has them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    /// The classified reason.
    pub reason: Reason,
    /// `127.0.0.1:3000`, `unix:/run/app.sock`, `tls://host:443`.
    pub next_hop: String,
    /// The errno of the failure, when there was one.
    pub errno: Option<i32>,
    /// A reused (pooled) connection: a hang-up on one says nothing about the socket.
    pub reused: bool,
}

/// Where findings go as they are made, so that a probe cut short by its deadline still
/// answers with what it found so far.
pub(crate) trait Sink {
    fn push(&mut self, finding: String);
}

impl Sink for Vec<String> {
    fn push(&mut self, finding: String) {
        Vec::push(self, finding);
    }
}

// === impl Question ===

impl Question {
    /// Whether any finder looks at this failure; the others cost nothing.
    pub fn wants_probe(&self) -> bool {
        let unix = self.next_hop.starts_with("unix:");
        match self.reason {
            Reason::SocketNotFound
            | Reason::SocketPermissionDenied
            | Reason::ConnectRefused
            | Reason::SocketBacklogFull => true,
            Reason::ConnectTimeout => !unix,
            // A hang-up on a new connection: who serves that address (php-fpm?).
            Reason::ResetBeforeResponse
            | Reason::ClosedBeforeResponse
            | Reason::RequestWriteFailed => !self.reused,
            Reason::ProxyInternalError => {
                matches!(self.errno, Some(libc::EMFILE | libc::ENFILE))
            }
            _ => false,
        }
    }
}

/// Runs the finders for `q`, pushing each finding into `out` as it is made.
pub(crate) fn find(q: &Question, out: &mut dyn Sink) {
    let path = q.next_hop.strip_prefix("unix:").map(Path::new);
    match (q.reason, path) {
        (Reason::SocketNotFound, Some(path)) => missing_socket(path, out),
        (Reason::SocketPermissionDenied, Some(path)) => forbidden_socket(path, out),
        (Reason::ConnectRefused, Some(path)) => refused_socket(path, out),
        (Reason::SocketBacklogFull, Some(path)) => full_backlog(path, out),
        (Reason::ConnectRefused, None) => refused_port(&q.next_hop, out),
        (Reason::ConnectTimeout, None) => tcp_queue(&q.next_hop, out),
        (Reason::ProxyInternalError, _) => descriptors(q.errno, out),
        (_, Some(path)) => socket_server(path, out),
        (_, None) => tcp_server(&q.next_hop, out),
    }
}

/// The finding for a path that is not a socket, whatever errno the kernel chose.
fn not_a_socket(info: &FileInfo) -> String {
    format!(
        "{} is {}, not a socket ({}): no app listens there; chmod will not help. Remove it \
         and restart the app, or point the upstream at the app's real socket",
        info.path.display(),
        info.kind,
        info.describe()
    )
}

fn missing_socket(path: &Path, out: &mut dyn Sink) {
    let Some(dir) = path.parent() else {
        return;
    };
    if let SocketAccess::MissingDirectory(missing) = socket_access(path, &Identity::current()) {
        out.push(format!(
            "directory {} does not exist: the app (or systemd's RuntimeDirectory=) creates it \
             when it starts; has it started?",
            missing.display()
        ));
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return out.push(format!("directory {} cannot be read: {e}", dir.display())),
    };
    let mut sockets: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| e.path())
        .collect();
    sockets.sort();
    if sockets.is_empty() {
        return out.push(format!("no socket exists in {}", dir.display()));
    }
    let names: Vec<String> = sockets
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    out.push(format!(
        "sockets that do exist in {}: {}",
        dir.display(),
        names.join(", ")
    ));
    // Which of them listen, and for whom: the php8.2 vs php8.3 drift names itself.
    let Ok(listeners) = sock_diag::unix_listeners() else {
        return;
    };
    let served: Vec<(&PathBuf, &UnixListener)> = sockets
        .iter()
        .filter_map(|p| Some((p, listener_of(p, &listeners)?)))
        .take(NEAR_MAX)
        .collect();
    let inodes: Vec<u64> = served.iter().map(|(_, l)| l.inode).collect();
    let owners = socket_owners(Path::new("/proc"), &inodes, OWNER_BUDGET);
    for (p, listener) in served {
        let name = p
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match owners.by_inode.get(&listener.inode) {
            Some(proc) => out.push(format!(
                "{name} listens, served by {} (pid {})",
                proc.comm, proc.pid
            )),
            None => out.push(format!("{name} listens{}", uid_note(listener.uid))),
        }
    }
}

fn forbidden_socket(path: &Path, out: &mut dyn Sink) {
    let me = Identity::current();
    match socket_access(path, &me) {
        SocketAccess::NotASocket(info) => out.push(not_a_socket(&info)),
        SocketAccess::Unsearchable(dir) => out.push(format!(
            "directory {} ({}) cannot be searched by handoff's uid {}: connecting to {} needs \
             search (x) on every directory above it; allow handoff's user or group through it",
            dir.path.display(),
            dir.describe(),
            me.uid,
            path.display()
        )),
        SocketAccess::NotADirectory(info) => out.push(format!(
            "{} is {}, not a directory",
            info.path.display(),
            info.kind
        )),
        SocketAccess::NotWritable(info) => {
            owner_and_me(&info, &me, out);
            let why = if me.uid == info.uid {
                "it owns the socket and the owner bits lack w".to_owned()
            } else if me.in_group(info.gid) {
                format!("it is in group {} and the group bits lack w", info.gid)
            } else {
                format!(
                    "it is neither the owner nor in group {}, and the other bits lack w",
                    info.gid
                )
            };
            out.push(format!(
                "uid {} may not write to the socket ({why}): make the app create it with a \
                 group of handoff's and mode 660 (php-fpm: listen.group, listen.mode)",
                me.uid
            ));
        }
        SocketAccess::Allowed(info) => {
            owner_and_me(&info, &me, out);
            out.push(
                "the mode bits of the socket and its directories allow handoff: the denial \
                 comes from an ACL or a security module"
                    .to_owned(),
            );
        }
        other => access_other(path, &other, out),
    }
    if std::fs::read_to_string("/sys/fs/selinux/enforce").is_ok_and(|m| m.trim() == "1") {
        out.push("SELinux is enforcing: check the socket's label too".into());
    }
}

/// The socket's owner and mode, and who handoff is.
fn owner_and_me(info: &FileInfo, me: &Identity, out: &mut dyn Sink) {
    out.push(format!(
        "socket owner uid {} gid {}, mode {:o}",
        info.uid, info.gid, info.mode
    ));
    out.push(format!("handoff runs as {me}"));
}

/// A stale socket, a file that is not a socket, or a socket that listens again by now.
fn refused_socket(path: &Path, out: &mut dyn Sink) {
    match FileInfo::stat(path) {
        Ok(info) if info.kind != Kind::Socket => out.push(not_a_socket(&info)),
        Ok(info) => {
            let listening = sock_diag::unix_listeners()
                .ok()
                .is_some_and(|all| all.iter().any(|l| l.file == Some(info.inode)));
            if listening {
                out.push("the socket listens again now: the app was restarting".into());
            } else {
                out.push(
                    "the socket file exists but nothing listens on it: the app stopped without \
                     removing it"
                        .into(),
                );
            }
        }
        Err(_) => {}
    }
}

fn full_backlog(path: &Path, out: &mut dyn Sink) {
    let Ok(info) = FileInfo::stat(path) else {
        return;
    };
    let Ok(listeners) = sock_diag::unix_listeners() else {
        return;
    };
    let Some(listener) = listeners.iter().find(|l| l.file == Some(info.inode)) else {
        return;
    };
    let owner = socket_owners(Path::new("/proc"), &[listener.inode], OWNER_BUDGET);
    let by = owner
        .by_inode
        .get(&listener.inode)
        .map(|p| format!(" by {} (pid {})", p.comm, p.pid))
        .unwrap_or_default();
    out.push(format!(
        "the accept queue holds {} of {} connections: the app{by} is not calling accept() \
         fast enough",
        listener.queued, listener.backlog
    ));
}

fn access_other(path: &Path, access: &SocketAccess, out: &mut dyn Sink) {
    match access {
        SocketAccess::MissingDirectory(dir) => {
            out.push(format!("directory {} does not exist", dir.display()))
        }
        SocketAccess::Missing => out.push(format!("{} no longer exists", path.display())),
        SocketAccess::Unknown(at, kind) => {
            out.push(format!("{} cannot be looked at: {kind}", at.display()))
        }
        _ => {}
    }
}

/// Which process serves a unix socket that hung up on a new connection without a byte.
///
/// The classic case is php-fpm: it speaks FastCGI, and an HTTP request makes it close at
/// once, so there are no first bytes to recognise it by. The listener's inode leads to the
/// process holding it; without permission to look (handoff not root), the socket's name is
/// the only clue.
fn socket_server(path: &Path, out: &mut dyn Sink) {
    let listener = FileInfo::stat(path).ok().and_then(|info| {
        sock_diag::unix_listeners()
            .ok()?
            .into_iter()
            .find(|l| l.file == Some(info.inode))
    });
    let named_php = {
        let name = path.to_string_lossy().to_ascii_lowercase();
        name.contains("php") || name.contains("fpm")
    };
    server_of(listener.map(|l| l.inode), "the socket", named_php, out);
}

/// Which process listens on the TCP address that hung up on a new connection: php-fpm on
/// 127.0.0.1:9000 is the classic HTTP-to-FastCGI mistake.
fn tcp_server(next_hop: &str, out: &mut dyn Sink) {
    let listener = tcp_listener_of(next_hop);
    server_of(listener.map(|l| l.inode), "the address", false, out);
}

/// Names the process holding the listener `inode`; php-fpm is named as the protocol it
/// speaks. Without permission to look, `named_php` (the socket's name) is the only clue.
fn server_of(inode: Option<u64>, what: &str, named_php: bool, out: &mut dyn Sink) {
    const FASTCGI: &str = "speaks FastCGI, not HTTP: nginx needs fastcgi_pass for it; \
        handoff cannot proxy FastCGI";
    let owner = inode.and_then(|inode| {
        socket_owners(Path::new("/proc"), &[inode], OWNER_BUDGET)
            .by_inode
            .remove(&inode)
    });
    match owner {
        Some(p) if p.comm.starts_with("php") => {
            out.push(format!("{what} belongs to php-fpm, which {FASTCGI}"));
            out.push(format!("served by {} (pid {})", p.comm, p.pid));
        }
        Some(p) => out.push(format!("{what} is served by {} (pid {})", p.comm, p.pid)),
        None if named_php => out.push(format!(
            "{what} belongs to php-fpm, which {FASTCGI} (judging by the socket's name)"
        )),
        None => {}
    }
}

/// The listener that takes connections to `next_hop` (its own address, or every address).
fn tcp_listener_of(next_hop: &str) -> Option<TcpListener> {
    let (ip, port) = tcp_target(next_hop)?;
    sock_diag::tcp_listeners().ok()?.into_iter().find(|l| {
        l.addr.port() == port
            && ip.is_none_or(|ip| l.addr.ip() == ip || l.addr.ip().is_unspecified())
    })
}

/// `127.0.0.1:3000`, `[::1]:3000` or `localhost:3000` (either loopback: `None`).
fn tcp_target(next_hop: &str) -> Option<(Option<IpAddr>, u16)> {
    if let Ok(addr) = next_hop.parse::<SocketAddr>() {
        return Some((Some(addr.ip()), addr.port()));
    }
    let (host, port) = next_hop.rsplit_once(':')?;
    (host.eq_ignore_ascii_case("localhost")).then_some(())?;
    Some((None, port.parse().ok()?))
}

/// Is something listening on the refused port on another address, or is the app on a
/// neighbouring port (3001 for 3000, 8000 for 8080)?
fn refused_port(next_hop: &str, out: &mut dyn Sink) {
    let Some((_, port)) = tcp_target(next_hop) else {
        return;
    };
    let listeners = match sock_diag::tcp_listeners() {
        Ok(listeners) => listeners,
        Err(e) => return out.push(format!("the listening sockets could not be listed: {e}")),
    };
    let mut elsewhere: Vec<String> = listeners
        .iter()
        .filter(|l| l.addr.port() == port)
        .map(|l| ip_text(l.addr.ip()))
        .collect();
    elsewhere.sort();
    elsewhere.dedup();
    if elsewhere.is_empty() {
        out.push(format!(
            "nothing listens on port {port} on any local address"
        ));
    } else {
        out.push(format!(
            "port {port} listens on {} instead",
            elsewhere.join(", ")
        ));
    }
    // handoff's own listeners are near by design (8080 in front of 8000): never name them.
    let own = held_sockets(Path::new("/proc/self"));
    let near = near_listeners(port, &listeners, &own);
    if near.is_empty() {
        return;
    }
    let inodes: Vec<u64> = near.iter().map(|l| l.inode).collect();
    let owners = socket_owners(Path::new("/proc"), &inodes, OWNER_BUDGET);
    let named: Vec<String> = near
        .iter()
        .map(|l| {
            let who = match owners.by_inode.get(&l.inode) {
                Some(p) => format!(" ({}, pid {})", p.comm, p.pid),
                None => uid_note(Some(l.uid)),
            };
            format!("{}{who}", l.addr)
        })
        .collect();
    out.push(format!(
        "listening on nearby ports: {}: is the app configured for one of those?",
        named.join(", ")
    ));
}

/// Listeners on a port "near" `port`: within 10, or differing in one decimal digit (8000
/// for 8080), closest first, without `own` inodes and duplicates of one port.
pub fn near_listeners<'a>(
    port: u16,
    listeners: &'a [TcpListener],
    own: &[u64],
) -> Vec<&'a TcpListener> {
    let mut near: Vec<&TcpListener> = listeners
        .iter()
        .filter(|l| l.addr.port() != port && !own.contains(&l.inode))
        .filter(|l| is_near(port, l.addr.port()))
        .collect();
    near.sort_by_key(|l| {
        (
            l.addr.port().abs_diff(port),
            l.addr.port(),
            l.addr.is_ipv6(),
        )
    });
    near.dedup_by_key(|l| l.addr.port());
    near.truncate(NEAR_MAX);
    near
}

fn is_near(a: u16, b: u16) -> bool {
    if a.abs_diff(b) <= 10 {
        return true;
    }
    let (a, b) = (a.to_string(), b.to_string());
    a.len() == b.len() && a.bytes().zip(b.bytes()).filter(|(x, y)| x != y).count() == 1
}

/// The accept queue of a TCP listener that did not accept in time.
fn tcp_queue(next_hop: &str, out: &mut dyn Sink) {
    if let Some(l) = tcp_listener_of(next_hop) {
        if l.queued >= l.backlog {
            out.push(format!(
                "the accept queue of {} holds {} of {} connections: the app is not calling \
                 accept() (stalled event loop, every worker busy)",
                l.addr, l.queued, l.backlog
            ));
        } else {
            out.push(format!(
                "{} listens with {} of {} connections queued: the queue is not full, so look \
                 for packet loss or a firewall dropping SYNs",
                l.addr, l.queued, l.backlog
            ));
        }
    }
}

/// handoff's own descriptors, when it ran out of them (or the system did).
fn descriptors(errno: Option<i32>, out: &mut dyn Sink) {
    if errno == Some(libc::ENFILE) {
        if let Ok(nr) = std::fs::read_to_string("/proc/sys/fs/file-nr") {
            let cols: Vec<&str> = nr.split_whitespace().collect();
            if let [open, _, max] = cols[..] {
                out.push(format!(
                    "the system has {open} of fs.file-max {max} file descriptors open: the \
                     whole host is out of them, not only handoff"
                ));
            }
        }
        return;
    }
    let usage = fd_usage(Path::new("/proc/self"));
    let n = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    out.push(format!(
        "handoff has {} file descriptors open, its limit (RLIMIT_NOFILE) is {} (hard {}): \
         raise LimitNOFILE= in its unit or ulimit -n, or look for connections piling up",
        n(usage.open),
        n(usage.soft),
        usage
            .hard
            .map_or_else(|| "unlimited".to_owned(), |v| v.to_string()),
    ));
}

fn listener_of<'a>(path: &Path, listeners: &'a [UnixListener]) -> Option<&'a UnixListener> {
    let info = FileInfo::stat(path).ok()?;
    listeners.iter().find(|l| l.file == Some(info.inode))
}

fn uid_note(uid: Option<u32>) -> String {
    uid.map(|u| format!(" (a process of uid {u})"))
        .unwrap_or_default()
}

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}

#[cfg(test)]
mod tests;
