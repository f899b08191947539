//! Fault upstreams: real sockets that fail in one named way each, so tests, `handoff demo`
//! and `handoff faults` can show every failure reason handoff classifies.
//!
//! # Layout
//! - this file: [`Bind`], [`Mode`] (one per failure, with the reason it should produce) and
//!   [`FaultServer`], which sets the socket up and runs the per-connection behaviour;
//! - `app`: the healthy HTTP/1.1 app behind `ok` and `keepalive-close`;
//! - `tls`: [`TlsIdentity`], test certificates and the acceptor;
//! - `wire`: bounded request parsing shared by the app and the fault modes.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use handoff::faults::{Bind, FaultServer, Mode};
//! let upstream = FaultServer::start(Mode::Reset, "127.0.0.1:0".parse().unwrap()).await?;
//! // point handoff's `address` at upstream.target(); expect Mode::Reset.expected_reason()
//! upstream.shutdown().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use handoff_config::{format_duration, parse_duration};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

mod app;
mod tls;
mod wire;

#[cfg(test)]
mod tests;

pub use app::{fnv64, pattern_bytes};
pub use tls::TlsIdentity;

use app::AppOptions;
use wire::Conn;

/// Where a fault upstream listens: `127.0.0.1:0` or `unix:/path/to.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// A TCP address; port 0 picks a free port.
    Tcp(SocketAddr),
    /// A unix stream socket path.
    Unix(PathBuf),
}

/// One way for an upstream to fail (or not). Labels are kebab-case; see [`Mode::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The healthy HTTP/1.1 app.
    Ok,
    /// Nothing listens: a TCP port bound but not listening, or a stale unix socket file.
    Refuse,
    /// A TCP listener whose full accept queue makes the kernel drop further SYNs.
    ConnectTimeout,
    /// A unix socket path in a fresh directory that does not exist.
    MissingSocket,
    /// A listening unix socket, mode 0600 and owned by root, in a 0755 directory.
    SocketPermission,
    /// A unix listener with a full backlog that never accepts: connect gets EAGAIN.
    BacklogFull,
    /// Reads the request, closes without answering a byte.
    Close,
    /// Sends half a header section (`...Content-Type: text/pl`), then closes.
    CloseMidHeader,
    /// Reads the request, then resets the connection without answering.
    Reset,
    /// Answers with an SSH banner instead of HTTP, then closes.
    Garbage,
    /// Answers with a TLS ServerHello record, as a TLS server would.
    TlsBytes,
    /// Answers with FastCGI records, as php-fpm would.
    FastcgiBytes,
    /// Speaks HTTP/2 only (h2c with prior knowledge, as a gRPC server): sends its SETTINGS,
    /// then a GOAWAY for the HTTP/1.1 request that is not the HTTP/2 preface.
    Http2Only,
    /// A 200 whose header section has this many bytes of `Set-Cookie` (default 96 KiB).
    HugeHeader(usize),
    /// A valid 200 with a header section of this many bytes (default 6 KiB): bigger than
    /// nginx's default 4k `proxy_buffer_size`, within handoff's limit.
    BigHeader(usize),
    /// Reads the request, never answers.
    StallHeader,
    /// Reads the request, then sends a valid header one byte every 100 ms: each read is
    /// quick, the header as a whole never completes in time.
    TrickleHeader,
    /// Sends a header with `Content-Length: 1000` and 10 bytes of body, then stalls.
    StallBody,
    /// Sends a header with `Content-Length: 1000` and 100 bytes of body, then closes.
    CloseMidBody,
    /// Sends a header with `Content-Length: 1000` and 100 bytes of body, then resets.
    ResetMidBody,
    /// Sends a chunked header, then an invalid chunk size.
    BadChunked,
    /// The app answers `503 Service Unavailable` itself (not a handoff failure).
    App503,
    /// Reads the request header, never reads the body: a large upload blocks.
    SlowReader,
    /// Reads the request header, then resets while the client still sends the body.
    RejectBody,
    /// The healthy app, closing keep-alive connections idle for this long (default 1 s).
    KeepAliveClose(Duration),
    /// The healthy app, answering one request per connection with keep-alive and closing
    /// the connection when the next request arrives on it: the keep-alive race on every
    /// reused connection, deterministically.
    StaleKeepalive,
}

