//! The agent's map sizes in values.yaml: the agent's own defaults, and the kernel-memory
//! arithmetic written beside them, recomputed from the structs the kernel and the agent share;
//! and the README's Resources table, which repeats them.

mod common;

use std::mem::size_of;

use common::*;
use mapper_ebpf_common::{
    FlowKey, FlowValue, ListenerKey, ListenerValue, NatKey, NatValue, PeerKey, PeerValue, SockInfo, UdpKey,
};

/// `struct htab_elem` before the key (hash node, LRU node, hash), as the kernel lays it out.
const HTAB_ELEM_HEADER: usize = 48;
/// `struct bucket`: a list head and a spinlock.
const BUCKET: usize = 16;
/// Entries the agent allocates per flow map beyond `--flow-entries`, per CPU (capture.rs).
const FLOW_SLACK_PER_CPU: usize = 128;
/// Entries of the listeners map (fixed in the C object).
const LISTENER_ENTRIES: usize = 4096;
/// `peers` and `udp_first` in mapper.bpf.c (not settable).
const PEER_ENTRIES: usize = 16384;
const UDP_FIRST_ENTRIES: usize = 16384;

fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Bytes of a preallocated (LRU) hash map.
fn hash_map(entries: usize, key: usize, value: usize) -> usize {
    entries * (HTAB_ELEM_HEADER + round8(key) + round8(value)) + entries.next_power_of_two() * BUCKET
}

fn values() -> serde_json::Value {
    mapper_intents::stream::from_str(&read(&root().join("deploy/helm/mapper/values.yaml"))).expect("values.yaml")
}

fn agent_value(key: &str) -> usize {
    let v = &values()["agent"][key];
    v.as_u64().unwrap_or_else(|| panic!("agent.{key} is a number")) as usize
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[test]
fn map_sizes_are_the_agents_defaults() {
    let main = read(&root().join("mapper-agent/src/main.rs"));
    for (key, env) in [
        ("flowEntries", "MAPPER_FLOW_ENTRIES"),
        ("socketEntries", "MAPPER_SOCKET_ENTRIES"),
        ("natEntries", "MAPPER_NAT_ENTRIES"),
        ("dnsRingBytes", "MAPPER_DNS_RING_BYTES"),
        ("maxPendingFlows", "MAPPER_MAX_PENDING_FLOWS"),
    ] {
        let line = main
            .lines()
            .find(|l| l.contains(&format!("env = \"{env}\"")))
            .unwrap_or_else(|| panic!("agent reads {env}"));
        let default: usize = line
            .split("default_value_t = ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .map(|s| s.replace('_', "").replace(" * 1024", "").trim().to_owned())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a numeric default in: {line}"));
        assert_eq!(agent_value(key), default, "values agent.{key} = mapper-agent's default for {env}");
    }
}

#[test]
fn kernel_memory_comment_matches_the_structs() {
    let text = read(&root().join("deploy/helm/mapper/values.yaml"));
    let flow_elem = HTAB_ELEM_HEADER + round8(size_of::<FlowKey>()) + round8(size_of::<FlowValue>());
    let sock_elem = HTAB_ELEM_HEADER + 8 + round8(size_of::<SockInfo>());
    let nat_elem = HTAB_ELEM_HEADER + round8(size_of::<NatKey>()) + round8(size_of::<NatValue>());
    let listener_elem = HTAB_ELEM_HEADER + round8(size_of::<ListenerKey>()) + round8(size_of::<ListenerValue>());
    let peer_elem = HTAB_ELEM_HEADER + round8(size_of::<PeerKey>()) + round8(size_of::<PeerValue>());
    let udp_elem = HTAB_ELEM_HEADER + round8(size_of::<UdpKey>()) + round8(size_of::<u32>());
    for (what, expected) in [
        (
            format!(
                "{flow_elem} B (48 B element header + {} B flow_key + {} B flow_value)",
                size_of::<FlowKey>(),
                size_of::<FlowValue>()
            ),
            "flow",
        ),
        (format!("{sock_elem} B (48 + 8 B socket pointer + {} B sock_info)", size_of::<SockInfo>()), "connecting"),
        (
            format!("{nat_elem} B (48 + {} B nat_key + {} B nat_value)", size_of::<NatKey>(), size_of::<NatValue>()),
            "nat",
        ),
        (
            format!(
                "{listener_elem} B (48 + {} B listener_key + {} B listener_value)",
                size_of::<ListenerKey>(),
                round8(size_of::<ListenerValue>())
            ),
            "listeners",
        ),
        (
            format!(
                "{peer_elem} B (48 + {} B peer_key + {} B peer_value)",
                size_of::<PeerKey>(),
                size_of::<PeerValue>()
            ),
            "peers",
        ),
        (format!("{udp_elem} B (48 + {} B udp_key + 8 B value)", round8(size_of::<UdpKey>())), "udp_first"),
    ] {
        assert!(text.contains(&what), "values.yaml gives the {expected} element as {what:?}");
    }
    for (map, bytes) in fixed_maps() {
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("#   {map}"))).expect("a line per map");
        let size = format!("= {:.2} MiB", bytes as f64 / (1024.0 * 1024.0));
        assert!(line.ends_with(&size), "values.yaml gives the {map} map as {size:?}: {line}");
    }
    for cpus in [8, 64] {
        let (flow_maps, total) = map_memory(cpus);
        let line = format!("{} at {cpus} CPUs", mib(flow_maps));
        assert!(text.contains(&line), "values.yaml gives the flow maps as {line:?}");
        let total = format!("{} at {cpus} CPUs", mib(total));
        assert!(text.contains(&total), "values.yaml gives the total as {total:?}");
    }
}

