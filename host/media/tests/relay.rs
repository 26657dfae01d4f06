//! The relay's packet decisions: latching, strict mode, strangers, RTCP, SRTP, counters.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]

use sluice_media::relay::*;
use sluice_media::*;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PLAIN: [EndCrypto; 2] = [EndCrypto::Plain, EndCrypto::Plain];

const A_IP: &str = "192.0.2.10";
const B_IP: &str = "198.51.100.20";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn remote(rtp: &str, rtcp: &str) -> Remote {
    Remote {
        rtp: addr(rtp),
        rtcp: addr(rtcp),
        hold: false,
    }
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

fn rtcp_rr() -> Vec<u8> {
    vec![0x80, 201, 0, 1, 0, 0, 0, 1]
}

const A_RTP: Socket = Socket {
    end: End::A,
    component: Component::Rtp,
};
const B_RTP: Socket = Socket {
    end: End::B,
    component: Component::Rtp,
};
const A_RTCP: Socket = Socket {
    end: End::A,
    component: Component::Rtcp,
};
const B_RTCP: Socket = Socket {
    end: End::B,
    component: Component::Rtcp,
};

/// A stream where A (192.0.2.10) receives on :4000 and B (198.51.100.20) on :6000.
fn stream(latching: Latching) -> (RelayStream, Instant, Arc<Counters>) {
    let now = Instant::now();
    let counters = Arc::new(Counters::default());
    let mut s = RelayStream::new(
        now,
        [A_IP.parse().unwrap(), B_IP.parse().unwrap()],
        counters.clone(),
    );
    s.update(
        now,
        [
            Some(remote("192.0.2.10:4000", "192.0.2.10:4001")),
            Some(remote("198.51.100.20:6000", "198.51.100.20:6001")),
        ],
        latching,
        Some(Duration::from_secs(60)),
        8000,
        PLAIN,
    );
    (s, now, counters)
}

/// The trunk's end (B) speaks SRTP; the peer's own view of the same keys.
fn srtp_stream() -> (RelayStream, Instant, Arc<Counters>, crate::srtp::EndSrtp) {
    use crate::srtp::{EndSrtp, MasterKey, SrtpKeys, Suite};
    let (mut s, now, c) = stream(Latching::Symmetric);
    let suite = Suite::AesCm128HmacSha1_80;
    let keys = SrtpKeys {
        theirs: MasterKey::generate(suite).unwrap(),
        ours: MasterKey::generate(suite).unwrap(),
    };
    let remotes = [
        Some(remote("192.0.2.10:4000", "192.0.2.10:4001")),
        Some(remote("198.51.100.20:6000", "198.51.100.20:6001")),
    ];
    let crypto = [EndCrypto::Plain, EndCrypto::Srtp(keys)];
    s.update(now, remotes, Latching::Symmetric, None, 8000, crypto);
    let peer = EndSrtp::new(SrtpKeys {
        theirs: keys.ours,
        ours: keys.theirs,
    })
    .unwrap();
    (s, now, c, peer)
}

#[test]
fn srtp_on_one_end_rtp_on_the_other_both_ways() {
    let (mut s, now, c, mut peer) = srtp_stream();
    let (mut sealed, mut opened) = (Vec::new(), Vec::new());
    // RTP from the PBX leaves encrypted for the trunk.
    for seq in 1..=5 {
        let p = rtp(seq);
        let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &p);
        assert!(matches!(v, Verdict::Forward { via: B_RTP, .. }), "{v:?}");
        let out = s.outgoing(&p).to_vec();
        assert_eq!(out.len(), p.len() + 10, "an 80-bit tag");
        assert_ne!(out[12..], p[12..], "the payload is encrypted");
        peer.unprotect(false, &out, &mut opened).unwrap();
        assert_eq!(opened, p);
    }
    // SRTP from the trunk arrives decrypted at the PBX, and counts as RTP.
    for seq in 100..105 {
        let p = rtp(seq);
        peer.protect(false, &p, &mut sealed).unwrap();
        let v = s.on_packet(now, B_RTP, addr("198.51.100.20:6000"), &sealed);
        assert!(matches!(v, Verdict::Forward { via: A_RTP, .. }), "{v:?}");
        assert_eq!(s.outgoing(&sealed), &p[..]);
    }
    assert_eq!(c.ends[1].packets.load(Ordering::Relaxed), 5);
    assert_eq!(
        c.ends[1].bytes.load(Ordering::Relaxed),
        5 * 172,
        "counted decrypted"
    );
    // SRTCP from the trunk is decrypted too, and RTCP to it encrypted.
    let rr = rtcp_rr();
    peer.protect(true, &rr, &mut sealed).unwrap();
    let v = s.on_packet(now, B_RTCP, addr("198.51.100.20:6001"), &sealed);
    assert!(matches!(v, Verdict::Forward { via: A_RTCP, .. }), "{v:?}");
    assert_eq!(s.outgoing(&sealed), &rr[..]);
    s.on_packet(now, A_RTCP, addr("192.0.2.10:4001"), &rr);
    peer.unprotect(true, s.outgoing(&rr), &mut opened).unwrap();
    assert_eq!(opened, rr);
}

