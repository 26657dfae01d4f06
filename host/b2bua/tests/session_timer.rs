//! Session timers (RFC 4028) through the engine with a fake clock: refreshes crossing Sluice
//! keep a call up, a call whose refreshes stop is ended on both legs, Sluice refreshes the
//! callee's leg itself for a caller without timers, and too short an interval gets 422.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_sip::{HeaderName, Message, Method};
use std::time::Duration;

fn byes(o: &[(sluice_transaction::Flow, Message)], to: &str) -> usize {
    only(o, to)
        .iter()
        .filter(|m| m.method() == Some(&Method::Bye))
        .count()
}

#[test]
fn refreshes_crossing_sluice_keep_the_call_and_their_absence_ends_it_on_both_legs() {
    let mut lab = Lab::new();
    let invite = pbx_invite().replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nSupported: timer\r\nSession-Expires: 300;refresher=uac\r\n",
        1,
    );
    let o = lab.from_pbx_text(&invite);
    let b_invite = only(&o, TRUNK)[0].clone();
    assert_eq!(
        b_invite.header(&HeaderName::SessionExpires),
        Some("300;refresher=uac")
    );
    let ok = with_headers(
        &trunk_response(&b_invite, 200, "OK", SDP),
        "Session-Expires: 300;refresher=uac\r\nRequire: timer\r\n",
    );
    let o = lab.from_trunk_text(&ok);
    let a_ok = only(&o, PBX)[0].clone();
    assert_eq!(
        a_ok.header(&HeaderName::SessionExpires),
        Some("300;refresher=uac"),
        "the caller refreshes"
    );
    lab.from_pbx_text(&ack_from_pbx(&a_ok));
    // The caller refreshes at half the interval: relayed, answered, relayed back.
    let o = lab.run_for(Duration::from_secs(150), Duration::from_secs(1));
    assert!(o.is_empty(), "{o:?}");
    let refresh = with_headers(
        &pbx_in_dialog("INVITE", 2, &a_ok, "z9hG4bKrefresh1", SDP),
        "Session-Expires: 300;refresher=uac\r\n",
    );
    let o = lab.from_pbx_text(&refresh);
    let b_refresh = only(&o, TRUNK)[0].clone();
    assert_eq!(b_refresh.method(), Some(&Method::Invite));
    let ok = with_headers(
        &trunk_response(&b_refresh, 200, "OK", SDP),
        "Session-Expires: 300;refresher=uac\r\n",
    );
    let o = lab.from_trunk_text(&ok);
    let a_ok2 = only(&o, PBX)[0].clone();
    assert_eq!(a_ok2.status(), Some(200));
    lab.from_pbx_text(&pbx_in_dialog("ACK", 2, &a_ok, "z9hG4bKrefack", ""));
    // Then nothing: 300 s after the refresh, less min(32, 100) = 268 s, both legs get BYE.
    let o = lab.run_for(Duration::from_secs(267), Duration::from_secs(1));
    assert_eq!(byes(&o, PBX) + byes(&o, TRUNK), 0, "not before: {o:?}");
    let o = lab.run_for(Duration::from_secs(2), Duration::from_secs(1));
    assert!(byes(&o, PBX) >= 1 && byes(&o, TRUNK) >= 1, "{o:?}");
}

#[test]
fn sluice_refreshes_the_callee_for_a_caller_without_timers() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    let supported = b_invite.header(&HeaderName::Supported).unwrap_or("");
    assert!(supported.contains("timer"), "{b_invite}");
    assert_eq!(b_invite.header(&HeaderName::SessionExpires), Some("1800"));
    let ok = with_headers(
        &trunk_response(&b_invite, 200, "OK", SDP),
        "Allow: INVITE, ACK, BYE, CANCEL, UPDATE\r\nSession-Expires: 120;refresher=uac\r\nRequire: timer\r\n",
    );
    let o = lab.from_trunk_text(&ok);
    let a_ok = only(&o, PBX)[0].clone();
    assert!(a_ok.header(&HeaderName::SessionExpires).is_none(), "{a_ok}");
    assert!(a_ok.header(&HeaderName::Require).is_none(), "{a_ok}");
    lab.from_pbx_text(&ack_from_pbx(&a_ok));
    // At half the interval Sluice sends the refresh itself: an UPDATE to the trunk only.
    let o = lab.run_for(Duration::from_secs(60), Duration::from_secs(1));
    assert!(only(&o, PBX).is_empty(), "{o:?}");
    let update = only(&o, TRUNK)[0].clone();
    assert_eq!(update.method(), Some(&Method::Update));
    assert_eq!(
        update.header(&HeaderName::SessionExpires),
        Some("120;refresher=uac")
    );
    assert!(update.body.is_empty());
    lab.from_trunk_text(&with_headers(
        &trunk_response(&update, 200, "OK", ""),
        "Session-Expires: 120;refresher=uac\r\n",
    ));
    // Refreshed: no end at 88 s; the next refresh 60 s after the first.
    let o = lab.run_for(Duration::from_secs(59), Duration::from_secs(1));
    assert!(o.is_empty(), "{o:?}");
    let o = lab.run_for(Duration::from_secs(2), Duration::from_secs(1));
    let update2 = only(&o, TRUNK)[0].clone();
    assert_eq!(update2.method(), Some(&Method::Update));
    // The trunk has lost the dialog: the call ends on both legs.
    let o = lab.from_trunk_text(&trunk_response(&update2, 481, "Call Does Not Exist", ""));
    assert!(byes(&o, PBX) == 1 && byes(&o, TRUNK) == 1, "{o:?}");
}

