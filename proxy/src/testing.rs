//! Starting handoff in-process for tests and benchmarks: real pingora services on free
//! loopback ports, stopped cleanly; and a small HTTP client to talk to it.

pub mod client;
pub mod netns;
pub mod nginx;
pub mod reasons;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use handoff_config::{ListenAddress, Settings};
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::Notify;

use crate::server::{Handoff, StartError};
use crate::state::Shared;

/// A running in-process handoff.
#[derive(Debug)]
pub struct TestHandoff {
    /// The settings it runs with.
    pub settings: Settings,
    shared: Arc<Shared>,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// === impl TestHandoff ===

impl TestHandoff {
    /// Starts handoff from a TOML text in which `{PORT0}`, `{PORT1}`... are replaced by free
    /// loopback ports and `{ADMIN}` by a free admin address; returns once it is ready.
    pub fn start_toml(template: &str) -> Result<TestHandoff, String> {
        let mut text = template.replace("{ADMIN}", &format!("127.0.0.1:{}", free_port()));
        let mut i = 0;
        while text.contains("{PORT") {
            text = text.replace(&format!("{{PORT{i}}}"), &free_port().to_string());
            i += 1;
            assert!(i < 1000, "unreplaceable {{PORT..}} placeholder");
        }
        let settings =
            handoff_config::from_str(&text, "test").map_err(|e| e.problems().join("\n"))?;
        Self::start(settings).map_err(|e| e.to_string())
    }

    /// Starts handoff with one upstream named `app` in front of `address` (an
    /// `[[upstream]]` `address` value), plus `extra` lines for that upstream.
    pub fn for_upstream(address: &str, extra: &str) -> Result<TestHandoff, String> {
        Self::start_toml(&format!(
            "[admin]\nlisten = \"{{ADMIN}}\"\n[[upstream]]\nname = \"app\"\n\
             listen = \"127.0.0.1:{{PORT0}}\"\naddress = \"{address}\"\n{extra}"
        ))
    }

    /// Starts handoff with `settings`; returns once every listener accepts connections.
    pub fn start(settings: Settings) -> Result<TestHandoff, StartError> {
        capture_logs();
        let handoff = Handoff::build(settings.clone())?;
        let shared = handoff.shared().clone();
        let stop = Arc::new(Notify::new());
        let signal = TestSignal(stop.clone());
        let thread = std::thread::spawn(move || handoff.run(Box::new(signal)));
        let started = Instant::now();
        while !shared.ready.load(std::sync::atomic::Ordering::Relaxed) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "handoff did not become ready"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(TestHandoff {
            settings,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The TCP address of upstream `i`'s listener.
    pub fn addr(&self, i: usize) -> SocketAddr {
        match &self.settings.upstreams[i].listen {
            ListenAddress::Tcp(addr) => *addr,
            ListenAddress::Unix(p) => panic!("upstream {i} listens on unix:{}", p.display()),
        }
    }

    /// The admin listener's address.
    pub fn admin(&self) -> SocketAddr {
        match &self.settings.admin.listen {
            ListenAddress::Tcp(addr) => *addr,
            ListenAddress::Unix(p) => panic!("admin listens on unix:{}", p.display()),
        }
    }

    /// The process state (metrics, recent failures).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The current value of a metric series, e.g.
    /// `metric("handoff_upstream_failures_total", &[("upstream","app"),("reason","connect_refused")])`.
    pub fn metric(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.shared.metrics.encode(), family, labels)
    }

    /// The sum of every series of `family`, e.g. all `handoff_upstream_failures_total`.
    pub fn metric_sum(&self, family: &str) -> f64 {
        metric_sum(&self.shared.metrics.encode(), family)
    }

    /// Stops it and waits until every service has exited.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestHandoff {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Polls `value` until it reaches at least `want` or `within` passes; returns the last value.
/// Metrics are recorded when a request ends, which can be just after the client has its
/// response, so a test reads them through this.
pub async fn eventually(value: impl Fn() -> f64, want: f64, within: Duration) -> f64 {
    let until = Instant::now() + within;
    loop {
        let v = value();
        if v >= want || Instant::now() >= until {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The sum of every series of `family` in Prometheus text.
pub fn metric_sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let name = series.split_once('{').map_or(series, |(n, _)| n);
            (name == family)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Reads one series from Prometheus text: `family{labels...} value`.
pub fn metric_value(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, "}"));
            if name != family {
                return None;
            }
            let label_text = rest.strip_suffix('}')?;
            let all = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            all.then(|| value.parse().ok()).flatten()
        })
}

struct TestSignal(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for TestSignal {
    async fn recv(&self) -> ShutdownSignal {
        // `notify_one` stores a permit, so a stop requested before this await is not lost.
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

/// JSON log lines written by handoff in this process, for tests that check the log line.
pub fn captured_logs() -> Vec<String> {
    LOGS.get()
        .map(|l| l.lock().map(|v| v.clone()).unwrap_or_default())
        .unwrap_or_default()
}

static LOGS: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();

fn capture_logs() {
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = CaptureWriter(logs.clone());
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter("info,pingora_core=warn,pingora_proxy=warn,pingora=warn")
            .with_writer(move || writer.clone())
            .try_init();
        logs
    });
}

#[derive(Clone)]
struct CaptureWriter(Arc<Mutex<Vec<String>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            for line in String::from_utf8_lossy(buf)
                .lines()
                .filter(|l| !l.is_empty())
            {
                logs.push(line.to_owned());
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
