// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * mapper's kernel side: who connects to whom, counted in the kernel.
 *
 *  - tracepoint sock/inet_sock_set_state: TCP connects (client side, process
 *    taken in process context at CLOSE->SYN_SENT) and accepts (server side,
 *    attributed by the socket's cgroup and netns), established or failed;
 *  - raw tracepoint net_dev_queue: the first packet of a DNAT'ed TCP
 *    connection carries its conntrack entry, which says where a connection to
 *    a Service ClusterIP really went;
 *  - cgroup/connect4,6 and cgroup/sendmsg4,6: UDP flows, connected or not;
 *    cgroup/recvmsg4,6 remember which peers sent to a socket first, so that a
 *    datagram answering them (a DNS reply, an ack) is counted as the server
 *    end of the peer's call, never as a call of its own;
 *  - cgroup_skb/ingress: DNS answers (UDP source port 53) handed to user space.
 *
 * Flows are aggregated in an LRU hash keyed without the client's ephemeral
 * port. Two such maps are used in turn (agent_state.active) so that the agent
 * reads and clears one while the programs write to the other: no increment is
 * ever lost between a read and a delete.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/if_ether.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "kernel.h"
#include "mapper.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define SOCK_DGRAM 2

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10

#define IP_CT_NEW 2
#define IPS_DST_NAT (1UL << 5)
#define NFCT_INFOMASK 7UL

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Sizes are defaults: the agent sets them at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct agent_state);
} state SEC(".maps");

/* Entries inserted into flows_a / flows_b since the agent last drained them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} occupancy SEC(".maps");

/* The agent sets this to the logical capacity of one flow map. */
volatile const __u64 flow_capacity = 8192;

/* The agent sets this to the inode of the node's own network namespace (0:
 * not known). Only clients in it share an address (the node's) with other
 * workloads, so only they leave their cgroup in `peers` for a server end on
 * this node; a pod's own address already names it. */
volatile const __u32 host_netns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock * */
	__type(value, struct sock_info);
} connecting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct nat_key);
	__type(value, struct nat_value);
} nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct listener_key);
	__type(value, struct listener_value);
} listeners SEC(".maps");

/* Client ends of established TCP connections, for a server end on this node. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct peer_key);
	__type(value, struct peer_value);
} peers SEC(".maps");

/* Addresses that clients in the node's namespace connected from (the node's
 * own), as a set of bits indexed by a hash of the address: a server end looks
 * in `peers` only for a client address found here. Set by the programs, never
 * cleared; a pod address that shares a bit costs a lookup, nothing more. An
 * array, so a lookup is a few inlined loads, not a helper call. */
#define HOST_CLIENT_BITS 4096
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HOST_CLIENT_BITS);
	__type(key, __u32);
	__type(value, __u32);
} host_clients SEC(".maps");

/* Which end of each UDP conversation spoke first (MAPPER_UDP_*). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct udp_key);
	__type(value, __u32);
} udp_first SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAPPER_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} dns_events SEC(".maps");

/* Pending entries of `nat` (inserted by mapper_dev_queue, deleted by the
 * connect they belong to). LRU evictions are never subtracted, so it errs high:
 * at zero no lookup is needed, above zero a lookup is done. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} nat_pending SEC(".maps");

/*
 * A TCP socket's state change as the programs use it, read from the socket
 * itself (tp_btf hands over the struct sock; the loads are plain loads, no
 * helper calls). Ports in host byte order; IPv4 uses the first 4 bytes of the
 * addresses, IPv6 sockets (v4-mapped or not) all 16, as the tracepoint's own
 * format does.
 */
struct tcp_event {
	const struct sock *sk;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 saddr[16];
	__u8 daddr[16];
};

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1; /* per-CPU: no atomics needed */
}