#[test]
fn too_short_a_session_is_refused_with_422_and_min_se() {
    let mut lab = Lab::new();
    let invite = pbx_invite().replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nSupported: timer\r\nSession-Expires: 30\r\n",
        1,
    );
    let o = lab.from_pbx_text(&invite);
    assert!(only(&o, TRUNK).is_empty());
    let r = only(&o, PBX)
        .into_iter()
        .find(|m| m.status() == Some(422))
        .expect("422");
    assert_eq!(r.header(&HeaderName::MinSe), Some("90"));
    // Inside a call too.
    let mut lab = Lab::new();
    let up = lab.established_call();
    let o = lab.from_pbx_text(&with_headers(
        &pbx_in_dialog("UPDATE", 2, &up.a_ok, "z9hG4bKupd", ""),
        "Session-Expires: 45\r\n",
    ));
    assert_eq!(statuses(&only(&o, PBX)), [422]);
    assert!(only(&o, TRUNK).is_empty());
}

#[test]
fn a_caller_with_timers_gets_its_interval_from_sluice_when_the_callee_has_none() {
    let mut lab = Lab::new();
    let invite = pbx_invite().replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nSupported: timer\r\nSession-Expires: 300\r\n",
        1,
    );
    let o = lab.from_pbx_text(&invite);
    let b_invite = only(&o, TRUNK)[0].clone();
    // The trunk does no timers: its 200 says nothing of them.
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 200, "OK", SDP));
    let a_ok = only(&o, PBX)[0].clone();
    assert_eq!(
        a_ok.header(&HeaderName::SessionExpires),
        Some("300;refresher=uac"),
        "{a_ok}"
    );
    assert!(a_ok
        .header(&HeaderName::Require)
        .unwrap_or("")
        .contains("timer"));
    lab.from_pbx_text(&ack_from_pbx(&a_ok));
    // The caller refreshes with UPDATE; the trunk's 200 again has no interval, the caller's has.
    let o = lab.run_for(Duration::from_secs(150), Duration::from_secs(1));
    assert!(o.is_empty(), "{o:?}");
    let o = lab.from_pbx_text(&pbx_in_dialog("UPDATE", 2, &a_ok, "z9hG4bKupd1", ""));
    let b_update = only(&o, TRUNK)[0].clone();
    let o = lab.from_trunk_text(&trunk_response(&b_update, 200, "OK", ""));
    let a_ok2 = only(&o, PBX)[0].clone();
    assert_eq!(
        a_ok2.header(&HeaderName::SessionExpires),
        Some("300;refresher=uac")
    );
    // No further refresh: the call ends on both legs before the caller's interval is over.
    let o = lab.run_for(Duration::from_secs(267), Duration::from_secs(1));
    assert_eq!(byes(&o, PBX) + byes(&o, TRUNK), 0, "{o:?}");
    let o = lab.run_for(Duration::from_secs(2), Duration::from_secs(1));
    assert!(byes(&o, PBX) >= 1 && byes(&o, TRUNK) >= 1, "{o:?}");
}

#[test]
fn a_callee_refreshing_for_a_caller_without_timers_keeps_hearing_its_interval() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    let ok = with_headers(
        &trunk_response(&b_invite, 200, "OK", SDP),
        "Session-Expires: 120;refresher=uas\r\nRequire: timer\r\n",
    );
    let o = lab.from_trunk_text(&ok);
    let a_ok = only(&o, PBX)[0].clone();
    assert!(a_ok.header(&HeaderName::SessionExpires).is_none());
    lab.from_pbx_text(&ack_from_pbx(&a_ok));
    // The trunk refreshes; the PBX (no timers) answers plainly; the trunk hears 120 s again.
    let update = trunk_in_dialog("UPDATE", 2, &b_invite, "z9hG4bKtrunkupd", "");
    let o = lab.from_trunk_text(&with_headers(
        &update,
        "Session-Expires: 120;refresher=uas\r\n",
    ));
    let a_update = only(&o, PBX)[0].clone();
    let o = lab.from_pbx_text(&pbx_response(&a_update, 200, ""));
    let ok = only(&o, TRUNK)[0].clone();
    assert_eq!(
        ok.header(&HeaderName::SessionExpires),
        Some("120;refresher=uas"),
        "{ok}"
    );
    assert!(ok
        .header(&HeaderName::Require)
        .unwrap_or("")
        .contains("timer"));
}

