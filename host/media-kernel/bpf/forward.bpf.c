// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
//
// Sluice's kernel fast path for media: a tc ingress program that relays the packets of streams
// the userspace relay has settled (both ends plain RTP, the sender latched, the destination
// known) without waking the relay. One map entry per direction and socket, keyed on where the
// packet arrives (Sluice's address and port) and who sent it (the latched address); the entry
// says where RTP and RTCP go (from which of Sluice's addresses and ports, to which address) and
// carries the counters and RFC 3550 statistics the userspace relay keeps, handed over in both
// directions.
//
// Anything the program does not recognise goes on unchanged to the socket (TC_ACT_UNSPEC: the
// next program, then the stack), where the userspace relay decides as it always does: other
// senders (strangers, a NAT that rebinds), anything not RTP/RTCP version 2, IP options and
// fragments, packets whose headers are not in the linear part, IPv6.
//
// The layouts below are mirrored in src/lib.rs (sizes checked on both sides).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
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

_Static_assert(sizeof(struct fwd_key) == 12, "fwd_key layout");
_Static_assert(sizeof(struct fwd_route) == 16, "fwd_route layout");
_Static_assert(sizeof(struct rtp_state) == 40, "rtp_state layout");
_Static_assert(sizeof(struct fwd_value) == 120, "fwd_value layout");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* set by the loader from max_calls */
	__type(key, struct fwd_key);
	__type(value, struct fwd_value);
} SLUICE_FWD SEC(".maps");

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

SEC("classifier")
int media_forward(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *rtp = data + UDP_OFF + sizeof(struct udphdr);

	/* The fixed RTP header must be in the linear part; shorter packets go to userspace. */
	if ((void *)(rtp + 12) > end)
		return TC_ACT_UNSPEC;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return TC_ACT_UNSPEC;
	if (skb->gso_segs > 1)
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

	__u32 len = bpf_ntohs(udp->len);
	if (len < sizeof(struct udphdr) + 12 || (rtp[0] >> 6) != 2)
		return TC_ACT_UNSPEC;
	len -= sizeof(struct udphdr);
	int rtcp = v->rtcp_socket || (rtp[1] >= 192 && rtp[1] <= 223);
	struct fwd_route *route = rtcp ? &v->rtcp : &v->rtp;
	if (!route->ifindex)
		return TC_ACT_UNSPEC;
	__be32 new_src = route->src_ip, new_dst = route->dst_ip;
	__be16 new_sport = route->src_port, new_dport = route->dst_port;

	__u32 out_ifindex = route->ifindex;
	/* Between two peers on this host: back into the stack, which delivers it locally. */
	int local = out_ifindex == LOOPBACK_IFINDEX && skb->ingress_ifindex == LOOPBACK_IFINDEX;

	__u16 seq = ((__u16)rtp[2] << 8) | rtp[3];
	__u32 ts = ((__u32)rtp[4] << 24) | ((__u32)rtp[5] << 16) | ((__u32)rtp[6] << 8) | rtp[7];
	__u32 ssrc = ((__u32)rtp[8] << 24) | ((__u32)rtp[9] << 16) | ((__u32)rtp[10] << 8) | rtp[11];
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

	/* Counted as the userspace relay counts what it receives. Two CPUs may update one entry
	 * at once only if one flow's packets arrive on two receive queues: the counters are
	 * atomic, the RFC 3550 state is not (at worst one packet's statistics are off). */
	__u64 now = bpf_ktime_get_ns();
	v->last_ns = now;
	if (rtcp) {
		__sync_fetch_and_add(&v->rtcp_packets, 1);
	} else {
		__sync_fetch_and_add(&v->packets, 1);
		__sync_fetch_and_add(&v->bytes, len);
		__u64 micros = now > v->epoch_ns ? (now - v->epoch_ns) / 1000 : 0;
		__u32 arrival = (__u32)((micros * v->clock_rate) / 1000000);
		on_rtp(&v->stats, seq, ts, ssrc, arrival);
	}

	if (local)
		return TC_ACT_OK;
	/* Out of the device that holds Sluice's address on the far side; the kernel routes and
	 * fills in the link-layer addresses (no forwarding needs to be enabled on the host). */
	return bpf_redirect_neigh(out_ifindex, NULL, 0, 0);
}

char LICENSE[] SEC("license") = "GPL";
