//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/failures` and the status page `/`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use handoff_diag::Filter;
use http::{header, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora_prometheus::prometheus::proto::{MetricFamily, MetricType};

use crate::state::Shared;

/// The admin HTTP application.
#[derive(Debug)]
pub struct Admin {
    shared: Arc<Shared>,
}

// === impl Admin ===

impl Admin {
    /// An admin app over the process's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Admin { shared }
    }

    fn route(&self, method: &http::Method, path: &str, query: &str) -> Response<Vec<u8>> {
        if method != http::Method::GET && method != http::Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if self.shared.ready.load(Ordering::Relaxed) => {
                text(StatusCode::OK, "ready\n")
            }
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            "/metrics" => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.shared.metrics.encode().into_bytes(),
            ),
            "/failures" => match Filter::from_query(query) {
                Ok(filter) => respond(
                    StatusCode::OK,
                    "application/json",
                    self.shared.recent.to_json(&filter).into_bytes(),
                ),
                Err(e) => text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
            },
            "/" => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                self.status_page().into_bytes(),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /failures, /healthz, /readyz or /\n",
            ),
        }
    }

    /// A page for people: counts per upstream and the latest failures, no external assets.
    fn status_page(&self) -> String {
        let families = self.shared.metrics.registry().gather();
        let requests = counts_by(&families, "handoff_upstream_requests_total", "status_class");
        let failures = counts_by(&families, "handoff_upstream_failures_total", "reason");
        let in_flight = counts_by(&families, "handoff_upstream_requests_in_flight", "upstream");
        let settings = self.shared.settings.load();
        let mut html = String::with_capacity(8192);
        html.push_str(concat!(
            "<!doctype html><html lang=en><head><meta charset=utf-8>",
            "<meta http-equiv=refresh content=5><title>handoff status</title><style>",
            "body{font:14px system-ui,sans-serif;margin:2em;color:#222}",
            "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:.25em .6em;",
            "border-bottom:1px solid #ddd;text-align:left}th{background:#f4f4f4}",
            ".bad{color:#b00}.num{text-align:right;font-variant-numeric:tabular-nums}",
            "code{background:#f4f4f4;padding:0 .2em}</style></head><body>",
            "<h1>handoff</h1>"
        ));
        html.push_str(&format!(
            "<p>version {} &middot; up {}s &middot; <a href=/metrics>/metrics</a> &middot; \
             <a href=/failures>/failures</a></p>",
            env!("CARGO_PKG_VERSION"),
            self.shared.started.elapsed().as_secs()
        ));
        for upstream in &settings.upstreams {
            let name = upstream.name.as_str();
            html.push_str(&format!(
                "<h2>{}</h2><p><code>{}</code> &rarr; <code>{}</code> &middot; in flight {}</p>",
                escape(name),
                escape(&upstream.listen.to_string()),
                escape(&upstream.address.to_string()),
                in_flight
                    .get(name)
                    .and_then(|m| m.get(name))
                    .copied()
                    .unwrap_or(0.0)
            ));
            html.push_str("<table><tr><th>status class</th><th class=num>requests</th></tr>");
            for (class, n) in requests.get(name).into_iter().flatten() {
                html.push_str(&format!(
                    "<tr><td>{}</td><td class=num>{}</td></tr>",
                    escape(class),
                    n
                ));
            }
            html.push_str(
                "</table><table><tr><th>failure reason</th><th class=num>count</th></tr>",
            );
            let mut any = false;
            for (reason, n) in failures
                .get(name)
                .into_iter()
                .flatten()
                .filter(|(_, n)| **n > 0.0)
            {
                any = true;
                html.push_str(&format!(
                    "<tr><td class=bad>{}</td><td class=num>{}</td></tr>",
                    escape(reason),
                    n
                ));
            }
            if !any {
                html.push_str("<tr><td colspan=2>no failed handoffs</td></tr>");
            }
            html.push_str("</table>");
        }
        html.push_str("<h2>Recent failures</h2><table><tr><th>time</th><th>upstream</th><th>reason</th><th>status</th><th>hint</th></tr>");
        let filter = Filter {
            upstream: None,
            reason: None,
            limit: 20,
        };
        for record in self.shared.recent.list(&filter) {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=bad>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&record.time),
                escape(&record.upstream),
                record.reason.as_str(),
                record.status,
                escape(&record.hint)
            ));
        }
        html.push_str("</table></body></html>\n");
        html
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_owned();
        let query = req.uri.query().unwrap_or("").to_owned();
        let mut response = self.route(&method, &path, &query);
        if method == http::Method::HEAD {
            response.body_mut().clear();
        }
        response
    }
}

/// Per upstream, the value of `family` for each value of `label`.
fn counts_by<'a>(
    families: &'a [MetricFamily],
    family: &str,
    label: &str,
) -> BTreeMap<&'a str, BTreeMap<&'a str, f64>> {
    let mut out: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for f in families.iter().filter(|f| f.name() == family) {
        for m in f.get_metric() {
            let labels = m.get_label();
            let get = |n: &str| labels.iter().find(|l| l.name() == n).map(|l| l.value());
            let (Some(upstream), Some(key)) = (get("upstream"), get(label)) else {
                continue;
            };
            let value = match f.get_field_type() {
                MetricType::COUNTER => m.get_counter().value(),
                _ => m.get_gauge().value(),
            };
            out.entry(upstream).or_default().insert(key, value);
        }
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
