//! Fixtures shared by handoff's micro-benchmarks (`benches/benches/*.rs`): pingora errors
//! built the way pingora 0.9.1 builds them (as in `handoff-diag`'s classification tests),
//! the evidence the proxy gathers, and an upstream like the default configuration's.
//!
//! The load benchmark is `benches/load/run`; its tuned bare pingora floor is
//! `src/bin/bare.rs`. See `benches/README.md`.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff::conn::{Hooks, Outcome, Progress, Request};
use handoff::diagnostics::Diagnostics;
use handoff::state::Shared;
use handoff::upstream::Upstream;
use handoff_config::{ListenAddress, UpstreamAddress, UpstreamSettings};
use handoff_diag::{classify, Evidence, Failure, Metrics, Phase, Timeouts, Verdict};
use handoff_http1::{Limits, Method, Parsed, RequestHead, ResponseHead};
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
    Arc::new(Upstream::new(settings, handles, 1, 1024).expect("a literal address"))
}

/// A request head as nginx sends it with `handoff nginx-snippet` (with an
/// `X-Request-Id`), and one without an id (handoff generates one).
pub const REQUEST_WITH_ID: &[u8] = b"GET /api/orders?page=2 HTTP/1.1\r\nHost: app.example\r\nX-Request-Id: 5f2b0c9a1d3e4f60\r\nX-Real-IP: 203.0.113.7\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
/// [`REQUEST_WITH_ID`] without the id.
pub const REQUEST_WITHOUT_ID: &[u8] = b"GET /api/orders?page=2 HTTP/1.1\r\nHost: app.example\r\nX-Real-IP: 203.0.113.7\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
/// A small response head, as an app sends it.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\n\r\n";

/// handoff's diagnostics over a process state like the default configuration's, and its
/// one upstream.
pub fn diagnostics() -> (Diagnostics, Arc<Upstream>) {
    let settings =
        handoff_config::from_str(handoff_config::DEFAULT_CONFIG, "bench").expect("the default");
    let shared = Shared::new(settings).expect("the default builds");
    let upstream = shared.upstreams[0].load_full();
    (Diagnostics::new(shared), upstream)
}

/// `bytes` parsed as a request head.
pub fn request_head(bytes: &[u8]) -> RequestHead {
    let mut head = RequestHead::default();
    assert_eq!(head.parse(bytes, &Limits::default()), Ok(Parsed::Complete));
    head
}

/// `bytes` parsed as a response head to a GET.
pub fn response_head(bytes: &[u8]) -> ResponseHead {
    let mut head = ResponseHead::default();
    assert_eq!(head.parse(bytes, 65536, Method::Get), Ok(Parsed::Complete));
    head
}

/// What handoff's hooks do for one successful request on a reused upstream connection,
/// the proxy loop's own work aside: `begin`, the field filter and added fields of the
/// upstream head (written into `out`), `connected`, `response_head` and `done`.
pub fn success_path(
    diag: &Diagnostics,
    upstream: &Arc<Upstream>,
    head: &RequestHead,
    buf: &[u8],
    resp: &ResponseHead,
    out: &mut Vec<u8>,
) {
    let start = Instant::now();
    let req = Request { head, buf };
    let mut p = Progress::new(start);
    let mut rec = diag.begin(upstream, req, start);
    out.clear();
    for f in head.end_to_end(buf) {
        if diag.forward(&rec, req, f) {
            out.extend_from_slice(f.name.of(buf));
        }
    }
    diag.add_fields(&rec, out);
    p.begin_attempt(start);
    p.phase = Phase::Request;
    p.reused = true;
    p.idle = Some(Duration::from_micros(150));
    diag.connected(&mut rec, &p);
    let now = Instant::now();
    p.header_at = Some(now);
    p.header_bytes = Some(resp.len);
    p.status = resp.status;
    p.phase = Phase::ResponseBody;
    diag.response_head(&mut rec, &p, resp, RESPONSE);
    p.response_body_bytes = 20;
    diag.done(rec, &p, req, Outcome::Relayed);
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

    #[test]
    fn the_success_path_counts_one_request() {
        let (diag, up) = diagnostics();
        let head = request_head(REQUEST_WITHOUT_ID);
        let resp = response_head(RESPONSE);
        let mut out = Vec::new();
        success_path(&diag, &up, &head, REQUEST_WITHOUT_ID, &resp, &mut out);
        assert!(
            out.starts_with(b"Host"),
            "the fields went through the filter"
        );
        assert!(
            out.windows(14).any(|w| w == b"X-Request-Id: "),
            "a generated id was added"
        );
    }
}
