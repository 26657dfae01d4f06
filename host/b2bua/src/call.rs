//! The vocabulary of a call: its key, its direction, and its two legs.

use crate::config::Side;

/// Identifies a call inside one Sluice process (never shown to a peer).
pub type CallKey = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// PBX to trunk.
    Outbound,
    /// Trunk to PBX.
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// One of a call's two dialogs: Sluice is UAS toward the caller and UAC toward the callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegId {
    Caller,
    Callee,
}

impl LegId {
    /// The leg a message of this leg is relayed to.
    pub fn other(self) -> LegId {
        match self {
            LegId::Caller => LegId::Callee,
            LegId::Callee => LegId::Caller,
        }
    }

    /// The side of Sluice this leg faces: the caller of an outbound call is the PBX.
    pub fn side(self, direction: Direction) -> Side {
        match (direction, self) {
            (Direction::Outbound, LegId::Caller) | (Direction::Inbound, LegId::Callee) => {
                Side::Internal
            }
            _ => Side::External,
        }
    }
}

/// A value per leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Legs<T> {
    pub caller: T,
    pub callee: T,
}

impl<T> Legs<T> {
    pub fn get(&self, leg: LegId) -> &T {
        match leg {
            LegId::Caller => &self.caller,
            LegId::Callee => &self.callee,
        }
    }

    pub fn get_mut(&mut self, leg: LegId) -> &mut T {
        match leg {
            LegId::Caller => &mut self.caller,
            LegId::Callee => &mut self.callee,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        [&self.caller, &self.callee].into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_face_the_side_their_party_is_on() {
        assert_eq!(LegId::Caller.other(), LegId::Callee);
        assert_eq!(LegId::Callee.other(), LegId::Caller);
        assert_eq!(LegId::Caller.side(Direction::Outbound), Side::Internal);
        assert_eq!(LegId::Callee.side(Direction::Outbound), Side::External);
        assert_eq!(LegId::Caller.side(Direction::Inbound), Side::External);
        assert_eq!(LegId::Callee.side(Direction::Inbound), Side::Internal);
    }
}
