//! Log output: `tracing` as JSON lines (default) or text on stderr, with pingora's `log`
//! records bridged in.

use handoff_config::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// Installs the process-wide subscriber. `RUST_LOG`, when set, replaces `[log] level`.
/// Later calls (e.g. several servers in one test process) are ignored.
pub fn init(settings: &LogSettings) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        // pingora logs every start-up step at info; keep its warnings and errors only.
        format!(
            "{},pingora_core=warn,pingora_proxy=warn,pingora=warn",
            settings.level
        )
    });
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_ok() {
        let _ = tracing_log::LogTracer::init();
    }
}
