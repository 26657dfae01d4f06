//! One call's media across offers and answers: a stream per m= line with a port pair on each of
//! Sluice's sides, where each end receives (from the SDP it sent), and for every SDP crossing
//! the call the [`Plan`] that rewrites it for the other end.
//!
//! Offer and answer are the caller's business (the B2BUA knows which is which from the SIP
//! message): an offer toward a trunk is filtered by the trunk's codec list; an answer never is
//! (it must be a subset of the offer already).

use crate::sdes::{EndCrypto, SdesRefusal, SrtpPolicy, StreamSdes};
use crate::stats::Counters;
use crate::{End, Local, MediaOp, PortPool, Remote, StreamId};
use sluice_sdp::{Plan, Sdp, SectionPlan};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// One of Sluice's sides as media sees it: where it binds, what it writes into SDP, its ports.
#[derive(Debug, Clone)]
pub struct MediaSide {
    pub bind: IpAddr,
    /// The address the far side is told (a public address when Sluice is behind 1:1 NAT).
    pub advertise: IpAddr,
    pub pool: PortPool,
}

/// A stream as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamReport {
    /// Sluice's RTP port facing each end, `[A, B]`.
    pub ports: [u16; 2],
    /// What was received from each end.
    pub counted: [crate::EndSnapshot; 2],
    /// The SRTP suite agreed with the trunk's end, when it speaks SRTP.
    pub srtp: Option<&'static str>,
}

/// Whether an SDP is an offer or an answer (RFC 3264), as its SIP message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Offer,
    Answer,
}

/// Why an SDP cannot cross the call (the request carrying it gets 488).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An offer toward a trunk left with no format its codec list allows.
    NoCodec,
    /// The SRTP the trunk's end needs cannot be agreed (see [`crate::sdes`]).
    Srtp(SdesRefusal),
}

#[derive(Debug)]
struct Stream {
    id: StreamId,
    /// Sluice's RTP port facing each end (0 when none could be had).
    ports: [u16; 2],
    remotes: [Option<Remote>; 2],
    counters: Arc<Counters>,
    clock_rate: u32,
    /// SDES state of the end that uses SRTP, when one does.
    sdes: Option<StreamSdes>,
}

/// The media of one call.
#[derive(Debug)]
pub struct CallMedia {
    /// The call's key: stream identifiers are made from it (see [`stream_id`]).
    call: u64,
    /// One per media section so far (`None`: declined when it was offered).
    streams: Vec<Option<Stream>>,
    /// The origin version Sluice writes toward each end, and a hash of the last body written
    /// there (without its o= line): the version moves only when what Sluice says changes.
    versions: [Option<(u64, u64)>; 2],
    /// Either end put the call on hold (its last SDP).
    hold: [bool; 2],
    /// The end that uses SRTP (the trunk's, when its trunk asks for it).
    srtp: Option<SrtpPolicy>,
}

/// How long a stream may be silent before its call is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub active: Duration,
    pub hold: Duration,
}

/// Streams per call: the SDP parser accepts no more media sections than this.
pub const MAX_STREAMS: u64 = 64;

/// The identifier of stream `index` of call `call`: the relay's events name the call without
/// a table.
pub fn stream_id(call: u64, index: usize) -> StreamId {
    call.wrapping_mul(MAX_STREAMS)
        .wrapping_add(u64::try_from(index).unwrap_or(0) % MAX_STREAMS)
}

/// The call a stream belongs to.
pub fn call_of(stream: StreamId) -> u64 {
    stream / MAX_STREAMS
}

impl CallMedia {
    pub fn new(call: u64) -> CallMedia {
        CallMedia {
            call,
            streams: Vec::new(),
            versions: [None, None],
            hold: [false, false],
            srtp: None,
        }
    }

    /// The call moved to another trunk, whose end speaks SRTP with `policy` (or not): every
    /// stream starts its SDES exchange again, with fresh keys (a key offered to one carrier is
    /// never offered to another). `false` when neither the old nor the new trunk speaks SRTP:
    /// the offer made for the first is then good for the next.
    pub fn set_srtp(&mut self, policy: Option<SrtpPolicy>) -> bool {
        if self.srtp.is_none() && policy.is_none() {
            return false;
        }
        for s in self.streams.iter_mut().flatten() {
            s.sdes = policy.as_ref().map(|_| StreamSdes::new());
        }
        self.srtp = policy;
        true
    }

