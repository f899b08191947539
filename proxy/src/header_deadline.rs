//! A deadline on reading each request header from a client: the slowloris defence pingora
//! 0.9.1 lacks.
//!
//! pingora times each downstream read on its own (60 s), so a client that trickles one
//! header byte every few seconds holds a connection and a task forever. [`DeadlineApp`]
//! wraps every accepted connection in a [`DeadlineStream`] before pingora sees it. The
//! stream enforces `[server] client_header_timeout` while a request header is being read,
//! and stands aside otherwise:
//!
//! - the first request's clock starts when the connection is first found waiting for
//!   bytes, so a client that connects and says nothing is closed too;
//! - a later request's clock starts with its first byte, so an idle keep-alive connection
//!   (nginx's upstream pool) is left to pingora's keep-alive timeout;
//! - the service tells the stream when a header is complete ([`header_read`]) and when
//!   the response is done ([`request_done`]); bodies and upgraded tunnels are never timed.
//!
//! On the success path this costs one atomic load per read and no timer: a header that
//! arrives in one segment (nginx writes each header at once) never leaves the stream
//! waiting, and only a wait arms the timer. A client that runs out of time is answered
//! `408 Request Timeout` (best effort, one non-blocking write) and closed.
//!
//! Knowing where each header starts and ends also lets the stream report the requests
//! pingora refuses while parsing (a garbage request line, an oversized header, two
//! Content-Lengths), which reach none of the service's hooks: a connection that closes
//! part-way through a header is a [`ClientError::BadHeader`].
//!
//! The wrapper also keeps a client's connection open after a failure handoff answered
//! itself ([`hand_back`]). pingora 0.9.1 closes the downstream connection after any
//! upstream error (its `finish` runs with the upstream attempt's `server_reuse`, false on
//! an error, and `write_error_response` turns keep-alive off, with a TODO saying it should
//! not). Behind nginx that costs a new nginx → handoff connection, a TIME_WAIT socket and a
//! task per failed request, which is when they are least affordable: a failing app gets
//! hit by a storm. handoff's answer is a complete response, so when pingora's own reuse
//! checks pass (the request body was read, nothing was read past it, the client did not ask
//! for a close, no shutdown is under way) the connection goes back to [`DeadlineApp`],
//! which hands it to pingora again as it would after a success.
//!
//! [`header_read`]: DeadlineStream::header_read
//! [`request_done`]: DeadlineStream::request_done

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a client that ran out of time receives before the connection closes.
const TIMEOUT_RESPONSE: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// A client's fault that only the stream sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientError {
    /// No complete request header within `client_header_timeout`.
    HeaderTimeout,
    /// The connection closed part-way through a request header: pingora refused it while
    /// parsing, or the client gave up.
    BadHeader,
}

/// Told of each [`ClientError`], once per connection (counts and logs it).
pub(crate) type OnClientError = Arc<dyn Fn(ClientError) + Send + Sync>;

/// A [`ServerApp`] that puts a [`DeadlineStream`] around each new connection and hands it
/// to `app`.
pub(crate) struct DeadlineApp<A> {
    app: Arc<A>,
    limit: Duration,
    on_client_error: OnClientError,
}

