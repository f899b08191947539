//! The listening sockets of this network namespace, asked of the kernel over netlink
//! (`sock_diag(7)`), as `ss -ltn` and `ss -lxn` do.
//!
//! `/proc/net/tcp` would say the same for TCP, but the kernel formats a line for every TCP
//! socket of the namespace to produce it. Next to a busy nginx that is tens of thousands of
//! TIME_WAIT sockets and tens of milliseconds of CPU during a refused storm. A `sock_diag`
//! dump that asks for LISTEN only walks the listening table: microseconds. For unix sockets
//! the dump also says what `/proc/net/unix` cannot: the inode of the socket file a listener
//! is bound to (so a moved or replaced file is told apart from the one that listens), and
//! its accept queue against its backlog (`UDIAG_SHOW_RQLEN`).
//!
//! No root is needed for the namespace's own sockets. Requests are built and replies read
//! as bytes, field by field: the layouts are those of `<linux/netlink.h>`,
//! `<linux/inet_diag.h>` and `<linux/unix_diag.h>`, in the host's byte order except where
//! the kernel says network order.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDR: usize = 16;
/// `TCP_LISTEN` in the kernel's state numbering; unix sockets use the same value.
const LISTEN: u32 = 10;
const AF_UNIX: u8 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_VFS: u32 = 0x2;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UDIAG_SHOW_UID: u32 = 0x40;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_UID: u16 = 7;

/// One TCP socket in LISTEN state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpListener {
    /// The local address it is bound to (`0.0.0.0` / `[::]` for every address).
    pub addr: SocketAddr,
    /// The socket's inode (`socket:[INODE]` in `/proc/PID/fd`).
    pub inode: u64,
    /// The uid of the process that created it.
    pub uid: u32,
    /// Connections waiting in the accept queue.
    pub queued: u32,
    /// The accept queue's length (the `listen()` backlog, capped by `somaxconn`).
    pub backlog: u32,
}

/// One unix stream or seqpacket socket in LISTEN state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixListener {
    /// The path it was bound to, as given to `bind()`; `None` for abstract and unnamed ones.
    pub path: Option<PathBuf>,
    /// The socket's own inode (`socket:[INODE]` in `/proc/PID/fd`).
    pub inode: u64,
    /// The inode and device (major, minor) of the socket file it is bound to: the file
    /// that listens, wherever it has been moved since.
    pub file: Option<(u64, (u32, u32))>,
    /// The uid of the process that created it.
    pub uid: Option<u32>,
    /// Connections waiting in the accept queue.
    pub queued: u32,
    /// The accept queue's length (the `listen()` backlog).
    pub backlog: u32,
}

/// Every TCP listener of the namespace (IPv4 and IPv6).
pub fn tcp_listeners() -> io::Result<Vec<TcpListener>> {
    let socket = netlink_socket()?;
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        dump(&socket, &inet_request(family), |msg| {
            out.extend(parse_inet(msg));
        })?;
    }
    Ok(out)
}

/// Every unix listener of the namespace, with its path, file and accept queue.
pub fn unix_listeners() -> io::Result<Vec<UnixListener>> {
    let socket = netlink_socket()?;
    let mut out = Vec::new();
    dump(&socket, &unix_request(), |msg| out.extend(parse_unix(msg)))?;
    Ok(out)
}

fn netlink_socket() -> io::Result<OwnedFd> {
    socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(io::Error::from)
}

/// `nlmsghdr` followed by `body`, for a dump request.
fn request(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NLMSG_HDR + body.len());
    out.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out.extend_from_slice(&[0; 8]); // sequence number and port id
    out.extend_from_slice(body);
    out
}

/// `inet_diag_req_v2` for the LISTEN sockets of TCP over `family`.
fn inet_request(family: u8) -> Vec<u8> {
    let mut body = vec![family, IPPROTO_TCP, 0, 0];
    body.extend_from_slice(&(1u32 << LISTEN).to_ne_bytes());
    body.extend_from_slice(&[0; 48]); // inet_diag_sockid: any
    request(&body)
}

/// `unix_diag_req` for the LISTEN unix sockets, with name, file, queue and uid.
fn unix_request() -> Vec<u8> {
    let mut body = vec![AF_UNIX, 0, 0, 0];
    body.extend_from_slice(&(1u32 << LISTEN).to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes()); // any inode
    let show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID;
    body.extend_from_slice(&show.to_ne_bytes());
    body.extend_from_slice(&[0; 8]); // cookie
    request(&body)
}