    /// The media of a call one of whose ends speaks SRTP.
    pub fn with_srtp(call: u64, policy: SrtpPolicy) -> CallMedia {
        CallMedia {
            srtp: Some(policy),
            ..CallMedia::new(call)
        }
    }

    /// An SDP from end `from` (`sides` are Sluice's sides facing A and B, `peers` the SIP
    /// peers' addresses): learn where that end receives, open the streams it adds, and return
    /// the plan for the body sent to the other end. `codecs` filters an offer toward the other
    /// end. `ops` receives what the relay must do.
    #[allow(clippy::too_many_arguments)]
    pub fn on_sdp(
        &mut self,
        from: End,
        role: Role,
        sdp: &Sdp,
        sides: [&mut MediaSide; 2],
        peers: [IpAddr; 2],
        codecs: Option<&[String]>,
        ops: &mut Vec<MediaOp>,
    ) -> Result<Plan, Refusal> {
        let to = from.other();
        let srtp_end = self.srtp.as_ref().map(|p| p.end);
        let [side_a, side_b] = sides;
        let mut sections = Vec::with_capacity(sdp.media.len());
        let mut any_format = false;
        *from.of_mut(&mut self.hold) = sdp.media.iter().any(|m| sdp.on_hold(m));
        for (k, m) in sdp.media.iter().enumerate() {
            if self.streams.len() <= k {
                // A section this SDP adds; a declined one is not opened (the answer declines
                // it too).
                let stream = (m.port != 0).then(|| {
                    let mut s = open(
                        stream_id(self.call, k),
                        [&mut *side_a, &mut *side_b],
                        peers,
                        ops,
                    );
                    // SRTP is for RTP streams; T.38 over UDPTL stays as it is.
                    s.sdes = self
                        .srtp
                        .as_ref()
                        .filter(|_| sluice_sdp::is_rtp_proto(&m.proto))
                        .map(|_| StreamSdes::new());
                    s
                });
                self.streams.push(stream);
            }
            let Some(Some(stream)) = self.streams.get_mut(k) else {
                sections.push(declined(srtp_end, to, m));
                continue;
            };
            *from.of_mut(&mut stream.remotes) = remote_of(sdp, m);
            if let Some(rate) = m.formats.first().and_then(|pt| sdp.clock_rate(m, pt)) {
                stream.clock_rate = rate;
            }
            let formats = match (role, codecs) {
                (Role::Offer, Some(list)) => sdp.allowed_formats(m, list),
                _ => None,
            };
            let crypto = match (&self.srtp, stream.sdes.as_mut()) {
                (Some(policy), Some(sdes)) => sdes
                    .on_section(policy, from, role, sdp, m)
                    .map_err(Refusal::Srtp)?,
                _ => Default::default(),
            };
            let ours = *to.of(&stream.ports);
            let empty = formats.as_ref().is_some_and(Vec::is_empty);
            if m.port == 0 || ours == 0 || empty || crypto.decline {
                sections.push(declined(srtp_end, to, m));
                continue;
            }
            any_format = true;
            sections.push(SectionPlan {
                port: ours,
                rtcp_port: if m.rtcp_mux {
                    ours
                } else {
                    ours.saturating_add(1)
                },
                formats,
                proto: crypto.proto,
                crypto: crypto.crypto,
            });
        }
        if codecs.is_some() && role == Role::Offer && !any_format && !sdp.media.is_empty() {
            return Err(Refusal::NoCodec);
        }
        Ok(Plan {
            address: if to == End::A {
                side_a.advertise
            } else {
                side_b.advertise
            },
            version: 0,
            sections,
        })
    }

    /// The origin version for a body about to be sent to `to`, given the body Sluice would
    /// write with it (`o=` line excluded from the comparison): the same as last time when
    /// nothing changed, one more when something did.
    pub fn version_for(&mut self, to: End, sdp: &Sdp, body_without_origin: &str) -> u64 {
        let mut h = DefaultHasher::new();
        body_without_origin.hash(&mut h);
        let hash = h.finish();
        let slot = to.of_mut(&mut self.versions);
        let version = match *slot {
            None => sdp.origin.version,
            Some((v, last)) if last == hash => v,
            Some((v, _)) => v.saturating_add(1),
        };
        *slot = Some((version, hash));
        version
    }

