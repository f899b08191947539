//! Property tests for the parts of `handoff-diag` that take bytes from the network: request
//! ids, methods, paths, the upstream's first bytes and pingora's error text all reach
//! headers, JSON, HTML and logs. Whatever they hold, rendering never panics, every header
//! value is valid and single-line, the problem+json body parses, the HTML body carries no
//! markup from the input, `escape_bytes`/`unescape` round-trip, and `sniff` and `classify`
//! never panic.
//!
//! Run: `cargo test -p handoff-diag --test properties` (`PROPTEST_CASES=10000` for more).

use std::time::Duration;

use handoff_diag::escape::{escape_bytes, unescape};
use handoff_diag::{
    classify, sniff, Annotation, DiagResponse, Errno, Evidence, Exposure, Failure, Phase, Reason,
    Verdict, DNS_FAILED, HEADER_TOO_LARGE, NO_HEALTHY_UPSTREAM,
};
use pingora_error::{Error, ErrorType};
use proptest::prelude::*;

/// A marker no template of `respond.rs` writes: if it appears in the HTML body, input
/// markup went through unescaped.
const MARKUP: &str = "<zq";

/// Arbitrary text: any Unicode, plus the characters that matter most here.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x7f]{0,64}",
        "[<>&\"'\\\\\r\n\t ;=,]{0,32}",
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
    .prop_map(|s| format!("{s}{MARKUP}{s}"))
}

/// A string as pingora's `buf:` context would quote arbitrary bytes.
fn escaped_bytes() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| escape_bytes(&b))
}

fn reason() -> impl Strategy<Value = Reason> {
    (0..Reason::ALL.len()).prop_map(|i| Reason::ALL[i])
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Select),
        Just(Phase::Connect),
        Just(Phase::Request),
        Just(Phase::ResponseHeader),
        Just(Phase::ResponseBody),
    ]
}

fn exposure() -> impl Strategy<Value = Exposure> {
    prop_oneof![
        Just(Exposure::None),
        Just(Exposure::Reason),
        Just(Exposure::Full)
    ]
}

fn accept() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        Just(Some(b"application/json".to_vec())),
        Just(Some(b"text/html".to_vec())),
        Just(Some(b"text/plain".to_vec())),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Some),
    ]
}

fn error_type() -> impl Strategy<Value = ErrorType> {
    use ErrorType::*;
    proptest::sample::select(vec![
        ConnectTimedout,
        ConnectRefused,
        ConnectNoRoute,
        TLSWantX509Lookup,
        TLSHandshakeFailure,
        TLSHandshakeTimedout,
        InvalidCert,
        HandshakeError,
        ConnectError,
        BindError,
        AcceptError,
        SocketError,
        ConnectProxyFailure,
        InvalidHTTPHeader,
        H1Error,
        H2Error,
        ReadError,
        WriteError,
        ReadTimedout,
        WriteTimedout,
        ConnectionClosed,
        InternalError,
        UnknownError,
        HEADER_TOO_LARGE,
        DNS_FAILED,
        NO_HEALTHY_UPSTREAM,
        Custom("InvalidChunk"),
        Custom("InvalidTrailerEnd"),
        Custom("PrematureBodyEnd"),
    ])
}

/// Context strings: arbitrary, or shaped like the ones classification parses.
fn context() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        escaped_bytes().prop_map(|b| format!("buf: {b}")),
        any::<String>().prop_map(|s| format!("buf: {s}")),
        any::<String>()
            .prop_map(|s| format!("while reading response headers, bytes already read: {s}")),
        (any::<u64>(), any::<String>()).prop_map(|(n, s)| format!("bytes already read: {n}{s}")),
        any::<String>().prop_map(|s| format!("Response header larger than {s}")),
        any::<String>().prop_map(|s| format!("connecting to server {s}, timeout {s}")),
        Just("buf: \\".to_owned()),
        Just("buf: \\x".to_owned()),
        Just("buf: \\x4".to_owned()),
    ]
}

