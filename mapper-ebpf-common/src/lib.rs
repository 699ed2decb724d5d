//! What mapper's kernel programs and user space share: the `#[repr(C)]` mirror of
//! `mapper-ebpf/src/bpf/mapper.h` (map keys and values, the DNS event) and its constants
//! (directions, stats).
//!
//! This crate builds with no C compiler and no kernel object, so whatever needs only the
//! layout (the chart's memory sizing, say) does not pay for clang. The mirror is checked
//! against the header by `mapper-ebpf`'s layout tests, which compile the header for the
//! host: every struct's size and field offsets, every constant's value.
//!
//! `#![no_std]`; with the `aya` feature every map key and value is `aya::Pod`, as the
//! loader needs.
#![no_std]

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

    /// `connect`, `accept` or `udp` (logs, metric labels, the agent's JSON lines).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Accept => "accept",
            Self::Udp => "udp",
        }
    }
}

/// `flow_key.protocol`: the IP protocol numbers the programs record.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `IPPROTO_TCP`.
    Tcp = 6,
    /// `IPPROTO_UDP`.
    Udp = 17,
}

impl Protocol {
    /// The protocol for a raw `flow_key.protocol` byte.
    pub fn from_raw(v: u8) -> Option<Self> {
        match v {
            6 => Some(Self::Tcp),
            17 => Some(Self::Udp),
            _ => None,
        }
    }

    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
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

/// `aya::Pod` for every map key and value.
#[cfg(feature = "aya")]
mod pod {
    use aya::Pod;

    use super::*;

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
}

impl DnsEvent {
    /// Reads an event from ring-buffer bytes; `None` when too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: length checked; DnsEvent is #[repr(C)] integers and byte arrays with its
        // padding spelled out (any bit pattern is valid), and
        // read_unaligned copes with the ring buffer's 8-byte alignment.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }

    /// The captured payload (at most [`DNS_MAX`] bytes).
    pub fn payload(&self) -> &[u8] {
        &self.data[..usize::from(self.len).min(DNS_MAX)]
    }
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    #[test]
    fn stats_fit_the_array() {
        for &stat in Stat::ALL {
            assert!((stat as u32) < STAT_MAX, "{} outside the stats array", stat.label());
        }
    }

    #[test]
    fn directions_and_protocols_read_back_from_their_raw_byte() {
        for d in [Direction::Connect, Direction::Accept, Direction::Udp] {
            assert_eq!(Direction::from_raw(d as u8), Some(d));
        }
        assert_eq!(Direction::from_raw(0), None);
        for p in [Protocol::Tcp, Protocol::Udp] {
            assert_eq!(Protocol::from_raw(p as u8), Some(p));
        }
        assert_eq!(Protocol::from_raw(132), None, "SCTP is not recorded");
    }

    #[test]
    fn a_dns_event_is_read_from_ring_buffer_bytes() {
        const N: usize = size_of::<DnsEvent>();
        let (len, data) = (offset_of!(DnsEvent, len), offset_of!(DnsEvent, data));
        // One byte in: the ring buffer does not align its records for DnsEvent.
        let mut bytes = [0u8; N + 1];
        bytes[1 + len..1 + len + 2].copy_from_slice(&3u16.to_ne_bytes());
        bytes[1 + data..1 + data + 4].copy_from_slice(b"abcd");
        assert!(DnsEvent::from_bytes(&bytes[1..N]).is_none(), "short");
        let ev = DnsEvent::from_bytes(&bytes[1..]).expect("long enough");
        assert_eq!(ev.payload(), b"abc");
        bytes[1 + len..1 + len + 2].copy_from_slice(&u16::MAX.to_ne_bytes());
        let ev = DnsEvent::from_bytes(&bytes[1..]).expect("long enough");
        assert_eq!(ev.payload().len(), DNS_MAX, "a length past the buffer is capped");
    }
}
