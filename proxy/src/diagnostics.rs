//! handoff's diagnostics on the proxy loop: the [`Hooks`] that turn what the loop saw into
//! what the operator sees.
//!
//! The loop keeps its [`Progress`] (phase, attempt, timings, byte counts) for its own
//! decisions; here those facts become metrics on the success path (a few counter and
//! histogram updates, no allocation), and, when a handoff fails, the classified
//! [`Failure`] with its evidence and findings, the annotated answer, the one log line and
//! the `/failures` entry. See `docs/architecture.md` for the life cycle.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use handoff_diag::{
    classify, valid_request_id, Annotation, DiagResponse, Evidence, Exposure, Failure,
    FailureRecord, Reason, Verdict,
};
use handoff_http1::{Field, FieldKind, ResponseHead};
use pingora::Error;

use crate::conn::{ClientFault, Hooks, Outcome, Progress, Request};
use crate::state::Shared;
use crate::upstream::Upstream;

/// The diagnostics of one process.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    shared: Arc<Shared>,
}

impl Diagnostics {
    /// Diagnostics recording into `shared` (metrics, `/failures`, annotation settings).
    pub fn new(shared: Arc<Shared>) -> Self {
        Diagnostics { shared }
    }
}

/// What diagnostics keep about one request beyond the loop's [`Progress`].
#[derive(Debug)]
pub struct Ctx {
    /// The upstream snapshot this request uses (a reload does not change it mid-request).
    upstream: Arc<Upstream>,
    /// The request's id: nginx's, or one generated here.
    id: RequestId,
    /// The index of the debug header among the request's fields: never forwarded.
    debug_field: Option<usize>,
    /// The request carried the debug header with the right token.
    full_exposure: bool,
    /// The classified failure of the latest failed attempt.
    failure: Option<Box<Failure>>,
}

impl Drop for Ctx {
    /// The request is no longer in flight, however it ended (a panic included).
    fn drop(&mut self) {
        self.upstream.metrics.leave();
    }
}

/// Where a request's id comes from.
#[derive(Debug, Clone, Copy)]
enum RequestId {
    /// nginx's `X-Request-Id`, valid, at this field index.
    Client(usize),
    /// None came (or it was unusable): this one was generated and is sent upstream.
    Generated([u8; 16]),
}

impl Ctx {
    fn request_id<'a>(&'a self, req: &Request<'a>) -> &'a [u8] {
        match &self.id {
            RequestId::Client(i) => req.head.fields[*i].value.of(req.buf),
            RequestId::Generated(id) => id,
        }
    }

    /// The evidence gathered so far, for classification. Only built on failure.
    fn evidence(&self, p: &Progress, req: &Request<'_>) -> Evidence {
        evidence(&self.upstream, self.request_id(req), p, req)
    }

    /// Classifies a failed attempt and keeps it as the request's latest failure.
    fn classify(&mut self, p: &Progress, req: &Request<'_>, e: &Error) -> Option<Reason> {
        match classify(e, self.evidence(p, req)) {
            Verdict::Upstream(failure) => {
                let reason = failure.reason;
                self.failure = Some(failure);
                Some(reason)
            }
            // The loop tells the client's faults apart itself; nothing to keep.
            Verdict::ClientAborted | Verdict::ClientError => None,
        }
    }
}

impl Hooks for Diagnostics {
    type Record = Ctx;

