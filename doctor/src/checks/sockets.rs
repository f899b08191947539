//! The checks of where requests go, live: does each TCP target listen (over netlink), is
//! each unix socket there, a socket, listening and open to the user who connects, and does
//! a listening target accept a loopback connect in time.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use handoff_config::UpstreamAddress;
use handoff_diag::Reason;
use handoff_probe::access::{socket_access, SocketAccess};
use handoff_probe::identity::Identity;
use handoff_probe::process::socket_owners;
use handoff_probe::{near_listeners, Prober, Question};

use super::{app_addrs, same_port_and_host, Ctx};
use crate::nginx::{Endpoint, Source};
use crate::report::{Finding, Status};

/// How long the walk of `/proc` for the processes behind listeners may take.
const OWNER_BUDGET: Duration = Duration::from_millis(300);

/// Who connects to an address, for the messages.
#[derive(Debug, Clone)]
struct Hop {
    /// `proxy_pass 127.0.0.1:3000` or `upstream app address`.
    label: String,
    /// `nginx` or `handoff`.
    client: &'static str,
    /// The client speaks FastCGI there (`fastcgi_pass`); otherwise HTTP (or uwsgi, gRPC).
    fastcgi: bool,
    source: Option<Source>,
}

/// The finding for an HTTP client pointed at php-fpm, which speaks FastCGI: it closes the
/// connection on the first bytes, and the client sees a premature close.
fn speaks_fastcgi(id: &'static str, subject: String, hop: &Hop, who: &str) -> Finding {
    let fix = if hop.client == "nginx" {
        "use fastcgi_pass (with the fastcgi_params) for php-fpm, not proxy_pass"
    } else {
        "point the upstream at the HTTP app; put nginx's fastcgi_pass in front of php-fpm"
    };
    Finding::new(
        id,
        Status::Fail,
        subject,
        format!("served by {who}: php-fpm speaks FastCGI, not HTTP, and closes the connection on an HTTP request"),
    )
    .reason(Reason::ClosedBeforeResponse)
    .hint(fix)
}

/// The TCP addresses to check: nginx's targets and handoff's upstream addresses.
fn tcp_hops(ctx: &Ctx<'_>) -> Vec<(Hop, String, Vec<SocketAddr>)> {
    let mut out: Vec<(Hop, String, Vec<SocketAddr>)> = Vec::new();
    for t in &ctx.nginx.targets {
        for e in &t.endpoints {
            if let Endpoint::Tcp {
                text,
                addrs,
                source,
            } = e
            {
                let hop = Hop {
                    label: format!("{} {text}", t.directive),
                    client: "nginx",
                    fastcgi: t.directive == "fastcgi_pass",
                    source: Some(source.clone()),
                };
                if !out
                    .iter()
                    .any(|(h, _, _)| h.label == hop.label && h.source == hop.source)
                {
                    out.push((hop, text.clone(), addrs.clone()));
                }
            }
        }
    }
    if let Some(settings) = ctx.settings {
        for u in &settings.upstreams {
            if let UpstreamAddress::Tcp { host, port } | UpstreamAddress::Tls { host, port, .. } =
                &u.address
            {
                let hop = Hop {
                    label: format!("upstream {} address", u.name),
                    client: "handoff",
                    fastcgi: false,
                    source: None,
                };
                out.push((hop, u.address.to_string(), app_addrs(host, *port)));
            }
        }
    }
    out
}

