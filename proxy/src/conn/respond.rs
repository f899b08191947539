//! The response: the upstream's head relayed and its body streamed to the client, or
//! handoff's own answer to a failure; and whether the client connection goes on.

use std::io::IoSlice;
use std::time::Instant;

use handoff_diag::DiagResponse;
use handoff_http1::{chunked, ChunkedDecoder, ResponseBody, Step, Version};
use pingora::protocols::Stream;
use tokio::time::Instant as Deadline;

use super::attempt::{Body, Failed};
use super::io::{self, Timer, Waited};
use super::{Conn, Hooks, Outcome, Progress, Request, UPSTREAM_READ};
use crate::upstream::http1::{fail, field};
use crate::upstream::Upstream;

/// How the body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToClient {
    /// No body; a `Content-Length` passed on as the upstream sent it (`HEAD`, 304).
    Nothing(Option<u64>),
    /// `Content-Length`.
    Length(u64),
    /// Chunked (the upstream's chunks, or a close-delimited body, to an HTTP/1.1 client).
    Chunked,
    /// Until handoff closes the connection (to an HTTP/1.0 client, no length known).
    UntilClose,
}

impl<H: Hooks> Conn<'_, H> {
    /// Serves one request whose head is held at `at`; returns whether the client
    /// connection takes another.
    pub(super) async fn serve_request(&mut self, at: usize) -> bool {
        let app = self.app;
        let upstream = app.upstream.load_full();
        let start = Instant::now();
        let mut p = Progress::new(start);
        let req = Request {
            head: &self.client.head,
            buf: self.client.input.held(at),
        };
        let mut rec = app.hooks.begin(&upstream, req, start);
        // How the request ended, what to tell the hooks of it, and whether the client
        // connection goes on.
        let (ended, keep) = if self.client.head.kind == handoff_http1::Method::Connect {
            // A reverse proxy tunnels nothing: 405, as pingora-proxy answered.
            self.client.refuse(405, &app.limits, &mut self.out).await;
            (Ended::Client(405), false)
        } else {
            match self.attempts(&upstream, &mut rec, &mut p, at).await {
                Ok((up, body)) => {
                    app.hooks
                        .response_head(&mut rec, &p, &self.resp, self.response.data());
                    match self.relay(&upstream, &mut p, up, body).await {
                        (RelayOutcome::Relayed, keep) => (Ended::Relayed, keep),
                        (RelayOutcome::Upstream(error), _) => (Ended::Failed(error, 0), false),
                        (RelayOutcome::ClientAborted, _) => (Ended::ClientAborted, false),
                    }
                }
                Err(Failed::Upstream { error, .. }) => {
                    let (status, keep) = self.answer(&mut rec, &p, at).await;
                    (Ended::Failed(error, status), keep)
                }
                Err(Failed::ClientAborted(error)) => {
                    tracing::debug!(%error, "the client went away before the response");
                    (Ended::ClientAborted, false)
                }
                Err(Failed::Client(status, error)) => {
                    tracing::debug!(%error, status, "the request body could not be read");
                    self.client.refuse(status, &app.limits, &mut self.out).await;
                    (Ended::Client(status), false)
                }
            }
        };
        // One clock reading for the request's end and the connection's idleness.
        let end = Instant::now();
        p.end = Some(end);
        self.client.idle_since = end;
        let req = Request {
            head: &self.client.head,
            buf: self.client.input.held(at),
        };
        let outcome = match &ended {
            Ended::Relayed => Outcome::Relayed,
            Ended::Failed(error, answered) => Outcome::Failed {
                error,
                answered: *answered,
            },
            Ended::ClientAborted => Outcome::ClientAborted,
            Ended::Client(status) => Outcome::ClientError(*status),
        };
        app.hooks.done(rec, &p, req, outcome);
        keep
    }

    /// Whether the client connection can take another request after a response that
    /// leaves it in step (`body_read`: the whole request body was read).
    fn keep_after(&self, body_read: bool) -> bool {
        self.client.head.keep_alive() && body_read && self.may_keep()
    }

    /// Relays the response whose head was just read from `up`.
    async fn relay(
        &mut self,
        upstream: &Upstream,
        p: &mut Progress,
        mut up: Stream,
        body: Body,
    ) -> (RelayOutcome, bool) {
        let settings = &upstream.settings;
        let client_11 = self.client.head.version == Version::Http11;
        let framing = match self.resp.body {
            ResponseBody::None => ToClient::Nothing(self.resp.length),
            ResponseBody::Length(n) => ToClient::Length(n),
            ResponseBody::Chunked | ResponseBody::Close if client_11 => ToClient::Chunked,
            ResponseBody::Chunked | ResponseBody::Close => ToClient::UntilClose,
        };
        let upgrade = self.resp.status == 101;
        let keep =
            !upgrade && framing != ToClient::UntilClose && self.keep_after(body == Body::Sent);

        // The head.
        self.out.clear();
        let head_len = self.resp.len;
        {
            let buf = self.response.data();
            let out = &mut self.out;
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(itoa::Buffer::new().format(self.resp.status).as_bytes());
            out.push(b' ');
            let reason = self.resp.reason.of(buf);
            if reason.is_empty() {
                let canonical = http::StatusCode::from_u16(self.resp.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                out.extend_from_slice(canonical.as_bytes());
            } else {
                out.extend_from_slice(reason);
            }
            out.extend_from_slice(b"\r\n");
            for f in self.resp.end_to_end(buf) {
                field(out, f.name.of(buf), f.value.of(buf));
            }
            match framing {
                ToClient::Nothing(Some(n)) | ToClient::Length(n) => field(
                    out,
                    b"Content-Length",
                    itoa::Buffer::new().format(n).as_bytes(),
                ),
                ToClient::Chunked => match self.resp.coding {
                    Some(coding) => field(out, b"Transfer-Encoding", coding.of(buf)),
                    None => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
                },
                ToClient::Nothing(None) | ToClient::UntilClose => {}
            }
            if upgrade {
                out.extend_from_slice(b"Connection: upgrade\r\n");
                if let Some(v) = self
                    .resp
                    .fields
                    .iter()
                    .find(|f| f.kind == handoff_http1::FieldKind::Upgrade)
                {
                    field(out, b"Upgrade", v.value.of(buf));
                }
            } else if keep {
                out.extend_from_slice(b"Connection: keep-alive\r\n");
            } else {
                out.extend_from_slice(b"Connection: close\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
        self.response.consume(head_len);

        if upgrade {
            return self.tunnel(up).await;
        }
        let send = Some(self.app.limits.send_timeout);
        let gap = settings.read_timeout;
        let result = match framing {
            ToClient::Nothing(_) => to_client(
                &mut self.client.stream,
                &mut self.client.timer,
                send,
                &self.out,
                &[],
            )
            .await
            .map(|()| true),
            ToClient::Length(n) => self.relay_length(&mut up, p, n, gap).await,
            ToClient::Chunked | ToClient::UntilClose => {
                let chunked_in = self.resp.body == ResponseBody::Chunked;
                self.relay_stream(&mut up, p, chunked_in, framing == ToClient::Chunked, gap)
                    .await
            }
        };
        match result {
            Ok(complete) => {
                // Only a connection that ended its response where it said, with nothing
                // after it, goes back to the pool.
                if complete
                    && body == Body::Sent
                    && self.resp.keep_alive()
                    && self.response.is_empty()
                {
                    upstream.pool.put(up, Instant::now());
                }
                self.response.consume(self.response.len());
                (RelayOutcome::Relayed, keep)
            }
            Err(Relay::Upstream(error)) => (RelayOutcome::Upstream(error), false),
            Err(Relay::ClientGone) => (RelayOutcome::ClientAborted, false),
        }
    }

    /// A `Content-Length` body: the bytes that came with the head, then the rest.
    async fn relay_length(
        &mut self,
        up: &mut Stream,
        p: &mut Progress,
        length: u64,
        gap: std::time::Duration,
    ) -> Result<bool, Relay> {
        let send = Some(self.app.limits.send_timeout);
        let mut left = length;
        let mut first = true;
        loop {
            let take = left.min(self.response.len() as u64) as usize;
            if first || take > 0 {
                let head: &[u8] = if first { &self.out } else { &[] };
                let data = &self.response.data()[..take];
                to_client(
                    &mut self.client.stream,
                    &mut self.client.timer,
                    send,
                    head,
                    &[data],
                )
                .await?;
                first = false;
                self.response.consume(take);
                left -= take as u64;
                p.response_body_bytes += take as u64;
            }
            if left == 0 {
                return Ok(true);
            }
            self.read_up(up, gap)
                .await
                .map_err(|w| Relay::Upstream(fail::read_body(w, Some(left), length - left, gap)))?;
        }
    }

    /// A chunked or close-delimited body, to a client that gets it chunked (`rechunk`) or
    /// until the connection closes.
    async fn relay_stream(
        &mut self,
        up: &mut Stream,
        p: &mut Progress,
        chunked_in: bool,
        rechunk: bool,
        gap: std::time::Duration,
    ) -> Result<bool, Relay> {
        let send = Some(self.app.limits.send_timeout);
        let mut decoder = chunked_in.then(ChunkedDecoder::new);
        let mut first = true;
        loop {
            // Pass on what is buffered.
            let mut done = false;
            while !self.response.is_empty() || first {
                let (data, used, end) = match &mut decoder {
                    Some(d) => match d.decode(self.response.data()) {
                        Ok(Step::Data(r)) => (r.clone(), r.end, false),
                        Ok(Step::NeedMore) => (0..0, self.response.len(), false),
                        Ok(Step::Done(n)) => (0..0, n, true),
                        Err(e) => {
                            // The head is good and goes out; the body breaks off, as the
                            // client then sees.
                            if first {
                                to_client(
                                    &mut self.client.stream,
                                    &mut self.client.timer,
                                    send,
                                    &self.out,
                                    &[],
                                )
                                .await?;
                            }
                            return Err(Relay::Upstream(fail::bad_chunk(e)));
                        }
                    },
                    None => (0..self.response.len(), self.response.len(), false),
                };
                let bytes = &self.response.data()[data.clone()];
                let line = chunked::SizeLine::new(bytes.len() as u64);
                let parts: [&[u8]; 4] = match (rechunk, bytes.is_empty(), end) {
                    (true, false, false) => [line.as_bytes(), bytes, chunked::CRLF, &[]],
                    (true, true, true) => [chunked::LAST_CHUNK, &[], &[], &[]],
                    (true, false, true) => unreachable!("the end carries no data"),
                    (false, _, _) | (true, true, false) => [bytes, &[], &[], &[]],
                };
                let head: &[u8] = if first { &self.out } else { &[] };
                to_client(
                    &mut self.client.stream,
                    &mut self.client.timer,
                    send,
                    head,
                    &parts,
                )
                .await?;
                first = false;
                p.response_body_bytes += bytes.len() as u64;
                self.response.consume(used);
                if end {
                    done = true;
                    break;
                }
            }
            if done {
                return Ok(true);
            }
            match self.read_up(up, gap).await {
                Ok(_) => {}
                // A close-delimited body ends where the upstream closes.
                Err(Waited::Closed) if decoder.is_none() => {
                    if rechunk {
                        let last = [chunked::LAST_CHUNK];
                        to_client(
                            &mut self.client.stream,
                            &mut self.client.timer,
                            send,
                            &[],
                            &last,
                        )
                        .await?;
                    }
                    return Ok(false);
                }
                Err(w) => {
                    let read = p.response_body_bytes;
                    return Err(Relay::Upstream(fail::read_body(w, None, read, gap)));
                }
            }
        }
    }

    /// Reads more of the response body, within `gap` of idleness.
    async fn read_up(
        &mut self,
        up: &mut Stream,
        gap: std::time::Duration,
    ) -> Result<usize, Waited> {
        let deadline = Deadline::now() + gap;
        let max = self.response.len() + UPSTREAM_READ;
        io::fill(
            up,
            &mut self.response,
            &mut self.upstream_timer,
            Some(deadline),
            UPSTREAM_READ,
            max,
        )
        .await
    }

    /// handoff's own answer to a failed request; returns the status and whether the client
    /// connection goes on.
    async fn answer(&mut self, rec: &mut H::Record, p: &Progress, at: usize) -> (u16, bool) {
        let app = self.app;
        let answer = {
            let req = Request {
                head: &self.client.head,
                buf: self.client.input.held(at),
            };
            app.hooks.answer(rec, p, req).await
        };
        // The client may go on if its whole body was read: none, or one sent whole.
        let body_read = p
            .request_body_length
            .is_some_and(|n| n == p.request_body_bytes)
            || self.client.head.body.is_empty();
        let keep = self.keep_after(body_read);
        self.out.clear();
        serialize(&answer, keep, &mut self.out);
        let body: &[u8] = if self.client.head.kind == handoff_http1::Method::Head {
            &[]
        } else {
            &answer.body
        };
        let send = Some(app.limits.send_timeout);
        let sent = io::write_all(
            &mut self.client.stream,
            &mut self.client.timer,
            send,
            &mut [IoSlice::new(&self.out), IoSlice::new(body)],
        )
        .await;
        (answer.status.as_u16(), keep && sent.is_ok())
    }
}

/// Writes `head` and `parts` to the client, within `send` of each write.
pub(super) async fn to_client(
    client: &mut Stream,
    timer: &mut Timer,
    send: Option<std::time::Duration>,
    head: &[u8],
    parts: &[&[u8]],
) -> Result<(), Relay> {
    let mut slices = [IoSlice::new(&[]); 5];
    slices[0] = IoSlice::new(head);
    for (s, part) in slices[1..].iter_mut().zip(parts) {
        *s = IoSlice::new(part);
    }
    io::write_all(client, timer, send, &mut slices)
        .await
        .map_err(|_| Relay::ClientGone)
}

/// How a request ended, for the hooks.
enum Ended {
    Relayed,
    /// The error, and the status handoff answered (0: the status line had gone out).
    Failed(Box<pingora::Error>, u16),
    ClientAborted,
    Client(u16),
}

/// How relaying a response ended.
#[derive(Debug)]
pub(super) enum RelayOutcome {
    Relayed,
    Upstream(Box<pingora::Error>),
    ClientAborted,
}

/// Why a relay stopped early.
#[derive(Debug)]
pub(super) enum Relay {
    Upstream(Box<pingora::Error>),
    ClientGone,
}

/// Writes the head of a response handoff makes itself, with `Connection: keep-alive`
/// when the connection goes on and `close` otherwise.
pub(super) fn serialize(answer: &DiagResponse, keep: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(answer.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(answer.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &answer.headers {
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(if keep {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
}
