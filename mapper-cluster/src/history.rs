//! Which pod held an IP when: per IP, the (pod UID, from, to) intervals, and the pods that
//! are gone but kept for late flows.
//!
//! A later holder of an IP ends the earlier one's interval at its own start, so a reused IP
//! never maps one flow to two pods, whatever order the evidence arrived in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::identity::{Release, Workload};
use crate::model::PodRecord;

/// One pod's tenure of one IP. `to_ms` is None while the end is unknown; it may be set before
/// the pod lets go of the IP (a deletion deadline, or a later holder's start), and `released`
/// says the pod is known to have let go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interval {
    pub uid: Arc<str>,
    pub from_ms: i64,
    pub to_ms: Option<i64>,
    pub released: bool,
}

impl Interval {
    /// How far `at` lies outside this interval (0 inside).
    fn distance(&self, at: i64) -> i64 {
        if at < self.from_ms { self.from_ms - at } else { self.to_ms.map_or(0, |to| at.saturating_sub(to).max(0)) }
    }
}

/// What the history says of an IP at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder<'a> {
    Pod(&'a str),
    /// Pods held this IP, but none at (or near) that time.
    NoneAtTime,
    /// No pod is known to have held this IP.
    Unknown,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct IpHistory {
    /// Looked up for every flow (foldhash: see `Snapshot`).
    by_ip: foldhash::HashMap<IpAddr, Vec<Interval>>,
    by_uid: HashMap<Arc<str>, Vec<IpAddr>>,
}

impl IpHistory {
    /// Record that `uid` holds `ip`, since `from_ms` unless it already did, and at the latest
    /// until `until_ms` (a deletion deadline) when given.
    pub fn hold(&mut self, ip: IpAddr, uid: &Arc<str>, from_ms: i64, until_ms: Option<i64>) {
        let list = self.by_ip.entry(ip).or_default();
        match list.iter_mut().find(|iv| iv.uid == *uid && !iv.released) {
            Some(iv) => {
                if let Some(until) = until_ms {
                    iv.to_ms = Some(iv.to_ms.map_or(until, |to| to.min(until)).max(iv.from_ms));
                }
            }
            None => list.push(Interval {
                uid: uid.clone(),
                from_ms,
                to_ms: until_ms.map(|to| to.max(from_ms)),
                released: false,
            }),
        }
        normalize(list);
        let ips = self.by_uid.entry(uid.clone()).or_default();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }

    /// Record that `uid` stopped holding `ip` at `at_ms` (nothing when it holds it no longer).
    pub fn release(&mut self, ip: IpAddr, uid: &str, at_ms: i64) {
        for iv in self.by_ip.get_mut(&ip).into_iter().flatten() {
            if *iv.uid == *uid && !iv.released {
                iv.to_ms = Some(iv.to_ms.map_or(at_ms, |to| to.min(at_ms)).max(iv.from_ms));
                iv.released = true;
            }
        }
    }

    /// The IPs `uid` holds now (not released).
    pub fn open_ips(&self, uid: &str) -> Vec<IpAddr> {
        let held = self.by_uid.get(uid).into_iter().flatten();
        held.filter(|ip| self.by_ip.get(ip).into_iter().flatten().any(|iv| *iv.uid == *uid && !iv.released))
            .copied()
            .collect()
    }

    /// Whether `uid` ever held an IP (as far as this history remembers).
    pub fn knows(&self, uid: &str) -> bool {
        self.by_uid.contains_key(uid)
    }

    /// Whether [`IpHistory::prune`] at `before_ms` would forget anything.
    pub fn has_before(&self, before_ms: i64) -> bool {
        self.by_ip.values().flatten().any(|iv| iv.released && iv.to_ms.is_some_and(|to| to < before_ms))
    }

    /// Forget released intervals that ended before `before_ms`.
    pub fn prune(&mut self, before_ms: i64) {
        self.by_ip.retain(|_, list| {
            list.retain(|iv| !iv.released || iv.to_ms.is_none_or(|to| to >= before_ms));
            !list.is_empty()
        });
        let by_ip = &self.by_ip;
        self.by_uid.retain(|uid, ips| {
            ips.retain(|ip| by_ip.get(ip).into_iter().flatten().any(|iv| &iv.uid == uid));
            !ips.is_empty()
        });
    }

    /// The pod that held `ip` at `at_ms`: the interval containing it, else the nearest one
    /// within `tolerance_ms` (no other pod held the IP then, or it would contain `at_ms`).
    pub fn lookup(&self, ip: IpAddr, at_ms: i64, tolerance_ms: i64) -> Holder<'_> {
        let Some(list) = self.by_ip.get(&ip) else { return Holder::Unknown };
        // Intervals are sorted by start; the latest one containing `at` wins.
        let nearest = list
            .iter()
            .rev()
            .map(|iv| (iv.distance(at_ms), iv))
            .filter(|(d, _)| *d <= tolerance_ms)
            .min_by_key(|(d, _)| *d);
        match nearest {
            Some((_, iv)) => Holder::Pod(&iv.uid),
            None => Holder::NoneAtTime,
        }
    }
}

/// Sort by start and let every holder end where the next (other) holder begins.
fn normalize(list: &mut [Interval]) {
    list.sort_by(|a, b| a.from_ms.cmp(&b.from_ms).then_with(|| a.uid.cmp(&b.uid)));
    for i in 0..list.len() {
        let next_other = list[i + 1..].iter().find(|n| n.uid != list[i].uid).map(|n| n.from_ms);
        if let Some(next_from) = next_other {
            let iv = &mut list[i];
            if iv.to_ms.is_none_or(|to| to > next_from) {
                iv.to_ms = Some(next_from.max(iv.from_ms));
            }
        }
    }
}

