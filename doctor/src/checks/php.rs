//! php-fpm: does every `fastcgi_pass` reach a pool (the php8.2 vs php8.3 drift), are the
//! pools' limits and timers set so that nginx and handoff name the failures, and can a
//! stuck worker be seen.

use std::net::SocketAddr;
use std::time::Duration;

use handoff_diag::Reason;

use super::{same_port_and_host, Ctx};
use crate::nginx::units::{parse_time, show_time};
use crate::nginx::{Endpoint, Source, Target};
use crate::phpfpm::Pool;
use crate::report::{Finding, Status};

fn source(pool: &Pool, line: usize) -> Source {
    Source {
        file: pool.file.as_path().into(),
        line,
    }
}

/// Whether a pool's listen is the endpoint.
fn serves(listen: &str, endpoint: &Endpoint) -> bool {
    match endpoint {
        Endpoint::Unix { path, .. } => listen
            .strip_prefix("unix:")
            .is_some_and(|p| std::path::Path::new(p) == path.as_path()),
        Endpoint::Tcp { addrs, .. } => listen
            .parse::<SocketAddr>()
            .ok()
            .is_some_and(|l| addrs.iter().any(|a| same_port_and_host(l, *a))),
        Endpoint::Unresolved { .. } => false,
    }
}

fn fastcgi_targets<'c>(ctx: &'c Ctx<'_>) -> Vec<(&'c Target, &'c Endpoint)> {
    ctx.nginx
        .targets
        .iter()
        .filter(|t| t.directive == "fastcgi_pass")
        .flat_map(|t| t.endpoints.iter().map(move |e| (t, e)))
        .collect()
}

