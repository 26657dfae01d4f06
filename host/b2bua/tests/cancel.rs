//! The caller gives up before the answer: CANCEL (held back until the callee's first
//! provisional, RFC 3261 §9.1), a 2xx that crosses it, and a BYE on the early dialog.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_sip::{Message, Method};

fn cancel_from_pbx() -> String {
    let cancel = pbx_invite()
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    cancel.split("\r\n\r\n").next().unwrap().replace(
        &format!("Content-Length: {}", SDP.len()),
        "Content-Length: 0",
    ) + "\r\n\r\n"
}

/// A call from the PBX whose INVITE reached the trunk.
fn calling(lab: &mut Lab) -> Message {
    let o = lab.from_pbx_text(&pbx_invite());
    only(&o, TRUNK)[0].clone()
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut lab = Lab::new();
    let b_invite = calling(&mut lab);
    let o = lab.from_pbx_text(&cancel_from_pbx());
    assert_eq!(statuses(&only(&o, PBX)), vec![200, 487]);
    assert!(only(&o, TRUNK).is_empty());
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 180, "Ringing", ""));
    let c = only(&o, TRUNK);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].method(), Some(&Method::Cancel));
    assert_eq!(
        c[0].top_via().unwrap().branch(),
        b_invite.top_via().unwrap().branch()
    );
    assert!(
        only(&o, PBX).is_empty(),
        "no 180 after the caller cancelled"
    );
    // The trunk's 487 is ACKed hop by hop; with the CANCEL answered the call is gone.
    let cancel = c[0].clone();
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 487, "Request Terminated", ""));
    assert_eq!(only(&o, TRUNK)[0].method(), Some(&Method::Ack));
    assert_eq!(
        lab.engine.active_calls(),
        1,
        "the CANCEL is still unanswered"
    );
    lab.from_trunk_text(&trunk_response(&cancel, 200, "OK", ""));
    assert_eq!(lab.engine.active_calls(), 0);
    assert_eq!(lab.engine.stats().calls_failed, 1);
}

#[test]
fn a_2xx_that_crosses_the_cancel_is_acked_and_hung_up() {
    let mut lab = Lab::new();
    let b_invite = calling(&mut lab);
    lab.from_trunk_text(&trunk_response(&b_invite, 180, "Ringing", ""));
    let o = lab.from_pbx_text(&cancel_from_pbx());
    let cancel = only(&o, TRUNK)[0].clone();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    // The trunk answers anyway: Sluice confirms the 2xx and ends the callee's dialog; the PBX
    // (which got its 487) hears nothing more.
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 200, "OK", SDP));
    let to_trunk = only(&o, TRUNK);
    let methods: Vec<_> = to_trunk.iter().map(|m| m.method().cloned()).collect();
    assert_eq!(methods, vec![Some(Method::Ack), Some(Method::Bye)]);
    assert_eq!(to_trunk[0].cseq().unwrap().0, b_invite.cseq().unwrap().0);
    assert_eq!(to_trunk[1].to_tag(), Some("trunktag"));
    assert!(only(&o, PBX).is_empty());
    let bye = to_trunk[1].clone();
    lab.from_trunk_text(&trunk_response(&cancel, 200, "OK", ""));
    lab.from_trunk_text(&trunk_response(&bye, 200, "OK", ""));
    assert_eq!(lab.engine.active_calls(), 0);
}

#[test]
fn a_bye_on_the_early_dialog_ends_the_set_up_like_a_cancel() {
    let mut lab = Lab::new();
    let b_invite = calling(&mut lab);
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 180, "Ringing", ""));
    let ringing = only(&o, PBX)[0].clone();
    let o = lab.from_pbx_text(&pbx_in_dialog("BYE", 2, &ringing, "z9hG4bKearlybye", ""));
    assert_eq!(statuses(&only(&o, PBX)), vec![200, 487]);
    let c = only(&o, TRUNK);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].method(), Some(&Method::Cancel));
}
