//! A drain: new calls are refused at once; calls in progress go on until the deadline, then
//! are ended (BYE once answered, 503 and CANCEL while ringing); the shell stops once no call is
//! left, or when the transactions that end them have had their time (64*T1, and a second).

use crate::later;
use std::time::Duration;
use tokio::time::Instant;

/// Besides the transactions' own time, how long hung-up calls get before the shell stops.
const AFTER_HANG_UP: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) enum Drain {
    #[default]
    Off,
    /// Calls may go on until `until`.
    Running { until: Instant },
    /// Calls were hung up; stop at `until` at the latest.
    HungUp { until: Instant },
}

/// What the drain's timer asks of the shell.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DrainStep {
    HangUp,
    Stop,
}

impl Drain {
    /// Start a drain (a second request does not move the deadline). `true` when it started.
    pub fn start(&mut self, now: Instant, deadline: Duration) -> bool {
        if !matches!(self, Drain::Off) {
            return false;
        }
        *self = Drain::Running {
            until: later(now, deadline),
        };
        true
    }

    /// A drain asked for while one runs (a stop during an upgrade's tail, say): the earlier
    /// deadline wins. The deadline now in force, if the drain has not hung up yet.
    pub fn shorten(&mut self, now: Instant, deadline: Duration) -> Option<Instant> {
        match self {
            Drain::Running { until } => {
                *until = (*until).min(later(now, deadline));
                Some(*until)
            }
            Drain::Off | Drain::HungUp { .. } => None,
        }
    }

    pub fn is_on(&self) -> bool {
        !matches!(self, Drain::Off)
    }

    /// When the drain's timer fires next.
    pub fn wake(&self) -> Option<Instant> {
        match self {
            Drain::Off => None,
            Drain::Running { until } | Drain::HungUp { until } => Some(*until),
        }
    }

    /// The timer fired at `now`; calls hung up now get `grace` to end.
    pub fn fire(&mut self, now: Instant, grace: Duration) -> DrainStep {
        match self {
            Drain::Running { .. } => {
                *self = Drain::HungUp {
                    until: later(now, grace.saturating_add(AFTER_HANG_UP)),
                };
                DrainStep::HangUp
            }
            Drain::Off | Drain::HungUp { .. } => DrainStep::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_then_hang_up_then_stop() {
        let t0 = Instant::now();
        let mut d = Drain::default();
        assert!(!d.is_on() && d.wake().is_none());
        assert!(d.start(t0, Duration::from_secs(30)));
        assert!(
            !d.start(t0, Duration::from_secs(1)),
            "a second drain keeps the deadline"
        );
        assert_eq!(d.wake(), Some(t0 + Duration::from_secs(30)));
        let t1 = t0 + Duration::from_secs(30);
        let grace = Duration::from_secs(32);
        assert_eq!(d.fire(t1, grace), DrainStep::HangUp);
        assert_eq!(d.wake(), Some(t1 + grace + AFTER_HANG_UP));
        assert_eq!(d.fire(t1 + grace + AFTER_HANG_UP, grace), DrainStep::Stop);
        // A shorter second deadline wins; a longer one does not move it.
        let mut d = Drain::default();
        d.start(t0, Duration::from_secs(14_400));
        assert_eq!(
            d.shorten(t0, Duration::from_secs(30)),
            Some(t0 + Duration::from_secs(30))
        );
        assert_eq!(
            d.shorten(t0, Duration::from_secs(60)),
            Some(t0 + Duration::from_secs(30))
        );
        // An absurd deadline saturates instead of panicking.
        let mut d = Drain::default();
        d.start(t0, Duration::MAX);
        assert!(d.wake().unwrap() > t0);
    }
}
