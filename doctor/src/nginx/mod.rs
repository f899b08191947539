//! What doctor needs of an nginx configuration: where each location sends requests, with
//! the timers, buffer and error handling in force there (nginx's inheritance applied), the
//! worker user and limits, and the error logs.
//!
//! - `lexer`: the token rules of nginx's syntax;
//! - [`parse`]: files into directives, includes and globs followed;
//! - `glob`: `include` patterns;
//! - `units`: time and size values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod glob;
mod lexer;
pub mod parse;
pub(crate) mod units;

pub use parse::{Config, Directive, ParseError};

/// nginx's default for `proxy_*_timeout` and `fastcgi_*_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's default `proxy_buffer_size`: one memory page (4k on x86-64 and arm64 with 4k
/// pages).
pub const DEFAULT_BUFFER_SIZE: usize = 4096;
/// nginx's default `worker_connections`.
pub const DEFAULT_WORKER_CONNECTIONS: u64 = 512;

/// Where something is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file.
    pub file: Arc<Path>,
    /// The line (1-based).
    pub line: usize,
}

/// A value in force at a location, and where it was set (`None`: nginx's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// The directive that set it.
    pub source: Option<Source>,
}

/// The model of one nginx configuration.
#[derive(Debug, Clone, Default)]
pub struct Nginx {
    /// The parsed files.
    pub config: Config,
    /// `user NAME [GROUP]`: the worker processes' user.
    pub user: Option<(String, Option<String>, Source)>,
    /// `events { worker_connections }`.
    pub worker_connections: Option<(u64, Source)>,
    /// `worker_processes` (`auto` or a number).
    pub worker_processes: Option<(String, Source)>,
    /// `worker_rlimit_nofile`.
    pub worker_rlimit_nofile: Option<(u64, Source)>,
    /// Every `error_log` file (not stderr, syslog or memory).
    pub error_logs: Vec<(PathBuf, Source)>,
    /// Every `access_log` file.
    pub access_logs: Vec<PathBuf>,
    /// Every `*_pass` of every location.
    pub targets: Vec<Target>,
}

/// One `proxy_pass`, `fastcgi_pass`, `uwsgi_pass` or `grpc_pass`, and what is in force
/// where it is.
#[derive(Debug, Clone)]
pub struct Target {
    /// The directive: `proxy_pass`, ...
    pub directive: String,
    /// Its argument as written.
    pub value: String,
    /// Where it is written.
    pub source: Source,
    /// `server NAME, location PATH`.
    pub place: String,
    /// Where it connects: one endpoint, or the servers of the `upstream` block it names.
    pub endpoints: Vec<Endpoint>,
    /// The protocol's timers and buffer in force there.
    pub read_timeout: Setting<Duration>,
    /// `*_send_timeout`.
    pub send_timeout: Setting<Duration>,
    /// `*_connect_timeout`.
    pub connect_timeout: Setting<Duration>,
    /// `proxy_buffer_size` (and the others' `*_buffer_size`).
    pub buffer_size: Setting<usize>,
    /// `*_intercept_errors`.
    pub intercept_errors: Setting<bool>,
    /// The `error_page` directives in force: codes and where.
    pub error_pages: Vec<(Vec<u16>, Source)>,
}

/// An address a target connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port` with the addresses it stands for (`localhost`: both loopbacks).
    Tcp {
        /// As written.
        text: String,
        /// The addresses (empty: a name doctor does not resolve).
        addrs: Vec<SocketAddr>,
        /// Where it is written (the `server` line of an `upstream` block, or the target).
        source: Source,
    },
    /// `unix:/path`.
    Unix {
        /// The socket path.
        path: PathBuf,
        /// Where it is written.
        source: Source,
    },
    /// Something doctor cannot follow (variables).
    Unresolved {
        /// As written.
        text: String,
        /// Why.
        why: String,
        /// Where it is written.
        source: Source,
    },
}

// === impl Endpoint ===

impl Endpoint {
    /// Where the endpoint is written.
    pub fn source(&self) -> &Source {
        match self {
            Endpoint::Tcp { source, .. }
            | Endpoint::Unix { source, .. }
            | Endpoint::Unresolved { source, .. } => source,
        }
    }

