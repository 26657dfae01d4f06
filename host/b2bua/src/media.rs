//! Where calls meet media anchoring: every SDP that crosses a call is rewritten for the leg it
//! leaves on (Sluice's address and ports, the trunk's codecs), before the plugins see the
//! message; the relay is told what to open, where each end receives and what to close; and
//! what the relay reports (silence, a port that cannot be bound) ends the call.
//!
//! The offer/answer state is [`sluice_media::CallMedia`]; SDP text is [`sluice_sdp`]; this file
//! only decides which SDP is which and what a failure means for the call. End `A` of every
//! stream faces the caller's leg, `B` the callee's.

use crate::call::{Direction, LegId};
use crate::config::{MediaConfig, MediaSideConfig, PeerMedia, Side, TrunkSrtp};
use bytes::Bytes;
use sluice_media::{
    CallMedia, End, EndSnapshot, MediaOp, MediaSide, PortPool, Refusal, Role, SdesRefusal,
    SrtpPolicy,
};
use sluice_sip::{HeaderName, Message};
use std::net::IpAddr;
use std::sync::Arc;
use tracing::debug;

/// Each side's media addresses and free ports.
#[derive(Debug)]
pub struct MediaSides {
    internal: MediaSide,
    external: MediaSide,
}

fn side(cfg: &MediaSideConfig) -> MediaSide {
    MediaSide {
        bind: cfg.bind,
        advertise: cfg.advertise,
        pool: PortPool::new(cfg.first_port, cfg.last_port),
    }
}

impl MediaSides {
    pub fn new(cfg: &MediaConfig) -> MediaSides {
        MediaSides {
            internal: side(&cfg.internal),
            external: side(&cfg.external),
        }
    }

    /// The sides a call's ends face: `[caller's, callee's]`.
    fn for_call(&mut self, direction: Direction) -> [&mut MediaSide; 2] {
        let MediaSides { internal, external } = self;
        match direction {
            Direction::Outbound => [internal, external],
            Direction::Inbound => [external, internal],
        }
    }

    /// RTP ports in use per side: `(internal, external)`.
    pub fn ports_in_use(&self) -> (Vec<u16>, Vec<u16>) {
        (self.internal.pool.in_use(), self.external.pool.in_use())
    }

    /// Take ports another process holds out of the pools; what was taken, per side.
    pub fn set_aside(&mut self, internal: &[u16], external: &[u16]) -> [Vec<u16>; 2] {
        [
            self.internal.pool.set_aside(internal),
            self.external.pool.set_aside(external),
        ]
    }

    /// Give back what [`MediaSides::set_aside`] took.
    pub fn give_back(&mut self, [internal, external]: [Vec<u16>; 2]) {
        for p in internal {
            self.internal.pool.give_back(p);
        }
        for p in external {
            self.external.pool.give_back(p);
        }
    }

    /// Free port pairs per side: `(internal, external)`.
    pub fn available(&self) -> (usize, usize) {
        (
            self.internal.pool.available(),
            self.external.pool.available(),
        )
    }
}

/// The stream end a leg's party is.
pub fn end(leg: LegId) -> End {
    match leg {
        LegId::Caller => End::A,
        LegId::Callee => End::B,
    }
}

/// Why an SDP could not be anchored: the request gets 488.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanchorable {
    Malformed(String),
    /// An offer to the trunk left with none of the codecs it allows.
    NoCodec,
    /// SRTP the trunk needs could not be agreed.
    Srtp(SdesRefusal),
}

impl Unanchorable {
    pub fn reason(&self) -> &'static str {
        match self {
            Unanchorable::Malformed(_) => "malformed",
            Unanchorable::NoCodec => "no-codec",
            Unanchorable::Srtp(SdesRefusal::NoUsableKey) => "no-srtp-key",
            Unanchorable::Srtp(SdesRefusal::SrtpFromPlainEnd) => "srtp-from-pbx",
            Unanchorable::Srtp(SdesRefusal::NoRandom) => "no-random",
        }
    }
}

/// A call's anchored media.
#[derive(Debug)]
pub struct Anchor {
    pub media: CallMedia,
    direction: Direction,
    /// The parties' SIP addresses: their packets may latch (`[caller, callee]`).
    peers: [IpAddr; 2],
    /// The trunk's codec list, for offers sent to the trunk.
    codecs: Option<Arc<[String]>>,
}

impl Anchor {
    /// The media of a new call, or `None` when the trunk's media is not anchored.
    pub fn new(
        key: u64,
        direction: Direction,
        peers: [IpAddr; 2],
        (trunk, srtp): (&PeerMedia, Option<&TrunkSrtp>),
    ) -> Option<Anchor> {
        let media = match srtp_policy(direction, srtp) {
            Some(policy) => CallMedia::with_srtp(key, policy),
            None => CallMedia::new(key),
        };
        trunk.anchored().then(|| Anchor {
            media,
            direction,
            peers,
            codecs: trunk.codecs(),
        })
    }