#[test]
fn forged_and_replayed_srtp_is_dropped_counted_and_never_latches() {
    let (mut s, now, c, mut peer) = srtp_stream();
    let mut sealed = Vec::new();
    peer.protect(false, &rtp(7), &mut sealed).unwrap();
    let good = sealed.clone();
    let last = sealed.len() - 1;
    sealed[last] ^= 0x40;
    // From the trunk's own IP but another port: would latch if it were admitted.
    let v = s.on_packet(now, B_RTP, addr("198.51.100.20:7777"), &sealed);
    assert_eq!(v, Verdict::Drop(DropReason::Authentication));
    let v = s.on_packet(now, B_RTP, addr("198.51.100.20:6000"), &good);
    assert!(matches!(v, Verdict::Forward { .. }));
    let v = s.on_packet(now, B_RTP, addr("198.51.100.20:6000"), &good);
    assert_eq!(v, Verdict::Drop(DropReason::Authentication), "a replay");
    assert_eq!(c.ends[1].srtp_failures.load(Ordering::Relaxed), 2);
    // RTP from the PBX still goes to the address the trunk signalled.
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert_eq!(
        v,
        Verdict::Forward {
            via: B_RTP,
            to: addr("198.51.100.20:6000")
        }
    );
}

#[test]
fn nothing_crosses_before_srtp_is_agreed() {
    let (mut s, now, _) = stream(Latching::Symmetric);
    let remotes = [Some(remote("192.0.2.10:4000", "192.0.2.10:4001")), None];
    let crypto = [EndCrypto::Plain, EndCrypto::Waiting];
    s.update(now, remotes, Latching::Symmetric, None, 8000, crypto);
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert_eq!(v, Verdict::Drop(DropReason::NoKeys));
    let v = s.on_packet(now, B_RTP, addr("198.51.100.20:6000"), &rtp(1));
    assert_eq!(v, Verdict::Drop(DropReason::NoKeys));
}

#[test]
fn rtp_goes_to_the_other_ends_signalled_address() {
    let (mut s, now, c) = stream(Latching::Symmetric);
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert_eq!(
        v,
        Verdict::Forward {
            via: B_RTP,
            to: addr("198.51.100.20:6000")
        }
    );
    let v = s.on_packet(now, B_RTCP, addr("198.51.100.20:6001"), &rtcp_rr());
    assert_eq!(
        v,
        Verdict::Forward {
            via: A_RTCP,
            to: addr("192.0.2.10:4001")
        }
    );
    let snap = c.snapshot();
    assert_eq!((snap[0].packets, snap[0].bytes), (1, 172));
    assert_eq!(snap[1].rtcp_packets, 1);
}

#[test]
fn symmetric_latching_answers_where_the_end_really_sends_from() {
    let (mut s, now, _) = stream(Latching::Symmetric);
    // B is behind NAT: it signalled :6000 but its packets come from :31000.
    let v = s.on_packet(now, B_RTP, addr("198.51.100.20:31000"), &rtp(1));
    assert!(matches!(v, Verdict::Forward { .. }));
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert_eq!(
        v,
        Verdict::Forward {
            via: B_RTP,
            to: addr("198.51.100.20:31000")
        }
    );
}

