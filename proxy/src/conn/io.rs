//! The plumbing under one client connection: an input buffer whose current request head
//! stays put while the body streams past it, deadlines that re-arm lazily, and reads and
//! writes that give up at a deadline.
//!
//! # Lazy deadlines
//!
//! Each wait of a request (the next request's first byte, the response header, the gap
//! between two body reads) has a deadline, and arming a tokio timer for each costs a
//! timer-wheel insert and removal per request. A [`Timer`] instead keeps one `Sleep` per
//! connection and only ever moves it *earlier*: when a wait needs a later deadline than the
//! one armed, the timer is left alone, fires early, notices, and re-arms for the real
//! deadline. Deadlines of one kind only move forward as requests go by, so a busy
//! connection re-arms once per timeout period, not once per request. The timer is polled
//! only after the I/O it guards returned `Pending`: a read that completes at once touches
//! no timer at all.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What an I/O wait ended with, when it did not succeed.
#[derive(Debug)]
pub(crate) enum Waited {
    /// The peer closed the connection (a read of 0 bytes).
    Closed,
    /// The socket failed.
    Io(io::Error),
    /// The deadline passed.
    Timeout,
}

impl From<io::Error> for Waited {
    fn from(e: io::Error) -> Self {
        Waited::Io(e)
    }
}

/// A byte buffer read into at its end and consumed from its front. The bytes of the
/// request head being served are *held*: compaction moves only what follows them, so the
/// head's spans stay valid while its body streams through.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    bytes: Vec<u8>,
    /// First unconsumed byte.
    start: usize,
    /// `bytes[..held]` must not move (the current head); `held <= start`.
    held: usize,
    /// Capacity to allocate when empty.
    initial: usize,
}

impl Buffer {
    /// An empty buffer that allocates `initial` bytes on first use.
    pub(crate) fn new(initial: usize) -> Self {
        Buffer {
            initial,
            ..Buffer::default()
        }
    }

    /// The unconsumed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// How many unconsumed bytes there are.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// Whether nothing is left to consume.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks `n` bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.bytes.len() && self.held == 0 {
            self.bytes.clear();
            self.start = 0;
        }
    }

    /// Consumes the `n` bytes of a head just parsed at the front, and holds them where they
    /// are until [`release_head`](Self::release_head). Returns where the head begins.
    pub(crate) fn hold_head(&mut self, n: usize) -> usize {
        let at = self.start;
        self.start += n;
        self.held = self.start;
        at
    }

    /// The held bytes, from `at` (what [`hold_head`](Self::hold_head) returned).
    pub(crate) fn held(&self, at: usize) -> &[u8] {
        &self.bytes[at..self.held]
    }

    /// The current head is done with: its bytes may be reused.
    pub(crate) fn release_head(&mut self) {
        self.held = 0;
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        }
    }

    /// Frees the allocation when nothing is buffered (an idle connection keeps none).
    pub(crate) fn shrink_when_empty(&mut self) {
        if self.bytes.is_empty() && self.held == 0 {
            self.bytes = Vec::new();
        }
    }

    /// Room to read at least `want` more bytes, growing the allocation to no more than
    /// `max` bytes in all (held head included). Returns the room there is.
    pub(crate) fn make_room(&mut self, want: usize, max: usize) -> usize {
        if self.bytes.capacity() == 0 {
            self.bytes.reserve_exact(self.initial.max(want.min(max)));
        }
        if self.bytes.capacity() - self.bytes.len() >= want {
            return self.bytes.capacity() - self.bytes.len();
        }
        // Move what is unconsumed down to just after the held head.
        if self.start > self.held {
            self.bytes.copy_within(self.start.., self.held);
            self.bytes.truncate(self.held + self.len());
            self.start = self.held;
        }
        let room = self.bytes.capacity() - self.bytes.len();
        if room < want && self.bytes.capacity() < max {
            let target = (self.bytes.capacity() * 2)
                .max(self.bytes.len() + want)
                .min(max);
            self.bytes.reserve_exact(target - self.bytes.len());
        }
        self.bytes.capacity() - self.bytes.len()
    }

    /// Reads once from `stream` into the room there is (call [`make_room`] first).
    ///
    /// [`make_room`]: Self::make_room
    pub(crate) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut Stream,
    ) -> Poll<Result<usize, Waited>> {
        // tokio's `read_buf` fills the vector's spare capacity without initialising it; the
        // future holds nothing but the two borrows, so a fresh one per poll loses nothing.
        match ready!(std::pin::pin!(stream.read_buf(&mut self.bytes)).poll(cx)) {
            Ok(0) => Poll::Ready(Err(Waited::Closed)),
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) => Poll::Ready(Err(Waited::Io(e))),
        }
    }
}

