//! The floor of handoff's own proxy loop: `handoff::conn::ProxyApp`, the loop handoff
//! runs, with hooks that do nothing. Same release profile, allocator, server settings,
//! timers, idle pool and HTTP/1 code as `handoff`; no metrics, no request id, no log.
//!
//! What handoff's diagnostics cost is handoff minus this; what handoff's loop saves over
//! pingora-proxy is `bare` (pingora-proxy's floor) minus this. Both are measured in one run
//! by `benches/load/run` and counted by `benches/load/callgrind`.
//!
//! Usage: `bare-core LISTEN UPSTREAM`, e.g. `bare-core 127.0.0.1:9105 127.0.0.1:9101`.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use handoff::conn::{ClientFault, ClientLimits, Hooks, Outcome, Progress, ProxyApp, Request};
use handoff::listen::Listening;
use handoff::upstream::Upstream;
use handoff_config::Settings;
use handoff_diag::{DiagResponse, Metrics};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora_error::Error;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Hooks that observe nothing: a failure is a bare 502.
struct NoHooks;

impl Hooks for NoHooks {
    type Record = ();

    fn begin(&self, _: &Arc<Upstream>, _: Request<'_>, _: Instant) {}

    fn attempt_failed(&self, _: &mut (), _: &Progress, _: Request<'_>, _: &Error) {}

    async fn answer(&self, _: &mut (), _: &Progress, _: Request<'_>) -> DiagResponse {
        DiagResponse::refusal(http::StatusCode::BAD_GATEWAY)
    }

    fn done(&self, _: (), _: &Progress, _: Request<'_>, _: Outcome<'_>) {}

    fn client_error(&self, _: &Upstream, _: ClientFault) {}
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare-core LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let settings = match Settings::single(&listen, &upstream, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bare-core: {}", e.problems().join("; "));
            std::process::exit(2);
        }
    };
    let server_settings = &settings.server;
    let conf = ServerConf {
        threads: server_settings.threads,
        // As handoff (proxy/src/server.rs).
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let u = &settings.upstreams[0];
    let metrics = Metrics::new(&[u.name.as_str()], "bare-core");
    let handles = metrics.upstream(&u.name).expect("registered");
    let up = Upstream::new(
        u.clone(),
        handles,
        server_settings.threads,
        server_settings.upstream_pool_size,
    )
    .expect("a literal address");
    let app = ProxyApp::new(
        Arc::new(ArcSwap::from_pointee(up)),
        NoHooks,
        ClientLimits::from(server_settings),
    );
    server.add_service(Listening::new("bare-core", u.listen.clone(), app));
    server.run_forever();
}
