/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The few kernel structures the programs read, declared with
 * preserve_access_index: only the names of the fields matter, clang emits CO-RE
 * relocations and the loader fixes the offsets against the running kernel's BTF.
 */
#ifndef MAPPER_KERNEL_H
#define MAPPER_KERNEL_H

#include <linux/types.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

/* Only its size matters here: IPv6 addresses are copied whole. */
struct mapper_in6 {
	__u8 s6_addr[16];
};

/* The kernel nests the address and port pairs in anonymous unions; CO-RE finds
 * the fields by name through them. */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	possible_net_t skc_net;
	unsigned short skc_family;
	struct mapper_in6 skc_v6_daddr;
	struct mapper_in6 skc_v6_rcv_saddr;
	__u64 skc_cookie;
};

struct kernfs_node {
	__u64 id;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct sock_cgroup_data {
	struct cgroup *cgroup;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol; /* a u16 since 5.6 (a bitfield before) */
	struct sock_cgroup_data sk_cgrp_data;
};

struct nsproxy {
	struct net *net_ns;
};

struct task_struct {
	struct nsproxy *nsproxy;
};

union nf_inet_addr {
	__u32 all[4];
	__be32 ip;
	__be32 ip6[4];
};

union nf_conntrack_man_proto {
	__be16 all;
};

struct nf_conntrack_man {
	union nf_inet_addr u3;
	union nf_conntrack_man_proto u;
	__u16 l3num;
};

struct nf_conntrack_tuple {
	struct nf_conntrack_man src;
	struct {
		union nf_inet_addr u3;
		union {
			__be16 all;
		} u;
		__u8 protonum;
		__u8 dir;
	} dst;
};

struct nf_conntrack_tuple_hash {
	struct nf_conntrack_tuple tuple;
};

struct nf_conn {
	struct nf_conntrack_tuple_hash tuplehash[2];
	unsigned long status;
};

struct sk_buff {
	unsigned long _nfct;
};

#pragma clang attribute pop

#endif
