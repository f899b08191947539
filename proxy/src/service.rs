//! The pingora `ProxyHttp` service: one instance per `[[upstream]]` listener.
//!
//! Each hook records a fact in [`Ctx`]; failures are handed to `handoff_diag::classify`, and
//! the one annotated response, metric updates, log line and `/failures` entry follow from the
//! classified [`Failure`]. See `docs/architecture.md` for the life cycle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use handoff_diag::{
    classify,
    header::{X_REQUEST_ID, X_REQUEST_ID_TITLED},
    valid_request_id, Annotation, DiagResponse, Exposure, Failure, FailureRecord, Phase, Reason,
    Verdict, HEADER_TOO_LARGE,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, Result};

use crate::ctx::{new_request_id, Ctx, IdleClock};
use crate::header_deadline::{self, DeadlineStream};
use crate::state::Shared;
use crate::upstream::Upstream;

/// The proxy for one upstream.
#[derive(Debug)]
pub struct HandoffProxy {
    upstream: Arc<ArcSwap<Upstream>>,
    shared: Arc<Shared>,
}

// === impl HandoffProxy ===

impl HandoffProxy {
    /// A proxy that forwards to whatever `upstream` currently holds.
    pub fn new(upstream: Arc<ArcSwap<Upstream>>, shared: Arc<Shared>) -> Self {
        HandoffProxy { upstream, shared }
    }