static __always_inline void flow_account(void *map, __u32 buf, struct flow_key *key, int failed, __u32 pid,
					 const __u8 *comm)
{
	__u64 now = bpf_ktime_get_boot_ns();
	struct flow_value *v = bpf_map_lookup_elem(map, key);
	if (!v) {
		struct flow_value init = {};
		init.first_seen_ns = now;
		init.last_seen_ns = now;
		init.pid = pid;
		if (comm)
			__builtin_memcpy(init.comm, comm, MAPPER_COMM_LEN);
		if (failed)
			init.failed = 1;
		else
			init.established = 1;
		__u64 *occ = bpf_map_lookup_elem(&occupancy, &buf);
		long err = bpf_map_update_elem(map, key, &init, BPF_NOEXIST);
		if (err == 0) {
			if (occ && __sync_fetch_and_add(occ, 1) >= flow_capacity)
				stat_inc(MAPPER_STAT_FLOW_MAP_FULL);
			return;
		}
		/* Another CPU inserted it first: add to that entry. */
		v = bpf_map_lookup_elem(map, key);
		if (!v) {
			stat_inc(MAPPER_STAT_FLOW_UPDATE_FAILED);
			return;
		}
	}
	if (failed)
		__sync_fetch_and_add(&v->failed, 1);
	else
		__sync_fetch_and_add(&v->established, 1);
	v->last_seen_ns = now;
	if (pid) {
		v->pid = pid;
		if (comm)
			__builtin_memcpy(v->comm, comm, MAPPER_COMM_LEN);
	}
}