#[test]
fn strangers_are_neither_relayed_nor_learned() {
    let (mut s, now, c) = stream(Latching::Symmetric);
    let v = s.on_packet(now, B_RTP, addr("203.0.113.66:6000"), &rtp(1));
    assert_eq!(v, Verdict::Drop(DropReason::Stranger));
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert_eq!(
        v,
        Verdict::Forward {
            via: B_RTP,
            to: addr("198.51.100.20:6000")
        },
        "the stranger was not learned"
    );
    assert_eq!(c.snapshot()[1].dropped, 1);
    assert_eq!(
        c.snapshot()[1].packets,
        0,
        "a stranger's packet is not counted as media"
    );
}

#[test]
fn a_latched_address_holds_until_it_falls_silent() {
    let (mut s, now, _) = stream(Latching::Symmetric);
    s.on_packet(now, B_RTP, addr("198.51.100.20:31000"), &rtp(1));
    let other_port = addr("198.51.100.20:31002");
    let v = s.on_packet(now, B_RTP, other_port, &rtp(2));
    assert_eq!(
        v,
        Verdict::Drop(DropReason::Stranger),
        "no hijack while the NAT binding speaks"
    );
    let later = now + RELATCH_AFTER;
    let v = s.on_packet(later, B_RTP, other_port, &rtp(3));
    assert!(
        matches!(v, Verdict::Forward { .. }),
        "a NAT rebinding takes over"
    );
    let v = s.on_packet(later, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert_eq!(
        v,
        Verdict::Forward {
            via: B_RTP,
            to: other_port
        }
    );
}

#[test]
fn strict_mode_admits_only_the_signalled_address() {
    let (mut s, now, _) = stream(Latching::Strict);
    let v = s.on_packet(now, B_RTP, addr("198.51.100.20:31000"), &rtp(1));
    assert_eq!(v, Verdict::Drop(DropReason::Stranger));
    let v = s.on_packet(now, B_RTP, addr("198.51.100.20:6000"), &rtp(2));
    assert_eq!(
        v,
        Verdict::Forward {
            via: A_RTP,
            to: addr("192.0.2.10:4000")
        }
    );
}

#[test]
fn early_media_from_the_sip_peer_latches_before_its_sdp() {
    let now = Instant::now();
    let peers = [A_IP.parse().unwrap(), B_IP.parse().unwrap()];
    let mut s = RelayStream::new(now, peers, Arc::new(Counters::default()));
    s.update(
        now,
        [Some(remote("192.0.2.10:4000", "192.0.2.10:4001")), None],
        Latching::Symmetric,
        None,
        8000,
        PLAIN,
    );
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert_eq!(v, Verdict::Drop(DropReason::NoDestination));
    let v = s.on_packet(now, B_RTP, addr("198.51.100.20:7000"), &rtp(1));
    assert!(matches!(v, Verdict::Forward { .. }));
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(2));
    assert_eq!(
        v,
        Verdict::Forward {
            via: B_RTP,
            to: addr("198.51.100.20:7000")
        }
    );
}

#[test]
fn rtcp_mux_is_demultiplexed_and_routed_to_the_rtp_port() {
    let (mut s, now, c) = stream(Latching::Symmetric);
    s.update(
        now,
        [Some(remote("192.0.2.10:4000", "192.0.2.10:4000")), None],
        Latching::Symmetric,
        None,
        8000,
        PLAIN,
    );
    // B does not mux: its RTCP arrives on Sluice's B RTCP socket and goes to A's RTP port.
    let v = s.on_packet(now, B_RTCP, addr("198.51.100.20:6001"), &rtcp_rr());
    assert_eq!(
        v,
        Verdict::Forward {
            via: A_RTP,
            to: addr("192.0.2.10:4000")
        }
    );
    // A muxes: RTCP on the RTP port is told apart and goes to B's RTCP port.
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtcp_rr());
    assert_eq!(
        v,
        Verdict::Forward {
            via: B_RTCP,
            to: addr("198.51.100.20:6001")
        }
    );
    assert_eq!(c.snapshot()[0].rtcp_packets, 1);
    assert_eq!(c.snapshot()[0].packets, 0);
}

/// B puts the stream on hold (its signalled address with the hold flag).
fn hold_b(s: &mut RelayStream, now: Instant) {
    let mut held = remote("198.51.100.20:6000", "198.51.100.20:6001");
    held.hold = true;
    s.update(
        now,
        [None, Some(held)],
        Latching::Symmetric,
        None,
        8000,
        PLAIN,
    );
}