#[allow(clippy::too_many_arguments)]
fn evidence(
    request_id: String,
    method: String,
    path: String,
    first_bytes: Option<String>,
    raw_error: String,
    upstream: String,
    next_hop: String,
    finding: String,
    phase: Phase,
) -> Evidence {
    Evidence {
        upstream: upstream.into(),
        next_hop: next_hop.into(),
        phase,
        attempt: 1,
        errno: Some(Errno::from_code(libc::ECONNREFUSED)),
        request_id,
        method,
        path,
        first_bytes,
        raw_error,
        findings: vec![finding],
        elapsed: Duration::from_millis(3),
        ..Evidence::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the network-supplied fields hold, the annotated response is well formed.
    #[test]
    fn for_failure_is_always_well_formed(
        reason in reason(),
        phase in phase(),
        exposure in exposure(),
        accept in accept(),
        request_id in text(),
        method in text(),
        path in text(),
        first_bytes in proptest::option::of(text()),
        raw_error in text(),
        upstream in text(),
        next_hop in text(),
        finding in text(),
        proxy_name in prop_oneof![Just("handoff".to_owned()), any::<String>()],
    ) {
        let failure = Failure {
            reason,
            evidence: evidence(
                request_id, method, path, first_bytes, raw_error, upstream, next_hop, finding,
                phase,
            ),
        };
        let annotation = Annotation { proxy_name: &proxy_name, exposure };
        let r = DiagResponse::for_failure(&failure, accept.as_deref(), &annotation);

        for (name, value) in &r.headers {
            // HeaderValue forbids CR, LF and NUL by construction; handoff promises more:
            // printable single-line ASCII, which nginx logs as is.
            prop_assert!(
                value.as_bytes().iter().all(|b| (0x20..=0x7e).contains(b)),
                "{name}: {value:?}"
            );
            prop_assert!(http::HeaderValue::from_bytes(value.as_bytes()).is_ok());
        }
        let content_type = r
            .headers
            .iter()
            .find(|(n, _)| n == http::header::CONTENT_TYPE)
            .map(|(_, v)| v.to_str().unwrap().to_owned())
            .unwrap();
        let length = r
            .headers
            .iter()
            .find(|(n, _)| n == http::header::CONTENT_LENGTH)
            .map(|(_, v)| v.to_str().unwrap().parse::<usize>().unwrap());
        prop_assert_eq!(length, Some(r.body.len()));
        if content_type == "application/problem+json" {
            let v: serde_json::Value = serde_json::from_slice(&r.body)
                .map_err(|e| TestCaseError::fail(format!("body is not JSON: {e}")))?;
            prop_assert_eq!(v["status"].as_u64(), Some(u64::from(r.status.as_u16())));
        } else if content_type.starts_with("text/html") {
            let body = std::str::from_utf8(&r.body).expect("HTML body is UTF-8");
            prop_assert!(!body.contains(MARKUP), "unescaped markup in HTML:\n{body}");
        } else {
            prop_assert!(content_type.starts_with("text/plain"));
            // The text body is printable: no terminal escapes or bare CRs from the input.
            prop_assert!(
                r.body.iter().all(|b| *b == b'\n' || (0x20..=0x7e).contains(b)),
                "non-printable byte in text body"
            );
        }
    }

    /// `unescape` inverts `escape_bytes`, and the escaped form is printable ASCII.
    #[test]
    fn escape_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let escaped = escape_bytes(&bytes);
        prop_assert!(escaped.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{escaped:?}");
        prop_assert_eq!(unescape(&escaped), bytes);
    }

    /// `unescape` takes any text (malformed escapes are kept literally) without panicking.
    #[test]
    fn unescape_never_panics(s in any::<String>()) {
        let _ = unescape(&s);
    }

    /// Sniffing the upstream's first bytes never panics, whatever they are.
    #[test]
    fn sniff_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = sniff(&bytes);
    }

    /// Classification of any error type with any context strings (including pingora's
    /// `buf:` quotes of arbitrary upstream bytes) never panics, and the first bytes it
    /// keeps are escaped printable ASCII.
    #[test]
    fn classify_never_panics(
        etype in error_type(),
        outer in context(),
        inner in proptest::option::of(context()),
        errno in proptest::option::of(prop_oneof![0..200i32, Just(libc::ENOENT), Just(libc::EACCES)]),
        phase in phase(),
        downstream in any::<bool>(),
        request_id in text(),
        path in text(),
    ) {
        let mut err = match (errno, inner) {
            (Some(code), _) => {
                Error::because(etype, outer, std::io::Error::from_raw_os_error(code))
            }
            (None, Some(inner)) => {
                Error::because(etype.clone(), outer, Error::explain(etype, inner))
            }
            (None, None) => Error::explain(etype, outer),
        };
        err = if downstream { err.into_down() } else { err.into_up() };
        let ev = evidence(request_id, "GET".into(), path, None, String::new(), "app".into(), "127.0.0.1:1".into(), String::new(), phase);
        if let Verdict::Upstream(failure) = classify(&err, ev) {
            prop_assert!(!downstream, "a downstream error was blamed on the upstream");
            if let Some(first) = &failure.evidence.first_bytes {
                prop_assert!(first.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{first:?}");
                prop_assert!(unescape(first).len() <= handoff_diag::escape::FIRST_BYTES_MAX);
            }
            prop_assert!(failure.evidence.raw_error.len() <= 1024);
            // And the result renders.
            let annotation = Annotation { proxy_name: "handoff", exposure: Exposure::Full };
            let _ = DiagResponse::for_failure(&failure, Some(b"text/html"), &annotation);
        }
    }
}

proptest! {
    /// The word-at-a-time request id check agrees with the plain rule for every input:
    /// 1..=128 bytes, each visible ASCII (0x21..=0x7e).
    #[test]
    fn request_id_check_is_the_plain_rule(
        v in proptest::collection::vec(any::<u8>(), 0..140),
        visible in proptest::collection::vec(0x21u8..=0x7e, 1..129),
        at in any::<usize>(),
        odd in prop_oneof![0u8..=0x20, Just(0x7f), 0x80u8..=0xff],
    ) {
        let plain = |v: &[u8]| (1..=128).contains(&v.len()) && v.iter().all(|b| (0x21..=0x7e).contains(b));
        prop_assert_eq!(handoff_diag::valid_request_id(&v), plain(&v));
        prop_assert!(handoff_diag::valid_request_id(&visible));
        let mut spoiled = visible.clone();
        let i = at % spoiled.len();
        spoiled[i] = odd;
        prop_assert!(!handoff_diag::valid_request_id(&spoiled), "{:?}", spoiled);
    }
}
