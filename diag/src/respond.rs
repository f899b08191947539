//! Every response handoff generates itself is decided here.

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

use crate::classify::Failure;
use crate::escape::{self, header_value, push_html, push_sf_string};
use crate::evidence::Evidence;
use crate::header::{PROXY_STATUS, X_HANDOFF_REASON, X_REQUEST_ID};
use crate::hint::Hint;

/// Base of the problem `type` URIs; the anchor is the reason label, matching the
/// `## <label>` sections of `docs/failure-reasons.md`.
pub const PROBLEM_TYPE_BASE: &str =
    "https://github.com/handoff-proxy/handoff/blob/main/docs/failure-reasons.md#";

/// How much of a failure a response reveals (`[annotate] expose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Status, Proxy-Status error type, request id, a generic body.
    None,
    /// Adds the reason, a title and the generic hint; no addresses, paths, errno, users,
    /// upstream bytes or raw errors. The default.
    Reason,
    /// Everything: evidence, hint detail, what nginx would have logged.
    Full,
}

/// How to annotate generated responses.
#[derive(Debug, Clone, Copy)]
pub struct Annotation<'a> {
    /// The Proxy-Status member naming this intermediary (`[annotate] proxy_name`).
    pub proxy_name: &'a str,
    /// How much to reveal for this request.
    pub exposure: Exposure,
}

/// A response handoff writes itself.
#[derive(Debug)]
pub struct DiagResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers, in order; every value is single-line printable ASCII.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Bytes,
}

/// Which body format the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Html,
    Text,
}

/// The problem+json body (RFC 9457).
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<FullEvidence<'a>>,
}

/// The evidence member at full exposure.
#[derive(Serialize)]
struct FullEvidence<'a> {
    #[serde(flatten)]
    evidence: &'a Evidence,
    hint_detail: &'a str,
    nginx_equivalent: String,
}

impl DiagResponse {
    /// The annotated response for a failure; body by Accept: problem+json for JSON clients
    /// (Accept contains "json"), text/html for browsers (Accept contains "text/html"),
    /// text/plain otherwise.
    pub fn for_failure(
        failure: &Failure,
        accept: Option<&[u8]>,
        annotation: &Annotation<'_>,
    ) -> DiagResponse {
        let reason = failure.reason;
        let ev = &failure.evidence;
        let status = StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let exposure = annotation.exposure;
        let request_id = request_id_for_output(&ev.request_id);
        let hint = (exposure == Exposure::Full).then(|| failure.hint());

        let mut proxy_status = String::with_capacity(96);
        push_sf_item(&mut proxy_status, annotation.proxy_name);
        let _ = write!(proxy_status, "; error={}", reason.proxy_status_error());
        match exposure {
            Exposure::None => {}
            Exposure::Reason => {
                proxy_status.push_str("; details=");
                push_sf_string(&mut proxy_status, reason.as_str());
            }
            Exposure::Full => {
                proxy_status.push_str("; next-hop=");
                push_sf_string(&mut proxy_status, &ev.next_hop);
                proxy_status.push_str("; details=");
                push_sf_string(&mut proxy_status, &details_summary(failure));
            }
        }

        let format = negotiate(accept);
        let body = match format {
            Format::Json => json_body(failure, status, &request_id, exposure, hint.as_ref()),
            Format::Html => html_body(failure, status, &request_id, exposure, hint.as_ref()),
            Format::Text => text_body(failure, status, &request_id, exposure, hint.as_ref()),
        };
        let content_type = match format {
            Format::Json => "application/problem+json",
            Format::Html => "text/html; charset=utf-8",
            Format::Text => "text/plain; charset=utf-8",
        };

        let mut headers = Vec::with_capacity(8);
        headers.push((PROXY_STATUS, header_value(&proxy_status)));
        if exposure != Exposure::None {
            headers.push((X_HANDOFF_REASON, HeaderValue::from_static(reason.as_str())));
        }
        if !request_id.is_empty() {
            headers.push((X_REQUEST_ID, header_value(&request_id)));
        }
        headers.push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
        headers.push((CONTENT_TYPE, HeaderValue::from_static(content_type)));
        headers.push((CONTENT_LENGTH, HeaderValue::from(body.len())));
        DiagResponse {
            status,
            headers,
            body: Bytes::from(body),
        }
    }

