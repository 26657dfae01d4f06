//! Transfer (REFER, Replaces) relayed across the B2BUA with topology hiding, through the
//! engine: a carrier's blind REFER reaches the PBX pointing at Sluice, a PBX's attended REFER
//! reaches the trunk with its Replaces mapped to the other call's trunk leg, and what cannot
//! cross is refused.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_b2bua::NoHooks;
use sluice_sip::{HeaderName, Method};
use sluice_transaction::Transport;

fn with_headers(text: &str, headers: &str) -> String {
    text.replacen(
        "\r\nContent-Length",
        &format!("\r\n{headers}Content-Length"),
        1,
    )
}

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
