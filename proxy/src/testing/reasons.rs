//! The failure reasons a fault upstream produces on loopback, each with what handoff must
//! answer: one table shared by the in-process suite (`tests/diagnostics.rs`) and the one
//! through nginx (`tests/e2e_nginx.rs`). Cases that need more (an upload, a TLS or DNS
//! address, assertions of their own) are written out in each suite.

use crate::faults::{Bind, FaultServer, Mode, TlsIdentity};

/// How handoff reaches the fault upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `127.0.0.1:port`.
    Tcp,
    /// A unix socket in a temporary directory.
    Unix,
}

/// One row of [`reason_cases!`](crate::reason_cases).
#[derive(Debug, Clone)]
pub struct Case {
    /// How the upstream fails.
    pub mode: Mode,
    /// Over TCP or a unix socket.
    pub via: Via,
    /// The `X-Handoff-Reason` label.
    pub reason: &'static str,
    /// The status handoff answers; 0 for a body-phase reason (the status line had gone).
    pub status: u16,
    /// The `Proxy-Status` error type; empty for a body-phase reason.
    pub proxy_status: &'static str,
}

/// Generates one `#[tokio::test]` per row of the table, named after it, each awaiting
/// `$run(case)` (an `async fn(Case)` of the suite that asserts what it sees).
#[macro_export]
macro_rules! reason_cases {
    ($run:path) => {
        $crate::reason_cases! { $run;
            connect_refused_tcp: Refuse, Tcp, "connect_refused", 502, "connection_refused";
            connect_timeout: ConnectTimeout, Tcp, "connect_timeout", 504, "connection_timeout";
            socket_not_found: MissingSocket, Unix, "socket_not_found", 502, "destination_not_found";
            socket_backlog_full: BacklogFull, Unix, "socket_backlog_full", 503, "connection_limit_reached";
            closed_before_response_tcp: Close, Tcp, "closed_before_response", 502, "connection_terminated";
            closed_before_response_unix: Close, Unix, "closed_before_response", 502, "connection_terminated";
            closed_mid_header: CloseMidHeader, Tcp, "closed_mid_header", 502, "http_response_incomplete";
            reset_before_response_tcp: Reset, Tcp, "reset_before_response", 502, "connection_terminated";
            reset_before_response_unix: Reset, Unix, "reset_before_response", 502, "connection_terminated";
            invalid_response_header: Garbage, Tcp, "invalid_response_header", 502, "http_protocol_error";
            // 96 KiB: above handoff's limit (64 KiB); handoff's own answer is small.
            response_header_too_large: HugeHeader(96 << 10), Tcp, "response_header_too_large", 502,
                "http_response_header_section_size";
            reset_mid_body: ResetMidBody, Tcp, "reset_mid_body", 0, "";
            invalid_response_body: BadChunked, Tcp, "invalid_response_body", 0, "";
        }
    };
    ($run:path; $($name:ident: $mode:ident $(($arg:expr))?, $via:ident, $reason:literal,
        $status:literal, $proxy_status:literal;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                $run($crate::testing::reasons::Case {
                    mode: $crate::faults::Mode::$mode $(($arg))?,
                    via: $crate::testing::reasons::Via::$via,
                    reason: $reason,
                    status: $status,
                    proxy_status: $proxy_status,
                })
                .await;
            }
        )*
    };
}

/// An address that never resolves (`.invalid`, RFC 6761): `dns_failed`.
pub const UNRESOLVABLE: &str = "app.handoff-test.invalid:3000";

/// A documentation address (TEST-NET-1) with no route in a network namespace of its own:
/// `connect_unreachable` (see [`netns`](super::netns)).
pub const UNROUTABLE: &str = "192.0.2.1:80";

/// A `tls://` address served by plain HTTP that answers the ClientHello with a 400, as
/// gunicorn or Node do: `tls_handshake_failed`. The server runs on the current runtime.
pub async fn plain_http_behind_tls() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = plain.local_addr().expect("a bound address").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = plain.accept().await {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    format!("tls://127.0.0.1:{port}")
}

/// A TLS app whose certificate no trusted CA signed, and its `tls://` address:
/// `tls_certificate_invalid`. Keep the server alive for the request.
pub async fn self_signed_tls() -> (FaultServer, String) {
    let app = FaultServer::start_tls(
        Mode::Ok,
        Bind::Tcp("127.0.0.1:0".parse().expect("an address")),
        TlsIdentity::self_signed(&["localhost"]),
    )
    .await
    .expect("a TLS fault server");
    let port = app.local_addr().expect("a bound address").port();
    (app, format!("tls://127.0.0.1:{port}"))
}
