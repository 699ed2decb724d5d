//! A drained flow as user space sees it: addresses, counts, wall-clock times,
//! and who the local end is. This is what `--output jsonl` prints.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mapper_ebpf_common::{Direction, FlowKey, FlowValue, Protocol};
use serde::Serialize;

use crate::attribution::CgroupInfo;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Converts CLOCK_BOOTTIME nanoseconds (what the kernel stamps) to Unix time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// realtime − boottime, in nanoseconds.
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    /// Measures the current offset between the two clocks.
    pub fn now() -> Self {
        Self { offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME) }
    }

    /// Unix time in milliseconds of a boottime stamp.
    pub fn unix_ms(&self, boot_ns: u64) -> i64 {
        ((i128::from(boot_ns) + self.offset_ns) / 1_000_000) as i64
    }
}

/// An address from a kernel key: IPv4 in the first 4 bytes.
pub fn ip_from(family: u8, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        // As people write it: IPv4-mapped IPv6 (what a dual-stack listener sees of an
        // IPv4 client) becomes plain IPv4.
        AF_INET6 => Some(Ipv6Addr::from(*raw).to_canonical()),
        _ => None,
    }
}

fn specified(ip: Option<IpAddr>) -> Option<IpAddr> {
    ip.filter(|a| !a.is_unspecified())
}

