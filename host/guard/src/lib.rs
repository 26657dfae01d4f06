//! Flood protection, as Kamailio's pike module does it: the requests of each source address are
//! counted over a short window; a source over the limit, or with too many failed
//! authentications, is banned for a while and its packets are dropped before they are parsed.
//! The engine exempts its PBX and trunks before asking.
//!
//! Sans-IO: the inputs are a source address and the time; nothing here logs, sleeps or reads
//! a clock. Memory is bounded: at most [`Limits::max_sources`] sources are tracked, and a
//! sweep every window forgets the ones that went quiet.
//!
//! IPv6 sources are counted per /64, the block one subscriber usually holds: an attacker
//! cannot escape a ban by walking its own prefix.

// Tests index into data they built themselves.
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::arithmetic_side_effects))]

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// When a source is banned. Bounds are the configuration's to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The window requests are counted over.
    pub window: Duration,
    /// More requests than this in one window ban the source.
    pub max_requests: u32,
    /// How long a ban lasts.
    pub ban: Duration,
    /// More failed authentications than this within `auth_window` ban the source.
    pub max_auth_failures: u32,
    pub auth_window: Duration,
    /// Sources tracked at once; beyond it a new source passes uncounted until a sweep frees
    /// room (counted in [`GuardStats::untracked`]).
    pub max_sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: Duration::from_secs(2),
            max_requests: 40,
            ban: Duration::from_secs(300),
            max_auth_failures: 5,
            auth_window: Duration::from_secs(60),
            max_sources: 100_000,
        }
    }
}

/// Why a source was banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Over the request limit.
    Flood,
    /// Too many failed authentications.
    AuthFailures,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Flood => "flood",
            Reason::AuthFailures => "auth-failures",
        }
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Pass,
    /// From a banned source: drop it unread.
    Drop,
    /// This packet put its source over the limit: drop it, and say so once.
    Banned(Reason),
}

/// A ban in force, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The address (an IPv6 source's /64, as its first address).
    pub source: IpAddr,
    pub reason: Reason,
    /// Time left.
    pub remaining: Duration,
    /// Packets dropped since it began.
    pub dropped: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardStats {
    pub bans: u64,
    pub dropped: u64,
    pub untracked: u64,
}

#[derive(Debug, Clone)]
struct Source {
    window_start: Instant,
    requests: u32,
    auth_start: Instant,
    auth_failures: u32,
    banned: Option<(Instant, Reason)>,
    dropped: u64,
}

impl Source {
    fn new(now: Instant) -> Source {
        Source {
            window_start: now,
            requests: 0,
            auth_start: now,
            auth_failures: 0,
            banned: None,
            dropped: 0,
        }
    }

    fn banned_at(&self, now: Instant) -> Option<Reason> {
        self.banned
            .and_then(|(until, reason)| (now < until).then_some(reason))
    }
}

pub struct Guard {
    limits: Limits,
    sources: HashMap<IpAddr, Source>,
    next_sweep: Option<Instant>,
    stats: GuardStats,
    /// Bans started and not yet ended by a sweep or lifted (some may have run out since).
    in_force: usize,
}

impl Guard {
    pub fn new(limits: Limits) -> Guard {
        Guard {
            limits,
            sources: HashMap::new(),
            next_sweep: None,
            stats: GuardStats::default(),
            in_force: 0,
        }
    }