/// The README's table of requests and limits is values.yaml's, and its BPF map sizes are the
/// ones computed above.
#[test]
fn readme_resources_are_the_values() {
    let section = readme_section("Install in a cluster");
    let values = values();
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_else(|| panic!("{v:?} is text"));
    for who in ["agent", "server"] {
        let r = &values[who]["resources"];
        let row = format!(
            "| {who} | {} CPU, {} | {} CPU, {} |",
            text(&r["requests"]["cpu"]),
            text(&r["requests"]["memory"]),
            text(&r["limits"]["cpu"]),
            text(&r["limits"]["memory"])
        );
        assert!(section.contains(&row), "README's Resources table has {row:?}");
    }
    let persistence = &values["server"]["persistence"];
    let store = format!(
        "| server store | | {} emptyDir, or a {} claim |",
        text(&persistence["emptyDirSizeLimit"]),
        text(&persistence["size"])
    );
    assert!(section.contains(&store), "README's Resources table has {store:?}");
    let maps = format!("BPF maps {} (8 CPUs) to {} (64 CPUs)", mib(map_memory(8).1), mib(map_memory(64).1));
    assert!(section.contains(&maps), "README's Resources table gives {maps:?}");
}

/// Bytes of the two flow maps, and of every map together, on a node with `cpus` CPUs.
fn map_memory(cpus: usize) -> (usize, usize) {
    let flows = agent_value("flowEntries");
    let flow_maps = 2 * hash_map(flows + FLOW_SLACK_PER_CPU * cpus, size_of::<FlowKey>(), size_of::<FlowValue>());
    (flow_maps, flow_maps + fixed_maps().iter().map(|(_, bytes)| bytes).sum::<usize>())
}

/// Bytes of each map whose size does not depend on the CPUs.
fn fixed_maps() -> [(&'static str, usize); 6] {
    [
        ("connecting", hash_map(agent_value("socketEntries"), 8, size_of::<SockInfo>())),
        ("nat", hash_map(agent_value("natEntries"), size_of::<NatKey>(), size_of::<NatValue>())),
        ("listeners", hash_map(LISTENER_ENTRIES, size_of::<ListenerKey>(), size_of::<ListenerValue>())),
        ("peers", hash_map(PEER_ENTRIES, size_of::<PeerKey>(), size_of::<PeerValue>())),
        ("udp_first", hash_map(UDP_FIRST_ENTRIES, size_of::<UdpKey>(), size_of::<u32>())),
        ("dns_events", agent_value("dnsRingBytes")),
    ]
}

/// The spool's disk figure in values.yaml: the measured bytes per spooled flow (mapper-agent's
/// test `a_spooled_flow_takes_the_documented_bytes` prints it and bounds it) times the bound.
#[test]
fn spool_size_comment_is_the_bound_times_the_measured_flow() {
    const BYTES_PER_SPOOLED_FLOW: usize = 189;
    let text = read(&root().join("deploy/helm/mapper/values.yaml"));
    let per_flow = format!("measured {BYTES_PER_SPOOLED_FLOW} bytes per spooled flow");
    assert!(text.contains(&per_flow), "values.yaml gives {per_flow:?}");
    let total = format!(
        "maxPendingFlows × {BYTES_PER_SPOOLED_FLOW} B = {:.0} MB",
        (agent_value("maxPendingFlows") * BYTES_PER_SPOOLED_FLOW) as f64 / 1e6
    );
    assert!(text.contains(&total), "values.yaml gives the spool as {total:?}");
    let test = read(&root().join("mapper-agent/src/pending/tests.rs"));
    assert!(test.contains("fn a_spooled_flow_takes_the_documented_bytes"), "the measuring test exists");
}
