//! The Rust mirror against the C header, as a C compiler lays it out.

use std::mem::offset_of;

use super::*;

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
        "flow_key" => FlowKey { direction, protocol, family, dst_port, orig_dst_port, netns, src_addr, dst_addr, orig_dst_addr, cgroup_id },
        "flow_value" => FlowValue { established, failed, first_seen_ns, last_seen_ns, pid, comm },
        "sock_info" => SockInfo { cgroup_id, start_ns, pid, comm },
        "nat_key" => NatKey { family, protocol, src_port, dst_port, src_addr, dst_addr },
        "nat_value" => NatValue { dst_addr, dst_port },
        "listener_key" => ListenerKey { netns, port, family },
        "listener_value" => ListenerValue { pid, comm },
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

#[test]
fn stats_fit_the_array() {
    for &stat in Stat::ALL {
        assert!((stat as u32) < STAT_MAX, "{} outside the stats array", stat.label());
    }
}
