//! Every fixture under `fixtures/valid` loads; every fixture under `fixtures/invalid` fails
//! with a problem naming the right key, position and cause.

use std::fs;
use std::path::{Path, PathBuf};

use handoff_config::{from_file, from_str, ConfigError, UpstreamAddress};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

fn invalid(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/invalid")
        .join(format!("{name}.toml"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    match from_str(&text, &format!("{name}.toml")) {
        Ok(settings) => panic!("{name} loaded: {settings:?}"),
        Err(error) => error.problems(),
    }
}

/// Each valid fixture loads without warnings.
#[test]
fn valid_fixtures_load() {
    let files = fixtures("valid");
    assert!(files.len() >= 4);
    for path in files {
        let settings = from_file(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        assert!(!settings.upstreams.is_empty());
        assert_eq!(settings.warnings, [], "{}", path.display());
    }
}

/// The fixture with every key sets every field as written.
#[test]
fn full_fixture_sets_every_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/full.toml");
    let s = from_file(&path).unwrap();
    assert_eq!(s.server.grace_period.as_secs(), 90);
    assert_eq!(
        (
            s.server.threads,
            s.server.upstream_pool_size,
            s.server.recent_failures
        ),
        (4, 64, 1000)
    );
    assert_eq!(s.admin.listen.to_string(), "[::1]:9999");
    assert_eq!(s.annotate.expose.as_str(), "full");
    assert_eq!(s.annotate.proxy_name, "edge-handoff");
    assert_eq!(s.annotate.debug_header, "x-debug-me");
    assert_eq!(s.annotate.debug_token.as_deref(), Some("s3cret"));
    assert_eq!(s.log.format.as_str(), "text");
    assert!(s.log.access);
    assert_eq!(s.log.level, "handoff=debug,pingora=warn");

    let web = &s.upstreams[0];
    assert_eq!(web.name, "web_1");
    assert_eq!(web.address.to_string(), "localhost:3001");
    assert_eq!(web.address.literal_addr(), None);
    assert_eq!(web.connect_timeout.as_millis(), 150);
    assert_eq!(web.header_timeout.as_secs(), 30);
    assert_eq!(web.read_timeout.as_secs(), 30);
    assert_eq!(web.write_timeout.as_secs(), 10);
    assert!(web.pool_idle_timeout.is_zero());
    assert_eq!(web.max_response_header_bytes, 1_048_575);
    assert_eq!(web.nginx_buffer_bytes, 8192);

    let api = &s.upstreams[1];
    assert_eq!(
        api.address,
        UpstreamAddress::Tls {
            host: "10.0.0.7".into(),
            port: 8443,
            sni: "api.internal".into(),
            ca_file: None,
            verify: false,
        }
    );
    assert_eq!(
        api.address.literal_addr(),
        Some("10.0.0.7:8443".parse().unwrap())
    );
}

/// A `tls://` upstream with a `ca_file` that exists loads it; the same file made
/// unreadable in name (a directory) does not.
#[test]
fn tls_with_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let text = format!(
        "[[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:8080\"\naddress = \"tls://app.internal:8443\"\nca_file = \"{}\"\n",
        ca.display()
    );
    let config = dir.path().join("tls.toml");
    fs::write(&config, &text).unwrap();
    let settings = from_file(&config).unwrap();
    assert_eq!(
        settings.upstreams[0].address,
        UpstreamAddress::Tls {
            host: "app.internal".into(),
            port: 8443,
            sni: "app.internal".into(),
            ca_file: Some(ca.clone()),
            verify: true,
        }
    );

    let text = text.replace(&ca.display().to_string(), &dir.path().display().to_string());
    let problems = from_str(&text, "tls.toml").unwrap_err().problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("tls.toml:5:11: upstream[0].ca_file: "),
        "{problems:?}"
    );
    assert!(problems[0].contains("is not a file"), "{problems:?}");
}

