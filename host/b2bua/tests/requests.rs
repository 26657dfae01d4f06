//! Requests besides calls: NOTIFY and MESSAGE inside a call relayed with topology hiding,
//! requests outside any dialog answered per configuration and counted, and what Sluice says of
//! itself (Allow, Supported) on each leg.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_b2bua::NoHooks;
use sluice_sip::{HeaderName, Method};
use sluice_transaction::Transport;

#[test]
fn a_notify_inside_a_call_crosses_with_its_event_state_and_body_and_no_topology() {
    let mut lab = Lab::new();
    let up = lab.established_call();
    let body = "SIP/2.0 200 OK\r\n";
    let notify = format!(
        "NOTIFY sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5060;branch=z9hG4bKnotify\r\n\
         Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: pbx-call-1@127.0.0.10\r\nCSeq: 2 NOTIFY\r\n\
         Contact: <sip:2001@127.0.0.10:5060>\r\nEvent: refer\r\nSubscription-State: active;expires=60\r\n\
         Content-Type: message/sipfrag\r\nContent-Length: {}\r\n\r\n{body}",
        up.a_ok.header(&HeaderName::From).unwrap(),
        up.a_ok.header(&HeaderName::To).unwrap(),
        body.len()
    );
    let o = lab.from_pbx_text(&notify);
    let relayed = only(&o, TRUNK)[0].clone();
    assert_eq!(relayed.method(), Some(&Method::Notify));
    assert_eq!(relayed.header(&HeaderName::Event), Some("refer"));
    assert_eq!(
        relayed.header(&HeaderName::SubscriptionState),
        Some("active;expires=60")
    );
    assert_eq!(relayed.body.as_ref(), body.as_bytes());
    assert!(
        relayed
            .header(&HeaderName::Contact)
            .is_some_and(|c| c.contains("127.0.0.1")),
        "Sluice's Contact: {relayed}"
    );
    assert_eq!(relayed.call_id(), up.b_invite.call_id());
    let text = relayed.to_string();
    assert!(!text.contains("127.0.0.10"), "no PBX address: {text}");
    let o = lab.from_trunk_text(&trunk_response(&relayed, 200, "OK", ""));
    assert_eq!(statuses(&only(&o, PBX)), [200]);
    // MESSAGE the other way.
    let message = trunk_in_dialog("MESSAGE", 2, &up.b_invite, "z9hG4bKmsg", "");
    let o = lab.from_trunk_text(&message);
    let to_pbx = only(&o, PBX)[0].clone();
    assert_eq!(to_pbx.method(), Some(&Method::Message));
    assert!(!to_pbx.to_string().contains("127.0.0.20"));
}

fn out_of_dialog(method: &str) -> String {
    format!(
        "{method} sip:15552001111@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.20:5060;branch=z9hG4bK{method}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:15552230000@127.0.0.20>;tag=u1\r\nTo: <sip:15552001111@127.0.0.1>\r\n\
         Call-ID: ood-{method}\r\nCSeq: 1 {method}\r\nEvent: message-summary\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn requests_outside_any_dialog_are_refused_or_accepted_as_configured_and_never_relayed() {
    let mut lab = Lab::new();
    for (method, status) in [
        ("NOTIFY", 403),
        ("MESSAGE", 403),
        ("SUBSCRIBE", 489),
        ("PUBLISH", 489),
        ("REFER", 403),
    ] {
        let o = lab.from_trunk_text(&out_of_dialog(method));
        assert_eq!(statuses(&only(&o, TRUNK)), [status], "{method}");
        assert!(only(&o, PBX).is_empty(), "{method} not relayed");
    }
    let mut cfg = lab_config(Transport::Udp);
    cfg.accept_unsolicited = true;
    let mut lab = Lab::with_hooks(cfg, NoHooks);
    for (method, status) in [("NOTIFY", 200), ("MESSAGE", 200), ("SUBSCRIBE", 489)] {
        let o = lab.from_trunk_text(&out_of_dialog(method));
        assert_eq!(statuses(&only(&o, TRUNK)), [status], "{method}");
        assert!(only(&o, PBX).is_empty(), "{method} not relayed");
    }
}

#[test]
fn allow_and_supported_are_sluices_own_on_each_leg() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite().replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nAllow: INVITE, ACK, BYE, CANCEL, REFER, X-PBX\r\nSupported: replaces, 100rel\r\n",
        1,
    ));
    let b_invite = only(&o, TRUNK)[0].clone();
    assert_eq!(
        b_invite.header(&HeaderName::Allow),
        Some(sluice_b2bua::ALLOW)
    );
    assert_eq!(
        b_invite.header(&HeaderName::Supported),
        Some("100rel, timer")
    );
    let ok = trunk_response(&b_invite, 200, "OK", SDP).replacen(
        "\r\nContent-Length",
        "\r\nAllow: INVITE, X-CARRIER\r\nSupported: path\r\nContent-Length",
        1,
    );
    let o = lab.from_trunk_text(&ok);
    let a_ok = only(&o, PBX)[0].clone();
    assert_eq!(a_ok.header(&HeaderName::Allow), Some(sluice_b2bua::ALLOW));
    assert!(!a_ok.to_string().contains("X-CARRIER"));
    assert_eq!(a_ok.header(&HeaderName::Supported), Some("100rel, timer"));
}

#[test]
fn history_info_crosses_with_the_pbxs_host_replaced() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite().replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nHistory-Info: <sip:2002@pbx.internal>;index=1, <sip:15552001111@10.9.8.7>;index=1.1\r\n",
        1,
    ));
    let b_invite = only(&o, TRUNK)[0].clone();
    let hi = b_invite
        .header(&HeaderName::HistoryInfo)
        .expect("History-Info");
    assert!(hi.contains("sip:2002@") && hi.contains("index=1.1"), "{hi}");
    assert!(
        !hi.contains("pbx.internal") && !hi.contains("10.9.8.7"),
        "{hi}"
    );
}

#[test]
fn a_trunk_may_be_spared_the_calls_history() {
    let mut cfg = lab_config(Transport::Udp);
    cfg.trunks[0].forward_history = false;
    let mut lab = Lab::with_hooks(cfg, NoHooks);
    let o = lab.from_pbx_text(&pbx_invite().replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nHistory-Info: <sip:2002@pbx.internal>;index=1\r\nDiversion: <sip:2002@pbx.internal>;reason=unconditional\r\n",
        1,
    ));
    let b_invite = only(&o, TRUNK)[0].clone();
    assert!(
        b_invite.header(&HeaderName::HistoryInfo).is_none(),
        "{b_invite}"
    );
    assert!(
        b_invite.header(&HeaderName::Diversion).is_none(),
        "{b_invite}"
    );
}
