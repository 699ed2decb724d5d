//! `mapper-cli`: the `mapper` command, which reads the map that mapper-server keeps and turns it
//! into what people apply or look at.
//!
//! - [`cli`]: the command line (clap), the dispatch to one module per subcommand, and the
//!   [`Error`] every subcommand's error folds into, with its exit status.
//! - [`connect`]: reaching mapper-server — directly (`--mapper-url`) or through a port-forward
//!   set up by [`portforward`] — with the bearer token, and the one-line errors for a server
//!   that cannot be reached or refuses the token.
//! - [`edges`]: the server's edges as plain values, and their conversion into
//!   [`mapper_intents::Edge`].
//! - [`export`], [`list`], [`visualize`], [`reset`], [`policy`], [`audit`], [`helm`],
//!   [`dashboard`], [`completions`]:
//!   the subcommands.
//! - [`declared`]: reading declared ClientIntents (files, directories, stdin, the cluster) for
//!   `policy`, `audit` and `export --declared`.
//! - [`releases`]: a Helm release's revisions read from the cluster (Helm's Secrets or
//!   ConfigMaps) for `audit --helm-release`.
//! - [`netpolicies`]: NetworkPolicies against the observed calls into the pods they select
//!   (`audit`), with labels from `--inventory`.
//! - [`services`]: the Services `policy` resolves Service targets through (`--inventory`,
//!   `--cluster`).
//! - [`output`]: stdout and `-o FILE`, quiet on a closed pipe.
//!
//! `main.rs` only parses the arguments, runs [`run`] and turns an [`Error`] into one line on
//! stderr and an exit status.

#![forbid(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod completions;
pub mod connect;
pub mod dashboard;
pub mod declared;
pub mod edges;
pub mod export;
pub mod helm;
pub mod list;
pub mod netpolicies;
pub mod output;
pub mod policy;
pub mod portforward;
pub mod releases;
pub mod reset;
pub mod services;
pub mod visualize;

pub use cli::{Cli, Command, Error, exit, run};
