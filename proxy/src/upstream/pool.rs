//! Idle keep-alive connections to one upstream, without a task per connection.
//!
//! pingora's pool watches every idle connection with a task of its own and asks the kernel
//! for the peer's address each time one is reused. This one keeps idle connections in a
//! short list per worker thread (a lock nobody else contends for), newest last, and:
//!
//! - on reuse, takes the newest one that is still *quiet*: a non-blocking look that costs
//!   no system call when the socket has been silent, and finds the connections the app
//!   closed (or wrote stray bytes to) while they idled;
//! - drops connections idle for longer than `pool_idle_timeout`, on reuse and from one
//!   sweeper task per pool, which also closes the sockets the app closed, so they do not
//!   linger in CLOSE_WAIT. The sweeper runs only while the pool holds connections;
//! - keeps at most `upstream_pool_size` connections in all.
//!
//! A connection the app closed between the look and the request is the keep-alive race
//! that the proxy loop retries (idempotent requests only).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use tokio::sync::Notify;

use crate::conn::io::quiet;

/// A pooled connection handed out for reuse.
#[derive(Debug)]
pub(crate) struct Reused {
    /// The connection.
    pub(crate) stream: Stream,
    /// How long it sat in the pool.
    pub(crate) idle: Duration,
}

/// The idle connections of one upstream.
#[derive(Debug)]
pub(crate) struct Pool {
    shards: Box<[Mutex<Vec<Idle>>]>,
    /// Connections in all shards.
    count: AtomicUsize,
    cap: usize,
    idle_timeout: Duration,
    /// Wakes the sweeper when the pool stops being empty.
    wake: Notify,
    sweeping: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    stream: Stream,
    since: Instant,
}

impl Pool {
    /// A pool of at most `cap` connections over `shards` worker threads; an
    /// `idle_timeout` of zero keeps none.
    pub(crate) fn new(shards: usize, cap: usize, idle_timeout: Duration) -> Pool {
        Pool {
            shards: (0..shards.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            count: AtomicUsize::new(0),
            cap,
            idle_timeout,
            wake: Notify::new(),
            sweeping: AtomicBool::new(false),
        }
    }

    /// The newest usable idle connection, if any.
    pub(crate) fn take(&self, now: Instant) -> Option<Reused> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let home = shard_index(self.shards.len());
        for i in 0..self.shards.len() {
            let shard = &self.shards[(home + i) % self.shards.len()];
            let mut idle = shard.lock().unwrap_or_else(PoisonError::into_inner);
            while let Some(mut c) = idle.pop() {
                self.count.fetch_sub(1, Ordering::Relaxed);
                let age = now.saturating_duration_since(c.since);
                if age < self.idle_timeout && quiet(&mut c.stream) {
                    return Some(Reused {
                        stream: c.stream,
                        idle: age,
                    });
                }
                // Expired, closed by the app, or holding stray bytes: dropped (closed).
            }
        }
        None
    }

    /// Keeps `stream` for reuse, unless the pool is full or keeps nothing.
    pub(crate) fn put(self: &Arc<Self>, stream: Stream, now: Instant) {
        if self.idle_timeout.is_zero() || self.count.load(Ordering::Relaxed) >= self.cap {
            return;
        }
        let shard = &self.shards[shard_index(self.shards.len())];
        shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Idle { stream, since: now });
        if self.count.fetch_add(1, Ordering::Relaxed) == 0 {
            self.start_sweeping();
        }
    }

    fn start_sweeping(self: &Arc<Self>) {
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        } else {
            self.wake.notify_one();
        }
    }

    /// Drops what has expired or been closed; returns how many are left.
    fn sweep_once(&self, now: Instant) -> usize {
        for shard in self.shards.iter() {
            let mut idle = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = idle.len();
            idle.retain_mut(|c| {
                now.saturating_duration_since(c.since) < self.idle_timeout && quiet(&mut c.stream)
            });
            self.count.fetch_sub(before - idle.len(), Ordering::Relaxed);
        }
        self.count.load(Ordering::Relaxed)
    }
}

/// The sweeper of one pool: ends when the pool is dropped (a reload replaced it).
async fn sweep(pool: Weak<Pool>) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        let every = (p.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
        if p.sweep_once(Instant::now()) == 0 {
            // Empty: wait for the next connection, and let go of the pool now and then so
            // that a pool a reload replaced is freed.
            let _ = tokio::time::timeout(Duration::from_secs(5), p.wake.notified()).await;
        } else {
            drop(p);
            tokio::time::sleep(every).await;
        }
    }
}

/// This thread's shard: worker threads take turns at the shards as they first use one.
fn shard_index(shards: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    MINE.with(|mine| {
        if mine.get() == usize::MAX {
            mine.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        mine.get() % shards
    })
}
