//! Every metric family Sluice exports, described once at start (Prometheus `# HELP` lines, which
//! `promtool check metrics` requires), and the process-wide gauges: build information, the
//! drain, and the `process_*` family (CPU, memory, file descriptors, start time).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// (name, kind, help); kind: `c` counter, `g` gauge, `h` histogram.
const FAMILIES: &[(&str, char, &str)] = &[
    ("sluice_calls_attempted_total", 'c', "New calls received, by trunk and direction."),
    ("sluice_calls_answered_total", 'c', "Calls answered (2xx), by trunk and direction."),
    ("sluice_calls_failed_total", 'c', "Calls that ended without an answer, by trunk, direction and status class."),
    ("sluice_calls_failed_by_status_total", 'c', "Calls that failed with a status that matters to operators (404, 408, 480, 486, 487, 503; other), by trunk and direction."),
    ("sluice_calls_unrouted_total", 'c', "Calls tenant routing refused, by trunk (where the call came from or was headed; unknown) and reason: unknown-did (404), no-tenant (403), no-route (404), caller-id (403)."),
    ("sluice_calls_cut_total", 'c', "Answered calls Sluice ended itself, by trunk and reason (max-duration, session-expired, refresh-failed)."),
    ("sluice_calls_active", 'g', "Calls in progress, by trunk and direction."),
    ("sluice_answer_seizure_ratio", 'g', "Answered share of the last 100 attempts (NaN before the first); compute ASR over time from the counters."),
    ("sluice_post_dial_delay_seconds", 'h', "From the INVITE to the first ringing or answer."),
    ("sluice_call_duration_seconds", 'h', "Duration of answered calls."),
    ("sluice_sip_requests_total", 'c', "SIP requests received and sent, by method and peer (a trunk, pbx or unknown)."),
    ("sluice_sip_responses_total", 'c', "SIP responses received and sent, by status and peer (a trunk, pbx or unknown)."),
    ("sluice_sip_unsolicited_total", 'c', "Requests outside any dialog that start no call (NOTIFY, MESSAGE, SUBSCRIBE, PUBLISH, REFER), by method and answer (refused, accepted)."),
    ("sluice_stir_signed_total", 'c', "Outbound calls signed with a STIR/SHAKEN Identity header, by trunk and attestation (A, B, C)."),
    ("sluice_stir_unsigned_total", 'c', "Outbound calls to a signing trunk that left unsigned, by trunk and reason (attestation-none, no-number)."),
    ("sluice_stir_verified_total", 'c', "Calls from verifying trunks by STIR/SHAKEN verification result (passed, no-identity, or the failure: malformed, unsupported, bad-signature, stale, future, orig-mismatch, dest-mismatch, certificate-url, fetch-failed, certificate-unreadable, untrusted, certificate-expired, no-tnauthlist)."),
    ("sluice_stir_certificate_fetches_total", 'c', "STIR/SHAKEN certificate lookups by result: fetched (over HTTPS), cached, failed."),
    ("sluice_sip_parse_errors_total", 'c', "Messages refused as they arrived, by what they were answered: malformed (400), uri-scheme (416), version (505), too-large (513), other."),
    ("sluice_sip_retransmissions_total", 'c', "Retransmissions Sluice sent, of requests and of responses."),
    ("sluice_sip_transaction_timeouts_total", 'c', "Transactions that timed out, client and server."),
    ("sluice_trunk_up", 'g', "1 while the trunk can take calls (keep-alive answered, registered, a gateway bound)."),
    ("sluice_trunk_registered", 'g', "1 while a register trunk is registered."),
    ("sluice_trunk_destinations_up", 'g', "A trunk's destinations answering keep-alive."),
    ("sluice_trunk_bindings", 'g', "Gateway contacts registered to an accept-register trunk."),
    ("sluice_trunk_max_calls", 'g', "A trunk's call limit (0: none)."),
    ("sluice_trunk_auth_failures_total", 'c', "Failed digest authentications, of Sluice toward the trunk and of gateways toward Sluice."),
    ("sluice_trunk_failovers_total", 'c', "Calls moved to a trunk's next destination."),
    ("sluice_media_packets_total", 'c', "RTP and RTCP packets relayed, by trunk and the side they came from."),
    ("sluice_media_bytes_total", 'c', "RTP and RTCP bytes relayed, by trunk and side."),
    ("sluice_media_lost_packets_total", 'c', "RTP packets lost before Sluice (RFC 3550, from sequence numbers)."),
    ("sluice_srtp_auth_failures_total", 'c', "SRTP and SRTCP packets dropped for a wrong authentication tag or a replay."),
    ("sluice_media_dropped_packets_total", 'c', "Media packets not relayed (strangers, hold, no address yet, not RTP)."),
    ("sluice_media_jitter_seconds", 'h', "Each stream's interarrival jitter at its end (RFC 3550)."),
    ("sluice_media_timeouts_total", 'c', "Calls ended because their media went silent."),
    ("sluice_media_ports_free", 'g', "Free RTP/RTCP port pairs, by side."),
    ("sluice_media_kernel_packets_total", 'c', "RTP and RTCP packets the kernel fast path relayed (media.kernel_forwarding)."),
    ("sluice_media_kernel_directions", 'g', "Stream directions the kernel fast path relays now."),
    ("sluice_sdp_refused_total", 'c', "Offers and answers refused, by reason."),
    ("sluice_guard_bans_total", 'c', "Sources banned by the flood guard, by reason."),
    ("sluice_guard_banned_sources", 'g', "Bans in force."),
    ("sluice_guard_dropped_packets_total", 'c', "Packets from banned sources, dropped unread."),
    ("sluice_config_reloads_total", 'c', "Reloads of the configuration and plugins, by result."),
    ("sluice_plugin_invocations_total", 'c', "Plugin hook calls, by plugin, version and hook."),
    ("sluice_plugin_errors_total", 'c', "Plugin failures, by plugin, version and kind."),
    ("sluice_plugin_call_duration_seconds", 'h', "Time in a plugin's hook, by plugin and version."),
    ("sluice_plugin_loaded", 'g', "1 while a plugin version is loaded."),
    ("sluice_plugin_generation", 'g', "The plugin generation new calls use."),
    ("sluice_plugin_counter_total", 'c', "Counters plugins keep themselves."),
    ("sluice_plugin_log_dropped_total", 'c', "Plugin log lines over the plugin's budget, dropped."),
    ("sluice_tls_handshake_failures_total", 'c', "SIP over TLS handshakes that failed, by way (accepted, opened) and reason (timeout, wrong-name, unknown-issuer, expired, bad-certificate, closed, other)."),
    ("sluice_tls_certificate_expiry_timestamp_seconds", 'g', "When each configured certificate (tls listeners, trunks' client certificates) stops being valid (UNIX seconds): alert well before."),
    ("sluice_build_info", 'g', "Always 1; the version Sluice was built as."),
    ("sluice_draining", 'g', "1 while Sluice drains: new calls are refused."),
];

