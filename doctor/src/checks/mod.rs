//! The checks, in checklist order, and what they share: the nginx model, the pools,
//! handoff's settings, the users to check for, and the listeners (asked once).
//!
//! - `nginx_checks`: `nginx.config`, `nginx.test`, `nginx.targets`, `handoff.coverage`,
//!   `nginx.timeouts`, `nginx.buffers`, `nginx.intercept_errors`;
//! - `sockets`: `target.listening`, `target.socket`, `firewall`;
//! - `php`: `phpfpm.drift`, `phpfpm.pool`;
//! - `system`: `selinux`, `service.state`, `resources.*`;
//! - `live`: `logs`, `handoff.live`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use handoff_config::{ListenAddress, Settings, UpstreamAddress};
use handoff_probe::identity::Identity;
use handoff_probe::process::socket_owners;
use handoff_probe::sock_diag::{self, TcpListener, UnixListener};

use crate::host::Host;
use crate::nginx::{self, Endpoint, Nginx, Target};
use crate::phpfpm::{self, Pool};
use crate::report::{Finding, Report};
use crate::Options;

mod live;
mod nginx_checks;
mod php;
mod sockets;
mod system;

/// Every check id, in the order they run and print.
pub const CHECKS: &[&str] = &[
    "nginx.config",
    "nginx.test",
    "nginx.targets",
    "handoff.coverage",
    "target.listening",
    "target.socket",
    "firewall",
    "phpfpm.drift",
    "phpfpm.pool",
    "nginx.timeouts",
    "nginx.buffers",
    "nginx.intercept_errors",
    "selinux",
    "service.state",
    "resources.memory",
    "resources.oom",
    "resources.disk",
    "resources.fds",
    "logs",
    "handoff.live",
];

/// What the checks read, gathered once.
pub(crate) struct Ctx<'a> {
    pub(crate) host: &'a Host,
    pub(crate) options: &'a Options,
    pub(crate) settings: Option<&'a Settings>,
    /// nginx's main file.
    pub(crate) conf: PathBuf,
    pub(crate) nginx: Nginx,
    pub(crate) pools: Vec<Pool>,
    pub(crate) pool_problems: Vec<String>,
    /// The TCP and unix listeners (live only), or why they could not be listed.
    pub(crate) tcp: Result<Vec<TcpListener>, String>,
    pub(crate) unix: Result<Vec<UnixListener>, String>,
}

/// How an nginx endpoint relates to handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role<'a> {
    /// A handoff listener: nginx goes through handoff.
    Handoff(&'a handoff_config::UpstreamSettings),
    /// The app behind a handoff listener: nginx goes around handoff.
    App(&'a handoff_config::UpstreamSettings),
    /// Something else.
    Other,
}

// === impl Ctx ===

impl<'a> Ctx<'a> {
    /// The role of `endpoint` for handoff.
    pub(crate) fn role(&self, endpoint: &Endpoint) -> Role<'a> {
        let Some(settings) = self.settings else {
            return Role::Other;
        };
        for u in &settings.upstreams {
            if listen_matches(&u.listen, endpoint) {
                return Role::Handoff(u);
            }
        }
        for u in &settings.upstreams {
            if address_matches(&u.address, endpoint) {
                return Role::App(u);
            }
        }
        Role::Other
    }

    /// Every nginx target with the endpoints that go to a handoff listener.
    pub(crate) fn handoff_targets(&self) -> Vec<(&Target, &'a handoff_config::UpstreamSettings)> {
        let mut out = Vec::new();
        for t in &self.nginx.targets {
            if let Some(u) = t.endpoints.iter().find_map(|e| match self.role(e) {
                Role::Handoff(u) => Some(u),
                _ => None,
            }) {
                out.push((t, u));
            }
        }
        out
    }

    /// nginx's worker user: the `user` directive, else nginx's default (nobody).
    pub(crate) fn nginx_user(&self) -> (String, Option<Identity>) {
        let (name, group) = match &self.nginx.user {
            Some((name, group, _)) => (name.clone(), group.clone()),
            None => ("nobody".to_owned(), None),
        };
        let id = Identity::of_user(
            &name,
            group.as_deref(),
            &self.host.etc.join("passwd"),
            &self.host.etc.join("group"),
        );
        (name, id)
    }

    /// handoff's user: the process holding its admin listener when it runs (as root doctor
    /// sees which), else the listener's uid from the kernel, else the user doctor runs as;
    /// and how it was found.
    pub(crate) fn handoff_user(&self) -> (Identity, String) {
        let admin = self.settings.and_then(|s| match &s.admin.listen {
            ListenAddress::Tcp(addr) => Some(*addr),
            ListenAddress::Unix(_) => None,
        });
        let listener =
            admin.and_then(|admin| self.tcp.as_ref().ok()?.iter().find(|l| l.addr == admin));
        if let Some(l) = listener {
            let owner = socket_owners(&self.host.proc, &[l.inode], Duration::from_millis(300));
            if let Some(p) = owner.by_inode.get(&l.inode) {
                if let Some(id) = Identity::of_process(&self.host.proc.join(p.pid.to_string())) {
                    return (id, format!("handoff's user (pid {})", p.pid));
                }
            }
            let passwd = self.host.etc.join("passwd");
            let group = self.host.etc.join("group");
            let id =
                Identity::of_user(&l.uid.to_string(), None, &passwd, &group).unwrap_or(Identity {
                    name: None,
                    uid: l.uid,
                    gid: l.uid,
                    groups: Vec::new(),
                });
            return (id, "handoff's user (from its admin listener)".into());
        }
        (
            Identity::current(),
            "the user doctor runs as (handoff's admin listener was not found)".into(),
        )
    }
}

