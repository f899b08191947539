//! The checks that read nginx's configuration: it parses, where every location goes, whether
//! every handoff listener is reached, and whether the timers, the buffer and the error
//! handling in front of handoff let its answers through.

use std::time::Duration;

use handoff_diag::Reason;

use super::{Ctx, Role};
use crate::nginx::units::{show_size, show_time};
use crate::nginx::{Endpoint, Setting, Source};
use crate::report::{Finding, Status};

/// `nginx.config`: every file parsed, or each problem with its file and line.
pub(crate) fn config(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "nginx.config";
    let subject = ctx.conf.display().to_string();
    let c = &ctx.nginx.config;
    if ctx.host.nginx_conf.is_none() && !ctx.conf.exists() {
        return vec![Finding::skip(
            id,
            subject,
            "no nginx configuration here (nginx not installed?); give --nginx-conf PATH",
        )];
    }
    if c.errors.is_empty() {
        let n = c.files.len();
        return vec![Finding::new(
            id,
            Status::Ok,
            subject,
            format!(
                "{n} file{} parsed, includes followed",
                if n == 1 { "" } else { "s" }
            ),
        )];
    }
    c.errors
        .iter()
        .map(|e| {
            let source = e.line.map(|line| Source {
                file: e.file.as_path().into(),
                line,
            });
            let f = Finding::new(
                id,
                Status::Fail,
                e.file.display().to_string(),
                e.message.clone(),
            )
            .hint(
                "fix the file: nginx refuses to start or reload with it (`nginx -t` says the same)",
            );
            match source {
                Some(s) => f.at(Some(&s)),
                None => f,
            }
        })
        .collect()
}

/// `nginx.test`: `nginx -t`, only with `--exec-nginx-test` (it opens nginx's pid and log
/// files, creating them when missing).
pub(crate) fn nginx_test(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "nginx.test";
    let binary = ctx.host.nginx_binary.display().to_string();
    if !ctx.options.exec_nginx_test {
        return vec![Finding::skip(id, binary, "not asked: `nginx -t` creates nginx's pid and log files; give --exec-nginx-test to run it")];
    }
    let out = std::process::Command::new(&ctx.host.nginx_binary)
        .arg("-t")
        .arg("-c")
        .arg(&ctx.conf)
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Err(e) => vec![Finding::skip(
            id,
            binary.clone(),
            format!("cannot run {binary}: {e}"),
        )],
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; ");
            let status = if out.status.success() {
                Status::Ok
            } else {
                Status::Fail
            };
            vec![Finding::new(
                id,
                status,
                format!("{binary} -t -c {}", ctx.conf.display()),
                text,
            )]
        }
    }
}

/// `nginx.targets`: every `*_pass` endpoint: through handoff, around it, or elsewhere.
pub(crate) fn targets(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "nginx.targets";
    if ctx.nginx.config.files.is_empty() {
        return vec![Finding::skip(
            id,
            ctx.conf.display().to_string(),
            "nginx's configuration could not be read",
        )];
    }
    if ctx.nginx.targets.is_empty() {
        return vec![Finding::new(
            id,
            Status::Ok,
            ctx.conf.display().to_string(),
            "no location passes requests to an upstream",
        )];
    }
    let mut out = Vec::new();
    for t in &ctx.nginx.targets {
        for e in &t.endpoints {
            let subject = format!("{} {}", t.directive, e.text());
            let finding = match (ctx.role(e), e) {
                (_, Endpoint::Unresolved { why, .. }) => Finding::skip(id, subject, format!("{} ({})", why, t.place)),
                (Role::Handoff(u), _) => Finding::new(id, Status::Ok, subject, format!("{}: through handoff (upstream {})", t.place, u.name)),
                (Role::App(u), _) => Finding::new(
                    id,
                    Status::Warn,
                    subject,
                    format!("{}: straight to the app of handoff's upstream {}, around handoff: its failures are nginx's bare 502s", t.place, u.name),
                )
                .hint(format!("point {} at handoff's listener {}", t.directive, u.listen)),
                (Role::Other, _) => Finding::new(id, Status::Ok, subject, format!("{}: not through handoff", t.place)),
            };
            out.push(finding.at(Some(e.source())));
        }
    }
    out
}

