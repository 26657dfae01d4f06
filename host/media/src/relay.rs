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
use crate::stats::{bump, Counters, RtpRaw, RtpStats};
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

/// A direction the kernel fast path may relay (see [`RelayStream::offload`]): what arrives at
/// one of the stream's sockets from `src`, and where each kind of packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    pub src: SocketAddr,
    /// RTP: the socket it leaves from and where it goes; `None` leaves it to the relay.
    pub rtp: Option<(Socket, SocketAddr)>,
    pub rtcp: Option<(Socket, SocketAddr)>,
}

/// What the kernel relayed of an offloaded direction since it was last asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    pub packets: u64,
    pub bytes: u64,
    pub rtcp_packets: u64,
    /// When it relayed the last one.
    pub last: Option<Instant>,
    /// The RTP statistics of the end as the kernel has carried them on (RTP sockets only).
    pub stats: Option<RtpRaw>,
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
pub const RELATCH_AFTER: Duration = Duration::from_secs(2);

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
    /// RTP packets of an offloaded direction that still reached the relay since the kernel
    /// took it (queued before it did): received, added to every state the kernel hands back
    /// (which starts from the relay's state at that moment and never sees them).
    stragglers: u64,
    carry: Carry,
}

impl EndState {
    fn new(peer: IpAddr) -> EndState {
        EndState {
            signalled: None,
            peer,
            learned: [None, None],
            stats: RtpStats::default(),
            stragglers: 0,
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
    /// The sockets (by [`Socket::index`]) whose RTP the kernel relays now.
    offloaded: [bool; 4],
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
            offloaded: [false; 4],
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
        self.count(now, at, kind, plain);
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

    /// What the kernel fast path may relay of the packets arriving at `at`, as things stand:
    /// plain RTP on both ends, a sender admitted without learning anything new (latched, or the
    /// signalled address in strict mode), and for each kind (RTP, RTCP on a muxed port, RTCP)
    /// the destination [`RelayStream::on_packet`] would choose. `None` when nothing may be; a
    /// change of the answer (new SDP, a latch, hold) means the kernel's entry must change.
    pub fn offload(&self, at: Socket) -> Option<Offload> {
        let from = self.ends.get(at.end.index())?;
        let to = self.ends.get(at.end.other().index())?;
        if !matches!(from.carry, Carry::Plain) || !matches!(to.carry, Carry::Plain) {
            return None;
        }
        let learned = |kind: Component| {
            from.learned
                .get(slot(kind))
                .copied()
                .flatten()
                .map(|l| l.addr)
        };
        let src = match self.latching {
            Latching::Symmetric => learned(at.component)?,
            Latching::Strict => from.signalled_addr(at.component)?,
        };
        let admitted = |kind: Component| match self.latching {
            Latching::Symmetric => learned(kind) == Some(src),
            Latching::Strict => {
                from.signalled_addr(kind) == Some(src)
                    || (kind == Component::Rtcp && from.signalled.is_some_and(|r| r.rtp == src))
            }
        };
        let route = |kind: Component| {
            admitted(kind)
                .then(|| self.destination(at.end.other(), kind).ok())
                .flatten()
        };
        let (rtp, rtcp) = match at.component {
            Component::Rtp => (route(Component::Rtp), route(Component::Rtcp)),
            Component::Rtcp => (None, route(Component::Rtcp)),
        };
        (rtp.is_some() || rtcp.is_some()).then_some(Offload { src, rtp, rtcp })
    }

    /// The kernel relays the RTP arriving at `at` from now on (`rtp`: the plan has an RTP
    /// route), or none of it. Either way the end's statistics are whole here at this moment
    /// (handed over to a new entry, or taken back from the last one with the stragglers), so
    /// the stragglers start again from zero.
    pub fn set_offloaded(&mut self, at: Socket, rtp: bool) {
        if let Some(o) = self.offloaded.get_mut(at.index()) {
            *o = rtp;
        }
        if at.component == Component::Rtp {
            if let Some(end) = self.ends.get_mut(at.end.index()) {
                end.stragglers = 0;
            }
        }
    }

    /// The RTP statistics of packets from `end` so far, to hand to the kernel.
    pub fn rtp_state(&self, end: End) -> RtpRaw {
        self.ends
            .get(end.index())
            .map(|e| RtpRaw::from(&e.stats))
            .unwrap_or_default()
    }

    /// Where arrival times for jitter count from, and the clock they count in.
    pub fn jitter_clock(&self) -> (Instant, u32) {
        (self.epoch, self.clock_rate)
    }

    /// Take in what the kernel relayed of the direction arriving at `at` from `src`: the
    /// counters, the statistics it carried on, and when it was last heard from (for the
    /// timeout and the latch).
    pub fn absorb(&mut self, at: Socket, src: SocketAddr, r: &Relayed) {
        if let Some(c) = self.counters.ends.get(at.end.index()) {
            bump(&c.packets, r.packets);
            bump(&c.bytes, r.bytes);
            bump(&c.rtcp_packets, r.rtcp_packets);
        }
        if let Some(last) = r.last.filter(|_| r.packets > 0 || r.rtcp_packets > 0) {
            self.last_packet = self.last_packet.max(last);
            if let Some(end) = self.ends.get_mut(at.end.index()) {
                for (kind, n) in [
                    (Component::Rtp, r.packets),
                    (Component::Rtcp, r.rtcp_packets),
                ] {
                    if let Some(Some(l)) = end.learned.get_mut(slot(kind)) {
                        if n > 0 && l.addr == src {
                            l.last = l.last.max(last);
                        }
                    }
                }
            }
        }
        let Some(raw) = r.stats else {
            return;
        };
        let Some(end) = self.ends.get_mut(at.end.index()) else {
            return;
        };
        end.stats = RtpStats::from(raw);
        end.stats.add_received(end.stragglers);
        self.publish_stats(at.end);
    }

    /// Loss and jitter of `from`'s packets, to the counters.
    fn publish_stats(&self, from: End) {
        let (Some(c), Some(end)) = (
            self.counters.ends.get(from.index()),
            self.ends.get(from.index()),
        ) else {
            return;
        };
        c.lost.store(end.stats.lost(), Ordering::Relaxed);
        let jitter_us = u64::from(end.stats.jitter_units())
            .saturating_mul(1_000_000)
            .checked_div(u64::from(self.clock_rate))
            .unwrap_or(0);
        c.jitter_us.store(jitter_us, Ordering::Relaxed);
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

    fn count(&mut self, now: Instant, at: Socket, kind: Component, packet: &[u8]) {
        let from = at.end;
        let Some(c) = self.counters.ends.get(from.index()) else {
            return;
        };
        if kind == Component::Rtcp {
            bump(&c.rtcp_packets, 1);
            return;
        }
        bump(&c.packets, 1);
        bump(&c.bytes, packet.len() as u64);
        if self.offloaded.get(at.index()).copied().unwrap_or(false) {
            // The kernel carries this end's statistics on; this one's receipt is added to
            // what it hands back.
            if let Some(end) = self.ends.get_mut(from.index()) {
                end.stragglers = end.stragglers.saturating_add(1);
            }
            return;
        }
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
        self.publish_stats(from);
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
