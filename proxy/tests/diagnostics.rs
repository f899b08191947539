//! One test per failure reason a real socket can produce: a fault upstream fails that way,
//! handoff answers, and the status, Proxy-Status, X-Handoff-Reason, problem+json body, the
//! counter (by exactly one), the `/failures` entry and the JSON log line all name it.

use std::time::Duration;

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::{BodyEnd, Client, Response};
use handoff::testing::reasons::{self, Case, Via};
use handoff::testing::{captured_logs, eventually, netns, TestHandoff};

/// What a scenario must produce.
struct Expect {
    reason: &'static str,
    /// 0: the status line had already gone out (body-phase reasons).
    status: u16,
    proxy_status: &'static str,
}

/// A request that fails upstream in one particular way.
struct Scenario {
    mode: Mode,
    via: Via,
    /// Extra `[[upstream]]` keys (short timeouts).
    extra: &'static str,
    /// `header_timeout`, `read_timeout` and `write_timeout`.
    timeout: &'static str,
    /// Override the upstream address (TLS and DNS cases).
    address: Option<String>,
    /// Upload this many bytes with the request.
    upload: usize,
    /// Use up every local port towards the upstream before the request (run it in a
    /// network namespace of its own).
    exhaust_ports: bool,
    expect: Expect,
}

impl Scenario {
    fn new(mode: Mode, reason: &'static str, status: u16, proxy_status: &'static str) -> Self {
        Scenario {
            mode,
            via: Via::Tcp,
            extra: "",
            timeout: "400ms",
            address: None,
            upload: 0,
            exhaust_ports: false,
            expect: Expect {
                reason,
                status,
                proxy_status,
            },
        }
    }
    fn unix(mut self) -> Self {
        self.via = Via::Unix;
        self
    }
    fn extra(mut self, extra: &'static str) -> Self {
        self.extra = extra;
        self
    }
    fn timeout(mut self, timeout: &'static str) -> Self {
        self.timeout = timeout;
        self
    }
    fn upload(mut self, bytes: usize) -> Self {
        self.upload = bytes;
        self
    }
    fn exhaust_ports(mut self) -> Self {
        self.exhaust_ports = true;
        self
    }
    fn address(mut self, address: String) -> Self {
        self.address = Some(address);
        self
    }

    async fn run(self) -> (Response, BodyEnd, serde_json::Value) {
        let dir = tempfile::tempdir().unwrap();
        let bind = match self.via {
            Via::Tcp => Bind::Tcp("127.0.0.1:0".parse().unwrap()),
            Via::Unix => Bind::Unix(dir.path().join("app.sock")),
        };
        let fault = FaultServer::start(self.mode, bind).await.unwrap();
        let address = self.address.clone().unwrap_or_else(|| fault.target());
        self.run_against(&address).await
    }