/// A pod that is gone, kept so late flows and late cgroup evidence still resolve.
#[derive(Debug, Clone)]
pub(crate) struct Retained {
    pub record: PodRecord,
    /// Its workload as last resolved (None if it vanished before any snapshot saw it).
    pub workload: Option<Workload>,
    /// Its workload's Helm release as last resolved.
    pub release: Option<Release>,
    pub deleted_ms: i64,
}

/// The IP history plus the retained pods: the state a source carries from one snapshot to
/// the next.
///
/// The IP history is shared with the snapshots built from it; it is copied only when it
/// changes while a snapshot still holds it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodHistory {
    pub ips: Arc<IpHistory>,
    pub retained: HashMap<Arc<str>, Retained>,
}

impl PodHistory {
    /// A pod as it is now (`now_ms` is when this was learnt).
    pub fn observe(&mut self, pod: &PodRecord, now_ms: i64) {
        self.retained.remove(&pod.uid);
        let ips = Arc::make_mut(&mut self.ips);
        let current: &[IpAddr] = if pod.finished() { &[] } else { pod.own_ips() };
        let end = if pod.finished() { pod.finished_ms.unwrap_or(now_ms) } else { now_ms };
        for ip in ips.open_ips(&pod.uid) {
            if !current.contains(&ip) {
                ips.release(ip, &pod.uid, end);
            }
        }
        // The first IP a pod is seen with it has held since it started; a later one since now.
        let from = if ips.knows(&pod.uid) { now_ms } else { pod.start_ms().unwrap_or(now_ms).min(now_ms) };
        for ip in current {
            // A terminating pod lets go of its IP by its deletion deadline at the latest.
            ips.hold(*ip, &pod.uid, from, pod.deletion_ms);
        }
    }

    /// A pod is gone (seen deleted at `now_ms`); keep its identity for the retention period.
    pub fn gone(&mut self, pod: PodRecord, workload: Option<Workload>, release: Option<Release>, now_ms: i64) {
        let end = pod.deletion_ms.map_or(now_ms, |d| d.min(now_ms));
        let ips = Arc::make_mut(&mut self.ips);
        for ip in ips.open_ips(&pod.uid) {
            ips.release(ip, &pod.uid, end);
        }
        self.retained.insert(pod.uid.clone(), Retained { record: pod, workload, release, deleted_ms: now_ms });
    }

    /// Forget pods deleted, and intervals ended, more than `retention_ms` before `now_ms`.
    pub fn expire(&mut self, now_ms: i64, retention_ms: i64) {
        let cutoff = now_ms.saturating_sub(retention_ms);
        self.retained.retain(|_, r| r.deleted_ms >= cutoff);
        if self.ips.has_before(cutoff) {
            Arc::make_mut(&mut self.ips).prune(cutoff);
        }
    }

    /// When the next retained pod expires, if any.
    pub fn next_expiry(&self, retention_ms: i64) -> Option<i64> {
        self.retained.values().map(|r| r.deleted_ms.saturating_add(retention_ms)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IP parses")
    }

    #[test]
    fn a_reused_ip_maps_each_time_to_its_own_holder() {
        let mut h = IpHistory::default();
        h.hold(ip("10.0.0.1"), &"old".into(), 1_000, None);
        // The new holder appears before the old one's deletion was seen: it ends the old one.
        h.hold(ip("10.0.0.1"), &"new".into(), 5_000, None);
        h.release(ip("10.0.0.1"), "old", 6_000);
        assert_eq!(h.lookup(ip("10.0.0.1"), 2_000, 0), Holder::Pod("old"));
        assert_eq!(h.lookup(ip("10.0.0.1"), 5_500, 0), Holder::Pod("new"), "old must end where new begins");
        assert_eq!(h.lookup(ip("10.0.0.1"), 900, 0), Holder::NoneAtTime);
        assert_eq!(h.lookup(ip("10.0.0.1"), 900, 200), Holder::Pod("old"), "within tolerance before start");
        assert_eq!(h.lookup(ip("10.0.0.2"), 900, 200), Holder::Unknown);
    }

    #[test]
    fn tolerance_never_reaches_past_another_holder() {
        let mut h = IpHistory::default();
        h.hold(ip("10.0.0.1"), &"a".into(), 1_000, Some(2_000));
        h.hold(ip("10.0.0.1"), &"b".into(), 2_100, None);
        assert_eq!(h.lookup(ip("10.0.0.1"), 2_040, 1_000), Holder::Pod("a"), "nearest end wins");
        assert_eq!(h.lookup(ip("10.0.0.1"), 2_090, 1_000), Holder::Pod("b"), "nearest start wins");
        assert_eq!(h.lookup(ip("10.0.0.1"), 3_000, 0), Holder::Pod("b"));
    }

    #[test]
    fn prune_forgets_old_closed_intervals_only() {
        let mut h = IpHistory::default();
        h.hold(ip("10.0.0.1"), &"a".into(), 1_000, None);
        h.release(ip("10.0.0.1"), "a", 2_000);
        h.hold(ip("10.0.0.2"), &"b".into(), 1_000, Some(2_000));
        h.prune(10_000);
        assert_eq!(h.lookup(ip("10.0.0.1"), 1_500, 0), Holder::Unknown, "closed interval pruned");
        assert_eq!(h.lookup(ip("10.0.0.2"), 1_500, 0), Holder::Pod("b"), "unreleased interval kept");
        assert!(!h.knows("a"));
        assert!(h.knows("b"));
    }
}
