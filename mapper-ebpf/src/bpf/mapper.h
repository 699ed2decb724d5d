/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * What the kernel programs and the agent share. Every struct here is mirrored
 * once in mapper-ebpf/src/lib.rs; a test compares the sizes, offsets and
 * constants that a C compiler computes from this header with the Rust ones, so
 * they cannot drift.
 * Only fixed-width types and explicit padding: the layout is the same for the
 * BPF target and the host.
 */
#ifndef MAPPER_H
#define MAPPER_H

#include <linux/types.h>

#define MAPPER_COMM_LEN 16
#define MAPPER_DNS_MAX 512

/* flow_key.direction */
#define MAPPER_DIR_CONNECT 1 /* TCP, seen from the client's socket */
#define MAPPER_DIR_ACCEPT 2  /* seen from the server's end: a TCP accepted socket, or a UDP
                              * socket answering a peer that sent to it first */
#define MAPPER_DIR_UDP 3     /* UDP datagrams (or a connect) from the side that sent first */

/* udp_first values: which end of a UDP conversation spoke first. */
#define MAPPER_UDP_SENT_FIRST 1
#define MAPPER_UDP_RECEIVED_FIRST 2

/* Indexes into the per-CPU `stats` array: everything that could not be recorded. */
#define MAPPER_STAT_FLOW_UPDATE_FAILED 0 /* bpf_map_update_elem on the flow map failed */
#define MAPPER_STAT_FLOW_MAP_FULL 1      /* insert into a full flow map: an older flow may have been evicted */
#define MAPPER_STAT_SOCK_UPDATE_FAILED 2 /* could not remember a connecting socket */
#define MAPPER_STAT_CONNECT_UNTRACKED 3  /* connect finished but its start was not seen (socket map full, or begun before attach) */
#define MAPPER_STAT_DNS_RINGBUF_FULL 4   /* DNS answer not delivered: ring buffer full */
#define MAPPER_STAT_DNS_TRUNCATED 5      /* DNS answer longer than MAPPER_DNS_MAX: delivered cut */
#define MAPPER_STAT_NAT_UPDATE_FAILED 6  /* could not remember a DNAT translation */
#define MAPPER_STAT_MAX 8

/*
 * One aggregated flow. The client's ephemeral port is not part of it, so every
 * connection between the same two endpoints lands in the same entry.
 * Addresses are in network byte order; IPv4 uses the first 4 bytes.
 * Ports are in host byte order.
 */
struct flow_key {
	__u8 direction;        /* MAPPER_DIR_* */
	__u8 protocol;         /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;           /* AF_INET / AF_INET6 */
	__u8 _pad0;
	__u16 dst_port;        /* server port the connection was established with */
	__u16 orig_dst_port;   /* server port as dialled, when DNAT changed it (else 0) */
	__u32 netns;           /* network namespace inode of the side that saw it */
	__u8 src_addr[16];     /* client side */
	__u8 dst_addr[16];     /* server side, as established (after DNAT) */
	__u8 orig_dst_addr[16];/* server side as dialled, when DNAT changed it (else zero) */
	__u32 peer_netns;      /* the other end's netns, when it is on this node too (else 0) */
	__u64 cgroup_id;       /* cgroup v2 id of the local side (process, or socket for accept) */
	__u64 peer_cgroup_id;  /* the other end's cgroup v2 id, when it is on this node too (else 0) */
};

struct flow_value {
	__u64 established;     /* connections established (UDP: datagrams sent or connects) */
	__u64 failed;          /* connects that failed: refused, reset, timed out */
	__u64 first_seen_ns;   /* CLOCK_BOOTTIME */
	__u64 last_seen_ns;    /* CLOCK_BOOTTIME */
	__u32 pid;             /* last process seen on the client side (0 when unknown) */
	__u8 comm[MAPPER_COMM_LEN];
	__u32 _pad0;
};

/* A connecting TCP socket between CLOSE->SYN_SENT (process context) and its outcome. */
struct sock_info {
	__u64 cgroup_id;
	__u64 start_ns;
	__u32 pid;
	__u8 comm[MAPPER_COMM_LEN];
	__u32 _pad0;
};

/* The original (as dialled) tuple of a DNAT'ed TCP connection, from conntrack. */
struct nat_key {
	__u8 family;
	__u8 protocol;
	__u16 src_port;        /* network byte order */
	__u16 dst_port;        /* network byte order */
	__u16 _pad0;
	__u8 src_addr[16];
	__u8 dst_addr[16];
};

/* Where conntrack really sent it. */
struct nat_value {
	__u8 dst_addr[16];
	__u16 dst_port;        /* network byte order */
	__u16 _pad0;
	__u32 _pad1;
};

/* A listening socket's owner, to name the process behind accepted connections. */
struct listener_key {
	__u32 netns;
	__u16 port;            /* host byte order */
	__u8 family;
	__u8 _pad0;
};

struct listener_value {
	__u32 pid;
	__u8 comm[MAPPER_COMM_LEN];
};

/*
 * An established TCP connection's tuple, as its client saw it (after DNAT),
 * so that the server end, when it is on the same node, learns who the client
 * is. IPv4-mapped IPv6 addresses are stored as IPv4. Ports in host order.
 */
struct peer_key {
	__u8 family;
	__u8 _pad0;
	__u16 client_port;
	__u16 server_port;
	__u16 _pad1;
	__u8 client_addr[16];
	__u8 server_addr[16];
};

struct peer_value {
	__u64 cgroup_id;       /* the client's cgroup */
	__u32 netns;           /* the client's network namespace */
	__u32 _pad0;
};

/* One end of a UDP conversation: this socket's port and the peer's address. */
struct udp_key {
	__u32 netns;
	__u16 local_port;      /* host byte order */
	__u16 peer_port;       /* host byte order */
	__u8 family;
	__u8 _pad0[3];
	__u8 peer_addr[16];
};

/* Double buffering of the flow maps: programs write to flows_a or flows_b. */
struct agent_state {
	__u32 active;          /* 0: flows_a, 1: flows_b */
	__u32 _pad0;
};

/* A DNS answer as received by a pod, copied raw from the UDP payload. */
struct dns_event {
	__u64 ts_ns;           /* CLOCK_BOOTTIME */
	__u64 cgroup_id;       /* receiving socket's cgroup */
	__u32 netns;           /* receiving socket's network namespace */
	__u16 len;             /* bytes of payload in data */
	__u8 family;
	__u8 _pad0;
	__u32 payload_len;     /* full UDP payload length */
	__u32 _pad1;
	__u8 dst_addr[16];     /* the pod that received the answer */
	__u8 src_addr[16];     /* the resolver that sent it */
	__u8 data[MAPPER_DNS_MAX];
};

#endif