/// `target.listening`: something listens on every TCP target, with its process.
pub(crate) fn listening(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "target.listening";
    let hops = tcp_hops(ctx);
    if hops.is_empty() {
        return vec![Finding::skip(
            id,
            "tcp targets",
            "no TCP target in nginx's or handoff's configuration",
        )];
    }
    let listeners = match &ctx.tcp {
        Ok(l) => l,
        Err(why) => {
            return vec![Finding::skip(
                id,
                "tcp targets",
                format!("the listeners could not be listed: {why}"),
            )]
        }
    };
    let mut out = Vec::new();
    for (hop, text, addrs) in hops {
        let subject = subject_of(&hop, &text);
        if addrs.is_empty() {
            out.push(
                Finding::skip(
                    id,
                    subject,
                    "a host name doctor does not resolve (it asks no DNS server)",
                )
                .at(hop.source.as_ref()),
            );
            continue;
        }
        let local: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| is_local(*a, listeners))
            .collect();
        if local.is_empty() {
            out.push(
                Finding::skip(id, subject, "not an address of this host").at(hop.source.as_ref()),
            );
            continue;
        }
        let serving: Vec<(SocketAddr, &handoff_probe::sock_diag::TcpListener)> = local
            .iter()
            .filter_map(|a| {
                Some((
                    *a,
                    listeners.iter().find(|l| same_port_and_host(l.addr, *a))?,
                ))
            })
            .collect();
        let finding = if serving.is_empty() {
            let port = local[0].port();
            let near = near_listeners(port, listeners, &[]);
            let owners = socket_owners(
                &ctx.host.proc,
                &near.iter().map(|l| l.inode).collect::<Vec<_>>(),
                OWNER_BUDGET,
            );
            let named: Vec<String> = near
                .iter()
                .map(|l| match owners.by_inode.get(&l.inode) {
                    Some(p) => format!("{} ({}, pid {})", l.addr, p.comm, p.pid),
                    None => format!("{} (uid {})", l.addr, l.uid),
                })
                .collect();
            let mut message = format!("nothing listens on {text}");
            if !named.is_empty() {
                message.push_str(&format!("; listening nearby: {}", named.join(", ")));
            }
            let f = Finding::new(id, Status::Fail, subject, message).hint(
                "start the app, or point the address at the port it really listens on (ss -ltnp)",
            );
            if hop.client == "handoff" || !is_handoff_listener(ctx, &text) {
                f.reason(Reason::ConnectRefused)
            } else {
                f
            }
        } else {
            let owners = socket_owners(
                &ctx.host.proc,
                &serving.iter().map(|(_, l)| l.inode).collect::<Vec<_>>(),
                OWNER_BUDGET,
            );
            let who: Vec<String> = serving
                .iter()
                .map(|(a, l)| match owners.by_inode.get(&l.inode) {
                    Some(p) => format!("{a} by {} (pid {})", p.comm, p.pid),
                    None => format!("{a} by uid {}", l.uid),
                })
                .collect();
            let php = serving
                .iter()
                .filter_map(|(_, l)| owners.by_inode.get(&l.inode))
                .find(|p| p.comm.starts_with("php-fpm"));
            if let (Some(p), false) = (php, hop.fastcgi) {
                speaks_fastcgi(id, subject, &hop, &format!("{} (pid {})", p.comm, p.pid))
            } else if serving.len() < local.len() {
                let missing: Vec<String> = local
                    .iter()
                    .filter(|a| !serving.iter().any(|(s, _)| s == *a))
                    .map(SocketAddr::to_string)
                    .collect();
                Finding::new(
                    id,
                    Status::Warn,
                    subject,
                    format!("listens on {}, not on {}: {} tries both and logs connect() failed for the other", who.join(", "), missing.join(", "), hop.client),
                )
                .hint("write the address as the IP the app binds (127.0.0.1) instead of localhost")
            } else {
                Finding::new(
                    id,
                    Status::Ok,
                    subject,
                    format!("listening: {}", who.join(", ")),
                )
            }
        };
        out.push(finding.at(hop.source.as_ref()));
    }
    out
}

/// `proxy_pass 127.0.0.1:8080`, or `upstream app address (127.0.0.1:3000)`.
fn subject_of(hop: &Hop, text: &str) -> String {
    if hop.label.ends_with(text) {
        hop.label.clone()
    } else {
        format!("{} ({text})", hop.label)
    }
}

fn is_handoff_listener(ctx: &Ctx<'_>, text: &str) -> bool {
    ctx.settings
        .is_some_and(|s| s.upstreams.iter().any(|u| u.listen.to_string() == text))
}

/// Loopback, unspecified, or an address some listener is bound to.
fn is_local(addr: SocketAddr, listeners: &[handoff_probe::sock_diag::TcpListener]) -> bool {
    addr.ip().is_loopback()
        || addr.ip().is_unspecified()
        || listeners.iter().any(|l| l.addr.ip() == addr.ip())
}

/// A unix socket to check, and for whom.
struct SocketHop<'p> {
    subject: String,
    path: &'p Path,
    /// Who connects; `None`: a user not in `/etc/passwd`.
    who: Option<Identity>,
    /// How that user was found, for the messages.
    how: String,
    /// Who connects and in what protocol, as for TCP targets.
    hop: Hop,
}