    fn begin(&self, upstream: &Arc<Upstream>, req: Request<'_>, _start: Instant) -> Ctx {
        let head = req.head;
        let id = match head.request_id {
            Some(i) if valid_request_id(head.fields[i].value.of(req.buf)) => RequestId::Client(i),
            _ => RequestId::Generated(new_request_id()),
        };
        // The debug header is an `X-Handoff-*` field unless configured otherwise: a request
        // without one (nearly all) needs no look at the annotation settings.
        let custom = self.shared.debug_outside_namespace.load(Ordering::Relaxed);
        let (debug_field, full_exposure) =
            if custom || head.fields.iter().any(|f| f.kind == FieldKind::Handoff) {
                let annotate = self.shared.annotate.load();
                let name = annotate.debug_header.as_str().as_bytes();
                let debug_field = head.fields.iter().position(|f| {
                    f.name.len() == name.len() && f.name.of(req.buf).eq_ignore_ascii_case(name)
                });
                let full = match (&annotate.debug_token, debug_field) {
                    (Some(token), Some(i)) => head.fields[i].value.of(req.buf) == token.as_bytes(),
                    _ => false,
                };
                (debug_field, full)
            } else {
                (None, false)
            };
        upstream.metrics.enter();
        Ctx {
            upstream: upstream.clone(),
            id,
            debug_field,
            full_exposure,
            failure: None,
        }
    }

    fn forward(&self, rec: &Ctx, req: Request<'_>, field: &Field) -> bool {
        let is = |i: usize| req.head.fields[i].name == field.name;
        // The debug header (token included) never reaches the app; an unusable request id
        // is replaced by the one generated.
        !(rec.debug_field.is_some_and(is)
            || (field.kind == FieldKind::RequestId && matches!(rec.id, RequestId::Generated(_))))
    }

    fn add_fields(&self, rec: &Ctx, out: &mut Vec<u8>) {
        if let RequestId::Generated(id) = &rec.id {
            out.extend_from_slice(b"X-Request-Id: ");
            out.extend_from_slice(id);
            out.extend_from_slice(b"\r\n");
        }
    }

    fn connected(&self, rec: &mut Ctx, p: &Progress) {
        let metrics = &rec.upstream.metrics;
        match p.connect {
            Some(connect) => metrics.observe_connect(connect),
            None => metrics.connection_reused(),
        }
    }

    fn response_head(&self, rec: &mut Ctx, p: &Progress, head: &ResponseHead, _buf: &[u8]) {
        let u = &rec.upstream;
        let bytes = head.len;
        u.metrics.observe_header_bytes(bytes);
        if bytes > u.settings.nginx_buffer_bytes {
            u.metrics.header_over_nginx_buffer();
            tracing::warn!(
                upstream = &*u.name,
                response_header_bytes = bytes,
                nginx_buffer_bytes = u.settings.nginx_buffer_bytes,
                status = head.status,
                "response header larger than nginx's proxy_buffer_size: nginx in front would \
                 answer 502 \"upstream sent too big header\""
            );
        }
        if let Some(at) = p.header_at {
            u.metrics
                .observe_header(at.saturating_duration_since(p.start));
        }
    }

    fn attempt_failed(&self, rec: &mut Ctx, p: &Progress, req: Request<'_>, e: &Error) {
        if let Some(reason) = rec.classify(p, &req, e) {
            rec.upstream.metrics.attempt_failure(reason);
        }
    }

    async fn answer(&self, rec: &mut Ctx, p: &Progress, req: Request<'_>) -> DiagResponse {
        let failure = rec.failure.get_or_insert_with(|| {
            // Every upstream failure is classified as its attempt fails; this is a net.
            let evidence = evidence(&rec.upstream, b"", p, &req);
            Box::new(Failure {
                reason: Reason::Unclassified,
                evidence,
            })
        });
        // What can be found out on the spot goes into the answer, the log and /failures.
        self.shared.prober.investigate(failure).await;
        let annotate = self.shared.annotate.load();
        let exposure = if rec.full_exposure {
            Exposure::Full
        } else {
            annotate.exposure
        };
        let annotation = Annotation {
            proxy_name: &annotate.proxy_name,
            exposure,
        };
        let accept = req
            .head
            .fields
            .iter()
            .find(|f| f.name.of(req.buf).eq_ignore_ascii_case(b"accept"))
            .map(|f| f.value.of(req.buf));
        DiagResponse::for_failure(failure, accept, &annotation)
    }