/// Sends one dump request and hands each reply message's payload to `each`. Every dump
/// ends with `NLMSG_DONE`, so the socket serves the next one.
fn dump(socket: &OwnedFd, request: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
    send(socket.as_raw_fd(), request, MsgFlags::empty())?;
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let n = recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        let mut rest = &buf[..n];
        if rest.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        while rest.len() >= NLMSG_HDR {
            let len = u32_at(rest, 0) as usize;
            if len < NLMSG_HDR || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated netlink message",
                ));
            }
            let payload = &rest[NLMSG_HDR..len];
            match u16_at(rest, 4) {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno = u32_at(payload, 0) as i32;
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                SOCK_DIAG_BY_FAMILY => each(payload),
                _ => {}
            }
            // Messages are 4-byte aligned.
            rest = &rest[align4(len).min(rest.len())..];
        }
    }
}

/// `inet_diag_msg`: family, state, timer, retrans, then `inet_diag_sockid` (ports and
/// addresses in network order), expires, rqueue, wqueue, uid, inode.
fn parse_inet(msg: &[u8]) -> Option<TcpListener> {
    if msg.len() < 72 {
        return None;
    }
    let port = u16::from_be_bytes([msg[4], msg[5]]);
    let src = &msg[8..24];
    let ip = match msg[0] {
        AF_INET => IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(src).ok()?)),
        _ => return None,
    };
    Some(TcpListener {
        addr: SocketAddr::new(ip, port),
        queued: u32_at(msg, 56),
        backlog: u32_at(msg, 60),
        uid: u32_at(msg, 64),
        inode: u64::from(u32_at(msg, 68)),
    })
}

/// `unix_diag_msg` (family, type, state, pad, inode, cookie) and its attributes.
fn parse_unix(msg: &[u8]) -> Option<UnixListener> {
    if msg.len() < 16 {
        return None;
    }
    let mut listener = UnixListener {
        path: None,
        inode: u64::from(u32_at(msg, 4)),
        file: None,
        uid: None,
        queued: 0,
        backlog: 0,
    };
    let mut rest = &msg[16..];
    while rest.len() >= 4 {
        let len = usize::from(u16_at(rest, 0));
        if len < 4 || len > rest.len() {
            break;
        }
        let data = &rest[4..len];
        match u16_at(rest, 2) {
            UNIX_DIAG_NAME if data.first().is_some_and(|&b| b != 0) => {
                use std::os::unix::ffi::OsStrExt;
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                listener.path = Some(std::ffi::OsStr::from_bytes(&data[..end]).into());
            }
            UNIX_DIAG_VFS if data.len() >= 8 => {
                // The kernel's own dev_t encoding: 12 bits of major above 20 of minor.
                let dev = u32_at(data, 4);
                listener.file = Some((u64::from(u32_at(data, 0)), (dev >> 20, dev & 0xf_ffff)));
            }
            UNIX_DIAG_RQLEN if data.len() >= 8 => {
                listener.queued = u32_at(data, 0);
                listener.backlog = u32_at(data, 4);
            }
            UNIX_DIAG_UID if data.len() >= 4 => listener.uid = Some(u32_at(data, 0)),
            _ => {}
        }
        rest = &rest[align4(len).min(rest.len())..];
    }
    Some(listener)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The native-endian u32 at `at`, zero when the message is short.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    bytes
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_ne_bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn tcp_listeners_are_found_and_connections_are_not() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        // An established pair on v4's port must not count as a listener elsewhere.
        let _client = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let listeners = tcp_listeners().unwrap();
        let on_v4_port: Vec<_> = listeners
            .iter()
            .filter(|l| l.addr.port() == v4.local_addr().unwrap().port())
            .collect();
        assert_eq!(on_v4_port.len(), 1, "{listeners:?}");
        let me = on_v4_port[0];
        assert_eq!(me.addr, v4.local_addr().unwrap());
        assert_eq!(me.queued, 1, "the unaccepted connection waits in the queue");
        assert!(me.backlog >= 1);
        assert_eq!(me.uid, std::fs::metadata("/proc/self").unwrap().uid());
        let fd = std::os::fd::AsRawFd::as_raw_fd(&v4);
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert_eq!(link.to_str().unwrap(), format!("socket:[{}]", me.inode));
        if let Some(v6) = v6 {
            assert!(
                listeners.iter().any(|l| l.addr == v6.local_addr().unwrap()),
                "{listeners:?}"
            );
        }
    }

    #[test]
    fn unix_listeners_say_their_file_and_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let _waiting = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let found = unix_listeners().unwrap();
        let me = found
            .iter()
            .find(|l| l.path.as_deref() == Some(path.as_path()))
            .unwrap_or_else(|| panic!("{path:?} not in {found:?}"));
        let (ino, _) = me.file.expect("the socket file's inode");
        assert_eq!(ino, meta.ino());
        assert_eq!(me.queued, 1);
        assert!(me.backlog >= 1);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert_eq!(link.to_str().unwrap(), format!("socket:[{}]", me.inode));
    }
}