#[test]
fn nothing_is_sent_to_an_end_on_hold() {
    let (mut s, now, _) = stream(Latching::Symmetric);
    hold_b(&mut s, now);
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert_eq!(v, Verdict::Drop(DropReason::OnHold));
}

#[test]
fn a_moved_end_learns_again() {
    let (mut s, now, _) = stream(Latching::Symmetric);
    s.on_packet(now, B_RTP, addr("198.51.100.20:31000"), &rtp(1));
    // A re-INVITE moves B to another host.
    s.update(
        now,
        [
            None,
            Some(remote("198.51.100.99:8000", "198.51.100.99:8001")),
        ],
        Latching::Symmetric,
        None,
        8000,
        PLAIN,
    );
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(2));
    assert_eq!(
        v,
        Verdict::Forward {
            via: B_RTP,
            to: addr("198.51.100.99:8000")
        }
    );
}

#[test]
fn garbage_is_dropped() {
    let (mut s, now, _) = stream(Latching::Symmetric);
    for p in [&[][..], &[0x80], &[0x00; 20], &[0x80, 0, 1, 2]] {
        let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), p);
        assert_eq!(v, Verdict::Drop(DropReason::NotRtp), "{p:?}");
    }
}

#[test]
fn dtmf_passes_as_rtp() {
    let (mut s, now, _) = stream(Latching::Symmetric);
    // RFC 4733 telephone-event, payload type 101 with the marker bit.
    let mut p = rtp(9);
    p[1] = 0x80 | 101;
    p.truncate(16);
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &p);
    assert!(matches!(v, Verdict::Forward { via: B_RTP, .. }));
}

#[test]
fn the_timeout_counts_from_the_last_packet_once_armed() {
    let now = Instant::now();
    let peers = [A_IP.parse().unwrap(), B_IP.parse().unwrap()];
    let mut s = RelayStream::new(now, peers, Arc::new(Counters::default()));
    let ten = Duration::from_secs(10);
    assert!(
        !s.timed_out(now + ten * 100),
        "not armed before the call is answered"
    );
    let t1 = now + Duration::from_secs(30);
    s.update(
        t1,
        [None, None],
        Latching::Symmetric,
        Some(ten),
        8000,
        PLAIN,
    );
    assert!(!s.timed_out(t1 + Duration::from_secs(9)));
    assert!(s.timed_out(t1 + ten));
    s.update(
        t1,
        [Some(remote("192.0.2.10:4000", "192.0.2.10:4001")), None],
        Latching::Symmetric,
        Some(ten),
        8000,
        PLAIN,
    );
    s.on_packet(
        t1 + Duration::from_secs(8),
        A_RTP,
        addr("192.0.2.10:4000"),
        &rtp(1),
    );
    assert!(!s.timed_out(t1 + Duration::from_secs(17)));
    assert!(s.timed_out(t1 + Duration::from_secs(18)));
}

#[test]
fn socket_indices_round_trip() {
    for i in 0..4 {
        assert_eq!(Socket::from_index(i).unwrap().index(), i);
    }
    assert_eq!(Socket::from_index(4), None);
}

// The kernel fast path: what the relay hands to it, and what it takes back.

#[test]
fn a_direction_is_offered_to_the_kernel_once_its_sender_is_latched() {
    let (mut s, now, _) = stream(Latching::Symmetric);
    assert_eq!(s.offload(A_RTP), None, "nothing learned yet");
    s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert_eq!(
        s.offload(A_RTP),
        Some(Offload {
            src: addr("192.0.2.10:4000"),
            rtp: Some((B_RTP, addr("198.51.100.20:6000"))),
            // No RTCP latched on the RTP port: it stays with the relay.
            rtcp: None,
        })
    );
    assert_eq!(s.offload(A_RTCP), None);
    assert_eq!(s.offload(B_RTP), None, "B has not sent yet");
    // B is behind NAT: once it latches, A's packets go where B really is.
    s.on_packet(now, B_RTP, addr("198.51.100.20:31000"), &rtp(1));
    assert_eq!(
        s.offload(A_RTP).unwrap().rtp,
        Some((B_RTP, addr("198.51.100.20:31000")))
    );
    assert_eq!(
        s.offload(B_RTP).unwrap().rtp,
        Some((A_RTP, addr("192.0.2.10:4000")))
    );
    s.on_packet(now, A_RTCP, addr("192.0.2.10:4001"), &rtcp_rr());
    assert_eq!(
        s.offload(A_RTCP),
        Some(Offload {
            src: addr("192.0.2.10:4001"),
            rtp: None,
            rtcp: Some((B_RTCP, addr("198.51.100.20:6001"))),
        })
    );
}

