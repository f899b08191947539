//! Fixture trees of nginx, php-fpm and handoff configurations, each with its golden human
//! and JSON report. A tree is copied to a temporary directory with `@ROOT@` in its files
//! replaced by that directory (configs hold absolute paths), doctor runs over it with live
//! checks off, and the temporary path is written back as `@ROOT@` before comparing.
//!
//! `UPDATE_GOLDEN=1 cargo test -p handoff-doctor --test golden` rewrites the golden files;
//! review their diff like code.

use std::path::{Path, PathBuf};

use handoff_doctor::{Doctor, Host, Options};
use support::copy_tree;

mod support;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The human and JSON reports for fixture `name`, with `@ROOT@` for the tree's path.
fn reports(name: &str) -> (String, String, u8) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    copy_tree(&fixtures().join(name), &root, &root);
    let settings = handoff_config::from_file(&root.join("handoff.toml")).unwrap();
    let report = Doctor::new(Host::fixture(&root), Options::default()).run(Some(&settings));
    let root_text = root.display().to_string();
    let human = report.to_human().replace(&root_text, "@ROOT@");
    let json = report.to_json().replace(&root_text, "@ROOT@");
    (human, json, report.exit_code(false))
}

fn golden(file: &str, actual: &str) {
    let path = fixtures().join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{} differs from the report (UPDATE_GOLDEN=1 rewrites it):\n{actual}",
        path.display()
    );
}

/// A shop whose nginx drifted: php8.3 in fastcgi_pass with a php8.2 pool, a location
/// around handoff, nginx's read timeout shorter than handoff's timers, a larger
/// proxy_buffer_size, intercepted 502s, a handoff listener nobody uses, SELinux in the way,
/// low memory, OOM kills, and the error log's lines by reason.
#[test]
fn drift() {
    let (human, json, code) = reports("drift");
    golden("drift.txt", &human);
    golden("drift.json", &json);
    assert_eq!(code, 1, "checks failed");
    assert!(
        !human.contains("s3cr3t") && !json.contains("s3cr3t"),
        "no directive values beyond the ones that matter"
    );
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["version"], 1);
    let drift = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "phpfpm.drift" && c["status"] == "fail")
        .expect("the php8.3 drift fails");
    assert_eq!(drift["reason"], "socket_not_found");
    assert_eq!(drift["source"]["line"], 26);
    assert!(drift["source"]["file"]
        .as_str()
        .unwrap()
        .ends_with("sites-enabled/shop"));
}

/// nginx's own syntax errors, each with its file and line, and a missing include.
#[test]
fn broken() {
    let (human, json, code) = reports("broken");
    golden("broken.txt", &human);
    golden("broken.json", &json);
    assert_eq!(code, 1);
}
