//! Configuration shipped or shown elsewhere in the repository stays valid: every `*.toml`
//! under `deploy/` and every ```toml block in `README.md`.

use std::fs;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn toml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            toml_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "toml") {
            found.push(path);
        }
    }
}

/// Every example configuration under `deploy/` (recursively) loads. None yet is fine.
#[test]
fn deploy_examples_load() {
    let mut files = Vec::new();
    toml_files(&workspace().join("deploy"), &mut files);
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| handoff_config::from_file(path).err())
        .flat_map(|error| error.problems())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every ```toml code block in `README.md` loads (skipped while there is no README).
#[test]
fn readme_examples_load() {
    let Ok(readme) = fs::read_to_string(workspace().join("README.md")) else {
        return;
    };
    let mut failures = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (number, line) in readme.lines().enumerate() {
        match &mut block {
            None if line.trim_start().starts_with("```toml") => {
                block = Some((number + 1, String::new()))
            }
            None => {}
            Some((start, text)) if line.trim_start().starts_with("```") => {
                let origin = format!("README.md (block at line {start})");
                if let Err(error) = handoff_config::from_str(text, &origin) {
                    failures.extend(error.problems());
                }
                block = None;
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
