//! The life of one client connection: handoff's own HTTP/1 keep-alive loop on pingora-core.
//!
//! pingora gives the connection (its listener, TLS, graceful shutdown); everything after
//! the accept is here, in the order a request meets it:
//!
//! 1. **read** (`read`): the request head, within `client_header_timeout` from its first
//!    byte (from the accept, for the first request), after at most `keepalive_timeout` of
//!    idleness, and within `max_request_header_bytes`; refusals answered and closed;
//! 2. **attempt** (`attempt`): an idle pooled connection or a new one, the request head
//!    written anew and the body streamed, the response head awaited within `header_timeout`
//!    of the request being written; the keep-alive race retried once where that is safe;
//! 3. **respond** (`respond`): the response head relayed and its body streamed, or
//!    handoff's own answer to a failure;
//! 4. **reuse**: the upstream connection back to its pool, and the client connection on to
//!    its next request (already buffered, if it was pipelined) or closed.
//!
//! Upgrades (WebSocket) leave the loop for a tunnel (`tunnel`). Diagnostics are not part of
//! the loop: it calls its [`Hooks`] at the points the life cycle passes them, with the
//! [`Progress`] it keeps for its own decisions, and the hooks decide what the operator sees.
//! `benches/src/bin/bare-core.rs` runs the same loop with hooks that do nothing: the floor
//! handoff's diagnostics are measured against.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use handoff_config::ServerSettings;
use handoff_diag::{DiagResponse, Phase};
use handoff_http1::{Field, Limits, RequestHead, ResponseHead};
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora::Error;

use crate::upstream::Upstream;

mod attempt;
pub(crate) mod io;
pub(crate) mod read;
mod respond;
mod tunnel;

use io::{Buffer, Timer};
use read::{Client, Head, CLIENT_READ};

/// What the loop knows about the request in flight, kept for its own decisions (retries,
/// phases) and read by the hooks as evidence.
#[derive(Debug, Clone)]
pub struct Progress {
    /// When the request head had been read.
    pub start: Instant,
    /// Where the request is now.
    pub phase: Phase,
    /// Attempt number, 1-based once the first attempt began.
    pub attempt: u32,
    /// When the current attempt began.
    pub attempt_start: Instant,
    /// The current attempt uses a pooled keep-alive connection.
    pub reused: bool,
    /// How long that pooled connection had been idle.
    pub idle: Option<Duration>,
    /// How long the connect took (new connections only).
    pub connect: Option<Duration>,
    /// When the request (head, and body if any) had been written upstream.
    pub request_written: Option<Instant>,
    /// When the final response head was complete.
    pub header_at: Option<Instant>,
    /// Size of the final response head, in bytes.
    pub header_bytes: Option<usize>,
    /// The upstream's status, 0 before a final head.
    pub status: u16,
    /// Request body bytes forwarded upstream.
    pub request_body_bytes: u64,
    /// The request body's length when known (0 without a body).
    pub request_body_length: Option<u64>,
    /// Response body bytes received from the upstream.
    pub response_body_bytes: u64,
    /// When the request ended (its response written, or its failure answered); set just
    /// before the `done` hook.
    pub end: Option<Instant>,
}

impl Progress {
    /// The progress of a request whose head was read at `start`.
    pub fn new(start: Instant) -> Progress {
        Progress {
            start,
            phase: Phase::Select,
            attempt: 0,
            attempt_start: start,
            reused: false,
            idle: None,
            connect: None,
            request_written: None,
            header_at: None,
            header_bytes: None,
            status: 0,
            request_body_bytes: 0,
            request_body_length: None,
            response_body_bytes: 0,
            end: None,
        }
    }

    /// Starts an attempt at `now`, resetting what belongs to one attempt.
    pub fn begin_attempt(&mut self, now: Instant) {
        self.attempt += 1;
        if self.attempt > 1 {
            self.attempt_start = now;
        }
        self.phase = Phase::Connect;
        self.reused = false;
        self.idle = None;
        self.connect = None;
        self.request_written = None;
        self.header_at = None;
        self.header_bytes = None;
        self.status = 0;
        self.response_body_bytes = 0;
    }
}

/// The request being served, as the hooks see it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Its parsed head.
    pub head: &'a RequestHead,
    /// The bytes the head's spans point into.
    pub buf: &'a [u8],
}

