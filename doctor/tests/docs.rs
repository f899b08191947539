//! `docs/operations.md` lists exactly the checks doctor runs, in the order it runs them.

use handoff_doctor::CHECKS;

#[test]
fn every_check_id_is_documented_in_order() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
    let doc = std::fs::read_to_string(path).expect("docs/operations.md exists");
    let section = doc
        .split("### The checks")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("a \"### The checks\" section");
    let ids: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    assert_eq!(ids, CHECKS, "the table of checks in docs/operations.md");
}