/// A running fault upstream. Dropping it stops it (tasks aborted, socket files removed).
#[derive(Debug)]
pub struct FaultServer {
    mode: Mode,
    target: String,
    local_addr: Option<SocketAddr>,
    socket_path: Option<PathBuf>,
    stats: Arc<Stats>,
    accept: Option<JoinHandle<()>>,
    /// Sockets kept open for the server's lifetime: a bound-not-listening port, a
    /// listener that never accepts and the connections filling its queue.
    _held: Vec<Socket>,
    /// Files and directories created here, removed on stop (files first).
    created_files: Vec<PathBuf>,
    created_dirs: Vec<PathBuf>,
}

/// Counters shared with the connection tasks.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) requests: AtomicU64,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

const DEFAULT_HUGE_HEADER: usize = 96 * 1024;
const DEFAULT_BIG_HEADER: usize = 6 * 1024;
const DEFAULT_IDLE: Duration = Duration::from_secs(1);
/// Body length announced by the mid-body modes.
const BODY_LEN: usize = 1000;
/// Receive buffer for `slow-reader` TCP sockets, so an unread upload fills it quickly.
const SLOW_READER_RCVBUF: usize = 4 * 1024;
/// Upper bound on the connections used to fill a queue (it takes one or two on Linux).
const MAX_FILL: usize = 64;

