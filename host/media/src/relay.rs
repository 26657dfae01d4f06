//! What happens to one packet that reaches one of a stream's four sockets (RTP and RTCP facing
//! each end): [`RelayStream::on_packet`] runs it through named steps, in the manner of
//! rtpengine's `stream_packet`, and returns a [`Verdict`]; the worker that owns the sockets
//! sends it or drops it. No allocation, no I/O, no clock of its own.
//!
//! 1. **classify**: RTP or RTCP (RFC 5761 §4 tells them apart on a muxed port), anything else
//!    dropped;
//! 2. **admit**: may this source speak for this end? The signalled address (from the end's
//!    SDP) always may. With [`Latching::Symmetric`] the first packet from the end's IP address
//!    (the SDP's, or the SIP peer's) *latches*: its source becomes the address the end is sent
//!    to, since behind NAT that is where the end really is. A stranger (any other IP) is never
//!    learned from. With [`Latching::Strict`] only the signalled address is admitted;
//! 3. **destination**: the other end's latched address, else its signalled one; nothing while
//!    it is on hold (`c=0.0.0.0`, declined) or unknown; RTCP goes to the RTP port when the other
//!    end muxes;
//! 4. **count**: packets, bytes, RFC 3550 loss and jitter of what each end sent.
//!
//! An end that speaks SRTP has its packets checked and decrypted before step 2 (a forged or
//! replayed packet is dropped and counted, and never latches), and what goes to it is
//! encrypted after step 3; the transformed packet is then [`RelayStream::outgoing`]. Until
//! SRTP is agreed with an end, nothing is relayed from or to it.

use crate::sdes::EndCrypto;
use crate::srtp::EndSrtp;
use crate::stats::{bump, Counters, RtpStats};
use crate::{End, Remote};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who may send on behalf of an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latching {
    /// The address the end really sends from wins, learned from the end's own IP addresses.
    #[default]
    Symmetric,
    /// Only the address the end's SDP names.
    Strict,
}

/// RTP or RTCP: which of an end's two sockets, and what a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Rtp,
    Rtcp,
}

/// One of a stream's four sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    /// The end the socket faces.
    pub end: End,
    pub component: Component,
}

impl Socket {
    /// 0..4, for tables of sockets: A RTP, A RTCP, B RTP, B RTCP.
    pub fn index(self) -> usize {
        match (self.end, self.component) {
            (End::A, Component::Rtp) => 0,
            (End::A, Component::Rtcp) => 1,
            (End::B, Component::Rtp) => 2,
            (End::B, Component::Rtcp) => 3,
        }
    }

    pub fn from_index(i: usize) -> Option<Socket> {
        let (end, component) = match i {
            0 => (End::A, Component::Rtp),
            1 => (End::A, Component::Rtcp),
            2 => (End::B, Component::Rtp),
            3 => (End::B, Component::Rtcp),
            _ => return None,
        };
        Some(Socket { end, component })
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it from `via` to `to`.
    Forward {
        via: Socket,
        to: SocketAddr,
    },
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not RTP or RTCP (too short, not version 2).
    NotRtp,
    /// From an address that may not speak for the end.
    Stranger,
    /// The other end is on hold or declined the stream.
    OnHold,
    /// The other end has no address yet (no SDP, no packet).
    NoDestination,
    /// An SRTP packet that failed authentication (a wrong tag, a replay, not SRTP at all).
    Authentication,
    /// SRTP is not agreed yet with the end it comes from or goes to.
    NoKeys,
}

/// How an end's packets are carried, as the relay holds it.
#[derive(Debug)]
enum Carry {
    Plain,
    Waiting,
    Srtp(Box<EndSrtp>),
}

impl Carry {
    /// Move to what the signalling agreed; contexts whose key is unchanged are kept.
    fn set(&mut self, to: EndCrypto) {
        *self = match (std::mem::replace(self, Carry::Waiting), to) {
            (_, EndCrypto::Plain) => Carry::Plain,
            (_, EndCrypto::Waiting) => Carry::Waiting,
            (Carry::Srtp(mut s), EndCrypto::Srtp(keys)) => {
                if s.rekey(keys) {
                    Carry::Srtp(s)
                } else {
                    Carry::Waiting
                }
            }
            (_, EndCrypto::Srtp(keys)) => match EndSrtp::new(keys) {
                Some(s) => Carry::Srtp(Box::new(s)),
                None => Carry::Waiting,
            },
        };
    }
}

/// After this much silence from a latched address, another port of the end's IP may take over
/// (a NAT that rebinds mid-call).
const RELATCH_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
struct Latched {
    addr: SocketAddr,
    last: Instant,
}

#[derive(Debug)]
struct EndState {
    /// Where the end's SDP says it receives.
    signalled: Option<Remote>,
    /// The end's SIP peer: its packets may latch before or beside the SDP's address.
    peer: IpAddr,
    learned: [Option<Latched>; 2],
    stats: RtpStats,
    carry: Carry,
}

impl EndState {
    fn new(peer: IpAddr) -> EndState {
        EndState {
            signalled: None,
            peer,
            learned: [None, None],
            stats: RtpStats::default(),
            carry: Carry::Plain,
        }
    }

