//! Reliable provisional responses (RFC 3262), ended on each leg, through the engine with a
//! fake clock: Sluice offers 100rel to the callee and PRACKs its reliable provisionals; a caller
//! that supports 100rel gets Sluice's provisionals reliably (retransmitted until its PRACK).
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_sip::{HeaderName, Message, Method};
use std::time::Duration;

/// The trunk's 18x to `invite`, reliable with `rseq` when given.
fn provisional(invite: &Message, status: u16, rseq: Option<u32>, sdp: &str) -> String {
    let text = trunk_response(invite, status, "Session Progress", sdp);
    match rseq {
        Some(n) => with_headers(&text, &format!("Require: 100rel\r\nRSeq: {n}\r\n")),
        None => text,
    }
}

fn pbx_invite_with_100rel() -> String {
    pbx_invite().replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nSupported: 100rel\r\n",
        1,
    )
}

/// The PBX's PRACK for the reliable provisional `prov` (RSeq `rseq`, INVITE CSeq 1).
fn pbx_prack(prov: &Message, rseq: &str, cseq: u32) -> String {
    format!(
        "PRACK sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5060;branch=z9hG4bKprack{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: pbx-call-1@127.0.0.10\r\n\
         CSeq: {cseq} PRACK\r\nRAck: {rseq} 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        prov.header(&HeaderName::From).unwrap(),
        prov.header(&HeaderName::To).unwrap(),
    )
}

fn method(m: &Message) -> Option<&Method> {
    m.method()
}

#[test]
fn the_trunks_reliable_183_is_pracked_by_sluice_and_relayed_plainly_to_a_pbx_without_100rel() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite());
    let invite = only(&o, TRUNK)[0].clone();
    let supported = invite.header(&HeaderName::Supported).unwrap_or("");
    assert!(
        supported.contains("100rel"),
        "Sluice offers 100rel: {invite}"
    );
    let o = lab.from_trunk_text(&provisional(&invite, 183, Some(7), SDP));
    let prack = only(&o, TRUNK)[0].clone();
    assert_eq!(method(&prack), Some(&Method::Prack));
    let (cseq, _) = invite.cseq().unwrap();
    assert_eq!(
        prack.header(&HeaderName::RAck),
        Some(format!("7 {cseq} INVITE").as_str())
    );
    assert_eq!(prack.call_id(), invite.call_id());
    assert!(prack.cseq().unwrap().0 > cseq);
    assert_eq!(prack.to_tag(), Some("trunktag"));
    let to_pbx = only(&o, PBX);
    assert_eq!(statuses(&to_pbx), [183]);
    assert!(
        to_pbx[0].header(&HeaderName::Require).is_none(),
        "{}",
        to_pbx[0]
    );
    assert!(to_pbx[0].header(&HeaderName::RSeq).is_none());
    assert!(!to_pbx[0].body.is_empty(), "early media SDP relayed");
    lab.from_trunk_text(&trunk_response(&prack, 200, "OK", ""));
    // The trunk retransmits its 183 (our PRACK's 200 crossed it): neither PRACKed nor relayed
    // again.
    let o = lab.from_trunk_text(&provisional(&invite, 183, Some(7), SDP));
    assert!(o.is_empty(), "{o:?}");
    // A later reliable provisional is acknowledged in its turn.
    let o = lab.from_trunk_text(&provisional(&invite, 180, Some(8), ""));
    let prack2 = only(&o, TRUNK)[0].clone();
    assert_eq!(
        prack2.header(&HeaderName::RAck),
        Some(format!("8 {cseq} INVITE").as_str())
    );
    assert_eq!(statuses(&only(&o, PBX)), [180]);
    // The 200 comes without SDP (the answer was in the reliable 183): the PBX, which had the
    // answer only in an unreliable 183, gets it again in the 200.
    let o = lab.from_trunk_text(&trunk_response(&invite, 200, "OK", ""));
    let ok = only(&o, PBX)[0].clone();
    assert_eq!(ok.status(), Some(200));
    assert!(
        String::from_utf8_lossy(&ok.body).contains("m=audio"),
        "{ok}"
    );
}

