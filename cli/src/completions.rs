//! `mapper completions`: shell completion scripts, generated from the command line definition.

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell as Generator;

use crate::cli::{Cli, Error};
use crate::output;

/// The shells completions are generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// `mapper completions`.
#[derive(Debug, Clone, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  mapper completions bash > /etc/bash_completion.d/mapper\n",
    "  mapper completions zsh > \"${fpath[1]}/_mapper\"\n",
    "  mapper completions fish > ~/.config/fish/completions/mapper.fish\n\n",
    crate::exit_status_help!()
))]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let generator = match shell {
        Shell::Bash => Generator::Bash,
        Shell::Zsh => Generator::Zsh,
        Shell::Fish => Generator::Fish,
    };
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut command, "mapper", &mut out);
    out
}

/// Runs `mapper completions`.
pub fn run(args: &CompletionsArgs) -> Result<(), Error> {
    output::stdout(&script(args.shell))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_know_the_subcommands_and_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(script(shell)).unwrap_or_else(|e| panic!("not UTF-8: {e}"));
            for word in ["export", "visualize", "output-version", "mapper-url"] {
                assert!(text.contains(word), "{shell:?} completions lack {word}");
            }
        }
    }
}
