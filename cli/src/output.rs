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
    /// An output directory's path names something that is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
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

/// Creates `path` and its parents; a `path` that exists must be a directory.
pub fn create_dir(path: &Path) -> Result<(), OutputError> {
    if path.exists() && !path.is_dir() {
        return Err(OutputError::NotADirectory { path: path.to_owned() });
    }
    std::fs::create_dir_all(path).map_err(|error| OutputError::CreateDir { path: path.to_owned(), error })
}

/// Output written as it is produced, to stdout (a reader that went away ends it quietly) or to
/// a file.
#[derive(Debug)]
pub struct Sink {
    to: SinkTo,
    closed: bool,
}

#[derive(Debug)]
enum SinkTo {
    Stdout(io::BufWriter<io::Stdout>),
    File { path: PathBuf, file: io::BufWriter<std::fs::File> },
}

impl Sink {
    /// Standard output.
    pub fn stdout() -> Self {
        Self { to: SinkTo::Stdout(io::BufWriter::with_capacity(1 << 16, io::stdout())), closed: false }
    }

    /// `path` (replacing it) when given, else standard output.
    pub fn to(path: Option<&Path>) -> Result<Self, OutputError> {
        let Some(path) = path else { return Ok(Self::stdout()) };
        let file = std::fs::File::create(path).map_err(|error| OutputError::Write { path: path.to_owned(), error })?;
        let file = io::BufWriter::with_capacity(1 << 16, file);
        Ok(Self { to: SinkTo::File { path: path.to_owned(), file }, closed: false })
    }

    fn fail(&mut self, error: io::Error) -> Result<(), OutputError> {
        match &self.to {
            SinkTo::Stdout(_) if error.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            SinkTo::Stdout(_) => Err(OutputError::Stdout { error }),
            SinkTo::File { path, .. } => Err(OutputError::Write { path: path.clone(), error }),
        }
    }

    /// Writes `bytes` (nothing once a reader of stdout went away).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), OutputError> {
        if self.closed {
            return Ok(());
        }
        let result = match &mut self.to {
            SinkTo::Stdout(out) => out.write_all(bytes),
            SinkTo::File { file, .. } => file.write_all(bytes),
        };
        result.or_else(|e| self.fail(e))
    }

    /// Flushes what is left.
    pub fn finish(mut self) -> Result<(), OutputError> {
        if self.closed {
            return Ok(());
        }
        let result = match &mut self.to {
            SinkTo::Stdout(out) => out.flush(),
            SinkTo::File { file, .. } => file.flush(),
        };
        result.or_else(|e| self.fail(e))
    }

    /// Whether a reader of stdout went away (the rest need not be produced).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
