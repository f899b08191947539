use std::time::Duration;

use super::*;

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every family is exported, every (upstream, reason) and status class starts at zero.
#[test]
fn pre_registered_at_zero() {
    let m = Metrics::new(&["app", "api"], "1.2.3");
    let text = m.encode();
    for name in METRIC_NAMES {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    for up in ["app", "api"] {
        for r in Reason::ALL {
            for fam in [FAILURES, ATTEMPT_FAILURES] {
                let s = format!("{fam}{{reason=\"{}\",upstream=\"{up}\"}}", r.as_str());
                assert_eq!(sample(&text, &s), Some(0.0), "{s}");
            }
        }
        for c in STATUS_CLASSES {
            let s = format!("{REQUESTS}{{status_class=\"{c}\",upstream=\"{up}\"}}");
            assert_eq!(sample(&text, &s), Some(0.0), "{s}");
        }
        assert_eq!(
            sample(&text, &format!("{IN_FLIGHT}{{upstream=\"{up}\"}}")),
            Some(0.0)
        );
    }
    assert_eq!(
        sample(&text, &format!("{BUILD_INFO}{{version=\"1.2.3\"}}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, &format!("{CONFIG_RELOADS}{{result=\"failure\"}}")),
        Some(0.0)
    );
}

/// The handles count into the right series; the in-flight guard decrements on drop.
#[test]
fn handles_count() {
    let m = Metrics::new(&["app"], "0.1.0");
    let u = m.upstream("app").unwrap();
    assert!(m.upstream("nope").is_none());
    u.request_done(200);
    u.request_done(503);
    u.request_done(0);
    u.failure(Reason::ConnectRefused);
    u.attempt_failure(Reason::ClosedBeforeResponse);
    u.attempt_failure(Reason::ClosedBeforeResponse);
    u.client_abort();
    u.connection_reused();
    u.observe_connect(Duration::from_micros(150));
    u.observe_header(Duration::from_millis(20));
    u.observe_response(Duration::from_millis(25));
    u.observe_header_bytes(5000);
    u.header_over_nginx_buffer();
    m.record_reload(true);
    let guard = u.clone().in_flight();
    let text = m.encode();
    let get = |s: &str| sample(&text, s);
    assert_eq!(
        get(r#"handoff_upstream_requests_total{status_class="2xx",upstream="app"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(r#"handoff_upstream_requests_total{status_class="5xx",upstream="app"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(r#"handoff_upstream_requests_total{status_class="none",upstream="app"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(r#"handoff_upstream_failures_total{reason="connect_refused",upstream="app"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(
            r#"handoff_upstream_attempt_failures_total{reason="closed_before_response",upstream="app"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        get(r#"handoff_client_aborts_total{upstream="app"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(r#"handoff_upstream_connection_reuses_total{upstream="app"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(r#"handoff_upstream_connect_duration_seconds_bucket{upstream="app",le="0.00025"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(r#"handoff_upstream_connect_duration_seconds_bucket{upstream="app",le="0.0001"}"#),
        Some(0.0)
    );
    assert_eq!(
        get(r#"handoff_upstream_response_header_bytes_bucket{upstream="app",le="8192"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(r#"handoff_upstream_response_header_bytes_bucket{upstream="app",le="4096"}"#),
        Some(0.0)
    );
    assert_eq!(
        get(r#"handoff_upstream_header_over_nginx_buffer_total{upstream="app"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(r#"handoff_upstream_requests_in_flight{upstream="app"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(r#"handoff_config_reloads_total{result="success"}"#),
        Some(1.0)
    );
    drop(guard);
    assert_eq!(
        sample(
            &m.encode(),
            r#"handoff_upstream_requests_in_flight{upstream="app"}"#
        ),
        Some(0.0)
    );
}

/// Two instances in one process do not share series.
#[test]
fn instances_are_independent() {
    let a = Metrics::new(&["app"], "x");
    let b = Metrics::new(&["app"], "x");
    a.upstream("app").unwrap().client_abort();
    assert_eq!(
        sample(
            &b.encode(),
            r#"handoff_client_aborts_total{upstream="app"}"#
        ),
        Some(0.0)
    );
}

/// Status classes, buckets sorted and spanning sub-millisecond to the longest timeout.
#[test]
fn classes_and_buckets() {
    assert_eq!(
        [0, 99, 100, 199, 200, 404, 599, 600].map(status_class_index),
        [5, 5, 0, 0, 1, 3, 4, 5]
    );
    assert!(SECONDS_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    assert!(SECONDS_BUCKETS[0] < 0.001 && *SECONDS_BUCKETS.last().unwrap() >= 60.0);
    assert!(HEADER_BYTES_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    assert!(HEADER_BYTES_BUCKETS.contains(&4096.0) && HEADER_BYTES_BUCKETS.contains(&8192.0));
    assert_eq!(*HEADER_BYTES_BUCKETS.last().unwrap(), 1048576.0);
}
