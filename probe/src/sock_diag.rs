//! The TCP sockets in LISTEN state, asked of the kernel over netlink (`sock_diag(7)`), as
//! `ss -ltn` does.
//!
//! `/proc/net/tcp` would say the same, but the kernel formats a line for every TCP socket of
//! the namespace to produce it. Next to a busy nginx that is tens of thousands of TIME_WAIT
//! sockets and tens of milliseconds of CPU, on the request's thread, during a refused storm.
//! A `sock_diag` dump that asks for LISTEN only walks the listening table: microseconds.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// From <linux/netlink.h>, <linux/sock_diag.h> and <linux/inet_diag.h>.
const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct inet_diag_sockid`: ports and addresses in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u8; 16],
    dst: [u8; 16],
    interface: u32,
    cookie: [u32; 2],
}

/// `struct inet_diag_req_v2`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

/// `struct inet_diag_msg`, up to the part read here.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Request {
    header: NlMsgHdr,
    body: InetDiagReqV2,
}

/// Every local address a TCP socket listens on (IPv4 and IPv6).
pub(crate) fn tcp_listeners() -> io::Result<Vec<SocketAddr>> {
    let socket = netlink_socket()?;
    let mut out = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        dump(&socket, family, &mut out)?;
    }
    Ok(out)
}

/// One dump: each ends with `NLMSG_DONE`, so the socket serves the next one.
fn dump(socket: &OwnedFd, family: libc::c_int, out: &mut Vec<SocketAddr>) -> io::Result<()> {
    let request = Request {
        header: NlMsgHdr {
            len: size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST | NLM_F_DUMP,
            ..NlMsgHdr::default()
        },
        body: InetDiagReqV2 {
            family: family as u8,
            protocol: libc::IPPROTO_TCP as u8,
            states: 1 << TCP_LISTEN,
            ..InetDiagReqV2::default()
        },
    };
    #[allow(unsafe_code)]
    // SAFETY: `request` is a plain `repr(C)` value that outlives the call.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            (&raw const request).cast(),
            size_of::<Request>(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 32 << 10];
    loop {
        #[allow(unsafe_code)]
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rest = &buf[..n as usize];
        if rest.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        while rest.len() >= size_of::<NlMsgHdr>() {
            let header: NlMsgHdr = read(rest);
            let len = header.len as usize;
            if len < size_of::<NlMsgHdr>() || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated netlink message",
                ));
            }
            match header.kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno: i32 = read(&rest[size_of::<NlMsgHdr>()..len]);
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                SOCK_DIAG_BY_FAMILY => {
                    let msg: InetDiagMsg = read(&rest[size_of::<NlMsgHdr>()..len]);
                    out.extend(local_address(&msg));
                }
                _ => {}
            }
            // Messages are 4-byte aligned.
            rest = &rest[((len + 3) & !3).min(rest.len())..];
        }
    }
}

fn netlink_socket() -> io::Result<OwnedFd> {
    #[allow(unsafe_code)]
    // SAFETY: plain syscall; a valid descriptor is owned by the `OwnedFd` from here on.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// A `repr(C)` value of plain integers from the start of `bytes`, zero-filled if short.
fn read<T: Copy + Default>(bytes: &[u8]) -> T {
    let mut value = T::default();
    let n = bytes.len().min(size_of::<T>());
    #[allow(unsafe_code)]
    // SAFETY: `T` is made of integers only (every bit pattern is valid); at most
    // `size_of::<T>()` bytes are copied into it.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut value).cast::<u8>(), n);
    }
    value
}

fn local_address(msg: &InetDiagMsg) -> Option<SocketAddr> {
    let port = u16::from_be_bytes(msg.id.sport);
    let ip = match msg.family as libc::c_int {
        libc::AF_INET => {
            let [a, b, c, d, ..] = msg.id.src;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        }
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(msg.id.src)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_found_and_connections_are_not() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        // An established pair on v4's port must not count as a listener elsewhere.
        let _client = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let _server = v4.accept().unwrap();
        let listeners = tcp_listeners().unwrap();
        let on_v4_port: Vec<_> = listeners
            .iter()
            .filter(|a| a.port() == v4.local_addr().unwrap().port())
            .collect();
        assert_eq!(on_v4_port, [&v4.local_addr().unwrap()]);
        if let Some(v6) = v6 {
            assert!(
                listeners.contains(&v6.local_addr().unwrap()),
                "{listeners:?}"
            );
        }
    }
}