/// `handoff.coverage`: every handoff listener is the target of some nginx location.
pub(crate) fn coverage(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "handoff.coverage";
    let Some(settings) = ctx.settings else {
        return vec![Finding::skip(
            id,
            "handoff",
            "no handoff configuration (give -c FILE)",
        )];
    };
    if ctx.nginx.config.files.is_empty() {
        return vec![Finding::skip(
            id,
            "handoff",
            "nginx's configuration could not be read",
        )];
    }
    settings
        .upstreams
        .iter()
        .map(|u| {
            let subject = format!("upstream {} (listen {})", u.name, u.listen);
            let reached: Vec<&Source> = ctx
                .nginx
                .targets
                .iter()
                .flat_map(|t| &t.endpoints)
                .filter(|e| matches!(ctx.role(e), Role::Handoff(h) if h.name == u.name))
                .map(Endpoint::source)
                .collect();
            match reached.first() {
                Some(first) => Finding::new(
                    id,
                    Status::Ok,
                    subject,
                    format!("reached from {} nginx location(s)", reached.len()),
                )
                .at(Some(first)),
                None => Finding::new(
                    id,
                    Status::Warn,
                    subject,
                    "no nginx location passes requests to this listener: it serves nobody",
                )
                .hint(format!(
                    "proxy_pass http://{} in the location that serves {}",
                    u.listen, u.name
                )),
            }
        })
        .collect()
}

/// `nginx.timeouts`: nginx must wait longer than handoff, or it answers its own 504 first
/// and handoff's reason is lost.
pub(crate) fn timeouts(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "nginx.timeouts";
    let targets = ctx.handoff_targets();
    if targets.is_empty() {
        return no_handoff_target(id);
    }
    let mut out = Vec::new();
    for (t, u) in targets {
        let need_read = (u.connect_timeout + u.header_timeout).max(u.read_timeout);
        out.push(timer(
            id,
            &format!("{}_read_timeout", t.directive.trim_end_matches("_pass")),
            &t.read_timeout,
            need_read,
            &format!(
                "handoff's connect_timeout + header_timeout ({} + {}) and read_timeout ({}) of upstream {}",
                show_time(u.connect_timeout),
                show_time(u.header_timeout),
                show_time(u.read_timeout),
                u.name
            ),
            Reason::ResponseHeaderTimeout,
            &t.place,
        ));
        out.push(timer(
            id,
            &format!("{}_send_timeout", t.directive.trim_end_matches("_pass")),
            &t.send_timeout,
            u.write_timeout,
            &format!(
                "handoff's write_timeout ({}) of upstream {}",
                show_time(u.write_timeout),
                u.name
            ),
            Reason::RequestWriteTimeout,
            &t.place,
        ));
        let c = &t.connect_timeout;
        let set = c.source.as_ref().map_or(" (nginx's default)", |_| "");
        out.push(
            Finding::new(
                id,
                Status::Ok,
                format!("proxy_connect_timeout {}{set} ({})", show_time(c.value), t.place),
                "covers nginx's connect to handoff only, which accepts at once; handoff's own connect_timeout bounds the app's",
            )
            .at(c.source.as_ref()),
        );
    }
    out
}

/// The skip of a check about the locations in front of handoff when there is none.
fn no_handoff_target(id: &'static str) -> Vec<Finding> {
    vec![Finding::skip(
        id,
        "nginx",
        "no nginx location passes requests to handoff",
    )]
}

