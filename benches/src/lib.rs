//! Fixtures shared by handoff's micro-benchmarks (`benches/benches/*.rs`): pingora errors
//! built the way pingora 0.9.1 builds them (as in `handoff-diag`'s classification tests),
//! the evidence the proxy gathers, and an upstream like the default configuration's.
//!
//! The load benchmark is `benches/load/run`; its tuned bare pingora floor is
//! `src/bin/bare.rs`. See `benches/README.md`.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff::ctx::{new_request_id, Ctx, IdleClock};
use handoff::upstream::Upstream;
use handoff_config::{ListenAddress, UpstreamAddress, UpstreamSettings};
use handoff_diag::header::X_REQUEST_ID_TITLED;
use handoff_diag::{classify, Evidence, Failure, Metrics, Phase, Timeouts, Verdict};
use pingora::http::RequestHeader;
use pingora_error::{BError, Error, ErrorType, RetryType};

/// A representative failure, named after the reason it classifies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// `ECONNREFUSED` at connect: nothing listens.
    ConnectRefused,
    /// The app closed the connection before any response byte.
    ClosedBeforeResponse,
    /// pingora's connect timer fired.
    ConnectTimeout,
    /// The app reset the connection mid-body.
    ResetMidBody,
}

impl Case {
    /// Every case, in table order.
    pub const ALL: [Case; 4] = [
        Case::ConnectRefused,
        Case::ClosedBeforeResponse,
        Case::ConnectTimeout,
        Case::ResetMidBody,
    ];

    /// The reason label the case classifies to.
    pub fn label(self) -> &'static str {
        match self {
            Case::ConnectRefused => "connect_refused",
            Case::ClosedBeforeResponse => "closed_before_response",
            Case::ConnectTimeout => "connect_timeout",
            Case::ResetMidBody => "reset_mid_body",
        }
    }

    /// The phase the proxy would have recorded.
    pub fn phase(self) -> Phase {
        match self {
            Case::ConnectRefused | Case::ConnectTimeout => Phase::Connect,
            // Waiting for the header (as diag's tests build it; in `Request` the same EOF
            // classifies as request_write_failed).
            Case::ClosedBeforeResponse => Phase::ResponseHeader,
            Case::ResetMidBody => Phase::ResponseBody,
        }
    }

    /// The error pingora 0.9.1 reports for the case (context strings copied from
    /// `pingora-core-0.9.1`, as `handoff-diag`'s tests do).
    pub fn error(self) -> BError {
        match self {
            Case::ConnectRefused => Error::because(
                ErrorType::ConnectRefused,
                "Fail to connect to 127.0.0.1:3000",
                io::Error::from_raw_os_error(libc_errno::ECONNREFUSED),
            )
            .into_up(),
            Case::ClosedBeforeResponse => {
                let mut e = Error::explain(
                    ErrorType::ConnectionClosed,
                    "while reading response headers, bytes already read: 0",
                );
                e.retry = RetryType::ReusedOnly;
                e.into_up()
            }
            Case::ConnectTimeout => Error::explain(
                ErrorType::ConnectTimedout,
                "timeout 3s connecting to server 127.0.0.1:3000",
            )
            .into_up(),
            Case::ResetMidBody => Error::because(
                ErrorType::ReadError,
                "when reading body",
                io::Error::from_raw_os_error(libc_errno::ECONNRESET),
            )
            .into_up(),
        }
    }

    /// The evidence the proxy hands to `classify` for the case.
    pub fn evidence(self) -> Evidence {
        evidence(self.phase())
    }

    /// The classified failure.
    pub fn failure(self) -> Box<Failure> {
        match classify(&self.error(), self.evidence()) {
            Verdict::Upstream(f) => f,
            other => panic!("{self:?} classified as {other:?}"),
        }
    }
}

/// Linux errno values used by the fixtures (the benches crate does not depend on libc).
mod libc_errno {
    pub(crate) const ECONNREFUSED: i32 = 111;
    pub(crate) const ECONNRESET: i32 = 104;
}

/// Evidence as the proxy gathers it for a request to the default upstream.
pub fn evidence(phase: Phase) -> Evidence {
    Evidence {
        upstream: "app".into(),
        next_hop: "127.0.0.1:3000".into(),
        phase,
        attempt: 1,
        timeouts: Timeouts {
            connect: Duration::from_secs(3),
            header: Duration::from_secs(55),
            read: Duration::from_secs(55),
            write: Duration::from_secs(55),
        },
        request_id: "5f2b0c9a1d3e4f60".into(),
        method: "GET".into(),
        path: "/api/orders?page=2".into(),
        ..Evidence::default()
    }
}

/// An upstream like the default configuration's (`app`, 127.0.0.1:3000) with its own
/// metrics registry.
pub fn upstream() -> Arc<Upstream> {
    let metrics = Metrics::new(&["app"], "bench");
    let settings = UpstreamSettings::new(
        "app",
        ListenAddress::Tcp(([127, 0, 0, 1], 8080).into()),
        UpstreamAddress::Tcp {
            host: "127.0.0.1".into(),
            port: 3000,
        },
    );
    let handles = metrics.upstream("app").expect("registered");
    Arc::new(Upstream::new(settings, handles).expect("a literal address"))
}

/// What the hooks of `proxy/src/service.rs` do with the context on a successful request on
/// a reused upstream connection, minus pingora's own work. With `generated_into`, nginx
/// sent no X-Request-Id (wrk does not; nginx with the snippet does) and handoff writes a new
/// one into that request header. A header reused across calls has the field already, so
/// the insert replaces it: the map never grows here, as it does once in a real request.
pub fn success_path(up: &Arc<Upstream>, generated_into: Option<&mut RequestHeader>) -> Ctx {
    let clock = IdleClock::global();
    // new_ctx
    let mut ctx = Ctx::new(up.clone());
    // request_filter
    if let Some(request) = generated_into {
        request
            .insert_header(X_REQUEST_ID_TITLED, new_request_id())
            .expect("a valid header");
    }
    // upstream_peer (without the peer clone, pingora's type)
    ctx.begin_attempt();
    // connected_to_upstream, reused
    let now = Instant::now();
    ctx.phase = Phase::Request;
    ctx.reused = true;
    ctx.fd = 42;
    ctx.request_written = Some(now);
    ctx.idle = clock.idle_for(42, now);
    ctx.upstream.metrics.connection_reused();
    // upstream_response_filter
    let now = Instant::now();
    ctx.phase = Phase::ResponseHeader;
    ctx.upstream.metrics.observe_header_bytes(117);
    ctx.header_bytes = Some(117);
    ctx.header_at = Some(now);
    ctx.upstream_status = 200;
    ctx.phase = Phase::ResponseBody;
    ctx.upstream
        .metrics
        .observe_header(now.saturating_duration_since(ctx.start));
    // upstream_response_body_filter
    ctx.response_body_bytes += 20;
    // logging
    let now = Instant::now();
    ctx.upstream.metrics.request_done(ctx.upstream_status);
    ctx.upstream
        .metrics
        .observe_response(now.saturating_duration_since(ctx.start));
    clock.released(ctx.fd, now);
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_classifies_to_its_label() {
        for case in Case::ALL {
            assert_eq!(case.failure().reason.as_str(), case.label(), "{case:?}");
        }
    }

    #[test]
    fn upstream_builds() {
        assert_eq!(&*upstream().name, "app");
    }
}
