//! The files under a directory, for every reader of a directory of manifests: the CLI's
//! declared ClientIntents, mapper-cluster's inventory, mapper-deploy's chart templates. Each
//! says which files it takes and how deep it goes; the walk is the same: depth first, each
//! directory's entries in name order, symbolic links followed (a link back to a directory
//! the walk is already inside is not followed again: a loop of links ends). This module lists
//! directories and reads nothing else; the callers read the files.

use std::io;
use std::path::{Path, PathBuf};

/// How a directory is walked.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    /// Which files to take, by path (directories are descended into whatever their name).
    pub take: fn(&Path) -> bool,
    /// How many levels of subdirectories to descend into: 0 takes only the directory's own
    /// files; `usize::MAX` has no bound.
    pub max_depth: usize,
    /// Skip entries whose name starts with `.` or is not UTF-8 (such as the `..data` links of a
    /// mounted ConfigMap).
    pub skip_hidden: bool,
}

/// A directory, or an entry the walk would take, that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}", path.display())]
pub struct WalkError {
    /// The directory or entry.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub error: io::Error,
}

/// Whether `path` ends in `.yaml`, `.yml` or `.json`, in any case.
pub fn has_manifest_extension(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("yaml" | "yml" | "json"))
}

impl Walk {
    /// The files under `dir` that [`Walk::take`] takes. An entry whose target cannot be read
    /// (a dangling link) is an error when the walk would take it as a file, and skipped
    /// otherwise.
    pub fn files(&self, dir: &Path) -> Result<Vec<PathBuf>, WalkError> {
        let mut out = Vec::new();
        let mut inside = Vec::new();
        self.walk(dir, 0, &mut inside, &mut out)?;
        Ok(out)
    }

    /// `inside`: the directories being walked, from the top down to `dir`'s parent, as their
    /// real paths.
    fn walk(
        &self,
        dir: &Path,
        depth: usize,
        inside: &mut Vec<PathBuf>,
        out: &mut Vec<PathBuf>,
    ) -> Result<(), WalkError> {
        let read_err = |error| WalkError { path: dir.to_owned(), error };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            entries.push(entry.map_err(read_err)?.path());
        }
        entries.sort();
        inside.push(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned()));
        for path in entries {
            let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
            if self.skip_hidden && hidden {
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    let a_loop = || std::fs::canonicalize(&path).is_ok_and(|real| inside.contains(&real));
                    if depth < self.max_depth && !a_loop() {
                        self.walk(&path, depth + 1, inside, out)?;
                    }
                }
                Ok(_) if (self.take)(&path) => out.push(path),
                Ok(_) => {}
                Err(error) if (self.take)(&path) => return Err(WalkError { path, error }),
                Err(_) => {}
            }
        }
        inside.pop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        for name in names {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
            }
            std::fs::write(&path, "").unwrap_or_else(|e| panic!("write: {e}"));
        }
        dir
    }

    fn names(walk: Walk, dir: &Path) -> Vec<String> {
        let files = walk.files(dir).unwrap_or_else(|e| panic!("walk: {e}"));
        files.iter().map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string()).collect()
    }

    #[test]
    fn files_come_depth_first_in_name_order_within_the_depth() {
        let dir =
            tree(&["b.yaml", "a.YML", "c.json", "notes.txt", "sub/d.yaml", "sub/deeper/e.yaml", ".hidden/f.yaml"]);
        let manifests = Walk { take: has_manifest_extension, max_depth: usize::MAX, skip_hidden: true };
        assert_eq!(names(manifests, dir.path()), ["a.YML", "b.yaml", "c.json", "sub/d.yaml", "sub/deeper/e.yaml"]);
        assert_eq!(names(Walk { max_depth: 1, ..manifests }, dir.path()), ["a.YML", "b.yaml", "c.json", "sub/d.yaml"]);
        assert_eq!(names(Walk { max_depth: 0, ..manifests }, dir.path()), ["a.YML", "b.yaml", "c.json"]);
        let everything = Walk { take: |_| true, max_depth: usize::MAX, skip_hidden: false };
        assert_eq!(names(everything, dir.path()).len(), 7);
    }

    #[test]
    fn a_loop_of_links_is_walked_once() {
        let dir = tree(&["a.yaml", "sub/b.yaml"]);
        let link = |to: &Path, at: &Path| {
            std::os::unix::fs::symlink(to, at).unwrap_or_else(|e| panic!("symlink: {e}"));
        };
        // sub/up → the top; sub/self → sub; other → sub (not a loop: walked).
        link(dir.path(), &dir.path().join("sub/up"));
        link(&dir.path().join("sub"), &dir.path().join("sub/self"));
        link(&dir.path().join("sub"), &dir.path().join("other"));
        let manifests = Walk { take: has_manifest_extension, max_depth: usize::MAX, skip_hidden: true };
        assert_eq!(names(manifests, dir.path()), ["a.yaml", "other/b.yaml", "sub/b.yaml"]);
    }

    #[test]
    fn a_dangling_link_fails_only_when_it_would_be_taken() {
        let dir = tree(&["a.yaml"]);
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("notes.txt"))
            .unwrap_or_else(|e| panic!("symlink: {e}"));
        let manifests = Walk { take: has_manifest_extension, max_depth: 0, skip_hidden: false };
        assert_eq!(names(manifests, dir.path()), ["a.yaml"]);
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("b.yaml"))
            .unwrap_or_else(|e| panic!("symlink: {e}"));
        let err = manifests.files(dir.path()).err().unwrap_or_else(|| panic!("b.yaml dangles"));
        assert_eq!(err.to_string(), format!("cannot read {}", dir.path().join("b.yaml").display()));
        let missing = dir.path().join("missing");
        let err = manifests.files(&missing).err().unwrap_or_else(|| panic!("no such directory"));
        assert_eq!(err.path, missing);
    }
}