    /// The endpoint as doctor names it: `127.0.0.1:8080`, `unix:/run/app.sock`.
    pub fn text(&self) -> String {
        match self {
            Endpoint::Tcp { text, .. } | Endpoint::Unresolved { text, .. } => text.clone(),
            Endpoint::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }
}

impl Source {
    fn of(d: &Directive) -> Source {
        Source {
            file: d.file.clone(),
            line: d.line,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Parses `main` and builds the model; `hosts` is an `/etc/hosts` for names other than
/// `localhost` (doctor asks no DNS server).
pub fn load(main: &Path, hosts: &Path) -> Nginx {
    let config = parse::parse(main);
    let hosts = std::fs::read_to_string(hosts).unwrap_or_default();
    let mut model = Nginx::default();
    let top: &[Directive] = &config.directives;
    for d in top {
        match d.name.as_str() {
            "user" => {
                model.user = Some((d.arg().to_owned(), d.args.get(1).cloned(), Source::of(d)));
            }
            "worker_processes" => {
                model.worker_processes = Some((d.arg().to_owned(), Source::of(d)))
            }
            "worker_rlimit_nofile" => {
                model.worker_rlimit_nofile = d.arg().parse().ok().map(|n| (n, Source::of(d)));
            }
            "events" => {
                for e in d
                    .children()
                    .iter()
                    .filter(|e| e.name == "worker_connections")
                {
                    model.worker_connections = e.arg().parse().ok().map(|n| (n, Source::of(e)));
                }
            }
            _ => {}
        }
    }
    collect_logs(top, &mut model);
    for http in top.iter().filter(|d| d.name == "http") {
        let upstreams: Vec<&Directive> = http
            .children()
            .iter()
            .filter(|d| d.name == "upstream")
            .collect();
        for server in http.children().iter().filter(|d| d.name == "server") {
            let name = server
                .children()
                .iter()
                .find(|d| d.name == "server_name")
                .map_or("_", |d| d.arg())
                .to_owned();
            let mut levels = vec![http.children(), server.children()];
            walk(
                server.children(),
                &format!("server {name}"),
                &mut levels,
                &upstreams,
                &hosts,
                &mut model.targets,
            );
        }
    }
    model.config = config;
    model
}

fn collect_logs(directives: &[Directive], model: &mut Nginx) {
    for d in directives {
        let path = d.arg();
        let is_file = !path.is_empty()
            && path != "stderr"
            && path != "off"
            && !path.starts_with("syslog:")
            && !path.starts_with("memory:");
        match d.name.as_str() {
            "error_log" if is_file => model.error_logs.push((PathBuf::from(path), Source::of(d))),
            "access_log" if is_file => model.access_logs.push(PathBuf::from(path)),
            _ => {}
        }
        collect_logs(d.children(), model);
    }
}

/// The targets in `directives` (a server or location block) and the locations nested in it.
fn walk<'a>(
    directives: &'a [Directive],
    place: &str,
    levels: &mut Vec<&'a [Directive]>,
    upstreams: &[&Directive],
    hosts: &str,
    out: &mut Vec<Target>,
) {
    for d in directives {
        match d.name.as_str() {
            "location" => {
                levels.push(d.children());
                let place = format!("{place}, location {}", d.args.join(" "));
                walk(d.children(), &place, levels, upstreams, hosts, out);
                levels.pop();
            }
            // An `if` inside a location inherits from it like a nested location.
            "if" => {
                levels.push(d.children());
                walk(d.children(), place, levels, upstreams, hosts, out);
                levels.pop();
            }
            "proxy_pass" | "fastcgi_pass" | "uwsgi_pass" | "grpc_pass" => {
                out.push(target(d, place, levels, upstreams, hosts));
            }
            _ => {}
        }
    }
}

fn target(
    d: &Directive,
    place: &str,
    levels: &[&[Directive]],
    upstreams: &[&Directive],
    hosts: &str,
) -> Target {
    let prefix = d.name.trim_end_matches("_pass");
    let time = |name: &str| {
        let key = format!("{prefix}_{name}");
        match effective(levels, &key) {
            Some(d) => Setting {
                value: units::parse_time(d.arg()).unwrap_or(DEFAULT_TIMEOUT),
                source: Some(Source::of(d)),
            },
            None => Setting {
                value: DEFAULT_TIMEOUT,
                source: None,
            },
        }
    };
    let buffer_size = match effective(levels, &format!("{prefix}_buffer_size")) {
        Some(b) => Setting {
            value: units::parse_size(b.arg()).unwrap_or(DEFAULT_BUFFER_SIZE),
            source: Some(Source::of(b)),
        },
        None => Setting {
            value: DEFAULT_BUFFER_SIZE,
            source: None,
        },
    };
    let intercept_errors = match effective(levels, &format!("{prefix}_intercept_errors")) {
        Some(i) => Setting {
            value: i.arg() == "on",
            source: Some(Source::of(i)),
        },
        None => Setting {
            value: false,
            source: None,
        },
    };
    // error_page is inherited as a whole from the nearest level that has any.
    let error_pages = levels
        .iter()
        .rev()
        .map(|level| {
            level
                .iter()
                .filter(|e| e.name == "error_page")
                .map(|e| {
                    (
                        e.args.iter().filter_map(|a| a.parse().ok()).collect(),
                        Source::of(e),
                    )
                })
                .collect::<Vec<_>>()
        })
        .find(|pages| !pages.is_empty())
        .unwrap_or_default();
    Target {
        directive: d.name.clone(),
        value: d.arg().to_owned(),
        source: Source::of(d),
        place: place.to_owned(),
        endpoints: endpoints(d, upstreams, hosts),
        read_timeout: time("read_timeout"),
        send_timeout: time("send_timeout"),
        connect_timeout: time("connect_timeout"),
        buffer_size,
        intercept_errors,
        error_pages,
    }
}

/// The directive `name` in force: the last one at the innermost level that has it.
fn effective<'a>(levels: &[&'a [Directive]], name: &str) -> Option<&'a Directive> {
    levels
        .iter()
        .rev()
        .find_map(|level| level.iter().rev().find(|d| d.name == name))
}