impl FromStr for Bind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Bind::Unix(PathBuf::from(path)));
        }
        s.parse()
            .map(Bind::Tcp)
            .map_err(|_| format!("`{s}` is neither HOST:PORT (an IP) nor unix:/path"))
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bind::Tcp(addr) => write!(f, "{addr}"),
            Bind::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Mode {
    /// Every mode, parametrised ones with their defaults.
    pub const ALL: &'static [Mode] = &[
        Mode::Ok,
        Mode::Refuse,
        Mode::ConnectTimeout,
        Mode::MissingSocket,
        Mode::SocketPermission,
        Mode::BacklogFull,
        Mode::Close,
        Mode::CloseMidHeader,
        Mode::Reset,
        Mode::Garbage,
        Mode::TlsBytes,
        Mode::FastcgiBytes,
        Mode::Http2Only,
        Mode::HugeHeader(DEFAULT_HUGE_HEADER),
        Mode::BigHeader(DEFAULT_BIG_HEADER),
        Mode::StallHeader,
        Mode::TrickleHeader,
        Mode::StallBody,
        Mode::CloseMidBody,
        Mode::ResetMidBody,
        Mode::BadChunked,
        Mode::App503,
        Mode::SlowReader,
        Mode::RejectBody,
        Mode::KeepAliveClose(DEFAULT_IDLE),
        Mode::StaleKeepalive,
    ];

    /// The stable kebab-case label (without a parameter).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::Refuse => "refuse",
            Mode::ConnectTimeout => "connect-timeout",
            Mode::MissingSocket => "missing-socket",
            Mode::SocketPermission => "socket-permission",
            Mode::BacklogFull => "backlog-full",
            Mode::Close => "close",
            Mode::CloseMidHeader => "close-mid-header",
            Mode::Reset => "reset",
            Mode::Garbage => "garbage",
            Mode::TlsBytes => "tls-bytes",
            Mode::FastcgiBytes => "fastcgi-bytes",
            Mode::Http2Only => "http2-only",
            Mode::HugeHeader(_) => "huge-header",
            Mode::BigHeader(_) => "big-header",
            Mode::StallHeader => "stall-header",
            Mode::TrickleHeader => "trickle-header",
            Mode::StallBody => "stall-body",
            Mode::CloseMidBody => "close-mid-body",
            Mode::ResetMidBody => "reset-mid-body",
            Mode::BadChunked => "bad-chunked",
            Mode::App503 => "app-503",
            Mode::SlowReader => "slow-reader",
            Mode::RejectBody => "reject-body",
            Mode::KeepAliveClose(_) => "keepalive-close",
            Mode::StaleKeepalive => "stale-keepalive",
        }
    }

    /// One line for `handoff faults --help` and the demo.
    pub const fn describe(&self) -> &'static str {
        match self {
            Mode::Ok => "a healthy HTTP/1.1 app (keep-alive, chunked, echo, upgrade...)",
            Mode::Refuse => "nothing listens: a bound-but-closed TCP port or a stale socket file",
            Mode::ConnectTimeout => "TCP accept queue full, SYNs dropped: connect() hangs",
            Mode::MissingSocket => "the unix socket path does not exist",
            Mode::SocketPermission => "unix socket owned by root, mode 0600: EACCES for others",
            Mode::BacklogFull => "unix socket backlog full, never accepts: EAGAIN",
            Mode::Close => "reads the request, closes without a byte",
            Mode::CloseMidHeader => "sends half a response header, then closes",
            Mode::Reset => "reads the request, then resets (RST) without a byte",
            Mode::Garbage => "answers with an SSH banner instead of HTTP",
            Mode::TlsBytes => "answers with a TLS record: plain HTTP sent to a TLS port",
            Mode::FastcgiBytes => "answers with FastCGI records: HTTP sent to php-fpm",
            Mode::Http2Only => "speaks HTTP/2 only (h2c, as gRPC): SETTINGS, then GOAWAY",
            Mode::HugeHeader(_) => "a 200 with a header section above handoff's limit (:SIZE)",
            Mode::BigHeader(_) => "a valid 200 with a header above nginx's 4k buffer (:SIZE)",
            Mode::StallHeader => "reads the request, never answers",
            Mode::TrickleHeader => "sends its header a byte every 100 ms: never done in time",
            Mode::StallBody => "sends the header and 10 of 1000 body bytes, then stalls",
            Mode::CloseMidBody => "sends the header and 100 of 1000 body bytes, then closes",
            Mode::ResetMidBody => "sends the header and 100 of 1000 body bytes, then resets",
            Mode::BadChunked => "sends a chunked body with an invalid chunk size",
            Mode::App503 => "the app itself answers 503 (passed through, not a failure)",
            Mode::SlowReader => "never reads the request body: a large upload blocks",
            Mode::RejectBody => "resets while a large request body is still being sent",
            Mode::KeepAliveClose(_) => "the app, closing idle keep-alive connections (:IDLE)",
            Mode::StaleKeepalive => "the app, closing each reused connection as a request arrives",
        }
    }

    /// The handoff reason label this mode should produce; `None` when the request should
    /// succeed (or the app's own status should pass through).
    pub const fn expected_reason(&self) -> Option<&'static str> {
        Some(match self {
            Mode::Ok
            | Mode::BigHeader(_)
            | Mode::App503
            | Mode::KeepAliveClose(_)
            | Mode::StaleKeepalive => return None,
            Mode::Refuse => "connect_refused",
            Mode::ConnectTimeout => "connect_timeout",
            Mode::MissingSocket => "socket_not_found",
            Mode::SocketPermission => "socket_permission_denied",
            Mode::BacklogFull => "socket_backlog_full",
            Mode::Close => "closed_before_response",
            Mode::CloseMidHeader => "closed_mid_header",
            Mode::Reset => "reset_before_response",
            Mode::Garbage | Mode::TlsBytes | Mode::FastcgiBytes | Mode::Http2Only => {
                "invalid_response_header"
            }
            Mode::HugeHeader(_) => "response_header_too_large",
            Mode::StallHeader | Mode::TrickleHeader => "response_header_timeout",
            Mode::StallBody => "body_read_timeout",
            Mode::CloseMidBody => "closed_mid_body",
            Mode::ResetMidBody => "reset_mid_body",
            Mode::BadChunked => "invalid_response_body",
            Mode::SlowReader => "request_write_timeout",
            Mode::RejectBody => "request_write_failed",
        })
    }

    /// Modes that only make sense on a unix socket; given a TCP bind they use a fresh
    /// temporary directory instead.
    const fn unix_only(&self) -> bool {
        matches!(
            self,
            Mode::MissingSocket | Mode::SocketPermission | Mode::BacklogFull
        )
    }

    /// Modes whose TCP connections close with RST (SO_LINGER 0).
    const fn resets(&self) -> bool {
        matches!(self, Mode::Reset | Mode::ResetMidBody | Mode::RejectBody)
    }
}

