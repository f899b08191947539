//! One request's attempts: a connection (pooled or new), the request head and body
//! written, the response head read; and the one retry the keep-alive race allows.

use std::io::IoSlice;
use std::task::Poll;
use std::time::Instant;

use handoff_diag::Phase;
use handoff_http1::{chunked, BodyLength, ChunkedDecoder, Method, Parsed, Step};
use pingora::protocols::Stream;
use pingora::Error;
use tokio::time::Instant as Deadline;

use super::io::{self, Waited};
use super::{Conn, Hooks, Progress, Request, CLIENT_READ, UPSTREAM_READ};
use crate::upstream::http1::{self, fail, PREMATURE_BODY_END};
use crate::upstream::Upstream;

/// How much of a request body can be on its way to the app (socket buffers) without
/// handoff being able to tell whether the app read it. A hang-up with less than this left
/// to send counts as a hang-up before the response; with more, as a refused upload.
const IN_FLIGHT_BYTES: u64 = 64 * 1024;
/// Request body bytes buffered from the client at once.
const BODY_WINDOW: usize = 16 * 1024;

/// Why an attempt (or the request) did not get a response head.
#[derive(Debug)]
pub(super) enum Failed {
    /// The upstream failed. `stale`: in a way a pooled connection the app had already
    /// closed fails (write error, or close or reset before any response byte).
    Upstream { error: Box<Error>, stale: bool },
    /// The client went away.
    ClientAborted(Box<Error>),
    /// The client's request body cannot be read: answer with this status and close.
    Client(u16, Box<Error>),
}

/// The state of the request body after a successful attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// All of it was read from the client and sent.
    Sent,
    /// The response came before all of it was read: the client connection cannot be reused,
    /// nor the upstream one.
    Unread,
}

