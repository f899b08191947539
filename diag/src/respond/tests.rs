use std::time::Duration;

use super::*;
use crate::evidence::{Errno, Evidence};
use crate::reason::{Phase, Reason};
use http::header::CONNECTION;

const JSON: &[u8] = b"application/json";
const HTML: &[u8] = b"text/html,application/xhtml+xml;q=0.9";

fn failure() -> Failure {
    Failure {
        reason: Reason::ConnectRefused,
        evidence: Evidence {
            upstream: "app".into(),
            next_hop: "10.1.2.3:8080".into(),
            phase: Phase::Connect,
            attempt: 1,
            errno: Some(Errno::from_code(libc::ECONNREFUSED)),
            request_id: "req-123".into(),
            method: "GET".into(),
            path: "/run/secret.sock/x".into(),
            first_bytes: Some("\\x16\\x03GARBAGE".into()),
            raw_error: "Upstream ConnectRefused context: Fail to connect to 10.1.2.3:8080".into(),
            findings: vec!["socket owned by alice:www-data mode 0660".into()],
            elapsed: Duration::from_millis(3),
            ..Evidence::default()
        },
    }
}

fn respond(f: &Failure, accept: Option<&[u8]>, exposure: Exposure) -> DiagResponse {
    DiagResponse::for_failure(
        f,
        accept,
        &Annotation {
            proxy_name: "handoff",
            exposure,
        },
    )
}

fn header<'a>(r: &'a DiagResponse, name: &HeaderName) -> Option<&'a str> {
    r.header(name).map(|v| v.to_str().unwrap())
}

fn everything(r: &DiagResponse) -> String {
    let mut s = String::from_utf8_lossy(&r.body).into_owned();
    for (n, v) in &r.headers {
        s.push_str(&format!("\n{n}: {}", v.to_str().unwrap()));
    }
    s
}

/// Headers common to every exposure and format.
fn common(r: &DiagResponse, content_type: &str) {
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(header(r, &CACHE_CONTROL), Some("no-store"));
    // Whether the connection stays open is the proxy's to say (pingora writes it).
    assert_eq!(header(r, &CONNECTION), None);
    assert_eq!(header(r, &X_REQUEST_ID), Some("req-123"));
    assert!(header(r, &CONTENT_TYPE).unwrap().starts_with(content_type));
    assert_eq!(
        header(r, &CONTENT_LENGTH),
        Some(r.body.len().to_string().as_str())
    );
}

/// Exposure none: status, error type, request id, a generic body in each format.
#[test]
fn exposure_none() {
    let f = failure();
    for (accept, ct) in [
        (Some(JSON), "application/problem+json"),
        (Some(HTML), "text/html"),
        (None, "text/plain"),
    ] {
        let r = respond(&f, accept, Exposure::None);
        common(&r, ct);
        assert_eq!(
            header(&r, &PROXY_STATUS),
            Some("handoff; error=connection_refused")
        );
        assert_eq!(header(&r, &X_HANDOFF_REASON), None);
        let all = everything(&r);
        assert!(all.contains("req-123") && all.contains("502"));
        assert!(
            !all.contains("connect_refused") && !all.contains("Upstream refused"),
            "{all}"
        );
    }
    let r = respond(&f, Some(JSON), Exposure::None);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["type"], "about:blank");
    assert_eq!(v["title"], "Bad Gateway");
    assert_eq!(v["status"], 502);
}

/// Exposure reason: the reason, title and generic hint in each format.
#[test]
fn exposure_reason() {
    let f = failure();
    for (accept, ct) in [
        (Some(JSON), "application/problem+json"),
        (Some(HTML), "text/html"),
        (Some(&b"*/*"[..]), "text/plain"),
    ] {
        let r = respond(&f, accept, Exposure::Reason);
        common(&r, ct);
        assert_eq!(
            header(&r, &PROXY_STATUS),
            Some("handoff; error=connection_refused; details=\"connect_refused\"")
        );
        assert_eq!(header(&r, &X_HANDOFF_REASON), Some("connect_refused"));
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains("connect_refused") && body.contains("Upstream refused the connection"),
            "{body}"
        );
        assert!(body.contains("ss -ltnp"), "{body}");
    }
    let r = respond(&f, Some(JSON), Exposure::Reason);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["type"], format!("{PROBLEM_TYPE_BASE}connect_refused"));
    assert_eq!(v["title"], "Upstream refused the connection");
    assert_eq!(v["status"], 502);
    assert_eq!(v["reason"], "connect_refused");
    assert_eq!(v["upstream"], "app");
    assert_eq!(v["request_id"], "req-123");
    assert!(v["hint"].as_str().unwrap().contains("listening"));
    assert!(v["detail"].is_string());
    assert!(v.get("evidence").is_none());
}