/// How often `trickle-header` sends a byte.
const TRICKLE_EVERY: Duration = Duration::from_millis(100);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        match *self {
            Mode::HugeHeader(n) if n != DEFAULT_HUGE_HEADER => write!(f, ":{n}"),
            Mode::BigHeader(n) if n != DEFAULT_BIG_HEADER => write!(f, ":{n}"),
            Mode::KeepAliveClose(d) if d != DEFAULT_IDLE => write!(f, ":{}", format_duration(d)),
            _ => Ok(()),
        }
    }
}

impl FromStr for Mode {
    type Err = String;

    /// A label, optionally with a parameter: `huge-header:96KiB`, `big-header:6000`,
    /// `keepalive-close:500ms`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (label, param) = match s.split_once(':') {
            Some((l, p)) => (l, Some(p)),
            None => (s, None),
        };
        let mode = Mode::ALL
            .iter()
            .find(|m| m.as_str() == label)
            .copied()
            .ok_or_else(|| format!("unknown fault mode `{label}`"))?;
        let Some(param) = param else {
            return Ok(mode);
        };
        match mode {
            Mode::HugeHeader(_) => parse_size(param).map(Mode::HugeHeader),
            Mode::BigHeader(_) => parse_size(param).map(Mode::BigHeader),
            Mode::KeepAliveClose(_) => parse_duration(param).map(Mode::KeepAliveClose),
            _ => Err(format!("fault mode `{label}` takes no parameter")),
        }
    }
}

impl FaultServer {
    /// Starts a plain (no TLS) fault upstream. Connect-phase modes set their socket up and
    /// return; the others accept in a background task.
    pub async fn start(mode: Mode, bind: Bind) -> io::Result<FaultServer> {
        Self::start_inner(mode, bind, None).await
    }

    /// Starts a fault upstream whose accepted connections speak TLS with `identity` first
    /// (connect-phase modes behave as with [`FaultServer::start`]).
    pub async fn start_tls(
        mode: Mode,
        bind: Bind,
        identity: TlsIdentity,
    ) -> io::Result<FaultServer> {
        let acceptor = identity.acceptor()?;
        Self::start_inner(mode, bind, Some(acceptor)).await
    }

    /// What to put in handoff's `address`: `127.0.0.1:PORT` or `unix:/path`.
    pub fn target(&self) -> String {
        self.target.clone()
    }

    /// The TCP address, for TCP binds.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The unix socket path, for unix binds.
    pub fn socket_path(&self) -> Option<&Path> {
        self.socket_path.as_deref()
    }

