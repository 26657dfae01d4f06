//! Transfer (REFER, Replaces) relayed across the B2BUA with topology hiding, through the
//! engine: a carrier's blind REFER reaches the PBX pointing at Sluice, a PBX's attended REFER
//! reaches the trunk with its Replaces mapped to the other call's trunk leg, and what cannot
//! cross is refused.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_b2bua::NoHooks;
use sluice_sip::{HeaderName, Method};
use sluice_transaction::Transport;

#[test]
fn a_carriers_blind_refer_reaches_the_pbx_pointing_at_sluice() {
    let mut lab = Lab::new();
    let up = lab.established_call();
    let refer = with_headers(
        &trunk_in_dialog("REFER", 2, &up.b_invite, "z9hG4bKrefer", ""),
        "Refer-To: <sip:15559870000@127.0.0.20:5060;user=phone>\r\n\
         Referred-By: \"Carrier\" <sip:15552001111@127.0.0.20>\r\n",
    );
    let o = lab.from_trunk_text(&refer);
    let to_pbx = only(&o, PBX)[0].clone();
    assert_eq!(to_pbx.method(), Some(&Method::Refer));
    assert_eq!(
        to_pbx.header(&HeaderName::ReferTo),
        Some("<sip:15559870000@127.0.0.1;user=phone>"),
        "the target is Sluice on the PBX's side"
    );
    let by = to_pbx.header(&HeaderName::ReferredBy).unwrap();
    assert!(
        by.contains("sip:15552001111@") && !by.contains("127.0.0.20"),
        "{by}"
    );
    assert!(!to_pbx.to_string().contains("127.0.0.20"), "{to_pbx}");
    let o = lab.from_pbx_text(&pbx_response(&to_pbx, 202, ""));
    assert_eq!(statuses(&only(&o, TRUNK)), [202]);
}

/// The PBX's second call, answered and acknowledged.
fn second_call(lab: &mut Lab) -> Answered {
    let o = lab.from_pbx_text(
        &pbx_invite()
            .replace("pbx-call-1", "pbx-call-2")
            .replace("z9hG4bKpbx1", "z9hG4bKpbx2")
            .replace("tag=pbxtag", "tag=pbxtag2"),
    );
    let b_invite = only(&o, TRUNK)[0].clone();
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 200, "OK", SDP));
    let a_ok = only(&o, PBX)[0].clone();
    lab.from_pbx_text(&ack_from_pbx(&a_ok).replace("pbx-call-1", "pbx-call-2"));
    Answered { b_invite, a_ok }
}

fn escape(s: &str) -> String {
    s.replace('@', "%40")
        .replace(';', "%3B")
        .replace('=', "%3D")
}

#[test]
fn an_attended_refer_carries_replaces_mapped_to_the_other_calls_trunk_leg() {
    let mut lab = Lab::new();
    let first = lab.established_call();
    let second = second_call(&mut lab);
    let sluice_tag = second.a_ok.to_tag().unwrap();
    let replaces = escape(&format!(
        "pbx-call-2@127.0.0.10;to-tag={sluice_tag};from-tag=pbxtag2"
    ));
    let refer = with_headers(
        &pbx_in_dialog("REFER", 2, &first.a_ok, "z9hG4bKrefer", ""),
        &format!("Refer-To: <sip:2002@127.0.0.1?Replaces={replaces}>\r\n"),
    );
    let o = lab.from_pbx_text(&refer);
    let to_trunk = only(&o, TRUNK)[0].clone();
    assert_eq!(to_trunk.method(), Some(&Method::Refer));
    let b2 = &second.b_invite;
    let expected = format!(
        "<sip:callee@127.0.0.20:5060?Replaces={}>",
        escape(&format!(
            "{};to-tag=trunktag;from-tag={}",
            b2.call_id().unwrap(),
            b2.from_tag().unwrap()
        ))
    );
    assert_eq!(
        to_trunk.header(&HeaderName::ReferTo),
        Some(expected.as_str())
    );
    let text = to_trunk.to_string();
    assert!(
        !text.contains("127.0.0.10") && !text.contains("pbx-call"),
        "{text}"
    );
}

#[test]
fn a_refer_that_cannot_cross_is_refused() {
    // Replaces naming a dialog Sluice does not carry: it would leak the PBX's side.
    let mut lab = Lab::new();
    let up = lab.established_call();
    let refer = with_headers(
        &pbx_in_dialog("REFER", 2, &up.a_ok, "z9hG4bKrefer", ""),
        "Refer-To: <sip:2002@10.1.1.1?Replaces=internal%40pbx%3Bto-tag%3Da%3Bfrom-tag%3Db>\r\n",
    );
    let o = lab.from_pbx_text(&refer);
    assert_eq!(statuses(&only(&o, PBX)), [403]);
    assert!(only(&o, TRUNK).is_empty());
    // A trunk that takes no transfers.
    let mut cfg = lab_config(Transport::Udp);
    cfg.trunks[0].transfer = sluice_b2bua::config::Transfer::Refuse;
    let mut lab = Lab::with_hooks(cfg, NoHooks);
    let up = lab.established_call();
    let refer = with_headers(
        &trunk_in_dialog("REFER", 2, &up.b_invite, "z9hG4bKrefer", ""),
        "Refer-To: <sip:15559870000@127.0.0.20>\r\n",
    );
    let o = lab.from_trunk_text(&refer);
    assert_eq!(statuses(&only(&o, TRUNK)), [403]);
    assert!(only(&o, PBX).is_empty());
}

