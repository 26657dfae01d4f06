//! SDES offer/answer (RFC 4568) for the end of a call whose trunk uses SRTP, stream by stream:
//! which `a=crypto` lines and which transport profile each SDP crossing the call gets, and the
//! keys the relay needs once an exchange completes. The other end (the PBX) stays plain RTP:
//! its own `a=crypto` lines never cross, and Sluice answers it with the profile it offered.
//!
//! - an offer toward the SRTP end carries one `a=crypto` line per configured suite with
//!   Sluice's own key for it (kept for the whole call, so a re-offer repeats it), under
//!   `RTP/SAVP` when SRTP is required and `RTP/AVP` when it is optional (best effort: a peer
//!   without SRTP ignores the lines);
//! - an offer from the SRTP end is accepted with its first line Sluice can use; the answer
//!   carries that tag and suite with Sluice's key; an offer with none is refused (488) when
//!   SRTP is required or the offer's profile is `RTP/SAVP`, else the stream is plain;
//! - an answer from the SRTP end names one of Sluice's tags; without one, the stream is plain
//!   when SRTP is optional, and declined toward the PBX when it is required.

use crate::session::Role;
use crate::srtp::{MasterKey, SrtpKeys, Suite};
use crate::End;
use sluice_sdp::{format_crypto, is_rtp_proto, is_secure_proto, with_srtp, Media, Sdp};

/// SRTP on a trunk's end of its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpMode {
    /// Offered with best effort (`RTP/AVP` with `a=crypto`); a plain peer stays plain.
    Optional,
    /// Offered as `RTP/SAVP`; a peer without SRTP is refused.
    Required,
}

/// What a call's SRTP end is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpPolicy {
    /// The end facing the trunk that uses SRTP.
    pub end: End,
    pub mode: SrtpMode,
    /// Offered in this order; an offer's lines are accepted only for these.
    pub suites: Vec<Suite>,
}

/// The relay's view of an end: how its packets are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndCrypto {
    /// RTP as it is.
    #[default]
    Plain,
    /// SRTP with these keys.
    Srtp(SrtpKeys),
    /// SRTP not agreed yet (or refused): nothing is relayed from or to the end.
    Waiting,
}

/// Why SDES refuses an SDP (the request gets 488).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdesRefusal {
    /// The SRTP end offered no `a=crypto` line Sluice can use, where SRTP is needed.
    NoUsableKey,
    /// The plain end (the PBX) offered SRTP itself: Sluice does not speak SRTP toward it.
    SrtpFromPlainEnd,
    /// No random bytes for a key.
    NoRandom,
}

/// What one section of an SDP gets on its way to the other end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SectionCrypto {
    pub proto: Option<String>,
    /// `None`: the section's own lines stay (nothing to do with SRTP).
    pub crypto: Option<Vec<String>>,
    /// The answer left the stream without the SRTP it requires: declined toward the PBX.
    pub decline: bool,
}

/// The SRTP end's offer, waiting for Sluice's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TheirOffer {
    Key { tag: u32, theirs: MasterKey },
    Plain,
}

/// One stream's SDES state.
#[derive(Debug, Clone, Default)]
pub struct StreamSdes {
    /// Sluice's key per suite toward the SRTP end, made when first needed.
    ours: Vec<MasterKey>,
    /// The tags of Sluice's last offer to the SRTP end.
    offered: Vec<(u32, Suite)>,
    their_offer: Option<TheirOffer>,
    /// The profile of the last offer from each end, for the answer sent back to it.
    offered_proto: [Option<String>; 2],
    /// What the exchanges so far agreed (`Waiting` until one did, or when one failed).
    state: EndCrypto,
}

impl StreamSdes {
    pub fn new() -> StreamSdes {
        StreamSdes {
            state: EndCrypto::Waiting,
            ..StreamSdes::default()
        }
    }

    /// How the relay carries the SRTP end's packets now.
    pub fn crypto(&self) -> EndCrypto {
        self.state
    }

    fn ours_for(&mut self, suite: Suite) -> Result<MasterKey, SdesRefusal> {
        if let Some(k) = self.ours.iter().find(|k| k.suite() == suite) {
            return Ok(*k);
        }
        let k = MasterKey::generate(suite).map_err(|_| SdesRefusal::NoRandom)?;
        self.ours.push(k);
        Ok(k)
    }

    /// A section of an SDP from `from`, on its way to the other end.
    pub fn on_section(
        &mut self,
        policy: &SrtpPolicy,
        from: End,
        role: Role,
        sdp: &Sdp,
        m: &Media,
    ) -> Result<SectionCrypto, SdesRefusal> {
        if !is_rtp_proto(&m.proto) || m.port == 0 {
            return Ok(SectionCrypto::default());
        }
        if role == Role::Offer {
            *from.of_mut(&mut self.offered_proto) = Some(m.proto.clone());
        }
        match (from == policy.end, role) {
            (true, Role::Offer) => self.offer_from_srtp_end(policy, sdp, m),
            (false, Role::Offer) => self.offer_to_srtp_end(policy, m),
            (true, Role::Answer) => self.answer_from_srtp_end(policy, sdp, m),
            (false, Role::Answer) => self.answer_to_srtp_end(policy, m),
        }
    }

