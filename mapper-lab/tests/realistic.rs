//! The lab does what it says on a realistic scenario (`deploy/local/scenarios/realistic.yaml`),
//! without mapper's agent or server: every call succeeds (DNS resolved first, IPv6, the
//! external host, the API server, UDP replies, hostNetwork), after the rollout kube-proxy's
//! rules lead to the new pods only, the freed IP was reused, the kubelet probed the new pods,
//! the inventory loads as mapper-server loads it and says who held the reused IP when, and
//! `down` leaves nothing behind. Its own test binary: the lab's names (`mlab-…`) are global.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use mapper_cluster::{Inventory, Peer, ResolveOptions, Workload};
use mapper_lab::netns::bpf_available;
use serde_json::Value;

const SCENARIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/scenarios/realistic.yaml");

fn lab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mapper-lab"))
}

/// The lab for one test, taken down on drop (also when an assertion fails).
struct Up(PathBuf);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = lab().arg("down").arg("--state-dir").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn json_file(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The DNAT targets of `vip`'s rules in the node namespace.
fn dnat_targets(vip: &str, tool: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "exec", "mlab-node", tool, "-t", "nat"]).output().expect("save rules");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.contains(&format!("-d {vip}/")))
        .filter_map(|l| l.split_once("--to-destination ").map(|(_, to)| to.to_owned()))
        .collect();
    v.sort();
    v
}

