//! 2xx and ACK across the legs (RFC 3261 §13.3.1.4, §13.2.2.4): Sluice retransmits its 2xx
//! until the ACK, gives up after 64*T1 by ending both legs, and ACKs every retransmitted 2xx,
//! even one that arrives after its transaction ended.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_sip::Method;
use std::collections::HashSet;
use std::time::Duration;

#[test]
fn two_hundred_is_retransmitted_until_ack_then_call_is_torn_down() {
    let mut lab = Lab::new();
    lab.answered_call();
    let o = lab.run_for(Duration::from_secs(40), Duration::from_millis(100));
    let retransmits = only(&o, PBX)
        .iter()
        .filter(|m| m.status() == Some(200))
        .count();
    // T1, 2T1, 4T1, then every T2 until 64*T1: 0.5 1.5 3.5 7.5 11.5 ... 31.5 = 10.
    assert_eq!(retransmits, 10);
    let byes: HashSet<_> = o
        .iter()
        .filter(|(_, m)| m.method() == Some(&Method::Bye))
        .map(|(f, _)| f.remote)
        .collect();
    assert_eq!(
        byes,
        HashSet::from([addr(PBX), addr(TRUNK)]),
        "BYE on both legs"
    );
    // The callee's 2xx was confirmed before its BYE.
    let to_trunk: Vec<_> = only(&o, TRUNK)
        .iter()
        .filter_map(|m| m.method().cloned())
        .collect();
    assert_eq!(to_trunk.first(), Some(&Method::Ack));
}

#[test]
fn a_bye_before_the_ack_implies_it_the_callee_gets_its_ack_first() {
    let mut lab = Lab::new();
    let Answered { a_ok, .. } = lab.answered_call();
    // The PBX's ACK was lost and it hangs up: Sluice ACKs the trunk's 2xx, then relays BYE.
    let o = lab.from_pbx_text(&pbx_in_dialog("BYE", 2, &a_ok, "z9hG4bKbye", ""));
    let to_trunk: Vec<_> = only(&o, TRUNK)
        .iter()
        .filter_map(|m| m.method().cloned())
        .collect();
    assert_eq!(to_trunk, [Method::Ack, Method::Bye]);
    // No more 2xx to the PBX, and the late ACK is not relayed as a new one.
    let late = lab.from_pbx_text(&ack_from_pbx(&a_ok));
    assert!(only(&late, PBX).is_empty(), "{late:?}");
    let o = lab.run_for(Duration::from_secs(5), Duration::from_millis(100));
    assert!(o.iter().all(|(_, m)| m.status() != Some(200)), "{o:?}");
}

#[test]
fn no_retransmission_once_acked() {
    let mut lab = Lab::new();
    lab.established_call();
    let o = lab.run_for(Duration::from_secs(5), Duration::from_millis(100));
    assert!(o.iter().all(|(_, m)| m.status() != Some(200)));
}

#[test]
fn a_retransmitted_2xx_gets_the_ack_again_also_after_its_transaction_ended() {
    let mut lab = Lab::new();
    let Answered { b_invite, .. } = lab.established_call();
    let ok = trunk_response(&b_invite, 200, "OK", SDP);
    // Within the INVITE transaction's Accepted state...
    let o = lab.from_trunk_text(&ok);
    let acks = only(&o, TRUNK);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].method(), Some(&Method::Ack));
    assert!(only(&o, PBX).is_empty(), "not relayed to the PBX again");
    // ...and after it ended (Timer M, 64*T1): a stray 2xx, re-ACKed all the same.
    lab.run_for(Duration::from_secs(40), Duration::from_secs(1));
    let o = lab.from_trunk_text(&ok);
    let acks = only(&o, TRUNK);
    assert_eq!(acks.len(), 1, "{o:?}");
    assert_eq!(acks[0].method(), Some(&Method::Ack));
    assert_eq!(acks[0].cseq().unwrap().0, b_invite.cseq().unwrap().0);
    assert_eq!(lab.engine.active_calls(), 1);
}
