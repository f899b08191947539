//! Every failure reason a real socket can produce, through a real nginx: client → nginx (the
//! configuration `deploy/nginx/` recommends, with its `log_format handoff`) → handoff
//! (in-process) → a fault upstream. Each test asserts what the client receives *through
//! nginx* (status, Proxy-Status, X-Handoff-Reason, problem+json body), that nginx's access
//! log line carries the reason and the Proxy-Status, and what handoff counted and kept.
//!
//! Where nginx itself changes the outcome, the test says so and asserts what really happens:
//! - response-body reasons: the status line had already gone through nginx; nginx passes the
//!   truncation on (the client sees a cut body and a closed connection) and logs status 200
//!   with an empty reason. Only handoff's `/failures`, metrics and log name the reason.
//! - a response header bigger than nginx's `proxy_buffer_size` but within handoff's limit:
//!   nginx answers its own bare 502 ("upstream sent too big header"); handoff counts it in
//!   `handoff_upstream_header_over_nginx_buffer_total`.
//! - an nginx `proxy_read_timeout` shorter than handoff's `header_timeout`: nginx answers its
//!   own bare 504 with an empty reason; the recommended 60s (longer than handoff's timers)
//!   lets handoff answer first (`response_header_timeout` below).
//! - a large upload needs `client_max_body_size` raised (nginx's default is 1m, answered with
//!   its own 413 before handoff sees anything); nginx buffers the body before passing it on.
//!
//! nginx must be installed (`scripts/test` installs it); without it these tests fail.

use std::time::Duration;

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::{BodyEnd, Client, Response};
use handoff::testing::nginx::{Nginx, NginxConfig};
use handoff::testing::reasons::{self, Case, Via};
use handoff::testing::{eventually, netns, TestHandoff};

/// What a scenario must produce.
struct Expect {
    reason: &'static str,
    /// What the client gets through nginx; 0: the status line had already gone out (body
    /// phase) and the client sees 200 with a truncated body.
    status: u16,
    proxy_status: &'static str,
}

/// A request that fails upstream in one particular way, sent through nginx.
struct Scenario {
    mode: Mode,
    via: Via,
    /// Extra `[[upstream]]` keys.
    extra: &'static str,
    /// Override the upstream address (TLS and DNS cases).
    address: Option<String>,
    /// Upload this many bytes with the request.
    upload: usize,
    /// nginx may answer its own 502 instead of passing handoff's answer on (see
    /// [`Scenario::racing_upload`]).
    racing_upload: bool,
    /// Use up every local port towards the upstream once nginx runs (in a network
    /// namespace of its own).
    exhaust_ports: bool,
    expect: Expect,
}

/// What a run observed, for scenario-specific assertions.
struct Outcome {
    response: Response,
    end: BodyEnd,
    /// nginx's access-log line for the request.
    access: serde_json::Value,
    /// handoff's newest `/failures` entry for the reason.
    entry: serde_json::Value,
    nginx: Nginx,
    handoff: TestHandoff,
}

/// handoff's config: short timers so each test is quick; nginx's (60s) are far longer.
fn handoff_toml(address: &str, extra: &str) -> String {
    format!(
        "[admin]\nlisten = \"{{ADMIN}}\"\n\
         [[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{{PORT0}}\"\naddress = \"{address}\"\n\
         connect_timeout = \"300ms\"\nheader_timeout = \"400ms\"\nread_timeout = \"400ms\"\nwrite_timeout = \"400ms\"\n\
         nginx_buffer_bytes = 8192\n{extra}"
    )
}