/// Describe every family and start the process-wide gauges. Call once the recorder is
/// installed.
pub fn describe(process: &metrics_process::Collector) {
    for &(name, kind, help) in FAMILIES {
        let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
        match (kind, unit) {
            ('c', _) => describe_counter!(name, help),
            ('g', _) => describe_gauge!(name, help),
            (_, Some(u)) => describe_histogram!(name, u, help),
            _ => describe_histogram!(name, help),
        }
    }
    metrics::gauge!("sluice_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!("sluice_draining").set(0.0);
    process.describe();
    process.collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family the code registers is described (and nothing is described twice).
    #[test]
    fn every_family_in_the_code_is_described() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut names = std::collections::BTreeSet::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "rs")
                    && !p.ends_with("metrics_help.rs")
                {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for piece in text.split('"').skip(1).step_by(2) {
                        if piece.starts_with("sluice_")
                            && piece.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                            && piece.len() > 10
                        {
                            names.insert(piece.to_string());
                        }
                    }
                }
            }
        }
        let described: std::collections::BTreeSet<_> =
            FAMILIES.iter().map(|(n, _, _)| n.to_string()).collect();
        assert_eq!(described.len(), FAMILIES.len(), "described twice");
        let missing: Vec<_> = names.difference(&described).collect();
        assert!(missing.is_empty(), "no HELP for {missing:?}");
    }

    /// The README's metrics list names every family, and no family that is not exported.
    #[test]
    fn the_readme_lists_every_family() {
        let readme = include_str!("../../../README.md");
        for (name, _, _) in FAMILIES {
            assert!(
                readme.contains(&format!("`{name}`")) || readme.contains(&format!("`{name}{{")),
                "{name} is missing from the README"
            );
        }
        for piece in readme.split('`').skip(1).step_by(2) {
            // A family with labels (`sluice_build_info{version}`) is named by what precedes them.
            let piece = piece.split('{').next().unwrap_or(piece);
            if piece.starts_with("sluice_")
                && piece
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                assert!(
                    FAMILIES.iter().any(|(n, _, _)| *n == piece),
                    "the README names {piece}, which Sluice does not export"
                );
            }
        }
    }
}
