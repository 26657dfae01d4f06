//! The plain types of the plugin contract, the same on wasm and in native tests.

/// Which way the call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a trunk to the PBX.
    Inbound,
    /// From the PBX to a trunk.
    Outbound,
}

/// A side of Sluice: `Internal` faces the PBX, `External` the trunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    Internal,
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// What a plugin knows of the call a message belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// Sluice's identifier of the call (as in its logs), not the SIP Call-ID.
    pub call: u64,
    pub direction: Direction,
    /// The leg the message is sent on.
    pub leg: Leg,
    pub trunk: String,
    pub brand: String,
    pub tenant: Option<String>,
    /// `ip:port` the message this one was built from came from.
    pub source: String,
    pub transport: Transport,
}

impl CallContext {
    /// A message leaving toward the trunk (outbound call), for tests and tools.
    pub fn outbound(trunk: &str) -> CallContext {
        CallContext {
            call: 1,
            direction: Direction::Outbound,
            leg: Leg::External,
            trunk: trunk.to_string(),
            brand: "generic".to_string(),
            tenant: None,
            source: "127.0.0.10:5060".to_string(),
            transport: Transport::Udp,
        }
    }

    /// A message leaving toward the PBX (inbound call), for tests and tools.
    pub fn inbound(trunk: &str) -> CallContext {
        CallContext {
            direction: Direction::Inbound,
            leg: Leg::Internal,
            source: "127.0.0.20:5060".to_string(),
            ..CallContext::outbound(trunk)
        }
    }

    /// True for a message sent toward the trunk.
    pub fn toward_trunk(&self) -> bool {
        self.leg == Leg::External
    }
}

/// Which number of a call is being normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberKind {
    /// Request-URI and To.
    Called,
    /// From and the identity headers.
    Calling,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberContext {
    pub direction: Direction,
    /// The leg the number is written on.
    pub leg: Leg,
    pub trunk: String,
    pub brand: String,
    pub tenant: Option<String>,
    pub kind: NumberKind,
}

impl NumberContext {
    /// The called or calling number of a call going out to `trunk`, for tests and tools.
    pub fn outbound(trunk: &str, kind: NumberKind) -> NumberContext {
        NumberContext {
            direction: Direction::Outbound,
            leg: Leg::External,
            trunk: trunk.to_string(),
            brand: "generic".to_string(),
            tenant: None,
            kind,
        }
    }

    /// The called or calling number of a call coming in from `trunk`, for tests and tools.
    pub fn inbound(trunk: &str, kind: NumberKind) -> NumberContext {
        NumberContext {
            direction: Direction::Inbound,
            leg: Leg::Internal,
            ..NumberContext::outbound(trunk, kind)
        }
    }
}

/// What becomes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on, with the plugin's edits.
    Continue,
    /// Answer it with `status` (400-699) instead; an empty reason gets the standard phrase.
    Reject { status: u16, reason: String },
}

impl Verdict {
    pub fn reject(status: u16, reason: impl Into<String>) -> Verdict {
        Verdict::Reject {
            status,
            reason: reason.into(),
        }
    }
}

/// STIR/SHAKEN attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attestation {
    /// Full: the caller is known and entitled to the calling number.
    A,
    /// Partial: the caller is known, the number is not verified.
    B,
    /// Gateway: the call entered from elsewhere.
    C,
    /// Do not sign this call.
    None,
}
