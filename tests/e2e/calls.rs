//! Calls through Sluice between SIPp peers: outbound (PBX -> trunk) and inbound (trunk -> PBX),
//! CANCEL, BYE from the callee, re-INVITE, TCP, and topology hiding.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use sluice_e2e::{header, Lab, LabAddrs, Peer, SippResult, Transport};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn assert_all_ok(what: &str, r: &SippResult, calls: u64, lab: &Lab) {
    assert_eq!(
        (r.successful, r.failed, r.status),
        (calls, 0, Some(0)),
        "{what}: {r:?}\nsluice log:\n{}",
        lab.log_tail()
    );
}

#[derive(Clone, Copy)]
enum Dir {
    /// PBX calls out through the internal side to the trunk.
    Outbound,
    /// The trunk calls in through the external side to the PBX.
    Inbound,
}

/// Run `calls` calls with the given caller and callee scenarios.
fn run_calls(
    lab: &Lab,
    dir: Dir,
    uac: &str,
    uas: &str,
    calls: u64,
    rate: u64,
    hold_ms: u64,
) -> (SippResult, SippResult) {
    let (caller, callee, target) = match dir {
        Dir::Outbound => (Peer::Pbx, Peer::Trunk, lab.internal()),
        Dir::Inbound => (Peer::Trunk, Peer::Pbx, lab.external()),
    };
    let m = calls.to_string();
    let uas = lab.sipp("uas", uas, callee, None, &["-m", &m]);
    let r = rate.to_string();
    let d = hold_ms.to_string();
    let uac = lab.sipp(
        "uac",
        uac,
        caller,
        Some(&target),
        &["-m", &m, "-r", &r, "-l", &m, "-d", &d, "-s", "15552001111"],
    );
    let uac_result = uac.wait(LIMIT);
    let uas_result = uas.wait(Duration::from_secs(10));
    (uac_result, uas_result)
}

#[test]
fn outbound_calls_udp() {
    let lab = Lab::start(1, Transport::Udp);
    let (uac, uas) = run_calls(&lab, Dir::Outbound, "uac.xml", "uas.xml", 100, 50, 100);
    assert_all_ok("PBX caller", &uac, 100, &lab);
    assert_all_ok("trunk callee", &uas, 100, &lab);
}

#[test]
fn inbound_calls_udp() {
    let lab = Lab::start(2, Transport::Udp);
    let (uac, uas) = run_calls(&lab, Dir::Inbound, "uac.xml", "uas.xml", 100, 50, 100);
    assert_all_ok("trunk caller", &uac, 100, &lab);
    assert_all_ok("PBX callee", &uas, 100, &lab);
}

#[test]
fn outbound_calls_tcp() {
    let lab = Lab::start(3, Transport::Tcp);
    let (uac, uas) = run_calls(&lab, Dir::Outbound, "uac.xml", "uas.xml", 30, 30, 100);
    assert_all_ok("PBX caller over TCP", &uac, 30, &lab);
    assert_all_ok("trunk callee over TCP", &uas, 30, &lab);
}

#[test]
fn cancel_before_answer() {
    let lab = Lab::start(4, Transport::Udp);
    let (uac, uas) = run_calls(
        &lab,
        Dir::Outbound,
        "uac_cancel.xml",
        "uas_cancelled.xml",
        10,
        10,
        0,
    );
    assert_all_ok("cancelling caller", &uac, 10, &lab);
    assert_all_ok("cancelled callee", &uas, 10, &lab);
}

#[test]
fn bye_from_callee() {
    let lab = Lab::start(5, Transport::Udp);
    let (uac, uas) = run_calls(
        &lab,
        Dir::Inbound,
        "uac_wait_bye.xml",
        "uas_bye.xml",
        10,
        10,
        200,
    );
    assert_all_ok("caller", &uac, 10, &lab);
    assert_all_ok("callee hanging up", &uas, 10, &lab);
}

#[test]
fn reinvite_mid_call() {
    let lab = Lab::start(6, Transport::Udp);
    let (uac, uas) = run_calls(
        &lab,
        Dir::Outbound,
        "uac_reinvite.xml",
        "uas_reinvite.xml",
        10,
        10,
        0,
    );
    assert_all_ok("re-INVITing caller", &uac, 10, &lab);
    assert_all_ok("callee", &uas, 10, &lab);
}

