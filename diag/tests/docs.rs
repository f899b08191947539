//! `docs/failure-reasons.md` describes exactly the reasons in `Reason::ALL`.

use handoff_diag::Reason;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/failure-reasons.md");
    std::fs::read_to_string(path).expect("docs/failure-reasons.md exists")
}

/// The cells of the summary table's rows: `| reason | status | Proxy-Status error | phase |`.
fn table_rows(doc: &str) -> Vec<Vec<String>> {
    doc.lines()
        .filter(|l| l.starts_with("| [`") || l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

fn label_of(cell: &str) -> &str {
    cell.split('`').nth(1).unwrap_or("")
}

/// Every reason has a table row with its status and Proxy-Status type, and a section.
#[test]
fn every_reason_is_documented() {
    let doc = doc();
    let rows = table_rows(&doc);
    for r in Reason::ALL {
        let row = rows
            .iter()
            .find(|row| label_of(&row[0]) == r.as_str())
            .unwrap_or_else(|| panic!("no table row for {r}"));
        let status = r.status().to_string();
        assert!(
            row[1].contains(&status),
            "{r}: status cell {:?}, want {status}",
            row[1]
        );
        assert_eq!(row[2], format!("`{}`", r.proxy_status_error()), "{r}");
        assert!(
            doc.lines().any(|l| l == format!("## {}", r.as_str())),
            "no section for {r}"
        );
    }
}

/// The doc lists no reason the code does not know.
#[test]
fn no_unknown_reasons() {
    let doc = doc();
    for row in table_rows(&doc) {
        let label = label_of(&row[0]);
        assert!(
            Reason::from_label(label).is_some(),
            "unknown reason {label:?} in the table"
        );
    }
    for heading in doc.lines().filter_map(|l| l.strip_prefix("## ")) {
        assert!(
            Reason::from_label(heading).is_some(),
            "unknown reason section {heading:?}"
        );
    }
    assert_eq!(table_rows(&doc).len(), Reason::ALL.len());
}