    /// handoff's answer to a request it refuses on the client's side, before any upstream
    /// is involved: a malformed or oversized head (400, 414, 431), one too slow (408), a
    /// method or coding it does not proxy (405, 501), a version it does not speak (505).
    /// Nothing upstream failed, so it carries no `Proxy-Status` and no reason; the body
    /// says what the status means. The connection closes after it.
    pub fn refusal(status: StatusCode) -> DiagResponse {
        let phrase = status.canonical_reason().unwrap_or("Bad Request");
        let body = format!("{} {phrase}\n", status.as_u16());
        DiagResponse {
            status,
            headers: vec![
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                ),
                (CONTENT_LENGTH, HeaderValue::from(body.len())),
            ],
            body: Bytes::from(body),
        }
    }

    /// The value of a header, for tests and logs.
    pub fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Whether a client-supplied request id can be kept: 1..=128 printable ASCII characters
/// without spaces. Otherwise the proxy generates one.
pub fn valid_request_id(v: &[u8]) -> bool {
    if !(1..=128).contains(&v.len()) {
        return false;
    }
    // Eight bytes at a time (nginx's ids are 32 hex digits, handoff's 16), the rest one by
    // one: this runs on every request.
    let mut words = v.chunks_exact(8);
    let visible =
        words.all(|w| visible_ascii_8(u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))));
    visible && words.remainder().iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Whether every byte of `x` is in 0x21..=0x7e. With the high bits clear (bytes below
/// 0x80), adding 0x5f to a byte sets its high bit exactly when it is at least 0x21, and
/// adding 0x01 exactly when it is at least 0x7f; no sum carries into the next byte.
fn visible_ascii_8(x: u64) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    x & HIGH == 0
        && x.wrapping_add(0x5f5f_5f5f_5f5f_5f5f) & HIGH == HIGH
        && x.wrapping_add(0x0101_0101_0101_0101) & HIGH == 0
}

/// The request id as it may appear in output: kept when valid, otherwise its visible ASCII
/// characters only (the proxy should never pass an invalid one).
fn request_id_for_output(id: &str) -> String {
    if valid_request_id(id.as_bytes()) {
        id.to_owned()
    } else {
        id.bytes()
            .filter(|b| (0x21..=0x7e).contains(b))
            .take(128)
            .map(char::from)
            .collect()
    }
}

/// The short evidence summary in `details` at full exposure.
fn details_summary(f: &Failure) -> String {
    let ev = &f.evidence;
    let mut s = String::from(f.reason.as_str());
    if let Some(e) = ev.errno {
        let _ = write!(s, "; errno={}", e.name);
    }
    if let Some(t) = ev.timer {
        let _ = write!(
            s,
            "; timer={}; after_ms={}",
            t.timer.as_str(),
            t.after.as_millis()
        );
    }
    let _ = write!(s, "; attempt={}; reused={}", ev.attempt, ev.reused);
    if let (true, Some(idle)) = (ev.reused, ev.idle) {
        let _ = write!(s, "; idle_ms={}", idle.as_millis());
    }
    s
}

/// The proxy name as an sf-token when it is one, else as an sf-string.
fn push_sf_item(out: &mut String, name: &str) {
    let b = name.as_bytes();
    let is_token = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'*')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(c));
    if is_token {
        out.push_str(name);
    } else {
        push_sf_string(out, name);
    }
}