#[test]
fn topology_is_hidden_both_ways() {
    let lab = Lab::start(7, Transport::Udp);
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "5"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "5", "-r", "5", "-d", "50"],
    );
    let uac_log = uac.messages_path().to_path_buf();
    let uas_log = uas.messages_path().to_path_buf();
    assert_all_ok("caller", &uac.wait(LIMIT), 5, &lab);
    assert_all_ok("callee", &uas.wait(Duration::from_secs(10)), 5, &lab);
    let uac_text = std::fs::read_to_string(&uac_log).unwrap();
    let uas_text = std::fs::read_to_string(&uas_log).unwrap();
    let caller_sent = sluice_e2e::parse_message_log(&uac_text, "sent");
    let caller_got = sluice_e2e::parse_message_log(&uac_text, "received");
    let callee_sent = sluice_e2e::parse_message_log(&uas_text, "sent");
    let callee_got = sluice_e2e::parse_message_log(&uas_text, "received");
    assert!(
        callee_got.len() >= 15,
        "callee saw INVITE, ACK, BYE per call: {}",
        callee_got.len()
    );
    assert!(
        caller_got.len() >= 15,
        "caller saw responses: {}",
        caller_got.len()
    );

    let call_ids = |msgs: &[String]| -> Vec<String> {
        msgs.iter()
            .filter_map(|m| {
                m.lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("call-id:"))
            })
            .map(|l| l[8..].trim().to_string())
            .collect()
    };
    let caller_ids = call_ids(&caller_sent);
    let callee_ids = call_ids(&callee_sent);
    assert!(!caller_ids.is_empty() && !callee_ids.is_empty());

    // Media is anchored (the lab's trunk has the default `media = "anchor"`): the SDP bodies
    // name Sluice too, so whole messages are checked, bodies included.
    let sluice_ip = lab.internal().split(':').next().unwrap().to_string();
    for (side, got) in [("trunk", &callee_got), ("PBX", &caller_got)] {
        assert!(
            got.iter()
                .any(|m| m.contains(&format!("\nc=IN IP4 {sluice_ip}\n"))),
            "the {side} side's SDP names Sluice"
        );
    }
    // What the trunk side received: nothing of the PBX side.
    for m in &callee_got {
        assert!(
            !m.contains(&lab.pbx_ip()),
            "PBX address leaked to the trunk:\n{m}"
        );
        assert!(
            !m.contains(&lab.internal()),
            "internal listener leaked to the trunk:\n{m}"
        );
        for id in &caller_ids {
            assert!(
                !m.contains(id.as_str()),
                "caller Call-ID leaked to the trunk:\n{m}"
            );
        }
        let vias: Vec<&str> = m.lines().filter(|l| l.starts_with("Via:")).collect();
        assert_eq!(vias.len(), 1, "exactly Sluice's Via toward the trunk:\n{m}");
        assert!(vias[0].contains(&lab.external()), "{m}");
        assert!(!m.to_ascii_lowercase().contains("record-route"), "{m}");
        assert!(
            !m.contains("SIPpTag00"),
            "caller's tag leaked to the trunk:\n{m}"
        );
    }
    // What the PBX side received: nothing of the trunk side.
    for m in &caller_got {
        assert!(
            !m.contains(&lab.trunk_ip()),
            "trunk address leaked to the PBX:\n{m}"
        );
        assert!(
            !m.contains(&lab.external()),
            "external listener leaked to the PBX:\n{m}"
        );
        for id in &callee_ids {
            assert!(
                !m.contains(id.as_str()),
                "callee Call-ID leaked to the PBX:\n{m}"
            );
        }
        assert!(
            !m.contains("SIPpTag01"),
            "callee's tag leaked to the PBX:\n{m}"
        );
        if let Some(c) = m.lines().find(|l| l.starts_with("Contact:")) {
            assert!(
                c.contains(&lab.internal()),
                "Contact toward the PBX is Sluice's: {c}"
            );
        }
    }
    // The SDP's origin keeps its user name and session id: only its address is Sluice's.
    assert!(callee_got.iter().any(|m| m.contains("o=user1 53655765")));
    assert!(caller_got.iter().any(|m| m.contains("o=user2 53655765")));
}

#[test]
fn outbound_calls_ipv6() {
    let lab = Lab::start_with(LabAddrs::v6(15060), Transport::Udp);
    let (uac, uas) = run_calls(&lab, Dir::Outbound, "uac.xml", "uas.xml", 20, 20, 50);
    assert_all_ok("PBX caller over IPv6", &uac, 20, &lab);
    assert_all_ok("trunk callee over IPv6", &uas, 20, &lab);
}

