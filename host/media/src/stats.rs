//! What is counted about a stream: receiver statistics per RFC 3550 (appendix A.1 and A.3 for
//! loss from sequence numbers, A.8 for interarrival jitter) kept by the relay worker for the
//! packets it receives from each end, and the [`Counters`] it publishes for the signalling side
//! (`/calls`, the end-of-call metrics and log line).

use std::sync::atomic::{AtomicU64, Ordering};

/// A sequence number jump larger than this is a restart, not a loss (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// A packet this far behind the highest sequence number seen is a late duplicate.
const MAX_MISORDER: u16 = 100;

/// Receiver statistics of the RTP packets from one end (one SSRC at a time: a new SSRC starts
/// them again, as when a PBX switches from music on hold to the phone).
#[derive(Debug, Clone, Default)]
pub struct RtpStats {
    started: bool,
    ssrc: u32,
    /// Sequence numbers: the first, the highest, and how many times they wrapped.
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    received: u64,
    /// Losses of previous SSRCs, so that a change of source does not forget them.
    lost_before: u64,
    /// Transit time of the last packet, in RTP timestamp units (wrapping).
    transit: u32,
    /// Interarrival jitter times 16, in RTP timestamp units (RFC 3550 A.8).
    jitter_q4: u32,
}

impl RtpStats {
    /// Account for an RTP packet: its sequence number, timestamp and SSRC, and its arrival time
    /// in the same clock units as the timestamp.
    pub fn on_rtp(&mut self, seq: u16, timestamp: u32, ssrc: u32, arrival: u32) {
        if !self.started || ssrc != self.ssrc {
            self.lost_before = self.lost_before.saturating_add(self.lost_current());
            self.started = true;
            self.ssrc = ssrc;
            self.base_seq = seq;
            self.max_seq = seq;
            self.cycles = 0;
            self.received = 1;
            self.transit = arrival.wrapping_sub(timestamp);
            return;
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1);
            }
            self.max_seq = seq;
        } else if delta <= u16::MAX.wrapping_sub(MAX_MISORDER) {
            // A very large jump: the sender restarted its sequence.
            self.lost_before = self.lost_before.saturating_add(self.lost_current());
            self.base_seq = seq;
            self.max_seq = seq;
            self.cycles = 0;
            self.received = 0;
        }
        // else: duplicate or reordered, counted as received (RFC 3550 A.3 does the same).
        self.received = self.received.saturating_add(1);
        self.jitter(timestamp, arrival);
    }

    fn jitter(&mut self, timestamp: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(timestamp);
        // The difference is signed: reinterpreting the wrapped u32 as i32 is the intent.
        let d = (transit.wrapping_sub(self.transit) as i32).unsigned_abs();
        self.transit = transit;
        // J += (|D| - J) / 16, with J kept times 16.
        let j = self.jitter_q4;
        self.jitter_q4 = j
            .wrapping_add(d)
            .wrapping_sub(j.wrapping_add(8) >> 4)
            .min(u32::MAX >> 1);
    }

    /// Packets expected from the sequence numbers, less those received (never below 0: late
    /// duplicates can make it negative).
    fn lost_current(&self) -> u64 {
        if !self.started {
            return 0;
        }
        let extended = (u64::from(self.cycles) << 16) | u64::from(self.max_seq);
        let expected = extended
            .saturating_sub(u64::from(self.base_seq))
            .saturating_add(1);
        expected.saturating_sub(self.received)
    }

    /// Packets lost so far (all sources).
    pub fn lost(&self) -> u64 {
        self.lost_before.saturating_add(self.lost_current())
    }

    /// Count `n` more packets as received (packets counted elsewhere in the meantime).
    pub fn add_received(&mut self, n: u64) {
        self.received = self.received.saturating_add(n);
    }

    /// The interarrival jitter, in RTP timestamp units.
    pub fn jitter_units(&self) -> u32 {
        self.jitter_q4 >> 4
    }
}

/// [`RtpStats`] field by field, to hand the state to another counter and take it back (the
/// kernel fast path keeps counting where the userspace relay left off). Laid out as the
/// kernel program's `struct rtp_state` (host/media-kernel), which embeds it as it is.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpRaw {
    pub received: u64,
    pub lost_before: u64,
    pub ssrc: u32,
    pub cycles: u32,
    pub transit: u32,
    pub jitter_q4: u32,
    pub base_seq: u16,
    pub max_seq: u16,
    /// 1 once a packet was counted (a `u32` as in the C layout).
    pub started: u32,
}

impl From<&RtpStats> for RtpRaw {
    fn from(s: &RtpStats) -> RtpRaw {
        RtpRaw {
            started: u32::from(s.started),
            ssrc: s.ssrc,
            base_seq: s.base_seq,
            max_seq: s.max_seq,
            cycles: s.cycles,
            received: s.received,
            lost_before: s.lost_before,
            transit: s.transit,
            jitter_q4: s.jitter_q4,
        }
    }
}