impl Request<'_> {
    /// The method token.
    pub fn method(&self) -> &[u8] {
        self.head.method.of(self.buf)
    }

    /// The request target.
    pub fn target(&self) -> &[u8] {
        self.head.target.of(self.buf)
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The upstream's response was relayed whole.
    Relayed,
    /// The handoff failed with this (final) error. `answered` is the status handoff sent
    /// itself, or 0 when the status line had already gone out and the connection was cut.
    Failed {
        /// The error of the last attempt.
        error: &'a Error,
        /// What handoff answered (0: nothing, the connection was closed).
        answered: u16,
    },
    /// The client went away before the response was complete.
    ClientAborted,
    /// The client's request could not be served (its body was malformed, cut short, or
    /// too slow): its own fault, answered with this status (0: nothing could be sent).
    ClientError(u16),
}

/// A client fault outside any request (the head never completed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// No complete request head within `client_header_timeout`: answered 408.
    HeaderTimeout,
    /// A head refused as malformed or too large, answered with this status.
    Refused(u16),
    /// The connection closed part-way through a head.
    ClosedMidHeader,
}

/// What the loop tells its observer, at the points a request passes. handoff's
/// implementation (`crate::diagnostics`) turns them into metrics, annotated answers, log
/// lines and `/failures`; the benchmark floor's does nothing.
pub trait Hooks: Send + Sync + 'static {
    /// The observer's record of one request.
    type Record: Send;

    /// A request head was read at `start`.
    fn begin(&self, upstream: &Arc<Upstream>, req: Request<'_>, start: Instant) -> Self::Record;

    /// Whether an end-to-end field of the client's request travels upstream.
    fn forward(&self, _rec: &Self::Record, _req: Request<'_>, _field: &Field) -> bool {
        true
    }

    /// Appends fields of the observer's own to the upstream request head (whole lines).
    fn add_fields(&self, _rec: &Self::Record, _out: &mut Vec<u8>) {}

    /// The connection for an attempt is ready (`Progress::reused` says which kind).
    fn connected(&self, _rec: &mut Self::Record, _p: &Progress) {}

    /// The final response head arrived (already checked against the size limit).
    fn response_head(
        &self,
        _rec: &mut Self::Record,
        _p: &Progress,
        _head: &ResponseHead,
        _buf: &[u8],
    ) {
    }

    /// An attempt failed on the upstream's side (retried or not).
    fn attempt_failed(&self, rec: &mut Self::Record, p: &Progress, req: Request<'_>, e: &Error);

    /// The answer to a failed request, when nothing has been sent to the client yet.
    fn answer(
        &self,
        rec: &mut Self::Record,
        p: &Progress,
        req: Request<'_>,
    ) -> impl Future<Output = DiagResponse> + Send;

    /// The request is over.
    fn done(&self, rec: Self::Record, p: &Progress, req: Request<'_>, outcome: Outcome<'_>);

    /// A client misbehaved before a request began.
    fn client_error(&self, upstream: &Upstream, fault: ClientFault);
}

/// The limits and timers of the client side, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// The request head, in bytes.
    pub head: Limits,
    /// From a head's first byte (the accept, for the first request) to its end.
    pub header_timeout: Duration,
    /// Idle time allowed between two requests.
    pub keepalive_timeout: Duration,
    /// Requests served on one connection (0: no limit).
    pub keepalive_requests: u32,
    /// Longest gap between two reads of a request body.
    pub body_timeout: Duration,
    /// Longest gap between two writes to the client.
    pub send_timeout: Duration,
}

impl From<&ServerSettings> for ClientLimits {
    fn from(s: &ServerSettings) -> Self {
        ClientLimits {
            head: Limits {
                head_bytes: s.max_request_header_bytes,
            },
            header_timeout: s.client_header_timeout,
            keepalive_timeout: s.keepalive_timeout,
            keepalive_requests: s.keepalive_requests,
            body_timeout: s.client_body_timeout,
            send_timeout: s.send_timeout,
        }
    }
}

/// A pingora-core [`ServerApp`] that serves one upstream's listener with the loop above.
#[derive(Debug)]
pub struct ProxyApp<H> {
    upstream: Arc<ArcSwap<Upstream>>,
    hooks: H,
    limits: ClientLimits,
}