    fn done(&self, mut rec: Ctx, p: &Progress, req: Request<'_>, outcome: Outcome<'_>) {
        let now = p.end.unwrap_or_else(Instant::now);
        if let Outcome::Failed { error, answered } = outcome {
            // A failure after the response head (the body phase) is classified now; one
            // before it was classified as its attempt failed.
            if rec.failure.is_none() || answered == 0 {
                rec.classify(p, &req, error);
            }
        }
        let metrics = &rec.upstream.metrics;
        let answered = match outcome {
            Outcome::Failed { answered, .. } => answered,
            Outcome::ClientError(status) => status,
            _ => 0,
        };
        metrics.request_done(if answered != 0 { 0 } else { p.status });
        if p.header_at.is_some() {
            metrics.observe_response(now.saturating_duration_since(p.start));
        }
        match outcome {
            Outcome::Relayed => {
                if self.shared.log_access() {
                    tracing::info!(
                        upstream = &*rec.upstream.name,
                        status = p.status,
                        method = %String::from_utf8_lossy(req.method()),
                        path = %String::from_utf8_lossy(req.target()),
                        request_id = %String::from_utf8_lossy(rec.request_id(&req)),
                        attempts = p.attempt,
                        reused = p.reused,
                        elapsed_ms = ms(p.start.elapsed()),
                        "request"
                    );
                }
            }
            Outcome::ClientAborted => metrics.client_abort(),
            Outcome::ClientError(_) => metrics.client_error(),
            Outcome::Failed { answered, .. } => {
                let Some(mut failure) = rec.failure.take() else {
                    return;
                };
                failure.evidence.elapsed = now.saturating_duration_since(p.start);
                let sent = if answered != 0 { answered } else { p.status };
                let record = FailureRecord::new(&failure, sent, SystemTime::now());
                log_failure(&failure, &record, rec.full_exposure);
                self.shared.recent.push(record);
                // Counted last: whoever sees the count can already read the entry and the line.
                metrics.failure(failure.reason);
            }
        }
    }

    fn client_error(&self, upstream: &Upstream, fault: ClientFault) {
        upstream.metrics.client_error();
        match fault {
            ClientFault::HeaderTimeout => tracing::info!(
                upstream = &*upstream.name,
                "a client did not send its request header within client_header_timeout: \
                 answered 408 and closed"
            ),
            ClientFault::Refused(status) => tracing::debug!(
                upstream = &*upstream.name,
                status,
                "a request head was refused"
            ),
            ClientFault::ClosedMidHeader => tracing::debug!(
                upstream = &*upstream.name,
                "a connection closed part-way through a request header"
            ),
        }
    }
}

/// The evidence of a request to `u` so far.
fn evidence(u: &Upstream, request_id: &[u8], p: &Progress, req: &Request<'_>) -> Evidence {
    let since = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(p.start));
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Evidence {
        upstream: u.name.clone(),
        next_hop: u.next_hop.clone(),
        phase: p.phase,
        attempt: p.attempt.max(1),
        reused: p.reused,
        idle: p.idle,
        connect: p.connect,
        to_request_written: since(p.request_written),
        to_header: since(p.header_at),
        elapsed: p.start.elapsed(),
        request_bytes_sent: p.request_body_bytes,
        response_bytes_received: p.response_body_bytes,
        response_header_bytes: p.header_bytes,
        header_limit: u.settings.max_response_header_bytes,
        nginx_buffer_bytes: u.settings.nginx_buffer_bytes,
        timeouts: u.timeouts,
        request_id: lossy(request_id),
        method: lossy(req.method()),
        path: lossy(req.target()),
        ..Evidence::default()
    }
}

/// The one log line of a failed handoff, with every evidence field.
fn log_failure(failure: &Failure, record: &FailureRecord, full_exposure: bool) {
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
        full_exposure,
        "upstream handoff failed"
    );
}

/// Milliseconds with microsecond precision, for log fields.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A new request id: 16 lowercase hex digits from a per-thread xorshift generator.
pub fn new_request_id() -> [u8; 16] {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    let n = STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((n >> ((15 - i) * 4)) & 0xf) as usize];
    }
    digits
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded from the OS per process and mixed per instance.
    RandomState::new().hash_one(std::thread::current().id()) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_hex_digits_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        assert!(a
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