impl<H: Hooks> Conn<'_, H> {
    /// Runs attempts until one gets a response head (returned with its connection), or the
    /// request fails. `rec` and `p` are the request's record and progress; `at` is where its
    /// head is held.
    pub(super) async fn attempts(
        &mut self,
        upstream: &Upstream,
        rec: &mut H::Record,
        p: &mut Progress,
        at: usize,
    ) -> Result<(Stream, Body), Failed> {
        let app = self.app;
        // The upstream head is written once; a retry sends the same bytes.
        let mut upstream_head = std::mem::take(&mut self.out);
        upstream_head.clear();
        // The client's head, plus what handoff adds, in one allocation (kept while the
        // connection is busy).
        upstream_head.reserve(self.client.head.len + 256);
        {
            let req = Request {
                head: &self.client.head,
                buf: self.client.input.held(at),
            };
            http1::write_request_head(
                &mut upstream_head,
                &self.client.head,
                req.buf,
                &upstream.default_host,
                |f| app.hooks.forward(rec, req, f),
                |out| app.hooks.add_fields(rec, out),
            );
        }
        // A body already read whole is sent with the head and kept until the attempt
        // succeeds, so that it can be sent again.
        let buffered = match self.client.head.body {
            BodyLength::None => Some(0),
            BodyLength::Length(n) if n <= self.client.input.len() as u64 => Some(n as usize),
            _ => None,
        };
        let result = loop {
            let now = Instant::now();
            p.begin_attempt(now);
            let result = self
                .attempt(upstream, rec, p, &upstream_head, buffered)
                .await;
            match result {
                Err(Failed::Upstream { error, stale }) => {
                    let req = Request {
                        head: &self.client.head,
                        buf: self.client.input.held(at),
                    };
                    app.hooks.attempt_failed(rec, p, req, &error);
                    // Only the keep-alive race is retried, once, on a new connection, and
                    // only for a method safe to repeat whose body is still at hand.
                    let retry = stale
                        && p.reused
                        && p.attempt == 1
                        && self.client.head.kind.is_idempotent()
                        && buffered.is_some();
                    if !retry {
                        break Err(Failed::Upstream { error, stale });
                    }
                }
                other => break other,
            }
        };
        if let Some(n) = buffered {
            // Sent (or never to be sent again): the client's bytes are done with.
            self.client.input.consume(n);
        }
        self.out = upstream_head;
        result
    }

    /// One attempt.
    async fn attempt(
        &mut self,
        upstream: &Upstream,
        rec: &mut H::Record,
        p: &mut Progress,
        upstream_head: &[u8],
        buffered: Option<usize>,
    ) -> Result<(Stream, Body), Failed> {
        let settings = &upstream.settings;
        // A pooled connection for the first attempt; a retry gets a new one.
        let reused = if p.attempt == 1 {
            upstream.pool.take(p.attempt_start)
        } else {
            None
        };
        let mut up = match reused {
            Some(r) => {
                p.reused = true;
                p.idle = Some(r.idle);
                r.stream
            }
            None => match upstream.connect().await {
                Ok(s) => {
                    let now = Instant::now();
                    p.connect = Some(now.saturating_duration_since(p.attempt_start));
                    s
                }
                Err(e) => {
                    return Err(Failed::Upstream {
                        error: e.into_up(),
                        stale: false,
                    })
                }
            },
        };
        p.phase = Phase::Request;
        self.app.hooks.connected(rec, p);

        // The head, with the body when it is all here already.
        let body = &self.client.input.data()[..buffered.unwrap_or(0)];
        let gap = Some(settings.write_timeout);
        io::write_all(
            &mut up,
            &mut self.upstream_timer,
            gap,
            &mut [IoSlice::new(upstream_head), IoSlice::new(body)],
        )
        .await
        .map_err(|w| Failed::Upstream {
            error: fail::write_head(w),
            stale: true,
        })?;
        p.request_body_length = match self.client.head.body {
            BodyLength::None => Some(0),
            BodyLength::Length(n) => Some(n),
            BodyLength::Chunked => None,
        };
        p.request_body_bytes = body.len() as u64;
        let mut sent = Body::Sent;
        if buffered.is_none() {
            if self.client.head.expect_continue && self.client.input.is_empty() {
                // The client waits for a go-ahead before it sends the body (RFC 9110
                // §10.1.1); handoff gives it, now that the upstream is there.
                let send = self.app.limits.send_timeout;
                io::write_all(
                    &mut self.client.stream,
                    &mut self.client.timer,
                    Some(send),
                    &mut [IoSlice::new(b"HTTP/1.1 100 Continue\r\n\r\n")],
                )
                .await
                .map_err(|w| Failed::ClientAborted(fail::client_gone(w, "writing 100 Continue")))?;
            }
            sent = self.send_body(&mut up, upstream, p).await?;
        }
        if p.phase == Phase::Request {
            p.phase = Phase::ResponseHeader;
        }
        // The request is written: the response head has `header_timeout` from now.
        let written = if p.request_body_bytes == 0 && p.reused {
            p.attempt_start
        } else {
            Instant::now()
        };
        p.request_written = Some(written);
        self.read_response_head(&mut up, upstream, p, written)
            .await?;
        Ok((up, sent))
    }

    /// Streams the request body that was not all buffered, decoding a chunked one and
    /// encoding it anew. Watches the upstream meanwhile: an early response (an app that
    /// refuses an upload answers before reading it) ends the upload.
    async fn send_body(
        &mut self,
        up: &mut Stream,
        upstream: &Upstream,
        p: &mut Progress,
    ) -> Result<Body, Failed> {
        let settings = &upstream.settings;
        let limits = self.app.limits;
        let window = self.client.head.len + BODY_WINDOW;
        let mut remaining = match self.client.head.body {
            BodyLength::Length(n) => Some(n - p.request_body_bytes),
            _ => None,
        };
        let mut decoder = (remaining.is_none()).then(ChunkedDecoder::new);
        loop {
            // Forward what is buffered.
            if !self.client.input.is_empty() {
                let done = match (&mut decoder, &mut remaining) {
                    (None, Some(left)) => {
                        let take = (*left).min(self.client.input.len() as u64) as usize;
                        let data = &self.client.input.data()[..take];
                        let timer = &mut self.upstream_timer;
                        if !write_up(up, timer, &mut self.response, settings, &[data]).await? {
                            return Ok(Body::Unread);
                        }
                        self.client.input.consume(take);
                        *left -= take as u64;
                        p.request_body_bytes += take as u64;
                        *left == 0
                    }
                    (Some(dec), _) => match dec.decode(self.client.input.data()) {
                        Ok(Step::Data(r)) => {
                            let line = chunked::SizeLine::new(r.len() as u64);
                            let data = &self.client.input.data()[r.clone()];
                            let parts = [line.as_bytes(), data, chunked::CRLF];
                            let timer = &mut self.upstream_timer;
                            if !write_up(up, timer, &mut self.response, settings, &parts).await? {
                                return Ok(Body::Unread);
                            }
                            self.client.input.consume(r.end);
                            p.request_body_bytes += r.len() as u64;
                            false
                        }
                        Ok(Step::NeedMore) => {
                            self.client.input.consume(self.client.input.len());
                            false
                        }
                        Ok(Step::Done(n)) => {
                            self.client.input.consume(n);
                            let last = [chunked::LAST_CHUNK];
                            let timer = &mut self.upstream_timer;
                            if !write_up(up, timer, &mut self.response, settings, &last).await? {
                                return Ok(Body::Unread);
                            }
                            true
                        }
                        Err(e) => {
                            let error = Error::explain(
                                pingora::ErrorType::Custom("InvalidChunk"),
                                format!("invalid chunked request body: {e}"),
                            )
                            .into_down();
                            return Err(Failed::Client(400, error));
                        }
                    },
                    (None, None) => unreachable!("a body is either sized or chunked"),
                };
                if remaining.is_some_and(|n| n <= IN_FLIGHT_BYTES) {
                    p.phase = Phase::ResponseHeader;
                }
                if done {
                    return Ok(Body::Sent);
                }
                if !self.client.input.is_empty() {
                    continue;
                }
            }
            // Read more from the client, unless the upstream has answered meanwhile.
            let deadline = Deadline::now() + limits.body_timeout;
            if self.client.input.make_room(CLIENT_READ, window) == 0 {
                unreachable!("consumed input leaves room");
            }
            self.response
                .make_room(UPSTREAM_READ, settings.max_response_header_bytes);
            let Conn {
                client, response, ..
            } = self;
            let event = io::until(&mut client.timer, Some(deadline), |cx| {
                if let Poll::Ready(r) = client.input.poll_fill(cx, &mut client.stream) {
                    return Poll::Ready(Side::Client(r));
                }
                // Early response bytes, or the upstream hanging up, end the upload.
                response.poll_fill(cx, up).map(Side::Upstream)
            })
            .await;
            match event {
                Some(Side::Client(Ok(_))) => {}
                Some(Side::Upstream(Ok(_))) => return Ok(Body::Unread),
                Some(Side::Upstream(Err(w))) => {
                    return Err(Failed::Upstream {
                        error: fail::read_head(w, 0),
                        stale: true,
                    })
                }
                None => {
                    let error = Error::explain(
                        pingora::ErrorType::ReadTimedout,
                        format!(
                            "no request body byte within client_body_timeout ({:?})",
                            limits.body_timeout
                        ),
                    )
                    .into_down();
                    return Err(Failed::Client(408, error));
                }
                Some(Side::Client(Err(Waited::Closed))) => {
                    let error = Error::explain(
                        PREMATURE_BODY_END,
                        "the client closed its connection before the request body ended",
                    )
                    .into_down();
                    return Err(Failed::Client(400, error));
                }
                Some(Side::Client(Err(w))) => {
                    return Err(Failed::ClientAborted(fail::client_gone(
                        w,
                        "reading the request body",
                    )))
                }
            }
        }
    }

    /// Reads the final response head into `response`/`resp`, past any 1xx (handoff answers
    /// `Expect` itself and forwards no interim response but 101), by `written` plus
    /// `header_timeout`. Watches the client meanwhile: if it goes away, so does the request.
    async fn read_response_head(
        &mut self,
        up: &mut Stream,
        upstream: &Upstream,
        p: &mut Progress,
        written: Instant,
    ) -> Result<(), Failed> {
        let settings = &upstream.settings;
        let limit = settings.max_response_header_bytes;
        let deadline = Deadline::from_std(written) + settings.header_timeout;
        let method = self.client.head.kind;
        loop {
            if !self.response.is_empty() {
                match self.resp.parse(self.response.data(), limit, method) {
                    Ok(Parsed::Complete) if self.resp.is_informational() => {
                        self.response.consume(self.resp.len);
                        continue;
                    }
                    Ok(Parsed::Complete) => {
                        if self.resp.status == 101 && !self.client.head.upgrade {
                            return Err(Failed::Upstream {
                                error: fail::unasked_upgrade(),
                                stale: false,
                            });
                        }
                        let now = Instant::now();
                        p.header_at = Some(now);
                        p.header_bytes = Some(self.resp.len);
                        p.status = self.resp.status;
                        p.phase = Phase::ResponseBody;
                        return Ok(());
                    }
                    Ok(Parsed::Partial) => {}
                    Err(e) => {
                        p.header_bytes = Some(self.response.len());
                        return Err(Failed::Upstream {
                            error: fail::bad_head(e, self.response.data()),
                            stale: false,
                        });
                    }
                }
            }
            let already = self.response.len();
            if self.response.make_room(UPSTREAM_READ.min(limit), limit) == 0 {
                // Full and still partial: `parse` says so above on the next turn.
                let e = handoff_http1::ResponseError::TooLarge;
                return Err(Failed::Upstream {
                    error: fail::bad_head(e, self.response.data()),
                    stale: false,
                });
            }
            let watch_client = self
                .client
                .input
                .make_room(1, self.client.head.len + BODY_WINDOW)
                > 0
                && method != Method::Connect;
            let Conn {
                client,
                response,
                upstream_timer,
                ..
            } = self;
            let mut client_done = !watch_client;
            let read = io::until(upstream_timer, Some(deadline), |cx| {
                if !client_done {
                    // Bytes from the client now are a pipelined request: keep them, stop
                    // watching. An end or an error means it went away.
                    match client.input.poll_fill(cx, &mut client.stream) {
                        Poll::Ready(Ok(_)) => client_done = true,
                        Poll::Ready(Err(w)) => return Poll::Ready(Side::Client(Err(w))),
                        Poll::Pending => {}
                    }
                }
                response.poll_fill(cx, up).map(Side::Upstream)
            })
            .await;
            let w = match read {
                Some(Side::Upstream(Ok(_))) => continue,
                Some(Side::Client(r)) => {
                    let w = r.err().unwrap_or(Waited::Closed);
                    return Err(Failed::ClientAborted(fail::client_gone(
                        w,
                        "the client went away while the response was awaited",
                    )));
                }
                Some(Side::Upstream(Err(w))) => w,
                None => Waited::Timeout,
            };
            let stale = already == 0 && !matches!(w, Waited::Timeout);
            return Err(Failed::Upstream {
                error: fail::read_head(w, already),
                stale,
            });
        }
    }
}

