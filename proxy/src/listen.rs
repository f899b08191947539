//! handoff's listening services: pingora's listener (its `Listener` type and its accept,
//! which fills the socket digest) run by an accept loop of handoff's own, one small task per
//! connection.
//!
//! pingora's own listening service runs each connection in a task whose future also holds
//! the TLS handshake of the accept (its `UninitializedStream::handshake`, inline whether the
//! listener does TLS or not) and a 60 s timer around it: some 8 KiB per connection for the
//! connection's whole life, idle ones included, and a timer per accept. handoff's listeners
//! are plain TCP or unix sockets, so a connection's task here holds only the app's future.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use handoff_config::ListenAddress;
use pingora::apps::ServerApp;
use pingora::protocols::l4::listener::Listener;
use pingora::protocols::Stream;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;

/// The accept queue of every listener: pingora's own choice (the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: i32 = 65535;
/// After `accept` fails for want of file descriptors, wait this long before the next one
/// (it would fail again at once, and spin).
const OUT_OF_FDS_PAUSE: Duration = Duration::from_millis(100);

/// One listener and the app that serves its connections.
#[derive(Debug)]
pub struct Listening<A> {
    name: String,
    listen: ListenAddress,
    app: Arc<A>,
    threads: Option<usize>,
}

impl<A: ServerApp + Send + Sync + 'static> Listening<A> {
    /// A service named `name` serving `app` on `listen` (bound when the service starts).
    pub fn new(name: impl Into<String>, listen: ListenAddress, app: A) -> Self {
        Listening {
            name: name.into(),
            listen,
            app: Arc::new(app),
            threads: None,
        }
    }

    /// Runs the service on `threads` worker threads instead of `[server] threads`.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for Listening<A> {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let listener = match bind(&self.listen) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listen = %self.listen, error = %e, "cannot listen");
                return;
            }
        };
        let mut out_of_fds_logged: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok(mut stream) => {
                    // Small writes (a response head) go out at once.
                    let _ = stream.set_nodelay();
                    let app = self.app.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        let mut next: Option<Stream> = Some(Box::new(stream));
                        while let Some(stream) = next.take() {
                            next = app.process_new(stream, &shutdown).await;
                        }
                    });
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // New clients wait in the accept queue until descriptors are free.
                    if out_of_fds_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        out_of_fds_logged = Some(Instant::now());
                        tracing::error!(
                            listen = %self.listen,
                            error = %e,
                            "handoff is out of file descriptors: new connections wait in the \
                             accept queue (raise LimitNOFILE / ulimit -n)"
                        );
                    }
                    tokio::time::sleep(OUT_OF_FDS_PAUSE).await;
                }
                // A connection reset before it was accepted, and the like: the next one.
                Err(e) => tracing::debug!(listen = %self.listen, error = %e, "accept failed"),
            }
        }
        self.app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn threads(&self) -> Option<usize> {
        self.threads
    }
}

/// Binds `listen`: a TCP socket with `SO_REUSEADDR`, or a unix socket (a stale file at the
/// path is removed first, and the socket is made `0666`: nginx runs as another user).
fn bind(listen: &ListenAddress) -> io::Result<Listener> {
    use socket2::{Domain, Socket, Type};
    match listen {
        ListenAddress::Tcp(addr) => {
            let socket = Socket::new(Domain::for_address(*addr), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.bind(&(*addr).into())?;
            socket.listen(BACKLOG)?;
            socket.set_nonblocking(true)?;
            Ok(tokio::net::TcpListener::from_std(socket.into())?.into())
        }
        ListenAddress::Unix(path) => {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            socket.bind(&socket2::SockAddr::unix(path)?)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
            socket.listen(BACKLOG)?;
            socket.set_nonblocking(true)?;
            let std: std::os::unix::net::UnixListener = socket.into();
            Ok(tokio::net::UnixListener::from_std(std)?.into())
        }
    }
}
