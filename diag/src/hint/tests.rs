use std::time::Duration;

use super::*;
use crate::evidence::{Evidence, Timer, TimerFired};

fn failure(reason: Reason, next_hop: &str) -> Failure {
    Failure {
        reason,
        evidence: Evidence {
            upstream: "app".into(),
            next_hop: next_hop.into(),
            attempt: 1,
            ..Evidence::default()
        },
    }
}

/// Every reason has a summary, a detail and an nginx message.
#[test]
fn every_reason_has_a_hint() {
    for r in Reason::ALL {
        let f = failure(r, "127.0.0.1:3000");
        let h = f.hint();
        assert!(h.summary.len() > 40, "{r}");
        assert!(h.detail.contains("127.0.0.1:3000"), "{r}: {}", h.detail);
        assert!(!f.nginx_equivalent().is_empty(), "{r}");
    }
}

/// nginx's messages, filled with the next hop and the actual errno.
#[test]
fn nginx_equivalents() {
    let mut f = failure(Reason::SocketNotFound, "unix:/run/app.sock");
    f.evidence.errno = Some(Errno::from_code(libc::ENOENT));
    assert_eq!(
        f.nginx_equivalent(),
        "connect() to unix:/run/app.sock failed (2: No such file or directory) while connecting to upstream, upstream: \"unix:/run/app.sock\""
    );
    let f = failure(Reason::ConnectRefused, "127.0.0.1:3000");
    assert!(f
        .nginx_equivalent()
        .starts_with("connect() failed (111: Connection refused) while connecting to upstream"));
    let mut f = failure(Reason::RequestWriteFailed, "127.0.0.1:3000");
    f.evidence.errno = Some(Errno::from_code(libc::ECONNRESET));
    assert!(f
        .nginx_equivalent()
        .starts_with("writev() failed (104: Connection reset by peer) while sending request"));
    let f = failure(Reason::DnsFailed, "tls://app.internal:8443");
    assert!(f
        .nginx_equivalent()
        .starts_with("app.internal could not be resolved"));
    let f = failure(Reason::ClosedMidHeader, "127.0.0.1:3000");
    assert!(f.nginx_equivalent().starts_with(
        "upstream prematurely closed connection while reading response header from upstream"
    ));
}

/// A reused connection closed before the response is the keep-alive race.
#[test]
fn keepalive_race() {
    for r in [Reason::ClosedBeforeResponse, Reason::ResetBeforeResponse] {
        let mut f = failure(r, "127.0.0.1:3000");
        f.evidence.reused = true;
        f.evidence.idle = Some(Duration::from_millis(4999));
        let d = f.hint().detail;
        assert!(
            d.contains("keep-alive race")
                && d.contains("4.999s")
                && d.contains("pool_idle_timeout"),
            "{d}"
        );
        f.evidence.reused = false;
        assert!(!f.hint().detail.contains("This is the keep-alive race"));
    }
}

/// Timeouts name the timer, its value, and nginx's longer timeout.
#[test]
fn timeouts_name_the_timer() {
    let mut f = failure(Reason::ResponseHeaderTimeout, "127.0.0.1:3000");
    f.evidence.timer = Some(TimerFired {
        timer: Timer::Header,
        after: Duration::from_secs(30),
    });
    let d = f.hint().detail;
    assert!(
        d.contains("header_timeout (30s)") && d.contains("nginx"),
        "{d}"
    );
}

/// Oversized headers mention nginx's proxy_buffer_size.
#[test]
fn header_too_large_mentions_nginx_buffer() {
    let mut f = failure(Reason::ResponseHeaderTooLarge, "127.0.0.1:3000");
    f.evidence.response_header_bytes = Some(9000);
    f.evidence.nginx_buffer_bytes = 4096;
    let d = f.hint().detail;
    assert!(
        d.contains("9000") && d.contains("proxy_buffer_size") && d.contains("4096"),
        "{d}"
    );
    assert!(f.hint().summary.contains("proxy_buffer_size"));
}

/// The first bytes name TLS, HTTP/2 and FastCGI.
#[test]
fn sniffing() {
    assert!(sniff(b"\x16\x03\x01\x00").unwrap().contains("TLS"));
    assert!(sniff(b"\x15\x03\x03\x00\x02\x02\x32")
        .unwrap()
        .contains("TLS"));
    assert!(sniff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap()
        .contains("HTTP/2"));
    assert!(sniff(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00")
        .unwrap()
        .contains("HTTP/2"));
    assert!(sniff(b"\x01\x06\x00\x01\x00\x20\x00\x00")
        .unwrap()
        .contains("fastcgi_pass"));
    assert_eq!(sniff(b"\x01\x0c"), None);
    assert_eq!(sniff(b"HTTP/1.1 200 OK"), None);
    assert_eq!(sniff(b""), None);

    let mut f = failure(Reason::InvalidResponseHeader, "127.0.0.1:9000");
    f.evidence.first_bytes = Some(crate::escape::escape_bytes(
        b"\x01\x06\x00\x01\x00\x20\x00\x00",
    ));
    let d = f.hint().detail;
    assert!(d.contains("FastCGI (php-fpm?)"), "{d}");
    assert!(f.nginx_equivalent().contains("\\x01\\x06"));
}

/// Findings from the proxy's probes end up in the detail.
#[test]
fn findings_in_detail() {
    let mut f = failure(Reason::SocketNotFound, "unix:/run/php/php8.2-fpm.sock");
    f.evidence.findings = vec!["sockets in /run/php: php8.3-fpm.sock".into()];
    let d = f.hint().detail;
    assert!(
        d.contains("ls -l /run/php") && d.contains("php8.3-fpm.sock"),
        "{d}"
    );
}

/// nginx's own error-log lines read back as the reason handoff would have named: every
/// `nginx_equivalent` wording, and real lines nginx 1.22 wrote in the end-to-end tests.
#[test]
fn nginx_log_lines_map_back_to_reasons() {
    for r in Reason::ALL {
        let line = format!(
            "2026/12/02 01:00:00 [error] 7#7: *1 {} , client: 127.0.0.1",
            failure(r, "127.0.0.1:3000").nginx_equivalent()
        );
        let expected = match r {
            // nginx words these alike, or has no line for them.
            Reason::ClosedMidHeader => Some(Reason::ClosedBeforeResponse),
            Reason::ProxyInternalError | Reason::Unclassified => None,
            r => Some(r),
        };
        assert_eq!(Reason::from_nginx_log(&line), expected, "{line}");
    }
    let real = "2026/12/02 01:02:03 [error] 1234#1234: *5 connect() to unix:/run/php/php8.3-fpm.sock failed \
        (2: No such file or directory) while connecting to upstream, client: 127.0.0.1, server: shop, \
        request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/php8.3-fpm.sock:\", host: \"shop\"";
    assert_eq!(Reason::from_nginx_log(real), Some(Reason::SocketNotFound));
    assert_eq!(
        Reason::from_nginx_log("2026/12/02 [notice] 1#1: signal process started"),
        None
    );
}
