// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
//
// Sluice's kernel fast path for media: a tc ingress program that relays the packets of streams
// the userspace relay has settled (both ends plain RTP, the sender latched, the destination
// known) without waking the relay. One map entry per direction and socket, keyed on where the
// packet arrives (Sluice's address and port) and who sent it (the latched address); the entry
// says where RTP and RTCP go (from which of Sluice's addresses and ports, to which address) and
// carries the counters and RFC 3550 statistics the userspace relay keeps, handed over in both
// directions. IPv4 and IPv6 each have their table.
//
// Anything the program does not recognise goes on unchanged to the socket (TC_ACT_UNSPEC: the
// next program, then the stack), where the userspace relay decides as it always does: other
// senders (strangers, a NAT that rebinds), anything not RTP/RTCP version 2, IPv4 options and
// fragments, IPv6 extension headers, IPv6 UDP without a checksum, packets whose headers are
// not in the linear part.
//
// The layouts below are mirrored in src/lib.rs (sizes checked on both sides).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct fwd_key {
	__be32 local_ip; /* Sluice's address the packet arrives at */
	__be32 src_ip;   /* the sender's */
	__be16 local_port;
	__be16 src_port;
};

struct fwd_route {
	__be32 src_ip; /* Sluice's address and port the packet leaves from */
	__be32 dst_ip;
	__be16 src_port;
	__be16 dst_port;
	__u32 ifindex; /* the device it leaves by; 0: packets of this kind go to userspace */
};

/* RFC 3550 A.1, A.3 and A.8, as the userspace relay's RtpStats keeps them. */
struct rtp_state {
	__u64 received;
	__u64 lost_before;
	__u32 ssrc;
	__u32 cycles;
	__u32 transit;
	__u32 jitter_q4;
	__u16 base_seq;
	__u16 max_seq;
	__u32 started;
};

struct fwd_value {
	struct fwd_route rtp;
	struct fwd_route rtcp;
	__u64 epoch_ns; /* CLOCK_MONOTONIC origin of arrival times (jitter) */
	__u32 clock_rate;
	__u32 rtcp_socket; /* the packet arrives on an RTCP port: everything is RTCP */
	/* Written here; the userspace relay reads them and takes in what grew since. */
	__u64 packets;
	__u64 bytes;
	__u64 rtcp_packets;
	__u64 last_ns;
	struct rtp_state stats;
};

/* The same for IPv6 (addresses of 16 bytes). */
struct fwd6_key {
	__u8 local_ip[16];
	__u8 src_ip[16];
	__be16 local_port;
	__be16 src_port;
};

struct fwd6_route {
	__u8 src_ip[16];
	__u8 dst_ip[16];
	__be16 src_port;
	__be16 dst_port;
	__u32 ifindex;
};

struct fwd6_value {
	struct fwd6_route rtp;
	struct fwd6_route rtcp;
	__u64 epoch_ns;
	__u32 clock_rate;
	__u32 rtcp_socket;
	__u64 packets;
	__u64 bytes;
	__u64 rtcp_packets;
	__u64 last_ns;
	struct rtp_state stats;
};

_Static_assert(sizeof(struct fwd_key) == 12, "fwd_key layout");
_Static_assert(sizeof(struct fwd_route) == 16, "fwd_route layout");
_Static_assert(sizeof(struct rtp_state) == 40, "rtp_state layout");
_Static_assert(sizeof(struct fwd_value) == 120, "fwd_value layout");

_Static_assert(sizeof(struct fwd6_key) == 36, "fwd6_key layout");
_Static_assert(sizeof(struct fwd6_route) == 40, "fwd6_route layout");
_Static_assert(sizeof(struct fwd6_value) == 168, "fwd6_value layout");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* set by the loader from max_calls */
	__type(key, struct fwd_key);
	__type(value, struct fwd_value);
} SLUICE_FWD SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* set by the loader from max_calls */
	__type(key, struct fwd6_key);
	__type(value, struct fwd6_value);
} SLUICE_FWD6 SEC(".maps");

