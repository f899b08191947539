//! Per-request bookkeeping: what happened to the request so far, cheaply.
//!
//! The success path only stores `Instant`s and counters here; evidence records and strings
//! are built from it when (and only when) something fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use handoff_diag::{Evidence, Failure, InFlightGuard, Phase};
use http::HeaderValue;

use crate::upstream::Upstream;

/// State of one request through the proxy.
#[derive(Debug)]
pub struct Ctx {
    /// The upstream snapshot this request uses (a reload does not change it mid-request).
    pub upstream: Arc<Upstream>,
    /// When the request header had been read from nginx.
    pub start: Instant,
    /// Where the request is now.
    pub phase: Phase,
    /// Attempt number, 1-based after the first `upstream_peer`.
    pub attempt: u32,
    /// Start of the current attempt: `start` for the first (the hooks in between take
    /// well under a microsecond), a fresh reading for a retry.
    pub attempt_start: Instant,
    /// The current attempt uses a pooled keep-alive connection.
    pub reused: bool,
    /// How long that pooled connection had been idle.
    pub idle: Option<Duration>,
    /// The upstream socket of the current attempt, or -1.
    pub fd: i32,
    /// Connect duration of a new connection.
    pub connect: Option<Duration>,
    /// When the request header was handed to the upstream connection. Stamped as the
    /// connection is handed over (`connected_to_upstream`): `upstream_request_filter` runs
    /// next, microseconds later, and one clock reading serves both.
    pub request_written: Option<Instant>,
    /// When the (final) response header arrived.
    pub header_at: Option<Instant>,
    /// Approximate size of the response header section.
    pub header_bytes: Option<usize>,
    /// Status the upstream answered with, 0 before a final header.
    pub upstream_status: u16,
    /// Request body bytes read from nginx and forwarded.
    pub request_body_bytes: u64,
    /// The request body's length when known (Content-Length, or 0 without a body).
    pub request_body_length: Option<u64>,
    /// Response body bytes received from the upstream.
    pub response_body_bytes: u64,
    /// This request carried the debug header with the right token.
    pub full_exposure: bool,
    /// The classified failure of the latest failed attempt.
    pub failure: Option<Box<Failure>>,
    /// nginx went away mid-request.
    pub client_aborted: bool,
    /// The request failed on the client's side (e.g. its body was cut short).
    pub client_error: bool,
    /// Status handoff answered with itself (0: none).
    pub answered: u16,
    /// handoff's own answer was complete and the client's connection may take another
    /// request: `logging` hands it back (see `header_deadline::hand_back`).
    pub keep_client: bool,
    _in_flight: InFlightGuard,
}

// === impl Ctx ===

impl Ctx {
    /// A context for a request to `upstream`, counted as in flight until dropped.
    pub fn new(upstream: Arc<Upstream>) -> Self {
        let now = Instant::now();
        let in_flight = upstream.metrics.in_flight();
        Ctx {
            upstream,
            start: now,
            phase: Phase::Select,
            attempt: 0,
            attempt_start: now,
            reused: false,
            idle: None,
            fd: -1,
            connect: None,
            request_written: None,
            header_at: None,
            header_bytes: None,
            upstream_status: 0,
            request_body_bytes: 0,
            request_body_length: None,
            response_body_bytes: 0,
            full_exposure: false,
            failure: None,
            client_aborted: false,
            client_error: false,
            answered: 0,
            keep_client: false,
            _in_flight: in_flight,
        }
    }

    /// Resets what belongs to one attempt; called when a new attempt starts.
    pub fn begin_attempt(&mut self) {
        self.attempt += 1;
        if self.attempt > 1 {
            self.attempt_start = Instant::now();
        }
        self.phase = Phase::Connect;
        self.reused = false;
        self.idle = None;
        self.fd = -1;
        self.connect = None;
        self.request_written = None;
        self.header_at = None;
        self.header_bytes = None;
        self.upstream_status = 0;
        self.response_body_bytes = 0;
    }

    /// Body bytes still to forward, when the body's length is known.
    pub fn request_body_remaining(&self) -> Option<u64> {
        self.request_body_length
            .map(|n| n.saturating_sub(self.request_body_bytes))
    }