#[test]
fn a_pbx_with_100rel_gets_provisionals_reliably_until_it_pracks() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite_with_100rel());
    let invite = only(&o, TRUNK)[0].clone();
    assert!(
        invite.header(&HeaderName::Require).is_none(),
        "100rel is each leg's own"
    );
    // An unreliable 180 from the trunk reaches the PBX reliably.
    let o = lab.from_trunk_text(&provisional(&invite, 180, None, ""));
    assert!(only(&o, TRUNK).is_empty(), "no PRACK for an unreliable 180");
    let r180 = only(&o, PBX)[0].clone();
    assert_eq!(r180.status(), Some(180));
    assert_eq!(r180.header(&HeaderName::Require), Some("100rel"));
    let rseq = r180.header(&HeaderName::RSeq).unwrap().to_string();
    // A 183 that comes meanwhile waits for the PRACK of the 180.
    let o = lab.from_trunk_text(&provisional(&invite, 183, None, SDP));
    assert!(only(&o, PBX).is_empty(), "{o:?}");
    // Retransmitted at T1 (500 ms in the lab), then 2*T1.
    let o = lab.run_for(Duration::from_millis(500), Duration::from_millis(50));
    assert_eq!(statuses(&only(&o, PBX)), [180]);
    let o = lab.run_for(Duration::from_millis(950), Duration::from_millis(50));
    assert!(only(&o, PBX).is_empty(), "{o:?}");
    let o = lab.run_for(Duration::from_millis(100), Duration::from_millis(50));
    assert_eq!(statuses(&only(&o, PBX)), [180]);
    // A PRACK naming another RSeq: 481.
    let wrong: u32 = rseq.parse::<u32>().unwrap() + 5;
    let o = lab.from_pbx_text(&pbx_prack(&r180, &wrong.to_string(), 2));
    assert_eq!(statuses(&only(&o, PBX)), [481]);
    // The right one: 200, and the 183 follows with the next RSeq.
    let o = lab.from_pbx_text(&pbx_prack(&r180, &rseq, 3));
    let to_pbx = only(&o, PBX);
    assert_eq!(statuses(&to_pbx), [200, 183]);
    let next: u32 = to_pbx[1]
        .header(&HeaderName::RSeq)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(next, rseq.parse::<u32>().unwrap() + 1);
    assert!(
        only(&o, TRUNK).is_empty(),
        "the PBX's PRACK stays on its leg"
    );
    // The answer stops the retransmissions of the unacknowledged 183.
    let o = lab.from_trunk_text(&trunk_response(&invite, 200, "OK", SDP));
    assert_eq!(statuses(&only(&o, PBX)), [200]);
    let o = lab.run_for(Duration::from_secs(4), Duration::from_millis(100));
    assert!(
        only(&o, PBX).iter().all(|m| m.status() != Some(183)),
        "{o:?}"
    );
}

#[test]
fn no_prack_for_64_t1_ends_the_call_with_504_and_cancel() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite_with_100rel());
    let invite = only(&o, TRUNK)[0].clone();
    lab.from_trunk_text(&provisional(&invite, 180, None, ""));
    // 64*T1 = 32 s in the lab.
    let o = lab.run_for(Duration::from_secs(33), Duration::from_millis(250));
    let to_pbx = only(&o, PBX);
    let retransmitted = to_pbx.iter().filter(|m| m.status() == Some(180)).count();
    assert!((5..=7).contains(&retransmitted), "{retransmitted}");
    assert!(statuses(&to_pbx).contains(&504), "{to_pbx:?}");
    let cancel = only(&o, TRUNK)
        .into_iter()
        .find(|m| m.method() == Some(&Method::Cancel))
        .expect("CANCEL to the trunk");
    assert_eq!(cancel.call_id(), invite.call_id());
}

