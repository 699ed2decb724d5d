//! `mapper`: parse the command line, run the command, and turn a failure into one line on stderr
//! and an exit status (0 success, 1 error, 2 usage). The work is in the `mapper_cli` library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mapper_cli::{Cli, exit};

fn main() -> ExitCode {
    // clap prints --help/--version (exit 0) and usage errors (exit 2) itself.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(mapper_cli::run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {}", e.one_line());
            ExitCode::from(e.exit_code())
        }
    }
}