    async fn run_against(self, address: &str) -> (Response, BodyEnd, serde_json::Value) {
        let handoff = TestHandoff::start_toml(&format!(
            "[admin]\nlisten = \"{{ADMIN}}\"\n[annotate]\ndebug_token = \"sesame\"\n\
             [[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{{PORT0}}\"\naddress = \"{address}\"\n\
             connect_timeout = \"300ms\"\nheader_timeout = \"{t}\"\nread_timeout = \"{t}\"\nwrite_timeout = \"{t}\"\n{}",
            self.extra,
            t = self.timeout,
        ))
        .unwrap();
        let reason = self.expect.reason;
        let before = failures(&handoff, reason);
        let request_id = format!("test-{reason}");

        let mut client = Client::connect(handoff.addr(0)).await.unwrap();
        // After every listener has its port: the range shrinks to two, both then taken.
        let _held = if self.exhaust_ports {
            netns::exhaust_local_ports(address.parse().unwrap()).unwrap()
        } else {
            Vec::new()
        };
        let method = if self.upload > 0 { "POST" } else { "GET" };
        let head = format!(
            "{method} /checkout?id=7 HTTP/1.1\r\nHost: shop\r\nAccept: application/json\r\n\
             X-Request-Id: {request_id}\r\nContent-Length: {}\r\n\r\n",
            self.upload
        );
        client.send(head.as_bytes()).await.unwrap();
        let (response, end) = tokio::time::timeout(Duration::from_secs(10), async {
            if self.upload > 0 {
                client.upload_and_read(self.upload).await
            } else {
                client.read_response(false).await
            }
        })
        .await
        .unwrap()
        .unwrap();

        // Status and headers (only when handoff could still answer).
        if self.expect.status != 0 {
            assert_eq!(
                response.status, self.expect.status,
                "status for {reason}: {response:?}"
            );
            assert_eq!(response.header("x-handoff-reason"), Some(reason));
            let ps = response.header("proxy-status").expect("Proxy-Status");
            assert!(ps.starts_with("handoff; error="), "{ps}");
            assert!(
                ps.contains(&format!("error={}", self.expect.proxy_status)),
                "{ps}"
            );
            assert!(ps.contains(&format!("details=\"{reason}\"")), "{ps}");
            assert_eq!(response.header("x-request-id"), Some(request_id.as_str()));
            assert_eq!(
                response.header("content-type"),
                Some("application/problem+json")
            );
            assert_eq!(response.header("cache-control"), Some("no-store"));
            let problem = response.json();
            assert_eq!(problem["status"], self.expect.status);
            assert_eq!(problem["reason"], reason);
            assert_eq!(problem["upstream"], "app");
            assert_eq!(problem["request_id"], request_id.as_str());
            assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()));
            assert!(
                problem["hint"].as_str().is_some_and(|h| h.len() > 20),
                "{problem}"
            );
            assert!(problem["type"].as_str().unwrap().ends_with(reason));
            assert!(
                problem.get("evidence").is_none() || problem["evidence"].is_null(),
                "no evidence at the default exposure"
            );
        } else {
            assert_eq!(
                end,
                BodyEnd::Truncated,
                "the client sees the truncation for {reason}"
            );
            assert!(response.header("x-handoff-reason").is_none());
        }

        // The counter, by exactly one.
        let after = wait_for(|| failures(&handoff, reason), before + 1.0).await;
        assert_eq!(
            after,
            before + 1.0,
            "handoff_upstream_failures_total{{reason={reason}}}"
        );

        // The /failures entry, through the admin listener.
        let admin =
            handoff::testing::client::get(handoff.admin(), &format!("/failures?reason={reason}"))
                .await
                .unwrap();
        assert_eq!(admin.status, 200);
        let entries = admin.json();
        let entry = entries
            .as_array()
            .or_else(|| entries["failures"].as_array())
            .and_then(|a| a.first())
            .unwrap_or_else(|| panic!("no /failures entry for {reason}: {entries}"))
            .clone();
        assert_eq!(entry["reason"], reason);
        assert_eq!(entry["evidence"]["request_id"], request_id.as_str());
        assert_eq!(entry["evidence"]["upstream"], "app");
        assert!(entry["hint"].as_str().is_some_and(|h| !h.is_empty()));

        // The JSON log line.
        let line = wait_for_log(&request_id).await;
        let log: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(log["reason"], reason);
        assert_eq!(log["level"], "ERROR");
        assert_eq!(log["upstream"], "app");
        assert!(log["nginx_equivalent"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
        assert!(log["hint"].as_str().is_some_and(|s| !s.is_empty()));
        handoff.stop();
        (response, end, entry)
    }
}

fn failures(handoff: &TestHandoff, reason: &str) -> f64 {
    handoff
        .metric(
            "handoff_upstream_failures_total",
            &[("upstream", "app"), ("reason", reason)],
        )
        .unwrap_or(-1.0)
}

async fn wait_for(read: impl Fn() -> f64, want: f64) -> f64 {
    eventually(read, want, Duration::from_secs(2)).await
}

