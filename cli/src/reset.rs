//! `mapper reset`: forget every edge, after a confirmation on a terminal (`--yes` skips it; with
//! stdin not a terminal, `--yes` is required so a script never resets by accident).

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use crate::cli::Error;
use crate::connect::{ConnectOpts, Mapper};

/// `mapper reset`.
#[derive(Debug, Clone, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  mapper reset\n",
    "  mapper reset --yes   # in scripts: without --yes and without a terminal, nothing is reset\n\n",
    crate::exit_status_help!()
))]
pub struct ResetArgs {
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// Why the map was not reset.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// No terminal to ask on, and no `--yes`.
    #[error("refusing to reset the map without confirmation: stdin is not a terminal; pass --yes")]
    NotConfirmed,
    /// The question was answered with something other than yes.
    #[error("reset cancelled")]
    Declined,
    /// The answer could not be read.
    #[error("cannot read the confirmation from stdin")]
    Read {
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
}

impl ResetError {
    /// Whether the command line is at fault (a missing `--yes`): exit status 2.
    pub fn is_usage(&self) -> bool {
        matches!(self, ResetError::NotConfirmed)
    }
}

/// Whether `answer` means yes (`y` or `yes`, any case).
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn confirm(address: &str) -> Result<(), ResetError> {
    eprint!("Forget every edge mapper-server at {address} has recorded? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|error| ResetError::Read { error })?;
    if is_yes(&answer) { Ok(()) } else { Err(ResetError::Declined) }
}

/// Runs `mapper reset`.
pub async fn run(connect: &ConnectOpts, args: &ResetArgs) -> Result<(), Error> {
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(ResetError::NotConfirmed.into());
    }
    let mut mapper = Mapper::connect(connect).await?;
    if !args.yes {
        confirm(&mapper.address().to_string())?;
    }
    let removed = mapper.reset().await?;
    eprintln!("Removed {removed} edge(s) from mapper-server at {}", mapper.address());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_confirms() {
        assert!(is_yes("y\n") && is_yes("YES") && is_yes(" yes "));
        assert!(!is_yes("") && !is_yes("n") && !is_yes("yess"));
        assert!(ResetError::NotConfirmed.is_usage() && !ResetError::Declined.is_usage());
    }
}
