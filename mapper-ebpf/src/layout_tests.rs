//! The Rust mirror against the C header, as a C compiler lays it out.

use std::mem::offset_of;

use mapper_ebpf_common::*;

use super::OBJECT;

include!(concat!(env!("OUT_DIR"), "/c_layout.rs"));

fn rust_layout(name: &str, field: &str) -> usize {
    macro_rules! table {
        ($($c:literal => $t:ty { $($f:ident),* }),* $(,)?) => {
            match (name, field) {
                $(
                    ($c, "") => size_of::<$t>(),
                    $( ($c, stringify!($f)) => offset_of!($t, $f), )*
                )*
                _ => panic!("{name}.{field} is in mapper.h's layout list but not mirrored in Rust"),
            }
        };
    }
    table! {
        "flow_key" => FlowKey { direction, protocol, family, dst_port, orig_dst_port, netns, src_addr, dst_addr, orig_dst_addr, peer_netns, cgroup_id, peer_cgroup_id },
        "flow_value" => FlowValue { established, failed, first_seen_ns, last_seen_ns, pid, comm },
        "sock_info" => SockInfo { cgroup_id, start_ns, pid, comm },
        "nat_key" => NatKey { family, protocol, src_port, dst_port, src_addr, dst_addr },
        "nat_value" => NatValue { dst_addr, dst_port },
        "listener_key" => ListenerKey { netns, port, family },
        "listener_value" => ListenerValue { pid, comm },
        "peer_key" => PeerKey { family, client_port, server_port, client_addr, server_addr },
        "peer_value" => PeerValue { cgroup_id, netns },
        "udp_key" => UdpKey { netns, local_port, peer_port, family, peer_addr },
        "agent_state" => AgentState { active },
        "dns_event" => DnsEvent { ts_ns, cgroup_id, netns, len, family, payload_len, dst_addr, src_addr, data },
    }
}

#[test]
fn rust_mirror_matches_c_header() {
    let mut checked = 0;
    for &(name, field, c) in C_LAYOUT {
        let rust = rust_layout(name, field);
        let what = if field.is_empty() { format!("sizeof({name})") } else { format!("offsetof({name}, {field})") };
        assert_eq!(rust, c, "{what}: Rust says {rust}, C says {c}");
        checked += 1;
    }
    assert!(checked > 40, "layout table unexpectedly small: {checked}");
}

#[test]
fn object_is_a_bpf_elf_with_btf() {
    assert_eq!(&OBJECT[..4], b"\x7fELF", "OBJECT is not an ELF file");
    // EM_BPF = 247 at e_machine (offset 18, little endian).
    assert_eq!(u16::from_le_bytes([OBJECT[18], OBJECT[19]]), 247, "OBJECT is not a BPF ELF");
    let has_btf = OBJECT.windows(5).any(|w| w == b".BTF\0");
    assert!(has_btf, "OBJECT has no .BTF section: CO-RE would not work");
}

/// A constant of mapper.h as the Rust mirror has it; `MAPPER_STAT_<LABEL>` is the
/// [`Stat`] whose metric label is `<label>`.
fn rust_constant(name: &str) -> u64 {
    let dir = |d: Direction| u64::from(d as u8);
    match name {
        "MAPPER_COMM_LEN" => COMM_LEN as u64,
        "MAPPER_DNS_MAX" => DNS_MAX as u64,
        "MAPPER_DIR_CONNECT" => dir(Direction::Connect),
        "MAPPER_DIR_ACCEPT" => dir(Direction::Accept),
        "MAPPER_DIR_UDP" => dir(Direction::Udp),
        "MAPPER_UDP_SENT_FIRST" => u64::from(UDP_SENT_FIRST),
        "MAPPER_UDP_RECEIVED_FIRST" => u64::from(UDP_RECEIVED_FIRST),
        "MAPPER_STAT_MAX" => u64::from(STAT_MAX),
        _ => {
            let stat = name
                .strip_prefix("MAPPER_STAT_")
                .and_then(|label| Stat::ALL.iter().find(|s| s.label().eq_ignore_ascii_case(label)))
                .unwrap_or_else(|| panic!("{name} is in build.rs's constant list but not mirrored in Rust"));
            u64::from(*stat as u32)
        }
    }
}

#[test]
fn rust_constants_match_c_header() {
    for &(name, c) in C_CONSTANTS {
        let rust = rust_constant(name);
        assert_eq!(rust, c, "{name}: Rust says {rust}, C says {c}");
    }
    for stat in Stat::ALL {
        let name = format!("MAPPER_STAT_{}", stat.label().to_ascii_uppercase());
        assert!(C_CONSTANTS.iter().any(|(n, _)| *n == name), "{stat:?} has no {name} checked against mapper.h");
    }
}
