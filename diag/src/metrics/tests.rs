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

/// The typed readers say what `/metrics` says, series by series, without the registry.
#[test]
fn readers_agree_with_the_exposition() {
    let m = Metrics::new(&["app", "api"], "x");
    let app = m.upstream("app").unwrap();
    let api = m.upstream("api").unwrap();
    app.request_done(200);
    app.request_done(204);
    app.request_done(0);
    app.failure(Reason::SocketNotFound);
    app.attempt_failure(Reason::ClosedBeforeResponse);
    app.connection_reused();
    app.client_abort();
    app.client_error();
    app.header_over_nginx_buffer();
    app.observe_connect(Duration::from_micros(200));
    app.observe_header(Duration::from_millis(3));
    app.observe_header(Duration::from_secs(90));
    app.observe_header_bytes(5000);
    let _app_guard = app.in_flight();
    let _api_guards = [api.in_flight(), api.in_flight()];

    let text = m.encode();
    let reading = app.read();
    let up = "upstream=\"app\"";
    for (i, class) in STATUS_CLASSES.iter().enumerate() {
        let series = format!("{REQUESTS}{{status_class=\"{class}\",{up}}}");
        assert_eq!(
            sample(&text, &series),
            Some(reading.requests[i] as f64),
            "{series}"
        );
    }
    assert_eq!(reading.requests, [0, 2, 0, 0, 0, 1]);
    assert_eq!(reading.requests_total(), 3);
    for r in Reason::ALL {
        let series = format!("{FAILURES}{{reason=\"{}\",{up}}}", r.as_str());
        assert_eq!(
            sample(&text, &series),
            Some(reading.failures[r.index()] as f64)
        );
        let series = format!("{ATTEMPT_FAILURES}{{reason=\"{}\",{up}}}", r.as_str());
        assert_eq!(
            sample(&text, &series),
            Some(reading.attempt_failures[r.index()] as f64)
        );
    }
    assert_eq!(reading.failures_total(), 1);
    assert_eq!(reading.failures[Reason::SocketNotFound.index()], 1);
    assert_eq!(
        reading.attempt_failures[Reason::ClosedBeforeResponse.index()],
        1
    );
    for (family, value) in [
        (CONNECTION_REUSES, reading.reuses),
        (CLIENT_ABORTS, reading.client_aborts),
        (CLIENT_ERRORS, reading.client_errors),
        (HEADER_OVER_NGINX_BUFFER, reading.over_nginx_buffer),
    ] {
        assert_eq!(value, 1, "{family}");
        assert_eq!(sample(&text, &format!("{family}{{{up}}}")), Some(1.0));
    }
    assert_eq!(reading.in_flight, 1);
    assert_eq!(api.in_flight_now(), 2);
    assert_eq!(m.in_flight_total(), 3);

    // Histograms: every bucket, with +Inf, count and sum as exported.
    for (family, h) in [
        (CONNECT_DURATION, &reading.connect),
        (HEADER_DURATION, &reading.header),
        (RESPONSE_DURATION, &reading.response),
        (HEADER_BYTES, &reading.header_bytes),
    ] {
        let bounds = if family == HEADER_BYTES {
            HEADER_BYTES_BUCKETS
        } else {
            SECONDS_BUCKETS
        };
        assert_eq!(h.buckets.len(), bounds.len() + 1, "{family}");
        assert_eq!(h.buckets.last(), Some(&(f64::INFINITY, h.count)));
        for &(le, cumulative) in &h.buckets {
            let le = if le.is_finite() {
                le.to_string()
            } else {
                "+Inf".to_owned()
            };
            let series = format!("{family}_bucket{{{up},le=\"{le}\"}}");
            assert_eq!(sample(&text, &series), Some(cumulative as f64), "{series}");
        }
        let count = sample(&text, &format!("{family}_count{{{up}}}"));
        assert_eq!(count, Some(h.count as f64), "{family}");
        let sum = sample(&text, &format!("{family}_sum{{{up}}}")).unwrap();
        assert!((sum - h.sum).abs() < 1e-9, "{family}: {sum} vs {}", h.sum);
    }
    assert_eq!(reading.header.count, 2);
    // 90 s is above the last bound: only +Inf holds it.
    assert_eq!(reading.header.per_bucket().last(), Some(&1));
    assert_eq!(api.read().requests_total(), 0);
}

/// Quantiles interpolate inside their bucket as PromQL's `histogram_quantile` does.
#[test]
fn quantiles_interpolate_within_the_bucket() {
    let h = |buckets: &[(f64, u64)]| HistogramReading {
        buckets: buckets.to_vec(),
        count: buckets.last().map_or(0, |b| b.1),
        sum: 0.0,
    };
    let hist = h(&[(0.001, 0), (0.01, 10), (0.1, 20), (f64::INFINITY, 20)]);
    let p50 = hist.quantile(0.5).unwrap();
    assert!((p50 - 0.01).abs() < 1e-12, "{p50}");
    let p25 = hist.quantile(0.25).unwrap();
    assert!((p25 - 0.0055).abs() < 1e-9, "{p25}");
    assert_eq!(h(&[(1.0, 0), (f64::INFINITY, 0)]).quantile(0.5), None);
    // Everything above the last finite bound: that bound.
    assert_eq!(h(&[(1.0, 0), (f64::INFINITY, 4)]).quantile(0.99), Some(1.0));
    assert_eq!(hist.per_bucket(), vec![0, 10, 10, 0]);
}