impl<A> DeadlineApp<A> {
    pub(crate) fn new(app: A, limit: Duration, on_client_error: OnClientError) -> Self {
        DeadlineApp {
            app: Arc::new(app),
            limit,
            on_client_error,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for DeadlineApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // pingora's HTTP apps keep a connection for all its requests and return None; a
        // stream handed back for reuse is already wrapped.
        let handback = Arc::new(Handback::default());
        let mut stream = if stream.as_any().is::<DeadlineStream>() {
            stream
        } else {
            Box::new(DeadlineStream::new(
                stream,
                self.limit,
                self.on_client_error.clone(),
                Arc::downgrade(&handback),
            ))
        };
        loop {
            let done = self.app.process_new(stream, shutdown).await;
            // A connection the service kept after answering a failure: the next request.
            match handback.take() {
                Some(kept) => stream = kept,
                None => return done,
            }
        }
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

/// Where [`hand_back`] leaves a connection for [`DeadlineApp`] to serve again. The app's
/// future owns it; the stream points to it weakly, so a stream in the slot is no cycle.
#[derive(Default)]
struct Handback(Mutex<Option<Stream>>);

impl Handback {
    fn put(&self, stream: Stream) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream);
    }

    fn take(&self) -> Option<Stream> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Gives the client's connection back to [`DeadlineApp`] after handoff answered a failure
/// with a complete response (see the module docs); called last in `logging`. pingora's own
/// `finish` decides whether the connection can take another request; if it cannot, it is
/// closed, as pingora would have.
///
/// pingora's `finish` consumes the session, which the hook only borrows, so the client's
/// session is swapped for an empty one that pingora then drops.
pub(crate) async fn hand_back(session: &mut Session) {
    if session.as_downstream().as_http1().is_none() {
        return;
    }
    let Some(handback) = DeadlineStream::of(session.as_downstream().stream())
        .and_then(|stream| stream.handback.upgrade())
    else {
        return;
    };
    let empty = ServerSession::new_http1(Box::new(io::Cursor::new(Vec::new())));
    let answered = std::mem::replace(&mut *session.downstream_session, empty);
    // Pipelining is off in pingora 0.9.1: bytes past the request make `finish` say no.
    if let Ok(Some((stream, None))) = answered
        .finish()
        .await
        .map(|reusable| reusable.map(|r| r.into_parts()))
    {
        handback.put(stream);
    }
}

/// A client connection with a deadline on each request header. See the module docs.
pub(crate) struct DeadlineStream {
    inner: Stream,
    /// Where a connection kept after a failure goes back to [`DeadlineApp`].
    handback: Weak<Handback>,
    /// Even: a request header is being read (or awaited); odd: it is complete. Advanced by
    /// the service through `&self`, read by `poll_read`.
    phase: AtomicU32,
    /// The phase `poll_read` last acted on; a change means a new request.
    seen: u32,
    /// A later request's clock waits for its first byte.
    awaiting_first_byte: bool,
    /// Bytes of the current header have arrived.
    header_bytes: bool,
    /// Whether `timer` runs for the current header.
    armed: bool,
    /// Created at the first wait, then reset for each header that needs it.
    timer: Option<Pin<Box<Sleep>>>,
    expired: bool,
    limit: Duration,
    on_client_error: OnClientError,
}

impl DeadlineStream {
    fn new(
        inner: Stream,
        limit: Duration,
        on_client_error: OnClientError,
        handback: Weak<Handback>,
    ) -> Self {
        DeadlineStream {
            inner,
            handback,
            phase: AtomicU32::new(0),
            seen: 0,
            awaiting_first_byte: false,
            header_bytes: false,
            armed: false,
            timer: None,
            expired: false,
            limit,
            on_client_error,
        }
    }

    /// The stream under a pingora HTTP/1 session, when handoff wrapped it.
    pub(crate) fn of(stream: Option<&Stream>) -> Option<&DeadlineStream> {
        stream?.as_any().downcast_ref::<DeadlineStream>()
    }

    /// The current request's header is complete: reads stop being timed.
    pub(crate) fn header_read(&self) {
        let phase = self.phase.load(Ordering::Relaxed);
        if phase % 2 == 0 {
            self.phase.store(phase + 1, Ordering::Relaxed);
        }
    }

    /// The current request is answered: the next read may begin a new header.
    pub(crate) fn request_done(&self) {
        let phase = self.phase.load(Ordering::Relaxed);
        self.phase
            .store((phase | 1).wrapping_add(1), Ordering::Relaxed);
    }

    /// The deadline passed: answer 408 if the socket takes it at once, and fail the read.
    fn expire(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.expired {
            self.expired = true;
            // Best effort: a 408 in an empty send buffer goes out whole; nothing waits on it.
            let _ = Pin::new(&mut self.inner).poll_write(cx, TIMEOUT_RESPONSE);
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
            (self.on_client_error)(ClientError::HeaderTimeout);
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no complete request header within client_header_timeout ({:?})",
                self.limit
            ),
        )))
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let phase = this.phase.load(Ordering::Relaxed);
        if phase % 2 == 1 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.expired {
            return this.expire(cx);
        }
        if phase != this.seen {
            this.seen = phase;
            this.awaiting_first_byte = true;
            this.header_bytes = false;
            this.armed = false;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.awaiting_first_byte = false;
                this.header_bytes = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending if this.awaiting_first_byte => Poll::Pending,
            Poll::Pending => {
                let limit = this.limit;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if !this.armed {
                    this.armed = true;
                    timer.as_mut().reset(Instant::now() + limit);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => this.expire(cx),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for DeadlineStream {
    fn drop(&mut self) {
        // Bytes read for the header now pending: read while in this (even) phase.
        let phase = self.phase.load(Ordering::Relaxed);
        let partial = phase % 2 == 0 && phase == self.seen && self.header_bytes;
        if partial && !self.expired {
            (self.on_client_error)(ClientError::BadHeader);
        }
    }
}

// The rest of pingora's `IO` is the inner stream's.

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl std::fmt::Debug for DeadlineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineStream")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .field("phase", &self.phase.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
