//! The pod IP history as the watch events tell it: an IP is held from the pod's start when the
//! pod is first seen (it may have run long before the watch began), from the event's time when
//! it changes later, and released at the event that removes it (a new IP, completion,
//! deletion, or a relist the pod is missing from).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;

use crate::history::PodHistory;
use crate::model::{Interner, PodRecord};
use crate::snapshot::Snapshot;

#[derive(Debug)]
pub(crate) struct PodTracker {
    keep: Vec<String>,
    pub history: PodHistory,
    /// The pods as last seen, by UID.
    known: HashMap<Arc<str>, PodRecord>,
    /// The strings the records of `known` and of the history share.
    strings: Interner,
    /// The UIDs seen so far in a relist, while one is under way.
    relisting: Option<HashSet<Arc<str>>>,
}

impl PodTracker {
    pub fn new(keep: &[String]) -> Self {
        Self {
            keep: keep.to_vec(),
            history: PodHistory::default(),
            known: HashMap::new(),
            strings: Interner::default(),
            relisting: None,
        }
    }

    /// The annotations kept on pods.
    pub fn keep(&self) -> &[String] {
        &self.keep
    }

    fn record(&mut self, pod: &Pod) -> PodRecord {
        PodRecord::from_pod(pod, &self.keep, &mut self.strings)
    }

    /// Apply one watch event seen at `now_ms`; `current` names the workloads of pods that go.
    pub fn apply(&mut self, event: Event<Pod>, current: &Snapshot, now_ms: i64) {
        match event {
            Event::Init => self.relisting = Some(HashSet::new()),
            Event::InitApply(pod) => {
                let record = self.record(&pod);
                if let Some(seen) = self.relisting.as_mut() {
                    seen.insert(record.uid.clone());
                }
                self.seen(record, now_ms);
            }
            Event::InitDone => {
                let seen = self.relisting.take().unwrap_or_default();
                let vanished: Vec<Arc<str>> = self.known.keys().filter(|uid| !seen.contains(*uid)).cloned().collect();
                if !vanished.is_empty() {
                    tracing::debug!(pods = vanished.len(), "pods gone while the watch was down");
                }
                for uid in vanished {
                    if let Some(record) = self.known.remove(&uid) {
                        let (workload, release) = (current.workload_of_pod(&uid), current.release_of_pod(&uid));
                        self.history.gone(record, workload, release, now_ms);
                    }
                }
            }
            Event::Apply(pod) => {
                let record = self.record(&pod);
                self.seen(record, now_ms);
            }
            Event::Delete(pod) => {
                let record = self.record(&pod);
                self.known.remove(&record.uid);
                let workload = current.workload_of_pod(&record.uid);
                let release = current.release_of_pod(&record.uid);
                self.history.gone(record, workload, release, now_ms);
            }
        }
    }

    fn seen(&mut self, record: PodRecord, now_ms: i64) {
        self.history.observe(&record, now_ms);
        self.known.insert(record.uid.clone(), record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    use crate::identity::{Peer, ResolveOptions, UnresolvedReason};
    use crate::model::ClusterObjects;

    fn pod(uid: &str, ip: &str, start: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod-{uid}"), "namespace": "ns", "uid": uid},
            "status": {"podIP": ip, "phase": "Running", "startTime": start}
        }))
        .expect("test pod deserialises")
    }

    fn resolve(tracker: &PodTracker, ip: &str, at: i64) -> Peer {
        let objects = ClusterObjects { pods: tracker.known.values().cloned().collect(), ..ClusterObjects::default() };
        let snap = Snapshot::build(&objects, &tracker.history, &ResolveOptions::default(), at);
        snap.resolve_remote(ip.parse::<IpAddr>().expect("test IP"), 80, at)
    }

    #[test]
    fn a_relist_releases_pods_missing_from_it() {
        let empty = Snapshot::default();
        let mut t = PodTracker::new(&[]);
        t.apply(Event::Init, &empty, 0);
        t.apply(Event::InitApply(pod("a", "10.1.0.1", "2025-01-01T00:00:00Z")), &empty, 1_800_000_000_000);
        t.apply(Event::InitDone, &empty, 1_800_000_000_000);
        let started = 1_735_689_600_000; // 2025-01-01T00:00:00Z
        assert!(resolve(&t, "10.1.0.1", started + 1).workload().is_some(), "held since its start time");

        // The watch broke; the relist no longer has pod a.
        t.apply(Event::Init, &empty, 1_800_000_100_000);
        t.apply(Event::InitDone, &empty, 1_800_000_100_000);
        let after = resolve(&t, "10.1.0.1", 1_800_000_200_000);
        let expected = Peer::Unresolved { ip: "10.1.0.1".parse().expect("IP"), reason: UnresolvedReason::NoPodAtTime };
        assert_eq!(after, expected, "a pod missing from the relist is released");
        assert!(t.history.retained.contains_key("a"), "and kept for late flows");
    }
}
