//! Reading a Helm release's revisions from the cluster, as Helm's storage drivers keep them:
//! the Secrets (Helm's default driver) labelled `owner=helm,name=<release>` in the release's
//! namespace, of type `helm.sh/release.v1`, or, when there are none, the ConfigMaps of the
//! ConfigMap driver with the same labels. mapper-intents' [`mapper_intents::helm`] decodes each
//! record; this module lists them with the user's kube credentials and picks revisions.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, ObjectMeta};
use mapper_intents::helm::{self, HelmError, Release};

use crate::connect::{ConnectOpts, short_reason, tidy};
use crate::portforward::KubeClientError;

/// Why a release could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// No Kubernetes client.
    #[error("cannot read Helm release {name}: {reason}", reason = tidy(&error.to_string()))]
    ClusterConfig {
        /// The release.
        name: String,
        /// Why the configuration could not be loaded or used.
        #[source]
        error: KubeClientError,
    },
    /// The API server refused a request (its Status; the message is the server's own words).
    #[error("cannot read Helm release {name}: {action}: {message}")]
    ClusterRefused {
        /// The release.
        name: String,
        /// What was asked (`listing secrets in namespace team1`).
        action: String,
        /// The API server's message.
        message: String,
    },
    /// A request to the API server failed without an answer from it.
    #[error("cannot read Helm release {name}: {action} ({reason})", reason = short_reason(error))]
    ClusterUnreachable {
        /// The release.
        name: String,
        /// What was asked.
        action: String,
        /// The client's error.
        #[source]
        error: kube::Error,
    },
    /// No record of the release in the namespace.
    #[error(
        "Helm release {name} not found in namespace {namespace} (no Secret or ConfigMap labelled owner=helm,name={name}; \
         give the release's namespace with -n)"
    )]
    NotFound {
        /// The release.
        name: String,
        /// The namespace searched.
        namespace: String,
    },
    /// The revision asked for is not kept.
    #[error("Helm release {namespace}/{name} has no revision {revision} (revisions kept: {kept})")]
    NoRevision {
        /// The release.
        name: String,
        /// Its namespace.
        namespace: String,
        /// The revision asked for.
        revision: u32,
        /// The revisions there are, e.g. `1, 2, 3`.
        kept: String,
    },
    /// No revision has status `deployed`.
    #[error(
        "Helm release {namespace}/{name} has no deployed revision (revisions kept: {kept}); choose one with --revision"
    )]
    NotDeployed {
        /// The release.
        name: String,
        /// Its namespace.
        namespace: String,
        /// The revisions and their statuses, e.g. `1 superseded, 2 failed`.
        kept: String,
    },
    /// A record could not be decoded.
    #[error(transparent)]
    Record(#[from] HelmError),
    /// The --release-records files could not be listed.
    #[error("cannot read Helm release {name} from --release-records")]
    Listing {
        /// The release.
        name: String,
        /// Why.
        #[source]
        error: Box<mapper_cluster::InventoryError>,
    },
    /// An --release-records file could not be read.
    #[error("cannot read Helm release {name} from --release-records {}", path.display())]
    File {
        /// The release.
        name: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// An --release-records file is not YAML or JSON objects.
    #[error("cannot read Helm release {name} from --release-records: {error}")]
    FileParse {
        /// The release.
        name: String,
        /// The reader's error, naming the file and document.
        #[source]
        error: mapper_intents::parse::ParseError,
    },
    /// No record of the release in the --release-records files.
    #[error(
        "Helm release {name} not found in --release-records {files}{within} (no Secret or ConfigMap \
         sh.helm.release.v1.{name}.v<N> labelled owner=helm,name={name})",
        within = namespace.as_deref().map(|n| format!(" in namespace {n}")).unwrap_or_default()
    )]
    NotInFiles {
        /// The release.
        name: String,
        /// The namespace asked for with -n.
        namespace: Option<String>,
        /// The files, comma-separated.
        files: String,
    },
    /// Records of the release in several namespaces and no -n.
    #[error("Helm release {name} has records in namespaces {namespaces} of --release-records; choose one with -n")]
    Ambiguous {
        /// The release.
        name: String,
        /// The namespaces, comma-separated.
        namespaces: String,
    },
}