    /// The evidence gathered so far, for classification. Only called on failure.
    pub fn evidence(&self, request_id: &str, method: &str, path: &str) -> Evidence {
        let since = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(self.start));
        let u = &self.upstream;
        Evidence {
            upstream: u.name.clone(),
            next_hop: u.next_hop.clone(),
            phase: self.phase,
            attempt: self.attempt.max(1),
            reused: self.reused,
            idle: self.idle,
            connect: self.connect,
            to_request_written: since(self.request_written),
            to_header: since(self.header_at),
            elapsed: self.start.elapsed(),
            request_bytes_sent: self.request_body_bytes,
            response_bytes_received: self.response_body_bytes,
            response_header_bytes: self.header_bytes,
            header_limit: u.settings.max_response_header_bytes,
            nginx_buffer_bytes: u.settings.nginx_buffer_bytes,
            timeouts: u.timeouts,
            request_id: request_id.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            ..Evidence::default()
        }
    }
}

/// When each pooled upstream connection was last released, indexed by file descriptor.
///
/// pingora's pool does not say how long a reused connection sat idle, and that age is what
/// tells a keep-alive race from a crash. Atomics indexed by fd cost one store per response
/// and no lock. They live in chunks of 1,024 made on first use, so a process with a few
/// dozen upstream connections holds 8 KiB, not a table sized for the fd limit; fds above
/// 65,535 simply get no idle age.
#[derive(Debug)]
pub struct IdleClock {
    epoch: Instant,
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

const CHUNK: usize = 1024;
const CHUNKS: usize = 64;

// === impl IdleClock ===

impl IdleClock {
    /// The process-wide clock.
    pub fn global() -> &'static IdleClock {
        static CLOCK: OnceLock<IdleClock> = OnceLock::new();
        CLOCK.get_or_init(|| IdleClock {
            epoch: Instant::now(),
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
        })
    }

    fn slot(&self, fd: i32) -> Option<&AtomicU64> {
        let fd = usize::try_from(fd).ok()?;
        let chunk = self.chunks.get(fd / CHUNK)?;
        let chunk = chunk.get_or_init(|| (0..CHUNK).map(|_| AtomicU64::new(0)).collect());
        chunk.get(fd % CHUNK)
    }

    /// Notes that the connection on `fd` finished a response and may go back to the pool.
    pub fn released(&self, fd: i32, now: Instant) {
        if let Some(slot) = self.slot(fd) {
            let nanos = now.saturating_duration_since(self.epoch).as_nanos() as u64;
            slot.store(nanos.max(1), Ordering::Relaxed);
        }
    }

    /// Forgets `fd`: a new connection now owns that number.
    pub fn opened(&self, fd: i32) {
        if let Some(slot) = self.slot(fd) {
            slot.store(0, Ordering::Relaxed);
        }
    }

    /// How long the connection on `fd` has been idle, if it was released before.
    pub fn idle_for(&self, fd: i32, now: Instant) -> Option<Duration> {
        let released = self.slot(fd)?.load(Ordering::Relaxed);
        (released != 0).then(|| {
            let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
            Duration::from_nanos(now.saturating_sub(released))
        })
    }
}

/// A new request id: 16 lowercase hex digits from a per-thread xorshift generator, as the
/// header value it travels in (one allocation).
pub fn new_request_id() -> HeaderValue {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    let n = STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((n >> ((15 - i) * 4)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&digits).expect("hex digits are a valid header value")
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded from the OS per process and mixed per instance.
    RandomState::new().hash_one(std::thread::current().id()) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_hex_digits_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 16);
        assert!(a.as_bytes().iter().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn idle_clock_measures_release_to_reuse() {
        let clock = IdleClock::global();
        let t0 = Instant::now();
        clock.released(7, t0);
        let idle = clock.idle_for(7, t0 + Duration::from_millis(1500)).unwrap();
        assert!(idle >= Duration::from_millis(1499) && idle <= Duration::from_millis(1501));
        clock.opened(7);
        assert_eq!(clock.idle_for(7, t0), None);
        assert_eq!(clock.idle_for(-1, t0), None);
    }
}
