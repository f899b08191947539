//! A private network namespace for the failures loopback cannot produce: no route to the
//! upstream, no local port left. Inside it only `lo` exists (brought up here), so no packet
//! can leave the machine, and its routes and port range are its own: changing them touches
//! nothing else. Needs CAP_SYS_ADMIN (the tests run as root).

use std::io;
use std::net::{SocketAddr, TcpStream};

/// Runs `f` on a new thread that first moves into a network namespace of its own with `lo`
/// up. Threads `f` starts (a tokio runtime, an in-process handoff) are created inside it.
pub fn in_own_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    std::thread::spawn(move || {
        unshare_net()?;
        loopback_up()?;
        Ok(f())
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs the future `make` returns on a two-thread tokio runtime created inside a network
/// namespace of its own (see [`in_own_netns`]).
pub fn block_on_in_own_netns<F>(make: impl FnOnce() -> F + Send + 'static) -> io::Result<F::Output>
where
    F: std::future::Future,
    F::Output: Send + 'static,
{
    in_own_netns(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(make())
    })
}

/// Runs `run(address)` on a runtime in a network namespace of its own (see
/// [`block_on_in_own_netns`]), with `address`, or, when `None`, the address of a listener
/// bound in the namespace and kept open meanwhile.
pub fn run_against_in_own_netns<T, F>(
    address: Option<&'static str>,
    run: impl FnOnce(String) -> F + Send + 'static,
) -> T
where
    F: std::future::Future<Output = T>,
    T: Send + 'static,
{
    block_on_in_own_netns(move || async move {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind in the namespace");
        let address = address.map_or_else(
            || listener.local_addr().expect("a bound address").to_string(),
            str::to_owned,
        );
        run(address).await
    })
    .expect("a network namespace of its own (the tests run as root)")
}

/// Sets `net.ipv4.ip_local_port_range` of the calling thread's namespace.
pub fn set_local_port_range(low: u16, high: u16) -> io::Result<()> {
    std::fs::write(
        "/proc/sys/net/ipv4/ip_local_port_range",
        format!("{low} {high}"),
    )
}

/// Narrows the local port range to two ports and connects to `to` until no local port is
/// left for it (EADDRNOTAVAIL). The connections returned hold the ports; drop them to free
/// them. Call it after everything that binds port 0 has done so.
pub fn exhaust_local_ports(to: SocketAddr) -> io::Result<Vec<TcpStream>> {
    set_local_port_range(40000, 40001)?;
    let mut held = Vec::new();
    loop {
        match TcpStream::connect(to) {
            Ok(stream) => held.push(stream),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => return Ok(held),
            Err(e) => return Err(e),
        }
        if held.len() > 16 {
            return Err(io::Error::other("the port range did not run out"));
        }
    }
}

#[allow(unsafe_code)]
fn unshare_net() -> io::Result<()> {
    // SAFETY: unshare(2) takes flags only; CLONE_NEWNET moves the calling thread alone.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ip link set lo up`, with the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls.
#[allow(unsafe_code)]
fn loopback_up() -> io::Result<()> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    // SAFETY: an all-zero ifreq is valid; "lo" and its NUL fit in IFNAMSIZ; both ioctls
    // read and write only that struct, which outlives them.
    unsafe {
        let mut request: libc::ifreq = std::mem::zeroed();
        for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) != 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
