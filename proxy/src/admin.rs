//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/failures`, and for people the
//! status page `/` with its data `/status.json`.
//!
//! # Layout
//! - this file: routing and responses, and the `process_*` metrics next to handoff's own;
//! - `snapshot`: one reading of the metrics registry (counters and histograms by upstream);
//! - `history`: counters sampled every 5 s over the last 15 min, by a small thread;
//! - `page`: the page's HTML and inline SVG charts (`page.css` and `page.js` are embedded).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::io::IoSlice;

use async_trait::async_trait;
use handoff_diag::Filter;
use http::{header, Response, StatusCode};
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora_prometheus::prometheus::process_collector::ProcessCollector;
use pingora_prometheus::prometheus::{Encoder, Registry, TextEncoder};

use crate::conn::io::write_all;
use crate::conn::read::{Client, Head};
use crate::conn::ClientLimits;
use crate::state::Shared;

mod history;
mod page;
mod snapshot;

use history::History;
use page::View;
use snapshot::Snapshot;

/// The admin HTTP application.
#[derive(Debug)]
pub struct Admin {
    shared: Arc<Shared>,
    /// The client side's limits and timers (`[server]`), as for the proxy's listeners.
    limits: ClientLimits,
    /// The sampled counters behind the page's rates.
    history: Arc<History>,
    /// The prometheus `process` collector (`process_open_fds`, `process_max_fds`,
    /// `process_resident_memory_bytes`, ...: the evidence for handoff's own descriptor or
    /// memory exhaustion). A registry of its own, because handoff's registry holds exactly
    /// the families `handoff_diag::METRIC_NAMES` names; `/metrics` serves both.
    process: Registry,
}

// === impl Admin ===

impl Admin {
    /// An admin app over the process's shared state. Starts the status page's sampler, a
    /// thread that ends when the app is dropped.
    pub fn new(shared: Arc<Shared>) -> Self {
        let process = Registry::new();
        // Registering a fresh collector in an empty registry cannot collide.
        if let Err(e) = process.register(Box::new(ProcessCollector::for_self())) {
            tracing::warn!(error = %e, "/metrics: no process_* metrics");
        }
        Admin {
            history: History::start(&shared),
            limits: ClientLimits::from(&shared.settings.load().server),
            shared,
            process,
        }
    }

    /// `/metrics`: handoff's families, then the process collector's.
    fn metrics(&self) -> Vec<u8> {
        let mut text = self.shared.metrics.encode().into_bytes();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.process.gather(), &mut text);
        text
    }

    fn route(&self, method: &http::Method, path: &str, query: &str) -> Response<Vec<u8>> {
        if method != http::Method::GET && method != http::Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        let history = &self.history;
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if self.shared.ready.load(Ordering::Relaxed) => {
                text(StatusCode::OK, "ready\n")
            }
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            "/metrics" => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics(),
            ),
            "/failures" => match Filter::from_query(query) {
                Ok(filter) => respond(
                    StatusCode::OK,
                    "application/json",
                    self.shared.recent.to_json(&filter).into_bytes(),
                ),
                Err(e) => text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
            },
            "/" | "/index.html" => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                self.view(history, |v| v.page()).into_bytes(),
            ),
            "/status.json" => respond(
                StatusCode::OK,
                "application/json",
                self.view(history, |v| v.json()).into_bytes(),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /, /metrics, /failures, /healthz, /readyz or /status.json\n",
            ),
        }
    }

    fn view(&self, history: &History, render: impl FnOnce(&View<'_>) -> String) -> String {
        let settings = self.shared.settings.load();
        let names: Vec<&str> = settings.upstreams.iter().map(|u| u.name.as_str()).collect();
        let filter = Filter {
            upstream: None,
            reason: None,
            limit: page::RECENT_ROWS,
        };
        let view = View {
            settings: &settings,
            snapshot: Snapshot::read(&self.shared.metrics, &names),
            samples: history.samples(),
            recent: self.shared.recent.list(&filter),
            ready: self.shared.ready.load(Ordering::Relaxed),
            uptime: self.shared.started.elapsed(),
            now_ms: history::now_ms(),
        };
        render(&view)
    }
}

#[async_trait]
impl ServerApp for Admin {
    /// Serves admin requests on one connection with the proxy's own client reading (its
    /// deadlines and limits), one response per request, keep-alive as the client asks.
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut client = Client::new(stream);
        let mut out = Vec::new();
        loop {
            let Head::Ready(at) = client.read_head(&self.limits, &mut out, || {}).await else {
                return None;
            };
            let head = &client.head;
            let buf = client.input.held(at);
            let method = http::Method::from_bytes(head.method.of(buf)).unwrap_or(http::Method::GET);
            let target = String::from_utf8_lossy(head.target.of(buf));
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let mut response = self.route(&method, path, query);
            if method == http::Method::HEAD {
                response.body_mut().clear();
            }
            // Admin requests carry no body; one that announces one ends the connection.
            let keep = head.keep_alive() && head.body.is_empty() && !*shutdown.borrow();
            out.clear();
            head_bytes(&response, keep, &mut out);
            let sent = write_all(
                &mut client.stream,
                &mut client.timer,
                Some(self.limits.send_timeout),
                &mut [IoSlice::new(&out), IoSlice::new(response.body())],
            )
            .await;
            client.input.release_head();
            client.served += 1;
            client.idle_since = std::time::Instant::now();
            if sent.is_err() || !keep {
                return None;
            }
        }
    }
}

/// The status line and fields of an admin response.
fn head_bytes(response: &Response<Vec<u8>>, keep: bool, out: &mut Vec<u8>) {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(if keep {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("static header names and values")
}
