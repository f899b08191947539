//! The failure reasons: the stable labels, statuses and RFC 9209 types of `DESIGN.md`.

use serde::Serialize;

/// Why one handoff to the upstream failed. The label ([`Reason::as_str`]) is the API: it
/// appears in responses, metrics, logs and the recent-failure buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "&'static str")]
pub enum Reason {
    // connect
    /// Nothing accepts connections at the address: is the app running and listening there?
    ConnectRefused,
    /// The connect did not complete in `connect_timeout`: is the app's accept queue full?
    ConnectTimeout,
    /// No route to the upstream IP: check the address, interface and network namespace.
    ConnectUnreachable,
    /// The unix socket path does not exist: check the path and that the app has started.
    SocketNotFound,
    /// handoff may not connect to the unix socket: check its owner, group, mode and SELinux.
    SocketPermissionDenied,
    /// The unix socket's listen backlog is full: the app is not accepting fast enough.
    SocketBacklogFull,
    /// No local port left for a new connection: check pooling and `ip_local_port_range`.
    LocalPortsExhausted,
    /// The upstream host name did not resolve: check the name, resolver and `/etc/hosts`.
    DnsFailed,
    /// The TLS handshake failed: does the upstream speak TLS on that port, with a shared protocol?
    TlsHandshakeFailed,
    /// The upstream's certificate was rejected: check its CA, expiry and names (SAN/SNI).
    TlsCertificateInvalid,
    // request
    /// The upstream closed while the request was being sent: check the app's body-size limit.
    RequestWriteFailed,
    /// The upstream stopped reading the request for `write_timeout`: is the app blocked?
    RequestWriteTimeout,
    // response header
    /// The upstream closed without sending a byte: crash, worker timeout or keep-alive race.
    ClosedBeforeResponse,
    /// The upstream closed in the middle of the response header: did the app die writing it?
    ClosedMidHeader,
    /// The upstream reset the connection before responding: app killed, or keep-alive race.
    ResetBeforeResponse,
    /// The upstream's response is not valid HTTP/1.x: does it speak another protocol there?
    InvalidResponseHeader,
    /// The response header is over the limit: look for huge `Set-Cookie` or similar headers.
    ResponseHeaderTooLarge,
    /// No complete response header within the timer: why is the app slow (DB, locks, workers)?
    ResponseHeaderTimeout,
    // response body
    /// The upstream closed mid-body: did the app crash or its streaming handler fail?
    ClosedMidBody,
    /// The upstream reset the connection mid-body: was the app killed mid-stream?
    ResetMidBody,
    /// The body framing was broken (chunked encoding, lengths): check the app's encoder.
    InvalidResponseBody,
    /// The body stalled for `read_timeout`: streaming without heartbeats, or a stalled app?
    BodyReadTimeout,
    // select
    /// Every upstream peer is marked down: look at the failures that ejected them.
    NoHealthyUpstream,
    // any
    /// handoff's own fault (for example out of file descriptors): check its limits and logs.
    ProxyInternalError,
    /// No rule matched: the raw error is kept so the gap can be reported and closed.
    Unclassified,
}

/// Where the request was when it failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Choosing the upstream peer.
    #[default]
    Select,
    /// Opening the connection (TCP/UDS connect, TLS handshake).
    Connect,
    /// Sending the request header and body.
    Request,
    /// Waiting for or reading the response header.
    ResponseHeader,
    /// Reading the response body; the status line has gone to nginx.
    ResponseBody,
}

