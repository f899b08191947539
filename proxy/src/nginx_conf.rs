//! The nginx configuration in front of handoff, from one template: per `[[upstream]]`, an
//! `upstream` block naming handoff's listener and the `location` that proxies to it.
//!
//! Three outputs share it, so they cannot drift apart:
//! - [`snippet`]: `handoff nginx-snippet`, the directives for the operator's configuration;
//! - [`site_file`]: `deploy/nginx/handoff.conf`, the commented example site, which a test
//!   keeps equal to what this writes for `deploy/handoff.toml`;
//! - `testing::nginx`: the end-to-end tests' private nginx, which wraps the same blocks in its
//!   own paths (and starts from the example's first upstream).
//!
//! ```
//! let settings = handoff_config::from_str(handoff_config::DEFAULT_CONFIG, "default").unwrap();
//! let text = handoff::nginx_conf::snippet(&settings);
//! assert!(text.contains("upstream handoff_app {\n    server 127.0.0.1:8080;"));
//! assert!(text.contains("    proxy_read_timeout 60s;\n"));
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use handoff_config::{format_duration, Settings, UpstreamSettings};

/// The access-log format that records handoff's reason (`deploy/nginx/log_format.conf`).
pub const LOG_FORMAT: &str = include_str!("../../deploy/nginx/log_format.conf");

/// Where [`snippet`] and [`site_file`] write the `handoff` access log.
pub const ACCESS_LOG: &str = "/var/log/nginx/handoff.access.log";

/// How much longer than handoff's longest timer nginx's own timeouts are.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// `client_max_body_size`: nginx's 1m default answers 413 before the app sees an upload.
pub const CLIENT_MAX_BODY_SIZE: &str = "100m";

/// Idle connections nginx keeps to each handoff listener.
const KEEPALIVE: u32 = 32;

/// Comment lines are wrapped to this width, indentation included.
const WIDTH: usize = 96;

/// What nginx needs to know about one handoff listener: the template's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The `[[upstream]]` name: nginx's upstream block is `handoff_<name>`.
    pub name: String,
    /// handoff's listener as nginx's `server` takes it: `127.0.0.1:8080`, `unix:/run/h.sock`.
    pub server: String,
    /// Where the access log in the `handoff` format goes.
    pub access_log: String,
    /// `proxy_connect_timeout`, in nginx's time syntax (`60s`, `300ms`).
    pub connect_timeout: String,
    /// `proxy_send_timeout`.
    pub send_timeout: String,
    /// `proxy_read_timeout`.
    pub read_timeout: String,
    /// `proxy_buffer_size` (`8k`).
    pub buffer_size: String,
    /// handoff's `nginx_buffer_bytes`, which `proxy_buffer_size` must match (for comments).
    pub nginx_buffer_bytes: usize,
    /// `client_max_body_size`.
    pub client_max_body_size: String,
    /// handoff's timers for this upstream, by key (for comments).
    pub handoff_timeouts: Vec<(&'static str, Duration)>,
    /// More directives for the location, in nginx syntax (`client_max_body_size 0;`): one
    /// the template writes already is given this value instead, the others come last.
    pub extra: String,
}

/// One line of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Blank,
    Comment(String),
    Directive(String, String),
    /// A block (`location ~ \.php$ { ... }`) from `extra`, written as given.
    Block(String),
}

// === impl Site ===

