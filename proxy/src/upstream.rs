//! The runtime form of one `[[upstream]]`: its peer template, timeouts and metric handles.
//!
//! Everything here is computed once at start-up (or on reload) so that the request path only
//! clones a prepared [`HttpPeer`] and bumps pre-resolved metric handles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use handoff_config::{UpstreamAddress, UpstreamSettings};
use handoff_diag::{Timeouts, UpstreamMetrics, DNS_FAILED};
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use pingora::{Error, Result};

/// One upstream as the proxy uses it. Immutable: a reload builds a new one and swaps it in.
#[derive(Debug)]
pub struct Upstream {
    /// The validated settings it was built from.
    pub settings: UpstreamSettings,
    /// The configured name, shared with every evidence record.
    pub name: Arc<str>,
    /// The next hop as operators write it: `127.0.0.1:3000`, `unix:/run/app.sock`, `tls://h:443`.
    pub next_hop: Arc<str>,
    /// Configured timeouts, handed to classification so it can name the timer that fired.
    pub timeouts: Timeouts,
    /// Pre-resolved metric handles for this upstream.
    pub metrics: UpstreamMetrics,
    /// pingora applies one per-read timer to both the response header and body; this is it.
    pub read_timer: Duration,
    peer: ArcSwapOption<HttpPeer>,
}

/// Why an [`Upstream`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The unix socket path does not fit in `sockaddr_un`.
    #[error("upstream {name}: invalid unix socket path: {detail}")]
    SocketPath { name: String, detail: String },
    /// The CA file could not be loaded.
    #[error("upstream {name}: cannot load ca_file {path}: {detail}")]
    CaFile {
        name: String,
        path: String,
        detail: String,
    },
}

// === impl Upstream ===

impl Upstream {
    /// Builds the runtime upstream; resolves a host name once, now (like nginx's static
    /// upstreams). If resolution fails here it is retried per request until it succeeds, and
    /// each failure is reported as `dns_failed`.
    pub fn new(
        settings: UpstreamSettings,
        metrics: UpstreamMetrics,
    ) -> Result<Self, UpstreamError> {
        let name: Arc<str> = Arc::from(settings.name.as_str());
        let next_hop: Arc<str> = Arc::from(settings.address.to_string().as_str());
        let timeouts = Timeouts {
            connect: settings.connect_timeout,
            header: settings.header_timeout,
            read: settings.read_timeout,
            write: settings.write_timeout,
        };
        let read_timer = settings.header_timeout.min(settings.read_timeout);
        let upstream = Upstream {
            name,
            next_hop,
            timeouts,
            metrics,
            read_timer,
            peer: ArcSwapOption::empty(),
            settings,
        };
        let peer = match &upstream.settings.address {
            UpstreamAddress::Unix(path) => {
                let path = path.to_string_lossy();
                let peer = HttpPeer::new_uds(&path, false, String::new()).map_err(|e| {
                    UpstreamError::SocketPath {
                        name: upstream.settings.name.clone(),
                        detail: e.to_string(),
                    }
                })?;
                Some(upstream.with_options(peer))
            }
            address => resolve_now(address)
                .map(|addr| upstream.inet_peer(addr))
                .transpose()?,
        };
        upstream.peer.store(peer.map(Arc::new));
        Ok(upstream)
    }

    /// The peer for one attempt: a clone of the prepared template.
    pub async fn peer(&self) -> Result<Box<HttpPeer>> {
        if let Some(peer) = self.peer.load().as_deref() {
            return Ok(Box::new(peer.clone()));
        }
        let (host, port) = match &self.settings.address {
            UpstreamAddress::Tcp { host, port } | UpstreamAddress::Tls { host, port, .. } => {
                (host.as_str(), *port)
            }
            UpstreamAddress::Unix(_) => unreachable!("unix peers are built at start-up"),
        };
        let addr = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next());
        let Some(addr) = addr else {
            return Error::e_explain(DNS_FAILED, format!("{host} could not be resolved"));
        };
        let peer = self
            .inet_peer(addr)
            .map_err(|e| Error::explain(DNS_FAILED, e.to_string()))?;
        let peer = Arc::new(peer);
        self.peer.store(Some(peer.clone()));
        Ok(Box::new(peer.as_ref().clone()))
    }

    fn inet_peer(&self, addr: SocketAddr) -> Result<HttpPeer, UpstreamError> {
        let peer = match &self.settings.address {
            UpstreamAddress::Tls {
                sni,
                ca_file,
                verify,
                ..
            } => {
                let mut peer = HttpPeer::new(addr, true, sni.clone());
                peer.options.verify_cert = *verify;
                peer.options.verify_hostname = *verify;
                if let Some(path) = ca_file {
                    peer.options.ca = Some(Arc::from(self.load_ca(path)?));
                }
                peer
            }
            _ => HttpPeer::new(addr, false, String::new()),
        };
        Ok(self.with_options(peer))
    }

    fn with_options(&self, mut peer: HttpPeer) -> HttpPeer {
        let s = &self.settings;
        peer.options.connection_timeout = Some(s.connect_timeout);
        peer.options.read_timeout = Some(self.read_timer);
        peer.options.write_timeout = Some(s.write_timeout);
        // `Some(0)` disables pooling in pingora, which is what `pool_idle_timeout = "0s"` means.
        peer.options.idle_timeout = Some(s.pool_idle_timeout);
        peer
    }

    fn load_ca(&self, path: &std::path::Path) -> Result<Vec<WrappedX509>, UpstreamError> {
        let err = |detail: String| UpstreamError::CaFile {
            name: self.settings.name.clone(),
            path: path.display().to_string(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let certs: Vec<WrappedX509> = pem_certificates(&pem)
            .map_err(err)?
            .into_iter()
            .map(|der| WrappedX509::new(der, parse_x509))
            .collect();
        if certs.is_empty() {
            return Err(err("no certificate in file".into()));
        }
        Ok(certs)
    }
}

fn resolve_now(address: &UpstreamAddress) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    if let Some(addr) = address.literal_addr() {
        return Some(addr);
    }
    match address {
        UpstreamAddress::Tcp { host, port } | UpstreamAddress::Tls { host, port, .. } => {
            (host.as_str(), *port).to_socket_addrs().ok()?.next()
        }
        UpstreamAddress::Unix(_) => None,
    }
}

/// The DER bodies of the `CERTIFICATE` blocks of a PEM file.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM text file".to_string())?;
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match (line, body.as_mut()) {
            ("-----BEGIN CERTIFICATE-----", None) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b64)) => {
                out.push(base64_decode(b64).ok_or("invalid base64 in certificate")?);
                body = None;
            }
            (l, Some(b64)) => b64.push_str(l),
            _ => {}
        }
    }
    Ok(out)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let n = chunk.len().saturating_sub(1);
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert!(base64_decode("a$==").is_none());
    }
}