    /// The mode this server runs.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Connections accepted so far (queue fillers not counted).
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::Relaxed)
    }

    /// HTTP request heads read so far.
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }

    /// Stops accepting, closes every connection and removes the files it created.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.accept.take() {
            task.abort();
            let _ = task.await;
        }
        // Drop does the rest.
    }

    async fn start_inner(
        mode: Mode,
        bind: Bind,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<FaultServer> {
        let stats = Arc::new(Stats::default());
        let mut server = FaultServer {
            mode,
            target: String::new(),
            local_addr: None,
            socket_path: None,
            stats: stats.clone(),
            accept: None,
            _held: Vec::new(),
            created_files: Vec::new(),
            created_dirs: Vec::new(),
        };
        // Unix-only modes on a TCP bind get a socket path in a fresh private directory.
        let bind = match bind {
            Bind::Tcp(_) if mode.unix_only() => {
                let dir = fresh_dir()?;
                server.created_dirs.push(dir.clone());
                Bind::Unix(dir.join("app.sock"))
            }
            bind => bind,
        };
        let listener = match (bind, mode) {
            (Bind::Tcp(addr), Mode::Refuse) => {
                // Bound but not listening: the port stays ours, and a SYN gets an RST.
                let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
                socket.bind(&addr.into())?;
                server.set_tcp(local(&socket)?);
                server._held.push(socket);
                None
            }
            (Bind::Unix(path), Mode::Refuse) => {
                // Binding creates the file; closing the listener leaves it behind, stale.
                drop(std::os::unix::net::UnixListener::bind(&path)?);
                server.created_files.push(path.clone());
                server.set_unix(path);
                None
            }
            (Bind::Tcp(addr), Mode::ConnectTimeout) => {
                let socket = tcp_listener_socket(addr, 0, None)?;
                let addr = local(&socket)?;
                server.set_tcp(addr);
                server._held.push(socket);
                let fillers = fill_tcp_accept_queue(server.local_addr.unwrap_or(addr)).await?;
                server._held.extend(fillers);
                None
            }
            (Bind::Unix(_), Mode::ConnectTimeout) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "connect-timeout needs a TCP bind: a full unix backlog fails fast (EAGAIN)",
                ));
            }
            (Bind::Unix(path), Mode::MissingSocket) => {
                if path.exists() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("missing-socket: {} exists", path.display()),
                    ));
                }
                server.set_unix(path);
                None
            }
            (Bind::Unix(path), Mode::BacklogFull) => {
                let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                socket.bind(&SockAddr::unix(&path)?)?;
                server.created_files.push(path.clone());
                socket.listen(0)?;
                server._held.push(socket);
                let fillers = fill_unix_backlog(&path)?;
                server._held.extend(fillers);
                server.set_unix(path);
                None
            }
            (Bind::Unix(path), mode) => {
                let listener = UnixListener::bind(&path)?;
                server.created_files.push(path.clone());
                if mode == Mode::SocketPermission {
                    restrict_to_root(&path)?;
                }
                server.set_unix(path);
                Some(Listener::Unix(listener))
            }
            (Bind::Tcp(addr), mode) => {
                let rcvbuf = (mode == Mode::SlowReader).then_some(SLOW_READER_RCVBUF);
                let socket = tcp_listener_socket(addr, 1024, rcvbuf)?;
                server.set_tcp(local(&socket)?);
                socket.set_nonblocking(true)?;
                Some(Listener::Tcp(TcpListener::from_std(socket.into())?))
            }
        };
        if let Some(listener) = listener {
            server.accept = Some(tokio::spawn(accept_loop(listener, mode, stats, tls)));
        }
        Ok(server)
    }

    fn set_tcp(&mut self, addr: SocketAddr) {
        let dial = dialable(addr);
        self.local_addr = Some(addr);
        self.target = dial.to_string();
    }

    fn set_unix(&mut self, path: PathBuf) {
        self.target = format!("unix:{}", path.display());
        self.socket_path = Some(path);
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        if let Some(task) = self.accept.take() {
            // Aborting the accept task drops its JoinSet, which aborts every connection.
            task.abort();
        }
        for file in &self.created_files {
            let _ = std::fs::remove_file(file);
        }
        for dir in self.created_dirs.iter().rev() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A TCP address a client can dial: unspecified addresses become loopback.
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

fn local(socket: &Socket) -> io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("socket has no IP address"))
}

