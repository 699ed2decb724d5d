//! Where results go: stdout (a closed pipe, as in `mapper list | head`, is not an error) or a
//! file given with `-o`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a result could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Writing to standard output failed.
    #[error("cannot write to standard output")]
    Stdout {
        /// The I/O error.
        #[source]
        error: io::Error,
    },
    /// Writing a file failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: io::Error,
    },
    /// Creating an output directory failed.
    #[error("cannot create directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: io::Error,
    },
}

/// Writes `bytes` to stdout and flushes; a reader that went away ends the output quietly.
pub fn stdout(bytes: &[u8]) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(OutputError::Stdout { error }),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` (replacing it).
pub fn file(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    std::fs::write(path, bytes).map_err(|error| OutputError::Write { path: path.to_owned(), error })
}

/// Writes `bytes` to `path` when given, else to stdout.
pub fn to(path: Option<&Path>, bytes: &[u8]) -> Result<(), OutputError> {
    match path {
        Some(path) => file(path, bytes),
        None => stdout(bytes),
    }
}

/// Creates `path` and its parents.
pub fn create_dir(path: &Path) -> Result<(), OutputError> {
    std::fs::create_dir_all(path).map_err(|error| OutputError::CreateDir { path: path.to_owned(), error })
}
