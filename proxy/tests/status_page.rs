//! The status page at the admin listener's `/`, in a real headless Chromium: the numbers it
//! shows are the ones `/metrics` serves, its script keeps them live, and it needs nothing
//! from the internet.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use handoff::faults::{Bind, FaultServer, Mode};
use handoff::testing::client::get;
use handoff::testing::{eventually, metric_value, TestHandoff};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Loads `url` in headless Chromium, lets its scripts run, and returns the DOM; with
/// `screenshot`, also writes a PNG there.
fn chromium(url: &str, screenshot: Option<&Path>) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/test, which installs Debian's chromium"
    );
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1600",
        "--virtual-time-budget=3000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number inside the first element carrying all of `attrs` (as Chromium serialises them).
fn shown(dom: &str, attrs: &[(&str, &str)]) -> Option<f64> {
    let needle: String = attrs
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(" ");
    let at = dom.find(&needle)?;
    let text = &dom[at + dom[at..].find('>')? + 1..];
    text[..text.find('<')?].trim().replace(',', "").parse().ok()
}

/// Two upstreams, one healthy and one whose socket is missing, traffic on both; the page in
/// Chromium shows the counts `/metrics` has, and after more failures its refreshed DOM shows
/// the new counts. A screenshot goes to `docs/status-page.png` with HANDOFF_UPDATE_SCREENSHOT=1.
#[tokio::test(flavor = "multi_thread")]
async fn status_page_in_chromium_matches_metrics() {
    let app = FaultServer::start(Mode::Ok, Bind::Tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let handoff = TestHandoff::start_toml(&format!(
        "[admin]\nlisten = \"{{ADMIN}}\"\n\
         [[upstream]]\nname = \"shop\"\nlisten = \"127.0.0.1:{{PORT0}}\"\naddress = \"{}\"\n\
         [[upstream]]\nname = \"legacy-php\"\nlisten = \"127.0.0.1:{{PORT1}}\"\naddress = \"unix:{}/php8.3-fpm.sock\"\n",
        app.target(),
        dir.path().display()
    ))
    .unwrap();
    let burst = |n: usize, i: usize| {
        let addr = handoff.addr(i);
        async move {
            for _ in 0..n {
                let _ = get(addr, "/").await.unwrap();
            }
        }
    };
    burst(40, 0).await;
    burst(7, 1).await;
    let failures = || {
        handoff
            .metric(
                "handoff_upstream_failures_total",
                &[("upstream", "legacy-php"), ("reason", "socket_not_found")],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(eventually(failures, 7.0, Duration::from_secs(2)).await, 7.0);
    let ok = || {
        handoff
            .metric(
                "handoff_upstream_requests_total",
                &[("upstream", "shop"), ("status_class", "2xx")],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(eventually(ok, 40.0, Duration::from_secs(2)).await, 40.0);

    let url = format!("http://{}/", handoff.admin());
    let dom = chromium(&url, None);
    assert!(
        dom.contains("data-refreshes=\"1\"") || dom.contains("data-refreshes=\"2\""),
        "the script refreshed the page"
    );
    let metrics = handoff.shared().metrics.encode();
    for (upstream, reason) in [
        ("legacy-php", "socket_not_found"),
        ("shop", "connect_refused"),
    ] {
        let want = metric_value(
            &metrics,
            "handoff_upstream_failures_total",
            &[("upstream", upstream), ("reason", reason)],
        );
        let on_page = shown(
            &dom,
            &[
                ("data-metric", "failures"),
                ("data-upstream", upstream),
                ("data-reason", reason),
            ],
        );
        // The page lists reasons that occurred; zero rows may be left out.
        assert_eq!(on_page.or(Some(0.0)), want, "{upstream}/{reason}");
    }
    for class in ["2xx", "5xx"] {
        let want = metric_value(
            &metrics,
            "handoff_upstream_requests_total",
            &[("upstream", "shop"), ("status_class", class)],
        );
        let on_page = shown(
            &dom,
            &[
                ("data-metric", "requests"),
                ("data-upstream", "shop"),
                ("data-status-class", class),
            ],
        );
        assert_eq!(on_page, want, "shop {class}");
    }
    assert_eq!(shown(&dom, &[("data-metric", "failures_all")]), Some(7.0));
    assert!(dom.contains("php8.3-fpm.sock"), "the next hop is shown");
    assert!(
        !dom.contains("<script src") && !dom.contains("<link rel=\"stylesheet\" href=\"http"),
        "no external assets"
    );

    // Failures keep happening: the page follows.
    burst(5, 1).await;
    assert_eq!(
        eventually(failures, 12.0, Duration::from_secs(2)).await,
        12.0
    );
    let dom = chromium(&url, None);
    assert_eq!(
        shown(
            &dom,
            &[
                ("data-metric", "failures"),
                ("data-upstream", "legacy-php"),
                ("data-reason", "socket_not_found")
            ]
        ),
        Some(12.0)
    );

    // Without JavaScript the page is complete as served.
    let plain = String::from_utf8(get(handoff.admin(), "/").await.unwrap().body).unwrap();
    assert_eq!(
        shown(
            &plain
                .replace(
                    "data-reason=socket_not_found",
                    "data-reason=\"socket_not_found\""
                )
                .replace("data-metric=failures ", "data-metric=\"failures\" "),
            &[
                ("data-metric", "failures"),
                ("data-upstream", "legacy-php"),
                ("data-reason", "socket_not_found")
            ]
        ),
        Some(12.0)
    );

    let screenshot = if std::env::var_os("HANDOFF_UPDATE_SCREENSHOT").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/status-page.png")
    } else {
        dir.path().join("status-page.png")
    };
    chromium(&url, Some(&screenshot));
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "a real screenshot"
    );
}
