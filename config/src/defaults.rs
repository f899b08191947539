//! Every default and limit of the configuration, in one place: the constants, and the
//! `Default` impls and [`UpstreamSettings::new`] that build settings from them.
//!
//! `default.toml` (embedded as [`DEFAULT_CONFIG`](crate::DEFAULT_CONFIG)) spells out the
//! same values; a test keeps the two in step.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::settings::{
    AdminSettings, AnnotateSettings, Expose, ListenAddress, LogFormat, LogSettings, ServerSettings,
    UpstreamAddress, UpstreamSettings,
};

/// `[server] grace_period`: how long SIGTERM waits for in-flight requests (pingora's own
/// default is 300 s, far longer than any orchestrator waits).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);
/// `[server] client_header_timeout`: how long a client may take to send a request header,
/// from its first byte (from accept, for a connection's first request). nginx in front
/// sends a header in one write; only a stalled or hostile client comes near this.
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `[server] client_body_timeout`: the longest gap between two reads of a request body
/// (nginx's `client_body_timeout`). A client that stalls its upload gets 408, counted as
/// its own error: never the app's timeout.
pub const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// `[server] keepalive_timeout`: how long an idle keep-alive client connection is kept
/// (nginx's default). nginx's own upstream keep-alive (60 s) closes first.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// `[server] keepalive_requests`: requests per client connection (nginx's default).
pub const DEFAULT_KEEPALIVE_REQUESTS: u32 = 1000;
/// `[server] send_timeout`: the longest gap between two writes to a client that stopped
/// reading (nginx's `send_timeout`).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// `[server] max_request_header_bytes`: the largest request head, as nginx's
/// `large_client_header_buffers` (4 × 8 KiB).
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 32 * 1024;
/// Smallest `max_request_header_bytes` accepted.
pub const MIN_REQUEST_HEADER_BYTES: usize = 1024;
/// Largest `max_request_header_bytes` accepted (as for responses).
pub const MAX_REQUEST_HEADER_BYTES: usize = 1_048_575;

/// `[server] threads`: worker threads per listening service.
pub const DEFAULT_THREADS: usize = 1;
/// `[server] upstream_pool_size`: idle keep-alive connections kept per upstream.
pub const DEFAULT_UPSTREAM_POOL_SIZE: usize = 1024;
/// `[server] recent_failures`: how many failed handoffs the admin `/failures` buffer keeps.
pub const DEFAULT_RECENT_FAILURES: usize = 256;

/// `[admin] listen`: the admin listener, loopback only.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9180));

/// `[annotate] expose`: reasons and hints, but no addresses, paths or upstream bytes.
pub const DEFAULT_EXPOSE: Expose = Expose::Reason;
/// `[annotate] proxy_name`: the identifier in `Proxy-Status`.
pub const DEFAULT_PROXY_NAME: &str = "handoff";
/// `[annotate] debug_header`: the request header that, with the right token, asks for
/// full exposure.
pub const DEFAULT_DEBUG_HEADER: &str = "x-handoff-debug";

/// `[log] format`: JSON lines on stderr.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Json;
/// `[log] access`: only failed handoffs are logged, not every request.
pub const DEFAULT_LOG_ACCESS: bool = false;
/// `[log] level`: a `tracing` filter directive.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The upstream name used by [`Settings::single`](crate::Settings::single) and the
/// embedded default.
pub const DEFAULT_UPSTREAM_NAME: &str = "app";
/// The listener of the embedded default's upstream (where nginx's `proxy_pass` points).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080));
/// The application address of the embedded default's upstream.
pub const DEFAULT_UPSTREAM_ADDRESS: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 3000));

/// `[[upstream]] connect_timeout`: TCP (and TLS) connect limit.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `[[upstream]] header_timeout`: until the response header is complete; below nginx's
/// 60 s `proxy_read_timeout` so handoff answers first.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(55);
/// `[[upstream]] read_timeout`: longest gap between two reads of the response body.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(55);
/// `[[upstream]] write_timeout`: longest gap between two writes of the request.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(55);
/// `[[upstream]] pool_idle_timeout`: how long an idle upstream connection is kept; below
/// common app keep-alive timeouts (gunicorn 2 s, Node 5 s). Zero disables pooling.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// `[[upstream]] max_response_header_bytes`: largest response header accepted, in bytes.
pub const DEFAULT_MAX_RESPONSE_HEADER_BYTES: usize = 65536;
/// `[[upstream]] nginx_buffer_bytes`: nginx's `proxy_buffer_size` (one memory page,
/// 4 KiB on x86-64); a larger response header is flagged because nginx would reject it.
pub const DEFAULT_NGINX_BUFFER_BYTES: usize = 4096;

/// Smallest `max_response_header_bytes` accepted: below this even ordinary responses fail.
pub const MIN_RESPONSE_HEADER_BYTES: usize = 1024;
/// Largest `max_response_header_bytes` accepted: pingora's header parser hard limit.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 1_048_575;
/// nginx's default `proxy_connect_timeout` and `proxy_read_timeout`: a handoff timeout at
/// or above it draws a warning, since nginx would give up first.
pub const NGINX_DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// A `pool_idle_timeout` at or above this draws a warning: it outlives common app
/// keep-alive timeouts, so pooled connections get closed under handoff's feet.
pub const POOL_IDLE_WARNING: Duration = Duration::from_secs(5);
/// Longest `unix:` socket path, in bytes: `sun_path` is 108 bytes on Linux, NUL included.
pub const MAX_UNIX_PATH_BYTES: usize = 107;

impl UpstreamSettings {
    /// An upstream with every optional key at its default.
    pub fn new(name: impl Into<String>, listen: ListenAddress, address: UpstreamAddress) -> Self {
        UpstreamSettings {
            name: name.into(),
            listen,
            address,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            max_response_header_bytes: DEFAULT_MAX_RESPONSE_HEADER_BYTES,
            nginx_buffer_bytes: DEFAULT_NGINX_BUFFER_BYTES,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            grace_period: DEFAULT_GRACE_PERIOD,
            client_header_timeout: DEFAULT_CLIENT_HEADER_TIMEOUT,
            client_body_timeout: DEFAULT_CLIENT_BODY_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            keepalive_requests: DEFAULT_KEEPALIVE_REQUESTS,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_request_header_bytes: DEFAULT_MAX_REQUEST_HEADER_BYTES,
            threads: DEFAULT_THREADS,
            upstream_pool_size: DEFAULT_UPSTREAM_POOL_SIZE,
            recent_failures: DEFAULT_RECENT_FAILURES,
        }
    }
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            listen: ListenAddress::Tcp(DEFAULT_ADMIN_LISTEN),
        }
    }
}

impl Default for AnnotateSettings {
    fn default() -> Self {
        AnnotateSettings {
            expose: DEFAULT_EXPOSE,
            proxy_name: DEFAULT_PROXY_NAME.to_owned(),
            debug_header: DEFAULT_DEBUG_HEADER.to_owned(),
            debug_token: None,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: DEFAULT_LOG_FORMAT,
            access: DEFAULT_LOG_ACCESS,
            level: DEFAULT_LOG_LEVEL.to_owned(),
        }
    }
}

impl Default for Expose {
    fn default() -> Self {
        DEFAULT_EXPOSE
    }
}

impl Default for LogFormat {
    fn default() -> Self {
        DEFAULT_LOG_FORMAT
    }
}
