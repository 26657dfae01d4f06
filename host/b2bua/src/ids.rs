//! Fresh identifiers for Sluice's side of every dialog: tags, branches, Call-IDs and the first
//! CSeq. Seeded, so that the engine is deterministic under test.

use std::fmt::Write;

const HEX: &[u8; 16] = b"0123456789abcdef";

#[derive(Debug)]
pub struct Ids {
    rng: fastrand::Rng,
}

impl Ids {
    pub fn new(seed: u64) -> Ids {
        Ids {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    fn hex_into(&mut self, out: &mut String, digits: usize) {
        for _ in 0..digits {
            let d = HEX
                .get(self.rng.usize(..HEX.len()))
                .copied()
                .unwrap_or(b'0');
            out.push(char::from(d));
        }
    }

    /// A From/To tag: 64 random bits.
    pub fn tag(&mut self) -> String {
        let mut s = String::with_capacity(16);
        self.hex_into(&mut s, 16);
        s
    }

    /// A Via branch with the RFC 3261 magic cookie.
    pub fn branch(&mut self) -> String {
        let mut s = String::with_capacity(27);
        let _ = s.write_str(sluice_sip::BRANCH_COOKIE);
        self.hex_into(&mut s, 20);
        s
    }

    /// A Call-ID: 128 random bits, no host (nothing of Sluice's topology).
    pub fn call_id(&mut self) -> String {
        let mut s = String::with_capacity(32);
        self.hex_into(&mut s, 32);
        s
    }

    /// A number below `n` (0 when `n` is 0): weighted choices.
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            self.rng.u32(0..n)
        }
    }

    /// The first CSeq of a dialog Sluice starts: small, so that it can grow for years.
    pub fn first_cseq(&mut self) -> u32 {
        self.rng.u32(1..10_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_have_their_shape_and_differ() {
        let mut ids = Ids::new(1);
        let (a, b) = (ids.tag(), ids.tag());
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert!(ids.branch().starts_with("z9hG4bK"));
        assert_eq!(ids.call_id().len(), 32);
        assert!((1..10_000).contains(&ids.first_cseq()));
    }
}
