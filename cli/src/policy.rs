//! `mapper policy`: reads ClientIntents (files, directories, `-` for stdin; any version) and
//! prints the NetworkPolicies the intents operator would build from them, followed by the pod
//! labels those policies select on as a YAML comment (so the output still applies as is).
//! Service targets are resolved through the Services (`--inventory`, `--cluster`), as the
//! operator does; names the API server would refuse are an error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use mapper_intents::policy::NameProblem;
use mapper_intents::{ClientIntentsDoc, PodLabel, PolicyLayout, PolicyOptions, Target, Workload};

use crate::cli::Error;
use crate::connect::ConnectOpts;
use crate::declared::{self, ReadError};
use crate::output;
use crate::services::{self, Services, ServicesError};

/// Which operator generation's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    /// `access-to-<server>-from-<namespace>`, one per server and client namespace, namespaces
    /// selected by `intents.otterize.com/namespace-name`.
    Legacy,
    /// `<server>-access`, one per server, namespaces selected by `kubernetes.io/metadata.name`
    /// (newer operator releases).
    Current,
}

/// `mapper policy`.
#[derive(Debug, Clone, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  mapper policy -f intents.yaml\n",
    "  mapper export | mapper policy -f - --layout current\n",
    "  mapper policy -f intents/ --inventory services.yaml   # kubectl get services -A -o yaml\n",
    "  helm template charts/shop | mapper policy -f - --cluster\n\n",
    "A Service target (svc:reports, kind: Service, service:) gets the policy the operator builds\n",
    "from the Service itself: its selector picks the pods, its targetPorts are the ports allowed,\n",
    "and the Service owns the policy. Give the Services with --inventory or --cluster; without\n",
    "them such a policy is not shown, and a warning says so. A DNS server (a server named *dns\n",
    "in kube-system) also gets the current operator's rule admitting UDP and TCP 53 from\n",
    "anywhere. The API server (kubernetes.default) gets no policy, as the operator builds none.\n",
    "A policy name or label the API server would refuse is an error naming the ClientIntents.\n\n",
    crate::exit_status_help!()
))]
pub struct PolicyArgs {
    /// ClientIntents to read: files, directories (their .yaml, .yml and .json files) or - for
    /// stdin. Other kinds of objects in them are skipped.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1.., value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Also read the directories' subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Policy layout.
    #[arg(long, value_enum, default_value = "legacy")]
    pub layout: Layout,
    /// Namespace of ClientIntents that name none (kubectl apply would use the context's).
    #[arg(long, default_value = "default", value_name = "NAMESPACE")]
    pub default_namespace: String,
    /// Services the Service targets are resolved through: files or directories of manifests
    /// holding them, e.g. the output of `kubectl get services -A -o yaml` (repeatable).
    #[arg(long, value_name = "PATH", conflicts_with = "cluster")]
    pub inventory: Vec<PathBuf>,
    /// Read the Services the Service targets name from the cluster of the kubeconfig
    /// (--kubeconfig, --context; needs `list services` in their namespaces).
    #[arg(long)]
    pub cluster: bool,
}

/// Why the input could not be read, or the policies could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The ClientIntents could not be read (the message names file, document and field).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The Services could not be read.
    #[error(transparent)]
    Services(#[from] ServicesError),
    /// The YAML writer refused a policy (not expected).
    #[error("the NetworkPolicies cannot be written as YAML")]
    Write {
        /// serde-saphyr's error.
        #[source]
        error: mapper_intents::yaml::WriteError,
    },
    /// The operator would build policies the API server refuses.
    #[error(
        "the operator could not create these NetworkPolicies: {}; rename the targets (workload and Service \
         names are DNS-1123: lowercase letters, digits, '-' and '.')",
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Refused {
        /// Each name or label refused.
        problems: Vec<NameProblem>,
    },
}

/// Reads every ClientIntents document in `paths`, in order.
pub fn read_documents(paths: &[PathBuf], recursive: bool) -> Result<Vec<ClientIntentsDoc>, PolicyError> {
    Ok(declared::read_paths(paths, recursive, "policy -f")?.into_iter().map(|d| d.doc).collect())
}

fn describe(workload: &Workload, with_kind: bool) -> String {
    match workload.kind.as_ref().filter(|_| with_kind) {
        Some(kind) => format!("{} in namespace {} ({kind})", workload.name, workload.namespace),
        None => format!("{} in namespace {}", workload.name, workload.namespace),
    }
}

