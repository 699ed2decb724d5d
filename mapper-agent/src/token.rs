//! The bearer token the agent presents to mapper-server, read from a file.
//!
//! In a cluster the file is a projected ServiceAccount token, which the kubelet
//! rewrites (an atomic symlink swap) well before it expires. The file is small,
//! so it is read again before every send: a rotated token is used at once. A
//! read that fails, or finds the file empty (a rewrite caught half-way), keeps
//! the last good token; the failure is logged once, and so is the recovery.

use std::{
    fmt, io,
    path::{Path, PathBuf},
};

use tracing::{info, warn};

/// Why the token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read --token-file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--token-file {path} is empty")]
    Empty { path: PathBuf },
}

/// A token file and the last token read from it. `Debug` never shows the token.
#[derive(Clone)]
pub struct TokenFile {
    path: PathBuf,
    token: String,
    /// The last re-read failed (logged once until a read succeeds).
    failing: bool,
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFile").field("path", &self.path).finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read { path: path.into(), source })?;
    let token = text.trim();
    if token.is_empty() { Err(TokenError::Empty { path: path.into() }) } else { Ok(token.to_string()) }
}

impl TokenFile {
    /// Reads the token once; at start-up an unreadable or empty file is an error.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, TokenError> {
        let path = path.into();
        let token = read(&path)?;
        Ok(Self { path, token, failing: false })
    }

    /// The token to send now: the file's current content, or the last good
    /// token when the file cannot be read.
    pub fn current(&mut self) -> &str {
        match read(&self.path) {
            Ok(token) => {
                if self.failing {
                    info!(path = %self.path.display(), "token file readable again");
                    self.failing = false;
                }
                if token != self.token {
                    info!(path = %self.path.display(), "token file changed: sending the new token");
                    self.token = token;
                }
            }
            Err(e) => {
                if !self.failing {
                    let error = match &e {
                        TokenError::Read { source, .. } => source.to_string(),
                        TokenError::Empty { .. } => "the file is empty".to_string(),
                    };
                    warn!(path = %self.path.display(), %error, "cannot re-read the token file: keeping the last token read");
                    self.failing = true;
                }
            }
        }
        &self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rotation_and_keeps_the_last_good_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(TokenFile::load(dir.path().join("token")), Err(TokenError::Read { .. })));
        std::fs::write(dir.path().join("empty"), "\n").expect("write");
        assert!(matches!(TokenFile::load(dir.path().join("empty")), Err(TokenError::Empty { .. })));

        // The kubelet's layout: token -> ..data/token, ..data -> a timestamped directory.
        let version = |name: &str, token: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).expect("mkdir");
            std::fs::write(d.join("token"), token).expect("write");
            let tmp = dir.path().join("..data_tmp");
            std::os::unix::fs::symlink(name, &tmp).expect("symlink");
            std::fs::rename(&tmp, dir.path().join("..data")).expect("swap");
        };
        version("..v1", "first\n");
        let path = dir.path().join("token");
        std::os::unix::fs::symlink("..data/token", &path).expect("symlink token");
        let mut t = TokenFile::load(&path).expect("load");
        assert_eq!(t.current(), "first");
        version("..v2", "second");
        assert_eq!(t.current(), "second", "a rotated token is used at the next send");

        // Half-way through a rewrite, or gone for a moment: the last good token stays.
        std::fs::write(dir.path().join("..v2/token"), "").expect("truncate");
        assert_eq!(t.current(), "second");
        std::fs::remove_file(dir.path().join("..v2/token")).expect("remove");
        assert_eq!(t.current(), "second");
        assert!(t.failing);
        version("..v3", "third");
        assert_eq!(t.current(), "third");
        assert!(!t.failing);
        assert!(!format!("{t:?}").contains("third"), "Debug shows the token: {t:?}");
    }
}
