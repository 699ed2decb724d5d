//! Owners outside the reflectors (Deployments, StatefulSets, DaemonSets, CronJobs, CRDs such
//! as Argo Rollouts): fetched with dynamic GETs when an owner chain reaches them, cached, and
//! failures (403/404) cached too so an unreadable owner costs one request per period.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use tokio::time::Instant;

use crate::error_chain;
use crate::model::{ClusterObjects, Interner, OwnerKey, OwnerRecord, OwnerRef, PodRecord, release_of};

/// Chains deeper than this are not followed (they only happen with reference cycles).
const MAX_ROUNDS: usize = 16;
/// Owner GETs in flight at once.
const CONCURRENT_GETS: usize = 8;
/// API groups whose kinds pluralise regularly: no discovery needed.
const BUILTIN_GROUPS: &[&str] = &["", "apps", "batch"];

#[derive(Debug, Clone)]
enum Entry {
    Found { record: OwnerRecord, until: Instant },
    Unreadable { until: Instant },
}

/// How long answers are kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnerTtls {
    pub found: Duration,
    /// After a 403 or 404.
    pub unreadable: Duration,
    /// After any other failure (network, 5xx).
    pub retry: Duration,
}

pub(crate) struct OwnerCache {
    client: Client,
    ttls: OwnerTtls,
    /// Kinds the reflectors hold, as (group, kind): never fetched.
    reflected: Vec<(&'static str, &'static str)>,
    entries: HashMap<OwnerKey, Entry>,
    resources: HashMap<GroupVersionKind, ApiResource>,
    /// The strings the fetched records share.
    strings: Interner,
}

impl std::fmt::Debug for OwnerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerCache").field("entries", &self.entries.len()).finish_non_exhaustive()
    }
}

impl OwnerCache {
    pub fn new(client: Client, ttls: OwnerTtls, reflected: Vec<(&'static str, &'static str)>) -> Self {
        Self {
            client,
            ttls,
            reflected,
            entries: HashMap::new(),
            resources: HashMap::new(),
            strings: Interner::default(),
        }
    }

    /// Add to `objects.owners` every owner the chains of `objects.pods` and `extra` reach that
    /// is readable, fetching those not cached.
    pub async fn complete<'a>(&mut self, objects: &mut ClusterObjects, extra: impl Iterator<Item = &'a PodRecord>) {
        let owner_of = |p: &PodRecord| Some((p.namespace.clone(), p.owner.clone()?));
        let mut starts: Vec<(Arc<str>, OwnerRef)> = objects.pods.iter().filter_map(owner_of).collect();
        starts.extend(extra.filter_map(owner_of));
        starts
            .extend(objects.owners.values().filter_map(|o| Some((o.key.namespace.as_str().into(), o.owner.clone()?))));
        for _ in 0..MAX_ROUNDS {
            let now = Instant::now();
            let mut wanted: BTreeMap<OwnerKey, String> = BTreeMap::new();
            let mut next = Vec::new();
            for (namespace, owner_ref) in starts.drain(..) {
                let key = owner_ref.key(&namespace);
                if objects.owners.contains_key(&key) || self.is_reflected(&key) {
                    continue;
                }
                match self.entries.get(&key) {
                    Some(Entry::Found { record, until }) if *until > now => {
                        next.extend(record.owner.clone().map(|o| (namespace.clone(), o)));
                        objects.add_owner(record.clone());
                    }
                    Some(Entry::Unreadable { until }) if *until > now => {}
                    _ => {
                        wanted.insert(key, owner_ref.api_version.to_string());
                    }
                }
            }
            let fetched = self.fetch_all(wanted).await;
            for record in fetched {
                next.extend(record.owner.clone().map(|o| (record.key.namespace.as_str().into(), o)));
                objects.add_owner(record);
            }
            if next.is_empty() {
                break;
            }
            starts = next;
        }
    }

    fn is_reflected(&self, key: &OwnerKey) -> bool {
        self.reflected.iter().any(|(group, kind)| key.group == *group && key.kind == *kind)
    }

    /// GET each wanted owner; cache every answer; return the ones found.
    async fn fetch_all(&mut self, wanted: BTreeMap<OwnerKey, String>) -> Vec<OwnerRecord> {
        let mut targets = Vec::with_capacity(wanted.len());
        for (key, api_version) in wanted {
            let resource = self.resource(&api_version, &key.kind).await;
            targets.push((key, resource));
        }
        let client = &self.client;
        let results: Vec<(OwnerKey, Result<DynamicObject, kube::Error>)> = futures::stream::iter(targets)
            .map(|(key, resource)| async move {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &key.namespace, &resource);
                let result = api.get(&key.name).await;
                (key, result)
            })
            .buffer_unordered(CONCURRENT_GETS)
            .collect()
            .await;
        let now = Instant::now();
        let mut found = Vec::new();
        for (key, result) in results {
            let entry = match result {
                Ok(obj) => {
                    let owner = OwnerRef::controller_of(obj.metadata.owner_references.as_ref(), &mut self.strings);
                    let release = release_of(&obj.metadata, &key.namespace);
                    let record = OwnerRecord { key: key.clone(), owner, release };
                    found.push(record.clone());
                    Entry::Found { record, until: now + self.ttls.found }
                }
                Err(kube::Error::Api(status)) if status.is_forbidden() || status.is_not_found() => {
                    tracing::info!(kind = %key.kind, name = %key.name, namespace = %key.namespace, code = status.code,
                        "owner not readable; identities stop at the last readable owner");
                    Entry::Unreadable { until: now + self.ttls.unreadable }
                }
                Err(e) => {
                    tracing::warn!(kind = %key.kind, name = %key.name, namespace = %key.namespace,
                        error = %error_chain(&e), "owner GET failed; will retry");
                    Entry::Unreadable { until: now + self.ttls.retry }
                }
            };
            self.entries.insert(key, entry);
        }
        found
    }

    /// The API resource of a kind: guessed for built-in groups, discovered (once) for others,
    /// guessed when discovery fails.
    async fn resource(&mut self, api_version: &str, kind: &str) -> ApiResource {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        if let Some(resource) = self.resources.get(&gvk) {
            return resource.clone();
        }
        let resource = if BUILTIN_GROUPS.contains(&group) {
            ApiResource::from_gvk(&gvk)
        } else {
            match kube::discovery::pinned_kind(&self.client, &gvk).await {
                Ok((resource, _caps)) => resource,
                Err(e) => {
                    tracing::info!(api_version, kind, error = %error_chain(&e), "discovery failed; guessing the plural");
                    ApiResource::from_gvk(&gvk)
                }
            }
        };
        self.resources.insert(gvk, resource.clone());
        resource
    }

    /// Drop expired entries (called now and then so the cache does not grow without bound).
    pub fn sweep(&mut self) {
        let now = Instant::now();
        self.entries.retain(|_, e| match e {
            Entry::Found { until, .. } | Entry::Unreadable { until } => *until > now,
        });
    }
}