    /// New limits (a reload); counts and bans in force stay.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn stats(&self) -> GuardStats {
        self.stats
    }

    /// Count a packet from `ip` (a source the caller does not exempt).
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admit {
        let limits = self.limits;
        let Some(s) = self.source(ip, now) else {
            return Admit::Pass;
        };
        if s.banned_at(now).is_some() {
            s.dropped = s.dropped.saturating_add(1);
            self.stats.dropped = self.stats.dropped.saturating_add(1);
            return Admit::Drop;
        }
        if now.saturating_duration_since(s.window_start) >= limits.window {
            s.window_start = now;
            s.requests = 0;
        }
        s.requests = s.requests.saturating_add(1);
        if s.requests <= limits.max_requests {
            return Admit::Pass;
        }
        self.ban(ip, now, Reason::Flood);
        Admit::Banned(Reason::Flood)
    }

    /// An authentication from `ip` failed; whether that banned it.
    pub fn auth_failed(&mut self, ip: IpAddr, now: Instant) -> bool {
        let limits = self.limits;
        let Some(s) = self.source(ip, now) else {
            return false;
        };
        if s.banned_at(now).is_some() {
            return false;
        }
        if now.saturating_duration_since(s.auth_start) >= limits.auth_window {
            s.auth_start = now;
            s.auth_failures = 0;
        }
        s.auth_failures = s.auth_failures.saturating_add(1);
        if s.auth_failures <= limits.max_auth_failures {
            return false;
        }
        self.ban(ip, now, Reason::AuthFailures);
        true
    }

    /// Whether `ip` is banned now.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&key(ip))
            .is_some_and(|s| s.banned_at(now).is_some())
    }

    /// The bans in force, longest remaining first.
    pub fn bans(&self, now: Instant) -> Vec<Ban> {
        let mut bans: Vec<Ban> = self
            .sources
            .iter()
            .filter_map(|(ip, s)| {
                let (until, reason) = s.banned?;
                (now < until).then(|| Ban {
                    source: *ip,
                    reason,
                    remaining: until.saturating_duration_since(now),
                    dropped: s.dropped,
                })
            })
            .collect();
        bans.sort_by(|a, b| b.remaining.cmp(&a.remaining).then(a.source.cmp(&b.source)));
        bans
    }

    /// Bans in force, as of the last sweep (cheap: for a gauge).
    pub fn bans_in_force(&self) -> usize {
        self.in_force
    }

    /// Lift the ban on `ip` (its /64 for IPv6), or every ban; how many were lifted.
    pub fn lift(&mut self, ip: Option<IpAddr>, now: Instant) -> usize {
        let mut lifted = 0usize;
        let mut ended = 0usize;
        let mut clear = |s: &mut Source| {
            if s.banned_at(now).is_some() {
                lifted = lifted.saturating_add(1);
            }
            if s.banned.is_some() {
                ended = ended.saturating_add(1);
            }
            *s = Source::new(now);
        };
        match ip {
            Some(ip) => {
                if let Some(s) = self.sources.get_mut(&key(ip)) {
                    clear(s);
                }
            }
            None => self.sources.values_mut().for_each(clear),
        }
        self.in_force = self.in_force.saturating_sub(ended);
        lifted
    }

    /// When [`Guard::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Forget the sources that went quiet; `ended` hears of each ban that ran out (its source,
    /// reason and dropped packets), for one log line per ban. Whether a sweep was due (and ran).
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        mut ended: impl FnMut(IpAddr, Reason, u64),
    ) -> bool {
        if self.next_sweep.is_none_or(|at| now < at) {
            return false;
        }
        let limits = self.limits;
        let in_force = &mut self.in_force;
        self.sources.retain(|ip, s| {
            if let Some((until, reason)) = s.banned {
                if now < until {
                    return true;
                }
                ended(*ip, reason, s.dropped);
                *in_force = in_force.saturating_sub(1);
                s.banned = None;
                s.dropped = 0;
            }
            now.saturating_duration_since(s.window_start) < limits.window
                || (s.auth_failures > 0
                    && now.saturating_duration_since(s.auth_start) < limits.auth_window)
        });
        self.next_sweep = (!self.sources.is_empty())
            .then(|| now.checked_add(limits.window))
            .flatten();
        true
    }

    /// The entry for `ip`, made when there is room.
    fn source(&mut self, ip: IpAddr, now: Instant) -> Option<&mut Source> {
        let ip = key(ip);
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.limits.max_sources {
            self.stats.untracked = self.stats.untracked.saturating_add(1);
            return None;
        }
        if self.next_sweep.is_none() {
            self.next_sweep = now.checked_add(self.limits.window);
        }
        Some(self.sources.entry(ip).or_insert_with(|| Source::new(now)))
    }

    fn ban(&mut self, ip: IpAddr, now: Instant, reason: Reason) {
        let until = now.checked_add(self.limits.ban).unwrap_or(now);
        if let Some(s) = self.sources.get_mut(&key(ip)) {
            if s.banned.is_none() {
                self.in_force = self.in_force.saturating_add(1);
            }
            s.banned = Some((until, reason));
            s.dropped = 1;
        }
        self.stats.bans = self.stats.bans.saturating_add(1);
        self.stats.dropped = self.stats.dropped.saturating_add(1);
    }
}

