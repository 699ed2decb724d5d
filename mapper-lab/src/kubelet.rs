//! The lab's kubelet prober: TCP-socket probes of every pod's probed ports, every
//! `probeInterval`, from the node namespace, as kubelet (its own cgroup,
//! `system.slice/kubelet.service`, not a pod's) does. It re-reads the lab's state each time, so
//! it follows rollouts; its counters go to `<state>/kubelet.json`.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::lab::{LabState, load_state};

/// The prober's counters file in the state directory.
pub const COUNTERS_FILE: &str = "kubelet.json";
/// The kubelet's cgroup, relative to the lab's cgroup base.
pub const CGROUP: &str = "system.slice/kubelet.service";

/// Probes made to one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodProbes {
    pub ok: u64,
    pub failed: u64,
}

/// What the prober has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Probe rounds (one every interval).
    pub rounds: u64,
    pub ok: u64,
    pub failed: u64,
    /// Per pod, `<namespace>/<name>`.
    pub pods: BTreeMap<String, PodProbes>,
}

/// One round of probes over the pods of `state`.
pub fn probe_once(state: &LabState, timeout: Duration, counters: &mut Counters) {
    counters.rounds += 1;
    for pod in &state.pods {
        for port in &pod.probes {
            let ip = if pod.host_network { state.node_ip } else { pod.ip };
            let ok = TcpStream::connect_timeout(&SocketAddr::new(ip.into(), *port), timeout).is_ok();
            let entry = counters.pods.entry(format!("{}/{}", pod.namespace, pod.name)).or_default();
            if ok {
                counters.ok += 1;
                entry.ok += 1;
            } else {
                counters.failed += 1;
                entry.failed += 1;
            }
        }
    }
}

/// Probes until killed, writing the counters after every round; `ready` is called after the
/// first round (so every pod that exists at `up` has been probed once when `up` returns).
pub fn run(state_dir: &Path, interval: Duration, ready: impl FnOnce()) -> ! {
    let mut ready = Some(ready);
    let mut counters = Counters::default();
    let path = state_dir.join(COUNTERS_FILE);
    loop {
        let started = Instant::now();
        if let Ok(state) = load_state(state_dir) {
            probe_once(&state, Duration::from_secs(1).min(interval.max(Duration::from_millis(200))), &mut counters);
            if let Ok(bytes) = serde_json::to_vec_pretty(&counters) {
                let _ = crate::netns::write_whole(&path, &bytes);
            }
        }
        if let Some(f) = ready.take() {
            f();
        }
        std::thread::sleep(interval.saturating_sub(started.elapsed()).max(Duration::from_millis(10)));
    }
}
