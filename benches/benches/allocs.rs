//! Heap allocations per request of handoff's own per-request work, counted with a counting
//! global allocator around jemalloc (the binary's allocator).
//!
//! Run: `cargo bench -p handoff-benches --bench allocs` (prints a table; a few seconds).
//! Under `cargo test --benches` it runs too, with fewer iterations.
//!
//! The success path should allocate only where pingora's API demands it (the
//! `Box<HttpPeer>` that `upstream_peer` returns); everything else is a finding.
#![allow(unsafe_code)] // a GlobalAlloc is unsafe by definition; it only counts and forwards.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use handoff::ctx::{new_request_id, Ctx, IdleClock};
use handoff_benches::{success_path, upstream, Case};
use handoff_diag::header::{X_REQUEST_ID, X_REQUEST_ID_TITLED};
use handoff_diag::{classify, Annotation, DiagResponse, Exposure};
use pingora::http::RequestHeader;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { tikv_jemallocator::Jemalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { tikv_jemallocator::Jemalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        unsafe { tikv_jemallocator::Jemalloc.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { tikv_jemallocator::Jemalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allocations and bytes per call of `f`, averaged over `n` calls.
fn count(n: u64, mut f: impl FnMut()) -> (f64, f64) {
    f(); // first call may initialise lazies (IdleClock, thread-locals)
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    for _ in 0..n {
        f();
    }
    let (a1, b1) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

/// Polls a future that completes without waiting (the prepared-peer path of `peer()`).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the future waited"),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: run briefly then.
    let n: u64 = if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        1_000
    };
    let up = upstream();
    let m = &up.metrics;
    let d = Duration::from_micros(180);
    let clock = IdleClock::global();
    let now = Instant::now();
    let mut rows: Vec<(&str, (f64, f64))> = Vec::new();

    // Success path: metric calls.
    rows.push(("metrics.request_done", count(n, || m.request_done(200))));
    rows.push(("metrics.observe_header", count(n, || m.observe_header(d))));
    rows.push((
        "metrics.observe_response",
        count(n, || m.observe_response(d)),
    ));
    rows.push((
        "metrics.observe_header_bytes",
        count(n, || m.observe_header_bytes(117)),
    ));
    rows.push((
        "metrics.connection_reused",
        count(n, || m.connection_reused()),
    ));
    rows.push((
        "metrics.in_flight (guard + drop)",
        count(n, || drop(black_box(m.in_flight()))),
    ));
    // Success path: context bookkeeping.
    rows.push((
        "Ctx::new + drop",
        count(n, || drop(black_box(Ctx::new(up.clone())))),
    ));
    rows.push((
        "new_request_id",
        count(n, || drop(black_box(new_request_id()))),
    ));
    rows.push((
        "IdleClock released + idle_for",
        count(n, || {
            clock.released(42, now);
            black_box(clock.idle_for(42, now));
        }),
    ));
    let mut generated_into = RequestHeader::build("GET", b"/", None).expect("request header");
    rows.push((
        "success path, nginx sent X-Request-Id",
        count(n, || drop(black_box(success_path(&up, None)))),
    ));
    rows.push((
        "success path, id generated",
        count(n, || {
            drop(black_box(success_path(&up, Some(&mut generated_into))))
        }),
    ));
    // Success path: what the hooks hand to pingora.
    rows.push((
        "upstream.peer() (Box<HttpPeer> clone)",
        count(n, || drop(black_box(ready(up.peer())))),
    ));
    // The generated id's way into the request header (request_filter), one step at a time.
    let id = new_request_id();
    let base = RequestHeader::build("GET", b"/", None).expect("request header");
    let mut reused = base.clone();
    reused
        .insert_header(X_REQUEST_ID_TITLED, id.clone())
        .expect("valid header");
    rows.push((
        "insert_header(HeaderName, id)",
        count(n, || {
            reused
                .insert_header(X_REQUEST_ID, id.clone())
                .expect("valid header");
        }),
    ));
    rows.push((
        "insert_header(\"X-Request-Id\", id)",
        count(n, || {
            reused
                .insert_header(X_REQUEST_ID_TITLED, id.clone())
                .expect("valid header");
        }),
    ));
    rows.push((
        "RequestHeader clone",
        count(n, || drop(black_box(base.clone()))),
    ));
    rows.push((
        "RequestHeader clone + first insert (grows)",
        count(n, || {
            let mut request = base.clone();
            request
                .insert_header(X_REQUEST_ID_TITLED, new_request_id())
                .expect("valid header");
            drop(black_box(request));
        }),
    ));
    // Failure path, for reference.
    for case in Case::ALL {
        let err = case.error();
        let label: &'static str = Box::leak(format!("classify {}", case.label()).into_boxed_str());
        rows.push((
            label,
            count(n / 10, || drop(black_box(classify(&err, case.evidence())))),
        ));
    }
    let failure = Case::ConnectRefused.failure();
    for (name, accept) in [
        ("json", &b"application/json"[..]),
        ("html", b"text/html"),
        ("text", b"*/*"),
    ] {
        for (ename, exposure) in [("reason", Exposure::Reason), ("full", Exposure::Full)] {
            let annotation = Annotation {
                proxy_name: "handoff",
                exposure,
            };
            let label: &'static str =
                Box::leak(format!("DiagResponse {name}/{ename}").into_boxed_str());
            rows.push((
                label,
                count(n / 10, || {
                    drop(black_box(DiagResponse::for_failure(
                        &failure,
                        Some(accept),
                        &annotation,
                    )))
                }),
            ));
        }
    }

    println!("{:<44} {:>10} {:>10}", "operation", "allocs/op", "bytes/op");
    for (name, (allocs, bytes)) in rows {
        println!("{name:<44} {allocs:>10.2} {bytes:>10.1}");
    }
}