/// What a source is counted as: an IPv4 address, or an IPv6 address's /64.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            window: Duration::from_secs(2),
            max_requests: 10,
            ban: Duration::from_secs(60),
            max_auth_failures: 3,
            auth_window: Duration::from_secs(30),
            max_sources: 4,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_over_the_limit_is_banned_once_and_dropped_until_the_ban_ends() {
        let mut g = Guard::new(limits());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..10 {
            assert_eq!(g.admit(a, t0), Admit::Pass);
        }
        assert_eq!(g.admit(a, t0), Admit::Banned(Reason::Flood));
        for _ in 0..100 {
            assert_eq!(g.admit(a, t0), Admit::Drop);
        }
        assert!(g.is_banned(a, t0));
        let bans = g.bans(t0 + Duration::from_secs(1));
        assert_eq!(bans.len(), 1);
        assert_eq!(bans[0].source, a);
        assert_eq!(bans[0].dropped, 101);
        assert_eq!(bans[0].remaining, Duration::from_secs(59));
        assert_eq!(g.stats().bans, 1);
        assert_eq!(g.stats().dropped, 101);
        // Another source is untouched.
        assert_eq!(g.admit(ip("192.0.2.2"), t0), Admit::Pass);
        // The ban ends; the sweep says so once.
        let later = t0 + Duration::from_secs(61);
        let mut ended = Vec::new();
        assert_eq!(g.bans_in_force(), 1);
        assert!(g.handle_timeout(later, |ip, r, d| ended.push((ip, r, d))));
        assert_eq!(g.bans_in_force(), 0);
        assert_eq!(ended, vec![(a, Reason::Flood, 101)]);
        assert_eq!(g.admit(a, later), Admit::Pass);
        assert!(g.bans(later).is_empty());
    }

    #[test]
    fn requests_spread_over_windows_are_not_a_flood() {
        let mut g = Guard::new(limits());
        let mut t = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..20 {
            for _ in 0..10 {
                assert_eq!(g.admit(a, t), Admit::Pass);
            }
            t += Duration::from_secs(2);
        }
    }

    #[test]
    fn failed_authentications_ban_within_their_window_only() {
        let mut g = Guard::new(limits());
        let t0 = Instant::now();
        let a = ip("198.51.100.7");
        assert!(!g.auth_failed(a, t0));
        assert!(!g.auth_failed(a, t0));
        // The window restarts: the two earlier failures are forgotten.
        let t1 = t0 + Duration::from_secs(31);
        for _ in 0..3 {
            assert!(!g.auth_failed(a, t1));
        }
        assert!(g.auth_failed(a, t1));
        assert_eq!(g.admit(a, t1), Admit::Drop);
        assert_eq!(g.bans(t1)[0].reason, Reason::AuthFailures);
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let mut g = Guard::new(limits());
        let t0 = Instant::now();
        for i in 0..10u16 {
            let a = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i));
            assert_eq!(g.admit(a, t0), Admit::Pass);
        }
        let other_host = ip("2001:db8:0:1::ffff");
        assert_eq!(g.admit(other_host, t0), Admit::Banned(Reason::Flood));
        assert!(g.is_banned(ip("2001:db8:0:1:1:2:3:4"), t0));
        assert!(!g.is_banned(ip("2001:db8:0:2::1"), t0));
        assert_eq!(g.bans(t0)[0].source, ip("2001:db8:0:1::"));
    }

    #[test]
    fn lifting_one_or_every_ban() {
        let mut g = Guard::new(limits());
        let t0 = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for s in [a, b] {
            for _ in 0..11 {
                g.admit(s, t0);
            }
        }
        assert_eq!(g.bans(t0).len(), 2);
        assert_eq!(g.lift(Some(a), t0), 1);
        assert_eq!(g.admit(a, t0), Admit::Pass);
        assert!(g.is_banned(b, t0));
        assert_eq!(g.lift(Some(a), t0), 0);
        assert_eq!(g.lift(None, t0), 1);
        assert!(g.bans(t0).is_empty());
        assert_eq!(g.bans_in_force(), 0);
    }

    #[test]
    fn memory_is_bounded_and_quiet_sources_are_forgotten() {
        let mut g = Guard::new(limits());
        let t0 = Instant::now();
        for i in 0..10u8 {
            assert_eq!(g.admit(IpAddr::from([192, 0, 2, i]), t0), Admit::Pass);
        }
        assert_eq!(g.sources.len(), 4);
        assert_eq!(g.stats().untracked, 6);
        let at = g.poll_timeout().expect("a sweep is due");
        assert_eq!(at, t0 + Duration::from_secs(2));
        assert!(
            !g.handle_timeout(at - Duration::from_millis(1), |_, _, _| {}),
            "not due yet"
        );
        assert!(g.handle_timeout(at, |_, _, _| panic!("no ban ended")));
        assert!(g.sources.is_empty());
        assert_eq!(g.poll_timeout(), None);
        // Room again.
        assert_eq!(g.admit(IpAddr::from([192, 0, 2, 9]), at), Admit::Pass);
        assert_eq!(g.sources.len(), 1);
    }

    #[test]
    fn a_ban_survives_new_limits() {
        let mut g = Guard::new(limits());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..11 {
            g.admit(a, t0);
        }
        g.set_limits(Limits {
            max_requests: 1000,
            ..limits()
        });
        assert_eq!(g.admit(a, t0), Admit::Drop);
    }
}
