//! The runtime form of one `[[upstream]]`: where it is, how long each of its waits may
//! take, its idle connections and its metric handles.
//!
//! Everything here is computed once at start-up (or on reload), so that the request path
//! only reads prepared values: a peer template to connect with, timeouts as `Duration`s,
//! pre-resolved metric handles.
//!
//! # Layout
//!
//! - this file: [`Upstream`] and how a connection to it is made;
//! - `pool`: its idle keep-alive connections;
//! - `http1`: the HTTP/1 protocol the proxy loop speaks to it (the seam where FastCGI
//!   joins).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use handoff_config::{UpstreamAddress, UpstreamSettings};
use handoff_diag::{Timeouts, UpstreamMetrics, DNS_FAILED};
use pingora::connectors::TransportConnector;
use pingora::protocols::Stream;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use pingora::{Error, Result};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

pub(crate) mod http1;
pub(crate) mod pool;

use pool::Pool;

/// One upstream as the proxy uses it. Immutable: a reload builds a new one and swaps it in
/// (its idle connections go with the old one).
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
    /// The `Host` sent for an HTTP/1.0 request that carried none.
    pub(crate) default_host: Box<[u8]>,
    pub(crate) pool: Arc<Pool>,
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
    /// upstreams). If resolution fails here it is retried per connection until it succeeds,
    /// and each failure is reported as `dns_failed`. `threads` and `pool_size` size the
    /// idle pool.
    pub fn new(
        settings: UpstreamSettings,
        metrics: UpstreamMetrics,
        threads: usize,
        pool_size: usize,
    ) -> Result<Self, UpstreamError> {
        let name: Arc<str> = Arc::from(settings.name.as_str());
        let next_hop: Arc<str> = Arc::from(settings.address.to_string().as_str());
        let timeouts = Timeouts {
            connect: settings.connect_timeout,
            header: settings.header_timeout,
            read: settings.read_timeout,
            write: settings.write_timeout,
        };
        let default_host = match &settings.address {
            UpstreamAddress::Tcp { host, port } | UpstreamAddress::Tls { host, port, .. } => {
                format!("{host}:{port}")
            }
            UpstreamAddress::Unix(_) => "localhost".to_owned(),
        };
        // The connector reads the system's CA roots when it is made: at start-up (and
        // reload), not at a first connect that may come when descriptors have run out.
        connector();
        let upstream = Upstream {
            name,
            next_hop,
            timeouts,
            metrics,
            default_host: default_host.into_bytes().into(),
            pool: Arc::new(Pool::new(threads, pool_size, settings.pool_idle_timeout)),
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

    /// A new connection (TCP, unix or TLS), within `connect_timeout`.
    ///
    /// pingora's connect future is some 8 KiB (the TLS handshake's state): boxed, it costs
    /// an allocation per new connection instead of those bytes in every client
    /// connection's future, idle ones included.
    pub(crate) async fn connect(&self) -> Result<Stream> {
        let peer = self.peer().await?;
        Box::pin(connector().new_stream(&*peer)).await
    }

    /// The peer to connect to: prepared at start-up, or resolved now if that failed.
    async fn peer(&self) -> Result<Arc<HttpPeer>> {
        if let Some(peer) = self.peer.load_full() {
            return Ok(peer);
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
        Ok(peer)
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
        // The connect (and TLS handshake) timer is pingora's; every later wait is the
        // proxy loop's own.
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
        peer
    }

    fn load_ca(&self, path: &std::path::Path) -> Result<Vec<WrappedX509>, UpstreamError> {
        let err = |detail: String| UpstreamError::CaFile {
            name: self.settings.name.clone(),
            path: path.display().to_string(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .map(|der| der.map(|der| WrappedX509::new(der.to_vec(), parse_x509)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("not a PEM certificate file: {e}")))?;
        if certs.is_empty() {
            return Err(err("no certificate in file".into()));
        }
        Ok(certs)
    }
}

/// The one connector of the process: it holds the TLS client configuration (the system's
/// roots), built on first use.
fn connector() -> &'static TransportConnector {
    static CONNECTOR: OnceLock<TransportConnector> = OnceLock::new();
    CONNECTOR.get_or_init(|| TransportConnector::new(None))
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