fn tcp_listener_socket(
    addr: SocketAddr,
    backlog: i32,
    rcvbuf: Option<usize>,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if let Some(size) = rcvbuf {
        // Set before listen so accepted sockets inherit it and advertise a small window.
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}

/// Connects to a listener that never accepts until a connect attempt hangs. With
/// `listen(0)` Linux queues one completed connection and then drops SYNs (the accept
/// queue is full), so later clients sit in SYN_SENT until their own timeout.
async fn fill_tcp_accept_queue(addr: SocketAddr) -> io::Result<Vec<Socket>> {
    let addr = dialable(addr);
    let mut fillers = Vec::new();
    for _ in 0..MAX_FILL {
        // 200 ms is far above a loopback handshake; a hang this long means SYNs are dropped.
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(Socket::from(stream.into_std()?)),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(fillers),
        }
    }
    Err(io::Error::other(
        "connect-timeout: the accept queue never filled (is this Linux?)",
    ))
}

/// Non-blocking connects to a unix listener that never accepts, until one fails with
/// EAGAIN: Linux's answer to a full unix-socket backlog.
fn fill_unix_backlog(path: &Path) -> io::Result<Vec<Socket>> {
    let addr = SockAddr::unix(path)?;
    let mut fillers = Vec::new();
    for _ in 0..MAX_FILL {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        match socket.connect(&addr) {
            Ok(()) => fillers.push(socket),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(fillers),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("backlog-full: the backlog never filled"))
}

/// chmod 0600 and chown root:root, so that any non-root client gets EACCES. Root itself
/// bypasses the check; when we are not root the chown fails and is only logged.
fn restrict_to_root(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    if let Err(e) = std::os::unix::fs::chown(path, Some(0), Some(0)) {
        tracing::warn!(path = %path.display(), error = %e, "socket-permission: could not chown the socket to root; its owner can still connect");
    }
    Ok(())
}

/// A new empty directory (mode 0755) under the system temp dir.
fn fresh_dir() -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "handoff-faults-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

async fn accept_loop(listener: Listener, mode: Mode, stats: Arc<Stats>, tls: Option<TlsAcceptor>) {
    // Connection tasks live in this set: aborting the accept task aborts them all.
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept(&mode) => match accepted {
                Ok(conn) => {
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    tasks.spawn(serve_conn(conn, mode, stats.clone(), tls.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, mode = mode.as_str(), "fault upstream accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// An accepted connection before TLS.
enum Accepted {
    Tcp(TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn accept(&self, mode: &Mode) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                stream.set_nodelay(true)?;
                if mode.resets() {
                    // Closing with SO_LINGER 0 sends RST instead of FIN.
                    SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
                }
                Ok(Accepted::Tcp(stream))
            }
            Listener::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }
}

async fn serve_conn(conn: Accepted, mode: Mode, stats: Arc<Stats>, tls: Option<TlsAcceptor>) {
    let result = match conn {
        Accepted::Tcp(s) => serve_maybe_tls(s, mode, &stats, tls).await,
        Accepted::Unix(s) => serve_maybe_tls(s, mode, &stats, tls).await,
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, mode = mode.as_str(), "fault upstream connection ended");
    }
}

async fn serve_maybe_tls<S>(
    io: S,
    mode: Mode,
    stats: &Stats,
    tls: Option<TlsAcceptor>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tls {
        Some(acceptor) => behave(mode, acceptor.accept(io).await?, stats).await,
        None => behave(mode, io, stats).await,
    }
}

/// What each mode does with an accepted connection.
async fn behave<S>(mode: Mode, io: S, stats: &Stats) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut c = Conn::new(io);
    match mode {
        Mode::Ok | Mode::SocketPermission => app::serve(c, stats, AppOptions::default()).await,
        Mode::KeepAliveClose(idle) => {
            let opts = AppOptions {
                idle: Some(idle),
                ..AppOptions::default()
            };
            app::serve(c, stats, opts).await
        }
        Mode::StaleKeepalive => {
            let opts = AppOptions {
                max_requests: Some(1),
                ..AppOptions::default()
            };
            app::serve(c, stats, opts).await
        }
        // Never accepted from; nothing to do.
        Mode::Refuse | Mode::ConnectTimeout | Mode::MissingSocket | Mode::BacklogFull => Ok(()),
        Mode::Close => {
            read_request(&mut c, stats).await?;
            c.io.shutdown().await
        }
        Mode::CloseMidHeader => {
            read_request(&mut c, stats).await?;
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
                .await?;
            c.io.shutdown().await
        }
        Mode::Reset => {
            // Leaves a byte unread so a unix socket resets too; TCP has SO_LINGER 0.
            c.read_head_leaving_last_byte().await?;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Mode::Garbage => {
            read_request(&mut c, stats).await?;
            c.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await?;
            c.io.shutdown().await
        }
        Mode::TlsBytes => {
            read_request(&mut c, stats).await?;
            c.write_all(&TLS_SERVER_HELLO).await?;
            c.io.shutdown().await
        }
        Mode::FastcgiBytes => {
            read_request(&mut c, stats).await?;
            c.write_all(&fastcgi_response()).await?;
            c.io.shutdown().await
        }
        Mode::Http2Only => {
            // An HTTP/2 server speaks first: its SETTINGS frame is the server preface.
            c.write_all(&H2_SETTINGS).await?;
            read_request(&mut c, stats).await?;
            c.write_all(&H2_GOAWAY_PROTOCOL_ERROR).await?;
            c.io.shutdown().await
        }
        Mode::HugeHeader(size) => {
            read_request(&mut c, stats).await?;
            c.write_all(&header_heavy_response(size, false)).await?;
            c.io.shutdown().await
        }
        Mode::BigHeader(size) => loop {
            let Some(keep) = read_request(&mut c, stats).await? else {
                return Ok(());
            };
            c.write_all(&header_heavy_response(size, keep)).await?;
            if !keep {
                return c.io.shutdown().await;
            }
        },
        Mode::App503 => loop {
            let Some(keep) = read_request(&mut c, stats).await? else {
                return Ok(());
            };
            let body = b"the app is unavailable\n";
            c.write_all(&app::simple(503, "text/plain", body, keep, false))
                .await?;
            if !keep {
                return c.io.shutdown().await;
            }
        },
        Mode::StallHeader => {
            read_request(&mut c, stats).await?;
            c.drain_to_eof().await;
            Ok(())
        }
        Mode::TrickleHeader => {
            read_request(&mut c, stats).await?;
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Trickle: {}\r\n\r\n",
                "t".repeat(600)
            );
            for byte in header.bytes() {
                c.write_all(&[byte]).await?;
                tokio::time::sleep(TRICKLE_EVERY).await;
            }
            Ok(())
        }
        Mode::StallBody => {
            read_request(&mut c, stats).await?;
            c.write_all(&partial_body_response(10)).await?;
            c.drain_to_eof().await;
            Ok(())
        }
        Mode::CloseMidBody => {
            read_request(&mut c, stats).await?;
            c.write_all(&partial_body_response(100)).await?;
            c.io.shutdown().await
        }
        Mode::ResetMidBody => {
            c.read_head_leaving_last_byte().await?;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            c.write_all(&partial_body_response(100)).await?;
            c.io.flush().await
        }
        Mode::BadChunked => {
            read_request(&mut c, stats).await?;
            c.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n",
            )
            .await?;
            // Stay open: the only thing wrong is the chunk size.
            c.drain_to_eof().await;
            Ok(())
        }
        Mode::SlowReader => {
            c.read_head().await?;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await;
            Ok(())
        }
        Mode::RejectBody => {
            c.read_head().await?;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            // Dropped with the body unread (and SO_LINGER 0 on TCP): the sender gets
            // ECONNRESET or EPIPE on its next write.
            Ok(())
        }
    }
}

/// Reads one request head and its body (so that closing sends FIN, not RST: Linux resets
/// a socket closed with unread data). `None` when the peer closed first; otherwise
/// whether the client wants the connection kept. A body behind `Expect: 100-continue` is
/// not waited for.
async fn read_request<S>(c: &mut Conn<S>, stats: &Stats) -> io::Result<Option<bool>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(head) = c.read_head().await? else {
        return Ok(None);
    };
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if !head.expects_continue() {
        c.read_body(&head, &mut |_| {}).await?;
    }
    Ok(Some(head.keep_alive()))
}

/// A 200 with `Set-Cookie` filler making the header section about `size` bytes.
fn header_heavy_response(size: usize, keep: bool) -> Vec<u8> {
    let mut out =
        String::from("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n");
    if !keep {
        out.push_str("Connection: close\r\n");
    }
    out.push_str(&app::filler_headers(size.saturating_sub(out.len() + 2)));
    out.push_str("\r\nok\n");
    out.into_bytes()
}

/// A header announcing [`BODY_LEN`] bytes, followed by only `sent` of them.
fn partial_body_response(sent: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BODY_LEN}\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(&pattern_bytes(sent));
    out
}