impl Scenario {
    fn new(mode: Mode, reason: &'static str, status: u16, proxy_status: &'static str) -> Self {
        Scenario {
            mode,
            via: Via::Tcp,
            extra: "",
            address: None,
            upload: 0,
            racing_upload: false,
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
    fn upload(mut self, bytes: usize) -> Self {
        self.upload = bytes;
        self
    }
    /// nginx changes the outcome, sometimes: handoff answers while nginx is still sending
    /// the request body, then closes the connection with that body unread (a reset). When
    /// nginx's next write fails before it has read handoff's answer, nginx drops it and
    /// answers its own bare 502 ("... while sending request to upstream"), with an empty
    /// reason in its access log. handoff has counted and kept the reason either way.
    fn racing_upload(mut self) -> Self {
        self.racing_upload = true;
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

    async fn run(self) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        let bind = match self.via {
            Via::Tcp => Bind::Tcp("127.0.0.1:0".parse().unwrap()),
            Via::Unix => Bind::Unix(dir.path().join("app.sock")),
        };
        let fault = FaultServer::start(self.mode, bind).await.unwrap();
        let address = self.address.clone().unwrap_or_else(|| fault.target());
        self.run_against(&address).await
    }

    async fn run_against(self, address: &str) -> Outcome {
        let handoff = TestHandoff::start_toml(&handoff_toml(address, self.extra)).unwrap();
        let mut config = NginxConfig::new(handoff.addr(0));
        if self.upload > 0 {
            // nginx's default client_max_body_size (1m) would answer 413 itself.
            config.extra_location = "client_max_body_size 0;".into();
        }
        let nginx = Nginx::start(&config);
        // After every listener has its port: the range shrinks to two, both then taken.
        let _held = if self.exhaust_ports {
            netns::exhaust_local_ports(address.parse().unwrap()).unwrap()
        } else {
            Vec::new()
        };
        let reason = self.expect.reason;
        let before = failures(&handoff, reason);
        let uri = format!("/e2e/{reason}");

        let mut client = Client::connect(nginx.addr()).await.unwrap();
        let method = if self.upload > 0 { "POST" } else { "GET" };
        let head = format!(
            "{method} {uri}?id=7 HTTP/1.1\r\nHost: shop\r\nAccept: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.upload
        );
        client.send(head.as_bytes()).await.unwrap();
        let (response, end) = tokio::time::timeout(Duration::from_secs(15), async {
            if self.upload > 0 {
                client.upload_and_read(self.upload).await
            } else {
                client.read_response(false).await
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no response through nginx for {reason}"))
        .unwrap_or_else(|e| {
            panic!(
                "reading the response for {reason}: {e}; nginx: {}",
                nginx.error_log()
            )
        });
        let access = nginx.access_log_line(&uri, Duration::from_secs(5)).await;

        if self.racing_upload && response.header("x-handoff-reason").is_none() {
            assert_eq!(response.status, 502, "nginx's own answer: {response:?}");
            assert_eq!(access["status"], "502");
            assert_eq!(access["handoff_reason"], "", "{access}");
            nginx
                .error_log_containing("while sending request to upstream", WAIT)
                .await;
        } else if self.expect.status != 0 {
            // handoff's annotated response, passed through nginx unchanged.
            assert_eq!(
                response.status, self.expect.status,
                "status for {reason} through nginx: {response:?}"
            );
            assert_eq!(response.header("x-handoff-reason"), Some(reason));
            let ps = response.header("proxy-status").expect("Proxy-Status");
            assert!(ps.starts_with("handoff; error="), "{ps}");
            assert!(
                ps.contains(&format!("error={}", self.expect.proxy_status)),
                "{ps}"
            );
            assert!(ps.contains(&format!("details=\"{reason}\"")), "{ps}");
            // The id nginx generated ($request_id) came back from handoff.
            let request_id = response.header("x-request-id").expect("X-Request-Id");
            assert_eq!(access["request_id"], request_id);
            assert_eq!(
                response.header("content-type"),
                Some("application/problem+json")
            );
            assert_eq!(response.header("cache-control"), Some("no-store"));
            assert_eq!(end, BodyEnd::Complete);
            let problem = response.json();
            assert_eq!(problem["status"], self.expect.status);
            assert_eq!(problem["reason"], reason);
            assert_eq!(problem["upstream"], "app");
            assert_eq!(problem["request_id"], request_id);
            assert!(problem["type"].as_str().unwrap().ends_with(reason));
            assert!(
                problem["hint"].as_str().is_some_and(|h| h.len() > 20),
                "{problem}"
            );

            // nginx's access log carries the reason and handoff's Proxy-Status.
            assert_eq!(access["status"], self.expect.status.to_string());
            assert_eq!(access["upstream_status"], self.expect.status.to_string());
            assert_eq!(access["handoff_reason"], reason, "{access}");
            assert_eq!(access["proxy_status"], ps, "{access}");
        } else {
            // Body phase: nginx had passed the 200 on; it passes the truncation on too.
            assert_eq!(response.status, 200, "{response:?}");
            assert_eq!(
                end,
                BodyEnd::Truncated,
                "the client sees the truncation for {reason} through nginx"
            );
            assert!(response.header("x-handoff-reason").is_none());
            assert_eq!(access["status"], "200", "{access}");
            assert_eq!(access["handoff_reason"], "", "{access}");
            assert_eq!(access["proxy_status"], "", "{access}");
            // nginx's error log says what it saw: the upstream (handoff) cut the body.
            nginx
                .error_log_containing(
                    "upstream prematurely closed connection while reading upstream",
                    Duration::from_secs(5),
                )
                .await;
        }

        // handoff counted it once and kept it in /failures, with nginx's request id.
        let after = eventually(|| failures(&handoff, reason), before + 1.0, WAIT).await;
        assert_eq!(
            after,
            before + 1.0,
            "handoff_upstream_failures_total{{reason={reason}}}"
        );
        let entry = failure_entry(&handoff, reason).await;
        assert_eq!(entry["evidence"]["request_id"], access["request_id"]);
        assert_eq!(entry["evidence"]["upstream"], "app");
        assert!(entry["hint"].as_str().is_some_and(|h| !h.is_empty()));
        Outcome {
            response,
            end,
            access,
            entry,
            nginx,
            handoff,
        }
    }
}

const WAIT: Duration = Duration::from_secs(3);

fn failures(handoff: &TestHandoff, reason: &str) -> f64 {
    handoff
        .metric(
            "handoff_upstream_failures_total",
            &[("upstream", "app"), ("reason", reason)],
        )
        .unwrap_or(-1.0)
}

fn total_failures(handoff: &TestHandoff) -> f64 {
    handoff
        .shared()
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("handoff_upstream_failures_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

async fn failure_entry(handoff: &TestHandoff, reason: &str) -> serde_json::Value {
    let admin =
        handoff::testing::client::get(handoff.admin(), &format!("/failures?reason={reason}"))
            .await
            .unwrap();
    assert_eq!(admin.status, 200);
    let entries = admin.json();
    entries
        .as_array()
        .or_else(|| entries["failures"].as_array())
        .and_then(|a| a.first())
        .unwrap_or_else(|| panic!("no /failures entry for {reason}: {entries}"))
        .clone()
}

/// Runs `scenario` in a network namespace of its own against `address`, or, when `None`,
/// against a listener bound there (`handoff::testing::netns`).
fn in_own_netns(scenario: Scenario, address: Option<&'static str>) -> Outcome {
    netns::run_against_in_own_netns(address, move |address| async move {
        scenario.run_against(&address).await
    })
}

/// No route to the upstream: only `lo` exists in the namespace (ENETUNREACH).
#[test]
fn connect_unreachable() {
    let outcome = in_own_netns(
        Scenario::new(
            Mode::Ok,
            "connect_unreachable",
            502,
            "destination_ip_unroutable",
        ),
        Some(reasons::UNROUTABLE),
    );
    assert_eq!(outcome.entry["evidence"]["errno"]["name"], "ENETUNREACH");
}

/// No local port left for handoff's connection to the app (EADDRNOTAVAIL).
#[test]
fn local_ports_exhausted() {
    let outcome = in_own_netns(
        Scenario::new(
            Mode::Ok,
            "local_ports_exhausted",
            502,
            "proxy_internal_error",
        )
        .exhaust_ports(),
        None,
    );
    assert_eq!(outcome.entry["evidence"]["errno"]["name"], "EADDRNOTAVAIL");
}

/// Through nginx the upload is buffered by nginx first (to its temp dir), then sent to
/// handoff; 16 MiB is far more than the socket buffers between handoff and the app.
const BIG_UPLOAD: usize = 16 << 20;

/// The shared per-reason table (`handoff::testing::reasons`): one test per row, through
/// nginx.
async fn run_case(case: Case) {
    let scenario = Scenario::new(case.mode, case.reason, case.status, case.proxy_status);
    match case.via {
        Via::Tcp => scenario.run().await,
        Via::Unix => scenario.unix().run().await,
    };
}

handoff::reason_cases!(run_case);

#[tokio::test(flavor = "multi_thread")]
async fn connect_refused_unix_stale_socket() {
    let o = Scenario::new(Mode::Refuse, "connect_refused", 502, "connection_refused")
        .unix()
        .run()
        .await;
    let findings = o.entry["evidence"]["findings"].to_string();
    assert!(
        findings.contains("exists but nothing listens"),
        "{findings}"
    );
    assert!(o.access["upstream_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    o.handoff.stop();
}

/// The FastCGI sniff survives nginx: the hint in the body nginx passes on names it.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_response_header_fastcgi_hint_through_nginx() {
    let o = Scenario::new(
        Mode::FastcgiBytes,
        "invalid_response_header",
        502,
        "http_protocol_error",
    )
    .run()
    .await;
    let hint = o.response.json()["hint"].as_str().unwrap().to_owned();
    assert!(hint.contains("FastCGI"), "{hint}");
}

/// nginx changes the outcome: a 12 KiB header is within handoff's limit (64 KiB) but above
/// the recommended `proxy_buffer_size 8k`, so handoff passes it on and nginx answers its own
/// bare 502 ("upstream sent too big header"), with an empty reason in its access log.
/// handoff, told nginx's buffer size (`nginx_buffer_bytes = 8192`), counts it in
/// `handoff_upstream_header_over_nginx_buffer_total`. The fix: raise `proxy_buffer_size`
/// (and `nginx_buffer_bytes`) or trim the app's headers.
#[tokio::test(flavor = "multi_thread")]
async fn header_over_nginx_buffer_is_nginx_own_502() {
    let fault = FaultServer::start(
        Mode::BigHeader(12 << 10),
        Bind::Tcp("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let handoff = TestHandoff::start_toml(&handoff_toml(&fault.target(), "")).unwrap();
    let nginx = Nginx::start(&NginxConfig::new(handoff.addr(0)));
    let mut client = Client::connect(nginx.addr()).await.unwrap();
    let r = client
        .request(
            "GET",
            "/e2e/big-header",
            &[("Accept", "application/json")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.header("x-handoff-reason").is_none(), "nginx's own 502");
    assert!(r.header("proxy-status").is_none());
    assert!(
        String::from_utf8_lossy(&r.body).contains("502 Bad Gateway"),
        "nginx's own page"
    );
    nginx
        .error_log_containing(
            "upstream sent too big header while reading response header from upstream",
            WAIT,
        )
        .await;
    let access = nginx
        .access_log_line("/e2e/big-header", Duration::from_secs(5))
        .await;
    assert_eq!(access["status"], "502");
    assert_eq!(access["handoff_reason"], "", "{access}");
    assert_eq!(access["proxy_status"], "", "{access}");
    let over = eventually(
        || {
            handoff
                .metric(
                    "handoff_upstream_header_over_nginx_buffer_total",
                    &[("upstream", "app")],
                )
                .unwrap_or(0.0)
        },
        1.0,
        WAIT,
    )
    .await;
    assert_eq!(over, 1.0, "handoff_upstream_header_over_nginx_buffer_total");
}

/// The same app with a 6 KiB header: nginx's default 4k buffer would refuse it, the
/// recommended `proxy_buffer_size 8k` passes it, and handoff counts nothing.
#[tokio::test(flavor = "multi_thread")]
async fn header_within_recommended_buffer_passes() {
    let fault = FaultServer::start(
        Mode::BigHeader(6 << 10),
        Bind::Tcp("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let handoff = TestHandoff::start_toml(&handoff_toml(&fault.target(), "")).unwrap();
    let nginx = Nginx::start(&NginxConfig::new(handoff.addr(0)));
    let mut client = Client::connect(nginx.addr()).await.unwrap();
    let r = client.request("GET", "/e2e/6k", &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok\n");
    let access = nginx.access_log_line("/e2e/6k", WAIT).await;
    assert_eq!(access["status"], "200");
    assert_eq!(access["handoff_reason"], "");
    assert_eq!(
        handoff.metric(
            "handoff_upstream_header_over_nginx_buffer_total",
            &[("upstream", "app")]
        ),
        Some(0.0)
    );
    assert_eq!(total_failures(&handoff), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn response_header_timeout() {
    // nginx's proxy_read_timeout (60s, as recommended) is far longer than handoff's
    // header_timeout (400ms): handoff answers first, with the reason.
    let o = Scenario::new(
        Mode::StallHeader,
        "response_header_timeout",
        504,
        "http_response_timeout",
    )
    .run()
    .await;
    assert!(!o.nginx.error_log().contains("upstream timed out"));
}

/// nginx changes the outcome: with `proxy_read_timeout` (300ms) shorter than handoff's
/// `header_timeout` (2s), nginx gives up first and answers its own bare 504; the access log
/// has status 504 and an empty reason, and only nginx's error log says "upstream timed
/// out". This is why `deploy/nginx/handoff.conf` keeps nginx's timeouts (60s) above
/// handoff's (`response_header_timeout` above shows the recommended outcome).
#[tokio::test(flavor = "multi_thread")]
async fn nginx_read_timeout_shorter_than_handoff_is_bare_504() {
    let fault = FaultServer::start(Mode::StallHeader, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let handoff = TestHandoff::start_toml(
        &handoff_toml(&fault.target(), "")
            .replace("header_timeout = \"400ms\"", "header_timeout = \"2s\""),
    )
    .unwrap();
    let mut config = NginxConfig::new(handoff.addr(0));
    config.proxy_read_timeout = "300ms".into();
    let nginx = Nginx::start(&config);
    let mut client = Client::connect(nginx.addr()).await.unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(
            "GET",
            "/e2e/nginx-timeout",
            &[("Accept", "application/json")],
            b"",
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.header("x-handoff-reason").is_none(), "nginx's own 504");
    assert!(r.header("proxy-status").is_none());
    let access = nginx.access_log_line("/e2e/nginx-timeout", WAIT).await;
    assert_eq!(access["status"], "504");
    assert_eq!(access["handoff_reason"], "", "{access}");
    nginx
        .error_log_containing(
            "upstream timed out (110: Connection timed out) while reading response header from upstream",
            WAIT,
        )
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
    .racing_upload()
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
    .racing_upload()
    .run()
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_mid_body() {
    let o = Scenario::new(Mode::CloseMidBody, "closed_mid_body", 0, "")
        .run()
        .await;
    assert_eq!(o.response.header("content-length"), Some("1000"));
    assert!(o.response.body.len() < 1000);
    assert_eq!(o.end, BodyEnd::Truncated);
}

#[tokio::test(flavor = "multi_thread")]
async fn body_read_timeout() {
    // handoff's read_timeout (400ms) fires long before nginx's proxy_read_timeout (60s).
    let o = Scenario::new(Mode::StallBody, "body_read_timeout", 0, "")
        .run()
        .await;
    assert!(!o.nginx.error_log().contains("upstream timed out"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_handshake_failed() {
    let address = reasons::plain_http_behind_tls().await;
    Scenario::new(Mode::Ok, "tls_handshake_failed", 502, "tls_protocol_error")
        .extra("sni = \"localhost\"\n")
        .run_against(&address)
        .await;
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

/// The app's own 503 passes through handoff and nginx untouched, with an empty reason in
/// the access log, and is no handoff failure.
#[tokio::test(flavor = "multi_thread")]
async fn app_503_passes_through_nginx() {
    let app = FaultServer::start(Mode::App503, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let handoff = TestHandoff::start_toml(&handoff_toml(&app.target(), "")).unwrap();
    let nginx = Nginx::start(&NginxConfig::new(handoff.addr(0)));
    let mut client = Client::connect(nginx.addr()).await.unwrap();
    let r = client
        .request("GET", "/e2e/app503", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert!(r.header("x-handoff-reason").is_none());
    assert_eq!(r.body, b"the app is unavailable\n");
    let access = nginx.access_log_line("/e2e/app503", WAIT).await;
    assert_eq!(access["status"], "503");
    assert_eq!(access["handoff_reason"], "");
    assert_eq!(access["proxy_status"], "");
    assert_eq!(total_failures(&handoff), 0.0);
}

/// A GET that was completely written and then closed without a response failed while
/// reading the response header: the evidence and the problem `detail` say so (unix socket).
#[tokio::test(flavor = "multi_thread")]
async fn closed_before_response_is_in_the_response_header_phase() {
    let o = Scenario::new(
        Mode::Close,
        "closed_before_response",
        502,
        "connection_terminated",
    )
    .unix()
    .run()
    .await;
    let detail = o.response.json()["detail"].as_str().unwrap().to_owned();
    assert_eq!(
        o.entry["evidence"]["phase"], "response_header",
        "{}",
        o.entry
    );
    assert!(
        detail.contains("while reading response header from upstream"),
        "{detail}"
    );
}

/// nginx's pooled connection to handoff outlives failed requests: five 502s through nginx
/// leave one established nginx → handoff connection and no TIME_WAIT socket on handoff's
/// port (pingora alone would close after each, and nginx would open five).
#[tokio::test(flavor = "multi_thread")]
async fn failures_keep_nginx_pooled_connection() {
    let app = format!("127.0.0.1:{}", handoff::testing::free_port());
    let handoff = TestHandoff::start_toml(&handoff_toml(&app, "")).unwrap();
    let nginx = Nginx::start(&NginxConfig::new(handoff.addr(0)));
    let port = handoff.addr(0).port();
    for i in 0..5 {
        let mut client = Client::connect(nginx.addr()).await.unwrap();
        let r = client
            .request("GET", &format!("/e2e/kept/{i}"), &[], b"")
            .await
            .unwrap();
        assert_eq!(r.status, 502);
        assert_eq!(r.header("x-handoff-reason"), Some("connect_refused"));
    }
    assert_eq!(
        eventually(|| failures(&handoff, "connect_refused"), 5.0, WAIT).await,
        5.0
    );
    assert_eq!(
        tcp_states_on_local_port(port),
        (1, 0),
        "(established, time-wait) sockets on handoff's port {port}"
    );
}

/// Sockets in `/proc/net/tcp` whose local port is `port`: (established, time-wait).
fn tcp_states_on_local_port(port: u16) -> (usize, usize) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local_port = format!(":{port:04X}");
    let states: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = fields.next()?;
            let state = fields.nth(1)?;
            local.ends_with(&local_port).then_some(state)
        })
        .collect();
    let count = |code| states.iter().filter(|&&s| s == code).count();
    (count("01"), count("06"))
}
