//! Prometheus metrics the engine records, through the `metrics` facade (a no-op until the
//! binary installs a recorder). Label sets are bounded: trunk names come from the
//! configuration, methods from a fixed list, statuses are 100–699; never a number or Call-ID.

use crate::call::Direction;
use crate::config::Side;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use sluice_media::EndSnapshot;
use sluice_transaction::TxStats;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Answer-seizure ratio is computed over this many most recent call attempts per trunk.
const ASR_WINDOW: usize = 100;

pub const CALLS_ATTEMPTED: &str = "sluice_calls_attempted_total";
pub const CALLS_ANSWERED: &str = "sluice_calls_answered_total";
pub const CALLS_FAILED: &str = "sluice_calls_failed_total";
pub const UNROUTED: &str = "sluice_calls_unrouted_total";
pub const CALLS_FAILED_BY_STATUS: &str = "sluice_calls_failed_by_status_total";
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
pub const TRUNK_AUTH_FAILURES: &str = "sluice_trunk_auth_failures_total";
pub const TRUNK_FAILOVERS: &str = "sluice_trunk_failovers_total";
pub const TRUNK_REGISTERED: &str = "sluice_trunk_registered";
pub const TRUNK_DESTINATIONS_UP: &str = "sluice_trunk_destinations_up";
pub const TRUNK_BINDINGS: &str = "sluice_trunk_bindings";
pub const TRUNK_MAX_CALLS: &str = "sluice_trunk_max_calls";
pub const MEDIA_PACKETS: &str = "sluice_media_packets_total";
pub const MEDIA_BYTES: &str = "sluice_media_bytes_total";
pub const MEDIA_LOST: &str = "sluice_media_lost_packets_total";
pub const MEDIA_DROPPED: &str = "sluice_media_dropped_packets_total";
pub const SRTP_AUTH_FAILURES: &str = "sluice_srtp_auth_failures_total";
pub const MEDIA_JITTER: &str = "sluice_media_jitter_seconds";
pub const MEDIA_TIMEOUTS: &str = "sluice_media_timeouts_total";
pub const MEDIA_PORTS_FREE: &str = "sluice_media_ports_free";
pub const SDP_REFUSED: &str = "sluice_sdp_refused_total";
pub const GUARD_BANS: &str = "sluice_guard_bans_total";
pub const GUARD_BANNED: &str = "sluice_guard_banned_sources";
pub const GUARD_DROPPED: &str = "sluice_guard_dropped_packets_total";

fn direction_label(d: Direction) -> &'static str {
    match d {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
    }
}

fn side_label(s: Side) -> &'static str {
    match s {
        Side::Internal => "internal",
        Side::External => "external",
    }
}

/// The `reason` label of a refused message, from its status.
fn parse_error_kind(status: u16) -> &'static str {
    match status {
        400 => "malformed",
        416 => "uri-scheme",
        505 => "version",
        513 => "too-large",
        _ => "other",
    }
}

/// Every `reason` of `sluice_sip_parse_errors_total`.
pub const PARSE_ERROR_KINDS: [&str; 5] =
    ["malformed", "uri-scheme", "version", "too-large", "other"];

/// Failure statuses with a series of their own (the rest count as `other`).
pub const NOTABLE: [u16; 6] = [404, 408, 480, 486, 487, 503];

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
    attempted: Counter,
    answered: Counter,
    /// By status class, 1xx (unused) to 6xx, registered up front so that they show at zero.
    failed: [Counter; 6],
    /// By the statuses operators alert on ([`NOTABLE`]), then `other`.
    failed_by_status: [Counter; 7],
    active: Gauge,
    asr: Gauge,
    pdd: Histogram,
    duration: Histogram,
    window: VecDeque<bool>,
    /// Calls in progress (what `active` shows).
    live: usize,
}