#[test]
fn inbound_calls_tcp_ipv6() {
    let lab = Lab::start_with(LabAddrs::v6(15160), Transport::Tcp);
    let (uac, uas) = run_calls(&lab, Dir::Inbound, "uac.xml", "uas.xml", 20, 20, 50);
    assert_all_ok("trunk caller over TCP/IPv6", &uac, 20, &lab);
    assert_all_ok("PBX callee over TCP/IPv6", &uas, 20, &lab);
}

#[test]
fn a_tcp_trunk_that_refuses_connections_fails_the_call_within_a_second() {
    let addrs = LabAddrs::v4(8);
    // The trunk over TCP, on a port where nothing listens: every connect is refused.
    let trunk = format!(
        "host = \"{}\"\nport = {}\ntransport = \"udp\"",
        addrs.trunk_ip, addrs.trunk_port
    );
    let text = Lab::config_for(&addrs, Transport::Udp);
    assert!(text.contains(&trunk));
    let text = text.replace(
        &trunk,
        &format!(
            "host = \"{}\"\nport = 5999\ntransport = \"tcp\"",
            addrs.trunk_ip
        ),
    );
    let lab = Lab::start_with_text(addrs, Transport::Udp, &text);
    let started = std::time::Instant::now();
    let uac = lab.sipp(
        "uac",
        "uac_503.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1"],
    );
    let r = uac.wait(LIMIT);
    let took = started.elapsed();
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}\n{}", lab.log());
    // SIPp's own start and exit included: the answer came at once, not after Timer B (32 s).
    assert!(took < Duration::from_secs(1), "the 503 took {took:?}");
    assert!(lab.log().contains("tcp connect failed"), "{}", lab.log());
}

/// A trunk's maximum call duration ends an answered call that neither side hangs up (both
/// SIPp peers wait for a BYE): both get Sluice's, and the cut is counted.
#[test]
fn a_hung_call_is_ended_at_the_trunks_maximum_duration() {
    let a = sluice_e2e::LabAddrs::v4(14);
    let text = Lab::config_for(&a, Transport::Udp)
        .replace("name = \"loop\"", "name = \"loop\"\nmax_call_seconds = 1");
    let lab = Lab::start_with_text(a, Transport::Udp, &text);
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "2"]);
    let started = std::time::Instant::now();
    let uac = lab.sipp(
        "uac",
        "uac_wait_bye.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "2", "-r", "10"],
    );
    let r = uac.wait(Duration::from_secs(30));
    assert_eq!((r.successful, r.failed), (2, 0), "{r:?}\n{}", lab.log());
    assert_eq!(uas.wait(Duration::from_secs(10)).successful, 2);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ended by the limit, not a timeout"
    );
    let (_, text) = sluice_e2e::http("GET", &lab.admin(), "/metrics", None, "");
    let m = sluice_e2e::parse_prometheus(&text);
    assert_eq!(
        sluice_e2e::metric(
            &m,
            "sluice_calls_cut_total",
            &[("trunk", "loop"), ("reason", "max-duration")]
        ),
        Some(2.0)
    );
}

/// A trunk that requires 100rel for its 183 with SDP (SIPp checks that Sluice's INVITE offers
/// 100rel and that Sluice's PRACK acknowledges RSeq 1), toward a PBX without 100rel: the PBX
/// gets a plain 183 with the early media SDP, and every call completes.
#[test]
fn a_trunks_reliable_183_reaches_a_pbx_without_100rel() {
    let lab = Lab::start(45, Transport::Udp);
    let uas = lab.sipp("uas", "uas_100rel.xml", Peer::Trunk, None, &["-m", "5"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "5", "-r", "5", "-d", "100", "-s", "15552001111"],
    );
    let log = uac.messages_path().to_path_buf();
    assert_all_ok("PBX caller", &uac.wait(LIMIT), 5, &lab);
    assert_all_ok(
        "trunk requiring 100rel",
        &uas.wait(Duration::from_secs(10)),
        5,
        &lab,
    );
    let got = sluice_e2e::parse_message_log(&std::fs::read_to_string(log).unwrap(), "received");
    let early: Vec<&String> = got
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 183"))
        .collect();
    assert_eq!(early.len(), 5, "one 183 per call");
    for m in early {
        let lower = m.to_ascii_lowercase();
        assert!(!lower.contains("rseq:") && !lower.contains("100rel"), "{m}");
        assert!(m.contains("m=audio"), "early media SDP: {m}");
    }
}

