//! Parsing listen and upstream addresses from their configuration strings.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::defaults::MAX_UNIX_PATH_BYTES;
use crate::settings::{ListenAddress, UpstreamAddress};

const LISTEN_FORMS: &str =
    "expected an IP address and port (\"127.0.0.1:8080\", \"[::1]:8080\") or \"unix:/absolute/path\"";
const UPSTREAM_FORMS: &str = "expected \"host:port\" (\"127.0.0.1:3000\", \"localhost:3000\", \"[::1]:3000\"), \"unix:/absolute/path\" or \"tls://host:port\"";

/// Parses a listen address: `ip:port`, `[ipv6]:port` or `unix:/absolute/path`.
///
/// Host names are refused: a listener binds one address, and resolving a name at start-up
/// could bind something unexpected. Port 0 is accepted (the kernel picks one).
pub(crate) fn parse_listen(text: &str) -> Result<ListenAddress, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        return unix_path(path).map(ListenAddress::Unix);
    }
    text.parse::<SocketAddr>()
        .map(ListenAddress::Tcp)
        .map_err(|_| format!("{text:?} is not a listen address; {LISTEN_FORMS}"))
}

/// Parses an upstream address: `host:port`, `unix:/absolute/path` or `tls://host:port`.
///
/// A `tls://` address comes back with its defaults (`sni` = host, no `ca_file`,
/// `verify` on); the `[[upstream]]` keys override them.
pub(crate) fn parse_upstream(text: &str) -> Result<UpstreamAddress, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        return unix_path(path).map(UpstreamAddress::Unix);
    }
    if let Some(rest) = text.strip_prefix("tls://") {
        let (host, port) = host_port(rest).map_err(|why| format!("{text:?}: {why}"))?;
        return Ok(UpstreamAddress::Tls {
            sni: host.clone(),
            host,
            port,
            ca_file: None,
            verify: true,
        });
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "{text:?}: scheme \"{scheme}://\" is not supported; {UPSTREAM_FORMS}"
        ));
    }
    let (host, port) =
        host_port(text).map_err(|why| format!("{text:?}: {why}; {UPSTREAM_FORMS}"))?;
    Ok(UpstreamAddress::Tcp { host, port })
}

/// Splits `host:port` or `[ipv6]:port`; the host comes back without brackets.
fn host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| "an IPv6 address must be written \"[ip]:port\"".to_owned())?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        (ip, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| "no port".to_owned())?;
        if host.contains(':') {
            return Err("an IPv6 address must be written \"[ip]:port\"".to_owned());
        }
        if !is_host_name(host) {
            return Err(format!("{host:?} is not a host name or IP address"));
        }
        (host, port)
    };
    let port = match port.parse::<u16>() {
        Ok(port) if port > 0 => port,
        _ => return Err(format!("port {port:?} is not in 1..=65535")),
    };
    Ok((host.to_owned(), port))
}

/// A DNS name or IPv4 literal: letters, digits, `-`, `_` and `.`, not empty.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('.')
        && !host.contains("..")
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The path after `unix:`: absolute, and short enough for `sun_path`.
fn unix_path(path: &str) -> Result<PathBuf, String> {
    if !Path::new(path).is_absolute() {
        return Err(format!(
            "unix socket path {path:?} must be absolute, e.g. \"unix:/run/app.sock\""
        ));
    }
    if path.len() > MAX_UNIX_PATH_BYTES {
        return Err(format!(
            "unix socket path is {} bytes, longer than the {MAX_UNIX_PATH_BYTES} a socket address holds",
            path.len()
        ));
    }
    Ok(PathBuf::from(path))
}

/// Whether two listeners would collide when bound: the same Unix path, or the same port on
/// the same IP, or on an unspecified IP (`0.0.0.0`, `[::]`) of either. Port 0 never
/// collides (each bind gets its own port).
pub(crate) fn listeners_collide(a: &ListenAddress, b: &ListenAddress) -> bool {
    match (a, b) {
        (ListenAddress::Unix(a), ListenAddress::Unix(b)) => a == b,
        (ListenAddress::Tcp(a), ListenAddress::Tcp(b)) => {
            a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || unspecified(a.ip()) || unspecified(b.ip()))
        }
        _ => false,
    }
}

fn unspecified(ip: IpAddr) -> bool {
    ip.is_unspecified()
}

#[cfg(test)]
mod tests;