/// `target.socket`: every unix target for the user that connects to it.
pub(crate) fn socket_files(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "target.socket";
    let (nginx_user, nginx_id) = ctx.nginx_user();
    let (handoff_id, handoff_how) = ctx.handoff_user();
    let mut hops: Vec<SocketHop<'_>> = Vec::new();
    for t in &ctx.nginx.targets {
        for e in &t.endpoints {
            if let Endpoint::Unix { path, source } = e {
                if !hops
                    .iter()
                    .any(|h| h.path == path.as_path() && h.hop.source.as_ref() == Some(source))
                {
                    let label = format!("{} unix:{}", t.directive, path.display());
                    hops.push(SocketHop {
                        subject: label.clone(),
                        path,
                        who: nginx_id.clone(),
                        how: format!("nginx's worker user {nginx_user}"),
                        hop: Hop {
                            label,
                            client: "nginx",
                            fastcgi: t.directive == "fastcgi_pass",
                            source: Some(source.clone()),
                        },
                    });
                }
            }
        }
    }
    if let Some(settings) = ctx.settings {
        for u in &settings.upstreams {
            if let UpstreamAddress::Unix(path) = &u.address {
                let label = format!("upstream {} address unix:{}", u.name, path.display());
                hops.push(SocketHop {
                    subject: label.clone(),
                    path,
                    who: Some(handoff_id.clone()),
                    how: handoff_how.clone(),
                    hop: Hop {
                        label,
                        client: "handoff",
                        fastcgi: false,
                        source: None,
                    },
                });
            }
        }
    }
    if hops.is_empty() {
        return vec![Finding::skip(
            id,
            "unix targets",
            "no unix socket in nginx's or handoff's configuration",
        )];
    }
    hops.into_iter()
        .map(|hop| {
            let Some(who) = &hop.who else {
                return Finding::skip(
                    id,
                    hop.subject,
                    format!(
                        "{} is not in {}",
                        hop.how,
                        ctx.host.etc.join("passwd").display()
                    ),
                )
                .at(hop.hop.source.as_ref());
            };
            socket_finding(ctx, id, &hop, who).at(hop.hop.source.as_ref())
        })
        .collect()
}

fn socket_finding(
    ctx: &Ctx<'_>,
    id: &'static str,
    socket: &SocketHop<'_>,
    who: &Identity,
) -> Finding {
    let (subject, path, how) = (socket.subject.clone(), socket.path, socket.how.as_str());
    let hop = format!("unix:{}", path.display());
    let probe = |reason| {
        Prober::probe_now(&Question {
            reason,
            next_hop: hop.clone(),
            errno: None,
            reused: false,
        })
        .join("; ")
    };
    let user = format!("{how} ({})", brief(who));
    match socket_access(path, who) {
        SocketAccess::MissingDirectory(dir) => Finding::new(id, Status::Fail, subject, format!("directory {} does not exist", dir.display()))
            .reason(Reason::SocketNotFound)
            .hint("start the app that creates the socket (systemd RuntimeDirectory= makes the directory), or fix the path"),
        SocketAccess::Missing => Finding::new(id, Status::Fail, subject, format!("{} does not exist; {}", path.display(), probe(Reason::SocketNotFound)))
            .reason(Reason::SocketNotFound)
            .hint("compare the path with the socket the app creates (a PHP version in the name?), and check the app has started"),
        SocketAccess::NotASocket(info) => Finding::new(
            id,
            Status::Fail,
            subject,
            format!("{} is {}, not a socket ({}): no app listens there, and chmod will not help", path.display(), info.kind, info.describe()),
        )
        .reason(if who.is_root() { Reason::ConnectRefused } else { Reason::SocketPermissionDenied })
        .hint("remove the file and restart the app, or point the address at the app's real socket"),
        SocketAccess::NotADirectory(info) => Finding::new(id, Status::Fail, subject, format!("{} is {}, not a directory", info.path.display(), info.kind)).reason(Reason::SocketNotFound),
        SocketAccess::Unsearchable(dir) => Finding::new(
            id,
            Status::Fail,
            subject,
            format!("directory {} ({}) cannot be searched by {user}", dir.path.display(), dir.describe()),
        )
        .reason(Reason::SocketPermissionDenied)
        .hint("connecting needs search (x) on every directory of the path: allow that user or one of its groups through it"),
        SocketAccess::NotWritable(info) => Finding::new(
            id,
            Status::Fail,
            subject,
            format!("{user} may not write to the socket ({}): connect() fails with EACCES", info.describe()),
        )
        .reason(Reason::SocketPermissionDenied)
        .hint(pool_hint(ctx, path).unwrap_or_else(|| "make the app create the socket with a group of that user's and mode 660".into())),
        SocketAccess::Unknown(at, kind) => Finding::skip(
            id,
            subject,
            format!("cannot look at {}: {kind} (doctor runs as uid {}; run it as root to check this)", at.display(), Identity::current().uid),
        ),
        SocketAccess::Allowed(info) => {
            let Ok(listeners) = &ctx.unix else {
                return Finding::new(id, Status::Ok, subject, format!("a socket ({}) that {user} may open; whether it listens was not checked", info.describe()));
            };
            match listeners.iter().find(|l| l.file == Some(info.inode)) {
                Some(l) => {
                    let owner = socket_owners(&ctx.host.proc, &[l.inode], OWNER_BUDGET);
                    if let Some(p) = owner.by_inode.get(&l.inode).filter(|p| p.comm.starts_with("php-fpm")) {
                        if !socket.hop.fastcgi {
                            return speaks_fastcgi(id, subject, &socket.hop, &format!("{} (pid {})", p.comm, p.pid));
                        }
                    }
                    let by = owner.by_inode.get(&l.inode).map(|p| format!(" by {} (pid {})", p.comm, p.pid)).unwrap_or_default();
                    Finding::new(id, Status::Ok, subject, format!("listening{by}, {}; {user} may connect; accept queue {} of {}", info.describe(), l.queued, l.backlog))
                }
                None => Finding::new(id, Status::Fail, subject, format!("{}: the file is there but nothing listens on it", probe(Reason::ConnectRefused)))
                    .reason(Reason::ConnectRefused)
                    .hint("a stale socket: start (or restart) the app, which recreates it"),
            }
        }
    }
}

