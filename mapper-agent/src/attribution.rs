//! Who a local end belongs to: cgroup id → cgroup path → pod UID and container id.
//!
//! A cgroup v2 id is the inode number of the cgroup's directory, so the map
//! from id to path is a walk of the cgroup2 tree; kubelet names pod cgroups
//! after the pod's UID in both of its layouts:
//! - cgroupfs: `/kubepods/burstable/pod<uid>/<container id>`
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use tracing::debug;

/// The pod (and container) a cgroup belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodRef {
    /// The pod's UID, with dashes.
    pub pod_uid: String,
    /// The container id, when the cgroup is a container's.
    pub container_id: Option<String>,
}

/// What is known of one cgroup id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupInfo {
    /// Path relative to the cgroup2 root, starting with `/`.
    pub path: String,
    /// The pod, when the path is a kubelet pod cgroup.
    pub pod: Option<PodRef>,
}

fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn container_id(component: &str) -> Option<String> {
    let s = component.strip_suffix(".scope").unwrap_or(component);
    let s = ["cri-containerd-", "docker-", "crio-conmon-", "crio-", "containerd-", "cri-o-"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(s);
    (s.len() >= 12 && s.bytes().all(|c| c.is_ascii_hexdigit())).then(|| s.to_string())
}

/// The pod a cgroup path belongs to, in kubelet's cgroupfs or systemd layout.
pub fn pod_from_cgroup_path(path: &str) -> Option<PodRef> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let uid = if let Some(rest) = part.strip_prefix("pod") {
            // cgroupfs: pod<uid>
            is_uid(rest).then(|| rest.to_string())
        } else if let Some(slice) = part.strip_suffix(".slice") {
            // systemd: kubepods-<qos>-pod<uid_with_underscores>.slice
            slice.rfind("-pod").map(|at| slice[at + 4..].replace('_', "-")).filter(|u| is_uid(u))
        } else {
            None
        };
        if let Some(pod_uid) = uid {
            let container_id = parts.get(i + 1).and_then(|c| container_id(c));
            return Some(PodRef { pod_uid, container_id });
        }
    }
    None
}

/// Resolves cgroup ids to paths and pods. An unknown id triggers one rescan
/// of the tree per batch; an id still unknown after that (its cgroup is gone)
/// is remembered as such for a while, so it does not cause a rescan every round.
#[derive(Debug)]
pub struct CgroupResolver {
    root: PathBuf,
    by_id: HashMap<u64, CgroupInfo>,
    /// Ids in `by_id` whose cgroup a scan found gone, since when.
    vanished: HashMap<u64, Instant>,
    missing: HashMap<u64, Instant>,
    /// How long an unknown id stays unknown, and a vanished cgroup stays known.
    ttl: Duration,
}