/// A missing file is a read error naming the path, not a list of problems.
#[test]
fn missing_file_is_a_read_error() {
    let error = from_file(Path::new("/nonexistent/handoff.toml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert_eq!(error.problems().len(), 1);
    assert!(error
        .to_string()
        .starts_with("cannot read /nonexistent/handoff.toml: "));
}

/// Each invalid fixture fails, and its one problem starts with `file:line:col: key: ` (or
/// `file: key: ` when there is no position) and says why.
#[test]
fn invalid_fixtures_fail_with_key_and_position() {
    // (fixture, expected prefix after the file name, part of the message)
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown_key",
            ":3:9: admin.lisen: ",
            "unknown key; expected one of: listen",
        ),
        (
            "unknown_section",
            ":1:1: upstreams: ",
            "unknown key; expected one of: server, admin",
        ),
        (
            "unknown_key_in_upstream",
            ":5:11: upstream[0].timeout: ",
            "unknown key",
        ),
        (
            "bad_duration",
            ":5:19: upstream[0].connect_timeout: ",
            "\"1.5s\" has no unit",
        ),
        (
            "zero_timeout",
            ":5:16: upstream[0].read_timeout: ",
            "must be greater than zero, got \"0s\"",
        ),
        (
            "duplicate_name",
            ":7:8: upstream[1].name: ",
            "duplicate name \"app\", also used by upstream[0].name",
        ),
        (
            "duplicate_listen",
            ":8:10: upstream[1].listen: ",
            "0.0.0.0:8080 is also used by upstream[0].listen",
        ),
        (
            "listen_is_admin",
            ":3:10: upstream[0].listen: ",
            "is also used by admin.listen",
        ),
        (
            "listen_hostname",
            ":3:10: upstream[0].listen: ",
            "expected an IP address and port",
        ),
        (
            "relative_unix_path",
            ":4:11: upstream[0].address: ",
            "must be absolute",
        ),
        (
            "bad_address",
            ":4:11: upstream[0].address: ",
            "scheme \"http://\" is not supported; expected \"host:port\"",
        ),
        (
            "bare_port",
            ":4:11: upstream[0].address: ",
            "no port; expected \"host:port\"",
        ),
        (
            "tls_keys_without_tls",
            ":5:7: upstream[0].sni: ",
            "only allowed with a tls:// address",
        ),
        (
            "ca_file_missing",
            ":5:11: upstream[0].ca_file: ",
            "cannot open /nonexistent/handoff-test-ca.pem",
        ),
        (
            "unknown_expose",
            ":2:10: annotate.expose: ",
            "must be one of none, reason, full; got \"everything\"",
        ),
        (
            "unknown_log_format",
            ":2:10: log.format: ",
            "must be one of json, text",
        ),
        (
            "bad_debug_header",
            ":2:16: annotate.debug_header: ",
            "must be an HTTP header name",
        ),
        (
            "empty_debug_token",
            ":2:15: annotate.debug_token: ",
            "must not be empty",
        ),
        (
            "bad_proxy_name",
            ":2:14: annotate.proxy_name: ",
            "without '\"'",
        ),
        (
            "no_upstream",
            ": upstream: ",
            "at least one [[upstream]] is required",
        ),
        (
            "missing_address",
            ":1:1: upstream[0].address: ",
            "required key is missing",
        ),
        (
            "bad_name",
            ":2:8: upstream[0].name: ",
            "must be letters, digits, '_' or '-'",
        ),
        (
            "wrong_type",
            ":5:19: upstream[0].connect_timeout: ",
            "expected a duration string such as \"3s\", got integer 3",
        ),
        (
            "header_bytes_too_large",
            ":5:29: upstream[0].max_response_header_bytes: ",
            "must be between 1024 and 1048575",
        ),
        (
            "zero_nginx_buffer",
            ":5:22: upstream[0].nginx_buffer_bytes: ",
            "must be at least 1, got 0",
        ),
        (
            "zero_threads",
            ":2:11: server.threads: ",
            "must be at least 1, got 0",
        ),
        ("syntax_error", ":3:", "invalid TOML"),
    ];
    for (name, prefix, message) in cases {
        let problems = invalid(name);
        assert_eq!(problems.len(), 1, "{name}: {problems:#?}");
        let expected_start = format!("{name}.toml{prefix}");
        assert!(
            problems[0].starts_with(&expected_start),
            "{name}: {}",
            problems[0]
        );
        assert!(problems[0].contains(message), "{name}: {}", problems[0]);
    }

    // Every invalid fixture is in the table above.
    let listed: Vec<&str> = cases
        .iter()
        .map(|(name, ..)| *name)
        .chain(["many_problems"])
        .collect();
    for path in fixtures("invalid") {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        assert!(listed.contains(&stem), "{stem} has no expectation");
    }
}

/// Several problems of different kinds in one file are all reported, in file order.
#[test]
fn many_problems_are_reported_together() {
    let problems = invalid("many_problems");
    let keys: Vec<&str> = problems
        .iter()
        .map(|p| p.split(": ").nth(1).unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "server.threds",
            "server.grace_period",
            "annotate.expose",
            "annotate.colour",
            "upstream[0].connect_timeout",
            "upstream[0].fast",
            "upstream[1].name",
        ],
        "{problems:#?}"
    );
}