#[test]
fn strict_mode_offers_the_signalled_addresses_at_once() {
    let (s, _, _) = stream(Latching::Strict);
    let o = s.offload(A_RTP).unwrap();
    assert_eq!(o.src, addr("192.0.2.10:4000"));
    assert_eq!(o.rtp, Some((B_RTP, addr("198.51.100.20:6000"))));
    // RTCP from A's RTP address is admitted in strict mode (a muxing sender).
    assert_eq!(o.rtcp, Some((B_RTCP, addr("198.51.100.20:6001"))));
}

#[test]
fn hold_srtp_and_a_move_take_a_direction_back() {
    let (mut s, now, _) = stream(Latching::Symmetric);
    s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert!(s.offload(A_RTP).is_some());
    hold_b(&mut s, now);
    assert_eq!(s.offload(A_RTP), None, "nothing goes to an end on hold");
    s.update(
        now,
        [Some(remote("192.0.2.10:4100", "192.0.2.10:4101")), None],
        Latching::Symmetric,
        None,
        8000,
        PLAIN,
    );
    assert_eq!(s.offload(A_RTP), None, "A moved: it learns again first");

    let (mut s, now, _, _) = srtp_stream();
    s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(1));
    assert_eq!(s.offload(A_RTP), None, "SRTP stays with the relay");
}

#[test]
fn what_the_kernel_relayed_is_counted_and_keeps_the_stream_alive() {
    let (mut s, now, c) = stream(Latching::Symmetric);
    for seq in 1..=10 {
        s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(seq));
    }
    let handed = s.rtp_state(End::A);
    assert_eq!(handed.received, 10);
    s.set_offloaded(A_RTP, true);
    // A packet queued before the kernel took over still reaches the relay: relayed, counted,
    // and its receipt added to what the kernel hands back.
    let v = s.on_packet(now, A_RTP, addr("192.0.2.10:4000"), &rtp(11));
    assert!(matches!(v, Verdict::Forward { .. }));
    // The kernel relayed 12..=100 but for 50 (lost on the way), 70 s later.
    let later = now + Duration::from_secs(70);
    let mut stats = handed;
    stats.max_seq = 100;
    stats.received = 10 + 88;
    let relayed = Relayed {
        packets: 88,
        bytes: 88 * 172,
        rtcp_packets: 3,
        last: Some(later),
        stats: Some(stats),
    };
    assert!(
        s.timed_out(later),
        "60 s of silence as far as the relay saw"
    );
    s.absorb(A_RTP, addr("192.0.2.10:4000"), &relayed);
    assert!(!s.timed_out(later), "the kernel heard A at that moment");
    let snap = c.snapshot();
    assert_eq!(snap[0].packets, 10 + 1 + 88);
    assert_eq!(snap[0].bytes, (10 + 1 + 88) * 172);
    assert_eq!(snap[0].rtcp_packets, 3);
    assert_eq!(
        snap[0].lost, 1,
        "seq 50 only: the straggler counts as received"
    );
    // The latch is fresh: another port of A's address may not take over.
    let v = s.on_packet(later, A_RTP, addr("192.0.2.10:4999"), &rtp(101));
    assert_eq!(v, Verdict::Drop(DropReason::Stranger));
    // Half a second later the kernel hands its state back again (it never saw the straggler).
    stats.max_seq = 125;
    stats.received += 25;
    s.absorb(
        A_RTP,
        addr("192.0.2.10:4000"),
        &Relayed {
            packets: 25,
            bytes: 25 * 172,
            last: Some(later),
            stats: Some(stats),
            ..Relayed::default()
        },
    );
    assert_eq!(
        c.snapshot()[0].lost,
        1,
        "the straggler still counts as received"
    );
    // Taken back: the relay counts on from the whole state.
    s.set_offloaded(A_RTP, false);
    s.on_packet(later, A_RTP, addr("192.0.2.10:4000"), &rtp(126));
    assert_eq!(c.snapshot()[0].lost, 1);
    assert_eq!(c.snapshot()[0].packets, 10 + 1 + 88 + 25 + 1);
}