/// The php-fpm pool keys that set a socket's owner, group and mode, for a socket a pool
/// listens on.
fn pool_hint(ctx: &Ctx<'_>, path: &Path) -> Option<String> {
    let hop = format!("unix:{}", path.display());
    let pool = ctx
        .pools
        .iter()
        .find(|p| p.listen().is_some_and(|(l, _)| l == hop))?;
    let (_, line) = pool.listen()?;
    Some(format!(
        "set listen.owner, listen.group (the nginx user's group) and listen.mode = 0660 in pool {} ({}:{line}), then reload php-fpm",
        pool.name,
        pool.file.display()
    ))
}

fn brief(who: &Identity) -> String {
    let groups: Vec<String> = who.all_groups().iter().map(u32::to_string).collect();
    format!("uid {}, groups {}", who.uid, groups.join(","))
}

/// `firewall`: a listening TCP target accepts a loopback connect in time; one that listens
/// but does not is dropped by a firewall rule, or its accept queue is full.
pub(crate) fn firewall(ctx: &Ctx<'_>) -> Vec<Finding> {
    let id = "firewall";
    let listeners = match &ctx.tcp {
        Ok(l) => l,
        Err(why) => {
            return vec![Finding::skip(
                id,
                "tcp targets",
                format!("not checked: {why}"),
            )]
        }
    };
    let mut out = Vec::new();
    for (hop, text, addrs) in tcp_hops(ctx) {
        let Some(addr) = addrs
            .iter()
            .copied()
            .find(|a| listeners.iter().any(|l| same_port_and_host(l.addr, *a)))
        else {
            continue; // target.listening says it does not listen
        };
        if !addr.ip().is_loopback() {
            continue;
        }
        let subject = subject_of(&hop, &text);
        let started = Instant::now();
        let finding = match TcpStream::connect_timeout(&addr, ctx.host.connect_timeout) {
            Ok(_) => Finding::new(id, Status::Ok, subject, format!("{addr} accepted a loopback connect in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0)),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Finding::new(
                id,
                Status::Fail,
                subject,
                format!("{addr} listens but a loopback connect did not complete within {} ms: a firewall rule drops it, or the accept queue is full", ctx.host.connect_timeout.as_millis()),
            )
            .reason(Reason::ConnectTimeout)
            .hint("look at `nft list ruleset` / `iptables -S` for the port, and at the app's accept queue (ss -ltn: Recv-Q)"),
            Err(e) => Finding::new(id, Status::Fail, subject, format!("{addr} listens but refused a loopback connect ({e}): a firewall rule rejects it"))
                .reason(Reason::ConnectRefused)
                .hint("look at `nft list ruleset` / `iptables -S` for the port"),
        };
        out.push(finding.at(hop.source.as_ref()));
    }
    if out.is_empty() {
        out.push(Finding::skip(
            id,
            "tcp targets",
            "no listening loopback target to connect to",
        ));
    }
    out
}