#[test]
fn sluice_refreshes_with_a_reinvite_a_callee_that_does_not_allow_update() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    let ok = with_headers(
        &trunk_response(&b_invite, 200, "OK", SDP),
        "Allow: INVITE, ACK, BYE, CANCEL\r\nSession-Expires: 120;refresher=uac\r\n",
    );
    let o = lab.from_trunk_text(&ok);
    let a_ok = only(&o, PBX)[0].clone();
    lab.from_pbx_text(&ack_from_pbx(&a_ok));
    let o = lab.run_for(Duration::from_secs(60), Duration::from_secs(1));
    let reinvite = only(&o, TRUNK)[0].clone();
    assert_eq!(reinvite.method(), Some(&Method::Invite));
    assert_eq!(reinvite.call_id(), b_invite.call_id());
    assert!(
        !reinvite.body.is_empty(),
        "the SDP Sluice last sent: {reinvite}"
    );
    assert!(only(&o, PBX).is_empty(), "the PBX hears nothing of it");
    let o = lab.from_trunk_text(&with_headers(
        &trunk_response(&reinvite, 200, "OK", SDP),
        "Session-Expires: 120;refresher=uac\r\n",
    ));
    let ack = only(&o, TRUNK)[0].clone();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.cseq().unwrap().0, reinvite.cseq().unwrap().0);
    assert!(only(&o, PBX).is_empty());
    // The trunk missed the ACK and sends its 200 again: ACKed again, nothing else.
    let o = lab.from_trunk_text(&with_headers(
        &trunk_response(&reinvite, 200, "OK", SDP),
        "Session-Expires: 120;refresher=uac\r\n",
    ));
    let again = only(&o, TRUNK);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].method(), Some(&Method::Ack));
    assert!(only(&o, PBX).is_empty());
    // Refreshed: the call lives past the first interval.
    let o = lab.run_for(Duration::from_secs(59), Duration::from_secs(1));
    assert_eq!(byes(&o, PBX) + byes(&o, TRUNK), 0, "{o:?}");
}

#[test]
fn sluices_own_refresh_challenged_by_the_trunk_goes_again_with_credentials() {
    let (mut lab, o) = trunk_with_credentials_refresh_due("INVITE, ACK, BYE, CANCEL, UPDATE");
    let update = only(&o, TRUNK)[0].clone();
    assert_eq!(update.method(), Some(&Method::Update));
    let challenge = with_headers(
        &trunk_response(&update, 407, "Proxy Authentication Required", ""),
        "Proxy-Authenticate: Digest realm=\"voip.example\", nonce=\"n0nce1\", algorithm=MD5\r\n",
    );
    let o = lab.from_trunk_text(&challenge);
    let again = only(&o, TRUNK)
        .into_iter()
        .find(|m| m.method() == Some(&Method::Update))
        .expect("the UPDATE again")
        .clone();
    let auth = again
        .header(&HeaderName::ProxyAuthorization)
        .expect("credentials");
    assert!(
        auth.contains("username=\"acct1\"") && auth.contains("nonce=\"n0nce1\""),
        "{auth}"
    );
    assert!(again.cseq().unwrap().0 > update.cseq().unwrap().0);
    lab.from_trunk_text(&with_headers(
        &trunk_response(&again, 200, "OK", ""),
        "Session-Expires: 120;refresher=uac\r\n",
    ));
    // Refreshed: no end before the next interval.
    let o = lab.run_for(Duration::from_secs(59), Duration::from_secs(1));
    assert_eq!(byes(&o, PBX) + byes(&o, TRUNK), 0, "{o:?}");
}