#define MAX_DROPOUT 3000
#define MAX_MISORDER 100
#define LOOPBACK_IFINDEX 1

#define IP_OFF ETH_HLEN
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define IP_SRC_OFF (IP_OFF + offsetof(struct iphdr, saddr))
#define IP_DST_OFF (IP_OFF + offsetof(struct iphdr, daddr))
#define UDP_OFF (IP_OFF + sizeof(struct iphdr))
#define UDP_SRC_OFF (UDP_OFF + offsetof(struct udphdr, source))
#define UDP_DST_OFF (UDP_OFF + offsetof(struct udphdr, dest))
#define UDP_CSUM_OFF (UDP_OFF + offsetof(struct udphdr, check))
#define IP6_SRC_OFF (IP_OFF + offsetof(struct ipv6hdr, saddr))
#define IP6_DST_OFF (IP_OFF + offsetof(struct ipv6hdr, daddr))
#define UDP6_OFF (IP_OFF + sizeof(struct ipv6hdr))
#define UDP6_SRC_OFF (UDP6_OFF + offsetof(struct udphdr, source))
#define UDP6_DST_OFF (UDP6_OFF + offsetof(struct udphdr, dest))
#define UDP6_CSUM_OFF (UDP6_OFF + offsetof(struct udphdr, check))

static __always_inline __u64 lost_current(const struct rtp_state *s)
{
	if (!s->started)
		return 0;
	__u64 extended = ((__u64)s->cycles << 16) | s->max_seq;
	__u64 expected = extended >= s->base_seq ? extended - s->base_seq : 0;
	expected += 1;
	return expected > s->received ? expected - s->received : 0;
}

static __always_inline void on_rtp(struct rtp_state *s, __u16 seq, __u32 ts, __u32 ssrc,
				   __u32 arrival)
{
	if (!s->started || ssrc != s->ssrc) {
		s->lost_before += lost_current(s);
		s->started = 1;
		s->ssrc = ssrc;
		s->base_seq = seq;
		s->max_seq = seq;
		s->cycles = 0;
		s->received = 1;
		s->transit = arrival - ts;
		return;
	}
	__u16 delta = (__u16)(seq - s->max_seq);
	if (delta < MAX_DROPOUT) {
		if (seq < s->max_seq)
			s->cycles += 1;
		s->max_seq = seq;
	} else if (delta <= (__u16)(0xffff - MAX_MISORDER)) {
		s->lost_before += lost_current(s);
		s->base_seq = seq;
		s->max_seq = seq;
		s->cycles = 0;
		s->received = 0;
	}
	s->received += 1;
	__u32 transit = arrival - ts;
	__u32 diff = transit - s->transit;
	__u32 d = (__s32)diff < 0 ? (__u32)0 - diff : diff;
	s->transit = transit;
	__u32 j = s->jitter_q4;
	j = j + d - ((j + 8) >> 4);
	s->jitter_q4 = j > 0x7fffffff ? 0x7fffffff : j;
}

/* What an RTP/RTCP packet says of itself, read before the packet is rewritten. */
struct rtp_head {
	__u32 len; /* UDP payload */
	__u16 seq;
	__u32 ts;
	__u32 ssrc;
	int rtcp;
};

/* RTP or RTCP version 2 with its fixed header in the linear part, else 0 (userspace). */
static __always_inline int read_rtp(__u8 *rtp, void *end, __u16 udp_len, __u32 rtcp_socket,
				    struct rtp_head *h)
{
	if ((void *)(rtp + 12) > end)
		return 0;
	__u32 len = bpf_ntohs(udp_len);
	if (len < sizeof(struct udphdr) + 12 || (rtp[0] >> 6) != 2)
		return 0;
	h->len = len - sizeof(struct udphdr);
	h->rtcp = rtcp_socket || (rtp[1] >= 192 && rtp[1] <= 223);
	h->seq = ((__u16)rtp[2] << 8) | rtp[3];
	h->ts = ((__u32)rtp[4] << 24) | ((__u32)rtp[5] << 16) | ((__u32)rtp[6] << 8) | rtp[7];
	h->ssrc = ((__u32)rtp[8] << 24) | ((__u32)rtp[9] << 16) | ((__u32)rtp[10] << 8) | rtp[11];
	return 1;
}

