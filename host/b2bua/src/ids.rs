//! Fresh identifiers for Sluice's side of every dialog: tags, branches, Call-IDs and the first
//! CSeq. Seeded, so that the engine is deterministic under test.

use std::fmt::Write;

const HEX: &[u8; 16] = b"0123456789abcdef";

#[derive(Debug)]
pub struct Ids {
    rng: fastrand::Rng,
    /// The first hex digits of every Call-ID this process makes: after an upgrade, the
    /// successor forwards the messages of this process's calls by it.
    token: String,
}

/// Hex digits of the Call-ID token (the other 24 are random).
const TOKEN_DIGITS: usize = 8;
/// Random hex digits after it.
const CALL_ID_RANDOM_DIGITS: usize = 24;

impl Ids {
    pub fn new(seed: u64) -> Ids {
        let mut ids = Ids {
            rng: fastrand::Rng::with_seed(seed),
            token: String::new(),
        };
        let mut token = String::with_capacity(TOKEN_DIGITS);
        ids.hex_into(&mut token, TOKEN_DIGITS);
        ids.token = token;
        ids
    }

    /// The prefix of this process's Call-IDs.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Draw another token if this one is `other`'s (a predecessor's), so that the two
    /// processes' Call-IDs never share a prefix.
    pub fn avoid_token(&mut self, other: &str) {
        while self.token == other {
            let mut token = String::with_capacity(TOKEN_DIGITS);
            self.hex_into(&mut token, TOKEN_DIGITS);
            self.token = token;
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

    /// A Call-ID: the process's token and 96 random bits, no host (nothing of Sluice's
    /// topology).
    pub fn call_id(&mut self) -> String {
        let mut s = String::with_capacity(32);
        s.push_str(&self.token);
        self.hex_into(&mut s, CALL_ID_RANDOM_DIGITS);
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
        let (c, d) = (ids.call_id(), ids.call_id());
        assert_eq!(c.len(), 32);
        assert_ne!(c, d);
        assert!(c.starts_with(ids.token()) && d.starts_with(ids.token()));
        let token = ids.token().to_string();
        ids.avoid_token(&token);
        assert_ne!(ids.token(), token);
        assert!(ids.call_id().starts_with(ids.token()));
        assert!((1..10_000).contains(&ids.first_cseq()));
    }
}