/// Whether a handoff listen address is the endpoint.
fn listen_matches(listen: &ListenAddress, endpoint: &Endpoint) -> bool {
    match (listen, endpoint) {
        (ListenAddress::Unix(path), Endpoint::Unix { path: p, .. }) => path == p,
        (ListenAddress::Tcp(addr), Endpoint::Tcp { addrs, .. }) => {
            addrs.iter().any(|a| same_port_and_host(*addr, *a))
        }
        _ => false,
    }
}

/// Whether a handoff upstream address is the endpoint.
fn address_matches(address: &UpstreamAddress, endpoint: &Endpoint) -> bool {
    match (address, endpoint) {
        (UpstreamAddress::Unix(path), Endpoint::Unix { path: p, .. }) => path == p,
        (
            UpstreamAddress::Tcp { host, port } | UpstreamAddress::Tls { host, port, .. },
            Endpoint::Tcp { addrs, .. },
        ) => app_addrs(host, *port)
            .iter()
            .any(|app| addrs.iter().any(|a| same_port_and_host(*app, *a))),
        _ => false,
    }
}

/// The addresses of a handoff upstream's host: an IP literal, or `localhost`.
pub(crate) fn app_addrs(host: &str, port: u16) -> Vec<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    if host.eq_ignore_ascii_case("localhost") {
        return vec![
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        ];
    }
    Vec::new()
}

/// `listener` (possibly on every address) would take a connection to `target`.
pub(crate) fn same_port_and_host(listener: SocketAddr, target: SocketAddr) -> bool {
    listener.port() == target.port()
        && (listener.ip() == target.ip()
            || (listener.ip().is_unspecified() && listener.is_ipv4() == target.is_ipv4())
            || (listener.ip().is_unspecified() && listener.is_ipv6()))
}

/// Runs the selected checks.
pub(crate) fn run(host: &Host, options: &Options, settings: Option<&Settings>) -> Report {
    let conf = host.nginx_conf();
    let nginx = nginx::load(&conf, &host.etc.join("hosts"));
    let (pools, pool_problems) = phpfpm::pools(&host.php_pools);
    let (tcp, unix) = if host.live {
        (
            sock_diag::tcp_listeners().map_err(|e| e.to_string()),
            sock_diag::unix_listeners().map_err(|e| e.to_string()),
        )
    } else {
        let off = "live checks are off".to_owned();
        (Err(off.clone()), Err(off))
    };
    let ctx = Ctx {
        host,
        options,
        settings,
        conf,
        nginx,
        pools,
        pool_problems,
        tcp,
        unix,
    };
    let mut report = Report::default();
    report.inputs.push(format!(
        "nginx:   {} ({} files)",
        ctx.conf.display(),
        ctx.nginx.config.files.len()
    ));
    report.inputs.push(match settings {
        Some(s) => format!("handoff: {} upstreams", s.upstreams.len()),
        None => "handoff: no configuration".to_owned(),
    });
    report
        .inputs
        .push(format!("php-fpm: {} pools", ctx.pools.len()));
    type Check = fn(&Ctx<'_>) -> Vec<Finding>;
    let checks: [(&str, Check); 20] = [
        ("nginx.config", nginx_checks::config),
        ("nginx.test", nginx_checks::nginx_test),
        ("nginx.targets", nginx_checks::targets),
        ("handoff.coverage", nginx_checks::coverage),
        ("target.listening", sockets::listening),
        ("target.socket", sockets::socket_files),
        ("firewall", sockets::firewall),
        ("phpfpm.drift", php::drift),
        ("phpfpm.pool", php::pool),
        ("nginx.timeouts", nginx_checks::timeouts),
        ("nginx.buffers", nginx_checks::buffers),
        ("nginx.intercept_errors", nginx_checks::intercept),
        ("selinux", system::selinux),
        ("service.state", system::service_state),
        ("resources.memory", system::memory),
        ("resources.oom", system::oom),
        ("resources.disk", system::disk),
        ("resources.fds", system::fds),
        ("logs", live::logs),
        ("handoff.live", live::handoff_live),
    ];
    debug_assert!(checks.iter().map(|c| c.0).eq(CHECKS.iter().copied()));
    for (id, check) in checks {
        if options.wants(id) {
            report.findings.extend(check(&ctx));
        }
    }
    report
}
