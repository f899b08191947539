use std::os::unix::net::{UnixListener, UnixStream};

use super::*;

fn found(reason: Reason, next_hop: &str) -> Vec<String> {
    let mut out = Vec::new();
    find(
        &Question {
            reason,
            next_hop: next_hop.to_owned(),
            errno: None,
            reused: false,
        },
        &mut out,
    );
    out
}

#[test]
fn a_refused_port_that_listens_on_another_address_says_where() {
    let elsewhere = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = elsewhere.local_addr().unwrap().port();
    let said = found(Reason::ConnectRefused, &format!("127.0.0.1:{port}"));
    assert_eq!(said[0], format!("port {port} listens on 127.0.0.2 instead"));
    drop(elsewhere);
    let said = found(Reason::ConnectRefused, &format!("127.0.0.1:{port}"));
    assert_eq!(
        said[0],
        format!("nothing listens on port {port} on any local address")
    );
}

#[test]
fn near_ports_are_within_ten_or_one_digit_apart() {
    assert!(is_near(3000, 3001) && is_near(8080, 8000) && is_near(9000, 9009));
    assert!(!is_near(3000, 8080) && !is_near(80, 8080) && !is_near(3000, 3100 + 11));
    let l = |port: u16, inode: u64| TcpListener {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        inode,
        uid: 0,
        queued: 0,
        backlog: 128,
    };
    let all = [l(8000, 1), l(8081, 2), l(8080, 3), l(22, 4), l(8082, 5)];
    let near: Vec<u16> = near_listeners(8080, &all, &[5])
        .iter()
        .map(|l| l.addr.port())
        .collect();
    assert_eq!(
        near,
        [8081, 8000],
        "closest first, own listener (inode 5) left out"
    );
}

/// The app listening one port off, in another process: named with its command and pid.
#[test]
fn the_refused_ports_neighbour_is_named_with_its_process() {
    use std::io::BufRead;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\n\
             print(s.getsockname()[1],flush=True)\ntime.sleep(60)",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (on every machine scripts/test runs on) holds the neighbour");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let neighbour: u16 = line.trim().parse().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap();
    let said = found(
        Reason::ConnectRefused,
        &format!("127.0.0.1:{}", neighbour - 1),
    );
    let _ = child.kill();
    let _ = child.wait();
    let near = said
        .iter()
        .find(|f| f.starts_with("listening on nearby ports"))
        .unwrap_or_else(|| panic!("{said:?}"));
    assert!(
        near.contains(&format!(
            "127.0.0.1:{neighbour} ({}, pid {})",
            comm.trim(),
            child.id()
        )),
        "{near}"
    );
}

#[test]
fn a_regular_file_at_the_socket_path_is_not_a_socket_whatever_the_errno() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    std::fs::write(&path, "").unwrap();
    for reason in [Reason::ConnectRefused, Reason::SocketPermissionDenied] {
        let said = found(reason, &format!("unix:{}", path.display()));
        assert!(
            said[0].contains("is a regular file, not a socket"),
            "{reason:?}: {said:?}"
        );
        assert!(said[0].contains("chmod will not help"), "{said:?}");
    }
}

#[test]
fn a_stale_socket_is_told_from_one_that_listens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let hop = format!("unix:{}", path.display());
    assert_eq!(
        found(Reason::ConnectRefused, &hop),
        ["the socket listens again now: the app was restarting"]
    );
    drop(listener); // the file stays behind
    assert!(found(Reason::ConnectRefused, &hop)[0].contains("exists but nothing listens"));
}

#[test]
fn missing_socket_lists_the_sockets_that_exist_and_who_serves_them() {
    let dir = tempfile::tempdir().unwrap();
    let _l = UnixListener::bind(dir.path().join("php8.2-fpm.sock")).unwrap();
    let said = found(
        Reason::SocketNotFound,
        &format!("unix:{}", dir.path().join("php8.3-fpm.sock").display()),
    );
    assert_eq!(
        said[0],
        format!(
            "sockets that do exist in {}: php8.2-fpm.sock",
            dir.path().display()
        )
    );
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(
        said[1],
        format!(
            "php8.2-fpm.sock listens, served by {} (pid {})",
            me.trim(),
            std::process::id()
        )
    );
    let gone = found(
        Reason::SocketNotFound,
        &format!("unix:{}", dir.path().join("run/php/x.sock").display()),
    );
    assert!(
        gone[0].starts_with(&format!(
            "directory {} does not exist",
            dir.path().join("run").display()
        )),
        "{gone:?}"
    );
}

#[test]
fn a_full_backlog_says_how_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let _l = UnixListener::bind(&path).unwrap(); // std's backlog: 128
    let _waiting: Vec<UnixStream> = (0..3)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let said = found(
        Reason::SocketBacklogFull,
        &format!("unix:{}", path.display()),
    );
    assert!(
        said[0].starts_with("the accept queue holds 3 of "),
        "{said:?}"
    );
}

#[test]
fn the_process_serving_a_unix_socket_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let _l = UnixListener::bind(&path).unwrap();
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(
        found(
            Reason::ResetBeforeResponse,
            &format!("unix:{}", path.display())
        ),
        [format!(
            "the socket is served by {} (pid {})",
            me.trim(),
            std::process::id()
        )]
    );
    let php = dir.path().join("php8.2-fpm.sock");
    assert!(found(
        Reason::ClosedBeforeResponse,
        &format!("unix:{}", php.display())
    )[0]
    .contains("FastCGI"));
}

#[test]
fn out_of_descriptors_names_the_count_and_the_limit() {
    let mut out = Vec::new();
    let q = Question {
        reason: Reason::ProxyInternalError,
        next_hop: "127.0.0.1:3000".into(),
        errno: Some(libc::EMFILE),
        reused: false,
    };
    assert!(q.wants_probe());
    find(&q, &mut out);
    let usage = fd_usage(Path::new("/proc/self"));
    assert!(out[0].starts_with("handoff has "), "{out:?}");
    assert!(
        out[0].contains(&format!(
            "its limit (RLIMIT_NOFILE) is {}",
            usage.soft.unwrap()
        )),
        "{out:?}"
    );
}
