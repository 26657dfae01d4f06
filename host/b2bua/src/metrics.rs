//! Prometheus metrics the engine records, through the `metrics` facade (a no-op until the
//! binary installs a recorder). Label sets are bounded: trunk names come from the
//! configuration, methods from a fixed list, statuses are 100–699; never a number or Call-ID.

use crate::call::Direction;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use sluice_transaction::TxStats;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Answer-seizure ratio is computed over this many most recent call attempts per trunk.
const ASR_WINDOW: usize = 100;

pub const CALLS_ATTEMPTED: &str = "sluice_calls_attempted_total";
pub const CALLS_ANSWERED: &str = "sluice_calls_answered_total";
pub const CALLS_FAILED: &str = "sluice_calls_failed_total";
pub const CALLS_ACTIVE: &str = "sluice_calls_active";
pub const ANSWER_SEIZURE_RATIO: &str = "sluice_answer_seizure_ratio";
pub const POST_DIAL_DELAY: &str = "sluice_post_dial_delay_seconds";
pub const CALL_DURATION: &str = "sluice_call_duration_seconds";
pub const SIP_REQUESTS: &str = "sluice_sip_requests_total";
pub const SIP_RESPONSES: &str = "sluice_sip_responses_total";
pub const SIP_PARSE_ERRORS: &str = "sluice_sip_parse_errors_total";
pub const SIP_RETRANSMISSIONS: &str = "sluice_sip_retransmissions_total";
pub const SIP_TRANSACTION_TIMEOUTS: &str = "sluice_sip_transaction_timeouts_total";
pub const TRUNK_UP: &str = "sluice_trunk_up";

fn direction_label(d: Direction) -> &'static str {
    match d {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
    }
}

/// `4xx` style class of a final status.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "6xx",
    }
}

/// Which way a message crossed Sluice's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Received,
    Sent,
}

struct CallMetrics {
    trunk: String,
    direction: Direction,
    attempted: Counter,
    answered: Counter,
    active: Gauge,
    asr: Gauge,
    pdd: Histogram,
    duration: Histogram,
    window: VecDeque<bool>,
}

#[derive(Default)]
pub struct EngineMetrics {
    calls: HashMap<(String, Direction), CallMetrics>,
    last_tx: TxStats,
}

impl EngineMetrics {
    pub fn new(trunks: &[String]) -> EngineMetrics {
        let mut m = EngineMetrics::default();
        for t in trunks {
            m.add_trunk(t);
        }
        m
    }

    /// Register a trunk's series so that they are exported (at zero) before its first call.
    pub fn add_trunk(&mut self, trunk: &str) {
        gauge!(TRUNK_UP, "trunk" => trunk.to_string()).set(1.0);
        for d in [Direction::Outbound, Direction::Inbound] {
            self.for_call(trunk, d);
        }
    }

    fn for_call(&mut self, trunk: &str, d: Direction) -> &mut CallMetrics {
        self.calls.entry((trunk.to_string(), d)).or_insert_with(|| {
            let labels = [
                ("trunk", trunk.to_string()),
                ("direction", direction_label(d).to_string()),
            ];
            CallMetrics {
                trunk: trunk.to_string(),
                direction: d,
                attempted: counter!(CALLS_ATTEMPTED, &labels),
                answered: counter!(CALLS_ANSWERED, &labels),
                active: gauge!(CALLS_ACTIVE, &labels),
                asr: gauge!(ANSWER_SEIZURE_RATIO, &labels),
                pdd: histogram!(POST_DIAL_DELAY, &labels),
                duration: histogram!(CALL_DURATION, &labels),
                window: VecDeque::with_capacity(ASR_WINDOW),
            }
        })
    }

    pub fn call_attempted(&mut self, trunk: &str, d: Direction) {
        self.for_call(trunk, d).attempted.increment(1);
    }

    pub fn call_started(&mut self, trunk: &str, d: Direction) {
        self.for_call(trunk, d).active.increment(1.0);
    }