/// The same trunk toward a PBX that supports 100rel: the PBX gets the 183 reliably (SIPp
/// checks Require: 100rel and RSeq) and PRACKs it; both PRACKs are answered on their own leg.
#[test]
fn a_trunks_reliable_183_reaches_a_pbx_with_100rel_reliably() {
    let lab = Lab::start(46, Transport::Udp);
    let (uac, uas) = run_calls(
        &lab,
        Dir::Outbound,
        "uac_100rel.xml",
        "uas_100rel.xml",
        5,
        5,
        100,
    );
    assert_all_ok("PBX caller with 100rel", &uac, 5, &lab);
    assert_all_ok("trunk requiring 100rel", &uas, 5, &lab);
}

/// The lab's configuration with a short minimum session interval (RFC 4028 asks for 90 s;
/// the lab uses 20 s to stay quick).
fn timer_lab(block: u8) -> Lab {
    let a = LabAddrs::v4(block);
    let text = Lab::config_for(&a, Transport::Udp).replacen(
        "[sip]\n",
        "[sip]\nmin_session_expires = 10\n",
        1,
    );
    Lab::start_with_text(a, Transport::Udp, &text)
}

/// Session refreshes crossing Sluice, then a caller that stops refreshing: Sluice ends the call
/// on both legs (SIPp's PBX and trunk each expect its BYE) before the session expires.
#[test]
fn a_call_whose_session_refreshes_stop_is_ended_on_both_legs() {
    let lab = timer_lab(48);
    let started = std::time::Instant::now();
    let (uac, uas) = run_calls(
        &lab,
        Dir::Outbound,
        "uac_timer.xml",
        "uas_timer.xml",
        1,
        1,
        0,
    );
    assert_all_ok("PBX refreshing once", &uac, 1, &lab);
    assert_all_ok("trunk with timers", &uas, 1, &lab);
    // 8 s to the refresh, then 20 s less min(32, 20/3): the end comes ~21.5 s in.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(27), "{took:?}");
    assert!(
        lab.log().contains("no session refresh: ending the call"),
        "{}",
        lab.log_tail()
    );
    let (_, body) = sluice_e2e::http("GET", &lab.admin(), "/metrics", None, "");
    let m = sluice_e2e::parse_prometheus(&body);
    let cut = sluice_e2e::metric(
        &m,
        "sluice_calls_cut_total",
        &[("trunk", "loop"), ("reason", "session-expired")],
    );
    assert_eq!(cut, Some(1.0), "{body}");
}

/// A trunk that wants its caller's side to refresh, and a PBX without timers: Sluice refreshes
/// the trunk's leg itself with UPDATE (SIPp's trunk expects it), and the call goes on until the
/// PBX hangs up.
#[test]
fn sluice_refreshes_a_trunk_for_a_pbx_without_timers() {
    let lab = timer_lab(49);
    let (uac, uas) = run_calls(
        &lab,
        Dir::Outbound,
        "uac.xml",
        "uas_timer_update.xml",
        1,
        1,
        13_000,
    );
    assert_all_ok("PBX without timers", &uac, 1, &lab);
    assert_all_ok("trunk refreshed by Sluice", &uas, 1, &lab);
}

