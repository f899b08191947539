//! handoff's per-request work in isolation, ns/op (criterion).
//!
//! - `classify/*`: a pingora error plus evidence → a named failure (failure path only).
//! - `respond/*`: the annotated response for each body format and exposure (failure path).
//! - `metrics/*`: the success-path metric calls on pre-resolved handles.
//! - `ctx/*`: the request-context bookkeeping of the success path, hook by hook, and the
//!   whole sequence one successful request runs through.
//!
//! Run: `cargo bench -p handoff-benches --bench micro` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use handoff::ctx::{new_request_id, Ctx, IdleClock};
use handoff_benches::{success_path, upstream, Case};
use handoff_diag::{classify, Annotation, DiagResponse, Exposure};
use pingora::http::RequestHeader;

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

fn bench_ctx(c: &mut Criterion) {
    let mut g = c.benchmark_group("ctx");
    let up = upstream();
    let clock = IdleClock::global();
    let now = Instant::now();
    clock.released(42, now);
    g.bench_function("new+drop", |b| {
        b.iter(|| drop(black_box(Ctx::new(up.clone()))))
    });
    g.bench_function("begin_attempt", |b| {
        let mut ctx = Ctx::new(up.clone());
        b.iter(|| black_box(&mut ctx).begin_attempt())
    });
    g.bench_function("new_request_id", |b| b.iter(new_request_id));
    g.bench_function("instant_now", |b| b.iter(Instant::now));
    g.bench_function("idle_clock/released", |b| {
        b.iter(|| clock.released(black_box(42), black_box(now)))
    });
    g.bench_function("idle_clock/idle_for", |b| {
        b.iter(|| clock.idle_for(black_box(42), black_box(now)))
    });
    g.bench_function("success_path/with_request_id", |b| {
        b.iter(|| drop(black_box(success_path(&up, None))))
    });
    let mut request = RequestHeader::build("GET", b"/", None).expect("request header");
    g.bench_function("success_path/generated_id", |b| {
        b.iter(|| drop(black_box(success_path(&up, Some(&mut request)))))
    });
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
    targets = bench_classify, bench_respond, bench_metrics, bench_ctx
}
criterion_main!(benches);