/// Exposure full: everything, in each format.
#[test]
fn exposure_full() {
    let f = failure();
    for (accept, ct) in [
        (Some(JSON), "application/problem+json"),
        (Some(HTML), "text/html"),
        (None, "text/plain"),
    ] {
        let r = respond(&f, accept, Exposure::Full);
        common(&r, ct);
        assert_eq!(
            header(&r, &PROXY_STATUS),
            Some("handoff; error=connection_refused; next-hop=\"10.1.2.3:8080\"; details=\"connect_refused; errno=ECONNREFUSED; attempt=1; reused=false\"")
        );
        let body = String::from_utf8_lossy(&r.body);
        for s in [
            "10.1.2.3:8080",
            "ECONNREFUSED",
            "alice",
            "connect() failed (111: Connection refused)",
        ] {
            assert!(body.contains(s), "{s} missing from {body}");
        }
    }
    let r = respond(&f, Some(b"application/problem+json"), Exposure::Full);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let ev = &v["evidence"];
    assert_eq!(ev["next_hop"], "10.1.2.3:8080");
    assert_eq!(ev["errno"]["name"], "ECONNREFUSED");
    assert_eq!(ev["phase"], "connect");
    assert!(ev["nginx_equivalent"]
        .as_str()
        .unwrap()
        .contains("while connecting to upstream"));
    assert!(ev["hint_detail"].as_str().unwrap().contains("ss -ltnp"));
}

/// At exposure reason nothing of the evidence leaks: no address, path, errno, user, bytes.
#[test]
fn reason_exposure_leaks_nothing() {
    let f = failure();
    for accept in [Some(JSON), Some(HTML), None] {
        let all = everything(&respond(&f, accept, Exposure::Reason));
        for secret in [
            "10.1.2.3",
            "/run/secret.sock",
            "ECONNREFUSED",
            "alice",
            "GARBAGE",
            "x16",
            "Fail to connect",
        ] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
    }
}

/// CR/LF and non-ASCII from the network never break a header or the HTML.
#[test]
fn network_values_are_escaped() {
    let mut f = failure();
    f.evidence.request_id = "abc\r\nSet-Cookie: x=1é".into();
    f.evidence.path = "/<script>alert('x')</script>\r\nX: y".into();
    f.evidence.next_hop = "unix:/run/a\"b\\c\r\n.sock".into();
    f.evidence.first_bytes = Some("\r\n<b>é".into());
    f.evidence.raw_error = "bad\r\nInjected: yes".into();
    for exposure in [Exposure::None, Exposure::Reason, Exposure::Full] {
        for accept in [Some(JSON), Some(HTML), None] {
            let r = respond(&f, accept, exposure);
            for (name, v) in &r.headers {
                let s = v
                    .to_str()
                    .unwrap_or_else(|_| panic!("{name} is not visible ASCII"));
                assert!(!s.contains('\r') && !s.contains('\n'), "{name}: {s}");
                assert!(HeaderValue::from_str(s).is_ok());
            }
            let id = header(&r, &X_REQUEST_ID).unwrap();
            assert!(valid_request_id(id.as_bytes()), "{id}");
            let body = String::from_utf8_lossy(&r.body);
            if accept == Some(HTML) {
                assert!(
                    !body.contains("<script>") && !body.contains("<b>"),
                    "{body}"
                );
            }
            if accept.is_none() {
                assert!(!body.contains("\r"), "{body}");
            }
        }
    }
    let r = respond(&f, None, Exposure::Full);
    let ps = header(&r, &PROXY_STATUS).unwrap();
    assert!(
        ps.contains(r#"next-hop="unix:/run/a\"b\\c\\x0d\\x0a.sock""#),
        "{ps}"
    );
}

/// Timeouts answer 504, the backlog 503; status and problem `status` agree.
#[test]
fn statuses() {
    let mut f = failure();
    for (reason, status) in [
        (Reason::ResponseHeaderTimeout, 504),
        (Reason::SocketBacklogFull, 503),
        (Reason::ProxyInternalError, 500),
    ] {
        f.reason = reason;
        let r = respond(&f, Some(JSON), Exposure::Reason);
        assert_eq!(r.status.as_u16(), status);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], status);
    }
}

/// Request ids: 1..=128 visible ASCII characters.
#[test]
fn request_id_validation() {
    assert!(valid_request_id(b"a"));
    assert!(valid_request_id(&[b'x'; 128]));
    assert!(!valid_request_id(&[b'x'; 129]));
    assert!(!valid_request_id(b""));
    assert!(!valid_request_id(b"a b"));
    assert!(!valid_request_id(b"a\r\n"));
    assert!(!valid_request_id("é".as_bytes()));
}

/// A proxy name that is not an sf-token is quoted.
#[test]
fn proxy_name_quoting() {
    let f = failure();
    let r = DiagResponse::for_failure(
        &f,
        None,
        &Annotation {
            proxy_name: "my proxy",
            exposure: Exposure::None,
        },
    );
    assert_eq!(
        header(&r, &PROXY_STATUS),
        Some("\"my proxy\"; error=connection_refused")
    );
}
