use std::path::PathBuf;

use handoff_config::{ListenAddress, UpstreamAddress};

use super::*;

fn upstream() -> UpstreamSettings {
    let mut u = UpstreamSettings::new(
        "php",
        ListenAddress::Unix(PathBuf::from("/run/handoff/php.sock")),
        UpstreamAddress::Unix(PathBuf::from("/run/php/php8.3-fpm.sock")),
    );
    u.connect_timeout = Duration::from_secs(1);
    u.header_timeout = Duration::from_secs(30);
    u.read_timeout = Duration::from_millis(30_500);
    u.write_timeout = Duration::from_secs(20);
    u.nginx_buffer_bytes = 6000;
    u
}

/// nginx's side follows handoff's: timeouts 5 s above the longest timer (rounded down to
/// whole seconds, still above it), the buffer as large as `nginx_buffer_bytes`, a unix
/// listener as nginx writes one.
#[test]
fn the_site_follows_the_upstream() {
    let site = Site::for_upstream(&upstream());
    assert_eq!(site.server, "unix:/run/handoff/php.sock");
    assert_eq!(
        (
            site.connect_timeout.as_str(),
            site.send_timeout.as_str(),
            site.read_timeout.as_str()
        ),
        ("35s", "35s", "35s")
    );
    assert_eq!(site.buffer_size, "6k");
    let mut small = upstream();
    small.nginx_buffer_bytes = 1000;
    assert_eq!(
        Site::for_upstream(&small).buffer_size,
        "4k",
        "nginx's page at least"
    );

    let location = site.location_block(0, false);
    assert_eq!(
        location,
        "location / {
    access_log /var/log/nginx/handoff.access.log handoff;

    proxy_pass http://handoff_php;
    proxy_http_version 1.1;
    proxy_set_header Connection \"\";

    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Request-Id $request_id;

    proxy_connect_timeout 35s;
    proxy_send_timeout 35s;
    proxy_read_timeout 35s;

    proxy_buffer_size 6k;

    client_max_body_size 100m;

    proxy_intercept_errors off;
}
"
    );
    assert_eq!(
        site.upstream_block(4, false),
        "    upstream handoff_php {\n        server unix:/run/handoff/php.sock;\n        keepalive 32;\n    }\n"
    );
    // The comments name this upstream's timers and buffer, and change no directive.
    let commented = site.location_block(0, true);
    let words = commented
        .split_whitespace()
        .filter(|w| *w != "#")
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        words.contains(
            "(connect_timeout 1s, header_timeout 30s, read_timeout 30s500ms, write_timeout 20s)"
        ),
        "{commented}"
    );
    assert!(words.contains("the same size (6000)"), "{commented}");
    let directives = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(directives(&commented), directives(&location));
}

/// An extra directive the template writes already takes its place (nginx refuses a second
/// `client_max_body_size` in one block); the others come last.
#[test]
fn extra_directives_replace_or_add() {
    let mut site = Site::for_upstream(&upstream());
    site.extra =
        "client_max_body_size 0;\n proxy_set_header X-Request-Id fixed; add_header X-Test 1;"
            .into();
    let location = site.location_block(0, true);
    assert_eq!(
        location.matches("client_max_body_size").count(),
        1,
        "{location}"
    );
    assert!(
        location.contains("    client_max_body_size 0;\n"),
        "{location}"
    );
    assert!(location.contains("    proxy_set_header X-Request-Id fixed;\n"));
    assert!(!location.contains("X-Request-Id $request_id"));
    assert!(location.contains("    proxy_set_header Host $host;\n"));
    assert!(location.ends_with("    proxy_intercept_errors off;\n\n    add_header X-Test 1;\n}\n"));
}

/// A nested block in the extra directives (a PHP location inside `location /`) is added
/// whole, its own `;` inside it.
#[test]
fn extra_blocks_are_added_whole() {
    let mut site = Site::for_upstream(&upstream());
    site.extra = "proxy_read_timeout 30s;\n  location ~ \\.php$ {\n      fastcgi_pass unix:/run/php.sock;\n  }\n"
        .into();
    let location = site.location_block(0, false);
    assert!(
        location.contains("    proxy_read_timeout 30s;\n"),
        "{location}"
    );
    assert!(
        location.ends_with(
            "    location ~ \\.php$ {\n        fastcgi_pass unix:/run/php.sock;\n    }\n}\n"
        ),
        "{location}"
    );
}

/// The snippet and the site file for a configuration with two upstreams: one upstream block
/// and one location each, comments on the first only, no line wider than the files are read.
#[test]
fn outputs_hold_every_upstream() {
    let settings = handoff_config::from_str(
        "[[upstream]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\naddress = \"127.0.0.1:3000\"\n\
         [[upstream]]\nname = \"api\"\nlisten = \"unix:/run/handoff/api.sock\"\naddress = \"127.0.0.1:3001\"\n",
        "test",
    )
    .unwrap();
    for text in [snippet(&settings), site_file(&settings)] {
        assert_eq!(text.matches("upstream handoff_").count(), 2, "{text}");
        assert_eq!(text.matches("location / {").count(), 2, "{text}");
        assert!(text.contains("proxy_pass http://handoff_api;"));
        assert!(text.contains("server unix:/run/handoff/api.sock;"));
        assert_eq!(
            text.matches("# LONGER than handoff's own timeouts").count(),
            1
        );
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    }
    let site = site_file(&settings);
    assert!(
        site.contains("server_name web.example.com;")
            && site.contains("server_name api.example.com;")
    );
    assert!(site.contains("    # As for \"web\" above.\n    location / {"));
    assert!(snippet(&settings).contains(LOG_FORMAT));
}