/// One lazily re-armed deadline timer (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    /// What `sleep` is set to; never later than the deadline it guards.
    armed: Option<Instant>,
    /// `sleep` was polled since it was last set and is pending: it holds the waker of the
    /// connection's task (always the same task) and will wake it at `armed`.
    pending: bool,
}

impl Timer {
    /// Whether `deadline` has passed. Registers the task's waker for it when not.
    pub(crate) fn poll_passed(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        // Already waiting for a moment at or before `deadline`, and it has not come: the
        // timer will wake the task then. A clock reading is cheaper than polling the
        // `Sleep` (which re-registers the same waker).
        if let Some(armed) = self.armed.filter(|&a| self.pending && a <= deadline) {
            if Instant::now() < armed {
                return Poll::Pending;
            }
        }
        self.pending = false;
        let sleep = match (&mut self.sleep, self.armed) {
            (Some(sleep), Some(armed)) if armed <= deadline => sleep,
            (Some(sleep), _) => {
                sleep.as_mut().reset(deadline);
                self.armed = Some(deadline);
                sleep
            }
            (None, _) => {
                self.armed = Some(deadline);
                self.sleep
                    .insert(Box::pin(tokio::time::sleep_until(deadline)))
            }
        };
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                self.pending = true;
                return Poll::Pending;
            }
            if self.armed >= Some(deadline) {
                return Poll::Ready(());
            }
            // Fired for an earlier request's deadline: on to this one's.
            sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
    }
}