    fn signalled_addr(&self, c: Component) -> Option<SocketAddr> {
        self.signalled.map(|r| match c {
            Component::Rtp => r.rtp,
            Component::Rtcp => r.rtcp,
        })
    }

    fn may_latch(&self, ip: IpAddr) -> bool {
        ip == self.peer || self.signalled.is_some_and(|r| r.rtp.ip() == ip)
    }

    /// Whether the other end sends RTCP on its RTP port (RFC 5761).
    fn muxed(&self) -> bool {
        self.signalled.is_some_and(|r| r.rtcp == r.rtp)
    }
}

fn slot(c: Component) -> usize {
    match c {
        Component::Rtp => 0,
        Component::Rtcp => 1,
    }
}

/// The relay state of one stream.
#[derive(Debug)]
pub struct RelayStream {
    ends: [EndState; 2],
    latching: Latching,
    /// Silence from both ends for this long ends the call; `None` until the call is answered.
    timeout: Option<Duration>,
    last_packet: Instant,
    /// Where RTP timestamps are measured from, for jitter.
    epoch: Instant,
    clock_rate: u32,
    counters: Arc<Counters>,
    /// A decrypted packet, and the packet to send when it is not the one received.
    scratch: Vec<u8>,
    out: Vec<u8>,
    transformed: bool,
}

impl RelayStream {
    pub fn new(now: Instant, peers: [IpAddr; 2], counters: Arc<Counters>) -> RelayStream {
        RelayStream {
            ends: [EndState::new(peers[0]), EndState::new(peers[1])],
            latching: Latching::Symmetric,
            timeout: None,
            last_packet: now,
            epoch: now,
            clock_rate: 8000,
            counters,
            scratch: Vec::new(),
            out: Vec::new(),
            transformed: false,
        }
    }

    /// New SDP: where each end receives now. An end whose signalled address changed (a
    /// re-INVITE moving the media) learns again.
    pub fn update(
        &mut self,
        now: Instant,
        remotes: [Option<Remote>; 2],
        latching: Latching,
        timeout: Option<Duration>,
        clock_rate: u32,
        crypto: [EndCrypto; 2],
    ) {
        for (end, c) in self.ends.iter_mut().zip(crypto) {
            end.carry.set(c);
        }
        for (end, remote) in self.ends.iter_mut().zip(remotes) {
            let moved = |a: Option<Remote>, b: Option<Remote>| {
                a.map(|r| (r.rtp, r.rtcp)) != b.map(|r| (r.rtp, r.rtcp))
            };
            if remote.is_some() && moved(end.signalled, remote) {
                end.learned = [None, None];
            }
            if remote.is_some() {
                end.signalled = remote;
            }
        }
        if self.timeout.is_none() && timeout.is_some() {
            // The clock starts when the timeout is armed, not when the stream opened.
            self.last_packet = now;
        }
        self.latching = latching;
        self.timeout = timeout;
        self.clock_rate = clock_rate.max(1);
    }

    /// Whether both ends have been silent longer than the timeout.
    pub fn timed_out(&self, now: Instant) -> bool {
        self.timeout
            .is_some_and(|t| now.saturating_duration_since(self.last_packet) >= t)
    }

