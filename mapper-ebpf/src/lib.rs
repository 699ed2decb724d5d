//! mapper's kernel side: the compiled BPF object and the `#[repr(C)]` mirror of
//! `src/bpf/mapper.h`, the one place where the kernel programs and user space
//! agree on a layout.
//!
//! The programs themselves are C (`src/bpf/mapper.bpf.c`), compiled by clang
//! from `build.rs` and loaded by the agent with aya. Every struct below has a
//! test that compares its size and field offsets with what a C compiler makes of
//! the header, and every constant (directions, stats) its value.

use aya::Pod;

/// The BPF object (ELF with BTF), aligned for aya's parser.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mapper.bpf.o"));

/// Names of the programs in [`OBJECT`], with where each attaches.
pub mod programs {
    /// `tracepoint/sock/inet_sock_set_state`: TCP connects, accepts, listens.
    pub const SOCK_STATE: &str = "mapper_sock_state";
    /// `raw_tracepoint/net_dev_queue`: DNAT translations from conntrack.
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
    /// First flow buffer (LRU hash of [`FlowKey`](super::FlowKey) → [`FlowValue`](super::FlowValue)).
    pub const FLOWS_A: &str = "flows_a";
    /// Second flow buffer.
    pub const FLOWS_B: &str = "flows_b";
    /// Which buffer the programs write to ([`AgentState`](super::AgentState)).
    pub const STATE: &str = "state";
    /// Entries inserted into each buffer since its last drain (array of 2 × u64).
    pub const OCCUPANCY: &str = "occupancy";
    /// Connecting TCP sockets (socket address → [`SockInfo`](super::SockInfo)).
    pub const CONNECTING: &str = "connecting";
    /// DNAT translations seen in conntrack ([`NatKey`](super::NatKey) → [`NatValue`](super::NatValue)).
    pub const NAT: &str = "nat";
    /// Listening sockets' owners.
    pub const LISTENERS: &str = "listeners";
    /// Client ends of established TCP connections ([`PeerKey`](super::PeerKey) → [`PeerValue`](super::PeerValue)),
    /// for a server end on the same node.
    pub const PEERS: &str = "peers";
    /// Which end of each UDP conversation sent first ([`UdpKey`](super::UdpKey) → u32).
    pub const UDP_FIRST: &str = "udp_first";
    /// Per-CPU counters of what could not be recorded, indexed by [`Stat`](super::Stat).
    pub const STATS: &str = "stats";
    /// Ring buffer of [`DnsEvent`](super::DnsEvent).
    pub const DNS_EVENTS: &str = "dns_events";
    /// Every map, in a stable order (for pinning).
    pub const ALL: &[&str] =
        &[FLOWS_A, FLOWS_B, STATE, OCCUPANCY, CONNECTING, NAT, LISTENERS, PEERS, UDP_FIRST, STATS, DNS_EVENTS];
}

/// Name of the read-only global holding one flow buffer's logical capacity.
pub const FLOW_CAPACITY_GLOBAL: &str = "flow_capacity";

/// Length of a task's command name.
pub const COMM_LEN: usize = 16;
/// Bytes of a DNS answer copied to user space.
pub const DNS_MAX: usize = 512;

/// `flow_key.direction`.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// TCP, seen from the client's socket.
    Connect = 1,
    /// Seen from the server's end: a TCP accepted socket, or a UDP socket
    /// answering a peer that sent to it first.
    Accept = 2,
    /// UDP datagrams (or a connect) from the side that sent first.
    Udp = 3,
}

impl Direction {
    /// The direction for a raw `flow_key.direction` byte.
    pub fn from_raw(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Connect),
            2 => Some(Self::Accept),
            3 => Some(Self::Udp),
            _ => None,
        }
    }
}

/// Indexes of the per-CPU `stats` array: everything the kernel could not record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stat {
    /// `bpf_map_update_elem` on the flow map failed.
    FlowUpdateFailed = 0,
    /// Insert into a full flow map: an older flow may have been evicted.
    FlowMapFull = 1,
    /// A connecting socket could not be remembered.
    SockUpdateFailed = 2,
    /// A connect finished whose start was not seen.
    ConnectUntracked = 3,
    /// A DNS answer was not delivered: ring buffer full.
    DnsRingbufFull = 4,
    /// A DNS answer longer than [`DNS_MAX`] was delivered cut.
    DnsTruncated = 5,
    /// A DNAT translation could not be remembered.
    NatUpdateFailed = 6,
}

impl Stat {
    /// Every counter.
    pub const ALL: &[Stat] = &[
        Stat::FlowUpdateFailed,
        Stat::FlowMapFull,
        Stat::SockUpdateFailed,
        Stat::ConnectUntracked,
        Stat::DnsRingbufFull,
        Stat::DnsTruncated,
        Stat::NatUpdateFailed,
    ];