    /// The SRTP end offers: its first line Sluice can use is kept for the answer; the plain
    /// end gets the offer without keys.
    fn offer_from_srtp_end(
        &mut self,
        policy: &SrtpPolicy,
        sdp: &Sdp,
        m: &Media,
    ) -> Result<SectionCrypto, SdesRefusal> {
        let accepted = sdp.crypto_of(m).into_iter().find_map(|a| {
            let suite = Suite::from_name(&a.suite)?;
            if !policy.suites.contains(&suite) || a.has_mki || a.has_session_params {
                return None;
            }
            let theirs = MasterKey::from_base64(suite, &a.key_b64).ok()?;
            Some(TheirOffer::Key { tag: a.tag, theirs })
        });
        self.their_offer = match accepted {
            Some(k) => Some(k),
            None if policy.mode == SrtpMode::Required || is_secure_proto(&m.proto) => {
                return Err(SdesRefusal::NoUsableKey)
            }
            None => Some(TheirOffer::Plain),
        };
        Ok(to_plain(m))
    }

    /// The plain end offers: the SRTP end is offered Sluice's keys, one line per suite.
    fn offer_to_srtp_end(
        &mut self,
        policy: &SrtpPolicy,
        m: &Media,
    ) -> Result<SectionCrypto, SdesRefusal> {
        if is_secure_proto(&m.proto) {
            return Err(SdesRefusal::SrtpFromPlainEnd);
        }
        let mut lines = Vec::with_capacity(policy.suites.len());
        self.offered.clear();
        for (tag, suite) in (1u32..).zip(policy.suites.iter().copied()) {
            let key = self.ours_for(suite)?;
            lines.push(format_crypto(tag, suite.name(), &key.to_base64()));
            self.offered.push((tag, suite));
        }
        let secure = policy.mode == SrtpMode::Required;
        Ok(SectionCrypto {
            proto: Some(with_srtp(&m.proto, secure).to_string()),
            crypto: Some(lines),
            decline: false,
        })
    }

    /// The SRTP end answers Sluice's offer: one of Sluice's tags, or plain (optional), or
    /// nothing agreed (required: the stream is declined toward the plain end).
    fn answer_from_srtp_end(
        &mut self,
        policy: &SrtpPolicy,
        sdp: &Sdp,
        m: &Media,
    ) -> Result<SectionCrypto, SdesRefusal> {
        let chosen = sdp.crypto_of(m).into_iter().find_map(|a| {
            let &(_, suite) = self
                .offered
                .iter()
                .find(|(tag, s)| *tag == a.tag && s.name() == a.suite)?;
            let theirs = MasterKey::from_base64(suite, &a.key_b64).ok()?;
            Some((suite, theirs))
        });
        let back = policy.end.other().of(&self.offered_proto).clone();
        let mut out = SectionCrypto {
            proto: back.or_else(|| to_plain(m).proto),
            crypto: Some(Vec::new()),
            decline: false,
        };
        self.state = match chosen {
            Some((suite, theirs)) => EndCrypto::Srtp(SrtpKeys {
                theirs,
                ours: self.ours_for(suite)?,
            }),
            None if policy.mode == SrtpMode::Optional && !is_secure_proto(&m.proto) => {
                EndCrypto::Plain
            }
            None => {
                out.decline = true;
                EndCrypto::Waiting
            }
        };
        Ok(out)
    }

    /// The plain end answers the SRTP end's offer: Sluice answers it with its own key under
    /// the offer's tag (or plain, as offered), in the profile it offered.
    fn answer_to_srtp_end(
        &mut self,
        policy: &SrtpPolicy,
        m: &Media,
    ) -> Result<SectionCrypto, SdesRefusal> {
        let proto = policy.end.of(&self.offered_proto).clone();
        let (state, crypto) = match self.their_offer {
            Some(TheirOffer::Key { tag, theirs }) => {
                let ours = self.ours_for(theirs.suite())?;
                let line = format_crypto(tag, theirs.suite().name(), &ours.to_base64());
                (EndCrypto::Srtp(SrtpKeys { theirs, ours }), vec![line])
            }
            Some(TheirOffer::Plain) => (EndCrypto::Plain, Vec::new()),
            None => return Ok(to_plain(m)),
        };
        self.state = state;
        Ok(SectionCrypto {
            proto,
            crypto: Some(crypto),
            decline: false,
        })
    }
}

/// A section for the plain end: its plain profile, no keys.
fn to_plain(m: &Media) -> SectionCrypto {
    SectionCrypto {
        proto: Some(with_srtp(&m.proto, false).to_string()),
        crypto: Some(Vec::new()),
        decline: false,
    }
}
