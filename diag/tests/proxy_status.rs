//! Every `Proxy-Status` value handoff can write, read back by an independent RFC 8941
//! parser (the `sfv` crate): every reason at every exposure, under proxy names that are
//! tokens and names that must be quoted, with hostile bytes in the next hop and in every
//! other evidence field. The small serialiser in `respond.rs` is kept because this test
//! proves what a reader of the header gets.
//!
//! Run: `cargo test -p handoff-diag --test proxy_status`.

use std::time::Duration;

use handoff_diag::header::PROXY_STATUS;
use handoff_diag::{
    Annotation, DiagResponse, Errno, Evidence, Exposure, Failure, Phase, Reason, Timer, TimerFired,
};
use sfv::{BareItem, ListEntry, Parser};

/// Proxy names `[annotate] proxy_name` accepts (printable ASCII without `"` or `\`): sf-tokens,
/// and names that are not tokens and go out as sf-strings.
const PROXY_NAMES: &[&str] = &[
    "handoff",
    "shop-web",
    "edge.example.com:8080/a",
    "*star",
    "my proxy",
    "1st",
    "a;error=fake",
    "x,y",
    "=",
    "~",
];

/// Next hops as they reach the evidence: a socket path can hold any byte but NUL.
const NEXT_HOPS: &[&str] = &[
    "127.0.0.1:3000",
    "[::1]:3000",
    "unix:/run/app.sock",
    "",
    "unix:/run/a\"b\\c\r\n.sock",
    "unix:/tmp/é/ünïcode.sock",
    "\x01\x1b[31m\x7f",
    "\"; error=connection_refused; details=\"forged",
    "a, b; next-hop=x",
    "\\",
    "\\x41",
];

/// The hostile text put into every other evidence field.
const HOSTILE: &str = "\"\\\r\nInjected: yes; error=x, y=\"<zq é\x00\x7f";

fn failure(reason: Reason, next_hop: &str, variant: usize) -> Failure {
    let timer = [Timer::Connect, Timer::Header, Timer::Read, Timer::Write][variant % 4];
    Failure {
        reason,
        evidence: Evidence {
            upstream: HOSTILE.into(),
            next_hop: next_hop.into(),
            phase: reason.phase().unwrap_or(Phase::Connect),
            attempt: 1 + variant as u32,
            reused: variant % 2 == 1,
            idle: (variant % 2 == 1).then(|| Duration::from_millis(1500)),
            errno: (variant % 3 != 0).then(|| Errno::from_code(libc::ECONNRESET)),
            timer: (variant % 3 != 1).then_some(TimerFired {
                timer,
                after: Duration::from_millis(2500),
            }),
            first_bytes: Some(HOSTILE.into()),
            request_id: HOSTILE.into(),
            method: HOSTILE.into(),
            path: HOSTILE.into(),
            raw_error: HOSTILE.into(),
            findings: vec![HOSTILE.into()],
            ..Evidence::default()
        },
    }
}

/// What a reader gets back from an sf-string handoff wrote: the text itself where it is
/// printable ASCII, and `\xNN` (lowercase hex) for every other byte.
fn as_read_back(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            0x20..=0x7e => char::from(b).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

/// Whether `name` is an sf-token (RFC 8941 §3.3.4), which handoff writes bare.
fn is_token(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '*')
        && chars.all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:/".contains(c))
}

/// Every reason × exposure × proxy name × next hop (and a spread of errno, timer, reuse and
/// attempt): the header parses as an sf-list of exactly one item naming the proxy, with
/// `error` a token equal to the reason's RFC 9209 type, and `details` and `next-hop`
/// exactly as much as the exposure allows, both sf-strings that read back as written.
#[test]
fn every_proxy_status_parses_back() {
    let mut checked = 0;
    for (variant, &reason) in Reason::ALL.iter().enumerate() {
        for exposure in [Exposure::None, Exposure::Reason, Exposure::Full] {
            for &proxy_name in PROXY_NAMES {
                for &next_hop in NEXT_HOPS {
                    let failure = failure(reason, next_hop, variant);
                    let annotation = Annotation {
                        proxy_name,
                        exposure,
                    };
                    let response = DiagResponse::for_failure(&failure, None, &annotation);
                    let value = response
                        .header(&PROXY_STATUS)
                        .expect("every failure response has Proxy-Status");
                    let case = format!("{reason} {exposure:?} {proxy_name:?} {next_hop:?}");
                    check(value.as_bytes(), &failure, proxy_name, exposure, &case);
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(
        checked,
        Reason::ALL.len() * 3 * PROXY_NAMES.len() * NEXT_HOPS.len()
    );
}

fn check(value: &[u8], failure: &Failure, proxy_name: &str, exposure: Exposure, case: &str) {
    let text = String::from_utf8_lossy(value);
    let list = Parser::parse_list(value)
        .unwrap_or_else(|e| panic!("{case}: {text:?} is not an sf-list: {e}"));
    assert_eq!(
        list.len(),
        1,
        "{case}: one member, for handoff only: {text}"
    );
    let ListEntry::Item(item) = &list[0] else {
        panic!("{case}: an inner list: {text}");
    };

    let named = match &item.bare_item {
        BareItem::Token(t) => {
            assert!(is_token(proxy_name), "{case}: written as a token: {text}");
            t
        }
        BareItem::String(s) => {
            assert!(!is_token(proxy_name), "{case}: a token quoted: {text}");
            s
        }
        other => panic!("{case}: the proxy is named by {other:?}: {text}"),
    };
    assert_eq!(named, proxy_name, "{case}: {text}");

    let params = &item.params;
    assert_eq!(
        params.get("error").and_then(BareItem::as_token),
        Some(failure.reason.proxy_status_error()),
        "{case}: {text}"
    );
    let details = params.get("details").map(|d| {
        d.as_str()
            .unwrap_or_else(|| panic!("{case}: details is not an sf-string: {text}"))
    });
    let next_hop = params.get("next-hop").map(|n| {
        n.as_str()
            .unwrap_or_else(|| panic!("{case}: next-hop is not an sf-string: {text}"))
    });
    let reason = failure.reason.as_str();
    match exposure {
        Exposure::None => {
            assert_eq!(params.len(), 1, "{case}: only the error type: {text}");
        }
        Exposure::Reason => {
            assert_eq!(details, Some(reason), "{case}: {text}");
            assert_eq!(next_hop, None, "{case}: no address at reason: {text}");
            assert_eq!(params.len(), 2, "{case}: {text}");
        }
        Exposure::Full => {
            let expected_hop = as_read_back(&failure.evidence.next_hop);
            assert_eq!(next_hop, Some(expected_hop.as_str()), "{case}: {text}");
            let details = details.unwrap_or_else(|| panic!("{case}: no details: {text}"));
            assert!(details.starts_with(reason), "{case}: {details}");
            let ev = &failure.evidence;
            assert!(
                details.contains(&format!("attempt={}; reused={}", ev.attempt, ev.reused)),
                "{case}: {details}"
            );
            if let Some(errno) = ev.errno {
                assert!(details.contains(errno.name), "{case}: {details}");
            }
            if let Some(timer) = ev.timer {
                assert!(details.contains(timer.timer.as_str()), "{case}: {details}");
            }
            assert!(
                !details.contains("Injected"),
                "{case}: no request or upstream text in details: {details}"
            );
            assert_eq!(params.len(), 3, "{case}: {text}");
        }
    }
}
