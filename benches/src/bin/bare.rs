//! The tuned bare pingora floor: a minimal pingora 0.9.1 HTTP/1.1 reverse proxy with
//! handoff's release profile (fat LTO, codegen-units 1, panic unwind), allocator (jemalloc)
//! and server settings (1 worker thread, upstream pool 1024, max_retries 1, timers of a
//! second or more on tokio's wheel), and no hooks beyond `upstream_peer`, which clones a
//! prepared peer as handoff does.
//!
//! What handoff costs beyond pingora is handoff minus this, measured in the same run by
//! `benches/load/run`.
//!
//! Usage: `bare LISTEN UPSTREAM`, e.g. `bare 127.0.0.1:9104 127.0.0.1:9101`. With
//! `BARE_TIMEOUTS=1` the peer gets handoff's default timers (connect 3 s, read/write 55 s,
//! pool idle 2 s), to tell their cost from the hooks'. `BARE_FAST_TIMERS=1` leaves every
//! timer on pingora's fast timers (pingora's default, which handoff changes).

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Bare {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let Ok(addr) = upstream.parse::<SocketAddr>() else {
        eprintln!("bare: UPSTREAM must be ip:port, got {upstream}");
        std::process::exit(2);
    };
    let mut conf = ServerConf {
        threads: 1,
        upstream_keepalive_pool_size: 1024,
        max_retries: 1,
        ..ServerConf::default()
    };
    if std::env::var_os("BARE_FAST_TIMERS").is_none() {
        // As handoff (proxy/src/server.rs): timers of a second or more on tokio's wheel.
        conf.fast_timeout_to_tokio_threshold_seconds = Some(0);
    }
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut peer = HttpPeer::new(addr, false, String::new());
    if std::env::var_os("BARE_TIMEOUTS").is_some() {
        // handoff's default per-upstream timers, to separate their cost from the hooks'.
        peer.options.connection_timeout = Some(Duration::from_secs(3));
        peer.options.read_timeout = Some(Duration::from_secs(55));
        peer.options.write_timeout = Some(Duration::from_secs(55));
        peer.options.idle_timeout = Some(Duration::from_secs(2));
    }
    let proxy = Bare { peer };
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, proxy);
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