impl Site {
    /// The recommended nginx side of an upstream: nginx's timeouts [`TIMEOUT_MARGIN`] above
    /// handoff's longest timer, so handoff answers first and names the reason;
    /// `proxy_buffer_size` as large as `nginx_buffer_bytes` (at least nginx's 4k page).
    pub fn for_upstream(upstream: &UpstreamSettings) -> Site {
        let handoff_timeouts = vec![
            ("connect_timeout", upstream.connect_timeout),
            ("header_timeout", upstream.header_timeout),
            ("read_timeout", upstream.read_timeout),
            ("write_timeout", upstream.write_timeout),
        ];
        let longest = handoff_timeouts
            .iter()
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default();
        let nginx_timeout = format!("{}s", (longest + TIMEOUT_MARGIN).as_secs());
        Site {
            name: upstream.name.clone(),
            server: upstream.listen.to_string(),
            access_log: ACCESS_LOG.to_owned(),
            connect_timeout: nginx_timeout.clone(),
            send_timeout: nginx_timeout.clone(),
            read_timeout: nginx_timeout,
            buffer_size: format!("{}k", upstream.nginx_buffer_bytes.div_ceil(1024).max(4)),
            nginx_buffer_bytes: upstream.nginx_buffer_bytes,
            client_max_body_size: CLIENT_MAX_BODY_SIZE.to_owned(),
            handoff_timeouts,
            extra: String::new(),
        }
    }

    /// The `upstream handoff_<name> { ... }` block (http{} context), each line indented by
    /// `indent` spaces. `commented`: with the comments that explain it.
    pub fn upstream_block(&self, indent: usize, commented: bool) -> String {
        let mut lines = vec![Line::Directive("server".into(), self.server.clone())];
        if commented {
            lines.push(comment(
                "Reuse connections to handoff instead of one TCP handshake per request (needs \
                 proxy_http_version 1.1 and an empty Connection header, below).",
            ));
        }
        lines.push(Line::Directive("keepalive".into(), KEEPALIVE.to_string()));
        block(&format!("upstream handoff_{}", self.name), &lines, indent)
    }

