//! Retry delays: doubling from a base to a ceiling, each with ±20% jitter so that many trunks
//! (or many Sluices) that failed together do not retry together.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The delay before the next try after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let raw = self
            .base
            .checked_mul(1u32.checked_shl(exp).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        // 0.8 to 1.2 of the raw delay.
        let permille = 800u32.saturating_add(self.rng.u32(0..=400));
        raw.checked_mul(permille)
            .and_then(|d| d.checked_div(1000))
            .unwrap_or(raw)
    }

    /// A success: the next failure starts from the base again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(30), Duration::from_secs(600), 9);
        let within = |d: Duration, raw: u64| {
            d >= Duration::from_secs(raw) * 8 / 10 && d <= Duration::from_secs(raw) * 12 / 10
        };
        for raw in [30, 60, 120, 240, 480, 600, 600] {
            let d = b.next_delay();
            assert!(within(d, raw), "{d:?} for {raw}");
        }
        let delays: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.windows(2).any(|w| w[0] != w[1]), "jitter varies");
        b.reset();
        assert!(within(b.next_delay(), 30));
        assert_eq!(b.failures(), 1);
    }
}