/// `phpfpm.drift`: every `fastcgi_pass` against the pools' `listen`, and the sockets in
/// `/run/php` that no pool creates any more.
pub(crate) fn drift(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "phpfpm.drift";
    let targets = fastcgi_targets(ctx);
    let mut out: Vec<Finding> = ctx
        .pool_problems
        .iter()
        .map(|p| Finding::skip(id, "php-fpm pools", p.clone()))
        .collect();
    if ctx.pools.is_empty() {
        if targets.is_empty() {
            out.push(Finding::skip(
                id,
                "php-fpm",
                "no php-fpm pools on this host and no fastcgi_pass in nginx",
            ));
        } else {
            let dirs: Vec<String> = ctx
                .host
                .php_pools
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            for (_, e) in &targets {
                out.push(
                    Finding::new(
                        id,
                        Status::Fail,
                        format!("fastcgi_pass {}", e.text()),
                        format!("no php-fpm pool found (looked in {})", dirs.join(", ")),
                    )
                    .at(Some(e.source()))
                    .hint("install php-fpm, or give the pool directory with --php-fpm-pools"),
                );
            }
        }
        return out;
    }
    let listens: Vec<(&Pool, String, usize)> = ctx
        .pools
        .iter()
        .filter_map(|p| p.listen().map(|(l, line)| (p, l, line)))
        .collect();
    let named = |list: &[(&Pool, String, usize)]| -> String {
        list.iter()
            .map(|(p, l, line)| format!("{l} (pool {}, {}:{line})", p.name, p.file.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (_, e) in &targets {
        let subject = format!("fastcgi_pass {}", e.text());
        let finding = match listens.iter().find(|(_, l, _)| serves(l, e)) {
            Some((pool, _, line)) => Finding::new(
                id,
                Status::Ok,
                subject,
                format!(
                    "pool {} listens there ({}:{line})",
                    pool.name,
                    pool.file.display()
                ),
            ),
            None => {
                let reason = if matches!(e, Endpoint::Unix { .. }) {
                    Reason::SocketNotFound
                } else {
                    Reason::ConnectRefused
                };
                let hint = match listens.as_slice() {
                    [(pool, l, _)] => format!("point fastcgi_pass at {l} (pool {}), or start the php-fpm whose pool listens at {}", pool.name, e.text()),
                    _ => "point fastcgi_pass at one of the pools' listen addresses".to_owned(),
                };
                Finding::new(
                    id,
                    Status::Fail,
                    subject,
                    format!(
                        "no pool listens there; the pools listen on {}",
                        named(&listens)
                    ),
                )
                .reason(reason)
                .hint(hint)
            }
        };
        out.push(finding.at(Some(e.source())));
    }
    for (pool, listen, line) in &listens {
        if targets.iter().any(|(_, e)| serves(listen, e)) {
            continue;
        }
        let subject = format!("pool {} listen {listen}", pool.name);
        let finding = if targets.is_empty() {
            Finding::new(
                id,
                Status::Ok,
                subject,
                "no fastcgi_pass in nginx uses php-fpm",
            )
        } else {
            Finding::new(
                id,
                Status::Warn,
                subject,
                "no fastcgi_pass points at this pool: nginx sends PHP to another address",
            )
            .hint("if this is the PHP version you run, point fastcgi_pass here")
        };
        out.push(finding.at(Some(&source(pool, *line))));
    }
    // Sockets left by a PHP version that is gone (php8.1-fpm.sock after an upgrade).
    if let Ok(entries) = std::fs::read_dir(&ctx.host.php_run) {
        let mut stale: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                use std::os::unix::fs::FileTypeExt;
                e.file_type().is_ok_and(|t| t.is_socket())
            })
            .map(|e| format!("unix:{}", e.path().display()))
            .filter(|s| !listens.iter().any(|(_, l, _)| l == s))
            .collect();
        stale.sort();
        for s in stale {
            out.push(
                Finding::new(id, Status::Warn, s, "a socket that no pool listens on: left by an old or stopped php-fpm")
                    .hint("make sure nothing points at it; php-fpm removes its socket when it stops cleanly"),
            );
        }
    }
    out
}

/// `phpfpm.pool`: each pool's process limits, its request timer against nginx's, its
/// status page and its slow log.
pub(crate) fn pool(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "phpfpm.pool";
    if ctx.pools.is_empty() {
        return vec![Finding::skip(
            id,
            "php-fpm",
            "no php-fpm pools on this host",
        )];
    }
    let mut out = Vec::new();
    for pool in &ctx.pools {
        let subject = |what: &str| format!("pool {} {what}", pool.name);
        let at = |line: usize| source(pool, line);
        // Process manager.
        let pm = pool.get("pm").map_or("dynamic", |(v, _)| v);
        out.push(match pool.get("pm.max_children") {
            None => Finding::new(id, Status::Fail, subject("pm.max_children"), "not set: php-fpm refuses to start the pool without it")
                .at(Some(&at(pool.line)))
                .hint("set pm.max_children (memory available / one worker's RSS)"),
            Some((n, line)) => {
                let n: u64 = n.parse().unwrap_or(0);
                let f = if n <= 5 {
                    Finding::new(
                        id,
                        Status::Warn,
                        subject("pm.max_children"),
                        format!("pm = {pm}, at most {n} workers (the package default): request {} waits in the listen queue until a worker is free, and a slow one times out", n + 1),
                    )
                    .hint("size pm.max_children to the memory available divided by one worker's RSS")
                } else {
                    Finding::new(id, Status::Ok, subject("pm.max_children"), format!("pm = {pm}, at most {n} workers"))
                };
                f.at(Some(&at(line)))
            }
        });
        // request_terminate_timeout against nginx's fastcgi_read_timeout for this pool.
        let nginx_read = fastcgi_targets(ctx)
            .into_iter()
            .filter(|(_, e)| pool.listen().is_some_and(|(l, _)| serves(&l, e)))
            .map(|(t, _)| t.read_timeout.value)
            .min()
            .unwrap_or(crate::nginx::DEFAULT_TIMEOUT);
        let terminate = pool.get("request_terminate_timeout");
        let value = terminate
            .and_then(|(v, _)| parse_time(v))
            .unwrap_or(Duration::ZERO);
        let name = format!(
            "request_terminate_timeout {}",
            terminate.map_or("0 (default)", |(v, _)| v)
        );
        out.push(if value.is_zero() {
            Finding::new(
                id,
                Status::Warn,
                subject(&name),
                format!("no limit: a stuck script keeps its worker after nginx gives up at {} (fastcgi_read_timeout) with a 504", show_time(nginx_read)),
            )
            .hint(format!("set request_terminate_timeout just below {}", show_time(nginx_read)))
        } else if value >= nginx_read {
            Finding::new(
                id,
                Status::Warn,
                subject(&name),
                format!("not shorter than nginx's fastcgi_read_timeout ({}): nginx answers 504 before php-fpm ends the script and logs why", show_time(nginx_read)),
            )
            .reason(Reason::ResponseHeaderTimeout)
            .hint(format!("set request_terminate_timeout below {}", show_time(nginx_read)))
        } else {
            Finding::new(id, Status::Ok, subject(&name), format!("shorter than nginx's fastcgi_read_timeout ({})", show_time(nginx_read)))
        }
        .at(Some(&terminate.map_or(at(pool.line), |(_, l)| at(l)))));
        // Status page and slow log: how a stuck or saturated pool is seen.
        out.push(match pool.get("pm.status_path") {
            Some((path, line)) => Finding::new(id, Status::Ok, subject("pm.status_path"), format!("status page at {path}: active, idle and queued workers")).at(Some(&at(line))),
            None => Finding::new(id, Status::Warn, subject("pm.status_path"), "no status page: a saturated pool (every worker busy, requests queued) cannot be seen")
                .at(Some(&at(pool.line)))
                .hint("set pm.status_path = /status and allow it to localhost only in nginx"),
        });
        out.push(
            match (pool.get("slowlog"), pool.get("request_slowlog_timeout")) {
                (Some((log, _)), Some((t, line)))
                    if parse_time(t).is_some_and(|t| !t.is_zero()) =>
                {
                    Finding::new(
                        id,
                        Status::Ok,
                        subject("slowlog"),
                        format!("scripts slower than {t} are logged to {log} with a backtrace"),
                    )
                    .at(Some(&at(line)))
                }
                _ => Finding::new(
                    id,
                    Status::Warn,
                    subject("slowlog"),
                    "no slow log: a script that hangs leaves no trace of where",
                )
                .at(Some(&at(pool.line)))
                .hint("set slowlog and request_slowlog_timeout (e.g. 5s)"),
            },
        );
    }
    out
}
