//! The host around the sockets: SELinux, the services' states, memory, OOM kills, free
//! space where logs and sockets live, and descriptor limits against nginx's connections.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use handoff_config::UpstreamAddress;
use handoff_diag::Reason;
use handoff_probe::process::fd_usage;

use super::Ctx;
use crate::nginx::Endpoint;
use crate::report::{Finding, Status};

/// `selinux`: enforcing, and whether nginx may connect to TCP ports.
pub(crate) fn selinux(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "selinux";
    let enforce = ctx.host.selinux.join("enforce");
    let subject = enforce.display().to_string();
    let mode = match std::fs::read_to_string(&enforce) {
        Ok(mode) => mode,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Finding::new(
                id,
                Status::Ok,
                subject,
                "SELinux is not enabled on this host",
            )];
        }
        Err(e) => return vec![Finding::skip(id, subject, format!("cannot read it: {e}"))],
    };
    if mode.trim() != "1" {
        return vec![Finding::new(
            id,
            Status::Ok,
            subject,
            "SELinux is permissive: it logs denials, it does not enforce them",
        )];
    }
    let boolean = ctx.host.selinux.join("booleans/httpd_can_network_connect");
    let tcp_targets = ctx.nginx.targets.iter().any(|t| {
        t.endpoints
            .iter()
            .any(|e| matches!(e, Endpoint::Tcp { .. }))
    });
    match std::fs::read_to_string(&boolean) {
        // "current pending": the first is in force.
        Ok(v) if v.split_whitespace().next() == Some("1") => vec![Finding::new(id, Status::Ok, boolean.display().to_string(), "SELinux is enforcing; httpd_can_network_connect is on")],
        Ok(_) if tcp_targets => vec![Finding::new(
            id,
            Status::Fail,
            boolean.display().to_string(),
            "SELinux is enforcing and httpd_can_network_connect is off: nginx may not connect to TCP ports outside http_port_t, and logs connect() failed (13: Permission denied)",
        )
        .hint("setsebool -P httpd_can_network_connect 1 (or label the port: semanage port -a -t http_port_t -p tcp PORT)")],
        Ok(_) => vec![Finding::new(id, Status::Ok, boolean.display().to_string(), "SELinux is enforcing; httpd_can_network_connect is off, and nginx has no TCP target")],
        Err(e) => vec![Finding::skip(id, boolean.display().to_string(), format!("SELinux is enforcing; the boolean cannot be read: {e}"))],
    }
}

/// `service.state`: the units of nginx, handoff and php-fpm, read with `systemctl show`
/// where systemd is PID 1.
pub(crate) fn service_state(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "service.state";
    let pid1 = std::fs::read_to_string(ctx.host.proc.join("1/comm")).unwrap_or_default();
    let pid1 = pid1.trim();
    if pid1 != "systemd" {
        let what = if pid1.is_empty() {
            "unknown".to_owned()
        } else {
            pid1.to_owned()
        };
        return vec![Finding::skip(
            id,
            "systemd",
            format!("PID 1 is {what}, not systemd: no unit states to read"),
        )];
    }
    if !ctx.host.live {
        return vec![Finding::skip(id, "systemd", "live checks are off")];
    }
    let mut units = vec!["nginx.service".to_owned(), "handoff.service".to_owned()];
    for dir in &ctx.host.php_pools {
        // /etc/php/8.2/fpm/pool.d -> php8.2-fpm.service (Debian); /etc/php-fpm.d -> php-fpm.service.
        let version = dir
            .parent()
            .and_then(Path::parent)
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str());
        match version {
            Some(v) if dir.ends_with("fpm/pool.d") => units.push(format!("php{v}-fpm.service")),
            _ if dir.ends_with("php-fpm.d") && dir.is_dir() => units.push("php-fpm.service".into()),
            _ => {}
        }
    }
    units
        .into_iter()
        .map(|unit| {
            let out = std::process::Command::new("systemctl")
                .args([
                    "show",
                    "--property=LoadState,ActiveState,SubState,NRestarts,Result",
                    &unit,
                ])
                .output();
            let text = match out {
                Ok(out) if out.status.success() => {
                    String::from_utf8_lossy(&out.stdout).into_owned()
                }
                Ok(out) => {
                    return Finding::skip(
                        id,
                        unit,
                        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    )
                }
                Err(e) => return Finding::skip(id, unit, format!("cannot run systemctl: {e}")),
            };
            let get = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                    .unwrap_or("")
                    .to_owned()
            };
            let (load, active, sub, restarts, result) = (
                get("LoadState"),
                get("ActiveState"),
                get("SubState"),
                get("NRestarts"),
                get("Result"),
            );
            if load == "not-found" {
                return Finding::skip(id, unit, "no such unit here");
            }
            let message = format!("{active} ({sub}), result {result}, restarted {restarts} times");
            match active.as_str() {
                "active" if restarts == "0" || restarts.is_empty() => {
                    Finding::new(id, Status::Ok, unit, message)
                }
                "active" => Finding::new(id, Status::Warn, unit.clone(), message)
                    .hint(format!("it restarts: journalctl -u {unit} says why")),
                _ => Finding::new(id, Status::Fail, unit.clone(), message)
                    .hint(format!("systemctl status {unit}; journalctl -u {unit}")),
            }
        })
        .collect()
}