    pub fn on_packet(
        &mut self,
        now: Instant,
        at: Socket,
        src: SocketAddr,
        packet: &[u8],
    ) -> Verdict {
        self.transformed = false;
        let Some(kind) = classify(at.component, packet) else {
            return self.dropped(at.end, DropReason::NotRtp);
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let verdict = self.relay(now, (at, src, kind), packet, &mut scratch);
        self.scratch = scratch;
        verdict
    }

    /// The packet to send after [`RelayStream::on_packet`] said to forward `received`: the
    /// packet itself, or what SRTP made of it.
    pub fn outgoing<'a>(&'a self, received: &'a [u8]) -> &'a [u8] {
        if self.transformed {
            &self.out
        } else {
            received
        }
    }

    fn relay(
        &mut self,
        now: Instant,
        (at, src, kind): (Socket, SocketAddr, Component),
        packet: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Verdict {
        let rtcp = kind == Component::Rtcp;
        if !self.may_speak(at.end, kind, src) {
            return self.dropped(at.end, DropReason::Stranger);
        }
        let from = self.ends.get_mut(at.end.index());
        let decrypted = matches!(from.as_deref().map(|e| &e.carry), Some(Carry::Srtp(_)));
        let plain: &[u8] = match from.map(|e| &mut e.carry) {
            Some(Carry::Plain) => packet,
            Some(Carry::Srtp(s)) => {
                if s.unprotect(rtcp, packet, scratch).is_err() {
                    if let Some(c) = self.counters.ends.get(at.end.index()) {
                        bump(&c.srtp_failures, 1);
                    }
                    return self.dropped(at.end, DropReason::Authentication);
                }
                scratch
            }
            Some(Carry::Waiting) | None => return self.dropped(at.end, DropReason::NoKeys),
        };
        if !self.admit(now, at.end, kind, src) {
            return self.dropped(at.end, DropReason::Stranger);
        }
        self.last_packet = now;
        self.count(now, at.end, kind, plain);
        let (via, to) = match self.destination(at.end.other(), kind) {
            Ok(d) => d,
            Err(reason) => return self.dropped(at.end, reason),
        };
        let into = self.ends.get_mut(at.end.other().index());
        match into.map(|e| &mut e.carry) {
            Some(Carry::Plain) if decrypted => {
                std::mem::swap(&mut self.out, scratch);
                self.transformed = true;
            }
            Some(Carry::Plain) => {}
            Some(Carry::Srtp(s)) => {
                if s.protect(rtcp, plain, &mut self.out).is_err() {
                    return self.dropped(at.end, DropReason::NoKeys);
                }
                self.transformed = true;
            }
            Some(Carry::Waiting) | None => return self.dropped(at.end, DropReason::NoKeys),
        }
        Verdict::Forward { via, to }
    }

    fn dropped(&self, from: End, reason: DropReason) -> Verdict {
        if let Some(c) = self.counters.ends.get(from.index()) {
            bump(&c.dropped, 1);
        }
        Verdict::Drop(reason)
    }

    /// Whether `src` could be admitted for the end at all, without learning anything: checked
    /// before an SRTP packet is decrypted, so that strangers cost no cipher work. (What the
    /// end's own address may make the SRTP library keep is bounded in [`EndSrtp`].)
    fn may_speak(&self, from: End, kind: Component, src: SocketAddr) -> bool {
        let Some(end) = self.ends.get(from.index()) else {
            return false;
        };
        if !matches!(end.carry, Carry::Srtp(_)) {
            return true;
        }
        let signalled =
            end.signalled_addr(kind) == Some(src) || end.signalled.is_some_and(|r| r.rtp == src);
        match self.latching {
            Latching::Strict => signalled,
            Latching::Symmetric => signalled || end.may_latch(src.ip()),
        }
    }

    fn admit(&mut self, now: Instant, from: End, kind: Component, src: SocketAddr) -> bool {
        let latching = self.latching;
        let Some(end) = self.ends.get_mut(from.index()) else {
            return false;
        };
        let signalled = end.signalled_addr(kind);
        let signalled_muxed = end.signalled.is_some_and(|r| r.rtp == src);
        if latching == Latching::Strict {
            return signalled == Some(src) || (kind == Component::Rtcp && signalled_muxed);
        }
        let may_latch = end.may_latch(src.ip());
        let Some(learned) = end.learned.get_mut(slot(kind)) else {
            return false;
        };
        match learned {
            Some(l) if l.addr == src => {
                l.last = now;
                true
            }
            Some(l) => {
                let stale = now.saturating_duration_since(l.last) >= RELATCH_AFTER;
                if may_latch && stale {
                    *l = Latched {
                        addr: src,
                        last: now,
                    };
                    true
                } else {
                    false
                }
            }
            None if may_latch => {
                *learned = Some(Latched {
                    addr: src,
                    last: now,
                });
                true
            }
            None => false,
        }
    }

    fn destination(&self, to: End, kind: Component) -> Result<(Socket, SocketAddr), DropReason> {
        let end = self.ends.get(to.index()).ok_or(DropReason::NoDestination)?;
        if end.signalled.is_some_and(|r| r.hold) {
            return Err(DropReason::OnHold);
        }
        // RTCP to an end that muxes goes to (and leaves from) the RTP port.
        let component = if kind == Component::Rtcp && end.muxed() {
            Component::Rtp
        } else {
            kind
        };
        let learned = end
            .learned
            .get(slot(component))
            .copied()
            .flatten()
            .map(|l| l.addr);
        let to_addr = learned
            .or_else(|| end.signalled_addr(component))
            .ok_or(DropReason::NoDestination)?;
        Ok((Socket { end: to, component }, to_addr))
    }

    fn count(&mut self, now: Instant, from: End, kind: Component, packet: &[u8]) {
        let Some(c) = self.counters.ends.get(from.index()) else {
            return;
        };
        if kind == Component::Rtcp {
            bump(&c.rtcp_packets, 1);
            return;
        }
        bump(&c.packets, 1);
        bump(&c.bytes, packet.len() as u64);
        let (Some(seq), Some(ts), Some(ssrc)) = (be16(packet, 2), be32(packet, 4), be32(packet, 8))
        else {
            return;
        };
        let rate = u64::from(self.clock_rate);
        let micros = u64::try_from(now.saturating_duration_since(self.epoch).as_micros())
            .unwrap_or(u64::MAX);
        // Arrival in RTP timestamp units; only differences matter, so wrapping (and keeping
        // the low 32 bits) is the intent.
        #[allow(clippy::cast_possible_truncation)]
        let arrival = (micros.wrapping_mul(rate) / 1_000_000) as u32;
        let Some(end) = self.ends.get_mut(from.index()) else {
            return;
        };
        end.stats.on_rtp(seq, ts, ssrc, arrival);
        c.lost.store(end.stats.lost(), Ordering::Relaxed);
        let jitter_us = u64::from(end.stats.jitter_units())
            .saturating_mul(1_000_000)
            .checked_div(rate)
            .unwrap_or(0);
        c.jitter_us.store(jitter_us, Ordering::Relaxed);
    }
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    let b = p.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(b.try_into().ok()?))
}

fn be32(p: &[u8], at: usize) -> Option<u32> {
    let b = p.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// RTP (at least the 12-byte fixed header) or RTCP (at least the 8-byte header of a sender or
/// receiver report), both version 2; on an RTP port, RTCP is told apart by its packet type
/// (RFC 5761 §4: 192 to 223 in the second byte).
fn classify(at: Component, packet: &[u8]) -> Option<Component> {
    let (&first, &second) = (packet.first()?, packet.get(1)?);
    if first >> 6 != 2 {
        return None;
    }
    let kind = match at {
        Component::Rtcp => Component::Rtcp,
        Component::Rtp if (192..=223).contains(&second) => Component::Rtcp,
        Component::Rtp => Component::Rtp,
    };
    let min = match kind {
        Component::Rtp => 12,
        Component::Rtcp => 8,
    };
    (packet.len() >= min).then_some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn nothing_is_sent_to_an_end_on_hold() {
        let (mut s, now, _) = stream(Latching::Symmetric);
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
}