    /// Rewrite the SDP body of `out`, built from a message of leg `from`, for the other leg.
    /// `answered`: the call is up, so silence counts. What the relay must do goes to `ops`.
    #[allow(clippy::too_many_arguments)]
    pub fn rewrite(
        &mut self,
        sides: &mut MediaSides,
        cfg: &MediaConfig,
        answered: bool,
        from: LegId,
        role: Role,
        out: &mut Message,
        ops: &mut Vec<MediaOp>,
    ) -> Result<(), Unanchorable> {
        if out.body.is_empty() || !is_sdp(out) {
            return Ok(());
        }
        let sdp =
            sluice_sdp::parse(&out.body).map_err(|e| Unanchorable::Malformed(e.to_string()))?;
        let to = from.other();
        let codecs = match (role, to.side(self.direction)) {
            (Role::Offer, Side::External) => self.codecs.as_deref(),
            _ => None,
        };
        let mut plan = self
            .media
            .on_sdp(
                end(from),
                role,
                &sdp,
                sides.for_call(self.direction),
                self.peers,
                codecs,
                ops,
            )
            .map_err(|e| match e {
                Refusal::NoCodec => Unanchorable::NoCodec,
                Refusal::Srtp(r) => Unanchorable::Srtp(r),
            })?;
        // Written once with version 0 to see whether anything Sluice says changed; the origin
        // version moves only then.
        let draft = sluice_sdp::rewrite(&sdp, &plan);
        plan.version = self.media.version_for(end(to), &sdp, &draft);
        let body = if plan.version == 0 {
            draft
        } else {
            sluice_sdp::rewrite(&sdp, &plan)
        };
        out.body = Bytes::from(body);
        let timeouts = answered.then_some(cfg.timeouts);
        self.media.updates(cfg.latching, timeouts, ops);
        Ok(())
    }

    /// The call moves to a trunk with `srtp`: `true` when SRTP is involved on either trunk,
    /// and the offer must then be made again (fresh keys; see [`CallMedia::set_srtp`]).
    pub fn switch_srtp(&mut self, srtp: Option<&TrunkSrtp>) -> bool {
        self.media.set_srtp(srtp_policy(self.direction, srtp))
    }

    /// The call is answered (or its hold changed): arm the silence timeout.
    pub fn arm(&self, cfg: &MediaConfig, ops: &mut Vec<MediaOp>) {
        self.media.updates(cfg.latching, Some(cfg.timeouts), ops);
    }

    /// The call ended: close its streams and give its ports back. Returns what each stream
    /// counted, per end.
    pub fn close(self, sides: &mut MediaSides, ops: &mut Vec<MediaOp>) -> Vec<[EndSnapshot; 2]> {
        let counted = self
            .media
            .streams()
            .map(|(_, c)| c.snapshot())
            .collect::<Vec<_>>();
        debug!(streams = counted.len(), "media closed");
        self.media.close(sides.for_call(self.direction), ops);
        counted
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }
}

/// SRTP on the trunk's end of a call: the callee's on the way out, the caller's on the way in.
fn srtp_policy(direction: Direction, srtp: Option<&TrunkSrtp>) -> Option<SrtpPolicy> {
    let end = match direction {
        Direction::Outbound => End::B,
        Direction::Inbound => End::A,
    };
    srtp.map(|s| SrtpPolicy {
        end,
        mode: s.mode,
        suites: s.suites.to_vec(),
    })
}

/// Whether a message's body is SDP (`application/sdp`; a body without a Content-Type is taken
/// as SDP, as RFC 3261 §20.15 expects of INVITE bodies).
fn is_sdp(msg: &Message) -> bool {
    match msg.header(&HeaderName::ContentType) {
        None => true,
        Some(ct) => ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/sdp"),
    }
}

/// Remove an SDP body that must not cross (it could not be anchored, or it rides on a failure
/// response of an anchored call): the far side must never see the other side's addresses.
pub fn drop_sdp(out: &mut Message) {
    if !out.body.is_empty() && is_sdp(out) {
        out.body = Bytes::new();
        out.headers.remove(&HeaderName::ContentType);
    }
}

/// The offer/answer role of an SDP in a response: an answer when the request carried an
/// offer, else the offer itself (RFC 3264 with RFC 3261 §13.2.1: a 2xx to a bodiless INVITE).
pub fn response_role(request: &Message) -> Role {
    if request.body.is_empty() {
        Role::Offer
    } else {
        Role::Answer
    }
}