/// A `key: N kB` field of `/proc/meminfo`.
fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `resources.memory`: MemAvailable, and memory pressure.
pub(crate) fn memory(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "resources.memory";
    let path = ctx.host.proc.join("meminfo");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            return vec![Finding::skip(
                id,
                path.display().to_string(),
                format!("cannot read it: {e}"),
            )]
        }
    };
    let (Some(total), Some(available)) =
        (meminfo(&text, "MemTotal"), meminfo(&text, "MemAvailable"))
    else {
        return vec![Finding::skip(
            id,
            path.display().to_string(),
            "no MemTotal / MemAvailable in it",
        )];
    };
    let percent = available as f64 * 100.0 / total.max(1) as f64;
    let mut message = format!(
        "{} MiB of {} MiB available ({percent:.0}%)",
        available / 1024,
        total / 1024
    );
    let pressure = std::fs::read_to_string(ctx.host.proc.join("pressure/memory"))
        .ok()
        .and_then(|p| {
            let some = p.lines().find(|l| l.starts_with("some"))?;
            some.split_whitespace()
                .find_map(|f| f.strip_prefix("avg10=")?.parse::<f64>().ok())
        });
    if let Some(p) = pressure {
        message.push_str(&format!("; memory pressure {p:.1}% of the last 10 s"));
    }
    let finding = if percent < 5.0 {
        Finding::new(id, Status::Fail, "memory", message)
            .reason(Reason::ClosedBeforeResponse)
            .hint("the OOM killer is next: workers die mid-request (closed_before_response); find what grows (ps aux --sort=-rss)")
    } else if percent < 10.0 || pressure.is_some_and(|p| p > 10.0) {
        Finding::new(id, Status::Warn, "memory", message)
            .hint("memory is tight: look at the largest processes (ps aux --sort=-rss)")
    } else {
        Finding::new(id, Status::Ok, "memory", message)
    };
    vec![finding]
}