impl CallMetrics {
    fn new(trunk: &str, d: Direction) -> CallMetrics {
        let labels = [
            ("trunk", trunk.to_string()),
            ("direction", direction_label(d).to_string()),
        ];
        let failed = |class: u16| {
            counter!(CALLS_FAILED, "trunk" => trunk.to_string(), "direction" => direction_label(d),
                "status_class" => status_class(class))
        };
        let by_status = |status: &'static str| {
            let c = counter!(CALLS_FAILED_BY_STATUS, "trunk" => trunk.to_string(),
                "direction" => direction_label(d), "status" => status);
            c.increment(0);
            c
        };
        let asr = gauge!(ANSWER_SEIZURE_RATIO, &labels);
        // No attempts yet: no ratio (a 0 would fire low-ASR alerts on an idle trunk).
        asr.set(f64::NAN);
        CallMetrics {
            failed_by_status: [
                by_status("404"),
                by_status("408"),
                by_status("480"),
                by_status("486"),
                by_status("487"),
                by_status("503"),
                by_status("other"),
            ],
            attempted: counter!(CALLS_ATTEMPTED, &labels),
            answered: counter!(CALLS_ANSWERED, &labels),
            failed: [
                failed(100),
                failed(200),
                failed(300),
                failed(400),
                failed(500),
                failed(600),
            ],
            active: gauge!(CALLS_ACTIVE, &labels),
            asr,
            pdd: histogram!(POST_DIAL_DELAY, &labels),
            duration: histogram!(CALL_DURATION, &labels),
            window: VecDeque::with_capacity(ASR_WINDOW),
            live: 0,
        }
    }
}

struct TrunkMetrics {
    outbound: CallMetrics,
    inbound: CallMetrics,
}

/// Request methods with a series of their own; anything else counts as `other`.
const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "other",
];
/// Statuses 100 to 699.
const STATUSES: usize = 600;

/// One peer's message counters' handles, so that counting a message looks nothing up:
/// requests by way and method (registered at start), responses by way and status (on first
/// use). The peer is a trunk, the PBX (`pbx`) or anyone else (`unknown`).
struct MessageCounters {
    trunk: Arc<str>,
    /// Per way (received, sent): per method of [`METHODS`].
    requests: [Vec<Counter>; 2],
    /// Per way: per status from 100.
    responses: [Vec<Option<Counter>>; 2],
}

impl MessageCounters {
    fn new(trunk: &str) -> MessageCounters {
        let requests = |way: &'static str| {
            METHODS
                .iter()
                .map(|&m| {
                    counter!(SIP_REQUESTS, "direction" => way, "method" => m,
                        "trunk" => trunk.to_string())
                })
                .collect()
        };
        let responses = || {
            let mut v = Vec::new();
            v.resize_with(STATUSES, || None);
            v
        };
        MessageCounters {
            trunk: Arc::from(trunk),
            requests: [requests("received"), requests("sent")],
            responses: [responses(), responses()],
        }
    }
}

/// The label of messages to and from the PBX, and of those of anyone else.
pub const PBX_PEER: &str = "pbx";
pub const UNKNOWN_PEER: &str = "unknown";
/// The slot of [`UNKNOWN_PEER`]'s counters (made first, after the PBX's).
pub const UNKNOWN_SLOT: usize = 1;
/// Addresses whose peer is remembered; past this, the memory starts afresh.
const PEER_CACHE: usize = 4096;