    /// The `location / { ... }` block (server{} context), each line indented by `indent`
    /// spaces. `commented`: with the comments that say why each directive is there.
    pub fn location_block(&self, indent: usize, commented: bool) -> String {
        let explain = |text: &str| commented.then(|| comment(text));
        let timers = self
            .handoff_timeouts
            .iter()
            .map(|(key, d)| format!("{key} {}", format_duration(*d)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut lines: Vec<Line> = [
            explain(
                "The format from log_format.conf: each request's handoff reason and Proxy-Status.",
            ),
            Some(directive(
                "access_log",
                &format!("{} handoff", self.access_log),
            )),
            Some(Line::Blank),
            Some(directive(
                "proxy_pass",
                &format!("http://handoff_{}", self.name),
            )),
            Some(directive("proxy_http_version", "1.1")),
            Some(directive("proxy_set_header", "Connection \"\"")),
            Some(Line::Blank),
            Some(directive("proxy_set_header", "Host $host")),
            Some(directive(
                "proxy_set_header",
                "X-Forwarded-For $proxy_add_x_forwarded_for",
            )),
            Some(directive("proxy_set_header", "X-Forwarded-Proto $scheme")),
            explain(
                "One id for the request in nginx's log, handoff's log and its /failures entry, \
                 and the application (handoff forwards it, and generates one when it is missing).",
            ),
            Some(directive("proxy_set_header", "X-Request-Id $request_id")),
            Some(Line::Blank),
            explain(&format!(
                "LONGER than handoff's own timeouts ({timers}), so that when the app is slow or \
                 silent handoff gives up first and answers with the reason (504 with \
                 X-Handoff-Reason: response_header_timeout, ...). Were nginx's shorter, nginx \
                 would time out first and log and answer a bare 504 that names nothing. \
                 `handoff nginx-snippet` sets them {} above the longest.",
                format_duration(TIMEOUT_MARGIN)
            )),
            Some(directive("proxy_connect_timeout", &self.connect_timeout)),
            Some(directive("proxy_send_timeout", &self.send_timeout)),
            Some(directive("proxy_read_timeout", &self.read_timeout)),
            Some(Line::Blank),
            explain(&format!(
                "The buffer for the response header from handoff. A larger header makes nginx \
                 answer its own 502 (\"upstream sent too big header\"). handoff's \
                 nginx_buffer_bytes is the same size ({}), so it counts such responses in \
                 handoff_upstream_header_over_nginx_buffer_total and names them in its log.",
                self.nginx_buffer_bytes
            )),
            Some(directive("proxy_buffer_size", &self.buffer_size)),
            Some(Line::Blank),
            explain(
                "nginx answers 413 itself above 1m by default, before handoff or the app see the \
                 upload: set the app's real limit here (0 = no limit; the app enforces its own).",
            ),
            Some(directive(
                "client_max_body_size",
                &self.client_max_body_size,
            )),
            Some(Line::Blank),
            explain(
                "off (nginx's default, stated so no one turns it on here unknowingly): nginx \
                 passes handoff's 502/503/504 with its headers and body through to the client \
                 unchanged.",
            ),
            Some(directive("proxy_intercept_errors", "off")),
        ]
        .into_iter()
        .flatten()
        .collect();
        apply_extra(&mut lines, &self.extra);
        block("location /", &lines, indent)
    }
}

/// `handoff nginx-snippet`: the log format and an `upstream` block per `[[upstream]]` for
/// nginx's http{}, then each upstream's `location` for the server{} of its site.
pub fn snippet(settings: &Settings) -> String {
    let sites: Vec<Site> = settings.upstreams.iter().map(Site::for_upstream).collect();
    let mut out = String::from(
        "# Generated by `handoff nginx-snippet` from your handoff configuration.\n\
         # log_format and upstream go in `http {}`; each location goes in the `server {}` of its \
         site.\n\n",
    );
    out.push_str(LOG_FORMAT);
    for (i, site) in sites.iter().enumerate() {
        out.push('\n');
        out.push_str(&site.upstream_block(0, i == 0));
    }
    for (i, site) in sites.iter().enumerate() {
        let _ = writeln!(
            out,
            "\n# in the server {{}} of the site that \"{}\" serves:",
            site.name
        );
        out.push_str(&site.location_block(0, i == 0));
    }
    out
}

/// `deploy/nginx/handoff.conf`: a commented site (`server_name <name>.example.com`) per
/// `[[upstream]]`, for nginx's http{} context; the comments are on the first.
pub fn site_file(settings: &Settings) -> String {
    let mut out = String::from(SITE_FILE_HEADER);
    for (i, upstream) in settings.upstreams.iter().enumerate() {
        let site = Site::for_upstream(upstream);
        let commented = i == 0;
        let _ = writeln!(
            out,
            "\n# handoff's listener for \"{}\": `listen` of its [[upstream]] in \
             /etc/handoff/handoff.toml.",
            site.name
        );
        out.push_str(&site.upstream_block(0, commented));
        let _ = writeln!(
            out,
            "\nserver {{\n    listen 80;\n    server_name {}.example.com;\n",
            site.name
        );
        if !commented {
            let _ = writeln!(
                out,
                "    # As for \"{}\" above.",
                settings.upstreams[0].name
            );
        }
        out.push_str(&site.location_block(4, commented));
        out.push_str("}\n");
    }
    out
}

/// The head of [`site_file`]: what it is, how to install it, and the two rules that are no
/// directive.
const SITE_FILE_HEADER: &str = "\
# nginx in front of handoff: a site whose requests go to handoff, which passes them to the app
# and, when that handoff fails, answers with the reason (Proxy-Status, X-Handoff-Reason and a
# problem+json/HTML/text body) instead of nginx's bare \"502 Bad Gateway\".
#
# Written by handoff's nginx template (proxy/src/nginx_conf.rs) for deploy/handoff.toml: one
# upstream and one site per [[upstream]]. `handoff nginx-snippet -c /etc/handoff/handoff.toml`
# prints the same directives for your configuration. A test keeps this file as the template
# writes it (`HANDOFF_UPDATE_DEPLOY=1 cargo test -p handoff --test deploy_files` rewrites it).
#
# http{} context. On Debian/Ubuntu:
#   cp deploy/nginx/log_format.conf /etc/nginx/conf.d/00-handoff-log-format.conf
#   cp deploy/nginx/handoff.conf /etc/nginx/sites-available/handoff
#   ln -s ../sites-available/handoff /etc/nginx/sites-enabled/handoff
#   nginx -t && systemctl reload nginx
# For an existing site, put the `upstream` block in http{} and the `location` block into that
# site's server{} instead.
#
# The directives that matter, and why, are commented below. The other two rules:
#   - Define no `error_page 502 503 504` here while proxy_intercept_errors is on (or turn it
#     off, as below): nginx would replace handoff's annotated response with its own page.
#   - Leave proxy_next_upstream at its default (`error timeout`): adding http_502/http_503/
#     http_504 makes nginx retry elsewhere and drop handoff's answer.
";

fn directive(name: &str, args: &str) -> Line {
    Line::Directive(name.to_owned(), args.to_owned())
}

fn comment(text: &str) -> Line {
    Line::Comment(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Which template directive an extra one stands in for: the name, and for
/// `proxy_set_header` the header too.
fn key<'a>(name: &'a str, args: &'a str) -> (&'a str, &'a str) {
    let header = if name == "proxy_set_header" {
        args.split_whitespace().next().unwrap_or("")
    } else {
        ""
    };
    (name, header)
}

/// Applies [`Site::extra`]: each `name args;` replaces the template's directive of that
/// name (nginx refuses most directives twice in one block), or is added at the end.
fn apply_extra(lines: &mut Vec<Line>, extra: &str) {
    let mut added = Vec::new();
    for statement in statements(extra) {
        if statement.ends_with('}') {
            // A nested block: added as it is.
            added.push(Line::Block(statement.to_owned()));
            continue;
        }
        let (name, args) = statement
            .split_once(char::is_whitespace)
            .map_or((statement, ""), |(n, a)| (n, a.trim()));
        let existing = lines
            .iter_mut()
            .find(|line| matches!(line, Line::Directive(n, a) if key(n, a) == key(name, args)));
        match existing {
            Some(Line::Directive(_, a)) => *a = args.to_owned(),
            _ => added.push(directive(name, args)),
        }
    }
    if !added.is_empty() {
        lines.push(Line::Blank);
        lines.extend(added);
    }
}

/// The top-level statements of `text`: directives ended by `;`, and blocks ended by the `}`
/// that closes them (their own `;`s stay inside).
fn statements(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(&text[start..=i]);
                    start = i + 1;
                }
            }
            ';' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `head { lines }`, the lines indented four spaces more than the block.
fn block(head: &str, lines: &[Line], indent: usize) -> String {
    let pad = " ".repeat(indent);
    let inner = " ".repeat(indent + 4);
    let mut out = format!("{pad}{head} {{\n");
    for line in lines {
        match line {
            Line::Blank => out.push('\n'),
            Line::Directive(name, args) if args.is_empty() => {
                let _ = writeln!(out, "{inner}{name};");
            }
            Line::Directive(name, args) => {
                let _ = writeln!(out, "{inner}{name} {args};");
            }
            Line::Comment(text) => {
                for wrapped in wrap(text, WIDTH - inner.len() - 2) {
                    let _ = writeln!(out, "{inner}# {wrapped}");
                }
            }
            Line::Block(text) => {
                // The block's own indentation is kept, relative to its closing brace.
                let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                let base = lines.last().map_or(0, |l| l.len() - l.trim_start().len());
                for (i, line) in lines.iter().enumerate() {
                    let line = if i == 0 {
                        line.trim()
                    } else {
                        line.get(base..).unwrap_or(line.trim_start()).trim_end()
                    };
                    let _ = writeln!(out, "{inner}{line}");
                }
            }
        }
    }
    let _ = writeln!(out, "{pad}}}");
    out
}

/// `text` in lines of at most `width` characters, broken at spaces (a longer word stands
/// alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests;
