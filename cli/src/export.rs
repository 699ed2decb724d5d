//! `mapper export`: the observed traffic as Otterize ClientIntents, shaped the way the Otterize
//! CLI shapes an export (mapper-intents does the shaping and the rendering); with
//! `--by-release`, one file per Helm release, for that release's chart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use mapper_intents::audit::AuditScope;
use mapper_intents::{ClientIntentsDoc, ExportOptions, IntentsVersion, RenderError, Target};

use crate::cli::Error;
use crate::connect::{ConnectOpts, Mapper};
use crate::declared::{self, ReadError};
use crate::edges::{ObservedEdge, Peer, QueryArgs, Release};
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
    "  mapper export -o intents/ --output-type dir && kubectl apply -f intents/\n",
    "  mapper export --declared charts/transaction-service/ -o charts/transaction-service/intents.yaml\n",
    "  mapper export -n team1 --by-release -o intents/\n\n",
    "--by-release -o DIR writes, for each Helm release, DIR/<release>.<namespace>.yaml: the\n",
    "ClientIntents of the release's client workloads, ready for the chart's templates/ (a client\n",
    "belongs to the release named by the meta.helm.sh/release-name and release-namespace\n",
    "annotations of the top object of its owner chain, as mapper-server's cluster state has them\n",
    "now). The clients in no release go to DIR/no-release.yaml. With --format json the files\n",
    "end in .json. DIR is created when missing; files of releases not in this export are left\n",
    "alone. --by-release needs -o DIR and goes with neither --output-type nor --declared.\n\n",
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
    /// One file per Helm release in the directory given with -o: DIR/<release>.<namespace>.yaml,
    /// and DIR/no-release.yaml for clients in no release (see below).
    #[arg(long, requires = "output", conflicts_with_all = ["output_type", "declared"])]
    pub by_release: bool,
    /// Leave out traffic to addresses outside the cluster (v1alpha2 cannot express it and
    /// always leaves it out).
    #[arg(long)]
    pub exclude_internet: bool,
    /// Also export calls that never succeeded (every attempt refused or timed out). Left out
    /// by default, as Otterize exports established connections only: access that never
    /// worked should not become policy unasked. `mapper audit` reports them either way.
    #[arg(long)]
    pub include_failed: bool,
    /// Also export calls to the cluster DNS (port 53 of kube-dns/CoreDNS in kube-system),
    /// which every resolving pod makes and Otterize leaves out. `mapper list` shows them.
    #[arg(long)]
    pub include_dns: bool,
    /// Declared ClientIntents to complete (files, directories read recursively, or - for
    /// stdin): writes, for each client with observed calls they do not declare (what `mapper
    /// audit` calls missing), its declared document with those calls added, in the document's
    /// own version; a client with no ClientIntents gets a new one in --output-version.
    #[arg(long, num_args = 1.., value_name = "PATH")]
    pub declared: Vec<PathBuf>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The documents cannot be written in the version asked for.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The --declared ClientIntents could not be read.
    #[error(transparent)]
    Declared(#[from] ReadError),
    /// A release's name or namespace cannot be part of a file name.
    #[error(
        "release {release} of {client} cannot name a file (its name and namespace must be letters, digits, '-', '_' \
         or '.', not starting with '.')"
    )]
    ReleaseFileName {
        /// The release.
        release: Release,
        /// A client that belongs to it, `name.namespace`.
        client: String,
    },
}

/// The file `--by-release` writes the clients in no release to (before the extension).
pub const NO_RELEASE_FILE: &str = "no-release";

/// The file name (before the extension) of a release's ClientIntents: `<release>.<namespace>`.
/// `None` when a part holds what a file name should not (a path separator, a leading dot): the
/// annotations are anyone's to write.
pub fn release_file_stem(release: &Release) -> Option<String> {
    let fits = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (fits(&release.name) && fits(&release.namespace)).then(|| format!("{}.{}", release.name, release.namespace))
}

/// The export options the flags ask for.
fn options(args: &ExportArgs) -> ExportOptions {
    ExportOptions {
        include_internet: !args.exclude_internet,
        include_failed_only: args.include_failed,
        include_dns: args.include_dns,
        client_namespaces: args.query.namespaces.clone(),
        ..ExportOptions::default()
    }
}