impl CgroupResolver {
    /// A resolver over the cgroup2 hierarchy mounted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            by_id: HashMap::new(),
            vanished: HashMap::new(),
            missing: HashMap::new(),
            ttl: Duration::from_secs(60),
        }
    }

    /// Makes sure every id of a batch is resolved if it can be: at most one rescan.
    pub fn prepare(&mut self, ids: impl IntoIterator<Item = u64>) {
        let now = Instant::now();
        self.missing.retain(|_, since| now.duration_since(*since) < self.ttl);
        let unknown: Vec<u64> = ids
            .into_iter()
            .filter(|id| *id != 0 && !self.by_id.contains_key(id) && !self.missing.contains_key(id))
            .collect();
        if unknown.is_empty() {
            return;
        }
        self.rescan();
        for id in unknown {
            if !self.by_id.contains_key(&id) {
                self.missing.insert(id, now);
            }
        }
    }

    /// What is known of `id` (after [`prepare`](Self::prepare)).
    pub fn get(&self, id: u64) -> Option<&CgroupInfo> {
        self.by_id.get(&id)
    }

    /// [`prepare`](Self::prepare) and [`get`](Self::get) for one id.
    pub fn resolve(&mut self, id: u64) -> Option<&CgroupInfo> {
        self.prepare([id]);
        self.get(id)
    }

    /// Walks the whole tree again. A cgroup that disappeared is forgotten by the
    /// first scan at least a minute after one found it gone, so a flow drained
    /// shortly after its pod died is still attributed, and a node's pod churn
    /// does not grow the map without bound.
    pub fn rescan(&mut self) {
        let started = Instant::now();
        let mut found = HashMap::with_capacity(self.by_id.len().max(64));
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(meta) = fs::metadata(&dir) else {
                continue;
            };
            let rel = dir.strip_prefix(&self.root).map(|p| format!("/{}", p.display())).unwrap_or_default();
            let pod = pod_from_cgroup_path(&rel);
            found.insert(meta.ino(), CgroupInfo { path: rel, pod });
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        let now = Instant::now();
        let ttl = self.ttl;
        let mut vanished = HashMap::new();
        for (id, info) in self.by_id.drain() {
            if found.contains_key(&id) {
                continue;
            }
            let since = self.vanished.get(&id).copied().unwrap_or(now);
            if now.duration_since(since) < ttl {
                found.insert(id, info);
                vanished.insert(id, since);
            }
        }
        self.vanished = vanished;
        debug!(cgroups = found.len(), elapsed_us = started.elapsed().as_micros() as u64, "cgroup tree scanned");
        self.by_id = found;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f8a3b5c-1d2e-4f60-8a9b-0c1d2e3f4a5b";

    #[test]
    fn cgroupfs_layout() {
        let p =
            format!("/kubepods/burstable/pod{UID}/4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e");
        let pod = pod_from_cgroup_path(&p).expect("pod found");
        assert_eq!(pod.pod_uid, UID);
        assert_eq!(
            pod.container_id.as_deref(),
            Some("4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e")
        );
        let guaranteed = format!("/kubepods/pod{UID}");
        assert_eq!(pod_from_cgroup_path(&guaranteed).expect("pod").container_id, None);
    }

    #[test]
    fn systemd_layout() {
        let u = UID.replace('-', "_");
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-abcdef0123456789abcdef0123456789.scope"
        );
        let pod = pod_from_cgroup_path(&p).expect("pod found");
        assert_eq!(pod.pod_uid, UID);
        assert_eq!(pod.container_id.as_deref(), Some("abcdef0123456789abcdef0123456789"));
        let be = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/docker-0123456789ab.scope"
        );
        assert_eq!(pod_from_cgroup_path(&be).expect("pod").container_id.as_deref(), Some("0123456789ab"));
        let crio = format!("/kubepods.slice/kubepods-pod{u}.slice/crio-0123456789abcdef.scope");
        assert_eq!(pod_from_cgroup_path(&crio).expect("pod").pod_uid, UID);
    }

    #[test]
    fn not_a_pod() {
        for p in [
            "/",
            "/system.slice/sshd.service",
            "/user.slice/user-0.slice",
            "/kubepods/burstable",
            "/podman/pod123",
            "/kubepods.slice/kubepods-podnotauid.slice",
        ] {
            assert_eq!(pod_from_cgroup_path(p), None, "{p} should not be a pod");
        }
    }

    #[test]
    fn walks_a_real_tree() {
        let dir = std::env::temp_dir().join(format!("mapper-cg-{}", std::process::id()));
        let pod_dir = dir.join(format!("kubepods/burstable/pod{UID}/0123456789abcdef"));
        fs::create_dir_all(&pod_dir).expect("create tree");
        let ino = fs::metadata(&pod_dir).expect("stat").ino();
        let mut r = CgroupResolver::new(&dir);
        let info = r.resolve(ino).expect("resolved").clone();
        fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(info.path, format!("/kubepods/burstable/pod{UID}/0123456789abcdef"));
        assert_eq!(info.pod.expect("pod").container_id.as_deref(), Some("0123456789abcdef"));

        // The pod is gone: still known for a while, then forgotten.
        r.rescan();
        r.rescan();
        assert!(r.get(ino).is_some(), "a cgroup that just vanished was forgotten at once");
        r.ttl = Duration::ZERO;
        r.rescan();
        assert_eq!(r.get(ino), None, "a vanished cgroup is kept for ever");
        assert!(r.vanished.is_empty());
    }
}
