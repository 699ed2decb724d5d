//! `mapper-deploy`: render the chart without helm, or regenerate deploy/manifests/.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mapper_deploy::{CHART_DIR, Chart, MANIFESTS_FILE, Release, render, render_manifests, values, workspace_root};

/// Render mapper's Helm chart as `helm template` would, or regenerate the plain manifests.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the chart rendered with the given values (a subset of `helm template`).
    Render {
        /// Chart directory.
        #[arg(long, default_value_os_t = workspace_root().join(CHART_DIR))]
        chart: PathBuf,
        /// Release namespace.
        #[arg(long, short = 'n', default_value = mapper_deploy::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Release name.
        #[arg(long, default_value = "mapper")]
        release: String,
        /// Values files, applied in order over the chart's values.yaml.
        #[arg(long = "values", short = 'f')]
        values: Vec<PathBuf>,
        /// KEY.PATH=VALUE, applied after the files (VALUE is read as a YAML scalar).
        #[arg(long)]
        set: Vec<String>,
        /// Also print NOTES.txt (to stderr).
        #[arg(long)]
        notes: bool,
    },
    /// Write deploy/manifests/mapper.yaml from the chart (what the manifests test compares).
    Manifests {
        /// Fail instead of writing when the file is not up to date.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Render { chart, namespace, release, values: files, set, notes } => {
            let chart = Chart::load(&chart)?;
            let mut overlays = Vec::new();
            for file in files {
                let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let overlay: serde_json::Value = mapper_intents::stream::from_str(&text)
                    .with_context(|| format!("{} is not YAML", file.display()))?;
                overlays.push(overlay);
            }
            for expr in set {
                overlays.push(values::parse_set(&expr)?);
            }
            let rendered = render(&chart, &Release { name: release, namespace }, &overlays)?;
            print!("{}", rendered.to_yaml_stream());
            if let (true, Some(text)) = (notes, rendered.notes) {
                eprint!("{text}");
            }
        }
        Command::Manifests { check } => {
            let root = workspace_root();
            let expected = render_manifests(&root)?;
            let path = root.join(MANIFESTS_FILE);
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current == expected {
                eprintln!("{MANIFESTS_FILE} is up to date");
            } else if check {
                anyhow::bail!("{MANIFESTS_FILE} differs from the chart: run `cargo run -p mapper-deploy -- manifests`");
            } else {
                std::fs::write(&path, expected).with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {MANIFESTS_FILE}");
            }
        }
    }
    Ok(())
}
