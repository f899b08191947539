//! The `handoff` binary: everything lives in the library; see `handoff::cli`.
//!
//! jemalloc's configuration symbol, below, is the one `unsafe` handoff keeps by design; the
//! reason is written next to it.

fn main() -> std::process::ExitCode {
    handoff::cli::main()
}

// The global allocator (feature `jemalloc`, the default; `mimalloc`; or neither: the
// system's) and its configuration. The A/B in benches/RESULTS.md: jemalloc is the only one
// within the RSS targets (mimalloc was 4-9 % cheaper per request but idles at 21 MiB and took
// 120 MiB for 1,000 idle connections; the system allocator cost 5-16 % more CPU and kept
// 38 MiB after load).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them). A background thread hands freed pages back to the kernel after 1 s,
/// so RSS returns to near its idle size after a burst (24.7 → 14.0 MiB after the
/// benchmark's rounds) instead of waiting for the next allocation; the CPU per request
/// was the same. `tests/load.rs` checks that the background thread runs.
///
/// Why `unsafe_code` is allowed here: `export_name` puts this static into the global
/// symbol table under the name jemalloc reads before `main` (tikv-jemalloc-sys declares
/// it as `_rjem_malloc_conf: Option<&'static c_char>`, C's `const char *malloc_conf`),
/// and the compiler cannot check that the name and type match that declaration. They
/// do: a `&[u8; N]` is one non-null pointer, and the bytes end in NUL. The safe way,
/// the build-time `JEMALLOC_SYS_WITH_MALLOC_CONF`, would have to live in
/// `.cargo/config.toml`, and a build that does not read that file would lose the
/// options without a word.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals, unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
