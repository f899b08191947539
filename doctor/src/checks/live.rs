//! What has been happening: nginx's recent error-log lines by the handoff reason they
//! correspond to, and a running handoff's readiness and recent failures.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use handoff_config::ListenAddress;
use handoff_diag::Reason;

use super::Ctx;
use crate::nginx::Source;
use crate::report::{Finding, Status};

/// How much of the end of each error log is read.
const LOG_TAIL_BYTES: u64 = 512 * 1024;
/// The longest example line quoted.
const EXAMPLE_MAX: usize = 300;

/// `logs`: the end of each nginx error log, its upstream errors grouped by reason.
pub(crate) fn logs(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "logs";
    let mut logs: Vec<(PathBuf, Option<Source>)> = Vec::new();
    for (path, source) in &ctx.nginx.error_logs {
        if !logs.iter().any(|(p, _)| p == path) {
            logs.push((path.clone(), Some(source.clone())));
        }
    }
    if logs.is_empty() {
        return vec![Finding::skip(
            id,
            "nginx error log",
            "nginx's configuration names no error_log file (stderr or syslog)",
        )];
    }
    let mut out = Vec::new();
    for (path, source) in logs {
        let subject = path.display().to_string();
        let text = match tail(&path) {
            Ok(text) => text,
            Err(e) => {
                out.push(
                    Finding::skip(id, subject, format!("cannot read it: {e}")).at(source.as_ref()),
                );
                continue;
            }
        };
        let mut by_reason: BTreeMap<&'static str, (usize, String)> = BTreeMap::new();
        let mut lines = 0;
        for line in text.lines() {
            lines += 1;
            if let Some(r) = Reason::from_nginx_log(line) {
                let entry = by_reason.entry(r.as_str()).or_default();
                entry.0 += 1;
                entry.1 = line.chars().take(EXAMPLE_MAX).collect();
            }
        }
        if by_reason.is_empty() {
            out.push(
                Finding::new(
                    id,
                    Status::Ok,
                    subject,
                    format!("no upstream errors in its last {lines} lines"),
                )
                .at(source.as_ref()),
            );
            continue;
        }
        for (reason, (count, last)) in by_reason {
            let r = Reason::ALL
                .into_iter()
                .find(|r| r.as_str() == reason)
                .expect("a label of Reason::ALL");
            out.push(
                Finding::new(
                    id,
                    Status::Warn,
                    format!("{subject}: {reason}"),
                    format!(
                        "{count} line{} in the last {lines}; the newest: {last}",
                        if count == 1 { "" } else { "s" }
                    ),
                )
                .reason(r)
                .hint(r.hint_summary())
                .at(source.as_ref()),
            );
        }
    }
    out
}

/// The last [`LOG_TAIL_BYTES`] of `path`, from the first whole line.
fn tail(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(if start > 0 {
        text.split_once('\n')
            .map_or(String::new(), |(_, rest)| rest.to_owned())
    } else {
        text
    })
}

/// `handoff.live`: `/readyz`, and the recent failures by reason.
pub(crate) fn handoff_live(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "handoff.live";
    let Some(settings) = ctx.settings else {
        return vec![Finding::skip(
            id,
            "handoff",
            "no handoff configuration (give -c FILE)",
        )];
    };
    let admin = &settings.admin.listen;
    let subject = format!("admin {admin}");
    if !ctx.host.live {
        return vec![Finding::skip(id, subject, "live checks are off")];
    }
    let ready = match get(admin, "/readyz", ctx) {
        Ok((status, _)) => status,
        Err(e) => {
            return vec![Finding::new(
                id,
                Status::Fail,
                subject,
                format!("handoff's admin listener does not answer ({e}): handoff is not running"),
            )
            .hint("start handoff (systemctl status handoff; journalctl -u handoff)")]
        }
    };
    if ready != 200 {
        return vec![Finding::new(
            id,
            Status::Fail,
            subject,
            format!("/readyz answered {ready}: handoff is starting or draining"),
        )
        .hint("journalctl -u handoff says why")];
    }
    let failures = get(admin, "/failures?limit=256", ctx)
        .ok()
        .and_then(|(_, body)| serde_json::from_slice::<serde_json::Value>(&body).ok());
    let Some(list) = failures.as_ref().and_then(|f| f["failures"].as_array()) else {
        return vec![Finding::new(
            id,
            Status::Ok,
            subject,
            "ready; /failures could not be read",
        )];
    };
    let mut by_reason: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for f in list {
        let reason = f["reason"].as_str().unwrap_or("?").to_owned();
        let entry = by_reason
            .entry(reason)
            .or_insert_with(|| (0, f["upstream"].as_str().unwrap_or("").to_owned()));
        entry.0 += 1;
    }
    if by_reason.is_empty() {
        return vec![Finding::new(
            id,
            Status::Ok,
            subject,
            "ready; no recent failures",
        )];
    }
    let summary: Vec<String> = by_reason
        .iter()
        .map(|(r, (n, u))| format!("{r} x{n} (upstream {u})"))
        .collect();
    vec![Finding::new(
        id,
        Status::Warn,
        subject,
        format!("ready; recent failures: {}", summary.join(", ")),
    )
    .hint(format!(
        "curl -s http://{admin}/failures | jq  (each with its evidence and hint)"
    ))]
}

/// One GET to the admin listener: status and body.
fn get(admin: &ListenAddress, path: &str, ctx: &Ctx<'_>) -> std::io::Result<(u16, Vec<u8>)> {
    let timeout = Some(ctx.host.connect_timeout);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut response = Vec::new();
    match admin {
        ListenAddress::Tcp(addr) => {
            let mut s = std::net::TcpStream::connect_timeout(addr, ctx.host.connect_timeout)?;
            s.set_read_timeout(timeout)?;
            s.write_all(request.as_bytes())?;
            s.read_to_end(&mut response)?;
        }
        ListenAddress::Unix(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path)?;
            s.set_read_timeout(timeout)?;
            s.write_all(request.as_bytes())?;
            s.read_to_end(&mut response)?;
        }
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP response"))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || body.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[(end + 4 + size).min(body.len())..];
    }
    out
}