    /// The relay's view of every stream after an offer or an answer.
    /// `timeouts` is `None` before the call is answered: ringing is not silence.
    pub fn updates(
        &self,
        latching: crate::Latching,
        timeouts: Option<Timeouts>,
        ops: &mut Vec<MediaOp>,
    ) {
        let timeout = timeouts.map(|t| if self.on_hold() { t.hold } else { t.active });
        for s in self.streams.iter().flatten() {
            let mut crypto = [EndCrypto::Plain; 2];
            if let (Some(policy), Some(sdes)) = (&self.srtp, &s.sdes) {
                *policy.end.of_mut(&mut crypto) = sdes.crypto();
            }
            ops.push(MediaOp::Update {
                stream: s.id,
                remotes: s.remotes,
                latching,
                timeout,
                clock_rate: s.clock_rate,
                crypto: Box::new(crypto),
            });
        }
    }

    /// Either end has the call on hold.
    pub fn on_hold(&self) -> bool {
        self.hold.iter().any(|h| *h)
    }

    pub fn streams(&self) -> impl Iterator<Item = (StreamId, &Arc<Counters>)> {
        self.streams.iter().flatten().map(|s| (s.id, &s.counters))
    }

    /// Each stream's ports (Sluice's RTP port facing A and facing B) and what it counted.
    pub fn report(&self) -> impl Iterator<Item = StreamReport> + '_ {
        self.streams.iter().flatten().map(|s| StreamReport {
            ports: s.ports,
            counted: s.counters.snapshot(),
            srtp: s.sdes.as_ref().and_then(|d| match d.crypto() {
                EndCrypto::Srtp(keys) => Some(keys.ours.suite().name()),
                _ => None,
            }),
        })
    }

    /// Whether a stream belongs to this call.
    pub fn has(&self, stream: StreamId) -> bool {
        self.streams.iter().flatten().any(|s| s.id == stream)
    }

    /// The call ended: close every stream and give its ports back.
    pub fn close(self, sides: [&mut MediaSide; 2], ops: &mut Vec<MediaOp>) {
        let [a, b] = sides;
        for s in self.streams.into_iter().flatten() {
            a.pool.give_back(s.ports[0]);
            b.pool.give_back(s.ports[1]);
            ops.push(MediaOp::Close { stream: s.id });
        }
    }
}

/// Where the end that wrote `m` receives: its connection address and port, RTCP on `a=rtcp`,
/// the RTP port with `rtcp-mux`, else the next port.
fn remote_of(sdp: &Sdp, m: &sluice_sdp::Media) -> Option<Remote> {
    let c = sdp.connection_of(m)?;
    let rtcp_port = m.rtcp_port.unwrap_or(if m.rtcp_mux {
        m.port
    } else {
        m.port.saturating_add(1)
    });
    Some(Remote {
        rtp: SocketAddr::new(c.address, m.port),
        rtcp: SocketAddr::new(c.address, rtcp_port),
        hold: m.port == 0 || c.is_hold(),
    })
}

/// A declined section. Where an end speaks SRTP, no key crosses even in a declined RTP
/// section, and the plain end is written its plain profile.
fn declined(srtp_end: Option<End>, to: End, m: &sluice_sdp::Media) -> SectionPlan {
    let srtp = srtp_end.filter(|_| sluice_sdp::is_rtp_proto(&m.proto));
    SectionPlan {
        port: 0,
        rtcp_port: 0,
        formats: None,
        proto: srtp
            .filter(|&e| e != to)
            .map(|_| sluice_sdp::with_srtp(&m.proto, false).to_string()),
        crypto: srtp.map(|_| Vec::new()),
    }
}

/// A new stream: a port pair on each side (0 when a range is exhausted: that end's SDP then
/// declines the stream).
fn open(
    id: StreamId,
    sides: [&mut MediaSide; 2],
    peers: [IpAddr; 2],
    ops: &mut Vec<MediaOp>,
) -> Stream {
    let [a, b] = sides;
    let ports = [a.pool.take().unwrap_or(0), b.pool.take().unwrap_or(0)];
    let counters = Arc::new(Counters::default());
    if ports[0] != 0 && ports[1] != 0 {
        ops.push(MediaOp::Open {
            stream: id,
            a: Local {
                bind: a.bind,
                port: ports[0],
            },
            b: Local {
                bind: b.bind,
                port: ports[1],
            },
            peers,
            counters: counters.clone(),
        });
    }
    Stream {
        id,
        ports,
        remotes: [None, None],
        counters,
        clock_rate: 8000,
        sdes: None,
    }
}