/* Counted as the userspace relay counts what it receives. Two CPUs may update one entry at
 * once only if one flow's packets arrive on two receive queues: the counters are atomic, the
 * RFC 3550 state is not (at worst one packet's statistics are off). */
static __always_inline void count(const struct rtp_head *h, __u64 *packets, __u64 *bytes,
				  __u64 *rtcp_packets, __u64 *last_ns, __u64 epoch_ns,
				  __u32 clock_rate, struct rtp_state *stats)
{
	__u64 now = bpf_ktime_get_ns();
	*last_ns = now;
	if (h->rtcp) {
		__sync_fetch_and_add(rtcp_packets, 1);
		return;
	}
	__sync_fetch_and_add(packets, 1);
	__sync_fetch_and_add(bytes, h->len);
	__u64 micros = now > epoch_ns ? (now - epoch_ns) / 1000 : 0;
	__u32 arrival = (__u32)((micros * clock_rate) / 1000000);
	on_rtp(stats, h->seq, h->ts, h->ssrc, arrival);
}

/* Where the rewritten packet goes: back up the stack between two peers of this host (both on
 * the loopback device), else out of the device that holds Sluice's address on the far side;
 * the kernel routes it and fills in the link-layer addresses (no forwarding needs to be
 * enabled on the host). */
static __always_inline int send_on(struct __sk_buff *skb, __u32 out_ifindex)
{
	if (out_ifindex == LOOPBACK_IFINDEX && skb->ingress_ifindex == LOOPBACK_IFINDEX)
		return TC_ACT_OK;
	return bpf_redirect_neigh(out_ifindex, NULL, 0, 0);
}

static __always_inline int forward4(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *rtp = data + UDP_OFF + sizeof(struct udphdr);

	if ((void *)(rtp + 12) > end)
		return TC_ACT_UNSPEC;
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
		return TC_ACT_UNSPEC;
	struct fwd_key key = {
		.local_ip = ip->daddr,
		.src_ip = ip->saddr,
		.local_port = udp->dest,
		.src_port = udp->source,
	};
	struct fwd_value *v = bpf_map_lookup_elem(&SLUICE_FWD, &key);
	if (!v)
		return TC_ACT_UNSPEC;
	struct rtp_head h = {};
	if (!read_rtp(rtp, end, udp->len, v->rtcp_socket, &h))
		return TC_ACT_UNSPEC;
	struct fwd_route *route = h.rtcp ? &v->rtcp : &v->rtp;
	if (!route->ifindex)
		return TC_ACT_UNSPEC;
	__be32 new_src = route->src_ip, new_dst = route->dst_ip;
	__be16 new_sport = route->src_port, new_dport = route->dst_port;
	__be32 old_src = ip->saddr, old_dst = ip->daddr;
	__be16 old_sport = udp->source, old_dport = udp->dest;

	/* The helpers below may move the packet: no pointer into it is used after the first.
	 * One that fails (the packet cannot be made writable) leaves it half rewritten, which
	 * cannot go on: it is dropped, as the network might, and not counted. */
	if (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_src, new_src,
				BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | sizeof(new_src)) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_dst, new_dst,
				BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | sizeof(new_dst)) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_sport, new_sport,
				BPF_F_MARK_MANGLED_0 | sizeof(new_sport)) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_dport, new_dport,
				BPF_F_MARK_MANGLED_0 | sizeof(new_dport)) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_src, new_src, sizeof(new_src)) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_dst, new_dst, sizeof(new_dst)) ||
	    bpf_skb_store_bytes(skb, IP_SRC_OFF, &new_src, sizeof(new_src), 0) ||
	    bpf_skb_store_bytes(skb, IP_DST_OFF, &new_dst, sizeof(new_dst), 0) ||
	    bpf_skb_store_bytes(skb, UDP_SRC_OFF, &new_sport, sizeof(new_sport), 0) ||
	    bpf_skb_store_bytes(skb, UDP_DST_OFF, &new_dport, sizeof(new_dport), 0))
		return TC_ACT_SHOT;
	count(&h, &v->packets, &v->bytes, &v->rtcp_packets, &v->last_ns, v->epoch_ns,
	      v->clock_rate, &v->stats);
	return send_on(skb, route->ifindex);
}

