//! Requests inside a call's dialogs, both ways: re-INVITE (from the trunk and from the PBX,
//! with its 2xx and ACK), UPDATE, INFO, OPTIONS; CSeq order, glare, crossing BYEs.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_sip::{HeaderName, Message, Method};
use std::time::Duration;

#[test]
fn reinvite_from_the_trunk_reaches_the_pbx_in_its_dialog() {
    let mut lab = Lab::new();
    let Answered { b_invite, .. } = lab.established_call();
    let o = lab.from_trunk_text(&trunk_in_dialog("INVITE", 7, &b_invite, "z9hG4bKre1", SDP));
    let to_pbx = only(&o, PBX);
    let re = to_pbx
        .iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("re-INVITE relayed");
    assert_eq!(re.call_id(), Some("pbx-call-1@127.0.0.10"));
    assert_eq!(re.to_tag(), Some("pbxtag"));
    assert_eq!(re.request_uri(), Some("sip:2001@127.0.0.10:5060"));
    assert_eq!(
        re.header(&HeaderName::Route),
        Some("<sip:proxy.pbx.internal;lr>")
    );
    assert_eq!(&re.body[..], SDP.as_bytes());
}

#[test]
fn reinvite_from_the_pbx_is_answered_retransmitted_and_acked_across() {
    let mut lab = Lab::new();
    let Answered { b_invite, a_ok } = lab.established_call();
    let o = lab.from_pbx_text(&pbx_in_dialog("INVITE", 2, &a_ok, "z9hG4bKpbxre", SDP));
    let re = only(&o, TRUNK)[0].clone();
    assert_eq!(re.method(), Some(&Method::Invite));
    assert_eq!(re.call_id(), b_invite.call_id());
    assert_eq!(re.to_tag(), Some("trunktag"));
    assert!(re.cseq().unwrap().0 > b_invite.cseq().unwrap().0);
    assert_eq!(re.request_uri(), Some("sip:callee@127.0.0.20:5060"));
    // The trunk's 200 is relayed and retransmitted until the PBX's ACK, which is relayed.
    let o = lab.from_trunk_text(&trunk_response(&re, 200, "OK", SDP));
    let ok = only(&o, PBX)[0].clone();
    assert_eq!(
        (ok.status(), ok.cseq()),
        (Some(200), Some((2, Method::Invite)))
    );
    let again = lab.run_for(Duration::from_millis(600), Duration::from_millis(100));
    assert_eq!(
        statuses(&only(&again, PBX)),
        vec![200],
        "retransmitted after T1"
    );
    let o = lab.from_pbx_text(&pbx_in_dialog("ACK", 2, &a_ok, "z9hG4bKpbxreack", ""));
    let ack = only(&o, TRUNK);
    assert_eq!(ack.len(), 1);
    assert_eq!(
        (ack[0].method(), ack[0].cseq().unwrap().0),
        (Some(&Method::Ack), re.cseq().unwrap().0)
    );
    let later = lab.run_for(Duration::from_secs(5), Duration::from_millis(100));
    assert!(
        only(&later, PBX).is_empty(),
        "no retransmission after the ACK"
    );
}

#[test]
fn update_and_info_are_relayed_both_ways_with_their_answers() {
    let mut lab = Lab::new();
    let Answered { b_invite, a_ok } = lab.established_call();
    for (method, cseq) in [("UPDATE", 2), ("INFO", 3)] {
        // From the PBX to the trunk...
        let o = lab.from_pbx_text(&pbx_in_dialog(
            method,
            cseq,
            &a_ok,
            &format!("z9hG4bKp{method}"),
            "",
        ));
        let req = only(&o, TRUNK)[0].clone();
        assert_eq!(req.method().map(Method::as_str), Some(method));
        assert_eq!(req.call_id(), b_invite.call_id());
        let o = lab.from_trunk_text(&trunk_response(&req, 200, "OK", ""));
        let ok = only(&o, PBX);
        assert_eq!(
            ok[0].cseq().map(|(n, m)| (n, m.to_string())),
            Some((cseq, method.to_string()))
        );
        // ...and from the trunk to the PBX.
        let o = lab.from_trunk_text(&trunk_in_dialog(
            method,
            cseq + 10,
            &b_invite,
            &format!("z9hG4bKt{method}"),
            "",
        ));
        let req = only(&o, PBX)[0].clone();
        assert_eq!(req.method().map(Method::as_str), Some(method));
        assert_eq!(req.call_id(), Some("pbx-call-1@127.0.0.10"));
        let o = lab.from_pbx_text(&pbx_response(&req, 200, ""));
        assert_eq!(statuses(&only(&o, TRUNK)), vec![200]);
    }
    // An error answer crosses too.
    let o = lab.from_pbx_text(&pbx_in_dialog("INFO", 4, &a_ok, "z9hG4bKpinfo2", ""));
    let req = only(&o, TRUNK)[0].clone();
    let o = lab.from_trunk_text(&trunk_response(&req, 415, "Unsupported Media Type", ""));
    assert_eq!(statuses(&only(&o, PBX)), vec![415]);
    assert_eq!(lab.engine.active_calls(), 1);
}

#[test]
fn an_old_cseq_gets_500_and_a_second_reinvite_491() {
    let mut lab = Lab::new();
    let Answered { a_ok, .. } = lab.established_call();
    let o = lab.from_pbx_text(&pbx_in_dialog("INFO", 5, &a_ok, "z9hG4bKp5", ""));
    assert_eq!(only(&o, TRUNK).len(), 1);
    let o = lab.from_pbx_text(&pbx_in_dialog("INFO", 4, &a_ok, "z9hG4bKp4", ""));
    assert_eq!(statuses(&only(&o, PBX)), vec![500]);
    // A re-INVITE while one is unanswered: 491.
    lab.from_pbx_text(&pbx_in_dialog("INVITE", 6, &a_ok, "z9hG4bKp6", SDP));
    let o = lab.from_pbx_text(&pbx_in_dialog("INVITE", 7, &a_ok, "z9hG4bKp7", SDP));
    assert!(statuses(&only(&o, PBX)).contains(&491));
}

#[test]
fn crossing_byes_are_each_answered() {
    let mut lab = Lab::new();
    let Answered { b_invite, a_ok } = lab.established_call();
    let o = lab.from_pbx_text(&pbx_in_dialog("BYE", 2, &a_ok, "z9hG4bKpbye", ""));
    let bye: Message = only(&o, TRUNK)[0].clone();
    // The trunk hangs up at the same moment: answered locally.
    let o = lab.from_trunk_text(&trunk_in_dialog("BYE", 9, &b_invite, "z9hG4bKtbye", ""));
    assert_eq!(statuses(&only(&o, TRUNK)), vec![200]);
    lab.from_trunk_text(&trunk_response(&bye, 200, "OK", ""));
    assert_eq!(lab.engine.active_calls(), 0);
}
