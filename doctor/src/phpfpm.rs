//! php-fpm's pool files (`www.conf` and friends): INI sections, one per pool, with the keys
//! doctor checks and the line of each.

use std::path::{Path, PathBuf};

/// One `[pool]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The section name (`www`).
    pub name: String,
    /// The file it is in.
    pub file: PathBuf,
    /// The section header's line.
    pub line: usize,
    /// `key = value` pairs in file order, `$pool` replaced, with their lines.
    pub values: Vec<(String, String, usize)>,
}

// === impl Pool ===

impl Pool {
    /// The last value of `key` and its line.
    pub fn get(&self, key: &str) -> Option<(&str, usize)> {
        self.values
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, l)| (v.as_str(), *l))
    }

    /// The pool's `listen` as an address: `unix:/run/php/php8.2-fpm.sock`, `127.0.0.1:9000`
    /// (a bare port listens on every address).
    pub fn listen(&self) -> Option<(String, usize)> {
        let (value, line) = self.get("listen")?;
        let text = if value.starts_with('/') {
            format!("unix:{value}")
        } else if value.bytes().all(|b| b.is_ascii_digit()) {
            format!("0.0.0.0:{value}")
        } else {
            value.to_owned()
        };
        Some((text, line))
    }
}

/// Every pool in the `*.conf` files of `dirs`, and the files that could not be read.
pub fn pools(dirs: &[PathBuf]) -> (Vec<Pool>, Vec<String>) {
    let mut pools = Vec::new();
    let mut problems = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        files.sort();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => pools.extend(parse(&file, &text)),
                Err(e) => problems.push(format!("{}: cannot be read: {e}", file.display())),
            }
        }
    }
    (pools, problems)
}

/// The pools of one file.
pub fn parse(file: &Path, text: &str) -> Vec<Pool> {
    let mut pools: Vec<Pool> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            pools.push(Pool {
                name: name.trim().to_owned(),
                file: file.to_owned(),
                line: i + 1,
                values: Vec::new(),
            });
            continue;
        }
        let (Some(pool), Some((key, value))) = (pools.last_mut(), line.split_once('=')) else {
            continue;
        };
        let value = value.split(" ;").next().unwrap_or(value).trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value)
            .replace("$pool", &pool.name);
        pool.values.push((key.trim().to_owned(), value, i + 1));
    }
    pools.retain(|p| p.name != "global");
    pools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_keys_and_lines() {
        let text =
            "; a comment\n[global]\npid = /run/php/php8.2-fpm.pid\n\n[www]\nuser = www-data\n\
                    listen = /run/php/php-$pool.sock ; the socket\nlisten.mode = \"0660\"\n\
                    pm.max_children = 5\n[api]\nlisten = 9000\n";
        let pools = parse(Path::new("/etc/php/8.2/fpm/pool.d/www.conf"), text);
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0].name, "www");
        assert_eq!(pools[0].line, 5);
        assert_eq!(
            pools[0].listen(),
            Some(("unix:/run/php/php-www.sock".into(), 7))
        );
        assert_eq!(pools[0].get("listen.mode"), Some(("0660", 8)));
        assert_eq!(pools[1].listen(), Some(("0.0.0.0:9000".into(), 11)));
    }
}
