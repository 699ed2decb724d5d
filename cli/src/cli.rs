//! The command line: global connection flags, one subcommand per module, and the error every
//! subcommand's error folds into.

use clap::{Parser, Subcommand};

use crate::{audit, completions, connect, dashboard, edges, export, helm, list, output, policy, reset, visualize};

/// Exit statuses scripts can rely on.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command failed: server unreachable or refusing, bad input file, cannot write.
    pub const ERROR: u8 = 1;
    /// The command line is wrong (unknown flag, conflicting flags, a missing `--yes`).
    pub const USAGE: u8 = 2;
    /// `audit` found what `--fail-on` names.
    pub const FINDINGS: u8 = 3;
}

/// The exit status paragraph every `--help` ends with.
#[macro_export]
#[doc(hidden)]
macro_rules! exit_status_help {
    () => {
        "Exit status: 0 success; 1 error (server unreachable or refusing, bad input file, cannot \
         write); 2 usage error; 3 (audit) findings that --fail-on names."
    };
}

/// Reads the map mapper-server keeps of which workloads talk to which, and exports it as
/// Otterize ClientIntents, lists or draws it, resets it, or shows the NetworkPolicies a set of
/// ClientIntents produces.
///
/// mapper-server is reached at --mapper-url, or else through a port-forward via the Kubernetes
/// API to its Service (--mapper-service-name in --mapper-namespace), as kubectl port-forward
/// would do; no kubectl is needed. Results go to stdout, diagnostics to stderr.
#[derive(Debug, Parser)]
#[command(
    name = "mapper",
    version,
    about,
    long_about,
    propagate_version = true,
    after_help = concat!(
        "Examples:\n",
        "  mapper export -n team1 -n team2 --output-version v1alpha2\n",
        "  mapper --mapper-url http://127.0.0.1:9090 list\n",
        "  mapper visualize --format svg -o map.svg\n",
        "  mapper policy -f intents/\n",
        "  mapper audit --declared charts/transaction-service/\n",
        "  mapper dashboard\n\n",
        exit_status_help!()
    )
)]
pub struct Cli {
    /// How to reach mapper-server.
    #[command(flatten)]
    pub connect: connect::ConnectOpts,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export the observed traffic as Otterize ClientIntents, one per client workload.
    Export(export::ExportArgs),
    /// List, per client workload, the servers it calls and on which ports.
    List(list::ListArgs),
    /// Draw the map: Graphviz DOT, Mermaid, SVG, PNG or JPEG.
    Visualize(visualize::VisualizeArgs),
    /// Forget every edge mapper-server has recorded.
    Reset(reset::ResetArgs),
    /// Compare declared ClientIntents (files, the cluster's, or a Helm release's) with the
    /// observed traffic: missing calls (blocked once enforced), unused and covered targets;
    /// and the calls declared NetworkPolicies would deny.
    Audit(audit::AuditArgs),
    /// Helm releases: per revision, the calls its ClientIntents added and removed, and whether
    /// observed traffic still uses the removed ones.
    Helm(helm::HelmArgs),
    /// Show the NetworkPolicies the intents operator builds from ClientIntents files, and the
    /// pod labels they rely on. Needs no server (Service targets: the Services, from files or the
    /// cluster).
    Policy(policy::PolicyArgs),
    /// Serve the live map in a browser (a local web page; read-only): workloads by namespace
    /// and Helm release, a workload's calls and ClientIntents, the audit overlay.
    Dashboard(dashboard::DashboardArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// mapper-server could not be reached, or refused the request.
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    /// The edges could not be fetched.
    #[error(transparent)]
    Fetch(#[from] edges::FetchError),
    /// `export` failed.
    #[error(transparent)]
    Export(#[from] export::ExportError),
    /// `visualize` failed.
    #[error(transparent)]
    Visualize(#[from] visualize::VisualizeError),
    /// `reset` failed or was not confirmed.
    #[error(transparent)]
    Reset(#[from] reset::ResetError),
    /// `policy` failed.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// `audit` failed, or found what --fail-on names.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// `dashboard` could not serve.
    #[error(transparent)]
    Dashboard(#[from] dashboard::DashboardError),
    /// Writing the result failed.
    #[error(transparent)]
    Output(#[from] output::OutputError),
}

impl Error {
    /// The exit status for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Reset(e) if e.is_usage() => exit::USAGE,
            Error::Visualize(e) if e.is_usage() => exit::USAGE,
            Error::Audit(e) if e.is_findings() => exit::FINDINGS,
            _ => exit::ERROR,
        }
    }

    /// The message and its causes on one line, `: `-separated ([`mapper_intents::error_chain`]).
    pub fn one_line(&self) -> String {
        mapper_intents::error_chain(self).replace('\n', " ")
    }
}

/// Runs one command to completion.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Export(args) => export::run(&cli.connect, &args).await,
        Command::List(args) => list::run(&cli.connect, &args).await,
        Command::Visualize(args) => visualize::run(&cli.connect, &args).await,
        Command::Reset(args) => reset::run(&cli.connect, &args).await,
        Command::Audit(args) => audit::run(&cli.connect, &args).await,
        Command::Helm(args) => helm::run(&cli.connect, &args).await,
        Command::Dashboard(args) => dashboard::run(&cli.connect, &args).await,
        Command::Policy(args) => policy::run(&cli.connect, &args).await,
        Command::Completions(args) => completions::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example_and_the_root_documents_exit_statuses() {
        let root = Cli::command();
        let help = root.get_after_help().map(ToString::to_string).unwrap_or_default();
        assert!(help.contains("Exit status: 0"), "{help}");
        for sub in root.get_subcommands() {
            let after = sub.get_after_help().map(ToString::to_string).unwrap_or_default();
            assert!(after.contains("mapper "), "`mapper {}` has no example", sub.get_name());
            assert!(after.contains("Exit status"), "`mapper {}` has no exit statuses", sub.get_name());
        }
    }

    #[test]
    fn one_line_joins_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = Error::Output(output::OutputError::Write { path: "out.yaml".into(), error: io });
        assert_eq!(err.one_line(), "cannot write out.yaml: gone");
    }
}
