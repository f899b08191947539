use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

fn record(upstream: &str, reason: Reason, n: u32) -> FailureRecord {
    let f = Failure {
        reason,
        evidence: Evidence {
            upstream: upstream.into(),
            next_hop: "127.0.0.1:3000".into(),
            attempt: n,
            ..Evidence::default()
        },
    };
    FailureRecord::new(
        &f,
        reason.status(),
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + u64::from(n)),
    )
}

/// The ring keeps the newest `capacity` records, newest first.
#[test]
fn wraparound_keeps_newest() {
    let ring = RecentFailures::new(3);
    for n in 1..=7 {
        ring.push(record("app", Reason::ConnectRefused, n));
    }
    let got: Vec<u32> = ring
        .list(&Filter::default())
        .iter()
        .map(|r| r.evidence.attempt)
        .collect();
    assert_eq!(got, [7, 6, 5]);
}

/// Filters by upstream and reason, and the limit.
#[test]
fn filters() {
    let ring = RecentFailures::new(10);
    ring.push(record("app", Reason::ConnectRefused, 1));
    ring.push(record("api", Reason::ConnectRefused, 2));
    ring.push(record("app", Reason::ClosedBeforeResponse, 3));
    ring.push(record("app", Reason::ConnectRefused, 4));
    let f = Filter::from_query("upstream=app&reason=connect_refused").unwrap();
    let got: Vec<u32> = ring.list(&f).iter().map(|r| r.evidence.attempt).collect();
    assert_eq!(got, [4, 1]);
    let f = Filter::from_query("limit=2").unwrap();
    assert_eq!(ring.list(&f).len(), 2);
    let f = Filter {
        limit: 1000,
        ..Filter::default()
    };
    assert_eq!(ring.list(&f).len(), 4);
    let json: serde_json::Value =
        serde_json::from_str(&ring.to_json(&Filter::from_query("upstream=api").unwrap())).unwrap();
    assert_eq!(json["count"], 1);
    assert_eq!(json["failures"][0]["reason"], "connect_refused");
    assert_eq!(json["failures"][0]["proxy_status"], "connection_refused");
    assert_eq!(
        json["failures"][0]["evidence"]["next_hop"],
        "127.0.0.1:3000"
    );
    assert!(json["failures"][0]["nginx_equivalent"]
        .as_str()
        .unwrap()
        .contains("connect() failed"));
}

/// Query parsing: defaults, percent-decoding, and errors that name the valid values.
#[test]
fn query_parsing() {
    assert_eq!(Filter::from_query("").unwrap(), Filter::default());
    assert_eq!(Filter::default().limit, 50);
    let f = Filter::from_query("upstream=my%20app+x&limit=10").unwrap();
    assert_eq!(f.upstream.as_deref(), Some("my app x"));
    assert_eq!(f.limit, 10);
    let e = Filter::from_query("reason=nope").unwrap_err();
    assert!(
        e.contains("connect_refused") && e.contains("unclassified"),
        "{e}"
    );
    assert!(Filter::from_query("limit=0").is_err());
    assert!(Filter::from_query("limit=x").is_err());
    assert!(Filter::from_query("color=red").is_err());
    assert!(Filter::from_query("upstream=%zz").is_err());
}

/// Query values decode as a form sends them: `%2B` is a plus and `+` a space, multi-byte
/// UTF-8 comes through whole; a cut-off escape or bytes that are not UTF-8 are refused.
#[test]
fn query_values_decode_like_a_form() {
    let upstream = |q: &str| Filter::from_query(q).map(|f| f.upstream.unwrap_or_default());
    assert_eq!(upstream("upstream=a%2Bb+c").unwrap(), "a+b c");
    assert_eq!(upstream("upstream=caf%C3%A9").unwrap(), "café");
    assert_eq!(upstream("upstream=caf%c3%a9").unwrap(), "café");
    for bad in ["upstream=a%4", "upstream=a%", "upstream=%%41"] {
        let e = upstream(bad).unwrap_err();
        assert!(e.contains("bad percent-encoding"), "{bad}: {e}");
    }
    let e = upstream("upstream=%ff").unwrap_err();
    assert!(e.contains("not UTF-8"), "{e}");
}

/// RFC 3339 timestamps with milliseconds, checked against known instants.
#[test]
fn timestamps() {
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(rfc3339_ms(1_700_000_000_007), "2023-11-14T22:13:20.007Z");
    assert_eq!(rfc3339_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    let r = record("app", Reason::ConnectRefused, 7);
    assert_eq!(
        (r.time.as_str(), r.unix_ms),
        ("2023-11-14T22:13:20.007Z", 1_700_000_000_007)
    );
    let now = FailureRecord::new(
        &Failure {
            reason: Reason::Unclassified,
            evidence: Evidence::default(),
        },
        502,
        SystemTime::now(),
    );
    assert!(now.time.starts_with("20") && now.time.ends_with('Z'));
}

/// Many writers and a reader at once: no panic, the ring never exceeds its capacity.
#[test]
fn concurrent_smoke() {
    let ring = std::sync::Arc::new(RecentFailures::new(16));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let ring = ring.clone();
            std::thread::spawn(move || {
                for n in 0..500 {
                    ring.push(record(
                        if t % 2 == 0 { "app" } else { "api" },
                        Reason::ResetMidBody,
                        n,
                    ));
                }
            })
        })
        .collect();
    for _ in 0..50 {
        assert!(ring.list(&Filter::default()).len() <= 16);
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(
        ring.list(&Filter {
            limit: 100,
            ..Filter::default()
        })
        .len(),
        16
    );
    assert_eq!(ring.cursor.load(Ordering::Relaxed), 2000);
}
