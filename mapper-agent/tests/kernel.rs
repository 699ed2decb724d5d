//! The agent against real kernel traffic between network namespaces.
//!
//! Every test builds its own lab node (a node namespace with a bridge, pods as
//! namespaces with veths, nothing routed out) and starts its own agent pinned
//! under its own bpffs path. Agents see the whole machine's traffic, so every
//! assertion filters on the test's own namespaces.

mod support;

use std::{net::IpAddr, thread, time::Duration};

use mapper_lab::topo::{Node, Pod};
use serde_json::{Value, json};
use support::{
    Agent, agent_command, bpf_available, call, cap_mask, effective_capabilities, ensure_kernel_mounts, flows, lab_bin,
    output_within, restrict_capabilities, serve, sum,
};

fn ino(pod: &Pod) -> Value {
    json!(pod.netns.inode().expect("netns inode"))
}

fn sock(ip: impl Into<IpAddr>, port: u16) -> String {
    match ip.into() {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// A node with a client pod `a` and a server pod `b` serving TCP 8080 (dual stack).
fn two_pods(prefix: &str) -> (Node, mapper_lab::netns::Proc) {
    let mut node = Node::new(prefix).expect("lab node");
    let a = node.add_pod("a").expect("pod a");
    let b = node.add_pod("b").expect("pod b");
    let server =
        serve(node.pods[b].netns.command(lab_bin(), Some(&node.pods[b].cgroup)).expect("cmd"), &["--tcp", "[::]:8080"]);
    // Warm the neighbour caches (IPv6 neighbour discovery in a fresh namespace
    // can outlast a connect timeout on a loaded machine) with connects to a
    // closed port: refused at once, and no test looks at port 7.
    for to in [format!("{}:7", node.pods[b].ipv4), format!("[{}]:7", node.pods[b].ipv6)] {
        let r = call(node.pods[a].netns.command(lab_bin(), None).expect("cmd"), &["--to", &to]);
        assert_eq!(r["failed"], 1, "warm-up connect to {to} was not refused: {r}");
    }
    (node, server)
}

#[test]
fn tcp_connect_and_accept_both_families() {
    if !bpf_available("tcp_connect_and_accept_both_families") {
        return;
    }
    // The agent first: it names the process behind accepted connections from
    // the listen() it sees (a listener older than the agent stays unnamed).
    let agent = Agent::start("tcp");
    let (node, _server) = two_pods("mtc");
    let (a, b) = (&node.pods[0], &node.pods[1]);
    for to in [sock(b.ipv4, 8080), sock(b.ipv6, 8080)] {
        let r = call(a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd"), &["--to", &to, "--count", "3"]);
        assert_eq!(r["ok"], 3, "connections to {to} failed: {r}");
    }
    thread::sleep(Duration::from_millis(300));
    let lines = agent.stop();

    for (src, dst) in [(a.ipv4.to_string(), b.ipv4.to_string()), (a.ipv6.to_string(), b.ipv6.to_string())] {
        let connect = flows(
            &lines,
            &[("direction", json!("connect")), ("netns", ino(a)), ("dst_ip", json!(dst)), ("dst_port", json!(8080))],
        );
        assert!(!connect.is_empty(), "no connect flow {src} -> {dst}:8080 from pod a's netns in {lines:#?}");
        assert_eq!(sum(&connect, "count"), 3, "connect count {src} -> {dst}");
        assert_eq!(sum(&connect, "failed"), 0);
        for f in &connect {
            assert_eq!(f["src_ip"], json!(src));
            assert_eq!(f["protocol"], "tcp");
            assert_eq!(f["pod_uid"], json!(a.uid), "connect not attributed to pod a: {f}");
            assert_eq!(f["comm"], "mapper-lab");
            assert!(f.get("original_dst_ip").is_none(), "no DNAT here, yet: {f}");
        }
        let accept = flows(
            &lines,
            &[("direction", json!("accept")), ("netns", ino(b)), ("src_ip", json!(src)), ("dst_port", json!(8080))],
        );
        assert_eq!(sum(&accept, "count"), 3, "accept count {src} -> {dst} in {lines:#?}");
        for f in &accept {
            assert_eq!(f["dst_ip"], json!(dst));
            assert_eq!(f["pod_uid"], json!(b.uid), "accept not attributed to pod b: {f}");
            assert_eq!(f["comm"], "mapper-lab", "listener's process not named: {f}");
        }
    }
}

#[test]
fn ten_thousand_connections_are_one_flow() {
    if !bpf_available("ten_thousand_connections_are_one_flow") {
        return;
    }
    let (node, _server) = two_pods("mtk");
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let agent = Agent::start("10k");
    let r = call(
        a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd"),
        &["--to", &sock(b.ipv4, 8080), "--count", "10000"],
    );
    assert_eq!(r["ok"], 10000, "{r}");
    thread::sleep(Duration::from_millis(300));
    let lines = agent.stop();
    let connect = flows(&lines, &[("direction", json!("connect")), ("netns", ino(a))]);
    let keys: std::collections::BTreeSet<String> = connect
        .iter()
        .map(|f| format!("{} {} {} {} {}", f["src_ip"], f["dst_ip"], f["dst_port"], f["cgroup_id"], f["netns"]))
        .collect();
    assert_eq!(keys.len(), 1, "10 000 connections between one pair must be one flow, got {keys:?}");
    assert_eq!(sum(&connect, "count"), 10000, "connect count");
    let accept = flows(&lines, &[("direction", json!("accept")), ("netns", ino(b))]);
    assert_eq!(sum(&accept, "count"), 10000, "accept count");
}

#[test]
fn refused_connection_is_failed_not_established() {
    if !bpf_available("refused_connection_is_failed_not_established") {
        return;
    }
    let (node, _server) = two_pods("mtr");
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let agent = Agent::start("refused");
    let r =
        call(a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd"), &["--to", &sock(b.ipv4, 9), "--count", "2"]);
    assert_eq!(r["failed"], 2, "port 9 should refuse: {r}");
    thread::sleep(Duration::from_millis(300));
    let lines = agent.stop();
    let f = flows(&lines, &[("direction", json!("connect")), ("netns", ino(a)), ("dst_port", json!(9))]);
    assert_eq!(sum(&f, "failed"), 2, "refused connects not counted as failed: {f:#?}");
    assert_eq!(sum(&f, "count"), 0, "refused connects counted as established: {f:#?}");
}

#[test]
fn cluster_ip_records_dialled_and_real_destination() {
    if !bpf_available("cluster_ip_records_dialled_and_real_destination") {
        return;
    }
    let (node, _server) = two_pods("mtd");
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let vip4 = node.cluster_ip(10, false);
    let vip6 = node.cluster_ip(10, true);
    node.add_cluster_ip(vip4, 80, "tcp", &[(IpAddr::V4(b.ipv4), 8080)]).expect("v4 service");
    node.add_cluster_ip(vip6, 80, "tcp", &[(IpAddr::V6(b.ipv6), 8080)]).expect("v6 service");
    let agent = Agent::start("dnat");
    for vip in [vip4, vip6] {
        let r =
            call(a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd"), &["--to", &sock(vip, 80), "--count", "4"]);
        assert_eq!(r["ok"], 4, "through ClusterIP {vip}: {r}");
    }
    thread::sleep(Duration::from_millis(300));
    let lines = agent.stop();
    for (vip, backend) in [(vip4, IpAddr::V4(b.ipv4)), (vip6, IpAddr::V6(b.ipv6))] {
        let f = flows(
            &lines,
            &[("direction", json!("connect")), ("netns", ino(a)), ("original_dst_ip", json!(vip.to_string()))],
        );
        assert_eq!(sum(&f, "count"), 4, "connects to ClusterIP {vip} in {lines:#?}");
        for x in &f {
            assert_eq!(x["original_dst_port"], 80, "{x}");
            assert_eq!(x["dst_ip"], json!(backend.to_string()), "real destination of {vip}: {x}");
            assert_eq!(x["dst_port"], 8080, "{x}");
        }
    }
}

#[test]
fn udp_and_dns_answers_both_families() {
    if !bpf_available("udp_and_dns_answers_both_families") {
        return;
    }
    let mut node = Node::new("mtu").expect("lab node");
    node.add_pod("a").expect("pod a");
    node.add_pod("b").expect("pod b");
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let answer4 = node.cluster_ip(99, false);
    let answer6 = node.cluster_ip(99, true);
    let _server = serve(
        b.netns.command(lab_bin(), Some(&b.cgroup)).expect("cmd"),
        &[
            "--udp",
            &sock(b.ipv4, 5353),
            "--udp",
            &sock(b.ipv6, 5353),
            "--dns",
            &format!("{}={answer4}", sock(b.ipv4, 53)),
            "--dns",
            &format!("{}={answer6}", sock(b.ipv6, 53)),
        ],
    );
    let agent = Agent::start("udp");
    let cmd = || a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd");
    for to in [sock(b.ipv4, 5353), sock(b.ipv6, 5353)] {
        let r = call(cmd(), &["--to", &to, "--protocol", "udp", "--count", "3"]);
        assert_eq!(r["ok"], 3, "{r}");
    }
    let r = call(
        cmd(),
        &["--to", &sock(b.ipv4, 53), "--protocol", "dns", "--name", "ledger.team3.svc.cluster.local", "--count", "2"],
    );
    assert_eq!(r["ok"], 2, "{r}");
    let r = call(
        cmd(),
        &[
            "--to",
            &sock(b.ipv6, 53),
            "--protocol",
            "dns",
            "--aaaa",
            "--name",
            "ledger6.team3.svc.cluster.local",
            "--count",
            "1",
        ],
    );
    assert_eq!(r["ok"], 1, "{r}");
    thread::sleep(Duration::from_millis(300));
    let lines = agent.stop();

    for dst in [b.ipv4.to_string(), b.ipv6.to_string()] {
        let f = flows(
            &lines,
            &[("direction", json!("udp")), ("netns", ino(a)), ("dst_ip", json!(dst)), ("dst_port", json!(5353))],
        );
        assert_eq!(sum(&f, "count"), 3, "UDP datagrams to {dst}:5353 in {lines:#?}");
        assert!(f.iter().all(|x| x["pod_uid"] == json!(a.uid) && x["protocol"] == "udp"), "{f:#?}");
        let q = flows(
            &lines,
            &[("direction", json!("udp")), ("netns", ino(a)), ("dst_ip", json!(dst)), ("dst_port", json!(53))],
        );
        assert!(sum(&q, "count") >= 1, "DNS query flow to {dst}:53 missing in {lines:#?}");
    }
    // The DNS server answered every query: its replies are the server end of a's calls
    // (accept, client a, port 53), never calls of its own to a's ephemeral ports.
    let from_server = flows(&lines, &[("direction", json!("udp")), ("netns", ino(b))]);
    assert!(from_server.is_empty(), "replies recorded as calls from the server: {from_server:#?}");
    for (src, dst, replies) in
        [(a.ipv4.to_string(), b.ipv4.to_string(), 2), (a.ipv6.to_string(), b.ipv6.to_string(), 1)]
    {
        let r = flows(
            &lines,
            &[
                ("direction", json!("accept")),
                ("protocol", json!("udp")),
                ("netns", ino(b)),
                ("src_ip", json!(src)),
                ("dst_port", json!(53)),
            ],
        );
        assert_eq!(sum(&r, "count"), replies, "DNS replies to {src} in {lines:#?}");
        assert!(r.iter().all(|x| x["dst_ip"] == json!(dst) && x["pod_uid"] == json!(b.uid)), "{r:#?}");
    }
    let dns: Vec<&Value> = lines.iter().filter(|l| l["record"] == "dns" && l["netns"] == ino(a)).collect();
    let find = |name: &str| dns.iter().filter(|d| d["query"] == name).count();
    assert_eq!(find("ledger.team3.svc.cluster.local"), 2, "A answers in {dns:#?}");
    assert_eq!(find("ledger6.team3.svc.cluster.local"), 1, "AAAA answer in {dns:#?}");
    for d in &dns {
        let want = if d["query"] == "ledger.team3.svc.cluster.local" { answer4 } else { answer6 };
        assert_eq!(d["answers"][0]["ip"], json!(want.to_string()), "{d}");
        assert_eq!(d["pod_uid"], json!(a.uid), "DNS answer not attributed to pod a: {d}");
    }
}

#[test]
fn host_network_pod_told_apart_by_cgroup() {
    if !bpf_available("host_network_pod_told_apart_by_cgroup") {
        return;
    }
    let (node, _server) = two_pods("mth");
    let b = &node.pods[1];
    let host_uid = mapper_lab::topo::pod_uid("host-network-pod");
    let pod_cg = node.pod_cgroup(&host_uid, "0123456789abcdef0123").expect("pod cgroup");
    let other_cg = node.cgroups.dir("system.slice/some-daemon.service").expect("other cgroup");
    let agent = Agent::start("hostnet");
    for (cg, n) in [(&pod_cg, "2"), (&other_cg, "3")] {
        let r =
            call(node.netns.command(lab_bin(), Some(cg)).expect("cmd"), &["--to", &sock(b.ipv4, 8080), "--count", n]);
        assert_eq!(r["ok"].to_string(), n, "{r}");
    }
    thread::sleep(Duration::from_millis(300));
    let lines = agent.stop();
    let node_ns = json!(node.netns.inode().expect("inode"));
    let f =
        flows(&lines, &[("direction", json!("connect")), ("netns", node_ns), ("dst_ip", json!(b.ipv4.to_string()))]);
    let pod: Vec<&&Value> = f.iter().filter(|x| x["pod_uid"] == json!(host_uid)).collect();
    let other: Vec<&&Value> = f.iter().filter(|x| x.get("pod_uid").is_none()).collect();
    assert_eq!(
        pod.iter().map(|x| x["count"].as_u64().unwrap_or(0)).sum::<u64>(),
        2,
        "hostNetwork pod's connects in {f:#?}"
    );
    assert_eq!(
        other.iter().map(|x| x["count"].as_u64().unwrap_or(0)).sum::<u64>(),
        3,
        "other process's connects in {f:#?}"
    );
    assert_ne!(pod[0]["cgroup_id"], other[0]["cgroup_id"]);
    assert!(
        other[0]["cgroup_path"].as_str().unwrap_or("").ends_with("system.slice/some-daemon.service"),
        "{}",
        other[0]
    );
    // Both share the node's address: only the cgroup tells them apart.
    assert_eq!(pod[0]["src_ip"], other[0]["src_ip"]);
}

#[test]
fn both_ends_on_one_node_are_named_by_cgroup() {
    if !bpf_available("both_ends_on_one_node_are_named_by_cgroup") {
        return;
    }
    let (node, _server) = two_pods("mtp");
    // Told which namespace is the node's, as the chart tells it: only clients in it
    // (sharing the node's address) leave their cgroup for the server end.
    let node_ns_path = node.netns.path();
    let agent = Agent::start_with(
        std::path::PathBuf::from(format!("/sys/fs/bpf/mapper-test-{}-peers", std::process::id())),
        &["--host-netns", node_ns_path.to_str().expect("utf8")],
    );
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let node_ns = json!(node.netns.inode().expect("inode"));
    // Two hostNetwork pods: node-metrics serves on the node's address, node-agent calls it.
    let (metrics_uid, agent_uid) = (mapper_lab::topo::pod_uid("node-metrics"), mapper_lab::topo::pod_uid("node-agent"));
    let metrics_cg = node.pod_cgroup(&metrics_uid, "0123456789abcdef0001").expect("pod cgroup");
    let agent_cg = node.pod_cgroup(&agent_uid, "0123456789abcdef0002").expect("pod cgroup");
    let kubelet_cg = node.cgroups.dir("system.slice/kubelet.service").expect("kubelet cgroup");
    let node_ip = node.ipv4();
    let _metrics =
        serve(node.netns.command(lab_bin(), Some(&metrics_cg)).expect("cmd"), &["--tcp", &sock(node_ip, 9100)]);
    let r = call(
        node.netns.command(lab_bin(), Some(&agent_cg)).expect("cmd"),
        &["--to", &sock(node_ip, 9100), "--count", "3"],
    );
    assert_eq!(r["ok"], 3, "{r}");
    // The kubelet (a node process, no pod) probes pod b.
    let r = call(
        node.netns.command(lab_bin(), Some(&kubelet_cg)).expect("cmd"),
        &["--to", &sock(b.ipv4, 8080), "--count", "2"],
    );
    assert_eq!(r["ok"], 2, "{r}");
    // Pod a, with an address of its own, calls pod b: its address names it.
    let r = call(a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd"), &["--to", &sock(b.ipv4, 8080)]);
    assert_eq!(r["ok"], 1, "{r}");
    thread::sleep(Duration::from_millis(300));
    let lines = agent.stop();

    let at = |direction: &str, uid: &str| {
        flows(&lines, &[("direction", json!(direction)), ("netns", node_ns.clone()), ("pod_uid", json!(uid))])
    };
    let connects = at("connect", &agent_uid);
    assert_eq!(sum(&connects, "count"), 3, "node-agent's connects in {lines:#?}");
    assert!(connects.iter().all(|f| f["peer"]["pod_uid"] == json!(metrics_uid)), "server not named: {connects:#?}");
    let accepts = at("accept", &metrics_uid);
    assert_eq!(sum(&accepts, "count"), 3, "node-metrics' accepts in {lines:#?}");
    assert!(accepts.iter().all(|f| f["peer"]["pod_uid"] == json!(agent_uid)), "client not named: {accepts:#?}");
    assert!(accepts.iter().all(|f| f["peer"]["netns"] == node_ns), "{accepts:#?}");

    let accepted = flows(&lines, &[("direction", json!("accept")), ("netns", ino(b)), ("dst_port", json!(8080))]);
    let (probes, from_a): (Vec<&Value>, Vec<&Value>) =
        accepted.into_iter().partition(|f| f["src_ip"] != json!(a.ipv4.to_string()));
    assert_eq!(sum(&from_a, "count"), 1, "pod a's call accepted by b in {lines:#?}");
    assert!(from_a.iter().all(|f| f.get("peer").is_none()), "a pod client needs no cgroup note: {from_a:#?}");
    assert_eq!(sum(&probes, "count"), 2, "probes accepted by b in {lines:#?}");
    for p in &probes {
        assert_eq!(p["peer"]["netns"], node_ns, "the prober is in the node's namespace: {p}");
        assert!(p["peer"].get("pod_uid").is_none(), "the kubelet is no pod: {p}");
        assert!(
            p["peer"]["cgroup_path"].as_str().unwrap_or("").ends_with("system.slice/kubelet.service"),
            "the prober's cgroup: {p}"
        );
    }
}

#[test]
fn loopback_traffic_is_not_recorded() {
    if !bpf_available("loopback_traffic_is_not_recorded") {
        return;
    }
    let agent = Agent::start("loopback");
    let (node, _server) = two_pods("mtl");
    let (a, b) = (&node.pods[0], &node.pods[1]);
    // A sidecar's calls to its pod's other container: TCP on 127.0.0.1 and ::1 (as a
    // dual-stack socket sees an IPv4 client, too), UDP on 127.0.0.1.
    let _own = serve(
        a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd"),
        &["--tcp", "127.0.0.1:9300", "--tcp", "[::]:9302", "--udp", "127.0.0.1:9301"],
    );
    let run = |args: &[&str]| {
        let r = call(a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd"), args);
        assert_eq!(r["ok"], 2, "{args:?}: {r}");
    };
    run(&["--to", "127.0.0.1:9300", "--count", "2"]);
    run(&["--to", "[::1]:9302", "--count", "2"]);
    run(&["--to", "127.0.0.1:9302", "--count", "2"]);
    run(&["--to", "127.0.0.1:9301", "--protocol", "udp", "--count", "2"]);
    // The same pod's call to another pod is a call.
    run(&["--to", &sock(b.ipv4, 8080), "--count", "2"]);
    thread::sleep(Duration::from_millis(300));
    let lines = agent.stop();

    let own = flows(&lines, &[("netns", ino(a))]);
    let looped: Vec<&&Value> = own
        .iter()
        .filter(|f| {
            [&f["src_ip"], &f["dst_ip"]].iter().any(|ip| {
                ip.as_str().and_then(|s| s.parse::<IpAddr>().ok()).is_some_and(|ip| ip.to_canonical().is_loopback())
            })
        })
        .collect();
    assert!(looped.is_empty(), "loopback traffic recorded: {looped:#?}");
    let calls = flows(&lines, &[("direction", json!("connect")), ("netns", ino(a)), ("dst_port", json!(8080))]);
    assert_eq!(sum(&calls, "count"), 2, "the call to pod b in {lines:#?}");
}

#[test]
fn agent_killed_and_restarted_loses_nothing() {
    if !bpf_available("agent_killed_and_restarted_loses_nothing") {
        return;
    }
    let (node, _server) = two_pods("mtk9");
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let first = Agent::start("restart");
    let bpffs = first.bpffs.clone();
    let to = sock(b.ipv4, 8080);
    let client = {
        let mut cmd = a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd");
        cmd.args(["call", "--to", &to, "--count", "1500", "--interval", "1ms"]).stdout(std::process::Stdio::piped());
        cmd.spawn().expect("client")
    };
    thread::sleep(Duration::from_millis(500));
    let before = first.kill();
    thread::sleep(Duration::from_millis(500));
    let second = Agent::start_at(bpffs);
    assert!(second.log().contains("resuming"), "second agent did not resume the pinned programs:\n{}", second.log());
    let out = client.wait_with_output().expect("client");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["ok"], 1500, "{summary}");
    thread::sleep(Duration::from_millis(300));
    let after = second.stop();
    let connect = |lines: &[Value]| sum(&flows(lines, &[("direction", json!("connect")), ("netns", ino(a))]), "count");
    let accept = |lines: &[Value]| sum(&flows(lines, &[("direction", json!("accept")), ("netns", ino(b))]), "count");
    assert!(connect(&before) > 0, "the first agent saw nothing before it was killed: traffic did not span the restart");
    assert!(connect(&after) > 0, "the second agent saw nothing");
    assert_eq!(connect(&before) + connect(&after), 1500, "connects lost or doubled across the restart");
    assert_eq!(accept(&before) + accept(&after), 1500, "accepts lost or doubled across the restart");
}

/// GET `path` on `addr` over plain HTTP/1.0; returns the body.
fn http_get(addr: &str, path: &str) -> String {
    support::http_get(addr, path).unwrap_or_else(|| panic!("GET {path} from {addr} failed"))
}

fn metric(text: &str, name_and_labels: &str) -> u64 {
    support::metric_in(text, name_and_labels)
}

#[test]
fn full_flow_map_is_counted_and_exported() {
    if !bpf_available("full_flow_map_is_counted_and_exported") {
        return;
    }
    let mut node = Node::new("mtm").expect("lab node");
    node.add_pod("a").expect("pod a");
    let a = &node.pods[0];
    let port = 20000 + (std::process::id() % 20000) as u16;
    let listen = format!("127.0.0.1:{port}");
    let bpffs = std::path::PathBuf::from(format!("/sys/fs/bpf/mapper-test-{}-full", std::process::id()));
    // A long interval: everything below lands in one buffer of 16 flows.
    let agent =
        Agent::start_with(bpffs, &["--flow-entries", "16", "--report-interval", "1h", "--metrics-listen", &listen]);
    let ready = http_get(&listen, "/readyz");
    assert!(ready.contains(" 200 "), "not ready once attached: {ready}");
    for p in 0..40u16 {
        // 40 distinct flows (one per destination port) into a map sized for 16.
        let r = call(
            a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd"),
            &["--to", &format!("10.244.{}.77:{}", node.k, 7000 + p), "--protocol", "udp"],
        );
        assert_eq!(r["ok"], 1, "{r}");
    }
    // The agent reads the kernel's counters every second, whatever the interval.
    thread::sleep(Duration::from_millis(1500));
    let text = http_get(&listen, "/metrics");
    let lines = agent.stop();
    let full = metric(&text, "mapper_agent_kernel_drops_total{cause=\"flow_map_full\"}");
    assert!(full >= 1, "a full flow map was not counted; metrics:\n{text}");
    assert!(metric(&text, "mapper_agent_flow_map_entries") >= 40, "occupancy not exported:\n{text}");
    assert!(text.contains("mapper_agent_flow_map_capacity 16"), "capacity not exported:\n{text}");
    // The map has room beyond its logical capacity: nothing was evicted here,
    // and every flow is still reported.
    let udp = flows(&lines, &[("direction", json!("udp")), ("netns", ino(a))]);
    assert_eq!(udp.len(), 40, "flows lost: {udp:#?}");
}

#[test]
fn clear_error_without_privileges() {
    if !bpf_available("clear_error_without_privileges") {
        return;
    }
    use std::os::unix::{fs::PermissionsExt, process::CommandExt};
    // A copy in /tmp: the checkout may sit where `nobody` cannot reach.
    let bin = std::env::temp_dir().join(format!("mapper-agent-nobody-{}", std::process::id()));
    std::fs::copy(env!("CARGO_BIN_EXE_mapper-agent"), &bin).expect("copy agent");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Another test thread that forks while the copy's write descriptor is open
    // holds it until its own exec: until then exec of the copy fails with
    // ETXTBSY. Retry for a moment, as cargo does.
    let mut tries = 0;
    let out = loop {
        let run = std::process::Command::new(&bin)
            .current_dir(std::env::temp_dir())
            .args(["--bpffs", "/sys/fs/bpf/mapper-test-nobody"])
            .uid(65534)
            .gid(65534)
            .env("NO_COLOR", "1")
            .output();
        match run {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            other => break other.expect("run agent as nobody"),
        }
    };
    let _ = std::fs::remove_file(&bin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "agent ran without privileges");
    assert!(stderr.contains("CAP_BPF") && stderr.contains("root"), "unclear error: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What the agent's container gets: `capabilities: {drop: [ALL], add: [BPF, PERFMON, NET_ADMIN]}`.
const MINIMAL: [(u32, &str); 3] =
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON"), (CAP_NET_ADMIN, "CAP_NET_ADMIN")];

fn minimal() -> Vec<u32> {
    MINIMAL.iter().map(|(c, _)| *c).collect()
}

#[test]
fn captures_with_only_bpf_perfmon_and_net_admin() {
    if !bpf_available("captures_with_only_bpf_perfmon_and_net_admin") {
        return;
    }
    ensure_kernel_mounts();
    let (node, _server) = two_pods("mtp");
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let bpffs = std::path::PathBuf::from(format!("/sys/fs/bpf/mapper-test-{}-caps", std::process::id()));
    // In a hostNetwork pod the agent's own namespace is the node's.
    let agent = Agent::start_with_capabilities(bpffs, &["--host-netns", "/proc/self/ns/net"], &minimal());
    assert_eq!(
        effective_capabilities(agent.pid()),
        cap_mask(&minimal()),
        "the agent runs with more than the minimal set"
    );
    let r =
        call(a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd"), &["--to", &sock(b.ipv4, 8080), "--count", "3"]);
    assert_eq!(r["ok"], 3, "{r}");
    thread::sleep(Duration::from_millis(300));
    let log = agent.log();
    let lines = agent.stop();
    let connect = flows(&lines, &[("direction", json!("connect")), ("netns", ino(a)), ("dst_port", json!(8080))]);
    assert_eq!(sum(&connect, "count"), 3, "connects not captured with the minimal set: {lines:#?}");
    let accept = flows(&lines, &[("direction", json!("accept")), ("netns", ino(b)), ("dst_port", json!(8080))]);
    assert_eq!(sum(&accept, "count"), 3, "accepts not captured with the minimal set: {lines:#?}");
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self/ns/net").expect("own netns").ino();
    assert!(log.contains(&format!("host_netns=Some({own})")), "host netns not found from /proc/self/ns/net:\n{log}");
}

#[test]
fn host_netns_needs_sys_ptrace_or_a_mounted_namespace_file() {
    if !bpf_available("host_netns_needs_sys_ptrace_or_a_mounted_namespace_file") {
        return;
    }
    ensure_kernel_mounts();
    // A process with every capability, like a node's init (/proc/1 with hostPID).
    let mut init = std::process::Command::new("sleep").arg("600").spawn().expect("spawn sleep");
    let path = format!("/proc/{}/ns/net", init.id());
    let bpffs =
        |n: &str| std::path::PathBuf::from(format!("/sys/fs/bpf/mapper-test-{}-ptrace-{n}", std::process::id()));
    let without = Agent::start_with_capabilities(bpffs("without"), &["--host-netns", &path], &minimal());
    let log = without.log();
    drop(without.stop());
    assert!(
        log.contains("cannot read the node's network namespace") && log.contains("CAP_SYS_PTRACE"),
        "no clear warning when the host netns cannot be read:\n{log}"
    );
    let mut caps = minimal();
    caps.push(CAP_SYS_PTRACE);
    let with = Agent::start_with_capabilities(bpffs("with"), &["--host-netns", &path], &caps);
    let log = with.log();
    drop(with.stop());
    assert!(!log.contains("cannot read the node's network namespace"), "CAP_SYS_PTRACE did not suffice:\n{log}");
    // What the DaemonSet does: the runtime (here: this root test) bind-mounts the namespace file
    // itself, and the agent stats the mount with the minimal capabilities.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("host-netns");
    std::fs::write(&file, "").expect("mount point");
    let st = std::process::Command::new("mount").arg("--bind").arg(&path).arg(&file).status().expect("mount");
    assert!(st.success(), "mount --bind {path}");
    let mounted =
        Agent::start_with_capabilities(bpffs("mounted"), &["--host-netns", file.to_str().expect("utf8")], &minimal());
    let log = mounted.log();
    drop(mounted.stop());
    let _ = std::process::Command::new("umount").arg(&file).status();
    let _ = init.kill();
    let _ = init.wait();
    assert!(
        !log.contains("cannot read the node's network namespace"),
        "a mounted namespace file needs a capability:\n{log}"
    );
    let want = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata("/proc/self/ns/net").expect("own netns"));
    assert!(log.contains(&format!("host_netns=Some({want})")), "the mounted file's namespace was not used:\n{log}");
}

#[test]
fn each_missing_capability_is_named() {
    if !bpf_available("each_missing_capability_is_named") {
        return;
    }
    ensure_kernel_mounts();
    for (cap, name) in MINIMAL {
        let others: Vec<u32> = minimal().into_iter().filter(|c| *c != cap).collect();
        let bpffs = std::path::PathBuf::from(format!("/sys/fs/bpf/mapper-test-{}-no-{cap}", std::process::id()));
        let run = |extra: &[&str]| {
            let mut cmd = agent_command(&bpffs, extra);
            restrict_capabilities(&mut cmd, &others);
            let out = output_within(cmd, Duration::from_secs(60));
            let _ = std::fs::remove_dir_all(&bpffs);
            let out = out.unwrap_or_else(|| panic!("the agent kept running without {name}"));
            assert!(!out.status.success(), "the agent ran without {name}");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!stderr.contains("panicked"), "{stderr}");
            stderr
        };
        // The preflight names what is missing.
        let stderr = run(&[]);
        assert!(stderr.contains(&format!("lacks {name} ")), "the error does not name {name}: {stderr}");
        // And the kernel does refuse without it: the check asks for nothing superfluous.
        let stderr = run(&["--skip-capability-check"]);
        assert!(stderr.contains("Operation not permitted"), "the kernel accepted the load without {name}: {stderr}");
    }
}