/// Unix milliseconds of an RFC 3339 time the lab wrote (whole seconds, as Kubernetes writes).
fn ms(rfc3339: &str) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339).unwrap_or_else(|e| panic!("time {rfc3339:?}: {e}"));
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[test]
fn realistic_scenario_does_what_it_says() {
    if !bpf_available("realistic_scenario_does_what_it_says") {
        return;
    }
    let started = Instant::now();
    let state = std::env::temp_dir().join(format!("mapper-lab-realistic-{}", std::process::id()));
    let up = Up(state.clone());
    let st = lab().args(["up", "--scenario", SCENARIO, "--state-dir"]).arg(&up.0).status().expect("lab up");
    assert!(st.success(), "mapper-lab up realistic.yaml failed");
    // The inventory as a server polling it saw it at round 1, then at round 2.
    let seen = state.join("seen");
    std::fs::create_dir_all(&seen).expect("mkdir");
    let mut calls: Vec<Value> = Vec::new();
    for round in ["1", "2"] {
        let out = lab()
            .args(["traffic", "--scenario", SCENARIO, "--round", round, "--state-dir"])
            .arg(&state)
            .output()
            .expect("traffic");
        assert!(out.status.success(), "traffic round {round} failed: {}", String::from_utf8_lossy(&out.stderr));
        calls.extend(
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")),
        );
        std::fs::copy(state.join("inventory.yaml"), seen.join(format!("round{round}.yaml"))).expect("copy inventory");
    }
    assert_eq!(calls.len(), 15, "{calls:#?}");

    // Every call succeeded, and each did what its kind says.
    for c in &calls {
        assert_eq!(c["ok"], c["count"], "call failed: {c:#}");
        assert_eq!(c["failed"], 0, "{c:#}");
        let dns = c["dns"] == true;
        for p in c["pods"].as_array().expect("pods") {
            let queries = p["dns_queries"].as_array().map_or(0, Vec::len);
            assert_eq!(queries > 0, dns, "DNS before the call exactly when dns: {c:#}");
        }
    }
    let find = |to: &str, family: &str, round: usize| -> &Value {
        calls
            .iter()
            .filter(|c| c["to"] == to && c["family"] == family && c["from"] != to)
            .nth(round)
            .unwrap_or_else(|| panic!("no call to {to} ({family}) #{round}: {calls:#?}"))
    };
    // Every replica calls: frontend's 6 connections come from its 3 pods, 2 each.
    let spread: Vec<u64> = find("catalog.shop", "IPv4", 0)["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .map(|p| p["count"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(spread, vec![2, 2, 2]);
    assert_eq!(find("catalog.shop", "IPv4", 1)["pods"].as_array().map(Vec::len), Some(1), "fromPod pins one");
    assert_eq!(find("catalog.shop", "IPv6", 0)["address"], "[fd00:96:100::10]:80");
    assert_eq!(find("payments.billing", "IPv6", 0)["address"], "[fd00:96:100::11]:443");
    assert_eq!(find("catalog.shop", "IPv4", 0)["address"], "10.96.100.10:80");
    let ext = find("api.example.com", "IPv4", 0);
    assert_eq!(ext["address"], "203.0.113.10:443");
    let asked = &ext["pods"][0]["dns_queries"];
    let search = ["api.example.com.shop.svc.cluster.local", "api.example.com.svc.cluster.local"];
    let want: Vec<Value> =
        search.iter().chain(&["api.example.com.cluster.local", "api.example.com"]).map(|q| Value::from(*q)).collect();
    assert_eq!(asked.as_array(), Some(&want), "the search list first, as libc with ndots:5: {asked}");
    assert_eq!(find("kubernetes.default", "IPv4", 0)["address"], "10.96.0.1:443");
    let udp = find("statsd.monitoring", "IPv4", 0);
    assert_eq!((udp["protocol"].as_str(), udp["ok"].as_u64()), (Some("udp"), Some(3)), "UDP replies: {udp:#}");
    let host = find("node-metrics.monitoring", "IPv4", 0);
    assert_eq!(host["address"], "10.244.100.1:9100");
    // The calls inside a pod (and on the node) went to its own server over loopback.
    let own: Vec<(&str, &str)> = calls
        .iter()
        .filter(|c| c["from"] == c["to"])
        .map(|c| (c["from"].as_str().unwrap_or("?"), c["address"].as_str().unwrap_or("?")))
        .collect();
    let want = [
        ("catalog.shop", "127.0.0.1:8080"),
        ("catalog.shop", "[::1]:8080"),
        ("statsd.monitoring", "127.0.0.1:8125"),
        ("node-metrics.monitoring", "127.0.0.1:9100"),
    ];
    assert_eq!(own, want, "loopback calls: {calls:#?}");

    // The rollout: new payments pods (another ReplicaSet), the old ones deleted with their
    // end time, kube-proxy leading to the new ones only (both families).
    let s = json_file(&state.join("state.json"));
    let alive = s["pods"].as_array().expect("pods");
    let deleted = s["deleted"].as_array().expect("deleted");
    let payments =
        |list: &[Value]| -> Vec<Value> { list.iter().filter(|p| p["workload"] == "payments").cloned().collect() };
    let (new, old) = (payments(alive), payments(deleted));
    assert_eq!((new.len(), old.len()), (2, 2), "{s:#}");
    assert!(new.iter().all(|p| p["revision"] == 1) && old.iter().all(|p| p["finished"].is_string()), "{s:#}");
    let prefix = |p: &Value| p["name"].as_str().and_then(|n| n.rsplit_once('-')).map(|(rs, _)| rs.to_string());
    assert_ne!(prefix(&new[0]), prefix(&old[0]), "a rollout makes a new ReplicaSet");
    let mut want4: Vec<String> = new.iter().map(|p| format!("{}:8443", p["ip"].as_str().unwrap_or("?"))).collect();
    want4.sort();
    assert_eq!(dnat_targets("10.96.100.11", "iptables-save"), want4, "payments' IPv4 rules");
    let mut want6: Vec<String> = new.iter().map(|p| format!("[{}]:8443", p["ipv6"].as_str().unwrap_or("?"))).collect();
    want6.sort();
    assert_eq!(dnat_targets("fd00:96:100::11", "ip6tables-save"), want6, "payments' IPv6 rules");
    // The freed IP was reused, by invoicer (created at round 2).
    let invoicer = alive.iter().find(|p| p["workload"] == "invoicer").expect("invoicer's pod");
    let victim = old.iter().find(|p| p["ip"] == invoicer["ip"]).unwrap_or_else(|| panic!("no reuse: {s:#}"));

    // The inventory loads as mapper-server loads it, and says who held what when.
    let current = seen.join("current.yaml");
    std::fs::copy(seen.join("round1.yaml"), &current).expect("copy");
    let t1 = ms(new[0]["created"].as_str().unwrap_or_default()) - 1;
    let mut inventory = Inventory::load_at(vec![current.clone()], ResolveOptions::default(), t1)
        .unwrap_or_else(|e| panic!("mapper-cluster cannot load the lab's round 1 inventory: {e:?}"));
    std::fs::copy(seen.join("round2.yaml"), &current).expect("copy");
    let now = ms(invoicer["created"].as_str().unwrap_or_default()) + 60_000;
    let snap = inventory
        .reload_at(now)
        .unwrap_or_else(|e| panic!("mapper-cluster cannot load the lab's round 2 inventory: {e:?}"));
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let wl = |n: &str, ns: &str| Peer::Workload(Workload::new(n, ns, "Deployment"));
    assert_eq!(snap.resolve_remote(ip("10.96.100.11"), 443, now), wl("payments", "billing"));
    assert_eq!(snap.resolve_remote(ip("fd00:96:100::10"), 80, now), wl("catalog", "shop"));
    assert_eq!(snap.resolve_remote(ip("10.96.0.10"), 53, now), wl("coredns", "kube-system"));
    assert_eq!(snap.resolve_remote(ip("10.96.0.1"), 443, now), Peer::ApiServer);
    let reused = ip(invoicer["ip"].as_str().unwrap_or_default());
    assert_eq!(snap.resolve_remote(reused, 9000, now), wl("invoicer", "billing"));
    let (from, to) =
        (ms(victim["created"].as_str().unwrap_or_default()), ms(victim["finished"].as_str().unwrap_or_default()));
    assert!(to > from, "{victim:#}");
    assert_eq!(snap.resolve_remote(reused, 8443, (from + to) / 2), wl("payments", "billing"), "the IP's first holder");

    // The kubelet probed the new pods too (it follows the rollout), from its own cgroup.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let k = json_file(&state.join("kubelet.json"));
        let probes = |p: &Value, what: &str| {
            let key = format!("{}/{}", p["namespace"].as_str().unwrap_or(""), p["name"].as_str().unwrap_or(""));
            k["pods"][&key][what].as_u64().unwrap_or(0)
        };
        let probed = |p: &Value| probes(p, "ok") > 0;
        // The old pods were probed at least once (the kubelet's first round is done when `up`
        // returns); whether that probe succeeded depends on the machine's load.
        let tried = |p: &Value| probes(p, "ok") + probes(p, "failed") > 0;
        if new.iter().all(probed) && probed(invoicer) && old.iter().all(tried) {
            assert!(k["ok"].as_u64().unwrap_or(0) >= 8, "{k:#}");
            break;
        }
        assert!(Instant::now() < deadline, "the kubelet did not probe every pod: {k:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let base = PathBuf::from(s["cgroup_base"].as_str().expect("cgroup base"));
    let procs =
        std::fs::read_to_string(base.join("system.slice/kubelet.service/cgroup.procs")).expect("kubelet cgroup");
    assert_eq!(procs.lines().count(), 1, "one kubelet process in its cgroup");

    // down removes everything: namespaces, cgroups (and so every process), state files.
    drop(up);
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mlab-"))
        .collect();
    assert!(left.is_empty(), "namespaces left after down: {left:?}");
    assert!(!base.exists(), "{} left after down", base.display());
    eprintln!("realistic lab: {:.1}s", started.elapsed().as_secs_f64());
}
