//! Raw configuration to runtime [`Settings`], recording every problem on the way.
//!
//! Each check records its problem and falls back to the default, so one bad value never
//! hides the next; [`Report::finish`] then decides whether there were errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::address::{listeners_collide, parse_listen, parse_upstream};
use crate::defaults::*;
use crate::duration::{format_duration, parse_duration};
use crate::error::{ConfigError, Report};
use crate::schema::{RawAnnotate, RawConfig, RawLog, RawServer, RawUpstream};
use crate::settings::*;

/// The origin of problems found in [`Settings::single`]'s arguments.
const COMMAND_LINE: &str = "command line";

/// Parses and validates `text`, read from `origin`.
pub(crate) fn from_str(text: &str, origin: &str) -> Result<Settings, ConfigError> {
    let mut report = Report::new(origin, text);
    let raw = RawConfig::read(text, &mut report);
    let admin = AdminSettings {
        listen: listen_address(&mut report, "admin.listen", raw.admin.listen)
            .unwrap_or(ListenAddress::Tcp(DEFAULT_ADMIN_LISTEN)),
    };
    let settings = Settings {
        server: server(&mut report, raw.server),
        annotate: annotate(&mut report, raw.annotate),
        log: log(&mut report, raw.log),
        upstreams: upstreams(&mut report, raw.upstreams, &admin),
        admin,
        warnings: Vec::new(),
    };
    let warnings = report.finish()?;
    Ok(Settings {
        warnings,
        ..settings
    })
}

impl Settings {
    /// Defaults plus one upstream named "app": for `handoff run --listen A --upstream B
    /// [--admin C]` / `HANDOFF_LISTEN` / `HANDOFF_UPSTREAM` [/ `HANDOFF_ADMIN`].
    ///
    /// The strings are validated like the file keys `listen`, `address` and `[admin]
    /// listen`; problems name the flags and have the origin `command line`. Without
    /// `admin`, the admin listener keeps its default (127.0.0.1:9180).
    pub fn single(
        listen_text: &str,
        upstream_text: &str,
        admin_text: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        let mut report = Report::new(COMMAND_LINE, "");
        let admin = match admin_text.map(parse_listen) {
            None => AdminSettings::default(),
            Some(Ok(listen)) => AdminSettings { listen },
            Some(Err(message)) => {
                report.error("--admin", None, message);
                AdminSettings::default()
            }
        };
        let listen = match parse_listen(listen_text) {
            Ok(listen) if listeners_collide(&listen, &admin.listen) => {
                let message = format!("{listen} is also the admin listener's address");
                report.error("--listen", None, message);
                None
            }
            Ok(listen) => Some(listen),
            Err(message) => {
                report.error("--listen", None, message);
                None
            }
        };
        let address = parse_upstream(upstream_text)
            .map_err(|message| report.error("--upstream", None, message))
            .ok();
        let warnings = report.finish()?;
        let (Some(listen), Some(address)) = (listen, address) else {
            unreachable!("a missing value was reported as an error");
        };
        Ok(Settings {
            server: ServerSettings::default(),
            admin,
            annotate: AnnotateSettings::default(),
            log: LogSettings::default(),
            upstreams: vec![UpstreamSettings::new(
                DEFAULT_UPSTREAM_NAME,
                listen,
                address,
            )],
            warnings,
        })
    }
}

fn server(report: &mut Report<'_>, raw: RawServer) -> ServerSettings {
    ServerSettings {
        grace_period: duration(report, "server.grace_period", raw.grace_period, true)
            .unwrap_or(DEFAULT_GRACE_PERIOD),
        client_header_timeout: duration(
            report,
            "server.client_header_timeout",
            raw.client_header_timeout,
            false,
        )
        .unwrap_or(DEFAULT_CLIENT_HEADER_TIMEOUT),
        client_body_timeout: duration(
            report,
            "server.client_body_timeout",
            raw.client_body_timeout,
            false,
        )
        .unwrap_or(DEFAULT_CLIENT_BODY_TIMEOUT),
        keepalive_timeout: duration(
            report,
            "server.keepalive_timeout",
            raw.keepalive_timeout,
            true,
        )
        .unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT),
        keepalive_requests: count(
            report,
            "server.keepalive_requests",
            raw.keepalive_requests,
            0,
            u32::MAX as usize,
            "",
        )
        .map_or(DEFAULT_KEEPALIVE_REQUESTS, |n| n as u32),
        send_timeout: duration(report, "server.send_timeout", raw.send_timeout, false)
            .unwrap_or(DEFAULT_SEND_TIMEOUT),
        max_request_header_bytes: count(
            report,
            "server.max_request_header_bytes",
            raw.max_request_header_bytes,
            MIN_REQUEST_HEADER_BYTES,
            MAX_REQUEST_HEADER_BYTES,
            "",
        )
        .unwrap_or(DEFAULT_MAX_REQUEST_HEADER_BYTES),
        threads: count(report, "server.threads", raw.threads, 1, usize::MAX, "")
            .unwrap_or(DEFAULT_THREADS),
        upstream_pool_size: count(
            report,
            "server.upstream_pool_size",
            raw.upstream_pool_size,
            1,
            usize::MAX,
            "",
        )
        .unwrap_or(DEFAULT_UPSTREAM_POOL_SIZE),
        recent_failures: count(
            report,
            "server.recent_failures",
            raw.recent_failures,
            1,
            usize::MAX,
            "",
        )
        .unwrap_or(DEFAULT_RECENT_FAILURES),
    }
}