#[test]
fn sluice_says_what_it_supports() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite().replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: 100rel, timer\r\n",
        1,
    ));
    assert!(
        !statuses(&only(&o, PBX)).contains(&420),
        "100rel and timer are understood"
    );
    let invite = only(&o, TRUNK)[0].clone();
    assert_eq!(invite.header(&HeaderName::Require), Some("timer"));
    assert_eq!(invite.header(&HeaderName::Supported), Some("100rel, timer"));
    assert_eq!(invite.header(&HeaderName::SessionExpires), Some("1800"));
    assert!(sluice_b2bua::ALLOW.contains("PRACK"));
}

/// Both legs reliable, with a delayed offer (an INVITE without SDP, as CUCM sends): the
/// trunk's reliable 183 carries the offer to the PBX reliably, and the PBX's PRACK carries the
/// answer to the trunk (RAck mapped to the trunk's RSeq, SDP anchored), its 200 relayed back.
#[test]
fn with_100rel_on_both_legs_the_prack_and_its_answer_cross_end_to_end() {
    let mut lab = Lab::with_hooks(
        lab_config_with_media(sluice_transaction::Transport::Udp),
        sluice_b2bua::NoHooks,
    );
    let delayed = without_offer(&pbx_invite_with_100rel());
    let o = lab.from_pbx_text(&delayed);
    let b_invite = only(&o, TRUNK)[0].clone();
    assert!(b_invite.body.is_empty(), "a delayed offer stays delayed");
    let (cseq, _) = b_invite.cseq().unwrap();
    let offer = SDP.replace("127.0.0.10", "127.0.0.20");
    let o = lab.from_trunk_text(&provisional(&b_invite, 183, Some(7), &offer));
    assert!(only(&o, TRUNK).is_empty(), "the PRACK is the PBX's to send");
    let r183 = only(&o, PBX)[0].clone();
    assert_eq!(r183.header(&HeaderName::Require), Some("100rel"));
    let body = String::from_utf8_lossy(&r183.body).into_owned();
    assert!(
        body.contains("m=audio") && !body.contains("127.0.0.20"),
        "anchored offer: {body}"
    );
    let rseq = r183.header(&HeaderName::RSeq).unwrap().to_string();
    let answer = SDP;
    let prack = pbx_prack(&r183, &rseq, 2).replacen(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        ),
        1,
    );
    let o = lab.from_pbx_text(&prack);
    assert!(
        only(&o, PBX).is_empty(),
        "answered by the trunk, not by Sluice"
    );
    let b_prack = only(&o, TRUNK)[0].clone();
    assert_eq!(b_prack.method(), Some(&Method::Prack));
    assert_eq!(
        b_prack.header(&HeaderName::RAck),
        Some(format!("7 {cseq} INVITE").as_str())
    );
    let body = String::from_utf8_lossy(&b_prack.body).into_owned();
    assert!(
        body.contains("m=audio") && !body.contains("127.0.0.10"),
        "{body}"
    );
    let o = lab.from_trunk_text(&trunk_response(&b_prack, 200, "OK", ""));
    assert_eq!(statuses(&only(&o, PBX)), [200]);
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 200, "OK", ""));
    assert_eq!(statuses(&only(&o, PBX)), [200]);
}

/// A delayed offer from a PBX without 100rel: the trunk's offer would come in a reliable 18x,
/// answered in a PRACK the PBX cannot send, so the trunk is not offered 100rel; with an offer,
/// it is.
#[test]
fn a_delayed_offer_from_a_pbx_without_100rel_is_not_offered_100rel() {
    let mut lab = Lab::new();
    let delayed = without_offer(&pbx_invite());
    let o = lab.from_pbx_text(&delayed);
    let b_invite = only(&o, TRUNK)[0].clone();
    assert!(b_invite.body.is_empty());
    assert_eq!(b_invite.header(&HeaderName::Supported), Some("timer"));
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    assert_eq!(
        b_invite.header(&HeaderName::Supported),
        Some("100rel, timer")
    );
}