/// Writes `parts` of the request body upstream within `write_timeout` per write. Returns
/// `false` when the upstream answered (bytes now in `response`) while the write waited.
async fn write_up(
    up: &mut Stream,
    timer: &mut io::Timer,
    response: &mut io::Buffer,
    settings: &handoff_config::UpstreamSettings,
    parts: &[&[u8]],
) -> Result<bool, Failed> {
    let mut slices = [IoSlice::new(&[]); 3];
    for (s, part) in slices.iter_mut().zip(parts) {
        *s = IoSlice::new(part);
    }
    response.make_room(
        UPSTREAM_READ,
        settings.max_response_header_bytes.max(UPSTREAM_READ),
    );
    // An error reading is left to the write, which meets the same closed connection.
    let answered =
        |cx: &mut std::task::Context<'_>, up: &mut Stream| match response.poll_fill(cx, up) {
            Poll::Ready(Ok(_)) => Poll::Ready(()),
            _ => Poll::Pending,
        };
    let written = io::write_all_watching(
        up,
        timer,
        Some(settings.write_timeout),
        &mut slices,
        answered,
    )
    .await
    .map_err(|w| Failed::Upstream {
        error: fail::write_body(w),
        stale: true,
    })?;
    Ok(written == io::Written::All)
}

/// Which socket a wait on two of them ended on.
enum Side {
    Client(Result<usize, Waited>),
    Upstream(Result<usize, Waited>),
}