/// The documents for `edges`, with the export flags applied (`--as-kubernetes-service`, and
/// `--distinct-by-label`, which merges the documents of clients of one name across
/// namespaces: give it every edge of the clients of a name).
pub fn documents(edges: &[ObservedEdge], args: &ExportArgs) -> Vec<ClientIntentsDoc> {
    let edges = args.query.as_services(edges.to_vec());
    let intents: Vec<mapper_intents::Edge> = edges.iter().filter_map(ObservedEdge::to_intents_edge).collect();
    let docs = mapper_intents::intents_from_edges(&intents, &options(args));
    match &args.query.distinct_by_label {
        None => docs,
        Some(key) => {
            let values = crate::edges::client_label_values(&edges, key);
            let keyed = docs
                .into_iter()
                .map(|doc| {
                    let client = doc.client(doc.namespace.as_deref().unwrap_or_default());
                    let value = values.get(&client).cloned().unwrap_or_else(|| crate::edges::NO_LABEL_VALUE.to_owned());
                    (doc, value)
                })
                .collect();
            mapper_intents::merge_by_key(keyed)
        }
    }
}

/// The warning for a document whose `metadata.name` the API server would refuse (the
/// operator's name for a workload whose name holds `.` has `_` instead, as has an annotated
/// name like `Custom_Name`), saying what to do; `None` for a valid name.
pub fn unapplicable_name_warning(doc: &ClientIntentsDoc) -> Option<String> {
    let problem = mapper_intents::names::check_dns1123_subdomain(&doc.name).err()?;
    let namespace = doc.namespace.as_deref().unwrap_or("(no namespace)");
    Some(format!(
        "warning: the ClientIntents of workload {client} in namespace {namespace} is named {name:?}, which the API \
         server refuses ({problem}); give it a valid metadata.name (e.g. {suggestion:?}) before applying it, and keep \
         the workload name {client:?}: it is the operator's name for the workload (a Deployment named with '.' is \
         known by it with '_'; an intents.otterize.com/service-name annotation is taken as written)",
        client = doc.client_name,
        name = doc.name,
        suggestion = valid_name(&doc.name),
    ))
}

fn warn_unapplicable_name(doc: &ClientIntentsDoc) {
    if let Some(warning) = unapplicable_name_warning(doc) {
        eprintln!("{warning}");
    }
}

/// `name` made a DNS-1123 subdomain: lowercase, `_` and other characters as `-`, trimmed.
fn valid_name(name: &str) -> String {
    let lowered: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    let trimmed = lowered.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut out: String = trimmed.chars().take(mapper_intents::names::MAX_SUBDOMAIN).collect();
    if out.is_empty() {
        out.push_str("client");
    }
    out
}

/// Internet targets left out of the documents that are to be written in v1alpha2, which
/// cannot express them.
pub fn drop_inexpressible(docs: &mut Vec<(ClientIntentsDoc, IntentsVersion)>) -> usize {
    let mut dropped = 0;
    for (doc, version) in docs.iter_mut() {
        if *version == IntentsVersion::V1Alpha2 {
            let before = doc.targets.len();
            doc.targets.retain(|t| !matches!(t, Target::Internet(_)));
            dropped += before - doc.targets.len();
        }
    }
    docs.retain(|(d, _)| !d.targets.is_empty());
    dropped
}

/// Renders documents, each in its own version: YAML documents separated by `---`, or one JSON
/// `List`.
pub fn render(docs: &[(ClientIntentsDoc, IntentsVersion)], format: Format) -> Result<String, ExportError> {
    match format {
        Format::Yaml => {
            let parts = docs
                .iter()
                .map(|(doc, version)| mapper_intents::render_doc_yaml(doc, *version))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(parts.join("---\n"))
        }
        Format::Json => {
            let mut versions: Vec<IntentsVersion> = docs.iter().map(|(_, v)| *v).collect();
            versions.dedup();
            if let [version] = versions.as_slice() {
                let docs: Vec<ClientIntentsDoc> = docs.iter().map(|(d, _)| d.clone()).collect();
                return Ok(mapper_intents::render_json(&docs, *version)?);
            }
            let mut items = Vec::new();
            for (doc, version) in docs {
                let list: serde_json::Value =
                    serde_json::from_str(&mapper_intents::render_json(std::slice::from_ref(doc), *version)?)
                        .unwrap_or_default();
                items.extend(list["items"].as_array().cloned().unwrap_or_default());
            }
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            Ok(format!("{list:#}\n"))
        }
    }
}