/* IPv6: no header checksum; the UDP checksum is mandatory (a packet without one goes to
 * userspace), and the addresses enter it through the pseudo-header as one difference each. */
static __always_inline int forward6(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP6_OFF;
	__u8 *rtp = data + UDP6_OFF + sizeof(struct udphdr);

	if ((void *)(rtp + 12) > end)
		return TC_ACT_UNSPEC;
	if (ip->nexthdr != IPPROTO_UDP || udp->check == 0)
		return TC_ACT_UNSPEC;
	struct fwd6_key key = {
		.local_port = udp->dest,
		.src_port = udp->source,
	};
	__builtin_memcpy(key.local_ip, &ip->daddr, 16);
	__builtin_memcpy(key.src_ip, &ip->saddr, 16);
	struct fwd6_value *v = bpf_map_lookup_elem(&SLUICE_FWD6, &key);
	if (!v)
		return TC_ACT_UNSPEC;
	struct rtp_head h = {};
	if (!read_rtp(rtp, end, udp->len, v->rtcp_socket, &h))
		return TC_ACT_UNSPEC;
	struct fwd6_route *route = h.rtcp ? &v->rtcp : &v->rtp;
	if (!route->ifindex)
		return TC_ACT_UNSPEC;
	__u8 old_src[16], old_dst[16], new_src[16], new_dst[16];
	__builtin_memcpy(old_src, &ip->saddr, 16);
	__builtin_memcpy(old_dst, &ip->daddr, 16);
	__builtin_memcpy(new_src, route->src_ip, 16);
	__builtin_memcpy(new_dst, route->dst_ip, 16);
	__be16 new_sport = route->src_port, new_dport = route->dst_port;
	__be16 old_sport = udp->source, old_dport = udp->dest;
	__s64 ds = bpf_csum_diff((__be32 *)old_src, 16, (__be32 *)new_src, 16, 0);
	__s64 dd = bpf_csum_diff((__be32 *)old_dst, 16, (__be32 *)new_dst, 16, 0);
	if (ds < 0 || dd < 0)
		return TC_ACT_UNSPEC;

	/* As for IPv4: no packet pointer after the first helper; a failure drops the packet. */
	if (bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, 0, ds, BPF_F_PSEUDO_HDR) ||
	    bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, 0, dd, BPF_F_PSEUDO_HDR) ||
	    bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, old_sport, new_sport, sizeof(new_sport)) ||
	    bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, old_dport, new_dport, sizeof(new_dport)) ||
	    bpf_skb_store_bytes(skb, IP6_SRC_OFF, new_src, 16, 0) ||
	    bpf_skb_store_bytes(skb, IP6_DST_OFF, new_dst, 16, 0) ||
	    bpf_skb_store_bytes(skb, UDP6_SRC_OFF, &new_sport, sizeof(new_sport), 0) ||
	    bpf_skb_store_bytes(skb, UDP6_DST_OFF, &new_dport, sizeof(new_dport), 0))
		return TC_ACT_SHOT;
	count(&h, &v->packets, &v->bytes, &v->rtcp_packets, &v->last_ns, v->epoch_ns,
	      v->clock_rate, &v->stats);
	return send_on(skb, route->ifindex);
}

SEC("classifier")
int media_forward(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end || skb->gso_segs > 1)
		return TC_ACT_UNSPEC;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return forward4(skb);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return forward6(skb);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