/// The labels as a YAML comment block: per workload, the labels its pods must carry. Kinds are
/// shown `with_kind` (the current layout's identities have them; the legacy layout's do not).
pub fn labels_comment(labels: &[PodLabel], with_kind: bool) -> String {
    let mut by_workload: BTreeMap<&Workload, Vec<&PodLabel>> = BTreeMap::new();
    for label in labels {
        by_workload.entry(&label.workload).or_default().push(label);
    }
    let mut out = String::from("# Pod labels these policies select on (the intents operator's webhook sets them):\n");
    for (workload, labels) in by_workload {
        out.push_str(&format!("#   {}:\n", describe(workload, with_kind)));
        for label in labels {
            // As YAML writes the value ("true" quoted); a value it cannot write stays as is.
            let value = mapper_intents::yaml::scalar(&label.value).unwrap_or_else(|_| label.value.clone());
            out.push_str(&format!("#     {}: {value}\n", label.key));
        }
    }
    out
}

/// The policies and labels for `docs`, as printed, with the warnings to show (what the
/// policies shown may differ in from the operator's); an error when the API server would refuse
/// a name or label. `services`: the Services read, if any.
pub fn render(
    docs: &[ClientIntentsDoc],
    args: &PolicyArgs,
    services: Option<Services>,
) -> Result<(String, Vec<String>), PolicyError> {
    let opts = PolicyOptions {
        layout: match args.layout {
            Layout::Legacy => PolicyLayout::Legacy,
            Layout::Current => PolicyLayout::Current,
        },
        default_namespace: args.default_namespace.clone(),
        services,
    };
    let set = mapper_intents::network_policies(docs, &opts);
    if !set.problems.is_empty() {
        return Err(PolicyError::Refused { problems: set.problems });
    }
    let warnings = set.notes.iter().map(ToString::to_string).collect();
    if set.policies.is_empty() {
        return Ok((String::new(), warnings));
    }
    let mut out = mapper_intents::render_policies_yaml(&set.policies).map_err(|error| PolicyError::Write { error })?;
    out.push_str(&labels_comment(&set.pod_labels, opts.layout == PolicyLayout::Current));
    Ok((out, warnings))
}

/// The namespaces of the Service targets of `docs` (what `--cluster` lists Services in).
fn service_namespaces(docs: &[ClientIntentsDoc], default_namespace: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for doc in docs {
        let own = doc.namespace.as_deref().unwrap_or(default_namespace);
        for target in &doc.targets {
            if let Target::Service(s) = target {
                out.insert(s.namespace.clone().unwrap_or_else(|| own.to_owned()));
            }
        }
    }
    out
}

/// Runs `mapper policy`.
pub async fn run(connect: &ConnectOpts, args: &PolicyArgs) -> Result<(), Error> {
    let docs = read_documents(&args.files, args.recursive)?;
    let services = if !args.inventory.is_empty() {
        Some(services::read_inventory(&args.inventory).map_err(PolicyError::from)?)
    } else if args.cluster {
        let namespaces = service_namespaces(&docs, &args.default_namespace);
        Some(services::read_cluster(connect, &namespaces).await.map_err(PolicyError::from)?)
    } else {
        None
    };
    let (text, warnings) = render(&docs, args, services)?;
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    if docs.is_empty() {
        eprintln!("No ClientIntents found in the input.");
    } else if text.is_empty() && warnings.is_empty() {
        eprintln!("No NetworkPolicies: none of the intents targets a workload or Service in the cluster.");
    }
    output::stdout(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use mapper_intents::policy::LabelRole;

    use super::*;

    #[test]
    fn labels_are_grouped_by_workload_and_quoted_when_yaml_needs_it() {
        let server = Workload::without_kind("ledger", "team3");
        let client = Workload::new("api", "team1", "Deployment");
        let labels = vec![
            PodLabel {
                workload: server,
                role: LabelRole::Server,
                key: "intents.otterize.com/server".into(),
                value: "ledger-team3-40d1db".into(),
            },
            PodLabel {
                workload: client,
                role: LabelRole::Client,
                key: "intents.otterize.com/access-ledger-team3-40d1db".into(),
                value: "true".into(),
            },
        ];
        assert_eq!(
            labels_comment(&labels, true),
            "# Pod labels these policies select on (the intents operator's webhook sets them):\n\
             #   api in namespace team1 (Deployment):\n\
             #     intents.otterize.com/access-ledger-team3-40d1db: \"true\"\n\
             #   ledger in namespace team3:\n\
             #     intents.otterize.com/server: ledger-team3-40d1db\n"
        );
    }
}