/// The documents `--declared` asks for: the declared ones completed with what was observed
/// and not declared, and a summary line per client on stderr.
async fn completed_documents(
    mapper: &mut Mapper,
    args: &ExportArgs,
) -> Result<Vec<(ClientIntentsDoc, IntentsVersion)>, Error> {
    let mut declared = declared::read_paths(&args.declared, true, "export --declared").map_err(ExportError::from)?;
    let unnamespaced: Vec<String> =
        declared.iter().filter(|d| d.doc.namespace.is_none()).map(|d| d.source.clone()).collect();
    let default_namespace = match args.query.namespaces.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    declared::fill_namespaces(&mut declared, default_namespace).map_err(ExportError::from)?;
    let observed = args.query.fetch(mapper, !args.exclude_internet, false).await?;
    // What is added to the declared documents is what a plain export would write.
    let opts = ExportOptions { client_namespaces: Vec::new(), ..options(args) };
    let edges: Vec<mapper_intents::Edge> =
        observed.iter().filter_map(ObservedEdge::to_intents_edge).filter(|e| opts.keeps(e)).collect();
    let scope = AuditScope { namespaces: args.query.namespaces.clone(), workloads: Vec::new() };
    let report = mapper_intents::audit::audit(&declared, &edges, &scope, i64::MIN);
    for client in report.clients.iter().filter(|c| !c.missing.is_empty()) {
        let added: Vec<String> = client.missing.iter().map(|e| crate::audit::target_text(&e.server)).collect();
        eprintln!("{}.{}: adding {}", client.client.name, client.client.namespace, added.join(", "));
    }
    let mut docs = mapper_intents::audit::amend(&report, &declared, args.output_version.into());
    // A document that left its namespace to `kubectl apply -n` still does.
    for (doc, _) in &mut docs {
        let came_from = declared.iter().find(|d| d.doc.name == doc.name && d.doc.namespace == doc.namespace);
        if came_from.is_some_and(|d| unnamespaced.contains(&d.source)) {
            doc.namespace = None;
        }
    }
    if docs.is_empty() {
        eprintln!("Nothing to add: every observed call is declared.");
    }
    Ok(docs)
}

/// Where the documents go, each written as soon as it is complete (JSON, one List, is written
/// at the end from the documents, which are much smaller than the edges they come from).
struct DocWriter<'a> {
    args: &'a ExportArgs,
    sink: Option<output::Sink>,
    json: Vec<(ClientIntentsDoc, IntentsVersion)>,
    /// With --by-release: each release's documents (None: no release), written at the end.
    releases: BTreeMap<Option<Release>, Vec<(ClientIntentsDoc, IntentsVersion)>>,
    written: usize,
    dropped: usize,
}

impl<'a> DocWriter<'a> {
    fn new(args: &'a ExportArgs) -> Result<Self, Error> {
        let sink = match (&args.output, args.output_type) {
            (Some(dir), _) if args.by_release => {
                output::create_dir(dir)?;
                None
            }
            (Some(dir), OutputType::Dir) => {
                output::create_dir(dir)?;
                None
            }
            (path, _) => Some(output::Sink::to(path.as_deref())?),
        };
        Ok(Self { args, sink, json: Vec::new(), releases: BTreeMap::new(), written: 0, dropped: 0 })
    }

