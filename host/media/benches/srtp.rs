//! What SRTP adds to the relay's work per packet, in process (no sockets): the relay decision
//! for a G.711 packet (172 bytes of RTP) between two plain ends, against the same with the far
//! end speaking SRTP, both ways (RTP in, SRTP out: encrypt and tag; SRTP in, RTP out: check the
//! tag and the replay window, decrypt), for each suite. The kernel's UDP receive and send,
//! which dominate the relay's CPU time per packet (`bench/media.py`), are the same in both.
//!
//! `cargo bench -p sluice-media --bench srtp`
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::unwrap_used
)]

use sluice_media::srtp::{EndSrtp, MasterKey, SrtpKeys};
use sluice_media::{
    Component, Counters, End, EndCrypto, Latching, RelayStream, Remote, Socket, Suite, Verdict,
};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

const PACKETS: u32 = 300_000;
const A: &str = "192.0.2.10:4000";
const B: &str = "198.51.100.20:6000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rtp(n: u32) -> Vec<u8> {
    let seq = n as u16;
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&n.wrapping_mul(160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ (n as u8)));
    p
}

fn stream(b: EndCrypto) -> RelayStream {
    let now = Instant::now();
    let mut s = RelayStream::new(
        now,
        [addr(A).ip(), addr(B).ip()],
        Arc::new(Counters::default()),
    );
    let remote = |a: &str| {
        Some(Remote {
            rtp: addr(a),
            rtcp: addr(a),
            hold: false,
        })
    };
    let crypto = [EndCrypto::Plain, b];
    s.update(
        now,
        [remote(A), remote(B)],
        Latching::Symmetric,
        None,
        8000,
        crypto,
    );
    s
}

const FROM_A: Socket = Socket {
    end: End::A,
    component: Component::Rtp,
};
const FROM_B: Socket = Socket {
    end: End::B,
    component: Component::Rtp,
};

/// Nanoseconds per packet through `on_packet` (and `outgoing`), packets made beforehand.
fn run(s: &mut RelayStream, at: Socket, src: &str, packets: &[Vec<u8>]) -> f64 {
    let src = addr(src);
    let now = Instant::now();
    let start = Instant::now();
    let mut forwarded = 0u32;
    for p in packets {
        if let Verdict::Forward { .. } = s.on_packet(now, at, src, p) {
            forwarded += 1;
            black_box(s.outgoing(p));
        }
    }
    let took = start.elapsed();
    assert_eq!(forwarded as usize, packets.len(), "every packet relayed");
    took.as_nanos() as f64 / packets.len() as f64
}

fn best_of(rounds: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..rounds).map(|_| f()).fold(f64::MAX, f64::min)
}

fn main() {
    let plain: Vec<Vec<u8>> = (0..PACKETS).map(rtp).collect();
    let base = best_of(5, || run(&mut stream(EndCrypto::Plain), FROM_A, A, &plain));
    println!("SRTP in the relay, {PACKETS} G.711 packets (172 bytes of RTP) per round, best of 5");
    println!("  plain RTP both ends:                      {base:7.0} ns per packet");
    for suite in Suite::ALL {
        let keys = SrtpKeys {
            theirs: MasterKey::generate(suite).unwrap(),
            ours: MasterKey::generate(suite).unwrap(),
        };
        let encrypt = best_of(5, || {
            run(&mut stream(EndCrypto::Srtp(keys)), FROM_A, A, &plain)
        });
        // The trunk's packets, protected by a peer holding the mirrored keys.
        let mut peer = EndSrtp::new(SrtpKeys {
            theirs: keys.ours,
            ours: keys.theirs,
        })
        .unwrap();
        let mut sealed = Vec::with_capacity(plain.len());
        for p in &plain {
            let mut out = Vec::new();
            peer.protect(false, p, &mut out).unwrap();
            sealed.push(out);
        }
        let decrypt = best_of(5, || {
            run(&mut stream(EndCrypto::Srtp(keys)), FROM_B, B, &sealed)
        });
        println!(
            "  {:<24} RTP in, SRTP out: {encrypt:7.0} ns (+{:.0}); SRTP in, RTP out: {decrypt:7.0} ns (+{:.0})",
            suite.name(),
            encrypt - base,
            decrypt - base
        );
    }
}
