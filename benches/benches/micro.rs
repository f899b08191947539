//! handoff's per-request work in isolation, ns/op (criterion).
//!
//! - `classify/*`: a pingora error plus evidence → a named failure (failure path only).
//! - `respond/*`: the annotated response for each body format and exposure (failure path).
//! - `metrics/*`: the success-path metric calls on pre-resolved handles.
//! - `http1/*`: parsing a request and a response head as nginx and an app send them.
//! - `hooks/*`: what handoff's diagnostics hooks do for one successful request, with
//!   nginx's request id and with one generated.
//!
//! Run: `cargo bench -p handoff-benches --bench micro` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use handoff::diagnostics::new_request_id;
use handoff_benches::{
    diagnostics, request_head, response_head, success_path, upstream, Case, REQUEST_WITHOUT_ID,
    REQUEST_WITH_ID, RESPONSE,
};
use handoff_diag::{classify, Annotation, DiagResponse, Exposure};
use handoff_http1::{Limits, Method, RequestHead, ResponseHead};

// The binary under test uses jemalloc; so do the benchmarks.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn bench_classify(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    for case in Case::ALL {
        let err = case.error();
        g.bench_function(case.label(), |b| {
            b.iter(|| classify(black_box(&err), black_box(case.evidence())))
        });
    }
    g.finish();
}

fn bench_respond(c: &mut Criterion) {
    let mut g = c.benchmark_group("respond");
    let failure = Case::ConnectRefused.failure();
    let formats: [(&str, &[u8]); 3] = [
        ("json", b"application/json"),
        ("html", b"text/html,application/xhtml+xml,*/*;q=0.8"),
        ("text", b"*/*"),
    ];
    for (exposure_name, exposure) in [
        ("none", Exposure::None),
        ("reason", Exposure::Reason),
        ("full", Exposure::Full),
    ] {
        let annotation = Annotation {
            proxy_name: "handoff",
            exposure,
        };
        for (format, accept) in formats {
            g.bench_function(format!("{format}/{exposure_name}"), |b| {
                b.iter(|| {
                    DiagResponse::for_failure(
                        black_box(&failure),
                        black_box(Some(accept)),
                        &annotation,
                    )
                })
            });
        }
    }
    g.finish();
}

fn bench_metrics(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics");
    let up = upstream();
    let m = &up.metrics;
    let d = Duration::from_micros(180);
    g.bench_function("request_done", |b| {
        b.iter(|| m.request_done(black_box(200)))
    });
    g.bench_function("observe_header", |b| {
        b.iter(|| m.observe_header(black_box(d)))
    });
    g.bench_function("observe_response", |b| {
        b.iter(|| m.observe_response(black_box(d)))
    });
    g.bench_function("observe_header_bytes", |b| {
        b.iter(|| m.observe_header_bytes(black_box(117)))
    });
    g.bench_function("connection_reused", |b| b.iter(|| m.connection_reused()));
    g.bench_function("in_flight_guard", |b| {
        b.iter(|| drop(black_box(m.in_flight())))
    });
    g.finish();
}

fn bench_http1(c: &mut Criterion) {
    let mut g = c.benchmark_group("http1");
    let mut head = RequestHead::default();
    let limits = Limits::default();
    g.bench_function("request_head", |b| {
        b.iter(|| head.parse(black_box(REQUEST_WITH_ID), &limits))
    });
    let mut resp = ResponseHead::default();
    g.bench_function("response_head", |b| {
        b.iter(|| resp.parse(black_box(RESPONSE), 65536, Method::Get))
    });
    g.finish();
}

fn bench_hooks(c: &mut Criterion) {
    let mut g = c.benchmark_group("hooks");
    let (diag, up) = diagnostics();
    let resp = response_head(RESPONSE);
    let mut out = Vec::with_capacity(1024);
    g.bench_function("new_request_id", |b| b.iter(new_request_id));
    g.bench_function("instant_now", |b| b.iter(Instant::now));
    for (name, bytes) in [
        ("success_path/with_request_id", REQUEST_WITH_ID),
        ("success_path/generated_id", REQUEST_WITHOUT_ID),
    ] {
        let head = request_head(bytes);
        g.bench_function(name, |b| {
            b.iter(|| success_path(&diag, &up, black_box(&head), bytes, &resp, &mut out))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    // Short enough to run all ~40 benchmarks in about a minute on the 2-core VM.
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_classify, bench_respond, bench_metrics, bench_http1, bench_hooks
}
criterion_main!(benches);