/// A task command name, up to its NUL.
pub fn comm_str(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// One drained flow, with the local end attributed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowRecord {
    /// Always `"flow"` (DNS answers are `"dns"`), so one stream can carry both.
    pub record: &'static str,
    /// The node this agent runs on.
    pub node: String,
    /// `connect`, `accept` or `udp`: which end saw it (`accept` with `udp`: a
    /// reply of the server end to a client that sent to it first).
    #[serde(serialize_with = "direction_str")]
    pub direction: Direction,
    /// `tcp` or `udp`.
    #[serde(serialize_with = "protocol_str")]
    pub protocol: Protocol,
    /// The connection's client side; `None` for UDP sent before a source was chosen.
    pub src_ip: Option<IpAddr>,
    /// The server side the connection was established with (after DNAT).
    pub dst_ip: Option<IpAddr>,
    pub dst_port: u16,
    /// The server side as the client dialled it, when DNAT changed it (a Service ClusterIP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_dst_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_dst_port: Option<u16>,
    /// Connections established (UDP: datagrams or connects).
    pub count: u64,
    /// Connection attempts that failed: refused, reset or timed out.
    pub failed: u64,
    /// Network namespace inode of the local end.
    pub netns: u32,
    /// cgroup v2 id of the local end (the process for connect/udp, the socket for accept).
    pub cgroup_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The other end, when it is on this node too (its cgroup told by the kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerEnd>,
    /// Last process seen on the local end (0 when unknown).
    pub pid: u32,
    pub comm: String,
    /// Unix milliseconds.
    pub first_seen: i64,
    pub last_seen: i64,
}

fn direction_str<S: serde::Serializer>(d: &Direction, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(d.as_str())
}

fn protocol_str<S: serde::Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

/// The far end of a flow when the kernel saw it on this node as well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerEnd {
    pub netns: u32,
    pub cgroup_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

impl FlowRecord {
    /// Builds the record of a kernel flow; `None` for a key the kernel never writes.
    /// `cgroup` is what is known of the local end's cgroup, `peer_cgroup` of the
    /// far end's when the kernel named it (`key.peer_cgroup_id`).
    pub fn from_kernel(
        node: &str,
        key: &FlowKey,
        val: &FlowValue,
        clock: &Clock,
        cgroup: Option<&CgroupInfo>,
        peer_cgroup: Option<&CgroupInfo>,
    ) -> Option<Self> {
        let direction = Direction::from_raw(key.direction)?;
        let protocol = Protocol::from_raw(key.protocol)?;
        let orig = specified(ip_from(key.family, &key.orig_dst_addr));
        Some(Self {
            record: "flow",
            node: node.to_string(),
            direction,
            protocol,
            src_ip: specified(ip_from(key.family, &key.src_addr)),
            // A UDP reply from a socket bound to every address does not know its own.
            dst_ip: specified(ip_from(key.family, &key.dst_addr)),
            dst_port: key.dst_port,
            original_dst_ip: orig,
            original_dst_port: orig.map(|_| key.orig_dst_port),
            count: val.established,
            failed: val.failed,
            netns: key.netns,
            cgroup_id: key.cgroup_id,
            cgroup_path: cgroup.map(|c| c.path.clone()),
            pod_uid: cgroup.and_then(|c| c.pod.as_ref()).map(|p| p.pod_uid.clone()),
            container_id: cgroup.and_then(|c| c.pod.as_ref()).and_then(|p| p.container_id.clone()),
            peer: (key.peer_cgroup_id != 0).then(|| PeerEnd {
                netns: key.peer_netns,
                cgroup_id: key.peer_cgroup_id,
                cgroup_path: peer_cgroup.map(|c| c.path.clone()),
                pod_uid: peer_cgroup.and_then(|c| c.pod.as_ref()).map(|p| p.pod_uid.clone()),
            }),
            pid: val.pid,
            comm: comm_str(&val.comm),
            first_seen: clock.unix_ms(val.first_seen_ns),
            last_seen: clock.unix_ms(val.last_seen_ns),
        })
    }
}

/// Who serves each address of this node's namespaces, learned from accepted TCP
/// connections. The kernel names a server end's client (its connect comes first); a connect
/// to a local address of its own namespace (two hostNetwork pods on the node's IP) gets its
/// server from here: the accept is seen microseconds after the connect, in the same drain,
/// or an earlier connection's in an earlier one.
#[derive(Debug, Default)]
pub struct LocalServers {
    by_addr: HashMap<(u32, IpAddr, u16), PeerEnd>,
}

impl LocalServers {
    /// Addresses remembered at most (then forgotten all at once, and learned again).
    const MAX: usize = 16_384;

    /// Learns from `records`, then names the server of every local connect among them that
    /// the kernel left unnamed.
    pub fn apply(&mut self, records: &mut [FlowRecord]) {
        for r in records.iter().filter(|r| r.direction == Direction::Accept && r.protocol == Protocol::Tcp) {
            let Some(ip) = r.dst_ip else { continue };
            if self.by_addr.len() >= Self::MAX {
                self.by_addr.clear();
            }
            self.by_addr.insert(
                (r.netns, ip, r.dst_port),
                PeerEnd {
                    netns: r.netns,
                    cgroup_id: r.cgroup_id,
                    cgroup_path: r.cgroup_path.clone(),
                    pod_uid: r.pod_uid.clone(),
                },
            );
        }
        for r in records.iter_mut().filter(|r| r.direction == Direction::Connect && r.peer.is_none()) {
            let (Some(src), Some(dst)) = (r.src_ip, r.dst_ip) else { continue };
            if src == dst {
                r.peer = self.by_addr.get(&(r.netns, dst, r.dst_port)).cloned();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnat_connect_record() {
        let mut key = FlowKey {
            direction: 1,
            protocol: 6,
            family: AF_INET,
            dst_port: 8080,
            orig_dst_port: 80,
            netns: 7,
            cgroup_id: 9,
            ..Default::default()
        };
        key.src_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        key.dst_addr[..4].copy_from_slice(&[10, 0, 0, 3]);
        key.orig_dst_addr[..4].copy_from_slice(&[10, 96, 0, 10]);
        let mut val = FlowValue {
            established: 3,
            failed: 1,
            first_seen_ns: 1_000_000,
            last_seen_ns: 2_000_000,
            pid: 42,
            ..Default::default()
        };
        val.comm[..4].copy_from_slice(b"curl");
        let clock = Clock { offset_ns: 1_700_000_000_000_000_000 };
        let r = FlowRecord::from_kernel("n1", &key, &val, &clock, None, None).expect("record");
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["direction"], "connect");
        assert_eq!(json["protocol"], "tcp");
        assert_eq!(json["src_ip"], "10.0.0.2");
        assert_eq!(json["dst_ip"], "10.0.0.3");
        assert_eq!(json["dst_port"], 8080);
        assert_eq!(json["original_dst_ip"], "10.96.0.10");
        assert_eq!(json["original_dst_port"], 80);
        assert_eq!(json["count"], 3);
        assert_eq!(json["failed"], 1);
        assert_eq!(json["comm"], "curl");
        assert_eq!(json["first_seen"], 1_700_000_000_001i64);
        assert_eq!(json["last_seen"], 1_700_000_000_002i64);
    }

    #[test]
    fn no_dnat_omits_original_and_v6_addresses() {
        let mut key = FlowKey { direction: 2, protocol: 6, family: AF_INET6, dst_port: 443, ..Default::default() };
        key.dst_addr = "fd00::3".parse::<Ipv6Addr>().expect("v6").octets();
        key.src_addr = "fd00::2".parse::<Ipv6Addr>().expect("v6").octets();
        let r = FlowRecord::from_kernel("n1", &key, &FlowValue::default(), &Clock::now(), None, None).expect("record");
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["direction"], "accept");
        assert_eq!(json["src_ip"], "fd00::2");
        assert!(json.get("original_dst_ip").is_none());
    }

    #[test]
    fn v4_mapped_addresses_are_reported_as_v4() {
        let mut key = FlowKey { direction: 2, protocol: 6, family: AF_INET6, dst_port: 80, ..Default::default() };
        key.src_addr = "::ffff:10.0.0.2".parse::<Ipv6Addr>().expect("v6").octets();
        let r = FlowRecord::from_kernel("n", &key, &FlowValue::default(), &Clock::now(), None, None).expect("record");
        assert_eq!(r.src_ip, Some("10.0.0.2".parse().expect("ip")));
    }

    #[test]
    fn unknown_direction_or_protocol_is_skipped() {
        let key = FlowKey { direction: 9, protocol: 6, family: AF_INET, ..Default::default() };
        assert!(FlowRecord::from_kernel("n", &key, &FlowValue::default(), &Clock::now(), None, None).is_none());
        let key = FlowKey { direction: 1, protocol: 132, family: AF_INET, ..Default::default() };
        assert!(FlowRecord::from_kernel("n", &key, &FlowValue::default(), &Clock::now(), None, None).is_none());
    }

    #[test]
    fn a_local_connect_is_named_from_the_accept_of_its_server() {
        let node_ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let record = |direction: Direction, cgroup_id: u64, pod: &str| FlowRecord {
            record: "flow",
            node: "n".into(),
            direction,
            protocol: Protocol::Tcp,
            src_ip: Some(node_ip),
            dst_ip: Some(node_ip),
            dst_port: 9100,
            original_dst_ip: None,
            original_dst_port: None,
            count: 1,
            failed: 0,
            netns: 7,
            cgroup_id,
            cgroup_path: Some(format!("/kubepods/pod{pod}")),
            pod_uid: Some(pod.to_owned()),
            container_id: None,
            peer: None,
            pid: 0,
            comm: String::new(),
            first_seen: 0,
            last_seen: 0,
        };
        let mut servers = LocalServers::default();
        let mut first = vec![record(Direction::Connect, 1, "client"), record(Direction::Accept, 2, "server")];
        servers.apply(&mut first);
        assert_eq!(first[0].peer.as_ref().and_then(|p| p.pod_uid.as_deref()), Some("server"), "same drain");
        let mut later = vec![record(Direction::Connect, 1, "client")];
        servers.apply(&mut later);
        assert_eq!(later[0].peer.as_ref().map(|p| p.cgroup_id), Some(2), "a later drain");
        let mut remote =
            vec![FlowRecord { dst_ip: Some("10.0.0.9".parse().expect("ip")), ..record(Direction::Connect, 1, "c") }];
        servers.apply(&mut remote);
        assert!(remote[0].peer.is_none(), "only a connect to its own address is local");
    }
}
