//! `mapper-intents`: the Otterize `ClientIntents` side of mapper, as a pure library (no async,
//! and no I/O but [`walk`] listing the directories of manifests its readers are given).
//!
//! - [`model`]: workload identities, intent targets, observed [`Edge`]s and the
//!   version-neutral [`ClientIntentsDoc`].
//! - [`versions`]: serde types for every ClientIntents version the operator serves (v1alpha2,
//!   v1alpha3, v1beta1, v2alpha1, v2beta1) and conversions to and from the neutral model.
//! - [`audit`]: declared ClientIntents against observed edges: missing, unused, covered.
//! - [`export`]: shaping observed edges into documents the way the Otterize CLI exports them.
//! - [`render`] / [`yaml`]: YAML in the Otterize CLI's layout, and JSON as a `v1` `List`.
//! - [`parse`]: reading ClientIntents out of `kubectl`/`helm template` output, with errors that
//!   name the source, document and field.
//! - [`helm`]: Helm release records (Secrets and ConfigMaps of Helm's storage drivers) and
//!   the ClientIntents and NetworkPolicies in their manifests.
//! - [`identity`]: the operator's hashed workload identities used in labels.
//! - [`policy`]: the NetworkPolicies the operator builds from intents, and the pod labels they
//!   select on.
//! - [`netpol`]: Kubernetes NetworkPolicies evaluated against observed calls (ingress).
//! - [`names`]: what the API server accepts as object names, label keys and label values.
//! - [`walk`]: the files under a directory of manifests, one walk for every reader of them.
//! - [`errors`]: an error and its sources in one line ([`error_chain`]), shared by every crate
//!   that reports errors.
//!
//! ```
//! use mapper_intents::{Edge, ExportOptions, IntentsVersion, Target, Workload};
//!
//! let edge = Edge {
//!     client: Workload::new("transaction-service", "team1", "Deployment"),
//!     server: Target::workload("ledger", Some("team3"), Some("Deployment")),
//!     ports: Vec::new(),
//!     established: 5,
//!     failed: 0,
//!     first_seen_ms: 0,
//!     last_seen_ms: 0,
//!     via_services: Vec::new(),
//! };
//! let docs = mapper_intents::intents_from_edges(&[edge], &ExportOptions::default());
//! let yaml = mapper_intents::render_yaml(&docs, IntentsVersion::V1Alpha2).expect("expressible");
//! assert!(yaml.contains("  calls:\n    - name: ledger.team3\n"));
//! let back = mapper_intents::parse_documents(&yaml, "export.yaml").expect("parses");
//! assert_eq!(back[0].client_name, "transaction-service");
//! ```

pub mod audit;
pub mod errors;
pub mod export;
pub mod helm;
pub mod identity;
pub mod model;
pub mod names;
pub mod netpol;
pub mod parse;
pub mod policy;
pub mod render;
pub mod stream;
pub mod versions;
pub mod walk;
pub mod yaml;

pub use errors::{error_chain, innermost_cause};
pub use export::{ExportOptions, intents_from_edges, merge_by_key};
pub use identity::{formatted_identity, formatted_identity_with_kind, workload_identity};
pub use model::{
    ClientIntentsDoc, Edge, HttpResource, Internet, OtherKind, OtherTarget, Port, Protocol, ServiceName, ServiceTarget,
    Target, Workload, WorkloadTarget,
};
pub use parse::{
    Documents, ParseError, ParsedDoc, Skipped, parse_documents, parse_documents_with_origin, read_documents,
};
pub use policy::{
    NetworkPolicy, PodLabel, PolicyLayout, PolicyOptions, PolicySet, network_policies, render_policies_yaml,
};
pub use render::{RenderError, file_name, render_doc_yaml, render_json, render_yaml};
pub use versions::{ConvertError, IntentsVersion, Problem, VersionedClientIntents};
