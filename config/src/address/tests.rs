//! Address syntax: what parses, what it displays back as, and what is refused.

use super::*;

fn tcp(host: &str, port: u16) -> UpstreamAddress {
    UpstreamAddress::Tcp {
        host: host.to_owned(),
        port,
    }
}

#[test]
fn listen_forms() {
    assert_eq!(
        parse_listen("127.0.0.1:8080"),
        Ok(ListenAddress::Tcp("127.0.0.1:8080".parse().unwrap()))
    );
    assert_eq!(
        parse_listen("[::1]:8080"),
        Ok(ListenAddress::Tcp("[::1]:8080".parse().unwrap()))
    );
    assert_eq!(
        parse_listen("unix:/run/handoff.sock"),
        Ok(ListenAddress::Unix("/run/handoff.sock".into()))
    );
    for text in ["[::1]:8080", "0.0.0.0:80", "unix:/run/h.sock"] {
        assert_eq!(parse_listen(text).unwrap().to_string(), text);
    }
}

#[test]
fn listen_rejects_names_and_relative_paths() {
    for (text, expected) in [
        ("localhost:8080", "not a listen address"),
        ("8080", "not a listen address"),
        ("::1:8080", "not a listen address"),
        ("127.0.0.1:65536", "not a listen address"),
        ("unix:run/h.sock", "must be absolute"),
        ("", "not a listen address"),
    ] {
        let error = parse_listen(text).expect_err(text);
        assert!(error.contains(expected), "{text}: {error}");
    }
}

#[test]
fn upstream_forms() {
    assert_eq!(parse_upstream("127.0.0.1:3000"), Ok(tcp("127.0.0.1", 3000)));
    assert_eq!(parse_upstream("localhost:3000"), Ok(tcp("localhost", 3000)));
    assert_eq!(parse_upstream("[::1]:3000"), Ok(tcp("::1", 3000)));
    assert_eq!(
        parse_upstream("unix:/run/app.sock"),
        Ok(UpstreamAddress::Unix("/run/app.sock".into()))
    );
    assert_eq!(
        parse_upstream("tls://app.internal:8443"),
        Ok(UpstreamAddress::Tls {
            host: "app.internal".into(),
            port: 8443,
            sni: "app.internal".into(),
            ca_file: None,
            verify: true,
        })
    );
    for text in [
        "127.0.0.1:3000",
        "localhost:3000",
        "[::1]:3000",
        "unix:/run/app.sock",
        "tls://app.internal:8443",
        "tls://[::1]:8443",
    ] {
        assert_eq!(parse_upstream(text).unwrap().to_string(), text);
    }
}

#[test]
fn literal_addr_only_for_ip_hosts() {
    let addr = |text: &str| parse_upstream(text).unwrap().literal_addr();
    assert_eq!(
        addr("127.0.0.1:3000"),
        Some("127.0.0.1:3000".parse().unwrap())
    );
    assert_eq!(addr("[::1]:3000"), Some("[::1]:3000".parse().unwrap()));
    assert_eq!(
        addr("tls://10.0.0.1:443"),
        Some("10.0.0.1:443".parse().unwrap())
    );
    assert_eq!(addr("localhost:3000"), None);
    assert_eq!(addr("unix:/run/app.sock"), None);
}

#[test]
fn upstream_rejects_other_forms() {
    let long = format!("unix:/{}", "a".repeat(107));
    for (text, expected) in [
        ("http://x:80", "scheme \"http://\" is not supported"),
        ("3000", "no port"),
        ("localhost", "no port"),
        ("localhost:0", "not in 1..=65535"),
        ("localhost:65536", "not in 1..=65535"),
        ("localhost:http", "not in 1..=65535"),
        (":3000", "not a host name"),
        ("a b:3000", "not a host name"),
        ("::1:3000", "[ip]:port"),
        ("[::1]3000", "[ip]:port"),
        ("[nope]:3000", "not an IPv6 address"),
        ("unix:relative", "must be absolute"),
        ("tls://app.internal", "no port"),
        (long.as_str(), "longer than the 107"),
    ] {
        let error = parse_upstream(text).expect_err(text);
        assert!(error.contains(expected), "{text}: {error}");
    }
    // Every refusal of a malformed address lists the accepted forms.
    assert!(parse_upstream("3000")
        .unwrap_err()
        .contains("tls://host:port"));
}

#[test]
fn collisions() {
    let listen = |text: &str| parse_listen(text).unwrap();
    let collide = |a: &str, b: &str| listeners_collide(&listen(a), &listen(b));
    assert!(collide("127.0.0.1:8080", "127.0.0.1:8080"));
    assert!(collide("0.0.0.0:8080", "127.0.0.1:8080"));
    assert!(collide("[::]:8080", "127.0.0.1:8080"));
    assert!(collide("unix:/a.sock", "unix:/a.sock"));
    assert!(!collide("127.0.0.1:8080", "127.0.0.1:8081"));
    assert!(!collide("127.0.0.1:8080", "127.0.0.2:8080"));
    assert!(!collide("127.0.0.1:0", "127.0.0.1:0"));
    assert!(!collide("unix:/a.sock", "unix:/b.sock"));
}
