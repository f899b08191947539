//! The files in `deploy/` and `docs/` agree with what handoff serves and does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use handoff::testing::client::get;
use handoff::testing::{free_port, metric_value, TestHandoff};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `handoff_...` metric family names mentioned in a text, without histogram suffixes.
fn families_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("handoff_") {
        let start = i + at;
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|b| b.is_ascii_lowercase() || **b == b'_')
                .count();
        let name = &text[start..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        // Alert and rule names such as `handoff_down` are not metrics: only names with a
        // known metric prefix.
        if name.starts_with("handoff_upstream_")
            || name.starts_with("handoff_client_")
            || name.starts_with("handoff_config_")
            || name == "handoff_build_info"
        {
            out.insert(name.to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

fn served() -> BTreeSet<String> {
    let handoff = TestHandoff::start_toml(
        "[admin]\nlisten = \"{ADMIN}\"\n[[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{PORT0}\"\naddress = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    let text = handoff.shared().metrics.encode();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// Every metric the dashboard and the alert rules use is served by `/metrics`.
#[test]
fn dashboard_and_alerts_use_served_metrics() {
    let served = served();
    for file in [
        "deploy/grafana/handoff.json",
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts_test.yml",
    ] {
        let used = families_in(&read(file));
        assert!(!used.is_empty(), "{file} uses no handoff metric");
        let missing: Vec<_> = used.difference(&served).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics /metrics does not serve: {missing:?}"
        );
    }
}

/// docs/metrics.md lists exactly the families `/metrics` serves.
#[test]
fn metrics_doc_matches_what_is_served() {
    let served = served();
    let documented: BTreeSet<String> = read("docs/metrics.md")
        .lines()
        .filter(|l| l.starts_with("| `handoff_"))
        .filter_map(|l| l.split('`').nth(1))
        .map(str::to_owned)
        .collect();
    assert_eq!(documented, served);
    let named: BTreeSet<String> = handoff_diag::METRIC_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(named, served);
}

/// `/metrics` serves the prometheus process collector after handoff's own families, with
/// live values, and docs/metrics.md's process table lists exactly the families served.
#[tokio::test(flavor = "multi_thread")]
async fn process_metrics_are_served_and_documented() {
    let handoff = TestHandoff::start_toml(
        "[admin]\nlisten = \"{ADMIN}\"\n[[upstream]]\nname = \"app\"\nlisten = \"127.0.0.1:{PORT0}\"\naddress = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    let response = get(handoff.admin(), "/metrics").await.unwrap();
    assert_eq!(response.status, 200);
    let text = String::from_utf8(response.body).unwrap();
    let served: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE process_"))
        .filter_map(|l| l.split(' ').next())
        .map(|name| format!("process_{name}"))
        .collect();
    let documented: BTreeSet<String> = read("docs/metrics.md")
        .lines()
        .filter(|l| l.starts_with("| `process_"))
        .filter_map(|l| l.split('`').nth(1))
        .map(str::to_owned)
        .collect();
    assert_eq!(served, documented);
    let value = |name: &str| metric_value(&text, name, &[]).unwrap_or_else(|| panic!("{name}"));
    // This test process holds at least the listeners and the connection just accepted.
    let open = value("process_open_fds");
    assert!(open >= 3.0, "{open}");
    assert!(value("process_max_fds") >= open);
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_threads") >= 2.0);
    // handoff's own families come first and are all there.
    let first_process = text.find("# HELP process_").unwrap();
    for name in handoff_diag::METRIC_NAMES {
        let at = text
            .find(&format!("# TYPE {name} "))
            .unwrap_or_else(|| panic!("{name}"));
        assert!(at < first_process, "{name}");
    }
}

/// The dashboard selects by `$job` and `$instance` variables, never by a hard-coded job, so
/// a scrape job of another name (`kubernetes-pods`) fills every panel: `job` comes before
/// `instance` (Grafana resolves variables in order), `instance` is found within `$job`, and
/// every query with a selector carries both.
#[test]
fn dashboard_selects_by_job_and_instance_variables() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/handoff.json")).unwrap();
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    let position = |name: &str| {
        vars.iter()
            .position(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let (job, instance, upstream) = (position("job"), position("instance"), position("upstream"));
    assert!(job < instance && instance < upstream);
    let query = |i: usize| vars[i]["query"]["query"].as_str().unwrap().to_owned();
    assert_eq!(query(job), "label_values(handoff_build_info, job)");
    assert!(
        query(instance).contains(r#"{job=~"$job"}"#),
        "{}",
        query(instance)
    );
    assert!(query(upstream).contains(r#"job=~"$job", instance=~"$instance""#));
    for i in [job, instance] {
        assert_eq!(vars[i]["type"], "query");
        assert_eq!(vars[i]["multi"], true);
        // All is the jobs and instances found, not `.*`: `up` has every target's series.
        assert!(vars[i]["allValue"].is_null(), "{}", vars[i]["name"]);
    }

    fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match v.as_str() {
                        Some(expr) if k == "expr" => out.push(expr.to_owned()),
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    exprs(&dashboard["panels"], &mut all);
    assert!(all.len() > 20, "{all:?}");
    for expr in all.iter().filter(|e| e.contains('{')) {
        assert!(!expr.contains("job=\""), "a hard-coded job: {expr}");
        for selector in expr.split('{').skip(1) {
            let labels = &selector[..selector.find('}').unwrap_or(selector.len())];
            assert!(
                labels.contains(r#"job=~"$job""#) && labels.contains(r#"instance=~"$instance""#),
                "{expr}"
            );
        }
    }
}

/// The systemd unit: `Type=notify` with `notify-reload` offered for systemd 253 and newer,
/// the address families handoff uses (netlink for the `connect_refused` listener hint), no
/// restart for the exit statuses of a bad config (`handoff::cli`'s), and nothing for
/// `systemd-analyze verify` to complain about.
#[test]
fn systemd_unit_allows_netlink_and_does_not_restart_a_bad_config() {
    use handoff::cli::{EXIT_CONFIG, EXIT_NO_INPUT};

    let unit = read("deploy/systemd/handoff.service");
    let values = |key: &str| -> Vec<&str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    };
    assert_eq!(values("Type"), ["notify"]);
    assert!(unit.lines().any(|l| l == "#Type=notify-reload"));
    assert_eq!(values("ExecReload").len(), 1);
    let families: BTreeSet<&str> = values("RestrictAddressFamilies")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .collect();
    assert_eq!(
        families,
        BTreeSet::from(["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"])
    );
    assert_eq!(values("Restart"), ["on-failure"]);
    let prevent: BTreeSet<u8> = values("RestartPreventExitStatus")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(|code| code.parse().unwrap())
        .collect();
    assert_eq!(prevent, BTreeSet::from([EXIT_CONFIG, EXIT_NO_INPUT]));

    let analyze = "/usr/bin/systemd-analyze";
    assert!(
        Path::new(analyze).exists(),
        "{analyze} is missing: run scripts/test, which installs systemd"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.service");
    // verify wants the programs the unit runs to exist.
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/handoff", env!("CARGO_BIN_EXE_handoff")),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

fn yaml(path: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

/// The Kubernetes pod runs handoff as a native sidecar with probes, a grace period that
/// covers handoff's, and the restricted security profile; compose shares the app's network.
#[test]
fn kubernetes_and_compose_files_have_the_expected_shape() {
    let docs = yaml("deploy/k8s/deployment.yaml");
    let pod = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" || d["kind"] == "Pod")
        .expect("a Deployment or Pod");
    let spec = if pod["kind"] == "Deployment" {
        &pod["spec"]["template"]["spec"]
    } else {
        &pod["spec"]
    };
    let sidecar = spec["initContainers"]
        .as_sequence()
        .and_then(|c| c.iter().find(|c| c["restartPolicy"] == "Always"))
        .expect("an init container with restartPolicy: Always (native sidecar)");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(
        !sidecar["startupProbe"].is_null(),
        "a startup probe holds the app back"
    );
    let sc = &sidecar["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let grace = spec["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace >= 5 + 5,
        "grace {grace}s covers handoff's 5 s grace period and the preStop"
    );
    assert!(!sidecar["resources"]["requests"].is_null());

    let config_map = yaml("deploy/k8s/configmap.yaml");
    let toml = config_map[0]["data"]
        .as_mapping()
        .and_then(|m| m.values().next())
        .and_then(|v| v.as_str())
        .expect("the ConfigMap carries the TOML");
    handoff_config::from_str(toml, "configmap.yaml").expect("the ConfigMap's TOML is valid");

    let kustomization = yaml("deploy/k8s/kustomization.yaml");
    for resource in kustomization[0]["resources"]
        .as_sequence()
        .expect("resources")
    {
        let file = resource.as_str().unwrap();
        assert!(repo(&format!("deploy/k8s/{file}")).exists(), "{file}");
    }

    let compose = &yaml("deploy/compose/compose.yaml")[0];
    let handoff = &compose["services"]["handoff"];
    assert_eq!(handoff["network_mode"], "service:app");
    assert!(!compose["services"]["nginx"].is_null() && !compose["services"]["app"].is_null());
}

/// `handoff nginx-snippet` writes configuration nginx accepts (`nginx -t`).
#[test]
fn nginx_snippet_passes_nginx_t() {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["nginx-snippet", "-c"])
        .arg(repo("deploy/handoff.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let snippet = String::from_utf8(out.stdout).unwrap();
    let (http_part, locations) =
        snippet.split_at(snippet.find("location /").expect("a location block"));
    let port = free_port();
    // Each upstream's location goes in its own server, as on separate sites.
    let servers: String = locations
        .split("location /")
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            format!(
                "server {{ listen 127.0.0.1:{}; location /{l} }}\n",
                port + i as u16 % 2
            )
        })
        .collect();
    nginx_t(&format!(" access_log off;\n{http_part}\n{servers}"));
}

/// Asserts that nginx accepts `http` as the contents of its http{} block (`nginx -t`), with
/// every path it writes (temp files, `/var/log/nginx/`) in a temporary directory.
fn nginx_t(http: &str) {
    let nginx = std::env::var("HANDOFF_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into());
    assert!(
        Path::new(&nginx).exists(),
        "{nginx} is missing: run scripts/test, which installs nginx"
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n client_body_temp_path {d};\n proxy_temp_path {d};\n fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n{http}}}\n",
        d = dir.path().display()
    );
    let conf = conf.replace("/var/log/nginx/", &format!("{}/", dir.path().display()));
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(&nginx)
        .args(["-t", "-q", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `deploy/nginx/handoff.conf` is what handoff's nginx template writes for
/// `deploy/handoff.toml` (`HANDOFF_UPDATE_DEPLOY=1` rewrites it), and nginx accepts it:
/// `nginx -t` on it inside an http{} with the log format, as the file's head says to
/// install it.
#[test]
fn deploy_nginx_conf_is_the_generated_one() {
    let example = handoff_config::from_str(&read("deploy/handoff.toml"), "deploy/handoff.toml")
        .expect("the example config is valid");
    let generated = handoff::nginx_conf::site_file(&example);
    if std::env::var_os("HANDOFF_UPDATE_DEPLOY").is_some() {
        std::fs::write(repo("deploy/nginx/handoff.conf"), &generated).unwrap();
    }
    let file = read("deploy/nginx/handoff.conf");
    assert!(
        file == generated,
        "deploy/nginx/handoff.conf differs from what proxy/src/nginx_conf.rs writes for \
         deploy/handoff.toml; HANDOFF_UPDATE_DEPLOY=1 cargo test -p handoff --test deploy_files \
         rewrites it. Generated:\n{generated}"
    );
    for upstream in &example.upstreams {
        assert!(
            file.contains(&format!(
                "upstream handoff_{} {{\n    server {};",
                upstream.name, upstream.listen
            )),
            "{}",
            upstream.name
        );
    }

    nginx_t(&format!("{}\n{file}", read("deploy/nginx/log_format.conf")));
}

/// The container's command: a non-root uid, only environment configuration (the image's
/// three variables, on free loopback ports here), cwd `/`, a read-only root filesystem (as
/// compose's `read_only` and Kubernetes' `readOnlyRootFilesystem` give it: a mount
/// namespace of its own with `/` remounted read-only); it serves, `/readyz` is 200 on the
/// admin address from `HANDOFF_ADMIN`, and SIGTERM exits 0.
#[test]
fn container_command_runs_as_non_root_with_env_only() {
    let dockerfile = read("deploy/container/Dockerfile");
    for var in [
        "HANDOFF_LISTEN=",
        "HANDOFF_UPSTREAM=",
        "HANDOFF_ADMIN=0.0.0.0:9180",
    ] {
        assert!(dockerfile.contains(var), "the image sets {var}");
    }
    let (port, admin) = (free_port(), free_port());
    let mut child = Command::new("/usr/bin/unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .args([
            "/bin/sh",
            "-c",
            "/usr/bin/mount -o remount,bind,ro / && exec \"$@\"",
            "sh",
        ])
        .args([
            "/usr/bin/setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_handoff"))
        .env_clear()
        .env("HANDOFF_LISTEN", format!("127.0.0.1:{port}"))
        .env("HANDOFF_UPSTREAM", "127.0.0.1:9")
        .env("HANDOFF_ADMIN", format!("127.0.0.1:{admin}"))
        .current_dir("/")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        let r = std::net::TcpStream::connect(("127.0.0.1", admin)).and_then(|mut s| {
            use std::io::{Read, Write};
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        });
        if let Ok(r) = r {
            if r.starts_with("HTTP/1.1 200") {
                break true;
            }
        }
        if Instant::now() > until {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(
        ready,
        "handoff as uid 65534 with env configuration never became ready"
    );
    assert_eq!(status.code(), Some(0));
}