fn annotate(report: &mut Report<'_>, raw: RawAnnotate) -> AnnotateSettings {
    let mut settings = AnnotateSettings::default();
    if let Some(expose) = raw.expose {
        match Expose::ALL
            .into_iter()
            .find(|e| e.as_str() == expose.get_ref())
        {
            Some(found) => settings.expose = found,
            None => {
                let message = format!(
                    "must be one of none, reason, full; got {:?}",
                    expose.get_ref()
                );
                report.error("annotate.expose", Some(expose.span()), message);
            }
        }
    }
    if let Some(name) = raw.proxy_name {
        let value = name.get_ref();
        let printable = |c: char| (' '..='~').contains(&c) && c != '"' && c != '\\';
        if value.is_empty() || !value.chars().all(printable) {
            let message = format!(
                "must be non-empty printable ASCII without '\"' or '\\' (it goes into the Proxy-Status header), got {value:?}"
            );
            report.error("annotate.proxy_name", Some(name.span()), message);
        } else {
            settings.proxy_name = value.clone();
        }
    }
    if let Some(header) = raw.debug_header {
        let value = header.get_ref();
        if value.is_empty() || !value.chars().all(is_token_char) {
            let message = format!(
                "must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), got {value:?}"
            );
            report.error("annotate.debug_header", Some(header.span()), message);
        } else {
            settings.debug_header = value.to_ascii_lowercase();
        }
    }
    if let Some(token) = raw.debug_token {
        let value = token.get_ref();
        if value.is_empty() {
            let message = "must not be empty; leave debug_token out to ignore the debug header";
            report.error("annotate.debug_token", Some(token.span()), message);
        } else if !value.chars().all(|c| c.is_ascii_graphic()) {
            let message =
                "must be visible ASCII without spaces: it is compared with a header value";
            report.error("annotate.debug_token", Some(token.span()), message);
        } else {
            settings.debug_token = Some(value.clone());
        }
    }
    settings
}

fn log(report: &mut Report<'_>, raw: RawLog) -> LogSettings {
    let mut settings = LogSettings::default();
    if let Some(format) = raw.format {
        match LogFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == format.get_ref())
        {
            Some(found) => settings.format = found,
            None => {
                let message = format!("must be one of json, text; got {:?}", format.get_ref());
                report.error("log.format", Some(format.span()), message);
            }
        }
    }
    if let Some(access) = raw.access {
        settings.access = *access.get_ref();
    }
    if let Some(level) = raw.level {
        if level.get_ref().trim().is_empty() {
            let message =
                "must be a tracing filter directive such as \"info\" or \"handoff=debug\"";
            report.error("log.level", Some(level.span()), message);
        } else {
            settings.level = level.into_inner();
        }
    }
    settings
}

fn upstreams(
    report: &mut Report<'_>,
    raws: Vec<RawUpstream>,
    admin: &AdminSettings,
) -> Vec<UpstreamSettings> {
    let mut settings: Vec<UpstreamSettings> = Vec::with_capacity(raws.len());
    // Names and listeners seen so far, with the key path that claimed them.
    let mut names: Vec<(String, String)> = Vec::new();
    let mut listeners = vec![(admin.listen.clone(), "admin.listen".to_owned())];
    for raw in raws {
        let path = raw.path.clone();
        let name = raw.name.clone().and_then(|name| {
            let key = format!("{path}.name");
            let value = name.get_ref();
            let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            if value.is_empty() || !value.chars().all(valid) {
                let message = format!(
                    "must be letters, digits, '_' or '-' (it becomes a metric label), got {value:?}"
                );
                report.error(key, Some(name.span()), message);
                return None;
            }
            if let Some((_, other)) = names.iter().find(|(n, _)| n == value) {
                let message = format!("duplicate name {value:?}, also used by {other}");
                report.error(key, Some(name.span()), message);
                return None;
            }
            names.push((value.clone(), key));
            Some(value.clone())
        });
        let listen = raw.listen.clone().and_then(|text| {
            let key = format!("{path}.listen");
            let listen = listen_address(report, &key, Some(text.clone()))?;
            if let Some((_, other)) = listeners
                .iter()
                .find(|(l, _)| listeners_collide(l, &listen))
            {
                let message = format!("{listen} is also used by {other}");
                report.error(key, Some(text.span()), message);
                return None;
            }
            listeners.push((listen.clone(), key));
            Some(listen)
        });
        let address = address(report, &raw);
        if let Some(upstream) = upstream(report, raw, name, listen, address) {
            settings.push(upstream);
        }
    }
    settings
}