    /// The request's id: nginx's, or the one `request_filter` put in its place.
    fn request_id(session: &Session) -> &str {
        session
            .get_header(&X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Classifies a failed attempt, counts it, and keeps it as the request's latest failure.
    fn note_attempt_failure(&self, session: &Session, ctx: &mut Ctx, e: &Error) -> Option<Reason> {
        let req = session.req_header();
        let evidence = ctx.evidence(
            Self::request_id(session),
            req.method.as_str(),
            req.uri.path_and_query().map_or("/", |p| p.as_str()),
        );
        match classify(e, evidence) {
            Verdict::Upstream(failure) => {
                let reason = failure.reason;
                ctx.upstream.metrics.attempt_failure(reason);
                ctx.failure = Some(failure);
                Some(reason)
            }
            Verdict::ClientAborted => {
                ctx.client_aborted = true;
                None
            }
            Verdict::ClientError => {
                ctx.client_error = true;
                None
            }
        }
    }

    fn log_failure(&self, ctx: &Ctx, failure: &Failure, record: &FailureRecord) {
        let ev = &failure.evidence;
        tracing::error!(
            reason = failure.reason.as_str(),
            status = record.status,
            proxy_status = record.proxy_status,
            upstream = &*ev.upstream,
            next_hop = &*ev.next_hop,
            phase = ev.phase.as_str(),
            errno = ev.errno.map(|e| e.name),
            errno_code = ev.errno.map(|e| e.code),
            timer = ev.timer.map(|t| t.timer.as_str()),
            timer_value_ms = ev.timer.map(|t| t.after.as_millis() as u64),
            attempt = ev.attempt,
            reused = ev.reused,
            idle_ms = ev.idle.map(ms),
            connect_ms = ev.connect.map(ms),
            header_ms = ev.to_header.map(ms),
            elapsed_ms = ms(ev.elapsed),
            request_bytes_sent = ev.request_bytes_sent,
            response_bytes_received = ev.response_bytes_received,
            response_header_bytes = ev.response_header_bytes,
            first_bytes = ev.first_bytes.as_deref(),
            findings = (!ev.findings.is_empty()).then(|| ev.findings.join("; ")),
            request_id = %ev.request_id,
            method = %ev.method,
            path = %ev.path,
            raw_error = %ev.raw_error,
            hint = %record.hint,
            hint_detail = %record.hint_detail,
            nginx_equivalent = %record.nginx_equivalent,
            full_exposure = ctx.full_exposure,
            "upstream handoff failed"
        );
    }
}

#[async_trait]
impl ProxyHttp for HandoffProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.upstream.load_full())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if let Some(stream) = DeadlineStream::of(session.as_downstream().stream()) {
            stream.header_read();
        }
        let keep = session
            .get_header(&X_REQUEST_ID)
            .is_some_and(|v| valid_request_id(v.as_bytes()));
        if !keep {
            // Into the client's request header, so that the upstream request (pingora's copy
            // of it), the answer and the log all read the same one.
            session
                .req_header_mut()
                .insert_header(X_REQUEST_ID_TITLED, new_request_id())?;
        }
        let annotate = self.shared.annotate.load();
        if let Some(token) = annotate.debug_token.as_deref() {
            ctx.full_exposure = session
                .get_header(&annotate.debug_header)
                .is_some_and(|v| v.as_bytes() == token.as_bytes());
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.begin_attempt();
        ctx.upstream.peer().await
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let now = Instant::now();
        ctx.phase = Phase::Request;
        ctx.reused = reused;
        ctx.fd = fd;
        ctx.request_written = Some(now);
        let clock = IdleClock::global();
        if reused {
            ctx.idle = clock.idle_for(fd, now);
            ctx.upstream.metrics.connection_reused();
        } else {
            clock.opened(fd);
            let connect = now.saturating_duration_since(ctx.attempt_start);
            ctx.connect = Some(connect);
            ctx.upstream.metrics.observe_connect(connect);
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        _request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // From here on handoff waits for the response, unless a body is still going out: then
        // a hang-up is the app refusing the upload (`request_write_failed`), not a premature
        // close. `request_body_filter` moves on when the rest of the body is small enough to
        // be in flight already.
        ctx.request_body_length = if session.is_body_empty() {
            Some(0)
        } else {
            session
                .get_header(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        };
        if ctx
            .request_body_remaining()
            .is_some_and(|n| n <= IN_FLIGHT_BYTES)
        {
            ctx.phase = Phase::ResponseHeader;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.request_body_bytes += b.len() as u64;
        }
        let small_rest = ctx
            .request_body_remaining()
            .is_some_and(|n| n <= IN_FLIGHT_BYTES);
        if ctx.phase == Phase::Request && (end_of_stream || small_rest) {
            ctx.phase = Phase::ResponseHeader;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let now = Instant::now();
        ctx.phase = Phase::ResponseHeader;
        let bytes = header_section_bytes(response);
        let settings = &ctx.upstream.settings;
        let metrics = &ctx.upstream.metrics;
        metrics.observe_header_bytes(bytes);
        ctx.header_bytes = Some(bytes);
        if bytes > settings.max_response_header_bytes {
            return Err(Error::explain(
                HEADER_TOO_LARGE,
                "response header larger than max_response_header_bytes",
            )
            .into_up());
        }
        if bytes > settings.nginx_buffer_bytes {
            metrics.header_over_nginx_buffer();
            tracing::warn!(
                upstream = &*ctx.upstream.name,
                response_header_bytes = bytes,
                nginx_buffer_bytes = settings.nginx_buffer_bytes,
                status = response.status.as_u16(),
                "response header larger than nginx's proxy_buffer_size: nginx in front would \
                 answer 502 \"upstream sent too big header\""
            );
        }
        // 1xx headers (100, 103) are followed by the final header; 101 is final for upgrades.
        if !response.status.is_informational() || response.status.as_u16() == 101 {
            ctx.header_at = Some(now);
            ctx.upstream_status = response.status.as_u16();
            ctx.phase = Phase::ResponseBody;
            metrics.observe_header(now.saturating_duration_since(ctx.start));
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if let Some(b) = body {
            ctx.response_body_bytes += b.len() as u64;
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        // Connect failures are final: with one upstream there is nowhere else to go, and
        // hammering an app that refuses connections helps nobody.
        self.note_attempt_failure(session, ctx, &e);
        e
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let reason = if e.esource() == &ErrorSource::Downstream {
            ctx.client_aborted = true;
            None
        } else {
            self.note_attempt_failure(session, ctx, &e)
        };
        e.set_retry(retry_is_safe(session, ctx, reason, client_reused));
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // Errors raised before an attempt (e.g. dns_failed from `upstream_peer`) or on nginx's
        // side have not been classified yet.
        if ctx.failure.is_none() && !ctx.client_aborted && !ctx.client_error {
            self.note_attempt_failure(session, ctx, e);
        }
        // What can be found out on the spot goes into the response, the log and /failures.
        if let Some(failure) = ctx.failure.as_deref_mut() {
            self.shared.prober.investigate(failure).await;
        }
        let Some(failure) = ctx.failure.as_deref() else {
            // nginx went away (nothing to answer) or sent a request that cannot be served.
            let code = if ctx.client_aborted { 0 } else { 400 };
            ctx.client_error |= code == 400;
            if code != 0 && session.response_written().is_none() {
                let _ = session.respond_error(code).await;
            }
            return FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            };
        };
        if session.response_written().is_some() {
            // The status line went to nginx already: closing the connection is how nginx
            // learns the body was cut short.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let annotate = self.shared.annotate.load();
        let exposure = if ctx.full_exposure {
            Exposure::Full
        } else {
            annotate.exposure
        };
        let annotation = Annotation {
            proxy_name: &annotate.proxy_name,
            exposure,
        };
        let accept = session
            .get_header(http::header::ACCEPT)
            .map(|v| v.as_bytes());
        // The evidence already carries the request id (nginx's, or the one generated).
        let response = DiagResponse::for_failure(failure, accept, &annotation);
        let code = response.status.as_u16();
        let mut header = match ResponseHeader::build(response.status, Some(response.headers.len()))
        {
            Ok(h) => h,
            Err(_) => {
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                }
            }
        };
        for (name, value) in response.headers {
            let _ = header.append_header(name, value);
        }
        match write_answer(session, header, response.body).await {
            // pingora wrote `Connection: keep-alive` only if its checks allowed it.
            Ok(()) => ctx.keep_client = session.get_keepalive().is_some(),
            Err(err) => tracing::debug!(error = %err, "could not write the annotated response"),
        }
        ctx.answered = code;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if let Some(stream) = DeadlineStream::of(session.as_downstream().stream()) {
            stream.request_done();
        }
        let now = Instant::now();
        let metrics = &ctx.upstream.metrics;
        let status = if ctx.answered != 0 {
            0
        } else {
            ctx.upstream_status
        };
        metrics.request_done(status);
        if ctx.header_at.is_some() {
            metrics.observe_response(now.saturating_duration_since(ctx.start));
        }
        if ctx.client_aborted {
            metrics.client_abort();
        } else if ctx.client_error {
            metrics.client_error();
        }
        match (e, ctx.failure.take()) {
            (None, _) => {
                // A clean response: the connection goes back to the pool now.
                IdleClock::global().released(ctx.fd, now);
                if self.shared.log_access() {
                    let req = session.req_header();
                    tracing::info!(
                        upstream = &*ctx.upstream.name,
                        status = ctx.upstream_status,
                        method = %req.method,
                        path = %req.uri,
                        request_id = Self::request_id(session),
                        attempts = ctx.attempt,
                        reused = ctx.reused,
                        elapsed_ms = ms(ctx.start.elapsed()),
                        "request"
                    );
                }
            }
            (Some(_), Some(mut failure)) => {
                failure.evidence.elapsed = now.saturating_duration_since(ctx.start);
                metrics.failure(failure.reason);
                let sent = if ctx.answered != 0 {
                    ctx.answered
                } else {
                    ctx.upstream_status
                };
                let record = FailureRecord::new(&failure, sent, std::time::SystemTime::now());
                self.log_failure(ctx, &failure, &record);
                self.shared.recent.push(record);
            }
            (Some(_), None) => {}
        }
        if ctx.keep_client {
            // Boxed: inline, `hand_back`'s future would grow this hook's, which pingora boxes
            // and so copies on every request.
            Box::pin(header_deadline::hand_back(session)).await;
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        // handoff writes its own line per failed handoff, with the evidence.
        true
    }
}

/// How much of a request body can be on its way to the app (socket buffers) without handoff
/// being able to tell whether the app read it. A hang-up with less than this left to send
/// counts as a hang-up before the response, with more as a failed upload.
const IN_FLIGHT_BYTES: u64 = 64 * 1024;

/// Whether a failed attempt may be sent again on a fresh connection.
///
/// Only the keep-alive race qualifies: a pooled connection the app had already given up
/// on, failing on the first attempt before any byte of the response, for a method that is
/// safe to repeat (RFC 9110 §9.2.2), with the whole request body still in pingora's retry
/// buffer. A POST is never replayed: the app may have acted on it.
fn retry_is_safe(session: &Session, ctx: &Ctx, reason: Option<Reason>, reused: bool) -> bool {
    let stale = matches!(
        reason,
        Some(
            Reason::ClosedBeforeResponse | Reason::ResetBeforeResponse | Reason::RequestWriteFailed
        )
    );
    reused
        && stale
        && ctx.attempt == 1
        && session.req_header().method.is_idempotent()
        && !session.as_ref().retry_buffer_truncated()
}

/// Writes handoff's own answer to a failure. Unlike pingora's `write_error_response`, it
/// leaves keep-alive as the request and pingora's checks set it (`Connection: close` when
/// the request body was not read, the client asked for a close, or a shutdown is under
/// way): the answer is complete, so the connection can take another request.
async fn write_answer(session: &mut Session, header: ResponseHeader, body: Bytes) -> Result<()> {
    let downstream = session.as_downstream_mut();
    downstream.write_response_header(Box::new(header)).await?;
    if body.is_empty() {
        downstream.finish_body().await
    } else {
        downstream.write_response_body(body, true).await
    }
}

/// Milliseconds with microsecond precision, for log fields.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Size of a response header section as it came over the wire (status line, fields, CRLFs).
fn header_section_bytes(response: &ResponseHeader) -> usize {
    let fields: usize = response
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    // "HTTP/1.1 200 OK\r\n" plus the final CRLF.
    17 + response.get_reason_phrase().map_or(0, str::len) + fields + 2
}