/// Trunks whose series the scrape leaves out: removed by a reload, their calls over. The
/// exporter cannot forget a series; [`without_retired`] filters them from its text.
static RETIRED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The exporter's text without the series of trunks a reload removed (once their calls ended).
pub fn without_retired(text: String) -> String {
    let needles: Vec<String> = match RETIRED.lock() {
        Ok(r) if !r.is_empty() => r.iter().map(|t| format!("trunk=\"{t}\"")).collect(),
        _ => return text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with('#') || !needles.iter().any(|n| line.contains(n.as_str())) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn set_retired(trunk: &str, retired: bool) {
    if let Ok(mut r) = RETIRED.lock() {
        if retired {
            r.insert(trunk.to_string());
        } else {
            r.remove(trunk);
        }
    }
}

pub struct EngineMetrics {
    calls: HashMap<Arc<str>, TrunkMetrics>,
    /// The configuration's trunks; a trunk that leaves it is retired once its calls ended.
    configured: HashSet<Arc<str>>,
    /// Per peer slot ([`EngineMetrics::peer_slot`]).
    messages: Vec<MessageCounters>,
    /// The slot of each address seen from or to the PBX or a trunk.
    peers: HashMap<std::net::SocketAddr, usize>,
    last_tx: TxStats,
    /// Packets from banned sources: a flood's worth of them, so the handle is kept.
    guard_dropped: Counter,
    /// Free media ports per side (internal, external), set after every batch of messages: the
    /// handles are kept (made on the first report, so that a Sluice without media anchoring
    /// does not export them).
    ports_free: Option<(Gauge, Gauge)>,
}

impl EngineMetrics {
    pub fn new(trunks: &[String]) -> EngineMetrics {
        let mut m = EngineMetrics {
            calls: HashMap::new(),
            configured: trunks.iter().map(|t| Arc::from(t.as_str())).collect(),
            messages: vec![
                MessageCounters::new(PBX_PEER),
                MessageCounters::new(UNKNOWN_PEER),
            ],
            peers: HashMap::new(),
            last_tx: TxStats::default(),
            guard_dropped: counter!(GUARD_DROPPED),
            ports_free: None,
        };
        // Exported at zero before the first event, so that dashboards and alerts see zeros.
        for kind in ["request", "response"] {
            counter!(SIP_RETRANSMISSIONS, "kind" => kind).increment(0);
        }
        for kind in ["client", "server"] {
            counter!(SIP_TRANSACTION_TIMEOUTS, "kind" => kind).increment(0);
        }
        for reason in PARSE_ERROR_KINDS {
            counter!(SIP_PARSE_ERRORS, "reason" => reason).increment(0);
        }
        for reason in ["flood", "auth-failures"] {
            counter!(GUARD_BANS, "reason" => reason).increment(0);
        }
        gauge!(GUARD_BANNED).set(0.0);
        for method in crate::unsolicited::METHODS {
            for answer in ["refused", "accepted"] {
                counter!("sluice_sip_unsolicited_total", "method" => method, "answer" => answer)
                    .increment(0);
            }
        }
        for t in trunks {
            m.add_trunk(t);
        }
        m
    }

    /// A reload's trunks: new ones are exported at zero; the series of removed ones leave the
    /// scrape once their last call ended.
    pub fn set_trunks(&mut self, trunks: &[&str]) {
        self.configured = trunks.iter().map(|&t| Arc::from(t)).collect();
        for t in trunks {
            if !self.calls.contains_key(*t) {
                self.add_trunk(t);
            }
        }
        let gone: Vec<Arc<str>> = self.calls.keys().cloned().collect();
        for t in gone {
            self.retire_if_gone(&t);
        }
    }

    /// Stop exporting a trunk the configuration no longer has, once no call of it is left.
    fn retire_if_gone(&mut self, trunk: &str) {
        if self.configured.contains(trunk) || trunk == "unknown" {
            return;
        }
        let live = self
            .calls
            .get(trunk)
            .map_or(0, |t| t.outbound.live.saturating_add(t.inbound.live));
        if live == 0 {
            self.calls.remove(trunk);
            set_retired(trunk, true);
        }
    }

    /// The slot of a peer's message counters (`name`: a trunk's, [`PBX_PEER`] or
    /// [`UNKNOWN_PEER`]).
    pub fn peer_slot(&mut self, name: &str) -> usize {
        if let Some(i) = self.messages.iter().position(|m| &*m.trunk == name) {
            return i;
        }
        self.messages.push(MessageCounters::new(name));
        self.messages.len().saturating_sub(1)
    }

    /// The slot remembered for `addr`.
    pub fn known_peer(&self, addr: std::net::SocketAddr) -> Option<usize> {
        self.peers.get(&addr).copied()
    }

    pub fn remember_peer(&mut self, addr: std::net::SocketAddr, slot: usize) {
        if self.peers.len() >= PEER_CACHE {
            self.peers.clear();
        }
        self.peers.insert(addr, slot);
    }

    /// Addresses may belong to other peers now (a reload).
    pub fn forget_peers(&mut self) {
        self.peers.clear();
    }

    /// Register a trunk's series so that they are exported (at zero) before its first call.
    pub fn add_trunk(&mut self, trunk: &str) {
        set_retired(trunk, false);
        self.peer_slot(trunk);
        gauge!(TRUNK_UP, "trunk" => trunk.to_string()).set(1.0);
        counter!(UNROUTED, "trunk" => trunk.to_string(), "reason" => "unknown-did").increment(0);
        for reason in ["max-duration", "session-expired", "refresh-failed"] {
            counter!("sluice_calls_cut_total", "trunk" => trunk.to_string(), "reason" => reason)
                .increment(0);
        }
        self.calls
            .entry(Arc::from(trunk))
            .or_insert_with(|| TrunkMetrics {
                outbound: CallMetrics::new(trunk, Direction::Outbound),
                inbound: CallMetrics::new(trunk, Direction::Inbound),
            });
    }

    fn for_call(&mut self, trunk: &str, d: Direction) -> Option<&mut CallMetrics> {
        if !self.calls.contains_key(trunk) {
            // A trunk removed by a reload while its calls go on, or `unknown`.
            self.add_trunk(trunk);
        }
        let t = self.calls.get_mut(trunk)?;
        Some(match d {
            Direction::Outbound => &mut t.outbound,
            Direction::Inbound => &mut t.inbound,
        })
    }

    pub fn call_attempted(&mut self, trunk: &str, d: Direction) {
        if let Some(m) = self.for_call(trunk, d) {
            m.attempted.increment(1);
        }
    }

    pub fn call_started(&mut self, trunk: &str, d: Direction) {
        if let Some(m) = self.for_call(trunk, d) {
            m.active.increment(1.0);
            m.live = m.live.saturating_add(1);
        }
    }

    pub fn call_ended(&mut self, trunk: &str, d: Direction, duration: Option<Duration>) {
        if let Some(m) = self.for_call(trunk, d) {
            m.active.decrement(1.0);
            m.live = m.live.saturating_sub(1);
            if let Some(dur) = duration {
                m.duration.record(dur.as_secs_f64());
            }
        }
        self.retire_if_gone(trunk);
    }

    pub fn post_dial_delay(&mut self, trunk: &str, d: Direction, delay: Duration) {
        if let Some(m) = self.for_call(trunk, d) {
            m.pdd.record(delay.as_secs_f64());
        }
    }

    pub fn call_answered(&mut self, trunk: &str, d: Direction) {
        if let Some(m) = self.for_call(trunk, d) {
            m.answered.increment(1);
            push_outcome(m, true);
        }
    }

    pub fn call_failed(&mut self, trunk: &str, d: Direction, status: u16) {
        if let Some(m) = self.for_call(trunk, d) {
            push_outcome(m, false);
            let class = usize::from(status / 100).saturating_sub(1).min(5);
            if let Some(c) = m.failed.get(class) {
                c.increment(1);
            }
            let notable = NOTABLE
                .iter()
                .position(|&s| s == status)
                .unwrap_or(NOTABLE.len());
            if let Some(c) = m.failed_by_status.get(notable) {
                c.increment(1);
            }
        }
    }

    /// A message received from or sent to the peer of `slot`, classified from its first bytes.
    pub fn message(&mut self, way: Way, slot: usize, data: &[u8]) {
        let (w, direction) = match way {
            Way::Received => (0, "received"),
            Way::Sent => (1, "sent"),
        };
        let Some(peer) = self.messages.get_mut(slot) else {
            return;
        };
        let (requests, responses, trunk) = (&peer.requests, &mut peer.responses, &peer.trunk);
        if let Some(code) = data.strip_prefix(b"SIP/2.0 ").and_then(|r| r.get(..3)) {
            if let [b'1'..=b'6', b'0'..=b'9', b'0'..=b'9'] = code {
                // Three ASCII digits: the label set is bounded to 100..=699.
                let slot = std::str::from_utf8(code)
                    .ok()
                    .and_then(|c| c.parse::<usize>().ok())
                    .and_then(|status| status.checked_sub(100))
                    .and_then(|i| responses.get_mut(w)?.get_mut(i));
                if let Some(slot) = slot {
                    let counter = slot.get_or_insert_with(|| {
                        let status = std::str::from_utf8(code).unwrap_or("000").to_string();
                        counter!(SIP_RESPONSES, "direction" => direction, "status" => status,
                            "trunk" => trunk.to_string())
                    });
                    counter.increment(1);
                }
            }
            return;
        }
        let method = data.split(|&b| b == b' ').next().unwrap_or_default();
        let m = METHODS
            .iter()
            .position(|name| name.as_bytes() == method)
            .unwrap_or(METHODS.len().saturating_sub(1));
        if let Some(counter) = requests.get(w).and_then(|r| r.get(m)) {
            counter.increment(1);
        }
    }

    /// What one stream received from each side, when its call ended (counted per trunk and
    /// the side the packets came from).
    pub fn media_ended(&mut self, trunk: &str, ends: [(Side, &EndSnapshot); 2]) {
        for (side, e) in ends {
            let labels = [
                ("trunk", trunk.to_string()),
                ("side", side_label(side).to_string()),
            ];
            counter!(MEDIA_PACKETS, &labels).increment(e.packets);
            counter!(MEDIA_BYTES, &labels).increment(e.bytes);
            counter!(MEDIA_LOST, &labels).increment(e.lost);
            counter!(MEDIA_DROPPED, &labels).increment(e.dropped);
            if e.srtp_failures > 0 {
                counter!(SRTP_AUTH_FAILURES, &labels).increment(e.srtp_failures);
            }
            if e.packets > 0 {
                histogram!(MEDIA_JITTER, &labels).record(e.jitter_us as f64 / 1e6);
            }
        }
    }

    /// Whether a trunk can take calls now (keep-alive, registration, gateway binding), and
    /// the rest of its status: registered (register trunks), destinations answering,
    /// gateways registered (accept-register), its call limit.
    pub fn trunk_state(&mut self, trunk: &str, up: bool, status: &crate::TrunkStatus) {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        gauge!(TRUNK_UP, "trunk" => trunk.to_string()).set(flag(up));
        if status.kind == "register" {
            gauge!(TRUNK_REGISTERED, "trunk" => trunk.to_string())
                .set(flag(status.status == "registered"));
        }
        if status.kind == "accept-register" {
            gauge!(TRUNK_BINDINGS, "trunk" => trunk.to_string()).set(status.bindings as f64);
        } else {
            let live = status
                .destinations
                .iter()
                .filter(|d| !d.ends_with("(down)"))
                .count();
            gauge!(TRUNK_DESTINATIONS_UP, "trunk" => trunk.to_string()).set(live as f64);
        }
        gauge!(TRUNK_MAX_CALLS, "trunk" => trunk.to_string()).set(status.max_calls as f64);
    }

    /// A trunk's credentials refused (`request`: Sluice's requests to it; `register-in`: a
    /// gateway's REGISTER to Sluice).
    pub fn auth_failed(&mut self, trunk: &str, kind: &'static str) {
        counter!(TRUNK_AUTH_FAILURES, "trunk" => trunk.to_string(), "kind" => kind).increment(1);
    }

    /// A call refused by tenant routing (`reason`: see `NoRoute::counted_as`).
    pub fn unrouted(&mut self, trunk: &str, reason: &'static str) {
        counter!(UNROUTED, "trunk" => trunk.to_string(), "reason" => reason).increment(1);
    }

    /// A call moved to the trunk's next destination.
    pub fn failover(&mut self, trunk: &str) {
        counter!(TRUNK_FAILOVERS, "trunk" => trunk.to_string()).increment(1);
    }

    /// A call ended because its media fell silent.
    pub fn media_timeout(&mut self, trunk: &str) {
        counter!(MEDIA_TIMEOUTS, "trunk" => trunk.to_string()).increment(1);
    }

    /// Free RTP/RTCP port pairs per side.
    pub fn media_ports_free(&mut self, internal: usize, external: usize) {
        let (i, e) = self.ports_free.get_or_insert_with(|| {
            (
                gauge!(MEDIA_PORTS_FREE, "side" => "internal"),
                gauge!(MEDIA_PORTS_FREE, "side" => "external"),
            )
        });
        i.set(internal as f64);
        e.set(external as f64);
    }

    /// An SDP that could not be anchored (the request got 488, or the response's body was
    /// removed).
    pub fn sdp_refused(&mut self, reason: &'static str) {
        counter!(SDP_REFUSED, "reason" => reason).increment(1);
    }

    pub fn guard_banned(&mut self, reason: &'static str) {
        counter!(GUARD_BANS, "reason" => reason).increment(1);
    }

    pub fn guard_dropped(&mut self) {
        self.guard_dropped.increment(1);
    }

    pub fn guard_bans_in_force(&mut self, n: usize) {
        gauge!(GUARD_BANNED).set(n as f64);
    }

    /// A message refused as it arrived, counted by what it was answered (or would have been):
    /// a bounded set, known from the start (the log line has the exact reason).
    pub fn parse_error(status: u16) {
        counter!(SIP_PARSE_ERRORS, "reason" => parse_error_kind(status)).increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_trunk_leaves_the_scrape_once_its_calls_ended() {
        let mut m = EngineMetrics::new(&["keep-a".into(), "gone-a".into()]);
        m.call_started("gone-a", Direction::Outbound);
        m.set_trunks(&["keep-a"]);
        let text = "# HELP sluice_trunk_up x\nsluice_trunk_up{trunk=\"gone-a\"} 1\n\
                    sluice_trunk_up{trunk=\"keep-a\"} 1\n";
        assert_eq!(without_retired(text.into()), text, "its call goes on");
        m.call_ended("gone-a", Direction::Outbound, None);
        assert_eq!(
            without_retired(text.into()),
            "# HELP sluice_trunk_up x\nsluice_trunk_up{trunk=\"keep-a\"} 1\n"
        );
        m.set_trunks(&["keep-a", "gone-a"]);
        assert_eq!(without_retired(text.into()), text, "configured again");
    }
}