/// `resources.oom`: OOM kills since boot, and in the cgroups of nginx, php-fpm and handoff.
pub(crate) fn oom(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "resources.oom";
    let vmstat = ctx.host.proc.join("vmstat");
    let mut out = Vec::new();
    match std::fs::read_to_string(&vmstat) {
        Ok(text) => {
            let kills: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            out.push(if kills == 0 {
                Finding::new(id, Status::Ok, "host", "no process was OOM-killed since boot")
            } else {
                Finding::new(id, Status::Warn, "host", format!("{kills} processes were OOM-killed since boot: a killed worker closes its connections mid-request"))
                    .reason(Reason::ClosedBeforeResponse)
                    .hint("journalctl -k | grep -i oom (or dmesg as root) names them")
            });
        }
        Err(e) => out.push(Finding::skip(
            id,
            "host",
            format!("cannot read {}: {e}", vmstat.display()),
        )),
    }
    if ctx.host.live {
        for (name, cgroup) in service_cgroups(ctx) {
            let events = ctx
                .host
                .cgroup
                .join(cgroup.trim_start_matches('/'))
                .join("memory.events");
            let Ok(text) = std::fs::read_to_string(&events) else {
                continue;
            };
            let kills: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if kills > 0 {
                out.push(
                    Finding::new(
                        id,
                        Status::Warn,
                        format!("{name} (cgroup {cgroup})"),
                        format!("{kills} OOM kills in this cgroup ({})", events.display()),
                    )
                    .reason(Reason::ClosedBeforeResponse)
                    .hint("raise the service's MemoryMax= or find what grows"),
                );
            }
        }
    }
    out
}

/// The cgroup v2 paths of running nginx, php-fpm and handoff processes, one per name.
fn service_cgroups(ctx: &Ctx<'_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (pid, comm) in processes(&ctx.host.proc) {
        let name = if comm.starts_with("php-fpm") {
            "php-fpm".to_owned()
        } else {
            comm.clone()
        };
        if !matches!(name.as_str(), "nginx" | "php-fpm" | "handoff") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(ctx.host.proc.join(pid.to_string()).join("cgroup"))
        else {
            continue;
        };
        if let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) {
            if !out.iter().any(|(n, p)| *n == name && p == path) {
                out.push((name, path.to_owned()));
            }
        }
    }
    out
}

/// Every process's pid and command name.
fn processes(proc: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, String)> = entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(proc.join(pid.to_string()).join("comm")).ok()?;
            Some((pid, comm.trim().to_owned()))
        })
        .collect();
    out.sort();
    out
}

/// `resources.disk`: free space and inodes where nginx logs and where sockets live.
pub(crate) fn disk(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "resources.disk";
    if !ctx.host.live {
        return vec![Finding::skip(id, "disk", "live checks are off")];
    }
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for (log, _) in &ctx.nginx.error_logs {
        dirs.extend(log.parent().map(Path::to_owned));
    }
    for log in &ctx.nginx.access_logs {
        dirs.extend(log.parent().map(Path::to_owned));
    }
    for t in &ctx.nginx.targets {
        for e in &t.endpoints {
            if let Endpoint::Unix { path, .. } = e {
                dirs.extend(path.parent().map(Path::to_owned));
            }
        }
    }
    if let Some(settings) = ctx.settings {
        for u in &settings.upstreams {
            if let UpstreamAddress::Unix(path) = &u.address {
                dirs.extend(path.parent().map(Path::to_owned));
            }
        }
    }
    if ctx.host.php_run.is_dir() {
        dirs.insert(ctx.host.php_run.clone());
    }
    let mut out = Vec::new();
    for dir in dirs {
        let subject = dir.display().to_string();
        let stat = match nix::sys::statvfs::statvfs(&dir) {
            Ok(s) => s,
            Err(nix::errno::Errno::ENOENT) => continue, // target.socket says so
            Err(e) => {
                out.push(Finding::skip(id, subject, format!("cannot look: {e}")));
                continue;
            }
        };
        let block = stat.fragment_size() as u64;
        let free = stat.blocks_available() as u64 * block;
        let total = stat.blocks() as u64 * block;
        let files_free = stat.files_available() as u64;
        let files = stat.files() as u64;
        let pct = |part: u64, whole: u64| {
            if whole == 0 {
                100.0
            } else {
                part as f64 * 100.0 / whole as f64
            }
        };
        let (space, inodes) = (pct(free, total), pct(files_free, files));
        let message = format!(
            "{} MiB free of {} MiB ({space:.0}%), {inodes:.0}% of inodes free",
            free >> 20,
            total >> 20
        );
        out.push(if space < 2.0 || inodes < 2.0 || free < 64 << 20 {
            Finding::new(id, Status::Fail, subject, message).hint("a full disk stops nginx's logs and makes socket creation fail at the app's restart: free space there")
        } else if space < 10.0 || inodes < 10.0 {
            Finding::new(id, Status::Warn, subject, message).hint("free space there before it fills (logrotate?)")
        } else {
            Finding::new(id, Status::Ok, subject, message)
        });
    }
    if out.is_empty() {
        out.push(Finding::skip(
            id,
            "disk",
            "no log or socket directory to look at",
        ));
    }
    out
}