/// Where a `*_pass` connects.
fn endpoints(d: &Directive, upstreams: &[&Directive], hosts: &str) -> Vec<Endpoint> {
    let source = Source::of(d);
    let value = d.arg();
    if value.contains('$') {
        return vec![Endpoint::Unresolved {
            text: value.to_owned(),
            why: "the address uses variables, known only per request".into(),
            source,
        }];
    }
    let (rest, default_port) = match value.split_once("://") {
        Some(("https" | "grpcs" | "suwsgi", rest)) => (rest, 443),
        Some((_, rest)) => (rest, 80),
        None => (value, 80),
    };
    if let Some(path) = rest.strip_prefix("unix:") {
        // proxy_pass http://unix:/path:/uri: the path ends at the next colon.
        let path = path.split(':').next().unwrap_or(path);
        return vec![Endpoint::Unix {
            path: PathBuf::from(path),
            source,
        }];
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(block) = upstreams.iter().find(|u| u.arg() == authority) {
        return block
            .children()
            .iter()
            .filter(|s| s.name == "server")
            .map(|s| endpoint(s.arg(), default_port, hosts, Source::of(s)))
            .collect();
    }
    vec![endpoint(authority, default_port, hosts, source)]
}

/// `host:port`, `[v6]:port`, `host` or `unix:/path`.
fn endpoint(text: &str, default_port: u16, hosts: &str, source: Source) -> Endpoint {
    if let Some(path) = text.strip_prefix("unix:") {
        return Endpoint::Unix {
            path: PathBuf::from(path),
            source,
        };
    }
    let (host, port) = split_host_port(text, default_port);
    let Some(port) = port else {
        return Endpoint::Unresolved {
            text: text.to_owned(),
            why: "no port doctor can read".into(),
            source,
        };
    };
    let addrs = resolve(host, hosts)
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    Endpoint::Tcp {
        text: text.to_owned(),
        addrs,
        source,
    }
}

fn split_host_port(text: &str, default_port: u16) -> (&str, Option<u16>) {
    if let Some(rest) = text.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, "")) => (ip, Some(default_port)),
            Some((ip, port)) => (ip, port.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (text, None),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()),
        None => (text, Some(default_port)),
    }
}

/// An IP literal, `localhost` (both loopbacks, as nginx resolves it on Debian), or a name
/// from `hosts`; nothing from DNS.
fn resolve(host: &str, hosts: &str) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    if host.eq_ignore_ascii_case("localhost") {
        return vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
    }
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let ip: IpAddr = cols.next()?.parse().ok()?;
            cols.any(|n| n.eq_ignore_ascii_case(host)).then_some(ip)
        })
        .collect()
}

#[cfg(test)]
mod tests;
