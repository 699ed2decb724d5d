//! kube-proxy's iptables mode, re-synced from the current endpoints every time the lab
//! changes: one chain per table (`MLAB-SERVICES` in nat, jumped to from PREROUTING and OUTPUT;
//! `MLAB-REJECT` in filter, from FORWARD and OUTPUT) rewritten whole with
//! `iptables-restore --noflush`, so a pod added later receives Service traffic and a deleted
//! pod's rules are gone at once. IPv6 ClusterIPs get the same from ip6tables.

use std::{
    io::Write as _,
    net::IpAddr,
    process::{Command, Stdio},
};

use crate::netns::LabError;

/// The nat chain holding every Service's DNAT rules.
pub const NAT_CHAIN: &str = "MLAB-SERVICES";
/// The filter chain rejecting connections to Services without endpoints.
pub const REJECT_CHAIN: &str = "MLAB-REJECT";

/// One Service port on one ClusterIP, and where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub vip: IpAddr,
    pub port: u16,
    pub udp: bool,
    /// (address, port) of every ready endpoint; none: connections are rejected.
    pub backends: Vec<(IpAddr, u16)>,
}

fn tool(v6: bool, restore: bool) -> &'static str {
    match (v6, restore) {
        (false, false) => "iptables",
        (true, false) => "ip6tables",
        (false, true) => "iptables-restore",
        (true, true) => "ip6tables-restore",
    }
}

fn exec_in(node_netns: &str, args: &[&str], stdin: Option<&str>) -> Result<(), LabError> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", node_netns]).args(args);
    let command = format!("ip netns exec {node_netns} {}", args.join(" "));
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn { command: command.clone(), source })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|source| LabError::Spawn { command: command.clone(), source })?;
    }
    let out = child.wait_with_output().map_err(|source| LabError::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        return Err(LabError::Command { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(())
}

/// Creates the two chains and the jumps to them (once, at `up`), for both families.
pub fn install(node_netns: &str) -> Result<(), LabError> {
    for v6 in [false, true] {
        let t = tool(v6, false);
        for (table, chain, parents) in
            [("nat", NAT_CHAIN, ["PREROUTING", "OUTPUT"]), ("filter", REJECT_CHAIN, ["FORWARD", "OUTPUT"])]
        {
            exec_in(node_netns, &[t, "-w", "-t", table, "-N", chain], None)?;
            for parent in parents {
                exec_in(node_netns, &[t, "-w", "-t", table, "-A", parent, "-j", chain], None)?;
            }
        }
    }
    Ok(())
}

/// The iptables-restore input that replaces both chains' rules with `rules` of one family.
pub fn render(rules: &[Rule], v6: bool) -> String {
    let mut nat = format!("*nat\n:{NAT_CHAIN} - [0:0]\n-F {NAT_CHAIN}\n");
    let mut filter = format!("*filter\n:{REJECT_CHAIN} - [0:0]\n-F {REJECT_CHAIN}\n");
    let host = if v6 { "128" } else { "32" };
    for r in rules.iter().filter(|r| r.vip.is_ipv6() == v6) {
        let proto = if r.udp { "udp" } else { "tcp" };
        let m = format!("-d {}/{host} -p {proto} -m {proto} --dport {}", r.vip, r.port);
        if r.backends.is_empty() {
            let with = if r.udp { "" } else { " --reject-with tcp-reset" };
            filter.push_str(&format!("-A {REJECT_CHAIN} {m} -j REJECT{with}\n"));
            continue;
        }
        let n = r.backends.len();
        for (i, (ip, port)) in r.backends.iter().enumerate() {
            let to = if ip.is_ipv6() { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
            let remaining = n - i;
            let stat = if remaining > 1 {
                format!(" -m statistic --mode random --probability {:.5}", 1.0 / remaining as f64)
            } else {
                String::new()
            };
            nat.push_str(&format!("-A {NAT_CHAIN} {m}{stat} -j DNAT --to-destination {to}\n"));
        }
    }
    format!("{nat}COMMIT\n{filter}COMMIT\n")
}

/// Rewrites both families' chains from `rules`, each in one atomic restore.
pub fn sync(node_netns: &str, rules: &[Rule]) -> Result<(), LabError> {
    for v6 in [false, true] {
        exec_in(node_netns, &[tool(v6, true), "-w", "--noflush"], Some(&render(rules, v6)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dnat_spread_and_reject() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let rules = vec![
            Rule { vip: ip("10.96.0.10"), port: 53, udp: true, backends: vec![(ip("10.244.100.2"), 53)] },
            Rule {
                vip: ip("10.96.100.10"),
                port: 80,
                udp: false,
                backends: vec![(ip("10.244.100.3"), 8080), (ip("10.244.100.4"), 8080)],
            },
            Rule { vip: ip("10.96.100.11"), port: 80, udp: false, backends: vec![] },
            Rule { vip: ip("fd00:96:100::10"), port: 80, udp: false, backends: vec![(ip("fd00:244:100::3"), 8080)] },
        ];
        let v4 = render(&rules, false);
        assert!(
            v4.contains(
                "-A MLAB-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.244.100.2:53\n"
            ),
            "{v4}"
        );
        assert!(v4.contains("--probability 0.50000 -j DNAT --to-destination 10.244.100.3:8080\n"), "{v4}");
        assert!(
            v4.contains(
                "-A MLAB-REJECT -d 10.96.100.11/32 -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset\n"
            ),
            "{v4}"
        );
        assert!(!v4.contains("fd00"), "{v4}");
        let v6 = render(&rules, true);
        assert!(
            v6.contains(
                "-d fd00:96:100::10/128 -p tcp -m tcp --dport 80 -j DNAT --to-destination [fd00:244:100::3]:8080\n"
            ),
            "{v6}"
        );
        assert!(v6.starts_with("*nat\n:MLAB-SERVICES - [0:0]\n-F MLAB-SERVICES\n") && v6.ends_with("COMMIT\n"), "{v6}");
    }
}