fn negotiate(accept: Option<&[u8]>) -> Format {
    let Some(a) = accept else { return Format::Text };
    if contains_ignore_case(a, b"json") {
        Format::Json
    } else if contains_ignore_case(a, b"text/html") {
        Format::Html
    } else {
        Format::Text
    }
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn docs_uri(f: &Failure) -> String {
    format!("{PROBLEM_TYPE_BASE}{}", f.reason.as_str())
}

/// The one-sentence `detail` at exposure `reason`: no addresses, only configured names.
fn generic_detail(f: &Failure) -> String {
    format!(
        "The request to upstream \"{}\" failed while {}: {}.",
        escape::printable(&f.evidence.upstream),
        f.evidence.phase.doing(),
        f.reason.as_str()
    )
}

fn json_body(
    f: &Failure,
    status: StatusCode,
    id: &str,
    exp: Exposure,
    hint: Option<&Hint>,
) -> Vec<u8> {
    let reason_phrase = status.canonical_reason().unwrap_or("Bad Gateway");
    let problem = match exp {
        Exposure::None => Problem {
            type_: "about:blank".to_owned(),
            title: reason_phrase,
            status: status.as_u16(),
            detail: None,
            reason: None,
            upstream: None,
            request_id: id,
            hint: None,
            evidence: None,
        },
        Exposure::Reason | Exposure::Full => Problem {
            type_: docs_uri(f),
            title: f.reason.title(),
            status: status.as_u16(),
            detail: Some(match hint {
                Some(h) => h.detail.clone(),
                None => generic_detail(f),
            }),
            reason: Some(f.reason.as_str()),
            upstream: Some(&f.evidence.upstream),
            request_id: id,
            hint: Some(f.reason.hint_summary()),
            evidence: hint.map(|h| FullEvidence {
                evidence: &f.evidence,
                hint_detail: &h.detail,
                nginx_equivalent: f.nginx_equivalent(),
            }),
        },
    };
    let mut body = serde_json::to_vec(&problem).unwrap_or_default();
    body.push(b'\n');
    body
}

/// The lines of the text and HTML bodies: (label, value), values not yet escaped.
fn fields(
    f: &Failure,
    id: &str,
    exp: Exposure,
    hint: Option<&Hint>,
) -> Vec<(&'static str, String)> {
    let ev = &f.evidence;
    let mut v = Vec::with_capacity(24);
    if exp != Exposure::None {
        v.push(("reason", f.reason.as_str().to_owned()));
        v.push(("upstream", ev.upstream.to_string()));
    }
    if !id.is_empty() {
        v.push(("request id", id.to_owned()));
    }
    if exp == Exposure::None {
        return v;
    }
    v.push(("hint", f.reason.hint_summary().to_owned()));
    let Some(hint) = hint else {
        v.push(("more", docs_uri(f)));
        return v;
    };
    v.push(("detail", hint.detail.clone()));
    v.push(("next hop", ev.next_hop.to_string()));
    v.push(("phase", ev.phase.as_str().to_owned()));
    v.push(("attempt", ev.attempt.to_string()));
    v.push(("reused", ev.reused.to_string()));
    if let Some(d) = ev.idle {
        v.push(("idle", format!("{d:?}")));
    }
    if let Some(e) = ev.errno {
        v.push(("errno", format!("{} ({}: {})", e.name, e.code, e.message())));
    }
    if let Some(t) = ev.timer {
        v.push(("timer", format!("{} = {:?}", t.timer.as_str(), t.after)));
    }
    for (k, d) in [
        ("connect", ev.connect),
        ("request written", ev.to_request_written),
        ("header", ev.to_header),
    ] {
        if let Some(d) = d {
            v.push((k, format!("{d:?}")));
        }
    }
    v.push(("elapsed", format!("{:?}", ev.elapsed)));
    v.push((
        "bytes",
        format!(
            "{} sent, {} received",
            ev.request_bytes_sent, ev.response_bytes_received
        ),
    ));
    if let Some(n) = ev.response_header_bytes {
        v.push((
            "header bytes",
            format!(
                "{n} (limit {}, nginx buffer {})",
                ev.header_limit, ev.nginx_buffer_bytes
            ),
        ));
    }
    if let Some(b) = &ev.first_bytes {
        v.push(("first bytes", b.clone()));
    }
    v.push(("request", format!("{} {}", ev.method, ev.path)));
    for finding in &ev.findings {
        v.push(("found", finding.clone()));
    }
    v.push(("nginx would log", f.nginx_equivalent()));
    v.push(("raw error", ev.raw_error.clone()));
    v.push(("more", docs_uri(f)));
    v
}

fn headline(f: &Failure, status: StatusCode, exp: Exposure) -> String {
    let phrase = status.canonical_reason().unwrap_or("Bad Gateway");
    match exp {
        Exposure::None => format!("{} {phrase}", status.as_u16()),
        _ => format!("{} {phrase}: {}", status.as_u16(), f.reason.title()),
    }
}

fn text_body(
    f: &Failure,
    status: StatusCode,
    id: &str,
    exp: Exposure,
    hint: Option<&Hint>,
) -> Vec<u8> {
    let mut s = headline(f, status, exp);
    s.push('\n');
    for (k, v) in fields(f, id, exp, hint) {
        // printable(): no terminal escapes or line breaks from network bytes.
        let _ = writeln!(s, "{k}: {}", escape::printable(&v));
    }
    s.into_bytes()
}

fn html_body(
    f: &Failure,
    status: StatusCode,
    id: &str,
    exp: Exposure,
    hint: Option<&Hint>,
) -> Vec<u8> {
    let head = headline(f, status, exp);
    let mut s = String::with_capacity(1024);
    s.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    push_html(&mut s, &head);
    s.push_str("</title></head>\n<body>\n<h1>");
    push_html(&mut s, &head);
    s.push_str("</h1>\n<dl>\n");
    for (k, v) in fields(f, id, exp, hint) {
        s.push_str("<dt>");
        push_html(&mut s, k);
        s.push_str("</dt><dd>");
        if k == "more" {
            s.push_str("<a href=\"");
            push_html(&mut s, &v);
            s.push_str("\">");
            push_html(&mut s, &v);
            s.push_str("</a>");
        } else {
            push_html(&mut s, &escape::printable(&v));
        }
        s.push_str("</dd>\n");
    }
    s.push_str("</dl>\n</body></html>\n");
    s.into_bytes()
}

#[cfg(test)]
mod tests;