impl From<RtpRaw> for RtpStats {
    fn from(r: RtpRaw) -> RtpStats {
        RtpStats {
            started: r.started != 0,
            ssrc: r.ssrc,
            base_seq: r.base_seq,
            max_seq: r.max_seq,
            cycles: r.cycles,
            received: r.received,
            lost_before: r.lost_before,
            transit: r.transit,
            jitter_q4: r.jitter_q4,
        }
    }
}

/// What the relay publishes about the packets received from one end of a stream.
#[derive(Debug, Default)]
pub struct EndCounters {
    /// RTP packets and their bytes (UDP payload), relayed or not.
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub rtcp_packets: AtomicU64,
    /// Packets lost on the way to Sluice, from the sequence numbers (RFC 3550 A.3).
    pub lost: AtomicU64,
    /// Interarrival jitter, in microseconds (RFC 3550 A.8).
    pub jitter_us: AtomicU64,
    /// Packets not relayed: from a stranger, to an end on hold or with no known address.
    pub dropped: AtomicU64,
    /// SRTP or SRTCP packets that failed authentication or replay checks (also in `dropped`).
    pub srtp_failures: AtomicU64,
}

/// The counters of one stream, written by its relay worker only and read by the signalling
/// side at any time.
#[derive(Debug, Default)]
pub struct Counters {
    /// Index [`crate::End::index`]: what was received from the caller's end and the callee's.
    pub ends: [EndCounters; 2],
}

/// Add to a counter that has one writer (the stream's relay worker): a plain load and store,
/// without the locked read-modify-write that concurrent writers would need.
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// A copy of one end's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndSnapshot {
    pub packets: u64,
    pub bytes: u64,
    pub rtcp_packets: u64,
    pub lost: u64,
    pub jitter_us: u64,
    pub dropped: u64,
    pub srtp_failures: u64,
}

impl EndCounters {
    pub fn snapshot(&self) -> EndSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EndSnapshot {
            packets: r(&self.packets),
            bytes: r(&self.bytes),
            rtcp_packets: r(&self.rtcp_packets),
            lost: r(&self.lost),
            jitter_us: r(&self.jitter_us),
            dropped: r(&self.dropped),
            srtp_failures: r(&self.srtp_failures),
        }
    }
}

impl Counters {
    pub fn snapshot(&self) -> [EndSnapshot; 2] {
        [self.ends[0].snapshot(), self.ends[1].snapshot()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(stats: &mut RtpStats, seqs: &[u16]) {
        for &s in seqs {
            // 20 ms packets at 8 kHz arriving exactly on time: no jitter.
            let ts = u32::from(s) * 160;
            stats.on_rtp(s, ts, 7, ts + 1000);
        }
    }

    #[test]
    fn loss_counts_gaps_in_sequence_numbers() {
        let mut s = RtpStats::default();
        feed(&mut s, &[1, 2, 3, 5, 6, 9, 10]);
        assert_eq!(s.lost(), 3, "4, 7 and 8 are missing");
        assert_eq!(s.jitter_units(), 0, "packets on time have no jitter");
    }

    #[test]
    fn loss_across_a_sequence_wrap() {
        let mut s = RtpStats::default();
        let seqs: Vec<u16> = (65530u16..=65535).chain(0..5).filter(|&x| x != 1).collect();
        for &q in &seqs {
            s.on_rtp(q, 0, 1, 0);
        }
        assert_eq!(s.lost(), 1);
    }

    #[test]
    fn reordered_and_duplicate_packets_do_not_count_as_loss() {
        let mut s = RtpStats::default();
        feed(&mut s, &[1, 2, 4, 3, 5, 5]);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn a_new_ssrc_starts_again_and_keeps_earlier_losses() {
        let mut s = RtpStats::default();
        feed(&mut s, &[1, 3]);
        assert_eq!(s.lost(), 1);
        s.on_rtp(5000, 0, 99, 0);
        s.on_rtp(5002, 320, 99, 320);
        assert_eq!(s.lost(), 2);
    }

    #[test]
    fn jitter_follows_rfc_3550() {
        let mut s = RtpStats::default();
        // Timestamps advance 160 per packet; arrivals alternate 10 units early and late.
        let mut expected = 0f64;
        let mut last_transit = None;
        for i in 0..200u32 {
            let ts = i * 160;
            let arrival = ts + 1000 + if i % 2 == 0 { 0 } else { 20 };
            s.on_rtp(i as u16, ts, 3, arrival);
            let transit = f64::from(arrival) - f64::from(ts);
            if let Some(prev) = last_transit {
                let d: f64 = transit - prev;
                expected += (d.abs() - expected) / 16.0;
            }
            last_transit = Some(transit);
        }
        let got = f64::from(s.jitter_units());
        assert!((got - expected).abs() <= 1.0, "{got} vs {expected}");
        assert!(
            got > 15.0,
            "a steady 20-unit swing converges near 20: {got}"
        );
    }

    #[test]
    fn counters_snapshot_what_was_bumped() {
        let c = Counters::default();
        bump(&c.ends[1].packets, 3);
        bump(&c.ends[1].bytes, 516);
        assert_eq!(c.snapshot()[1].packets, 3);
        assert_eq!(c.snapshot()[1].bytes, 516);
        assert_eq!(c.snapshot()[0], EndSnapshot::default());
    }
}
