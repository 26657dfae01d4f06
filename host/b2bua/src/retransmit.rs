//! Why this exists: a 2xx to an INVITE ends the INVITE server transaction (RFC 3261 §17.2.1,
//! RFC 6026), so the transaction layer does not retransmit it. The UAS core must (§13.3.1.4):
//! over UDP, every T1 doubling up to T2, until the ACK arrives or 64*T1 pass. Likewise the UAC
//! core ACKs every retransmission of a 2xx it receives (§13.2.2.4). As a B2BUA Sluice is both:
//! UAS toward the leg an INVITE came from, UAC toward the leg it relayed it to. An
//! [`InviteRelay`] holds both halves for one INVITE (initial or re-INVITE) from the callee's
//! 2xx until the caller's ACK has been relayed.

use crate::call::{CallKey, LegId};
use bytes::Bytes;
use sluice_transaction::{after, Flow, TimerConfig};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct InviteRelay {
    /// The leg the INVITE came in on: Sluice answers it there.
    pub from: LegId,
    /// The INVITE's CSeq number on `from` (what its ACK carries).
    pub from_cseq: u32,
    /// The CSeq number Sluice used on the other leg (what Sluice's ACK carries).
    pub to_cseq: u32,
    /// Sluice's 2xx on `from` and where it goes, retransmitted over UDP until the ACK.
    our_2xx: Option<(Flow, Bytes)>,
    interval: Duration,
    /// When the next retransmission is due (none over reliable transports).
    next: Option<Instant>,
    give_up: Instant,
    /// The ACK Sluice sent on the other leg, sent again for every retransmitted 2xx.
    pub our_ack: Option<Bytes>,
    /// The ACK arrived (or Sluice gave up waiting): no more retransmissions.
    pub acked: bool,
}

/// What a due timer asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    Nothing,
    Retransmit(Flow, Bytes),
    /// No ACK in 64*T1: confirm the other leg's 2xx and hang up both legs (§13.3.1.4).
    GiveUp,
}

impl InviteRelay {
    /// An INVITE relayed from `from`, before any 2xx.
    pub fn new(from: LegId, from_cseq: u32, to_cseq: u32, now: Instant, t: &TimerConfig) -> Self {
        InviteRelay {
            from,
            from_cseq,
            to_cseq,
            our_2xx: None,
            interval: t.t1,
            next: None,
            give_up: after(now, t.timeout()),
            our_ack: None,
            acked: false,
        }
    }

    /// Whether Sluice has sent its 2xx on `from` (and the ACK may come).
    pub fn has_answered(&self) -> bool {
        self.our_2xx.is_some() || self.acked
    }

    /// Sluice sent its 2xx on `from`: retransmit it (over UDP) until the ACK.
    pub fn answered(
        &mut self,
        key: CallKey,
        now: Instant,
        sent: (Flow, Bytes),
        t: &TimerConfig,
        timers: &mut CallTimers,
    ) {
        let reliable = sent.0.transport.is_reliable();
        self.interval = t.t1;
        self.give_up = after(now, t.timeout());
        self.next = (!reliable).then(|| after(now, t.t1));
        self.our_2xx = Some(sent);
        if let Some(next) = self.next {
            timers.push(next, key);
        }
        timers.push(self.give_up, key);
    }

    /// The ACK arrived: stop retransmitting. `false` when it is a retransmitted ACK.
    pub fn ack_arrived(&mut self) -> bool {
        let first = !self.acked;
        self.acked = true;
        self.our_2xx = None;
        self.next = None;
        first
    }

    /// A timer set for `at` fired at `now`.
    pub fn on_timer(
        &mut self,
        key: CallKey,
        now: Instant,
        at: Instant,
        t2: Duration,
        timers: &mut CallTimers,
    ) -> Due {
        if self.acked {
            return Due::Nothing;
        }
        if now >= self.give_up && at >= self.give_up {
            self.ack_arrived();
            return Due::GiveUp;
        }
        if self.next != Some(at) {
            return Due::Nothing; // a stale entry
        }
        let Some(sent) = self.our_2xx.clone() else {
            return Due::Nothing;
        };
        self.interval = self.interval.saturating_mul(2).min(t2);
        let next = after(now, self.interval);
        self.next = Some(next);
        timers.push(next, key);
        Due::Retransmit(sent.0, sent.1)
    }
}

/// The engine's own timers (2xx retransmission and give-up), by call. Entries are not removed
/// when they become moot: the call checks whether an entry is still the one it wants.
#[derive(Debug, Default)]
pub struct CallTimers(BinaryHeap<Reverse<(Instant, CallKey)>>);

impl CallTimers {
    pub fn push(&mut self, at: Instant, key: CallKey) {
        self.0.push(Reverse((at, key)));
    }

    pub fn next(&self) -> Option<Instant> {
        self.0.peek().map(|Reverse((at, _))| *at)
    }

    /// The next entry due at `now`, removed.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, CallKey)> {
        match self.0.peek() {
            Some(Reverse((at, _))) if *at <= now => self.0.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_transaction::Transport;

    fn flow(transport: Transport) -> Flow {
        Flow {
            transport,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.10:5060".parse().unwrap(),
            conn: None,
        }
    }

    #[test]
    fn the_2xx_is_retransmitted_doubling_to_t2_until_the_ack_or_64_t1() {
        let t = TimerConfig::default();
        let t0 = Instant::now();
        let mut timers = CallTimers::default();
        let mut r = InviteRelay::new(LegId::Caller, 1, 5, t0, &t);
        r.answered(
            9,
            t0,
            (flow(Transport::Udp), Bytes::from_static(b"200")),
            &t,
            &mut timers,
        );
        let mut sent = Vec::new();
        let mut gave_up = None;
        let mut now = t0;
        while let Some(at) = timers.next() {
            now = at;
            while let Some((at, key)) = timers.pop_due(now) {
                match r.on_timer(key, now, at, t.t2, &mut timers) {
                    Due::Retransmit(..) => sent.push(now.duration_since(t0)),
                    Due::GiveUp => gave_up = Some(now.duration_since(t0)),
                    Due::Nothing => {}
                }
            }
        }
        let ms: Vec<u128> = sent.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(gave_up, Some(Duration::from_secs(32)));
        assert!(now >= t0);
    }

    #[test]
    fn nothing_is_retransmitted_over_tcp_or_after_the_ack() {
        let t = TimerConfig::default();
        let t0 = Instant::now();
        let mut timers = CallTimers::default();
        let mut r = InviteRelay::new(LegId::Callee, 1, 5, t0, &t);
        r.answered(
            1,
            t0,
            (flow(Transport::Tcp), Bytes::from_static(b"200")),
            &t,
            &mut timers,
        );
        assert!(r.ack_arrived());
        assert!(!r.ack_arrived(), "a retransmitted ACK");
        while let Some((at, key)) = timers.pop_due(t0 + Duration::from_secs(60)) {
            assert_eq!(
                r.on_timer(key, t0 + Duration::from_secs(60), at, t.t2, &mut timers),
                Due::Nothing
            );
        }
    }
}