/// A carrier transfers its call (REFER, as Twilio's `<Refer>` does): the PBX gets the REFER
/// with a target on Sluice's PBX-side address and no carrier address anywhere, answers 202 and
/// reports progress with NOTIFY sipfrag 100 then 200, which reach the carrier with no PBX
/// address; then the carrier hangs up.
#[test]
fn a_carriers_refer_is_relayed_with_no_address_of_either_side() {
    let lab = Lab::start(50, Transport::Udp);
    let pbx = lab.sipp("uas", "uas_refer.xml", Peer::Pbx, None, &["-m", "1"]);
    let carrier = lab.sipp(
        "uac",
        "uac_refer.xml",
        Peer::Trunk,
        Some(&lab.external()),
        &["-m", "1", "-s", "15552001111"],
    );
    let (pbx_log, carrier_log) = (
        pbx.messages_path().to_path_buf(),
        carrier.messages_path().to_path_buf(),
    );
    assert_all_ok("carrier transferring", &carrier.wait(LIMIT), 1, &lab);
    assert_all_ok(
        "PBX transferred",
        &pbx.wait(Duration::from_secs(10)),
        1,
        &lab,
    );
    let read = |p: &std::path::Path| {
        sluice_e2e::parse_message_log(&std::fs::read_to_string(p).unwrap(), "received")
    };
    let pbx_got = read(&pbx_log);
    let refer = pbx_got
        .iter()
        .find(|m| m.starts_with("REFER "))
        .expect("the PBX got the REFER");
    let refer_to = refer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("refer-to:"))
        .unwrap();
    assert!(
        refer_to.contains(&format!("sip:15559870000@{}", lab.sluice_ip())),
        "{refer_to}"
    );
    for m in &pbx_got {
        assert!(
            !m.contains(&lab.trunk_ip()),
            "carrier address at the PBX: {m}"
        );
    }
    let carrier_got = read(&carrier_log);
    let notifies: Vec<&String> = carrier_got
        .iter()
        .filter(|m| m.starts_with("NOTIFY "))
        .collect();
    assert_eq!(notifies.len(), 2);
    assert!(notifies[0].contains("SIP/2.0 100 Trying") && notifies[1].contains("SIP/2.0 200 OK"));
    for m in &carrier_got {
        assert!(
            !m.contains(&lab.pbx_ip()),
            "PBX address at the carrier: {m}"
        );
    }
}

/// A PBX with delayed offer and 100rel (CUCM's default) toward a trunk that answers with a
/// reliable 183 carrying the offer: the PBX's PRACK carries the answer end to end (SIPp's
/// trunk checks its RAck and SDP), and every call completes.
#[test]
fn a_delayed_offer_is_answered_in_the_prack_end_to_end() {
    let lab = Lab::start(51, Transport::Udp);
    let (uac, uas) = run_calls(
        &lab,
        Dir::Outbound,
        "uac_late_100rel.xml",
        "uas_late_100rel.xml",
        3,
        3,
        100,
    );
    assert_all_ok("PBX with a delayed offer", &uac, 3, &lab);
    assert_all_ok("trunk offering in its 183", &uas, 3, &lab);
}

/// The value of `param` (`tag`, say) in header `name` of a message's text.
fn header_param(msg: &str, name: &str, param: &str) -> Option<String> {
    let line = msg.lines().find(|l| {
        l.to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
    })?;
    let at = line.find(&format!(";{param}="))? + param.len() + 2;
    Some(line[at..].split([';', '>', ' ']).next()?.to_string())
}

fn escape(s: &str) -> String {
    s.replace('@', "%40")
        .replace(';', "%3B")
        .replace('=', "%3D")
}

