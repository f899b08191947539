//! The systemd notification protocol (`sd_notify`), spoken without libsystemd: one
//! datagram to `$NOTIFY_SOCKET`, a path or (with a leading `@`) an abstract name, through
//! std's own socket types; the monotonic clock through `nix`. No `unsafe` here.
//!
//! A no-op when `$NOTIFY_SOCKET` is unset, as in containers.

use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::sys::time::TimeValLike as _;
use nix::time::ClockId;

/// Sends `state` (e.g. `READY=1`) to the socket named by `$NOTIFY_SOCKET`, if any.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(error = %e, state, "could not notify systemd");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    // A leading '@' names a socket in the abstract namespace.
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// `CLOCK_MONOTONIC` in microseconds, as `sd_notify(3)` asks for in `MONOTONIC_USEC=` next
/// to `RELOADING=1`: systemd (`Type=notify-reload`) uses it to tell which reload cycle the
/// message belongs to. `std::time::Instant` reads the same clock but does not expose its
/// value.
pub fn monotonic_usec() -> u64 {
    // CLOCK_MONOTONIC exists on every Linux; zero would only make systemd ignore the stamp.
    ClockId::CLOCK_MONOTONIC
        .now()
        .map_or(0, |t| u64::try_from(t.num_microseconds()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Seconds of `CLOCK_MONOTONIC` as std's `Instant` (which reads that clock on Linux)
    /// shows them in its `Debug` form: `Instant { tv_sec: 12, tv_nsec: 345 }`.
    fn instant_secs(i: Instant) -> u64 {
        let debug = format!("{i:?}");
        let after = debug.split("tv_sec: ").nth(1).expect("tv_sec in {debug}");
        after[..after.find(',').expect(", after tv_sec")]
            .parse()
            .unwrap()
    }

    /// The stamp is CLOCK_MONOTONIC (what std's Instant reads), in microseconds, and moves
    /// with it.
    #[test]
    fn monotonic_usec_is_the_monotonic_clock_in_microseconds() {
        let before = Instant::now();
        let first = monotonic_usec();
        let secs = instant_secs(before);
        assert!(
            (secs..=secs + 1).contains(&(first / 1_000_000)),
            "{first} µs against Instant's {secs} s"
        );
        while before.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        let second = monotonic_usec();
        let moved = second - first;
        // 20 ms apart: not milliseconds (20), not nanoseconds (20,000,000 and more).
        assert!((20_000..10_000_000).contains(&moved), "{moved} µs");
    }
}