/// Polls `io` until it is ready (`Some`) or `deadline` passes (`None`; a `None` deadline
/// never passes).
pub(crate) async fn until<T>(
    timer: &mut Timer,
    deadline: Option<Instant>,
    mut io: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Option<T> {
    poll_fn(|cx| {
        if let Poll::Ready(r) = io(cx) {
            return Poll::Ready(Some(r));
        }
        match deadline {
            Some(d) => timer.poll_passed(cx, d).map(|()| None),
            None => Poll::Pending,
        }
    })
    .await
}

/// Reads once into `buf` (making room for `want` bytes, up to `max`), by `deadline`.
pub(crate) async fn fill(
    stream: &mut Stream,
    buf: &mut Buffer,
    timer: &mut Timer,
    deadline: Option<Instant>,
    want: usize,
    max: usize,
) -> Result<usize, Waited> {
    if buf.make_room(want, max) == 0 {
        return Ok(0);
    }
    until(timer, deadline, |cx| buf.poll_fill(cx, stream))
        .await
        .unwrap_or(Err(Waited::Timeout))
}

/// Waits until `stream` is readable (data, or the peer's end), by `deadline`, without a
/// buffer: a read of zero bytes that only returns once the socket is ready. Returns 0.
pub(crate) async fn readable(
    stream: &mut Stream,
    timer: &mut Timer,
    deadline: Option<Instant>,
) -> Result<usize, Waited> {
    until(timer, deadline, |cx| {
        let mut empty = ReadBuf::new(&mut []);
        Pin::new(&mut *stream)
            .poll_read(cx, &mut empty)
            .map(|r| r.map(|()| 0).map_err(Waited::Io))
    })
    .await
    .unwrap_or(Err(Waited::Timeout))
}

/// Writes every byte of `parts` by a deadline that restarts with each write that makes
/// progress (`gap` after it), then flushes.
pub(crate) async fn write_all(
    stream: &mut Stream,
    timer: &mut Timer,
    gap: Option<std::time::Duration>,
    parts: &mut [IoSlice<'_>],
) -> Result<(), Waited> {
    write_all_watching(stream, timer, gap, parts, |_, _| Poll::Pending)
        .await
        .map(|_| ())
}

/// How a watched write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Every byte went out.
    All,
    /// The peer spoke while the write waited (`readable` said so): the write stopped.
    PeerSpoke,
}

/// [`write_all`], except that while a write waits, `readable` is asked whether the peer
/// has something to say (an app answering an upload it will not read): then the write stops.
pub(crate) async fn write_all_watching(
    stream: &mut Stream,
    timer: &mut Timer,
    gap: Option<std::time::Duration>,
    parts: &mut [IoSlice<'_>],
    mut readable: impl FnMut(&mut Context<'_>, &mut Stream) -> Poll<()>,
) -> Result<Written, Waited> {
    let mut parts = &mut parts[..];
    IoSlice::advance_slices(&mut parts, 0);
    let deadline = |now: Instant| gap.map(|g| now + g);
    let mut by = None;
    while !parts.is_empty() {
        let n = poll_fn(|cx| {
            match Pin::new(&mut *stream).poll_write_vectored(cx, parts) {
                Poll::Ready(r) => return Poll::Ready(r.map(Some).map_err(Waited::Io)),
                Poll::Pending => {}
            }
            if readable(cx, stream).is_ready() {
                return Poll::Ready(Ok(None));
            }
            let d = *by.get_or_insert_with(|| deadline(Instant::now()));
            match d {
                Some(d) => timer.poll_passed(cx, d).map(|()| Err(Waited::Timeout)),
                None => Poll::Pending,
            }
        })
        .await?;
        let Some(n) = n else {
            return Ok(Written::PeerSpoke);
        };
        if n == 0 {
            return Err(Waited::Io(io::ErrorKind::WriteZero.into()));
        }
        by = None;
        IoSlice::advance_slices(&mut parts, n);
    }
    poll_fn(|cx| Pin::new(&mut *stream).poll_flush(cx))
        .await
        .map_err(Waited::Io)?;
    Ok(Written::All)
}

/// Whether a pooled connection is still usable: nothing to read (not closed, no stray
/// bytes) without waiting. Costs no system call when the socket has been quiet, since
/// tokio then knows it is not readable.
pub(crate) fn quiet(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}

/// Shuts the write side down and lets the peer see the end, best effort.
pub(crate) async fn close(stream: &mut Stream) {
    let _ = poll_fn(|cx| Pin::new(&mut *stream).poll_shutdown(cx)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_head_survives_compaction() {
        let mut b = Buffer::new(16);
        b.make_room(16, 64);
        b.bytes.extend_from_slice(b"HEAD....BODY1234");
        let at = b.hold_head(8);
        b.consume(4);
        let room = b.make_room(12, 64);
        assert!(room >= 12);
        assert_eq!(b.held(at), b"HEAD....");
        assert_eq!(b.data(), b"1234");
        b.release_head();
        b.consume(4);
        assert!(b.is_empty());
        b.shrink_when_empty();
        assert_eq!(b.bytes.capacity(), 0);
    }

    #[test]
    fn growth_stops_at_the_limit() {
        let mut b = Buffer::new(8);
        assert_eq!(b.make_room(4, 20), 8);
        b.bytes.extend_from_slice(b"12345678");
        assert_eq!(b.make_room(100, 20), 12);
        b.bytes.extend_from_slice(b"abcdefghijkl");
        assert_eq!(b.make_room(1, 20), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_armed_early_re_arms_for_the_later_deadline() {
        let mut t = Timer::default();
        let start = Instant::now();
        let first = start + std::time::Duration::from_secs(10);
        let second = start + std::time::Duration::from_secs(15);
        // Armed for the first deadline, then polled for a later one: no reset.
        assert!(poll_fn(|cx| Poll::Ready(t.poll_passed(cx, first).is_pending())).await);
        let passed = poll_fn(|cx| t.poll_passed(cx, second).map(|()| Instant::now()));
        assert_eq!(passed.await, second);
        // An earlier deadline than the one armed resets at once.
        let earlier = Instant::now() + std::time::Duration::from_secs(1);
        let later = earlier + std::time::Duration::from_secs(60);
        assert!(poll_fn(|cx| Poll::Ready(t.poll_passed(cx, later).is_pending())).await);
        let passed = poll_fn(|cx| t.poll_passed(cx, earlier).map(|()| Instant::now()));
        assert_eq!(passed.await, earlier);
    }
}
