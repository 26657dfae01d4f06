//! How much a plugin may write to Sluice's log: a burst, then a steady rate, per plugin (all its
//! instances share one budget). A plugin logging in a loop must not flood the operator's logs:
//! lines over the budget are dropped, counted (`sluice_plugin_log_dropped_total{plugin}`) and
//! reported in one warning per interval.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines a plugin may write at once ...
pub const BURST: u32 = 50;
/// ... and per second after that.
pub const PER_SECOND: u32 = 10;
/// The steady rate in the bucket's unit: nanoseconds per thousandth of a line.
const NANOS_PER_MILLITOKEN: u64 = 1_000_000 / PER_SECOND as u64;

/// Dropped lines are reported at most this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct LogBudget {
    bucket: Mutex<Bucket>,
    dropped: metrics::Counter,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Thousandths of a line, to refill without floating point.
    millitokens: u64,
    last: Option<Instant>,
    dropped_since_report: u64,
    last_report: Option<Instant>,
}

/// What a plugin's next log line may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// Write it.
    pub allowed: bool,
    /// First say that this many lines were dropped since the last report.
    pub report_dropped: Option<u64>,
}

impl LogBudget {
    pub fn new(plugin: &str) -> LogBudget {
        let dropped =
            metrics::counter!("sluice_plugin_log_dropped_total", "plugin" => plugin.to_string());
        dropped.increment(0);
        LogBudget::with_counter(dropped)
    }

    /// A budget counting into `dropped` (a no-op counter for tests and the load-time probe).
    pub fn with_counter(dropped: metrics::Counter) -> LogBudget {
        LogBudget {
            bucket: Mutex::new(Bucket {
                millitokens: u64::from(BURST).saturating_mul(1000),
                ..Bucket::default()
            }),
            dropped,
        }
    }

    /// Ask to write one line at `now`.
    pub fn take(&self, now: Instant) -> Take {
        let Ok(mut b) = self.bucket.lock() else {
            return Take {
                allowed: false,
                report_dropped: None,
            };
        };
        let full = u64::from(BURST).saturating_mul(1000);
        match b.last {
            Some(last) => {
                // Credit whole thousandths of a line only, and move `last` on by the time they
                // stand for: lines closer together than that still add up.
                let nanos = u64::try_from(now.saturating_duration_since(last).as_nanos())
                    .unwrap_or(u64::MAX);
                let credit = nanos.checked_div(NANOS_PER_MILLITOKEN).unwrap_or(0);
                let per_milli = NANOS_PER_MILLITOKEN;
                if credit > 0 {
                    b.millitokens = b.millitokens.saturating_add(credit).min(full);
                    let spent = Duration::from_nanos(credit.saturating_mul(per_milli));
                    b.last = Some(last.checked_add(spent).unwrap_or(now));
                }
            }
            None => b.last = Some(now),
        }
        let allowed = b.millitokens >= 1000;
        if allowed {
            b.millitokens = b.millitokens.saturating_sub(1000);
        } else {
            b.dropped_since_report = b.dropped_since_report.saturating_add(1);
            self.dropped.increment(1);
        }
        let due = b
            .last_report
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        let report_dropped = (b.dropped_since_report > 0 && due).then(|| {
            b.last_report = Some(now);
            std::mem::take(&mut b.dropped_since_report)
        });
        Take {
            allowed,
            report_dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate_and_one_report_per_interval() {
        let budget = LogBudget::with_counter(metrics::Counter::noop());
        let t0 = Instant::now();
        let mut allowed = 0;
        let mut reports = Vec::new();
        // 3,000 lines in one instant: the burst only, one report of the first drop.
        for _ in 0..3000 {
            let t = budget.take(t0);
            allowed += u32::from(t.allowed);
            reports.extend(t.report_dropped);
        }
        assert_eq!(allowed, BURST);
        assert_eq!(reports, [1]);
        // A line every 10 ms for 20 s: the steady rate gets through, and the drops are
        // reported once per interval with their count.
        let mut steady = 0;
        for i in 1..=2000u64 {
            let t = budget.take(t0 + Duration::from_millis(10 * i));
            steady += u32::from(t.allowed);
            reports.extend(t.report_dropped);
        }
        assert!((199..=201).contains(&steady), "{steady}");
        assert_eq!(reports.len(), 3, "{reports:?}");
        // Every dropped line is in a report.
        let dropped = u64::from(3000 + 2000 - allowed - steady);
        assert_eq!(reports.iter().sum::<u64>(), dropped, "{reports:?}");
    }

    #[test]
    fn lines_closer_than_a_millisecond_still_refill() {
        let budget = LogBudget::with_counter(metrics::Counter::noop());
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert!(budget.take(t0).allowed);
        }
        // A line every 100 µs for 10 s: the steady rate (10 a second) gets through.
        let allowed = (1..=100_000u64)
            .filter(|i| budget.take(t0 + Duration::from_micros(100 * i)).allowed)
            .count();
        assert!((99..=101).contains(&allowed), "{allowed}");
    }

    #[test]
    fn a_quiet_plugin_gets_its_burst_back() {
        let budget = LogBudget::with_counter(metrics::Counter::noop());
        let t0 = Instant::now();
        for _ in 0..100 {
            budget.take(t0);
        }
        let later = t0 + Duration::from_secs(60);
        assert!((0..BURST).all(|_| budget.take(later).allowed));
        assert!(!budget.take(later).allowed);
    }
}