    /// The counter's metric label.
    pub fn label(self) -> &'static str {
        match self {
            Stat::FlowUpdateFailed => "flow_update_failed",
            Stat::FlowMapFull => "flow_map_full",
            Stat::SockUpdateFailed => "sock_update_failed",
            Stat::ConnectUntracked => "connect_untracked",
            Stat::DnsRingbufFull => "dns_ringbuf_full",
            Stat::DnsTruncated => "dns_truncated",
            Stat::NatUpdateFailed => "nat_update_failed",
        }
    }
}

/// Size of the `stats` array.
pub const STAT_MAX: u32 = 8;

/// `struct flow_key`: one aggregated flow, without the client's ephemeral port.
/// Addresses in network byte order (IPv4 in the first 4 bytes); ports in host order.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub direction: u8,
    pub protocol: u8,
    pub family: u8,
    pub _pad0: u8,
    pub dst_port: u16,
    pub orig_dst_port: u16,
    pub netns: u32,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub orig_dst_addr: [u8; 16],
    /// The other end's network namespace, when it is on this node too (else 0).
    pub peer_netns: u32,
    pub cgroup_id: u64,
    /// The other end's cgroup v2 id, when it is on this node too (else 0).
    pub peer_cgroup_id: u64,
}

/// `struct flow_value`: counts and times of a flow (CLOCK_BOOTTIME nanoseconds).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowValue {
    pub established: u64,
    pub failed: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub pid: u32,
    pub comm: [u8; COMM_LEN],
    pub _pad0: u32,
}

/// `struct sock_info`: a connecting TCP socket's process, taken inside connect().
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SockInfo {
    pub cgroup_id: u64,
    pub start_ns: u64,
    pub pid: u32,
    pub comm: [u8; COMM_LEN],
    pub _pad0: u32,
}

/// `struct nat_key`: a DNAT'ed connection's original tuple (network byte order).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NatKey {
    pub family: u8,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub _pad0: u16,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
}

/// `struct nat_value`: where conntrack really sent it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NatValue {
    pub dst_addr: [u8; 16],
    pub dst_port: u16,
    pub _pad0: u16,
    pub _pad1: u32,
}

/// `struct listener_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerKey {
    pub netns: u32,
    pub port: u16,
    pub family: u8,
    pub _pad0: u8,
}

/// `struct listener_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerValue {
    pub pid: u32,
    pub comm: [u8; COMM_LEN],
}
/// `struct peer_key`: an established TCP connection's tuple as its client saw
/// it (after DNAT; IPv4-mapped addresses as IPv4; ports in host order).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerKey {
    pub family: u8,
    pub _pad0: u8,
    pub client_port: u16,
    pub server_port: u16,
    pub _pad1: u16,
    pub client_addr: [u8; 16],
    pub server_addr: [u8; 16],
}
/// `struct peer_value`: who the client of a [`PeerKey`] is.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerValue {
    pub cgroup_id: u64,
    pub netns: u32,
    pub _pad0: u32,
}
/// `struct udp_key`: a UDP socket's port and one of its peers.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpKey {
    pub netns: u32,
    pub local_port: u16,
    pub peer_port: u16,
    pub family: u8,
    pub _pad0: [u8; 3],
    pub peer_addr: [u8; 16],
}
/// `udp_first` value: this socket sent to the peer before hearing from it.
pub const UDP_SENT_FIRST: u32 = 1;
/// `udp_first` value: the peer sent first; what this socket sends it are replies.
pub const UDP_RECEIVED_FIRST: u32 = 2;

/// `struct agent_state`: which flow buffer the programs write to.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentState {
    pub active: u32,
    pub _pad0: u32,
}

/// `struct dns_event`: a DNS answer as a pod received it, raw.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DnsEvent {
    pub ts_ns: u64,
    pub cgroup_id: u64,
    pub netns: u32,
    pub len: u16,
    pub family: u8,
    pub _pad0: u8,
    pub payload_len: u32,
    pub _pad1: u32,
    pub dst_addr: [u8; 16],
    pub src_addr: [u8; 16],
    pub data: [u8; DNS_MAX],
}

// SAFETY: all of these are #[repr(C)], made only of integers and byte arrays,
// with every padding byte spelled out as a field: any bit pattern is valid.
unsafe impl Pod for FlowKey {}
unsafe impl Pod for FlowValue {}
unsafe impl Pod for SockInfo {}
unsafe impl Pod for NatKey {}
unsafe impl Pod for NatValue {}
unsafe impl Pod for ListenerKey {}
unsafe impl Pod for ListenerValue {}
unsafe impl Pod for PeerKey {}
unsafe impl Pod for PeerValue {}
unsafe impl Pod for UdpKey {}
unsafe impl Pod for AgentState {}
unsafe impl Pod for DnsEvent {}

impl DnsEvent {
    /// Reads an event from ring-buffer bytes; `None` when too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: length checked; DnsEvent is Pod (any bit pattern is valid) and
        // read_unaligned copes with the ring buffer's 8-byte alignment.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }

    /// The captured payload (at most [`DNS_MAX`] bytes).
    pub fn payload(&self) -> &[u8] {
        &self.data[..usize::from(self.len).min(DNS_MAX)]
    }
}

#[cfg(test)]
mod layout_tests;