impl Reason {
    /// Every reason, in declaration order (`Reason::ALL[r.index()] == r`).
    pub const ALL: [Reason; 25] = [
        Reason::ConnectRefused,
        Reason::ConnectTimeout,
        Reason::ConnectUnreachable,
        Reason::SocketNotFound,
        Reason::SocketPermissionDenied,
        Reason::SocketBacklogFull,
        Reason::LocalPortsExhausted,
        Reason::DnsFailed,
        Reason::TlsHandshakeFailed,
        Reason::TlsCertificateInvalid,
        Reason::RequestWriteFailed,
        Reason::RequestWriteTimeout,
        Reason::ClosedBeforeResponse,
        Reason::ClosedMidHeader,
        Reason::ResetBeforeResponse,
        Reason::InvalidResponseHeader,
        Reason::ResponseHeaderTooLarge,
        Reason::ResponseHeaderTimeout,
        Reason::ClosedMidBody,
        Reason::ResetMidBody,
        Reason::InvalidResponseBody,
        Reason::BodyReadTimeout,
        Reason::NoHealthyUpstream,
        Reason::ProxyInternalError,
        Reason::Unclassified,
    ];

    /// The stable snake_case label from `DESIGN.md`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::ConnectRefused => "connect_refused",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::ConnectUnreachable => "connect_unreachable",
            Reason::SocketNotFound => "socket_not_found",
            Reason::SocketPermissionDenied => "socket_permission_denied",
            Reason::SocketBacklogFull => "socket_backlog_full",
            Reason::LocalPortsExhausted => "local_ports_exhausted",
            Reason::DnsFailed => "dns_failed",
            Reason::TlsHandshakeFailed => "tls_handshake_failed",
            Reason::TlsCertificateInvalid => "tls_certificate_invalid",
            Reason::RequestWriteFailed => "request_write_failed",
            Reason::RequestWriteTimeout => "request_write_timeout",
            Reason::ClosedBeforeResponse => "closed_before_response",
            Reason::ClosedMidHeader => "closed_mid_header",
            Reason::ResetBeforeResponse => "reset_before_response",
            Reason::InvalidResponseHeader => "invalid_response_header",
            Reason::ResponseHeaderTooLarge => "response_header_too_large",
            Reason::ResponseHeaderTimeout => "response_header_timeout",
            Reason::ClosedMidBody => "closed_mid_body",
            Reason::ResetMidBody => "reset_mid_body",
            Reason::InvalidResponseBody => "invalid_response_body",
            Reason::BodyReadTimeout => "body_read_timeout",
            Reason::NoHealthyUpstream => "no_healthy_upstream",
            Reason::ProxyInternalError => "proxy_internal_error",
            Reason::Unclassified => "unclassified",
        }
    }

    /// Position in [`Reason::ALL`]; used to index pre-resolved metric handles.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The phase this reason belongs to; `None` for the reasons that can happen in any phase
    /// (`proxy_internal_error`, `unclassified`: the evidence's phase says where).
    pub const fn phase(self) -> Option<Phase> {
        use Reason::*;
        Some(match self {
            ConnectRefused
            | ConnectTimeout
            | ConnectUnreachable
            | SocketNotFound
            | SocketPermissionDenied
            | SocketBacklogFull
            | LocalPortsExhausted
            | DnsFailed
            | TlsHandshakeFailed
            | TlsCertificateInvalid => Phase::Connect,
            RequestWriteFailed | RequestWriteTimeout => Phase::Request,
            ClosedBeforeResponse
            | ClosedMidHeader
            | ResetBeforeResponse
            | InvalidResponseHeader
            | ResponseHeaderTooLarge
            | ResponseHeaderTimeout => Phase::ResponseHeader,
            ClosedMidBody | ResetMidBody | InvalidResponseBody | BodyReadTimeout => {
                Phase::ResponseBody
            }
            NoHealthyUpstream => Phase::Select,
            ProxyInternalError | Unclassified => return None,
        })
    }

    /// The status handoff answers when nothing has been sent to nginx yet. Body-phase
    /// reasons return 502, used only in that case (normally the status has already gone).
    pub const fn status(self) -> u16 {
        use Reason::*;
        match self {
            ConnectTimeout | RequestWriteTimeout | ResponseHeaderTimeout | BodyReadTimeout => 504,
            SocketBacklogFull | NoHealthyUpstream => 503,
            ProxyInternalError => 500,
            _ => 502,
        }
    }

    /// The RFC 9209 `Proxy-Status` error type from `DESIGN.md`.
    pub const fn proxy_status_error(self) -> &'static str {
        use Reason::*;
        match self {
            ConnectRefused => "connection_refused",
            ConnectTimeout => "connection_timeout",
            ConnectUnreachable => "destination_ip_unroutable",
            SocketNotFound => "destination_not_found",
            SocketPermissionDenied => "proxy_configuration_error",
            SocketBacklogFull => "connection_limit_reached",
            LocalPortsExhausted => "proxy_internal_error",
            DnsFailed => "dns_error",
            TlsHandshakeFailed => "tls_protocol_error",
            TlsCertificateInvalid => "tls_certificate_error",
            RequestWriteFailed => "connection_terminated",
            RequestWriteTimeout => "connection_write_timeout",
            ClosedBeforeResponse => "connection_terminated",
            ClosedMidHeader => "http_response_incomplete",
            ResetBeforeResponse => "connection_terminated",
            InvalidResponseHeader => "http_protocol_error",
            ResponseHeaderTooLarge => "http_response_header_section_size",
            ResponseHeaderTimeout => "http_response_timeout",
            ClosedMidBody | ResetMidBody => "http_response_incomplete",
            InvalidResponseBody => "http_response_transfer_coding",
            BodyReadTimeout => "connection_read_timeout",
            NoHealthyUpstream => "destination_unavailable",
            ProxyInternalError | Unclassified => "proxy_internal_error",
        }
    }

    /// A short RFC 9457 title; the same for every occurrence of the reason.
    pub const fn title(self) -> &'static str {
        use Reason::*;
        match self {
            ConnectRefused => "Upstream refused the connection",
            ConnectTimeout => "Connecting to the upstream timed out",
            ConnectUnreachable => "No route to the upstream",
            SocketNotFound => "Upstream socket not found",
            SocketPermissionDenied => "Permission denied on the upstream socket",
            SocketBacklogFull => "Upstream socket backlog full",
            LocalPortsExhausted => "No local port left to connect to the upstream",
            DnsFailed => "Upstream host name could not be resolved",
            TlsHandshakeFailed => "TLS handshake with the upstream failed",
            TlsCertificateInvalid => "Upstream TLS certificate rejected",
            RequestWriteFailed => "Upstream closed the connection while receiving the request",
            RequestWriteTimeout => "Sending the request to the upstream timed out",
            ClosedBeforeResponse => "Upstream closed the connection without responding",
            ClosedMidHeader => {
                "Upstream closed the connection in the middle of the response header"
            }
            ResetBeforeResponse => "Upstream reset the connection without responding",
            InvalidResponseHeader => "Upstream sent an invalid response header",
            ResponseHeaderTooLarge => "Upstream response header too large",
            ResponseHeaderTimeout => "Upstream did not send a response header in time",
            ClosedMidBody => "Upstream closed the connection in the middle of the response body",
            ResetMidBody => "Upstream reset the connection in the middle of the response body",
            InvalidResponseBody => "Upstream sent an invalid response body",
            BodyReadTimeout => "Upstream stopped sending the response body",
            NoHealthyUpstream => "No healthy upstream",
            ProxyInternalError => "Proxy internal error",
            Unclassified => "Upstream handoff failed",
        }
    }

    /// Whether a timer ended the handoff (the 504 reasons).
    pub const fn is_timeout(self) -> bool {
        matches!(
            self,
            Reason::ConnectTimeout
                | Reason::RequestWriteTimeout
                | Reason::ResponseHeaderTimeout
                | Reason::BodyReadTimeout
        )
    }

    /// The reason with this label, if any.
    pub fn from_label(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl From<Reason> for &'static str {
    fn from(r: Reason) -> &'static str {
        r.as_str()
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Phase {
    /// The snake_case name used in evidence and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Select => "select",
            Phase::Connect => "connect",
            Phase::Request => "request",
            Phase::ResponseHeader => "response_header",
            Phase::ResponseBody => "response_body",
        }
    }

    /// What handoff was doing, in nginx's words ("while connecting to upstream").
    pub(crate) const fn doing(self) -> &'static str {
        match self {
            Phase::Select => "selecting an upstream",
            Phase::Connect => "connecting to upstream",
            Phase::Request => "sending request to upstream",
            Phase::ResponseHeader => "reading response header from upstream",
            Phase::ResponseBody => "reading upstream",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from the reason table in `DESIGN.md`: label, phase, status, Proxy-Status type.
    const DESIGN: [(&str, &str, u16, &str); 25] = [
        ("connect_refused", "connect", 502, "connection_refused"),
        ("connect_timeout", "connect", 504, "connection_timeout"),
        (
            "connect_unreachable",
            "connect",
            502,
            "destination_ip_unroutable",
        ),
        ("socket_not_found", "connect", 502, "destination_not_found"),
        (
            "socket_permission_denied",
            "connect",
            502,
            "proxy_configuration_error",
        ),
        (
            "socket_backlog_full",
            "connect",
            503,
            "connection_limit_reached",
        ),
        (
            "local_ports_exhausted",
            "connect",
            502,
            "proxy_internal_error",
        ),
        ("dns_failed", "connect", 502, "dns_error"),
        ("tls_handshake_failed", "connect", 502, "tls_protocol_error"),
        (
            "tls_certificate_invalid",
            "connect",
            502,
            "tls_certificate_error",
        ),
        (
            "request_write_failed",
            "request",
            502,
            "connection_terminated",
        ),
        (
            "request_write_timeout",
            "request",
            504,
            "connection_write_timeout",
        ),
        (
            "closed_before_response",
            "response_header",
            502,
            "connection_terminated",
        ),
        (
            "closed_mid_header",
            "response_header",
            502,
            "http_response_incomplete",
        ),
        (
            "reset_before_response",
            "response_header",
            502,
            "connection_terminated",
        ),
        (
            "invalid_response_header",
            "response_header",
            502,
            "http_protocol_error",
        ),
        (
            "response_header_too_large",
            "response_header",
            502,
            "http_response_header_section_size",
        ),
        (
            "response_header_timeout",
            "response_header",
            504,
            "http_response_timeout",
        ),
        (
            "closed_mid_body",
            "response_body",
            502,
            "http_response_incomplete",
        ),
        (
            "reset_mid_body",
            "response_body",
            502,
            "http_response_incomplete",
        ),
        (
            "invalid_response_body",
            "response_body",
            502,
            "http_response_transfer_coding",
        ),
        (
            "body_read_timeout",
            "response_body",
            504,
            "connection_read_timeout",
        ),
        (
            "no_healthy_upstream",
            "select",
            503,
            "destination_unavailable",
        ),
        ("proxy_internal_error", "any", 500, "proxy_internal_error"),
        ("unclassified", "any", 502, "proxy_internal_error"),
    ];

    /// Every label, phase, status and Proxy-Status type matches `DESIGN.md`.
    #[test]
    fn labels_match_design() {
        for (i, (label, phase, status, ps)) in DESIGN.into_iter().enumerate() {
            let r = Reason::ALL[i];
            assert_eq!(r.index(), i);
            assert_eq!(r.as_str(), label);
            assert_eq!(r.phase().map_or("any", Phase::as_str), phase, "{label}");
            assert_eq!(r.status(), status, "{label}");
            assert_eq!(r.proxy_status_error(), ps, "{label}");
            assert_eq!(r.is_timeout(), status == 504, "{label}");
            assert_eq!(Reason::from_label(label), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{label}\""));
        }
        assert_eq!(Reason::from_label("client_aborted"), None);
    }

    /// Phases serialize as their snake_case names and are ordered along the request.
    #[test]
    fn phase_names_and_order() {
        assert_eq!(
            serde_json::to_string(&Phase::ResponseHeader).unwrap(),
            "\"response_header\""
        );
        assert_eq!(Phase::default(), Phase::Select);
        assert!(Phase::Connect < Phase::Request && Phase::Request < Phase::ResponseBody);
    }
}
