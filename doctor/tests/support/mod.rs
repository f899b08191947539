//! Fixture trees hold `@ROOT@` where a config needs the tree's absolute path: a copy of a
//! tree with `@ROOT@` filled in. Shared by `golden.rs` and `proxy/tests/doctor.rs`.

use std::path::Path;

/// Copies `from` to `to`, replacing `@ROOT@` in every file with `root`.
pub(crate) fn copy_tree(from: &Path, to: &Path, root: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target, root);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(&target, text.replace("@ROOT@", &root.display().to_string())).unwrap();
        }
    }
}