/// A trunk with `transfer = "handle"`: its REFER is carried out by Sluice. The PBX gets a new
/// call for the target (the trunk party calling, no trunk address), and once it answers, its
/// old leg ends, the trunk hears NOTIFY 100 then 200, and the call goes on with the new leg.
#[test]
fn a_carriers_refer_handled_by_sluice_moves_the_call_to_a_new_pbx_leg() {
    let mut cfg = lab_config_with_media(Transport::Udp);
    cfg.trunks[0].transfer = sluice_b2bua::config::Transfer::Handle;
    let mut lab = Lab::with_hooks(cfg, NoHooks);
    let up = lab.established_call();
    let refer = with_headers(
        &trunk_in_dialog("REFER", 2, &up.b_invite, "z9hG4bKrefer", ""),
        "Refer-To: <sip:15559870000@127.0.0.20;user=phone>\r\n",
    );
    let o = lab.from_trunk_text(&refer);
    let to_trunk = only(&o, TRUNK);
    assert_eq!(statuses(&to_trunk), [202]);
    let trying = to_trunk
        .iter()
        .find(|m| m.method() == Some(&Method::Notify))
        .expect("NOTIFY 100");
    assert_eq!(trying.header(&HeaderName::Event), Some("refer"));
    assert!(String::from_utf8_lossy(&trying.body).starts_with("SIP/2.0 100"));
    let invite = only(&o, PBX)[0].clone();
    assert_eq!(invite.method(), Some(&Method::Invite));
    assert!(
        invite
            .request_uri()
            .unwrap()
            .starts_with("sip:15559870000@"),
        "{invite}"
    );
    assert_ne!(invite.call_id(), Some("pbx-call-1@127.0.0.10"));
    assert!(!invite.body.is_empty(), "Sluice's offer: {invite}");
    let text = invite.to_string();
    assert!(!text.contains("127.0.0.20"), "no trunk address: {text}");
    // The PBX answers the new call.
    let mut ok = sluice_transaction::response_to(&invite, 200, "OK", Some("pbx2tag"));
    ok.headers
        .push(HeaderName::Contact, "<sip:2002@127.0.0.10:5060>");
    ok.headers.push(HeaderName::ContentType, "application/sdp");
    ok.body = bytes::Bytes::from(SDP.replace("4000", "4100"));
    lab.media.clear();
    let o = lab.from_pbx_text(&String::from_utf8_lossy(&ok.to_bytes()));
    let moved = lab.media.iter().any(|op| {
        matches!(op, sluice_media::MediaOp::Update { remotes, .. }
            if remotes.iter().flatten().any(|r| r.rtp.to_string() == "127.0.0.10:4100"))
    });
    assert!(moved, "the media goes to the new leg: {:?}", lab.media);
    let to_pbx = only(&o, PBX);
    let ack = to_pbx
        .iter()
        .find(|m| m.method() == Some(&Method::Ack))
        .expect("ACK of the new leg");
    assert_eq!(ack.call_id(), invite.call_id());
    let bye = to_pbx
        .iter()
        .find(|m| m.method() == Some(&Method::Bye))
        .expect("BYE of the old leg");
    assert_eq!(bye.call_id(), Some("pbx-call-1@127.0.0.10"));
    let done = only(&o, TRUNK)
        .into_iter()
        .find(|m| m.method() == Some(&Method::Notify))
        .expect("NOTIFY 200");
    assert!(String::from_utf8_lossy(&done.body).starts_with("SIP/2.0 200"));
    assert_eq!(
        done.header(&HeaderName::SubscriptionState),
        Some("terminated;reason=noresource")
    );
    lab.from_pbx_text(&pbx_response(bye, 200, ""));
    // The PBX did not get the ACK and sends its 200 again: ACKed again.
    let o = lab.from_pbx_text(&String::from_utf8_lossy(&ok.to_bytes()));
    let again = only(&o, PBX);
    assert!(
        again
            .iter()
            .any(|m| m.method() == Some(&Method::Ack) && m.call_id() == invite.call_id()),
        "{again:?}"
    );
    // The trunk hangs up: the BYE reaches the new leg.
    let o = lab.from_trunk_text(&trunk_in_dialog("BYE", 3, &up.b_invite, "z9hG4bKbye", ""));
    let bye = only(&o, PBX)[0].clone();
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(bye.call_id(), invite.call_id());
    assert_eq!(bye.to_tag(), Some("pbx2tag"));
}