async fn wait_for_log(request_id: &str) -> String {
    let needle = format!("\"request_id\":\"{request_id}\"");
    for _ in 0..200 {
        if let Some(line) = captured_logs()
            .into_iter()
            .find(|l| l.contains(&needle) && l.contains("\"reason\""))
        {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no log line for {request_id}");
}

const BIG_UPLOAD: usize = 64 << 20;

/// The shared per-reason table (`handoff::testing::reasons`): one test per row.
async fn run_case(case: Case) {
    let scenario = Scenario::new(case.mode, case.reason, case.status, case.proxy_status);
    match case.via {
        Via::Tcp => scenario.run().await,
        Via::Unix => scenario.unix().run().await,
    };
}

handoff::reason_cases!(run_case);

/// Runs `scenario` in a network namespace of its own against `address`, or, when `None`,
/// against a listener bound there (`handoff::testing::netns`).
fn in_own_netns(
    scenario: Scenario,
    address: Option<&'static str>,
) -> (Response, BodyEnd, serde_json::Value) {
    netns::run_against_in_own_netns(address, move |address| async move {
        scenario.run_against(&address).await
    })
}

/// No route to the upstream (ENETUNREACH): in the namespace only `lo` exists, so the
/// documentation address 192.0.2.1 is unroutable and no packet leaves the machine.
#[test]
fn connect_unreachable() {
    let (_, _, entry) = in_own_netns(
        Scenario::new(
            Mode::Ok,
            "connect_unreachable",
            502,
            "destination_ip_unroutable",
        ),
        Some(reasons::UNROUTABLE),
    );
    assert_eq!(entry["evidence"]["errno"]["name"], "ENETUNREACH", "{entry}");
}

/// No local port left (EADDRNOTAVAIL): the namespace's port range is narrowed to two
/// ports, both held by connections to the upstream, before handoff connects to it.
#[test]
fn local_ports_exhausted() {
    let (_, _, entry) = in_own_netns(
        Scenario::new(
            Mode::Ok,
            "local_ports_exhausted",
            502,
            "proxy_internal_error",
        )
        .exhaust_ports(),
        None,
    );
    assert_eq!(
        entry["evidence"]["errno"]["name"], "EADDRNOTAVAIL",
        "{entry}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_refused_unix_stale_socket() {
    Scenario::new(Mode::Refuse, "connect_refused", 502, "connection_refused")
        .unix()
        .run()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_response_header_names_the_protocol() {
    for (mode, says) in [
        (Mode::TlsBytes, "the upstream speaks TLS"),
        (Mode::FastcgiBytes, "the upstream speaks FastCGI"),
        (Mode::Garbage, "the upstream is an SSH server"),
        (Mode::Http2Only, "the upstream speaks HTTP/2"),
    ] {
        let (_, _, entry) =
            Scenario::new(mode, "invalid_response_header", 502, "http_protocol_error")
                .run()
                .await;
        let detail = entry["hint_detail"].as_str().unwrap().to_owned();
        assert!(
            detail.contains(says),
            "{mode:?}: the hint should say {says:?}: {detail}"
        );
        assert!(entry["evidence"]["first_bytes"]
            .as_str()
            .is_some_and(|b| !b.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn response_header_timeout() {
    Scenario::new(
        Mode::StallHeader,
        "response_header_timeout",
        504,
        "http_response_timeout",
    )
    .run()
    .await;
}

/// Timers of a second or more run on tokio's timer wheel, shorter ones (every other test
/// here) on pingora's fast timers (`fast_timeout_to_tokio_threshold_seconds`, server.rs):
/// the long kind, which production's defaults use, fires and is named too.
#[tokio::test(flavor = "multi_thread")]
async fn response_header_timeout_of_a_second() {
    let started = std::time::Instant::now();
    Scenario::new(
        Mode::StallHeader,
        "response_header_timeout",
        504,
        "http_response_timeout",
    )
    .timeout("1s")
    .run()
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1));
}

/// Timers apply to unix-socket upstreams too.
#[tokio::test(flavor = "multi_thread")]
async fn response_header_timeout_unix() {
    Scenario::new(
        Mode::StallHeader,
        "response_header_timeout",
        504,
        "http_response_timeout",
    )
    .unix()
    .run()
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_write_timeout() {
    Scenario::new(
        Mode::SlowReader,
        "request_write_timeout",
        504,
        "connection_write_timeout",
    )
    .upload(BIG_UPLOAD)
    .run()
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_write_failed() {
    Scenario::new(
        Mode::RejectBody,
        "request_write_failed",
        502,
        "connection_terminated",
    )
    .upload(BIG_UPLOAD)
    .run()
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_mid_body() {
    let (r, _, _) = Scenario::new(Mode::CloseMidBody, "closed_mid_body", 0, "")
        .run()
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.len() < 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn body_read_timeout() {
    Scenario::new(Mode::StallBody, "body_read_timeout", 0, "")
        .run()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_handshake_failed() {
    let address = reasons::plain_http_behind_tls().await;
    Scenario::new(Mode::Ok, "tls_handshake_failed", 502, "tls_protocol_error")
        .extra("sni = \"localhost\"\n")
        .run_against(&address)
        .await;
}

/// A TLS handshake that stalls (a plain-HTTP app waiting for a request line) is a connect
/// timeout whose evidence says the TCP connection was open and TLS stalled.
#[tokio::test(flavor = "multi_thread")]
async fn tls_handshake_stall_is_a_connect_timeout() {
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let port = app.local_addr().unwrap().port();
    let (_, _, entry) = Scenario::new(Mode::Ok, "connect_timeout", 504, "connection_timeout")
        .extra("sni = \"localhost\"\n")
        .run_against(&format!("tls://127.0.0.1:{port}"))
        .await;
    let findings = entry["evidence"]["findings"].to_string();
    assert!(
        findings.contains("TLS handshake did not finish"),
        "{findings}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_certificate_invalid() {
    let (_app, address) = reasons::self_signed_tls().await;
    Scenario::new(
        Mode::Ok,
        "tls_certificate_invalid",
        502,
        "tls_certificate_error",
    )
    .extra("sni = \"localhost\"\n")
    .run_against(&address)
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_failed() {
    // `.invalid` never resolves (RFC 6761).
    Scenario::new(Mode::Ok, "dns_failed", 502, "dns_error")
        .address(reasons::UNRESOLVABLE.into())
        .run()
        .await;
}

/// The app's own 503 passes through untouched and is not a handoff failure.
#[tokio::test(flavor = "multi_thread")]
async fn app_503_passes_through() {
    let app = FaultServer::start(Mode::App503, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let handoff = TestHandoff::for_upstream(&app.target(), "").unwrap();
    let r = handoff::testing::client::get(handoff.addr(0), "/")
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert!(r.header("x-handoff-reason").is_none());
    assert!(r.header("proxy-status").is_none());
    let total: f64 = handoff
        .shared()
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("handoff_upstream_failures_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 0.0);
    // Counted when the request ends, which can be just after the client has the response.
    let five = wait_for(
        || {
            handoff
                .metric(
                    "handoff_upstream_requests_total",
                    &[("upstream", "app"), ("status_class", "5xx")],
                )
                .unwrap_or(0.0)
        },
        1.0,
    )
    .await;
    assert_eq!(five, 1.0);
}
