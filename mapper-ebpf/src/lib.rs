//! mapper's kernel side: the compiled BPF object and the names of its programs,
//! maps and globals.
//!
//! The programs themselves are C (`src/bpf/mapper.bpf.c`), compiled by clang
//! from `build.rs` and loaded by the agent with aya. The `#[repr(C)]` mirror of
//! their shared header (`src/bpf/mapper.h`) is `mapper-ebpf-common`, which needs
//! no compiler; this crate's layout tests compare every struct's size and field
//! offsets there with what a C compiler makes of the header, and every constant
//! (directions, stats) its value.
#![forbid(unsafe_code)]

/// The BPF object (ELF with BTF), aligned for aya's parser.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mapper.bpf.o"));

/// Empty programs on the hooks of [`programs::SOCK_STATE`], [`programs::DEV_QUEUE`],
/// [`programs::CONNECT4`] and [`programs::DNS_INGRESS`], for the benchmark only: the kernel's
/// accounting of a program that does nothing (`mapper-bpf-floor`).
pub static FLOOR_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floor.bpf.o"));

/// The programs of [`FLOOR_OBJECT`]: (name, the mapper program whose hook it shares).
pub const FLOOR_PROGRAMS: &[(&str, &str)] = &[
    ("floor_sock_state", programs::SOCK_STATE),
    ("floor_dev_queue", programs::DEV_QUEUE),
    ("floor_connect4", programs::CONNECT4),
    ("floor_dns_ingress", programs::DNS_INGRESS),
];

/// Names of the programs in [`OBJECT`], with where each attaches.
pub mod programs {
    /// `tp_btf/inet_sock_set_state`: TCP connects, accepts, listens.
    pub const SOCK_STATE: &str = "mapper_sock_state";
    /// `tp_btf/net_dev_queue`: DNAT translations from conntrack.
    pub const DEV_QUEUE: &str = "mapper_dev_queue";
    /// `cgroup/connect4`: connected UDP (IPv4).
    pub const CONNECT4: &str = "mapper_connect4";
    /// `cgroup/connect6`: connected UDP (IPv6).
    pub const CONNECT6: &str = "mapper_connect6";
    /// `cgroup/sendmsg4`: unconnected UDP (IPv4).
    pub const SENDMSG4: &str = "mapper_sendmsg4";
    /// `cgroup/sendmsg6`: unconnected UDP (IPv6).
    pub const SENDMSG6: &str = "mapper_sendmsg6";
    /// `cgroup/recvmsg4`: UDP peers that sent first (IPv4), so replies to them are not calls.
    pub const RECVMSG4: &str = "mapper_recvmsg4";
    /// `cgroup/recvmsg6`: the same for IPv6.
    pub const RECVMSG6: &str = "mapper_recvmsg6";
    /// `cgroup_skb/ingress`: DNS answers.
    pub const DNS_INGRESS: &str = "mapper_dns_ingress";
}

/// Names of the maps in [`OBJECT`].
pub mod maps {
    /// First flow buffer (LRU hash of [`FlowKey`](mapper_ebpf_common::FlowKey) → [`FlowValue`](mapper_ebpf_common::FlowValue)).
    pub const FLOWS_A: &str = "flows_a";
    /// Second flow buffer.
    pub const FLOWS_B: &str = "flows_b";
    /// Which buffer the programs write to ([`AgentState`](mapper_ebpf_common::AgentState)).
    pub const STATE: &str = "state";
    /// Entries inserted into each buffer since its last drain (array of 2 × u64).
    pub const OCCUPANCY: &str = "occupancy";
    /// Connecting TCP sockets (socket address → [`SockInfo`](mapper_ebpf_common::SockInfo)).
    pub const CONNECTING: &str = "connecting";
    /// DNAT translations seen in conntrack ([`NatKey`](mapper_ebpf_common::NatKey) → [`NatValue`](mapper_ebpf_common::NatValue)).
    pub const NAT: &str = "nat";
    /// How many entries of [`NAT`] wait for their connect (one u64; errs high): at 0 a
    /// finished connect skips the lookup.
    pub const NAT_PENDING: &str = "nat_pending";
    /// Listening sockets' owners.
    pub const LISTENERS: &str = "listeners";
    /// Client ends of established TCP connections ([`PeerKey`](mapper_ebpf_common::PeerKey) → [`PeerValue`](mapper_ebpf_common::PeerValue)),
    /// for a server end on the same node.
    pub const PEERS: &str = "peers";
    /// Bits set for the addresses that clients in the node's namespace connected from (hashed;
    /// array of u32): a server end looks in [`PEERS`] only for those.
    pub const HOST_CLIENTS: &str = "host_clients";
    /// Which end of each UDP conversation sent first ([`UdpKey`](mapper_ebpf_common::UdpKey) → u32).
    pub const UDP_FIRST: &str = "udp_first";
    /// Per-CPU counters of what could not be recorded, indexed by [`Stat`](mapper_ebpf_common::Stat).
    pub const STATS: &str = "stats";
    /// Ring buffer of [`DnsEvent`](mapper_ebpf_common::DnsEvent).
    pub const DNS_EVENTS: &str = "dns_events";
    /// Every map, in a stable order (for pinning).
    pub const ALL: &[&str] = &[
        FLOWS_A,
        FLOWS_B,
        STATE,
        OCCUPANCY,
        CONNECTING,
        NAT,
        NAT_PENDING,
        LISTENERS,
        PEERS,
        HOST_CLIENTS,
        UDP_FIRST,
        STATS,
        DNS_EVENTS,
    ];
}

/// Name of the read-only global holding one flow buffer's logical capacity.
pub const FLOW_CAPACITY_GLOBAL: &str = "flow_capacity";

/// Name of the read-only global holding the inode of the node's network namespace (0: unknown).
pub const HOST_NETNS_GLOBAL: &str = "host_netns";

#[cfg(test)]
mod layout_tests;
