// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * Empty programs on the hooks mapper's programs use, for the benchmark only:
 * what the kernel's accounting (kernel.bpf_stats_enabled) charges a program
 * that does nothing, run for run. mapper's own cost per connection is its
 * accounted time above this floor.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/inet_sock_set_state")
int floor_sock_state(__u64 *ctx)
{
	return 0;
}

SEC("tp_btf/net_dev_queue")
int floor_dev_queue(__u64 *ctx)
{
	return 0;
}

SEC("cgroup/connect4")
int floor_connect4(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup_skb/ingress")
int floor_dns_ingress(struct __sk_buff *skb)
{
	return 1;
}
