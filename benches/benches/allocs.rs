//! Heap allocations per request of handoff's own per-request work, counted with a counting
//! global allocator around jemalloc (the binary's allocator).
//!
//! Run: `cargo bench -p handoff-benches --bench allocs` (prints a table; a few seconds).
//! Under `cargo test --benches` it runs too, with fewer iterations.
//!
//! The success path should not allocate at all: heads are parsed into a connection's
//! reused buffers, the hooks only bump pre-resolved metric handles, and a generated
//! request id lives on the stack. Any allocation here is a finding.
#![allow(unsafe_code)] // a GlobalAlloc is unsafe by definition; it only counts and forwards.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use handoff::diagnostics::new_request_id;
use handoff_benches::{
    diagnostics, request_head, response_head, success_path, upstream, Case, REQUEST_WITHOUT_ID,
    REQUEST_WITH_ID, RESPONSE,
};
use handoff_diag::{classify, Annotation, DiagResponse, Exposure};
use handoff_http1::{Limits, Method, RequestHead, ResponseHead};

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
    f(); // the first call may initialise lazies (thread-locals) and grow reused buffers
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    for _ in 0..n {
        f();
    }
    let (a1, b1) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
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
    // Success path: the heads and the hooks.
    rows.push((
        "new_request_id",
        count(n, || {
            black_box(new_request_id());
        }),
    ));
    let mut head = RequestHead::default();
    let limits = Limits::default();
    rows.push((
        "request head parse (reused)",
        count(n, || {
            let _ = black_box(head.parse(REQUEST_WITH_ID, &limits));
        }),
    ));
    let mut resp = ResponseHead::default();
    rows.push((
        "response head parse (reused)",
        count(n, || {
            let _ = black_box(resp.parse(RESPONSE, 65536, Method::Get));
        }),
    ));
    let (diag, up) = diagnostics();
    let resp = response_head(RESPONSE);
    let mut out = Vec::with_capacity(1024);
    for (name, bytes) in [
        ("success path, nginx sent X-Request-Id", REQUEST_WITH_ID),
        ("success path, id generated", REQUEST_WITHOUT_ID),
    ] {
        let head = request_head(bytes);
        rows.push((
            name,
            count(n, || {
                success_path(&diag, &up, &head, bytes, &resp, &mut out)
            }),
        ));
    }
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