fn timer(
    id: &'static str,
    name: &str,
    nginx: &Setting<Duration>,
    need: Duration,
    what: &str,
    reason: Reason,
    place: &str,
) -> Finding {
    let set = nginx.source.as_ref().map_or(" (nginx's default)", |_| "");
    let subject = format!("{name} {}{set} ({place})", show_time(nginx.value));
    let finding = if nginx.value > need {
        Finding::new(id, Status::Ok, subject, format!("longer than {what}"))
    } else {
        Finding::new(
            id,
            Status::Fail,
            subject,
            format!("not longer than {what}: nginx gives up first and answers its own bare 504, so handoff's reason never reaches the client"),
        )
        .reason(reason)
        .hint(format!("set {name} above {} (e.g. {}), or lower handoff's timers", show_time(need), show_time(need + Duration::from_secs(2))))
    };
    finding.at(nginx.source.as_ref())
}

/// `nginx.buffers`: nginx's `proxy_buffer_size` is what handoff's `nginx_buffer_bytes`
/// warns against.
pub(crate) fn buffers(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "nginx.buffers";
    let targets = ctx.handoff_targets();
    if targets.is_empty() {
        return no_handoff_target(id);
    }
    targets
        .into_iter()
        .map(|(t, u)| {
            let b = &t.buffer_size;
            let set = b.source.as_ref().map_or(" (nginx's default)", |_| "");
            let subject = format!("proxy_buffer_size {}{set} ({})", show_size(b.value), t.place);
            let finding = if b.value == u.nginx_buffer_bytes {
                Finding::new(id, Status::Ok, subject, format!("the same as handoff's nginx_buffer_bytes for upstream {}", u.name))
            } else if b.value < u.nginx_buffer_bytes {
                Finding::new(
                    id,
                    Status::Warn,
                    subject,
                    format!(
                        "smaller than handoff's nginx_buffer_bytes ({}) for upstream {}: a response header between the two passes handoff unflagged, and nginx answers 502 \"upstream sent too big header\"",
                        u.nginx_buffer_bytes, u.name
                    ),
                )
                .reason(Reason::ResponseHeaderTooLarge)
                .hint(format!("set nginx_buffer_bytes = {} in upstream {}, or proxy_buffer_size {}", b.value, u.name, show_size(u.nginx_buffer_bytes)))
            } else {
                Finding::new(
                    id,
                    Status::Warn,
                    subject,
                    format!("larger than handoff's nginx_buffer_bytes ({}) for upstream {}: handoff flags headers that nginx accepts", u.nginx_buffer_bytes, u.name),
                )
                .hint(format!("set nginx_buffer_bytes = {} in upstream {}", b.value, u.name))
            };
            finding.at(b.source.as_ref().or(Some(&t.source)))
        })
        .collect()
}

/// `nginx.intercept_errors`: `proxy_intercept_errors on` with an `error_page` for 502, 503
/// or 504 replaces handoff's annotated answer with nginx's page.
pub(crate) fn intercept(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "nginx.intercept_errors";
    let targets = ctx.handoff_targets();
    if targets.is_empty() {
        return no_handoff_target(id);
    }
    targets
        .into_iter()
        .map(|(t, _)| {
            let i = &t.intercept_errors;
            let subject = format!("proxy_intercept_errors {} ({})", if i.value { "on" } else { "off" }, t.place);
            let hiding = t
                .error_pages
                .iter()
                .find(|(codes, _)| codes.iter().any(|c| matches!(c, 500 | 502 | 503 | 504)));
            match (i.value, hiding) {
                (true, Some((codes, page))) => {
                    let codes: Vec<String> = codes.iter().map(u16::to_string).collect();
                    Finding::new(
                        id,
                        Status::Warn,
                        subject,
                        format!("with error_page {} at {page}: nginx replaces handoff's annotated answers (X-Handoff-Reason, Proxy-Status, the problem body) with its own page", codes.join(" ")),
                    )
                    .hint("proxy_intercept_errors off in this location, or leave 502, 503 and 504 out of its error_page")
                    .at(i.source.as_ref())
                }
                (true, None) => Finding::new(id, Status::Ok, subject, "on, but no error_page for 5xx here: handoff's answers pass").at(i.source.as_ref()),
                (false, _) => Finding::new(id, Status::Ok, subject, "handoff's answers pass through").at(i.source.as_ref().or(Some(&t.source))),
            }
        })
        .collect()
}
