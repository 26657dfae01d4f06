//! OPTIONS keep-alive toward a trunk: one probe per interval; any response (even 4xx: the peer
//! is there and speaking SIP) keeps the trunk up, unless the trunk asks for a 2xx; no response
//! (Timer F, a transport error) marks it down. A trunk that is down is probed at the same
//! interval, capped at 30 s, so that it comes back soon after its peer does.

use std::time::{Duration, Instant};

/// What routing should think of a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// No probe has answered or failed yet.
    Unknown,
    Up,
    Down,
}

/// While down, probe at least this often.
const DOWN_PROBE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct KeepAlive {
    interval: Duration,
    /// Only a 2xx proves the peer alive.
    strict: bool,
    state: Liveness,
    next: Instant,
    in_flight: bool,
    /// The last outcome: a status, or `None` for no response; and when.
    last: Option<(Option<u16>, Instant)>,
}

impl KeepAlive {
    /// The first probe goes at `now`.
    pub fn new(interval: Duration, strict: bool, now: Instant) -> KeepAlive {
        KeepAlive {
            interval: interval.max(Duration::from_secs(1)),
            strict,
            state: Liveness::Unknown,
            next: now,
            in_flight: false,
            last: None,
        }
    }

    pub fn liveness(&self) -> Liveness {
        self.state
    }

    pub fn last(&self) -> Option<(Option<u16>, Instant)> {
        self.last
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.in_flight).then_some(self.next)
    }

    /// Whether a probe is due now; if so it counts as sent.
    pub fn poll_probe(&mut self, now: Instant) -> bool {
        if self.in_flight || now < self.next {
            return false;
        }
        self.in_flight = true;
        true
    }

    pub fn on_response(&mut self, now: Instant, status: u16) {
        if status < 200 {
            return;
        }
        self.in_flight = false;
        self.last = Some((Some(status), now));
        let alive = !self.strict || (200..300).contains(&status);
        self.settle(now, alive);
    }

    /// The probe got no answer.
    pub fn on_timeout(&mut self, now: Instant) {
        self.in_flight = false;
        self.last = Some((None, now));
        self.settle(now, false);
    }

    fn settle(&mut self, now: Instant, alive: bool) {
        self.state = if alive { Liveness::Up } else { Liveness::Down };
        let wait = if alive {
            self.interval
        } else {
            self.interval.min(DOWN_PROBE)
        };
        self.next = now.checked_add(wait).unwrap_or(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_on_any_answer_down_on_silence_and_back() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(360), false, t0);
        assert_eq!(k.liveness(), Liveness::Unknown);
        assert!(k.poll_probe(t0));
        assert!(!k.poll_probe(t0), "one probe in flight");
        assert_eq!(k.poll_timeout(), None);
        k.on_response(t0, 100);
        assert_eq!(
            k.liveness(),
            Liveness::Unknown,
            "a provisional settles nothing"
        );
        k.on_response(t0, 404);
        assert_eq!(
            k.liveness(),
            Liveness::Up,
            "any final answer proves the peer alive"
        );
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_secs(360)));
        let t1 = t0 + Duration::from_secs(360);
        assert!(k.poll_probe(t1));
        k.on_timeout(t1 + Duration::from_secs(32));
        assert_eq!(k.liveness(), Liveness::Down);
        let t2 = k.poll_timeout().unwrap();
        assert_eq!(t2 - (t1 + Duration::from_secs(32)), Duration::from_secs(30));
        assert!(k.poll_probe(t2));
        k.on_response(t2, 200);
        assert_eq!(k.liveness(), Liveness::Up);
        assert_eq!(k.last(), Some((Some(200), t2)));
    }

    #[test]
    fn strict_wants_a_2xx() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(5), true, t0);
        assert!(k.poll_probe(t0));
        k.on_response(t0, 403);
        assert_eq!(k.liveness(), Liveness::Down);
        assert!(k.poll_probe(t0 + Duration::from_secs(5)));
        k.on_response(t0 + Duration::from_secs(5), 200);
        assert_eq!(k.liveness(), Liveness::Up);
    }
}