/// The `address` of an upstream, with its TLS keys applied (and refused without TLS).
fn address(report: &mut Report<'_>, raw: &RawUpstream) -> Option<UpstreamAddress> {
    let path = &raw.path;
    let text = raw.address.as_ref()?;
    let mut address = match parse_upstream(text.get_ref()) {
        Ok(address) => address,
        Err(message) => {
            report.error(format!("{path}.address"), Some(text.span()), message);
            return None;
        }
    };
    match &mut address {
        UpstreamAddress::Tls {
            sni,
            ca_file,
            verify,
            ..
        } => {
            if let Some(value) = &raw.sni {
                if value.get_ref().is_empty() || value.get_ref().contains(char::is_whitespace) {
                    let message = format!("must be a server name, got {:?}", value.get_ref());
                    report.error(format!("{path}.sni"), Some(value.span()), message);
                } else {
                    sni.clone_from(value.get_ref());
                }
            }
            if let Some(value) = &raw.ca_file {
                match check_ca_file(value.get_ref()) {
                    Ok(file) => *ca_file = Some(file),
                    Err(message) => {
                        report.error(format!("{path}.ca_file"), Some(value.span()), message)
                    }
                }
            }
            if let Some(value) = &raw.verify {
                *verify = *value.get_ref();
            }
        }
        UpstreamAddress::Tcp { .. } | UpstreamAddress::Unix(_) => {
            let spans = [
                ("sni", raw.sni.as_ref().map(Spanned::span)),
                ("ca_file", raw.ca_file.as_ref().map(Spanned::span)),
                ("verify", raw.verify.as_ref().map(Spanned::span)),
            ];
            for (key, span) in spans {
                if let Some(span) = span {
                    let message = format!(
                        "only allowed with a tls:// address, and address is {:?}",
                        text.get_ref()
                    );
                    report.error(format!("{path}.{key}"), Some(span), message);
                }
            }
        }
    }
    Some(address)
}