    /// Writes (or, with --by-release, keeps for the file of `release`) one document.
    fn write(&mut self, doc: ClientIntentsDoc, version: IntentsVersion, release: Option<Release>) -> Result<(), Error> {
        let mut one = vec![(doc, version)];
        self.dropped += drop_inexpressible(&mut one);
        let Some(doc) = one.pop() else { return Ok(()) };
        warn_unapplicable_name(&doc.0);
        if self.args.by_release {
            if let Some(r) = release.as_ref().filter(|r| release_file_stem(r).is_none()) {
                let client = format!("{}.{}", doc.0.client_name, doc.0.namespace.as_deref().unwrap_or_default());
                return Err(ExportError::ReleaseFileName { release: r.clone(), client }.into());
            }
            self.releases.entry(release).or_default().push(doc);
            self.written += 1;
            return Ok(());
        }
        match (&mut self.sink, self.args.format) {
            (None, format) => {
                let text = render(std::slice::from_ref(&doc), format)?;
                let mut name = mapper_intents::file_name(&doc.0);
                if format == Format::Json {
                    name = format!("{}.json", name.trim_end_matches(".yaml"));
                }
                if let Some(dir) = &self.args.output {
                    output::file(&dir.join(name), text.as_bytes())?;
                }
            }
            (Some(_), Format::Json) => self.json.push(doc),
            (Some(sink), Format::Yaml) => {
                if self.written > 0 {
                    sink.write(b"---\n")?;
                }
                sink.write(mapper_intents::render_doc_yaml(&doc.0, doc.1).map_err(ExportError::from)?.as_bytes())?;
            }
        }
        self.written += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<(), Error> {
        if let Some(dir) = self.args.output.as_deref().filter(|_| self.args.by_release) {
            write_releases(dir, &self.releases, self.args.format)?;
        }
        if let Some(mut sink) = self.sink.take() {
            if self.args.format == Format::Json {
                sink.write(render(&self.json, Format::Json)?.as_bytes())?;
            }
            sink.finish()?;
        }
        if self.dropped > 0 {
            eprintln!(
                "warning: left out {} internet target(s): v1alpha2 cannot express them (use --output-version \
                 v1alpha3 or later to keep them)",
                self.dropped
            );
        }
        if self.written == 0 && self.args.declared.is_empty() {
            eprintln!("No connections found.");
        }
        match (&self.args.output, self.args.output_type) {
            (None, _) => {}
            (Some(dir), _) if self.args.by_release => {
                eprintln!("Wrote {} ClientIntents in {} files to {}", self.written, self.releases.len(), dir.display());
            }
            (Some(path), OutputType::SingleFile) => {
                eprintln!("Wrote {} ClientIntents to {}", self.written, path.display());
            }
            (Some(dir), OutputType::Dir) => {
                eprintln!("Wrote {} ClientIntents files to {}", self.written, dir.display());
            }
        }
        Ok(())
    }
}

/// The file `--by-release` writes a release's documents to in `dir`.
pub fn release_file(dir: &Path, release: Option<&Release>, format: Format) -> PathBuf {
    let stem = release.and_then(release_file_stem).unwrap_or_else(|| NO_RELEASE_FILE.to_owned());
    let ext = match format {
        Format::Yaml => "yaml",
        Format::Json => "json",
    };
    dir.join(format!("{stem}.{ext}"))
}

/// Writes each release's documents to its file in `dir` (see [`release_file`]), and names each
/// file on stderr: releases in order, the clients in no release last (as `list --by-release`).
fn write_releases(
    dir: &Path,
    releases: &BTreeMap<Option<Release>, Vec<(ClientIntentsDoc, IntentsVersion)>>,
    format: Format,
) -> Result<(), Error> {
    let (named, none): (Vec<_>, Vec<_>) = releases.iter().partition(|(release, _)| release.is_some());
    for (release, docs) in named.into_iter().chain(none) {
        let path = release_file(dir, release.as_ref(), format);
        output::file(&path, render(docs, format)?.as_bytes())?;
        let of = release.as_ref().map_or_else(|| "no release".to_owned(), |r| format!("release {r}"));
        eprintln!("{}: {} ClientIntents ({of})", path.display(), docs.len());
    }
    Ok(())
}

/// The release of each client workload of `edges`, as the edges name it.
fn client_releases(edges: &[ObservedEdge]) -> HashMap<&mapper_intents::Workload, Option<&Release>> {
    let mut releases = HashMap::new();
    for edge in edges {
        if let Peer::Workload(client) = &edge.client {
            let release = releases.entry(client).or_insert(None);
            *release = release.or(edge.client_release.as_ref());
        }
    }
    releases
}

/// Whether two edges' clients get their documents together: the same workload name and
/// namespace (two kinds of one name share it and are told apart by the document's name).
fn same_document_group(a: &ObservedEdge, b: &ObservedEdge) -> bool {
    match (&a.client, &b.client) {
        (Peer::Workload(a), Peer::Workload(b)) => a.name == b.name && a.namespace == b.namespace,
        (a, b) => a == b,
    }
}

/// Runs `mapper export`. Without `--declared`, the edges are read a client at a time (the server
/// sends them sorted by client) and each client's document is written once no later client can
/// sort before it, in the order a whole-map export has.
pub async fn run(connect: &ConnectOpts, args: &ExportArgs) -> Result<(), Error> {
    let mut mapper = Mapper::connect(connect).await?;
    let version = IntentsVersion::from(args.output_version);
    if !args.declared.is_empty() {
        let docs = completed_documents(&mut mapper, args).await?;
        let mut writer = DocWriter::new(args)?;
        for (doc, version) in docs {
            writer.write(doc, version, None)?;
        }
        return writer.finish();
    }
    let mut edges = args.query.stream(&mut mapper, !args.exclude_internet, false).await?;
    let mut writer = DocWriter::new(args)?;
    // Documents sort by (name, namespace, kind); a client's documents are named after it (or
    // NAME-KIND), so once clients named N arrive, no later document sorts before N.
    type Pending = BTreeMap<(String, Option<String>, Option<String>, usize), (ClientIntentsDoc, Option<Release>)>;
    let mut pending: Pending = BTreeMap::new();
    let mut seq = 0usize;
    // With --distinct-by-label, the documents of one name and label value are merged across
    // namespaces: a run holds every client of a name.
    let group =
        if args.query.distinct_by_label.is_some() { crate::edges::same_client_name } else { same_document_group };
    while let Some(run) = edges.next_run(group).await? {
        if let Peer::Workload(client) = &run[0].client {
            while let Some(entry) = pending.first_entry() {
                if *entry.key().0 >= *client.name {
                    break;
                }
                let (doc, release) = entry.remove();
                writer.write(doc, version, release)?;
            }
        }
        let releases = client_releases(&run);
        for doc in documents(&run, args) {
            let client = doc.client(doc.namespace.as_deref().unwrap_or_default());
            let release = releases.get(&client).copied().flatten().cloned();
            pending.insert((doc.name.clone(), doc.namespace.clone(), doc.client_kind.clone(), seq), (doc, release));
            seq += 1;
        }
    }
    while let Some((_, (doc, release))) = pending.pop_first() {
        writer.write(doc, version, release)?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_files_are_named_by_release_and_namespace_and_refuse_path_tricks() {
        let dir = Path::new("out");
        let payments = Release::new("payments", "team1");
        assert_eq!(release_file(dir, Some(&payments), Format::Yaml), dir.join("payments.team1.yaml"));
        assert_eq!(release_file(dir, Some(&payments), Format::Json), dir.join("payments.team1.json"));
        assert_eq!(release_file(dir, None, Format::Yaml), dir.join("no-release.yaml"));
        let no_release = Release::new(NO_RELEASE_FILE, "team1");
        assert_eq!(release_file(dir, Some(&no_release), Format::Yaml), dir.join("no-release.team1.yaml"));
        for (name, namespace) in [("../etc", "team1"), ("a/b", "team1"), (".hidden", "team1"), ("ok", ".."), ("ok", "")]
        {
            assert_eq!(release_file_stem(&Release::new(name, namespace)), None, "{name}.{namespace}");
        }
        assert_eq!(release_file_stem(&Release::new("my_app.v2", "team-1")), Some("my_app.v2.team-1".to_owned()));
        let err = ExportError::ReleaseFileName { release: Release::new("a/b", "team1"), client: "api.team1".into() };
        assert!(err.to_string().starts_with("release a/b.team1 of api.team1 cannot name a file"), "{err}");
    }

    #[test]
    fn names_the_api_server_refuses_get_a_warning_saying_what_to_do() {
        let doc = |name: &str| ClientIntentsDoc {
            name: name.to_owned(),
            namespace: Some("team1".to_owned()),
            client_name: name.to_owned(),
            client_kind: Some("Deployment".to_owned()),
            targets: Vec::new(),
        };
        assert_eq!(unapplicable_name_warning(&doc("web.v2")), None);
        let warning = unapplicable_name_warning(&doc("web_v2")).unwrap_or_default();
        assert!(
            warning.starts_with(
                "warning: the ClientIntents of workload web_v2 in namespace team1 is named \"web_v2\", which the API \
                 server refuses (it holds '_'"
            ),
            "{warning}"
        );
        assert!(
            warning.contains("(e.g. \"web-v2\")") && warning.contains("keep the workload name \"web_v2\""),
            "{warning}"
        );
        let custom = unapplicable_name_warning(&doc("Custom_Name")).unwrap_or_default();
        assert!(custom.contains("(e.g. \"custom-name\")"), "{custom}");
        assert_eq!(valid_name("__"), "client");
        assert_eq!(valid_name("-A.b_"), "a.b");
    }
}
