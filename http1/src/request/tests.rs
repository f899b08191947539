use super::*;

fn parse(bytes: &[u8]) -> Result<RequestHead, RequestError> {
    let mut head = RequestHead::default();
    match head.parse(bytes, &Limits::default())? {
        Parsed::Complete => Ok(head),
        Parsed::Partial => panic!("partial: {:?}", String::from_utf8_lossy(bytes)),
    }
}

fn refused(bytes: &[u8]) -> RequestError {
    parse(bytes).expect_err(&String::from_utf8_lossy(bytes))
}

#[test]
fn a_plain_get() {
    let buf = b"\r\nGET /a?b=c HTTP/1.1\r\nHost: app\r\nX-Request-Id: abc\r\n\r\nGET /next";
    let head = parse(buf).unwrap();
    assert_eq!(head.method.of(buf), b"GET");
    assert_eq!(head.kind, Method::Get);
    assert_eq!(head.target.of(buf), b"/a?b=c");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.body, BodyLength::None);
    assert_eq!(
        &buf[head.len..],
        b"GET /next",
        "pipelined bytes stay in the buffer"
    );
    assert_eq!(head.fields[head.request_id.unwrap()].value.of(buf), b"abc");
    assert!(head.keep_alive());
}

#[test]
fn an_incomplete_head_asks_for_more_until_the_limit() {
    let mut head = RequestHead::default();
    let limits = Limits { head_bytes: 64 };
    assert_eq!(
        head.parse(b"GET / HTTP/1.1\r\nHost: a\r\n", &limits),
        Ok(Parsed::Partial)
    );
    assert_eq!(head.parse(b"GET / HT", &limits), Ok(Parsed::Partial));
    let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(70));
    assert_eq!(
        head.parse(long_line.as_bytes(), &limits),
        Err(RequestError::LineTooLong)
    );
    let long_fields = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "b".repeat(60));
    assert_eq!(
        head.parse(long_fields.as_bytes(), &limits),
        Err(RequestError::TooLarge)
    );
    let complete_but_large = format!("{long_fields}\r\n\r\n");
    assert_eq!(
        head.parse(complete_but_large.as_bytes(), &limits),
        Err(RequestError::TooLarge)
    );
    assert_eq!(RequestError::TooLarge.status(), 431);
    assert_eq!(RequestError::LineTooLong.status(), 414);
}

#[test]
fn too_many_fields_is_431() {
    let mut text = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..MAX_FIELDS {
        text.push_str(&format!("X-{i}: v\r\n"));
    }
    text.push_str("\r\n");
    assert_eq!(refused(text.as_bytes()), RequestError::TooManyFields);
}

#[test]
fn targets_nginx_forwards_are_accepted() {
    for target in [
        &b"/a<b>c"[..],
        b"/q?x=\"y\"&z=<>",
        b"/`tick`",
        b"/{}|^",
        b"/caf\xc3\xa9",
        b"/\xff\xfe",
        b"http://example.com/abs",
        b"*",
    ] {
        let method: &[u8] = if target == b"*" { b"OPTIONS" } else { b"GET" };
        let buf = [method, b" ", target, b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
        let head = parse(&buf).unwrap();
        assert_eq!(head.target.of(&buf), target);
    }
}

#[test]
fn request_lines_that_could_split_are_refused() {
    for line in [
        &b"GET /a b HTTP/1.1"[..],
        b"GET  /a HTTP/1.1",
        b"GET /a\x00 HTTP/1.1",
        b"GET /a\x7f HTTP/1.1",
        b"GET /a\tb HTTP/1.1",
        b"GET /a",
        b"GET",
        b"G(T / HTTP/1.1",
        b"GET a HTTP/1.1",
        b"GET * HTTP/1.1",
        b"GET / HTTP/1.1 extra",
        b"GET / http/1.1",
        b"\x16\x03\x01\x02\x00garbage",
        b"HELLO THERE",
    ] {
        let buf = [line, b"\r\nHost: a\r\n\r\n"].concat();
        assert_eq!(
            refused(&buf),
            RequestError::BadRequestLine,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn versions() {
    assert_eq!(
        refused(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        RequestError::Version
    );
    assert_eq!(RequestError::Version.status(), 505);
    let later = parse(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(later.version, Version::Http11);
    let old = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(old.version, Version::Http10);
    assert!(!old.keep_alive(), "HTTP/1.0 closes unless asked");
    let kept = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    assert!(kept.keep_alive());
}

#[test]
fn host_is_required_once_and_sane() {
    assert_eq!(refused(b"GET / HTTP/1.1\r\n\r\n"), RequestError::NoHost);
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        RequestError::DuplicateHost
    );
    for host in ["", "a/b", "a\\b", "a..b"] {
        let text = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(refused(text.as_bytes()), RequestError::BadHost, "{host:?}");
    }
    parse(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").unwrap();
}

#[test]
fn framing_is_unambiguous_or_refused() {
    let body = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").unwrap();
    assert_eq!(body.body, BodyLength::Length(12));
    let empty = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(empty.body, BodyLength::Length(0));
    assert!(empty.body.is_empty());
    let chunked =
        parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
    assert_eq!(chunked.body, BodyLength::Chunked);
    let cases: &[(&[u8], RequestError)] = &[
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", RequestError::LengthAndChunked),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n", RequestError::DuplicateContentLength),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 4\r\n\r\n", RequestError::DuplicateContentLength),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\n", RequestError::BadContentLength),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n", RequestError::BadContentLength),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", RequestError::UnsupportedCoding),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", RequestError::UnsupportedCoding),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", RequestError::UnsupportedCoding),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", RequestError::ChunkedHttp10),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            refused(bytes),
            *want,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert_eq!(RequestError::UnsupportedCoding.status(), 501);
    assert_eq!(RequestError::LengthAndChunked.status(), 400);
}

#[test]
fn malformed_fields_are_refused() {
    for bytes in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Space : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: a\r\n\r\n",
    ] {
        assert!(
            matches!(refused(bytes), RequestError::BadField(_)),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn end_to_end_fields_leave_hop_by_hop_and_named_ones_behind() {
    let buf: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nExpect: 100-continue\r\nContent-Length: 3\r\nX-Kept: yes\r\nProxy-Connection: close\r\n\r\n";
    let head = parse(buf).unwrap();
    assert!(head.expect_continue);
    let names: Vec<&[u8]> = head.end_to_end(buf).map(|f| f.name.of(buf)).collect();
    assert_eq!(names, vec![&b"Host"[..], b"X-Kept"]);
}

#[test]
fn upgrades_need_both_fields() {
    let ws =
        parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .unwrap();
    assert!(ws.upgrade);
    let half = parse(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(!half.upgrade);
    let old =
        parse(b"GET / HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(!old.upgrade, "HTTP/1.0 has no upgrades");
}

#[test]
fn a_client_that_asks_for_a_close_gets_one() {
    let close = parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    assert!(!close.keep_alive());
}