    pub fn call_ended(&mut self, trunk: &str, d: Direction, duration: Option<Duration>) {
        let m = self.for_call(trunk, d);
        m.active.decrement(1.0);
        if let Some(dur) = duration {
            m.duration.record(dur.as_secs_f64());
        }
    }

    pub fn post_dial_delay(&mut self, trunk: &str, d: Direction, delay: Duration) {
        self.for_call(trunk, d).pdd.record(delay.as_secs_f64());
    }

    pub fn call_answered(&mut self, trunk: &str, d: Direction) {
        let m = self.for_call(trunk, d);
        m.answered.increment(1);
        push_outcome(m, true);
    }

    pub fn call_failed(&mut self, trunk: &str, d: Direction, status: u16) {
        let m = self.for_call(trunk, d);
        push_outcome(m, false);
        let (t, dir) = (m.trunk.clone(), direction_label(m.direction));
        counter!(CALLS_FAILED, "trunk" => t, "direction" => dir, "status_class" => status_class(status))
            .increment(1);
    }

    /// A message received or sent, classified from its first bytes.
    pub fn message(way: Way, data: &[u8]) {
        let direction = match way {
            Way::Received => "received",
            Way::Sent => "sent",
        };
        if let Some(code) = data.strip_prefix(b"SIP/2.0 ").and_then(|r| r.get(..3)) {
            if let [b'1'..=b'6', b'0'..=b'9', b'0'..=b'9'] = code {
                // Three ASCII digits: the label set is bounded to 100..=699.
                let status = std::str::from_utf8(code).unwrap_or("000").to_string();
                counter!(SIP_RESPONSES, "direction" => direction, "status" => status).increment(1);
            }
            return;
        }
        let method = data.split(|&b| b == b' ').next().unwrap_or_default();
        let method = match method {
            b"INVITE" => "INVITE",
            b"ACK" => "ACK",
            b"BYE" => "BYE",
            b"CANCEL" => "CANCEL",
            b"OPTIONS" => "OPTIONS",
            b"REGISTER" => "REGISTER",
            b"INFO" => "INFO",
            b"UPDATE" => "UPDATE",
            b"PRACK" => "PRACK",
            b"SUBSCRIBE" => "SUBSCRIBE",
            b"NOTIFY" => "NOTIFY",
            b"REFER" => "REFER",
            b"MESSAGE" => "MESSAGE",
            b"PUBLISH" => "PUBLISH",
            _ => "other",
        };
        counter!(SIP_REQUESTS, "direction" => direction, "method" => method).increment(1);
    }

    pub fn parse_error(reason: &'static str) {
        counter!(SIP_PARSE_ERRORS, "reason" => reason).increment(1);
    }

    /// Publish what the transaction layer counted since the last call.
    pub fn sync_transactions(&mut self, now: TxStats) {
        // The transaction layer's counters only grow; the saturating difference is the increase.
        let last = self.last_tx;
        let add = |name: &'static str, label: &'static str, value: &'static str, d: u64| {
            if d > 0 {
                counter!(name, label => value).increment(d);
            }
        };
        add(
            SIP_RETRANSMISSIONS,
            "kind",
            "request",
            now.request_retransmissions_sent
                .saturating_sub(last.request_retransmissions_sent),
        );
        add(
            SIP_RETRANSMISSIONS,
            "kind",
            "response",
            now.response_retransmissions_sent
                .saturating_sub(last.response_retransmissions_sent),
        );
        add(
            SIP_TRANSACTION_TIMEOUTS,
            "kind",
            "client",
            now.client_timeouts.saturating_sub(last.client_timeouts),
        );
        add(
            SIP_TRANSACTION_TIMEOUTS,
            "kind",
            "server",
            now.server_timeouts.saturating_sub(last.server_timeouts),
        );
        self.last_tx = now;
    }
}

fn push_outcome(m: &mut CallMetrics, answered: bool) {
    if m.window.len() == ASR_WINDOW {
        m.window.pop_front();
    }
    m.window.push_back(answered);
    let ok = m.window.iter().filter(|&&a| a).count();
    m.asr.set(ok as f64 / m.window.len() as f64);
}