static __always_inline void flow_add(struct flow_key *key, int failed, __u32 pid, const __u8 *comm)
{
	__u32 zero = 0;
	struct agent_state *st = bpf_map_lookup_elem(&state, &zero);
	if (st && (st->active & 1))
		flow_account(&flows_b, 1, key, failed, pid, comm);
	else
		flow_account(&flows_a, 0, key, failed, pid, comm);
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline __u32 current_netns(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
}

static __always_inline void tp_addrs(const struct tcp_event *ctx, __u8 *src, __u8 *dst)
{
	if (ctx->family == AF_INET) {
		__builtin_memcpy(src, ctx->saddr, 4);
		__builtin_memcpy(dst, ctx->daddr, 4);
	} else {
		__builtin_memcpy(src, ctx->saddr, 16);
		__builtin_memcpy(dst, ctx->daddr, 16);
	}
}

/* Direct loads through the BTF-typed socket pointer (tp_btf): no helper call.
 * The empty asm keeps clang from merging the last load with a load from
 * another kind of pointer on a joining path ("same insn cannot be used with
 * different pointers"). */
static __always_inline __u32 sk_netns_direct(const struct sock *sk)
{
	const struct net *net = sk->__sk_common.skc_net.net;
	__u32 inum = 0;
	if (net)
		inum = net->ns.inum;
	asm volatile("" : "+r"(inum));
	return inum;
}

static __always_inline __u64 sk_cgroup_direct(const struct sock *sk)
{
	const struct cgroup *cg = sk->sk_cgrp_data.cgroup;
	__u64 id = 0;
	if (cg) {
		const struct kernfs_node *kn = cg->kn;
		if (kn)
			id = kn->id;
	}
	asm volatile("" : "+r"(id));
	return id;
}

/* The ports and addresses of a connecting or accepted socket. */
static __always_inline void tcp_event_of(struct tcp_event *ev, const struct sock *sk, __u16 family)
{
	ev->sk = sk;
	ev->family = family;
	ev->sport = sk->__sk_common.skc_num;
	ev->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (family == AF_INET) {
		__be32 a = sk->__sk_common.skc_rcv_saddr;
		__builtin_memcpy(ev->saddr, &a, 4);
		a = sk->__sk_common.skc_daddr;
		__builtin_memcpy(ev->daddr, &a, 4);
	} else {
		bpf_probe_read_kernel(ev->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(ev->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* An address as a peer_key holds it: IPv4-mapped IPv6 becomes IPv4, so a
 * dual-stack listener's view of an IPv4 client matches the client's own. */
static __always_inline int is_v4_mapped(const __u8 *a)
{
	__u64 lo;
	__u32 mid;
	__builtin_memcpy(&lo, a, 8);
	__builtin_memcpy(&mid, a + 8, 4);
	return lo == 0 && mid == bpf_htonl(0x0000ffff);
}

/* 127.0.0.0/8, ::1, or either as IPv4-mapped IPv6: traffic that never leaves
 * its network namespace and is no call between workloads (docs/identity.md,
 * "Loopback"). Such connections and datagrams are not recorded at all. */
static __always_inline int is_loopback(__u16 family, const __u8 *a)
{
	if (family == AF_INET)
		return a[0] == 127;
	if (is_v4_mapped(a))
		return a[12] == 127;
	__u64 hi, lo;
	__builtin_memcpy(&hi, a, 8);
	__builtin_memcpy(&lo, a + 8, 8);
	return hi == 0 && lo == bpf_cpu_to_be64(1);
}

static __always_inline void peer_key_of(struct peer_key *pk, __u8 family, __u16 client_port, __u16 server_port,
					const __u8 *client, const __u8 *server)
{
	pk->client_port = client_port;
	pk->server_port = server_port;
	if (family == AF_INET6 && is_v4_mapped(client) && is_v4_mapped(server)) {
		pk->family = AF_INET;
		__builtin_memcpy(pk->client_addr, client + 12, 4);
		__builtin_memcpy(pk->server_addr, server + 12, 4);
	} else if (family == AF_INET) {
		pk->family = AF_INET;
		__builtin_memcpy(pk->client_addr, client, 4);
		__builtin_memcpy(pk->server_addr, server, 4);
	} else {
		pk->family = family;
		__builtin_memcpy(pk->client_addr, client, 16);
		__builtin_memcpy(pk->server_addr, server, 16);
	}
}

/* The host_clients slot of a peer_key's client address (IPv4 as peer_key_of
 * normalised it: in the first 4 bytes). */
static __always_inline __u32 host_client_slot(const struct peer_key *pk)
{
	__u32 w[4];
	__builtin_memcpy(w, pk->client_addr, 16);
	__u32 h = pk->family == AF_INET ? w[0] : w[0] ^ w[1] ^ w[2] ^ w[3];
	return (h * 2654435761u) >> 20; /* Fibonacci hashing: 12 bits */
}

static __always_inline void on_connect_done(const struct tcp_event *ctx, int failed)
{
	__u64 skaddr = (__u64)ctx->sk;
	const struct sock *sk = ctx->sk;
	struct flow_key key = {};

	key.direction = MAPPER_DIR_CONNECT;
	key.protocol = IPPROTO_TCP;
	key.family = (__u8)ctx->family;
	key.dst_port = ctx->dport;
	key.netns = sk_netns_direct(sk);
	tp_addrs(ctx, key.src_addr, key.dst_addr);
	if (is_loopback(ctx->family, key.dst_addr)) {
		bpf_map_delete_elem(&connecting, &skaddr);
		return;
	}
	struct sock_info *si = bpf_map_lookup_elem(&connecting, &skaddr);

	/* Did conntrack send it somewhere else (a Service ClusterIP)? Only asked
	 * while translations are pending. */
	__u32 zero = 0;
	__u64 *pending = bpf_map_lookup_elem(&nat_pending, &zero);
	if (pending && *pending) {
		struct nat_key nk = {};
		nk.family = key.family;
		nk.protocol = IPPROTO_TCP;
		nk.src_port = bpf_htons(ctx->sport);
		nk.dst_port = bpf_htons(ctx->dport);
		__builtin_memcpy(nk.src_addr, key.src_addr, 16);
		__builtin_memcpy(nk.dst_addr, key.dst_addr, 16);
		struct nat_value *nv = bpf_map_lookup_elem(&nat, &nk);
		if (nv) {
			__builtin_memcpy(key.orig_dst_addr, key.dst_addr, 16);
			key.orig_dst_port = key.dst_port;
			__builtin_memcpy(key.dst_addr, nv->dst_addr, 16);
			key.dst_port = bpf_ntohs(nv->dst_port);
			if (bpf_map_delete_elem(&nat, &nk) == 0)
				__sync_fetch_and_add(pending, -1);
		}
	}

	key.cgroup_id = si ? si->cgroup_id : sk_cgroup_direct(sk);

	if (!failed && (host_netns == 0 || key.netns == host_netns)) {
		/* Tell the server end, if it is on this node, who connected. Our
		 * ESTABLISHED comes before the server's: it follows the SYN-ACK,
		 * the server's follows our ACK. A client with an address of its
		 * own (a pod) needs no such note: its address names it. */
		struct peer_key pk = {};
		struct peer_value pv = {};
		peer_key_of(&pk, key.family, ctx->sport, key.dst_port, key.src_addr, key.dst_addr);
		pv.cgroup_id = key.cgroup_id;
		pv.netns = key.netns;
		bpf_map_update_elem(&peers, &pk, &pv, BPF_ANY);
		__u32 slot = host_client_slot(&pk);
		__u32 *bit = bpf_map_lookup_elem(&host_clients, &slot);
		if (bit && !*bit)
			*bit = 1;
	}

	if (si) {
		flow_add(&key, failed, si->pid, si->comm);
		bpf_map_delete_elem(&connecting, &skaddr);
	} else {
		/* Begun before we attached, or the socket map overflowed: the
		 * socket's own cgroup still tells whose it is. */
		stat_inc(MAPPER_STAT_CONNECT_UNTRACKED);
		flow_add(&key, failed, 0, 0);
	}
}

static __always_inline void on_accept_done(const struct tcp_event *ctx, int failed)
{
	const struct sock *sk = ctx->sk;
	struct flow_key key = {};

	key.direction = MAPPER_DIR_ACCEPT;
	key.protocol = IPPROTO_TCP;
	key.family = (__u8)ctx->family;
	key.dst_port = ctx->sport; /* our side is the server */
	key.netns = sk_netns_direct(sk);
	key.cgroup_id = sk_cgroup_direct(sk);
	/* The accepted socket's source is us: client = daddr, server = saddr. */
	tp_addrs(ctx, key.dst_addr, key.src_addr);
	if (is_loopback(ctx->family, key.src_addr))
		return;

	if (!failed) {
		/* A client on this node left its name at its own ESTABLISHED. */
		struct peer_key pk = {};
		peer_key_of(&pk, key.family, ctx->dport, ctx->sport, key.src_addr, key.dst_addr);
		struct peer_value *pv = 0;
		__u32 slot = host_client_slot(&pk);
		__u32 *bit = bpf_map_lookup_elem(&host_clients, &slot);
		if (host_netns == 0 || (bit && *bit))
			pv = bpf_map_lookup_elem(&peers, &pk);
		if (pv) {
			key.peer_cgroup_id = pv->cgroup_id;
			key.peer_netns = pv->netns;
			bpf_map_delete_elem(&peers, &pk);
		}
	}

	struct listener_key lk = {};
	lk.netns = key.netns;
	lk.port = ctx->sport;
	lk.family = key.family;
	struct listener_value *lv = bpf_map_lookup_elem(&listeners, &lk);
	if (lv)
		flow_add(&key, failed, lv->pid, lv->comm);
	else
		flow_add(&key, failed, 0, 0);
}

/*
 * Every TCP state change of every socket, ~10 per connection counting both
 * ends. The transitions that matter are picked on the states alone, before any
 * memory is read or any helper called; the rest (FIN_WAIT, CLOSE_WAIT, ...,
 * LISTEN->SYN_RECV) cost two compares.
 */
SEC("tp_btf/inet_sock_set_state")
int mapper_sock_state(__u64 *ctx)
{
	const struct sock *sk = (const struct sock *)ctx[0];
	int oldstate = (int)ctx[1];
	int newstate = (int)ctx[2];
	int connect_done = oldstate == TCP_SYN_SENT && (newstate == TCP_ESTABLISHED || newstate == TCP_CLOSE);
	int accept_done = oldstate == TCP_SYN_RECV && (newstate == TCP_ESTABLISHED || newstate == TCP_CLOSE);
	int syn_sent = oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT;

	if (!connect_done && !accept_done && !syn_sent && newstate != TCP_LISTEN && oldstate != TCP_SYN_SENT)
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;

	if (syn_sent) {
		/* Inside connect(): the current task is the one connecting. */
		__u64 skaddr = (__u64)sk;
		struct sock_info si = {};
		si.cgroup_id = bpf_get_current_cgroup_id();
		si.pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(si.comm, sizeof(si.comm));
		if (bpf_map_update_elem(&connecting, &skaddr, &si, BPF_ANY))
			stat_inc(MAPPER_STAT_SOCK_UPDATE_FAILED);
		return 0;
	}
	if (connect_done || accept_done) {
		struct tcp_event ev = {};
		tcp_event_of(&ev, sk, family);
		if (connect_done)
			on_connect_done(&ev, newstate == TCP_CLOSE);
		else
			on_accept_done(&ev, newstate == TCP_CLOSE);
		return 0;
	}
	if (newstate == TCP_LISTEN) {
		/* listen(): process context, remember who serves this port. */
		struct listener_key lk = {};
		struct listener_value lv = {};
		lk.netns = sk_netns_direct(sk);
		lk.port = sk->__sk_common.skc_num;
		lk.family = (__u8)family;
		lv.pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(lv.comm, sizeof(lv.comm));
		bpf_map_update_elem(&listeners, &lk, &lv, BPF_ANY);
		return 0;
	}
	/* Any other way out of SYN_SENT still ends the attempt. */
	__u64 skaddr = (__u64)sk;
	bpf_map_delete_elem(&connecting, &skaddr);
	return 0;
}

/*
 * The first packet of a connection leaves the node (or enters the target
 * pod's veth) with its conntrack entry still attached. When that entry was
 * DNAT'ed, remember where the original tuple really goes, so the client's
 * connect can report both the ClusterIP it dialled and the pod it reached.
 * Cheap for every other packet: one read of skb->_nfct.
 */
SEC("tp_btf/net_dev_queue")
int mapper_dev_queue(__u64 *ctx)
{
	const struct sk_buff *skb = (const struct sk_buff *)ctx[0];
	unsigned long nfct = skb->_nfct; /* a plain load (tp_btf), no helper */

	if ((nfct & NFCT_INFOMASK) != IP_CT_NEW)
		return 0;
	struct nf_conn *ct = (struct nf_conn *)(nfct & ~NFCT_INFOMASK);
	if (!(BPF_CORE_READ(ct, status) & IPS_DST_NAT))
		return 0;
	if (BPF_CORE_READ(ct, tuplehash[0].tuple.dst.protonum) != IPPROTO_TCP)
		return 0;

	struct nat_key nk = {};
	struct nat_value nv = {};
	__u16 l3 = BPF_CORE_READ(ct, tuplehash[0].tuple.src.l3num);
	if (l3 != AF_INET && l3 != AF_INET6)
		return 0;
	nk.family = (__u8)l3;
	nk.protocol = IPPROTO_TCP;
	nk.src_port = BPF_CORE_READ(ct, tuplehash[0].tuple.src.u.all);
	nk.dst_port = BPF_CORE_READ(ct, tuplehash[0].tuple.dst.u.all);
	nv.dst_port = BPF_CORE_READ(ct, tuplehash[1].tuple.src.u.all);
	if (l3 == AF_INET) {
		__be32 a;
		a = BPF_CORE_READ(ct, tuplehash[0].tuple.src.u3.ip);
		__builtin_memcpy(nk.src_addr, &a, 4);
		a = BPF_CORE_READ(ct, tuplehash[0].tuple.dst.u3.ip);
		__builtin_memcpy(nk.dst_addr, &a, 4);
		a = BPF_CORE_READ(ct, tuplehash[1].tuple.src.u3.ip);
		__builtin_memcpy(nv.dst_addr, &a, 4);
	} else {
		BPF_CORE_READ_INTO(&nk.src_addr, ct, tuplehash[0].tuple.src.u3.ip6);
		BPF_CORE_READ_INTO(&nk.dst_addr, ct, tuplehash[0].tuple.dst.u3.ip6);
		BPF_CORE_READ_INTO(&nv.dst_addr, ct, tuplehash[1].tuple.src.u3.ip6);
	}
	/* The SYN is queued on several devices: count the translation once, when
	 * it is new; a later sighting only refreshes it. */
	if (bpf_map_update_elem(&nat, &nk, &nv, BPF_NOEXIST) == 0) {
		__u32 zero = 0;
		__u64 *pending = bpf_map_lookup_elem(&nat_pending, &zero);
		if (pending)
			__sync_fetch_and_add(pending, 1);
	} else if (bpf_map_update_elem(&nat, &nk, &nv, BPF_ANY)) {
		stat_inc(MAPPER_STAT_NAT_UPDATE_FAILED);
	}
	return 0;
}

/* ctx's user address (the datagram's peer), as the flow and UDP keys hold it:
 * IPv4 in the first 4 bytes, the rest zero. Read once per program run. */
static __always_inline void udp_peer_of(struct bpf_sock_addr *ctx, int v6, __u8 *peer)
{
	__u32 a[4] = {};
	if (!v6) {
		a[0] = ctx->user_ip4;
	} else {
		a[0] = ctx->user_ip6[0];
		a[1] = ctx->user_ip6[1];
		a[2] = ctx->user_ip6[2];
		a[3] = ctx->user_ip6[3];
	}
	__builtin_memcpy(peer, a, 16);
}

/* The conversation of a UDP socket with `peer` (from udp_peer_of). */
static __always_inline void udp_key_of(struct bpf_sock_addr *ctx, int v6, const __u8 *peer, __u32 netns,
				      __u16 local_port, struct udp_key *uk)
{
	uk->netns = netns;
	uk->local_port = local_port;
	uk->peer_port = bpf_ntohs((__u16)ctx->user_port);
	uk->family = v6 ? AF_INET6 : AF_INET;
	__builtin_memcpy(uk->peer_addr, peer, 16);
}

/*
 * A datagram sent (or a UDP connect). Who called whom is who sent first: when
 * this socket's port heard from the peer before it ever sent to it, the
 * datagram is an answer (a DNS reply), counted as the server end of the
 * peer's call (MAPPER_DIR_ACCEPT: src = the peer, dst = us, dst_port = our
 * port), never as a call of ours.
 */
static __always_inline int udp_flow(struct bpf_sock_addr *ctx, int v6, int sendmsg)
{
	if (ctx->type != SOCK_DGRAM || ctx->protocol != IPPROTO_UDP)
		return 1;

	/* Our address and the peer's; a reply puts the peer on the client side. */
	__u8 ours[16] = {}, theirs[16];
	udp_peer_of(ctx, v6, theirs);
	if (is_loopback(v6 ? AF_INET6 : AF_INET, theirs))
		return 1;
	struct bpf_sock *sk = ctx->sk;
	__u32 netns = current_netns();
	/* Before connect() binds a socket its port is 0: it has heard nothing. */
	__u16 local_port = sk ? (__u16)sk->src_port : 0;
	int reply = 0;
	if (local_port) {
		struct udp_key uk = {};
		udp_key_of(ctx, v6, theirs, netns, local_port, &uk);
		__u32 *first = bpf_map_lookup_elem(&udp_first, &uk);
		if (first) {
			reply = *first == MAPPER_UDP_RECEIVED_FIRST;
		} else {
			__u32 sent = MAPPER_UDP_SENT_FIRST;
			bpf_map_update_elem(&udp_first, &uk, &sent, BPF_NOEXIST);
		}
	}

	struct flow_key key = {};
	key.direction = reply ? MAPPER_DIR_ACCEPT : MAPPER_DIR_UDP;
	key.protocol = IPPROTO_UDP;
	key.dst_port = reply ? local_port : bpf_ntohs((__u16)ctx->user_port);
	key.netns = netns;
	key.cgroup_id = bpf_get_current_cgroup_id();
	if (!v6) {
		__u32 src = sendmsg ? ctx->msg_src_ip4 : 0;
		if (!src && sk)
			src = sk->src_ip4;
		key.family = AF_INET;
		__builtin_memcpy(ours, &src, 4);
	} else {
		__u32 s[4] = {};
		if (sendmsg) {
			s[0] = ctx->msg_src_ip6[0];
			s[1] = ctx->msg_src_ip6[1];
			s[2] = ctx->msg_src_ip6[2];
			s[3] = ctx->msg_src_ip6[3];
		}
		if (!(s[0] | s[1] | s[2] | s[3]) && sk) {
			s[0] = sk->src_ip6[0];
			s[1] = sk->src_ip6[1];
			s[2] = sk->src_ip6[2];
			s[3] = sk->src_ip6[3];
		}
		key.family = AF_INET6;
		__builtin_memcpy(ours, s, 16);
	}
	if (reply) {
		__builtin_memcpy(key.src_addr, theirs, 16);
		__builtin_memcpy(key.dst_addr, ours, 16);
	} else {
		__builtin_memcpy(key.src_addr, ours, 16);
		__builtin_memcpy(key.dst_addr, theirs, 16);
	}

	__u8 comm[MAPPER_COMM_LEN] = {};
	bpf_get_current_comm(comm, sizeof(comm));
	flow_add(&key, 0, bpf_get_current_pid_tgid() >> 32, comm);
	return 1;
}

/* A datagram read with its sender's address: remember the peer spoke first,
 * unless this socket sent to it before. */
static __always_inline int udp_recv(struct bpf_sock_addr *ctx, int v6)
{
	if (ctx->type != SOCK_DGRAM || ctx->protocol != IPPROTO_UDP)
		return 1;
	struct bpf_sock *sk = ctx->sk;
	if (!sk || !sk->src_port)
		return 1;
	__u8 peer[16];
	udp_peer_of(ctx, v6, peer);
	if (is_loopback(v6 ? AF_INET6 : AF_INET, peer))
		return 1;
	struct udp_key uk = {};
	udp_key_of(ctx, v6, peer, current_netns(), (__u16)sk->src_port, &uk);
	if (!bpf_map_lookup_elem(&udp_first, &uk)) {
		__u32 received = MAPPER_UDP_RECEIVED_FIRST;
		bpf_map_update_elem(&udp_first, &uk, &received, BPF_NOEXIST);
	}
	return 1;
}

SEC("cgroup/connect4")
int mapper_connect4(struct bpf_sock_addr *ctx)
{
	return udp_flow(ctx, 0, 0);
}

SEC("cgroup/connect6")
int mapper_connect6(struct bpf_sock_addr *ctx)
{
	return udp_flow(ctx, 1, 0);
}

SEC("cgroup/sendmsg4")
int mapper_sendmsg4(struct bpf_sock_addr *ctx)
{
	return udp_flow(ctx, 0, 1);
}

SEC("cgroup/sendmsg6")
int mapper_sendmsg6(struct bpf_sock_addr *ctx)
{
	return udp_flow(ctx, 1, 1);
}

SEC("cgroup/recvmsg4")
int mapper_recvmsg4(struct bpf_sock_addr *ctx)
{
	return udp_recv(ctx, 0);
}

SEC("cgroup/recvmsg6")
int mapper_recvmsg6(struct bpf_sock_addr *ctx)
{
	return udp_recv(ctx, 1);
}

/*
 * Copy a DNS answer to user space; parsing happens there, defensively.
 * Runs on every packet every socket receives: whether it is UDP from port 53 is
 * read straight from the packet (direct packet access, no helper call);
 * bpf_skb_load_bytes only when the headers are not in the linear part.
 */
SEC("cgroup_skb/ingress")
int mapper_dns_ingress(struct __sk_buff *skb)
{
	__u8 family;
	__u32 l4off;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 *ip = data;
		__u8 vihl, proto;
		if ((void *)(ip + 20) <= data_end) {
			vihl = ip[0];
			proto = ip[9];
		} else if (bpf_skb_load_bytes(skb, 0, &vihl, 1) || bpf_skb_load_bytes(skb, 9, &proto, 1)) {
			return 1;
		}
		if (proto != IPPROTO_UDP)
			return 1;
		family = AF_INET;
		l4off = (vihl & 0x0f) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 *ip6 = data;
		__u8 proto;
		if ((void *)(ip6 + 40) <= data_end)
			proto = ip6[6];
		else if (bpf_skb_load_bytes(skb, 6, &proto, 1))
			return 1;
		if (proto != IPPROTO_UDP)
			return 1;
		family = AF_INET6;
		l4off = 40;
	} else {
		return 1;
	}

	__u16 sport;
	__u8 *l4 = (__u8 *)data + (l4off & 0x3c);
	if (family == AF_INET6)
		l4 = (__u8 *)data + 40;
	if ((void *)(l4 + 2) <= data_end)
		sport = *(__u16 *)l4;
	else if (bpf_skb_load_bytes(skb, l4off, &sport, 2))
		return 1;
	if (sport != bpf_htons(53))
		return 1;

	struct dns_event *ev = bpf_ringbuf_reserve(&dns_events, sizeof(*ev), 0);
	if (!ev) {
		stat_inc(MAPPER_STAT_DNS_RINGBUF_FULL);
		return 1;
	}
	__u64 payload = 0;
	if (skb->len > l4off + 8)
		payload = skb->len - l4off - 8;
	ev->ts_ns = bpf_ktime_get_boot_ns();
	ev->family = family;
	ev->payload_len = (__u32)payload;
	ev->netns = 0;
	ev->cgroup_id = 0;
	struct bpf_sock *bsk = skb->sk;
	if (bsk) {
		bsk = bpf_sk_fullsock(bsk);
		if (bsk) {
			ev->cgroup_id = bpf_sk_cgroup_id(bsk);
			/* The verifier forbids CO-RE reads through a socket pointer in
			 * this program type; read its address as a plain number. */
			__u64 skp = 0;
			struct bpf_sock *tmp = bsk;
			bpf_probe_read_kernel(&skp, sizeof(skp), &tmp);
			ev->netns = sk_netns((const struct sock *)skp);
		}
	}
	__builtin_memset(ev->dst_addr, 0, 16);
	__builtin_memset(ev->src_addr, 0, 16);
	if (family == AF_INET) {
		bpf_skb_load_bytes(skb, 12, ev->src_addr, 4);
		bpf_skb_load_bytes(skb, 16, ev->dst_addr, 4);
	} else {
		bpf_skb_load_bytes(skb, 8, ev->src_addr, 16);
		bpf_skb_load_bytes(skb, 24, ev->dst_addr, 16);
	}

	__u64 len = payload;
	if (len > MAPPER_DNS_MAX) {
		len = MAPPER_DNS_MAX;
		stat_inc(MAPPER_STAT_DNS_TRUNCATED);
	}
	asm volatile("" : "+r"(len));
	ev->len = 0;
	if (len >= 1 && len <= MAPPER_DNS_MAX) {
		if (bpf_skb_load_bytes(skb, l4off + 8, ev->data, len) == 0)
			ev->len = (__u16)len;
	}
	bpf_ringbuf_submit(ev, 0);
	return 1;
}
