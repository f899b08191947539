use super::*;

fn model(text: &str) -> (tempfile::TempDir, Nginx) {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("nginx.conf");
    std::fs::write(&main, text).unwrap();
    std::fs::write(
        dir.path().join("hosts"),
        "127.0.0.1 localhost\n10.0.0.5 app.internal # the app\n",
    )
    .unwrap();
    let nginx = load(&main, &dir.path().join("hosts"));
    (dir, nginx)
}

/// Each location's target with the timers, buffer and error pages in force there: the
/// location's own, else the server's, else http's, else nginx's defaults.
#[test]
fn settings_are_inherited_from_the_nearest_level() {
    let (_dir, nginx) = model(
        "user www-data adm;\nevents { worker_connections 1024; }\n\
         http {\n  proxy_read_timeout 30s;\n  error_page 502 /50x.html;\n  error_log /var/log/nginx/error.log;\n\
         upstream handoff { server 127.0.0.1:8080; server unix:/run/handoff.sock; }\n\
         server {\n    server_name shop;\n    proxy_buffer_size 8k;\n\
             location / { proxy_pass http://handoff; proxy_intercept_errors on; }\n\
             location /api { proxy_read_timeout 2m; error_page 404 /404.html; proxy_pass http://localhost:3000/v1; }\n\
             location ~ \\.php$ { fastcgi_pass unix:/run/php/php8.2-fpm.sock; }\n\
             location /dyn { proxy_pass http://$backend; }\n\
             location /int { proxy_pass https://app.internal; }\n  }\n}\n",
    );
    assert_eq!(
        nginx.user.as_ref().map(|u| (u.0.as_str(), u.1.as_deref())),
        Some(("www-data", Some("adm")))
    );
    assert_eq!(nginx.worker_connections.as_ref().map(|w| w.0), Some(1024));
    assert_eq!(nginx.error_logs.len(), 1);
    let t = &nginx.targets;
    assert_eq!(t.len(), 5);

    assert_eq!(t[0].place, "server shop, location /");
    assert_eq!(
        t[0].endpoints
            .iter()
            .map(Endpoint::text)
            .collect::<Vec<_>>(),
        ["127.0.0.1:8080", "unix:/run/handoff.sock"]
    );
    assert_eq!(
        t[0].endpoints[0].source().line,
        7,
        "the upstream's server line"
    );
    assert_eq!(t[0].read_timeout.value, Duration::from_secs(30));
    assert_eq!(t[0].read_timeout.source.as_ref().unwrap().line, 4);
    assert_eq!(
        t[0].send_timeout,
        Setting {
            value: DEFAULT_TIMEOUT,
            source: None
        }
    );
    assert_eq!(t[0].buffer_size.value, 8192);
    assert!(t[0].intercept_errors.value);
    assert_eq!(t[0].error_pages[0].0, [502]);

    assert_eq!(t[1].read_timeout.value, Duration::from_secs(120));
    assert_eq!(
        t[1].error_pages[0].0,
        [404],
        "a lower error_page replaces the inherited ones"
    );
    match &t[1].endpoints[0] {
        Endpoint::Tcp { addrs, .. } => assert_eq!(addrs.len(), 2, "localhost is both loopbacks"),
        other => panic!("{other:?}"),
    }
    assert_eq!(t[2].directive, "fastcgi_pass");
    assert_eq!(
        t[2].buffer_size.value, DEFAULT_BUFFER_SIZE,
        "fastcgi has its own buffer size"
    );
    assert!(matches!(t[3].endpoints[0], Endpoint::Unresolved { .. }));
    match &t[4].endpoints[0] {
        Endpoint::Tcp { addrs, .. } => {
            assert_eq!(addrs, &["10.0.0.5:443".parse::<SocketAddr>().unwrap()])
        }
        other => panic!("{other:?}"),
    }
}