#[test]
fn sluices_own_reinvite_refresh_challenged_by_the_trunk_goes_again_and_is_acked_with_its_cseq() {
    let (mut lab, o) = trunk_with_credentials_refresh_due("INVITE, ACK, BYE, CANCEL");
    let reinvite = only(&o, TRUNK)[0].clone();
    assert_eq!(reinvite.method(), Some(&Method::Invite));
    let challenge = with_headers(
        &trunk_response(&reinvite, 401, "Unauthorized", ""),
        "WWW-Authenticate: Digest realm=\"voip.example\", nonce=\"n0nce2\", algorithm=MD5\r\n",
    );
    let o = lab.from_trunk_text(&challenge);
    let sent = only(&o, TRUNK);
    assert!(
        sent.iter().any(|m| m.method() == Some(&Method::Ack)
            && m.cseq().map(|c| c.0) == reinvite.cseq().map(|c| c.0)),
        "the 401 is ACKed by its transaction: {sent:?}"
    );
    let again = sent
        .iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("the re-INVITE again");
    let auth = again
        .header(&HeaderName::Authorization)
        .expect("credentials");
    assert!(auth.contains("nonce=\"n0nce2\""), "{auth}");
    assert!(!again.body.is_empty(), "the same offer");
    let new_cseq = again.cseq().unwrap().0;
    assert!(new_cseq > reinvite.cseq().unwrap().0);
    let o = lab.from_trunk_text(&with_headers(
        &trunk_response(again, 200, "OK", SDP),
        "Session-Expires: 120;refresher=uac\r\n",
    ));
    let ack = only(&o, TRUNK)[0].clone();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(
        ack.cseq().unwrap().0,
        new_cseq,
        "the ACK names the new CSeq"
    );
    assert!(only(&o, PBX).is_empty());
    let o = lab.run_for(Duration::from_secs(59), Duration::from_secs(1));
    assert_eq!(byes(&o, PBX) + byes(&o, TRUNK), 0, "{o:?}");
}

/// A call to a trunk with credentials whose 2xx (with `allow`) asks the caller's side to
/// refresh every 120 s, run until Sluice's refresh is due; what was sent meanwhile.
fn trunk_with_credentials_refresh_due(
    allow: &str,
) -> (
    Lab<sluice_b2bua::NoHooks>,
    Vec<(sluice_transaction::Flow, Message)>,
) {
    let mut cfg = lab_config(sluice_transaction::Transport::Udp);
    cfg.trunks[0].credentials = Some(sluice_auth::Credentials {
        username: "acct1".into(),
        password: "s3cret".into(),
    });
    let mut lab = Lab::with_hooks(cfg, sluice_b2bua::NoHooks);
    let o = lab.from_pbx_text(&pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    let ok = with_headers(
        &trunk_response(&b_invite, 200, "OK", SDP),
        &format!("Allow: {allow}\r\nSession-Expires: 120;refresher=uac\r\n"),
    );
    let o = lab.from_trunk_text(&ok);
    let a_ok = only(&o, PBX)[0].clone();
    lab.from_pbx_text(&ack_from_pbx(&a_ok));
    let o = lab.run_for(Duration::from_secs(60), Duration::from_secs(1));
    (lab, o)
}

#[test]
fn a_new_srtp_key_in_the_answer_to_sluices_refresh_reaches_the_relay() {
    let mut cfg = lab_config_with_media(sluice_transaction::Transport::Udp);
    cfg.trunks[0].srtp = Some(sluice_b2bua::config::TrunkSrtp {
        mode: sluice_media::SrtpMode::Required,
        suites: std::sync::Arc::from(vec![sluice_media::Suite::AesCm128HmacSha1_80]),
    });
    let mut lab = Lab::with_hooks(cfg, sluice_b2bua::NoHooks);
    let o = lab.from_pbx_text(&pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    let answer = |key: &str| {
        SDP.replace("RTP/AVP", "RTP/SAVP")
            + &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n")
    };
    let (k1, k2) = (
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk",
        "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0",
    );
    let ok = with_headers(
        &trunk_response(&b_invite, 200, "OK", &answer(k1)),
        "Allow: INVITE, ACK, BYE, CANCEL\r\nSession-Expires: 120;refresher=uac\r\n",
    );
    let o = lab.from_trunk_text(&ok);
    let a_ok = only(&o, PBX)[0].clone();
    lab.from_pbx_text(&ack_from_pbx(&a_ok));
    let theirs = |lab: &Lab<sluice_b2bua::NoHooks>| {
        lab.media.iter().rev().find_map(|op| match op {
            sluice_media::MediaOp::Update { crypto, .. } => match crypto[1] {
                sluice_media::EndCrypto::Srtp(k) => Some(k.theirs.to_base64()),
                _ => None,
            },
            _ => None,
        })
    };
    assert_eq!(theirs(&lab).as_deref(), Some(k1));
    let o = lab.run_for(Duration::from_secs(60), Duration::from_secs(1));
    let reinvite = only(&o, TRUNK)[0].clone();
    assert_eq!(reinvite.method(), Some(&Method::Invite));
    let o = lab.from_trunk_text(&with_headers(
        &trunk_response(&reinvite, 200, "OK", &answer(k2)),
        "Session-Expires: 120;refresher=uac\r\n",
    ));
    assert!(only(&o, PBX).is_empty(), "the PBX hears nothing of it");
    assert_eq!(
        theirs(&lab).as_deref(),
        Some(k2),
        "the trunk's new key is used"
    );
}
