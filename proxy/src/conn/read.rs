//! The client side of a connection: reading request heads with the client's deadlines and
//! size limit, and answering the heads handoff refuses. The admin listener reads its
//! requests the same way.

use std::io::IoSlice;
use std::time::Instant;

use handoff_diag::DiagResponse;
use handoff_http1::{Parsed, RequestHead};
use http::StatusCode;
use pingora::protocols::Stream;
use tokio::time::Instant as Deadline;

use super::io::{self, Buffer, Timer, Waited};
use super::{ClientFault, ClientLimits};

/// Bytes of client input read at once, and the input buffer's size when it first fills.
pub(crate) const CLIENT_READ: usize = 2048;
/// How long a connection waits for its next request before it gives back its buffers.
pub(crate) const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A client connection's own state.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) stream: Stream,
    /// Client input: the current head (held), body bytes, pipelined requests.
    pub(crate) input: Buffer,
    /// The current request's head.
    pub(crate) head: RequestHead,
    /// The client side's waits.
    pub(crate) timer: Timer,
    /// Requests served so far.
    pub(crate) served: u32,
    /// When the connection began waiting for its next request (the accept, at first).
    pub(crate) idle_since: Instant,
}

/// What reading the next request head came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// A head, held in `input` from this offset.
    Ready(usize),
    /// The connection is done without a fault: closed by the client between requests, or
    /// idle past `keepalive_timeout`.
    Done,
    /// The client's fault; answered already where there is an answer, and the
    /// connection is to be closed.
    Fault(ClientFault),
}

impl Client {
    /// A client connection just accepted.
    pub(crate) fn new(stream: Stream) -> Client {
        Client {
            stream,
            input: Buffer::new(CLIENT_READ),
            head: RequestHead::default(),
            timer: Timer::default(),
            served: 0,
            idle_since: Instant::now(),
        }
    }

    /// Reads the next request head, or takes it from what was already read (pipelining).
    /// A refused or timed-out head is answered (`out` is scratch space for the answer).
    ///
    /// A connection that waits idle for longer than [`RELEASE_AFTER`] lets go of its
    /// buffers: `on_idle` frees what the caller holds for requests, `out` and the input
    /// buffer are freed here, and the wait goes on without a buffer. A busy connection keeps
    /// them from request to request and allocates nothing.
    pub(crate) async fn read_head(
        &mut self,
        limits: &ClientLimits,
        out: &mut Vec<u8>,
        mut on_idle: impl FnMut(),
    ) -> Head {
        let first = self.served == 0;
        // The first request's clock runs from the accept; a later one's from its first
        // byte, after at most `keepalive_timeout` of silence.
        let mut deadline =
            first.then(|| Deadline::from_std(self.idle_since) + limits.header_timeout);
        let mut got_bytes = false;
        // Idle past RELEASE_AFTER: buffers given back; then woken by the socket.
        let (mut released, mut woken) = (false, false);
        loop {
            if !self.input.is_empty() {
                match self.head.parse(self.input.data(), &limits.head) {
                    Ok(Parsed::Complete) => {
                        return Head::Ready(self.input.hold_head(self.head.len))
                    }
                    Ok(Parsed::Partial) => {}
                    Err(e) => return self.refuse(e.status(), limits, out).await,
                }
                if !got_bytes {
                    got_bytes = true;
                    deadline.get_or_insert_with(|| Deadline::now() + limits.header_timeout);
                }
            }
            let idle = Deadline::from_std(self.idle_since);
            let keepalive = idle + limits.keepalive_timeout;
            let (wait, releasing) = match deadline {
                Some(d) => (d, false),
                None if !released && idle + RELEASE_AFTER < keepalive => {
                    (idle + RELEASE_AFTER, true)
                }
                None => (keepalive, false),
            };
            if released && !woken {
                // Idle and bufferless: wait until the socket is readable, then read into a
                // buffer allocated for the request that is coming.
                match io::readable(&mut self.stream, &mut self.timer, Some(wait)).await {
                    Ok(_) => {
                        woken = true;
                        continue;
                    }
                    Err(_) => return Head::Done,
                }
            }
            let read = io::fill(
                &mut self.stream,
                &mut self.input,
                &mut self.timer,
                Some(wait),
                CLIENT_READ,
                limits.head.head_bytes,
            )
            .await;
            match read {
                Ok(n) if n > 0 => {}
                // No room left: the head is as large as the limit allows.
                Ok(_) => return self.refuse(431, limits, out).await,
                Err(Waited::Timeout) if releasing => {
                    on_idle();
                    *out = Vec::new();
                    self.input.shrink_when_empty();
                    released = true;
                }
                Err(Waited::Timeout) if first || got_bytes => {
                    return self.refuse(408, limits, out).await
                }
                Err(Waited::Closed | Waited::Io(_)) if got_bytes => {
                    return Head::Fault(ClientFault::ClosedMidHeader)
                }
                // The client closed its idle connection, or it idled past the limit.
                Err(_) => return Head::Done,
            }
        }
    }

    /// Answers with `status` (408 for a head too slow, 4xx or 5xx for one refused) and
    /// says the connection is to be closed: the client's fault.
    pub(crate) async fn refuse(
        &mut self,
        status: u16,
        limits: &ClientLimits,
        out: &mut Vec<u8>,
    ) -> Head {
        let fault = match status {
            408 => ClientFault::HeaderTimeout,
            s => ClientFault::Refused(s),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let answer = DiagResponse::refusal(status);
        out.clear();
        super::respond::serialize(&answer, false, out);
        // Best effort: the connection closes whether or not the client reads it.
        let _ = io::write_all(
            &mut self.stream,
            &mut self.timer,
            Some(limits.send_timeout),
            &mut [IoSlice::new(out), IoSlice::new(&answer.body)],
        )
        .await;
        Head::Fault(fault)
    }
}