/// `resources.fds`: the descriptor limits of nginx's workers and of handoff against
/// `worker_connections` (each proxied connection holds two descriptors).
pub(crate) fn fds(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "resources.fds";
    let connections = ctx
        .nginx
        .worker_connections
        .as_ref()
        .map_or(crate::nginx::DEFAULT_WORKER_CONNECTIONS, |w| w.0);
    let wc_source = ctx.nginx.worker_connections.as_ref().map(|w| &w.1);
    if !ctx.host.live {
        return vec![Finding::skip(id, "processes", "live checks are off")];
    }
    let mut out = Vec::new();
    let procs = processes(&ctx.host.proc);
    let workers: Vec<u32> = procs
        .iter()
        .filter(|(pid, comm)| {
            comm == "nginx"
                && std::fs::read(ctx.host.proc.join(pid.to_string()).join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("worker process"))
        })
        .map(|(pid, _)| *pid)
        .collect();
    match workers.first() {
        None => out.push(Finding::skip(
            id,
            "nginx workers",
            "no nginx worker process is running",
        )),
        Some(pid) => {
            let usage = fd_usage(&ctx.host.proc.join(pid.to_string()));
            let subject = format!("nginx worker (pid {pid})");
            out.push(match usage.soft {
                None => Finding::skip(id, subject, "its limits cannot be read"),
                Some(soft) if soft < connections => Finding::new(
                    id,
                    Status::Fail,
                    subject,
                    format!("open-file limit {soft} is below worker_connections {connections}: nginx runs out of descriptors before connections"),
                )
                .hint(format!("worker_rlimit_nofile {} in nginx.conf (or LimitNOFILE= in its unit)", connections * 2))
                .at(wc_source),
                Some(soft) if soft < 2 * connections => Finding::new(
                    id,
                    Status::Warn,
                    subject,
                    format!("open-file limit {soft} is below twice worker_connections ({connections}): each proxied connection holds two"),
                )
                .hint(format!("worker_rlimit_nofile {}", connections * 2))
                .at(wc_source),
                Some(soft) => Finding::new(id, Status::Ok, subject, format!("open-file limit {soft}, worker_connections {connections}")).at(wc_source),
            });
        }
    }
    let handoffs: Vec<u32> = procs
        .iter()
        .filter(|(_, c)| c == "handoff")
        .map(|(pid, _)| *pid)
        .collect();
    let workers_n = workers.len().max(1) as u64;
    for pid in handoffs {
        let usage = fd_usage(&ctx.host.proc.join(pid.to_string()));
        let subject = format!("handoff (pid {pid})");
        let need = 2 * connections * workers_n;
        out.push(match (usage.soft, usage.open) {
            (None, _) => Finding::skip(id, subject, "its limits cannot be read"),
            (Some(soft), open) if soft < need => Finding::new(
                id,
                Status::Warn,
                subject,
                format!(
                    "open-file limit {soft}{} is below 2 x worker_connections x workers ({need}): under full load handoff runs out first",
                    open.map(|o| format!(" ({o} open)")).unwrap_or_default()
                ),
            )
            .reason(Reason::ProxyInternalError)
            .hint(format!("LimitNOFILE={need} (or more) in handoff's unit")),
            (Some(soft), open) => Finding::new(id, Status::Ok, subject, format!("open-file limit {soft}{}", open.map(|o| format!(", {o} open")).unwrap_or_default())),
        });
    }
    out
}
