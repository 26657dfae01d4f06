//! Timer values of RFC 3261 §17 (table 4).

use std::time::{Duration, Instant};

/// `now + d` that cannot panic: a deadline past what [`Instant`] can hold becomes a century
/// from now, which is never in practice. Every deadline in the sans-IO layers goes through here.
pub fn after(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Maximum time a message remains in the network, 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// Timers B, F, H, J, L and M: 64*T1.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// Which timer of a transaction fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// A (INVITE client) and E (non-INVITE client) retransmit the request; G retransmits the
    /// final response of an INVITE server transaction.
    Retransmit,
    /// B, F (client), H (server INVITE waiting for ACK): the transaction failed.
    Timeout,
    /// D, K, I, J, L, M: the transaction's lingering state ends.
    Linger,
}
