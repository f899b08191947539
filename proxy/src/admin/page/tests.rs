use std::time::{Duration, SystemTime};

use handoff_diag::{Evidence, Failure, Metrics, Phase};

use super::*;

#[test]
fn units() {
    assert_eq!(fmt_secs(0.0001), "100µs");
    assert_eq!(fmt_secs(0.00025), "250µs");
    assert_eq!(fmt_secs(0.0025), "2.5ms");
    assert_eq!(fmt_secs(60.0), "60s");
    assert_eq!(fmt_bytes(256.0), "256B");
    assert_eq!(fmt_bytes(4096.0), "4K");
    assert_eq!(fmt_bytes(1048576.0), "1M");
    assert_eq!(clock(3_723_000), "01:02:03");
}

#[test]
fn markers_sit_inside_their_bucket() {
    let b = [(1024.0, 0), (4096.0, 0), (8192.0, 0), (f64::INFINITY, 0)];
    assert_eq!(position(&b, 4096.0, 10.0), Some(20.0));
    assert_eq!(position(&b, 512.0, 10.0), Some(5.0));
    assert!(position(&b, 1e9, 10.0).is_none());
}

/// A marker no template of the page writes: if it shows up, input became markup.
const MARKUP: &str = "<zq";

/// A failure whose every piece of text came from a hostile network: the page and the live
/// part of `/status.json` carry it as text (escaped, control characters visible), never as
/// markup, and the numbers still carry their `data-metric` attributes.
#[test]
fn network_text_never_becomes_markup() {
    let hostile = format!("{MARKUP} onload=alert(1)>\"'&\u{1b}[31m\r\n</details></table>");
    let settings = handoff_config::from_str(
        "[[upstream]]\nname = \"shop\"\nlisten = \"127.0.0.1:8080\"\naddress = \"unix:/run/app.sock\"\n",
        "test",
    )
    .unwrap();
    let metrics = Metrics::new(&["shop"], "test");
    let shop = metrics.upstream("shop").unwrap();
    shop.request_done(0);
    shop.failure(Reason::SocketNotFound);
    shop.observe_header_bytes(9000);
    let failure = Failure {
        reason: Reason::SocketNotFound,
        evidence: Evidence {
            upstream: "shop".into(),
            next_hop: hostile.as_str().into(),
            phase: Phase::Connect,
            attempt: 1,
            request_id: hostile.clone(),
            method: hostile.clone(),
            path: hostile.clone(),
            first_bytes: Some(hostile.clone()),
            raw_error: hostile.clone(),
            findings: vec![hostile.clone()],
            ..Evidence::default()
        },
    };
    let view = View {
        settings: &settings,
        snapshot: Snapshot::read(&metrics, &["shop"]),
        samples: Vec::new(),
        recent: vec![Arc::new(FailureRecord::new(
            &failure,
            502,
            SystemTime::now(),
        ))],
        ready: true,
        uptime: Duration::from_secs(61),
        now_ms: 0,
    };
    let page = view.page();
    let json: serde_json::Value = serde_json::from_str(&view.json()).unwrap();
    let live = json["html"].as_str().unwrap();
    for html in [page.as_str(), live] {
        assert!(!html.contains(MARKUP), "{html}");
        assert!(!html.contains('\u{1b}') && !html.contains('\r'), "{html}");
        assert!(html.contains("&lt;zq onload=alert(1)&gt;&quot;"), "{html}");
        assert!(
            html.contains("\\x1b[31m"),
            "control characters show as text"
        );
        assert!(html.contains(
            r#"<span data-metric="failures" data-upstream="shop" data-reason="socket_not_found">1</span>"#
        ));
        assert!(html.contains(r#"data-metric="header_bytes_count" data-upstream="shop">1<"#));
    }
    // The page's own script and style are the only text not escaped.
    assert!(page.contains(JS) && page.contains(CSS));
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches("<script>").count(), 1);
}
