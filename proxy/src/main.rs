//! The `handoff` binary: everything lives in the library; see `handoff::cli`.

// jemalloc: with fat LTO it measured -23% CPU per request against glibc malloc and half the
// RSS of mimalloc (../docs/performance notes in benches/RESULTS.md).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    handoff::cli::main()
}