impl<H: Hooks> ProxyApp<H> {
    /// The app for the upstream `upstream` holds (swapped on reload), observed by `hooks`.
    pub fn new(upstream: Arc<ArcSwap<Upstream>>, hooks: H, limits: ClientLimits) -> Self {
        ProxyApp {
            upstream,
            hooks,
            limits,
        }
    }
}

#[async_trait]
impl<H: Hooks> ServerApp for ProxyApp<H> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        Conn::new(self, stream, shutdown).serve().await;
        // The loop keeps the connection for all its requests.
        None
    }
}

/// The response buffer: heads grow it up to `max_response_header_bytes`; bodies are read
/// through it this many bytes at a time.
const UPSTREAM_READ: usize = 16 * 1024;

/// One client connection, and what it needs to serve its requests.
struct Conn<'a, H: Hooks> {
    app: &'a ProxyApp<H>,
    shutdown: &'a ShutdownWatch,
    client: Client,
    /// Upstream input: the response head and body bytes.
    response: Buffer,
    resp: ResponseHead,
    /// Heads being written, either way.
    out: Vec<u8>,
    /// The upstream side's waits.
    upstream_timer: Timer,
}

impl<'a, H: Hooks> Conn<'a, H> {
    fn new(app: &'a Arc<ProxyApp<H>>, stream: Stream, shutdown: &'a ShutdownWatch) -> Self {
        Conn {
            app,
            shutdown,
            client: Client::new(stream),
            response: Buffer::new(UPSTREAM_READ),
            resp: ResponseHead::default(),
            out: Vec::new(),
            upstream_timer: Timer::default(),
        }
    }

    /// The keep-alive loop: one request after another until one side is done.
    async fn serve(mut self) {
        let limits = self.app.limits;
        loop {
            let Conn {
                client,
                response,
                out,
                ..
            } = &mut self;
            // An idle connection holds no buffers of its own.
            let head = client
                .read_head(&limits, out, || response.shrink_when_empty())
                .await;
            let at = match head {
                Head::Ready(at) => at,
                Head::Done => return,
                Head::Fault(fault) => {
                    let upstream = self.app.upstream.load();
                    self.app.hooks.client_error(&upstream, fault);
                    return;
                }
            };
            let keep = self.serve_request(at).await;
            self.client.input.release_head();
            self.client.served += 1;
            if !keep {
                io::close(&mut self.client.stream).await;
                return;
            }
        }
    }

    /// Whether the client connection may carry another request after this one, as far as
    /// the server side is concerned (the client's wish and the request body aside).
    fn may_keep(&self) -> bool {
        let limit = self.app.limits.keepalive_requests;
        !*self.shutdown.borrow()
            && !self.app.limits.keepalive_timeout.is_zero()
            && (limit == 0 || self.client.served + 1 < limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;

    impl Hooks for Quiet {
        type Record = ();
        fn begin(&self, _: &Arc<Upstream>, _: Request<'_>, _: Instant) {}
        fn attempt_failed(&self, _: &mut (), _: &Progress, _: Request<'_>, _: &Error) {}
        async fn answer(&self, _: &mut (), _: &Progress, _: Request<'_>) -> DiagResponse {
            DiagResponse::refusal(http::StatusCode::BAD_GATEWAY)
        }
        fn done(&self, _: (), _: &Progress, _: Request<'_>, _: Outcome<'_>) {}
        fn client_error(&self, _: &Upstream, _: ClientFault) {}
    }

    /// Every client connection, idle ones included, holds its whole state machine: the
    /// big, rare steps (pingora's connect, some 8 KiB) are boxed so that it stays small.
    #[tokio::test]
    async fn a_connection_future_is_small() {
        let settings =
            handoff_config::Settings::single("127.0.0.1:1", "127.0.0.1:2", None).unwrap();
        let u = &settings.upstreams[0];
        let metrics = handoff_diag::Metrics::new(&["app"], "test");
        let up = Upstream::new(u.clone(), metrics.upstream("app").unwrap(), 1, 8).unwrap();
        let app = Arc::new(ProxyApp::new(
            Arc::new(ArcSwap::from_pointee(up)),
            Quiet,
            ClientLimits::from(&settings.server),
        ));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(s));
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let serve = Conn::new(&app, stream, &rx).serve();
        let size = std::mem::size_of_val(&serve);
        assert!(size < 4096, "a connection's future is {size} bytes");
    }
}
