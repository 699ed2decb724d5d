//! `mapper export`: the observed traffic as Otterize ClientIntents, shaped the way the Otterize
//! CLI shapes an export (mapper-intents does the shaping and the rendering).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use mapper_intents::{ClientIntentsDoc, ExportOptions, IntentsVersion, RenderError, Target};

use crate::cli::Error;
use crate::connect::{ConnectOpts, Mapper};
use crate::edges::{ObservedEdge, QueryArgs};
use crate::output;

/// The ClientIntents version to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputVersion {
    /// k8s.otterize.com/v1alpha2: no kinds; `svc:` names a Service.
    #[value(name = "v1alpha2")]
    V1Alpha2,
    /// k8s.otterize.com/v1alpha3 (alias v1).
    #[value(name = "v1alpha3", alias = "v1")]
    V1Alpha3,
    /// k8s.otterize.com/v1beta1.
    #[value(name = "v1beta1")]
    V1Beta1,
    /// k8s.otterize.com/v2alpha1.
    #[value(name = "v2alpha1")]
    V2Alpha1,
    /// k8s.otterize.com/v2beta1 (alias v2).
    #[value(name = "v2beta1", alias = "v2")]
    V2Beta1,
}

impl From<OutputVersion> for IntentsVersion {
    fn from(v: OutputVersion) -> Self {
        match v {
            OutputVersion::V1Alpha2 => IntentsVersion::V1Alpha2,
            OutputVersion::V1Alpha3 => IntentsVersion::V1Alpha3,
            OutputVersion::V1Beta1 => IntentsVersion::V1Beta1,
            OutputVersion::V2Alpha1 => IntentsVersion::V2Alpha1,
            OutputVersion::V2Beta1 => IntentsVersion::V2Beta1,
        }
    }
}

/// YAML or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Multi-document YAML, `---` between documents.
    Yaml,
    /// A JSON `List` (`kubectl apply -f` applies each item).
    Json,
}

/// One file, or one file per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputType {
    /// Everything in the file given with -o.
    SingleFile,
    /// One `<name>.<namespace>.yaml` (`.json` with --format json) per client in the directory
    /// given with -o.
    Dir,
}

/// `mapper export`.
#[derive(Debug, Clone, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  mapper export -n team1 -n team2 --output-version v1alpha2\n",
    "  mapper export --server ledger.team3 --since 24h\n",
    "  mapper export -o intents/ --output-type dir && kubectl apply -f intents/\n\n",
    crate::exit_status_help!()
))]
pub struct ExportArgs {
    /// Which edges.
    #[command(flatten)]
    pub query: QueryArgs,
    /// ClientIntents API version to write.
    #[arg(long, value_enum, default_value = "v2beta1", value_name = "VERSION")]
    pub output_version: OutputVersion,
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// Write to this file (or directory, with --output-type dir) instead of stdout.
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// With -o: one file, or a directory with one file per client.
    #[arg(long, value_enum, default_value = "single-file", requires_if("dir", "output"))]
    pub output_type: OutputType,
    /// Leave out traffic to addresses outside the cluster (v1alpha2 cannot express it and
    /// always leaves it out).
    #[arg(long)]
    pub exclude_internet: bool,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The documents cannot be written in the version asked for.
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// The documents for `edges`, with the export flags applied, and how many internet targets were
/// left out because the version cannot express them (v1alpha2).
pub fn documents(edges: &[ObservedEdge], args: &ExportArgs) -> (Vec<ClientIntentsDoc>, usize) {
    let edges: Vec<mapper_intents::Edge> = edges.iter().filter_map(ObservedEdge::to_intents_edge).collect();
    let opts = ExportOptions {
        include_internet: !args.exclude_internet,
        client_namespaces: args.query.namespaces.clone(),
        ..ExportOptions::default()
    };
    let mut docs = mapper_intents::intents_from_edges(&edges, &opts);
    let mut dropped = 0;
    if IntentsVersion::from(args.output_version) == IntentsVersion::V1Alpha2 {
        for doc in &mut docs {
            let before = doc.targets.len();
            doc.targets.retain(|t| !matches!(t, Target::Internet(_)));
            dropped += before - doc.targets.len();
        }
        docs.retain(|d| !d.targets.is_empty());
    }
    (docs, dropped)
}

fn render(docs: &[ClientIntentsDoc], version: IntentsVersion, format: Format) -> Result<String, ExportError> {
    Ok(match format {
        Format::Yaml => mapper_intents::render_yaml(docs, version)?,
        Format::Json => mapper_intents::render_json(docs, version)?,
    })
}

/// Runs `mapper export`.
pub async fn run(connect: &ConnectOpts, args: &ExportArgs) -> Result<(), Error> {
    let mut mapper = Mapper::connect(connect).await?;
    let edges = args.query.fetch(&mut mapper, !args.exclude_internet).await?;
    let (docs, dropped) = documents(&edges, args);
    let version = IntentsVersion::from(args.output_version);
    if dropped > 0 {
        eprintln!(
            "warning: left out {dropped} internet target(s): {version} cannot express them (use --output-version \
             v1alpha3 or later to keep them)"
        );
    }
    if docs.is_empty() {
        eprintln!("No connections found.");
    }
    match (&args.output, args.output_type) {
        (None, _) => output::stdout(render(&docs, version, args.format)?.as_bytes())?,
        (Some(path), OutputType::SingleFile) => {
            output::file(path, render(&docs, version, args.format)?.as_bytes())?;
            eprintln!("Wrote {} ClientIntents to {}", docs.len(), path.display());
        }
        (Some(dir), OutputType::Dir) => {
            output::create_dir(dir)?;
            for doc in &docs {
                let text = render(std::slice::from_ref(doc), version, args.format)?;
                let mut name = mapper_intents::file_name(doc);
                if args.format == Format::Json {
                    name = format!("{}.json", name.trim_end_matches(".yaml"));
                }
                output::file(&dir.join(name), text.as_bytes())?;
            }
            eprintln!("Wrote {} ClientIntents files to {}", docs.len(), dir.display());
        }
    }
    Ok(())
}