/// Every kept revision of a release, oldest first.
#[derive(Debug, Clone)]
pub struct History {
    /// The release.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The revisions, by revision number.
    pub revisions: Vec<Release>,
}

impl History {
    fn kept(&self) -> String {
        self.revisions.iter().map(|r| r.revision.to_string()).collect::<Vec<_>>().join(", ")
    }

    /// Revision `n`.
    pub fn revision(&self, n: u32) -> Result<&Release, ReleaseError> {
        self.revisions.iter().find(|r| r.revision == n).ok_or_else(|| ReleaseError::NoRevision {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            revision: n,
            kept: self.kept(),
        })
    }

    /// The deployed revision (the latest, should a failed upgrade have left two).
    pub fn deployed(&self) -> Result<&Release, ReleaseError> {
        self.revisions.iter().rev().find(|r| r.status == "deployed").ok_or_else(|| ReleaseError::NotDeployed {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            kept: self
                .revisions
                .iter()
                .map(|r| format!("{} {}", r.revision, if r.status.is_empty() { "unknown" } else { &r.status }))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The revision `revision` names, else the deployed one.
    pub fn chosen(&self, revision: Option<u32>) -> Result<&Release, ReleaseError> {
        match revision {
            Some(n) => self.revision(n),
            None => self.deployed(),
        }
    }
}

/// The namespace a release is looked up in: the one `-n` gives, else the kubeconfig context's.
pub fn release_namespace(client: &kube::Client, namespaces: &[String]) -> String {
    match namespaces {
        [one, ..] => one.clone(),
        [] => client.default_namespace().to_owned(),
    }
}

/// A kube client with the user's credentials (those of the port-forward).
pub async fn client(connect: &ConnectOpts, name: &str) -> Result<kube::Client, ReleaseError> {
    let (client, _url) = crate::portforward::kube_client(connect.kubeconfig.as_deref(), connect.context.as_deref())
        .await
        .map_err(|error| ReleaseError::ClusterConfig { name: name.to_owned(), error })?;
    Ok(client)
}

/// Whether an object is a record of release `name`: Helm's labels, and its name.
fn is_record(meta: &ObjectMeta, name: &str) -> bool {
    let labels = meta.labels.as_ref();
    helm::is_record(name, meta.name.as_deref().unwrap_or_default(), |key| {
        labels.and_then(|l| l.get(key)).map(String::as_str)
    })
}

/// Reads every kept revision of release `name` in `namespace`.
pub async fn read_history(client: &kube::Client, namespace: &str, name: &str) -> Result<History, ReleaseError> {
    let params = ListParams::default().labels(&format!("owner=helm,name={name}"));
    let failed = |action: String| {
        move |error| match error {
            kube::Error::Api(status) => {
                ReleaseError::ClusterRefused { name: name.to_owned(), action, message: status.message }
            }
            error => ReleaseError::ClusterUnreachable { name: name.to_owned(), action, error },
        }
    };
    let mut revisions = Vec::new();
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(failed(format!("listing secrets in namespace {namespace}")))?;
    for secret in secrets.items {
        if !is_record(&secret.metadata, name) || secret.type_.as_deref() != Some(helm::SECRET_TYPE) {
            continue;
        }
        let record = format!("secret {namespace}/{}", secret.metadata.name.as_deref().unwrap_or_default());
        let data = secret.data.as_ref().and_then(|d| d.get(helm::DATA_KEY));
        let data = data.ok_or_else(|| HelmError::NoData { record: record.clone() })?;
        revisions.push(helm::decode_release(&data.0, &record)?);
    }
    if revisions.is_empty() {
        let maps = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .list(&params)
            .await
            .map_err(failed(format!("listing configmaps in namespace {namespace}")))?;
        for map in maps.items.iter().filter(|m| is_record(&m.metadata, name)) {
            let record = format!("configmap {namespace}/{}", map.metadata.name.as_deref().unwrap_or_default());
            let data = map.data.as_ref().and_then(|d| d.get(helm::DATA_KEY));
            let data = data.ok_or_else(|| HelmError::NoData { record: record.clone() })?;
            revisions.push(helm::decode_release(data.as_bytes(), &record)?);
        }
    }
    if revisions.is_empty() {
        return Err(ReleaseError::NotFound { name: name.to_owned(), namespace: namespace.to_owned() });
    }
    for release in revisions.iter_mut().filter(|r| r.namespace.is_empty()) {
        release.namespace = namespace.to_owned();
    }
    revisions.sort_by_key(|r| r.revision);
    Ok(History { name: name.to_owned(), namespace: namespace.to_owned(), revisions })
}

/// Reads every kept revision of release `name` from the release records among the objects of
/// the `--release-records` files or directories (`kubectl get secrets -A -o yaml`, or a lab's
/// inventory; directories walked as an inventory's are), instead of from the cluster: in
/// `namespace`, or in the one namespace the files hold it in.
pub fn read_history_from_files(
    paths: &[PathBuf],
    namespace: Option<&str>,
    name: &str,
) -> Result<History, ReleaseError> {
    let files = mapper_cluster::Inventory::files_of(paths)
        .map_err(|error| ReleaseError::Listing { name: name.to_owned(), error: Box::new(error) })?;
    let mut revisions = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|error| ReleaseError::File {
            name: name.to_owned(),
            path: file.clone(),
            error,
        })?;
        let found = helm::records_in(&text, &file.display().to_string(), name).map_err(|error| match error {
            helm::RecordsError::Parse(error) => ReleaseError::FileParse { name: name.to_owned(), error },
            helm::RecordsError::Record(error) => ReleaseError::Record(error),
        })?;
        revisions.extend(found.into_iter().filter(|r| namespace.is_none_or(|n| r.namespace == n)));
    }
    let mut namespaces: Vec<&str> = revisions.iter().map(|r| r.namespace.as_str()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    let namespace = match namespaces.as_slice() {
        [] => {
            let files = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
            return Err(ReleaseError::NotInFiles {
                name: name.to_owned(),
                namespace: namespace.map(str::to_owned),
                files,
            });
        }
        [one] => (*one).to_owned(),
        several => {
            return Err(ReleaseError::Ambiguous { name: name.to_owned(), namespaces: several.join(", ") });
        }
    };
    revisions.sort_by_key(|r| r.revision);
    Ok(History { name: name.to_owned(), namespace, revisions })
}

/// The history of release `name`: from the `records` files when there are any, else from
/// the cluster with the user's kube credentials (in the namespace `-n` gives, else the
/// kubeconfig context's).
pub async fn history(
    connect: &ConnectOpts,
    records: &[PathBuf],
    namespaces: &[String],
    name: &str,
) -> Result<History, ReleaseError> {
    if !records.is_empty() {
        return read_history_from_files(records, namespaces.first().map(String::as_str), name);
    }
    let client = client(connect, name).await?;
    let namespace = release_namespace(&client, namespaces);
    read_history(&client, &namespace, name).await
}

/// `release team1/payments revision 3 (chart payments 1.2.0, deployed, 2026-11-30T10:00:00Z)`.
pub fn describe(release: &Release) -> String {
    let mut facts = vec![format!("chart {} {}", release.chart_name, release.chart_version)];
    if !release.status.is_empty() {
        facts.push(release.status.clone());
    }
    if let Some(at) = &release.last_deployed {
        facts.push(at.clone());
    }
    format!("{} ({})", release.label(), facts.join(", "))
}
