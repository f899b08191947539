//! The glob patterns of nginx's `include` (`glob(3)`: `*`, `?`, `[...]`), expanded in sorted
//! order, as glibc's `glob()` returns them.

use std::path::{Component, Path, PathBuf};

/// Whether `pattern` has a wildcard, which makes nginx expand it instead of opening it.
pub(crate) fn has_magic(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Every existing path matching `pattern`, sorted; hidden names only match a pattern that
/// starts with `.`.
pub(crate) fn expand(pattern: &Path) -> Vec<PathBuf> {
    let start = if pattern.is_absolute() { "/" } else { "." };
    let mut found = vec![PathBuf::from(start)];
    for component in pattern.components() {
        let Component::Normal(part) = component else {
            continue;
        };
        let part = part.to_string_lossy();
        let mut next = Vec::new();
        for base in &found {
            if !has_magic(&part) {
                let path = base.join(&*part);
                if path.symlink_metadata().is_ok() {
                    next.push(path);
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(base) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.') || part.starts_with('.'))
                .filter(|n| matches(part.as_bytes(), n.as_bytes()))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = next;
    }
    found
}

/// fnmatch(3) without flags: `*` any run, `?` one byte, `[abc]`, `[a-z]`, `[!x]`.
pub(crate) fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            matches(&pattern[1..], name) || (!name.is_empty() && matches(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => matches(&pattern[1..], &name[1..]),
        (Some(b'['), Some(&c)) => match class(&pattern[1..], c) {
            Some((true, rest)) => matches(rest, &name[1..]),
            Some((false, _)) => false,
            None => c == b'[' && matches(&pattern[1..], &name[1..]),
        },
        (Some(p), Some(c)) => p == c && matches(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// A bracket class after its `[`: whether `c` is in it, and the pattern after its `]`;
/// `None` when the class is not closed (then `[` is literal).
fn class(pattern: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (negated, mut i) = match pattern.first() {
        Some(b'!' | b'^') => (true, 1),
        _ => (false, 0),
    };
    let mut hit = false;
    let mut first = true;
    while i < pattern.len() {
        let p = pattern[i];
        if p == b']' && !first {
            return Some((hit != negated, &pattern[i + 1..]));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            hit |= (p..=pattern[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= p == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_rules() {
        assert!(matches(b"*.conf", b"default.conf"));
        assert!(!matches(b"*.conf", b"default.conf.bak"));
        assert!(matches(b"php?.?-fpm", b"php8.2-fpm"));
        assert!(matches(b"[a-c]*", b"b.conf") && !matches(b"[!a-c]*", b"b.conf"));
        assert!(matches(b"*", b"") && !matches(b"?", b""));
    }

    #[test]
    fn expansion_is_sorted_and_skips_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.conf", "a.conf", ".hidden.conf", "c.txt"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/x.conf"), "").unwrap();
        let got = expand(&dir.path().join("*.conf"));
        assert_eq!(got, [dir.path().join("a.conf"), dir.path().join("b.conf")]);
        assert_eq!(
            expand(&dir.path().join("s*/*.conf")),
            [dir.path().join("sub/x.conf")]
        );
        assert!(expand(&dir.path().join("none-*.conf")).is_empty());
    }
}
