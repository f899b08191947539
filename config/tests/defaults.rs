//! The embedded default, `Settings::single` and the warnings.

use std::time::Duration;

use handoff_config::defaults::*;
use handoff_config::{
    from_str, AdminSettings, AnnotateSettings, ListenAddress, LogSettings, ServerSettings,
    Settings, UpstreamAddress, UpstreamSettings, DEFAULT_CONFIG,
};

fn upstream(extra: &str) -> String {
    format!("[[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:8080\"\naddress = \"127.0.0.1:3000\"\n{extra}")
}

/// `default.toml` loads, without warnings, to exactly the documented default constants.
#[test]
fn default_config_is_the_documented_defaults() {
    let settings = from_str(DEFAULT_CONFIG, "default.toml").unwrap();
    let expected = Settings {
        server: ServerSettings {
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
        },
        admin: AdminSettings {
            listen: ListenAddress::Tcp(DEFAULT_ADMIN_LISTEN),
        },
        annotate: AnnotateSettings {
            expose: DEFAULT_EXPOSE,
            proxy_name: DEFAULT_PROXY_NAME.into(),
            debug_header: DEFAULT_DEBUG_HEADER.into(),
            debug_token: None,
        },
        log: LogSettings {
            format: DEFAULT_LOG_FORMAT,
            access: DEFAULT_LOG_ACCESS,
            level: DEFAULT_LOG_LEVEL.into(),
        },
        upstreams: vec![UpstreamSettings {
            name: DEFAULT_UPSTREAM_NAME.into(),
            listen: ListenAddress::Tcp(DEFAULT_LISTEN),
            address: UpstreamAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 3000,
            },
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            max_response_header_bytes: DEFAULT_MAX_RESPONSE_HEADER_BYTES,
            nginx_buffer_bytes: DEFAULT_NGINX_BUFFER_BYTES,
        }],
        warnings: vec![],
    };
    assert_eq!(settings, expected);
    assert_eq!(
        settings.upstreams[0].address.literal_addr(),
        Some(DEFAULT_UPSTREAM_ADDRESS)
    );
    // The same as the `Default` impls, the minimal file, and the command-line form.
    assert_eq!(settings.server, ServerSettings::default());
    assert_eq!(settings.admin, AdminSettings::default());
    assert_eq!(settings.annotate, AnnotateSettings::default());
    assert_eq!(settings.log, LogSettings::default());
    assert_eq!(from_str(&upstream(""), "minimal.toml").unwrap(), settings);
    assert_eq!(
        Settings::single("127.0.0.1:8080", "127.0.0.1:3000", None).unwrap(),
        settings
    );
}

/// `Settings::single` accepts every upstream form and names the flag in its problems.
#[test]
fn single_validates_like_the_file() {
    let s = Settings::single("unix:/run/handoff.sock", "tls://app.internal:8443", None).unwrap();
    assert_eq!(s.upstreams[0].name, "app");
    assert_eq!(s.upstreams[0].listen.to_string(), "unix:/run/handoff.sock");
    assert_eq!(
        s.upstreams[0].address.to_string(),
        "tls://app.internal:8443"
    );

    let problems = Settings::single("localhost:8080", "http://app:3000", None)
        .unwrap_err()
        .problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("command line: --listen: "),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("command line: --upstream: "),
        "{problems:?}"
    );

    let problems = Settings::single("127.0.0.1:9180", "127.0.0.1:3000", None)
        .unwrap_err()
        .problems();
    assert_eq!(
        problems,
        ["command line: --listen: 127.0.0.1:9180 is also the admin listener's address"]
    );

    // --admin / HANDOFF_ADMIN moves the admin listener, validated like `[admin] listen`.
    let s = Settings::single("0.0.0.0:8080", "127.0.0.1:3000", Some("0.0.0.0:9180")).unwrap();
    assert_eq!(s.admin.listen.to_string(), "0.0.0.0:9180");
    let problems = Settings::single("0.0.0.0:8080", "127.0.0.1:3000", Some("0.0.0.0:8080"))
        .unwrap_err()
        .problems();
    assert_eq!(
        problems,
        ["command line: --listen: 0.0.0.0:8080 is also the admin listener's address"]
    );
    let problems = Settings::single("0.0.0.0:8080", "127.0.0.1:3000", Some("admin:9180"))
        .unwrap_err()
        .problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("command line: --admin: "),
        "{problems:?}"
    );
}

/// Valid but risky timeouts load, with one warning each naming the key and position.
#[test]
fn risky_timeouts_are_warnings() {
    let text = upstream(
        "connect_timeout = \"60s\"\nheader_timeout = \"10s\"\nread_timeout = \"1m30s\"\npool_idle_timeout = \"5s\"\n",
    );
    let settings = from_str(&text, "handoff.toml").unwrap();
    assert_eq!(settings.upstreams[0].read_timeout, Duration::from_secs(90));
    let warnings: Vec<String> = settings.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    assert!(warnings[0].starts_with(
        "handoff.toml:5:19: upstream[0].connect_timeout: 1m is not shorter than nginx's"
    ));
    assert!(warnings[1].starts_with(
        "handoff.toml:6:18: upstream[0].header_timeout: connect_timeout + header_timeout = 1m10s"
    ));
    assert!(warnings[2]
        .starts_with("handoff.toml:7:16: upstream[0].read_timeout: 1m30s is not shorter"));
    assert!(warnings[3]
        .starts_with("handoff.toml:8:21: upstream[0].pool_idle_timeout: 5s: keep it below"));
}

/// `grace_period` and `pool_idle_timeout` may be zero; the other timeouts may not.
#[test]
fn zero_is_allowed_where_it_means_something() {
    let text = format!(
        "[server]\ngrace_period = \"0s\"\n{}",
        upstream("pool_idle_timeout = \"0ms\"\n")
    );
    let settings = from_str(&text, "handoff.toml").unwrap();
    assert!(settings.server.grace_period.is_zero());
    assert!(settings.upstreams[0].pool_idle_timeout.is_zero());
}

/// A client header timeout of zero would drop every connection: refused, with the key named.
#[test]
fn client_header_timeout_must_be_positive() {
    let text = format!("[server]\nclient_header_timeout = \"0s\"\n{}", upstream(""));
    let err = from_str(&text, "handoff.toml").unwrap_err();
    let problems = err.problems().join("\n");
    assert!(
        problems
            .contains("handoff.toml:2:25: server.client_header_timeout: must be greater than zero"),
        "{problems}"
    );
    let text = format!(
        "[server]\nclient_header_timeout = \"2500ms\"\n{}",
        upstream("")
    );
    let settings = from_str(&text, "handoff.toml").unwrap();
    assert_eq!(
        settings.server.client_header_timeout,
        Duration::from_millis(2500)
    );
}