/// An attended transfer across Sluice: two calls from one side (`dir`) to the other; on the
/// first, a REFER whose Replaces names the second call's dialog on the referrer's side. The
/// other side (SIPp) gets the REFER with Replaces naming its own dialog of the second call (the
/// Call-ID and tags it knows), with no address or Call-ID of the referrer's side, and its
/// NOTIFYs reach the referrer.
fn attended_refer(block: u8, dir: Dir) {
    let lab = Lab::start(block, Transport::Udp);
    let (referrer, other, target, referrer_ip, other_ip) = match dir {
        Dir::Outbound => (
            Peer::Pbx,
            Peer::Trunk,
            lab.internal(),
            lab.pbx_ip(),
            lab.trunk_ip(),
        ),
        Dir::Inbound => (
            Peer::Trunk,
            Peer::Pbx,
            lab.external(),
            lab.trunk_ip(),
            lab.pbx_ip(),
        ),
    };
    let uas = lab.sipp("uas", "uas_refer_or_bye.xml", other, None, &["-m", "2"]);
    let held = lab.sipp_on(
        "held",
        "uac.xml",
        (referrer_ip.clone(), 5072),
        Some(&target),
        &["-m", "1", "-d", "6000", "-s", "15552001111"],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let answered = loop {
        let got = sluice_e2e::parse_message_log(
            &std::fs::read_to_string(held.messages_path()).unwrap_or_default(),
            "received",
        );
        if let Some(ok) = got.into_iter().find(|m| m.starts_with("SIP/2.0 200")) {
            break ok;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the held call was not answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let call_id = header(&answered, "Call-ID").unwrap();
    let sluice_tag = header_param(&answered, "To", "tag").unwrap();
    let own_tag = header_param(&answered, "From", "tag").unwrap();
    let replaces = escape(&format!("{call_id};to-tag={sluice_tag};from-tag={own_tag}"));
    let uac = lab.sipp(
        "uac",
        "uac_refer_replaces.xml",
        referrer,
        Some(&target),
        &[
            "-m",
            "1",
            "-s",
            "15552001111",
            "-set",
            "replaces",
            &replaces,
        ],
    );
    let other_log = uas.messages_path().to_path_buf();
    assert_all_ok("referrer", &uac.wait(LIMIT), 1, &lab);
    assert_all_ok("referrer's held call", &held.wait(LIMIT), 1, &lab);
    assert_all_ok(
        "the other side",
        &uas.wait(Duration::from_secs(10)),
        2,
        &lab,
    );
    let got =
        sluice_e2e::parse_message_log(&std::fs::read_to_string(other_log).unwrap(), "received");
    let invites: Vec<&String> = got.iter().filter(|m| m.starts_with("INVITE ")).collect();
    let held_there = invites[0];
    let their_call_id = header(held_there, "Call-ID").unwrap();
    let sluice_tag_there = header_param(held_there, "From", "tag").unwrap();
    let refer = got
        .iter()
        .find(|m| m.starts_with("REFER "))
        .expect("the other side got the REFER");
    let refer_to = header(refer, "Refer-To").unwrap();
    let mapped = escape(&format!("{their_call_id};to-tag="));
    assert!(
        refer_to.contains(&format!("Replaces={mapped}")),
        "{refer_to}"
    );
    assert!(
        refer_to.contains(&escape(&format!("from-tag={sluice_tag_there}"))),
        "{refer_to}"
    );
    assert!(
        refer_to.contains(&other_ip),
        "the target is the other side's own party: {refer_to}"
    );
    assert!(!refer_to.contains(&escape(call_id)), "{refer_to}");
    assert!(!refer.contains(&referrer_ip), "{refer}");
}

#[test]
fn a_pbxs_attended_refer_reaches_the_trunk_with_replaces_mapped_to_its_own_dialog() {
    attended_refer(52, Dir::Outbound);
}

#[test]
fn a_carriers_attended_refer_reaches_the_pbx_with_replaces_mapped_to_its_own_dialog() {
    attended_refer(54, Dir::Inbound);
}

/// A trunk with `transfer = "handle"` toward a PBX that takes no REFER: Sluice answers the
/// carrier's REFER itself (SIPp's carrier expects 202, NOTIFY 100 then 200), calls the target
/// on the PBX (SIPp's PBX answers a second call, with no carrier address in it), hangs up the
/// old PBX leg, and the carrier's BYE reaches the new one.
#[test]
fn a_carriers_refer_handled_by_sluice_moves_the_call_to_the_target() {
    let a = LabAddrs::v4(53);
    let text = Lab::config_for(&a, Transport::Udp).replacen(
        "name = \"loop\"\n",
        "name = \"loop\"\ntransfer = \"handle\"\n",
        1,
    );
    assert!(text.contains("transfer = \"handle\""));
    let lab = Lab::start_with_text(a, Transport::Udp, &text);
    let pbx = lab.sipp("uas", "uas.xml", Peer::Pbx, None, &["-m", "2"]);
    let carrier = lab.sipp(
        "uac",
        "uac_refer.xml",
        Peer::Trunk,
        Some(&lab.external()),
        &["-m", "1", "-s", "15552001111"],
    );
    let pbx_log = pbx.messages_path().to_path_buf();
    assert_all_ok("carrier transferring", &carrier.wait(LIMIT), 1, &lab);
    assert_all_ok(
        "PBX: the first leg and the new one",
        &pbx.wait(Duration::from_secs(10)),
        2,
        &lab,
    );
    let got = sluice_e2e::parse_message_log(&std::fs::read_to_string(pbx_log).unwrap(), "received");
    let invites: Vec<&String> = got.iter().filter(|m| m.starts_with("INVITE ")).collect();
    assert_eq!(invites.len(), 2);
    assert!(
        invites[1].starts_with("INVITE sip:15559870000@"),
        "{}",
        invites[1]
    );
    for m in &got {
        assert!(
            !m.contains(&lab.trunk_ip()),
            "carrier address at the PBX: {m}"
        );
    }
}