/// The rest of an upstream's keys; `None` when a required part is missing or invalid.
fn upstream(
    report: &mut Report<'_>,
    raw: RawUpstream,
    name: Option<String>,
    listen: Option<ListenAddress>,
    address: Option<UpstreamAddress>,
) -> Option<UpstreamSettings> {
    let path = raw.path;
    let key = |k: &str| format!("{path}.{k}");
    let connect_span = raw.connect_timeout.as_ref().map(Spanned::span);
    let header_span = raw.header_timeout.as_ref().map(Spanned::span);
    let read_span = raw.read_timeout.as_ref().map(Spanned::span);
    let write_span = raw.write_timeout.as_ref().map(Spanned::span);
    let pool_span = raw.pool_idle_timeout.as_ref().map(Spanned::span);

    let connect = duration(report, &key("connect_timeout"), raw.connect_timeout, false);
    let header = duration(report, &key("header_timeout"), raw.header_timeout, false);
    let read = duration(report, &key("read_timeout"), raw.read_timeout, false);
    let write = duration(report, &key("write_timeout"), raw.write_timeout, false);
    let pool = duration(
        report,
        &key("pool_idle_timeout"),
        raw.pool_idle_timeout,
        true,
    );
    let header_bytes = count(
        report,
        &key("max_response_header_bytes"),
        raw.max_response_header_bytes,
        MIN_RESPONSE_HEADER_BYTES,
        MAX_RESPONSE_HEADER_BYTES,
        " (pingora's response header limit)",
    );
    let nginx_bytes = count(
        report,
        &key("nginx_buffer_bytes"),
        raw.nginx_buffer_bytes,
        1,
        usize::MAX,
        "",
    );

    let mut upstream = UpstreamSettings::new(name?, listen?, address?);
    upstream.connect_timeout = connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    upstream.header_timeout = header.unwrap_or(DEFAULT_HEADER_TIMEOUT);
    upstream.read_timeout = read.unwrap_or(DEFAULT_READ_TIMEOUT);
    upstream.write_timeout = write.unwrap_or(DEFAULT_WRITE_TIMEOUT);
    upstream.pool_idle_timeout = pool.unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT);
    upstream.max_response_header_bytes = header_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_HEADER_BYTES);
    upstream.nginx_buffer_bytes = nginx_bytes.unwrap_or(DEFAULT_NGINX_BUFFER_BYTES);

    // Warnings: valid, but probably not what was meant.
    for (k, value, span) in [
        ("connect_timeout", upstream.connect_timeout, connect_span),
        (
            "header_timeout",
            upstream.header_timeout,
            header_span.clone(),
        ),
        ("read_timeout", upstream.read_timeout, read_span.clone()),
        ("write_timeout", upstream.write_timeout, write_span),
    ] {
        if value >= NGINX_DEFAULT_TIMEOUT {
            let message = format!(
                "{} is not shorter than nginx's default proxy_read_timeout/proxy_connect_timeout of 60s: nginx would give up first and answer its own bare 502/504",
                format_duration(value)
            );
            report.warn(key(k), span, message);
        }
    }
    // A response header takes at most connect + header_timeout (a deadline from the
    // request's write): nginx's proxy_read_timeout, running since nginx sent the request,
    // must outlast both.
    let to_header = upstream.connect_timeout + upstream.header_timeout;
    if upstream.header_timeout < NGINX_DEFAULT_TIMEOUT && to_header >= NGINX_DEFAULT_TIMEOUT {
        let message = format!(
            "connect_timeout + header_timeout = {} is not shorter than nginx's default proxy_read_timeout of 60s: nginx would give up first on a slow connect followed by a slow app",
            format_duration(to_header)
        );
        report.warn(key("header_timeout"), header_span.or(read_span), message);
    }
    if upstream.pool_idle_timeout >= POOL_IDLE_WARNING {
        let message = format!(
            "{}: keep it below the app's keep-alive timeout, e.g. gunicorn 2s, Node 5s",
            format_duration(upstream.pool_idle_timeout)
        );
        report.warn(key("pool_idle_timeout"), pool_span, message);
    }
    Some(upstream)
}

/// A listen address; `None` (reported) when absent or invalid.
fn listen_address(
    report: &mut Report<'_>,
    key: &str,
    raw: Option<Spanned<String>>,
) -> Option<ListenAddress> {
    let raw = raw?;
    parse_listen(raw.get_ref())
        .map_err(|message| report.error(key, Some(raw.span()), message))
        .ok()
}

/// A duration; `None` when absent or invalid (reported). Zero only when `zero_ok`.
fn duration(
    report: &mut Report<'_>,
    key: &str,
    raw: Option<Spanned<String>>,
    zero_ok: bool,
) -> Option<Duration> {
    let raw = raw?;
    match parse_duration(raw.get_ref()) {
        Ok(value) if value.is_zero() && !zero_ok => {
            let message = format!("must be greater than zero, got {:?}", raw.get_ref());
            report.error(key, Some(raw.span()), message);
            None
        }
        Ok(value) => Some(value),
        Err(message) => {
            report.error(key, Some(raw.span()), message);
            None
        }
    }
}

/// An integer in `min..=max`; `None` when absent or out of range (reported). `why` is
/// appended to the message when the upper bound has a reason.
fn count(
    report: &mut Report<'_>,
    key: &str,
    raw: Option<Spanned<i64>>,
    min: usize,
    max: usize,
    why: &str,
) -> Option<usize> {
    let raw = raw?;
    let value = *raw.get_ref();
    match usize::try_from(value) {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            let message = if max == usize::MAX {
                format!("must be at least {min}, got {value}")
            } else {
                format!("must be between {min} and {max}{why}, got {value}")
            };
            report.error(key, Some(raw.span()), message);
            None
        }
    }
}

/// `ca_file` must be an absolute path to a readable file, checked now (like `nginx -t`
/// opening every file) rather than at the first TLS connect.
fn check_ca_file(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(format!("must be an absolute path, got {text:?}"));
    }
    match std::fs::File::open(path).and_then(|file| file.metadata()) {
        Ok(meta) if meta.is_file() => Ok(path.to_owned()),
        Ok(_) => Err(format!("{text} is not a file")),
        Err(error) => Err(format!("cannot open {text}: {error}")),
    }
}

/// RFC 9110 `tchar`: the characters of an HTTP header name.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}