/// An empty HTTP/2 SETTINGS frame (length 0, type 4, no flags, stream 0), RFC 9113 §6.5.
const H2_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// An HTTP/2 GOAWAY frame (type 7, stream 0): last stream 0, PROTOCOL_ERROR (1), what an
/// HTTP/2 server answers a connection that did not start with the preface.
const H2_GOAWAY_PROTOCOL_ERROR: [u8; 17] = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// A TLS 1.2 record carrying a ServerHello (TLS_AES_128_GCM_SHA256, no extensions): what
/// a TLS port sends back, give or take, when plain HTTP arrives first.
const TLS_SERVER_HELLO: [u8; 49] = {
    let mut b = [0u8; 49];
    // Record header: handshake (0x16), TLS 1.2, length 44.
    b[0] = 0x16;
    b[1] = 0x03;
    b[2] = 0x03;
    b[4] = 44;
    // Handshake header: ServerHello (2), length 40.
    b[5] = 0x02;
    b[8] = 40;
    // legacy_version 1.2, then 32 bytes of "random".
    b[9] = 0x03;
    b[10] = 0x03;
    let mut i = 0;
    while i < 32 {
        b[11 + i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    // session id length 0 (b[43]), cipher suite 0x1301, compression 0, extensions length 0.
    b[44] = 0x13;
    b[45] = 0x01;
    b
};

/// An FCGI_STDOUT record with a CGI-style response, then FCGI_END_REQUEST: the bytes
/// php-fpm sends on its socket.
fn fastcgi_response() -> Vec<u8> {
    let content: &[u8] =
        b"Status: 200 OK\r\nContent-type: text/html; charset=UTF-8\r\n\r\nhello from php-fpm\n";
    let len = content.len() as u16;
    let padding = (8 - content.len() % 8) % 8;
    // version 1, type 6 (FCGI_STDOUT), request id 1, content length, padding, reserved.
    let mut out = vec![1, 6, 0, 1, (len >> 8) as u8, len as u8, padding as u8, 0];
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, padding));
    // version 1, type 3 (FCGI_END_REQUEST), request id 1, length 8: app status 0, FCGI_REQUEST_COMPLETE.
    out.extend_from_slice(&[1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out
}

/// `96KiB`, `6k`, `1MiB`, `6000`.
fn parse_size(s: &str) -> Result<usize, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, unit) = lower
        .find(|c: char| !c.is_ascii_digit())
        .map_or((lower.as_str(), ""), |i| lower.split_at(i));
    let n: usize = digits.parse().map_err(|_| format!("bad size `{s}`"))?;
    let unit = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("bad size unit in `{s}` (use KiB or MiB)")),
    };
    Ok(n * unit)
}
