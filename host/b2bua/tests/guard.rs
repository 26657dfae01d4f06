//! The flood guard in the engine: a source over its request limit, or failing authentication,
//! is banned and its packets dropped unread; the PBX and the trunks are never counted; a
//! stranger's OPTIONS learns nothing that fingerprints Sluice.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_auth::{Challenge, Credentials};
use sluice_b2bua::testing::*;
use sluice_b2bua::{BanReason, EngineConfig, GuardLimits, NoHooks, TrunkKind};
use sluice_sip::HeaderName;
use sluice_transaction::{Flow, Transport};
use std::time::Duration;

const STRANGER: &str = "127.0.0.99:5060";
const GATEWAY: &str = "127.0.0.30:5062";

fn limits() -> GuardLimits {
    GuardLimits {
        window: Duration::from_secs(2),
        max_requests: 10,
        ban: Duration::from_secs(60),
        max_auth_failures: 3,
        auth_window: Duration::from_secs(60),
        max_sources: 1000,
    }
}

fn guarded(change: impl FnOnce(&mut EngineConfig)) -> Lab<NoHooks> {
    let mut cfg = lab_config(Transport::Udp);
    cfg.guard.limits = Some(limits());
    change(&mut cfg);
    Lab::with_hooks(cfg, NoHooks)
}

fn options(from: &str, n: u32) -> String {
    format!(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKopt{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:scan@{from}>;tag=s{n}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: opt-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

fn internal_from(lab: &Lab<NoHooks>, at: &str) -> Flow {
    Flow {
        remote: addr(at),
        ..lab.from_pbx()
    }
}

#[test]
fn a_flooding_stranger_is_banned_while_the_pbx_and_the_trunk_are_never_counted() {
    let mut lab = guarded(|_| {});
    let stranger = internal_from(&lab, STRANGER);
    let mut answered = 0;
    for n in 0..100 {
        answered += only(&lab.feed(stranger, &options(STRANGER, n)), STRANGER).len();
    }
    assert_eq!(answered, 10, "answered within the limit, then dropped");
    let bans = lab.engine.bans(lab.now);
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].source, addr(STRANGER).ip());
    assert_eq!(bans[0].reason, BanReason::Flood);
    assert_eq!(bans[0].dropped, 90);
    // Nothing of the flood was parsed: the engine's counters did not move past the limit.
    assert_eq!(lab.engine.stats().messages_in, 10);

    // The PBX and the trunk send far more than the limit, and are all answered; a call works.
    for n in 0..100 {
        assert_eq!(only(&lab.from_pbx_text(&options(PBX, n)), PBX).len(), 1);
        assert_eq!(
            only(&lab.from_trunk_text(&options(TRUNK, n)), TRUNK).len(),
            1
        );
    }
    let call = lab.from_pbx_text(&pbx_invite());
    assert_eq!(only(&call, TRUNK).len(), 1, "{call:?}");

    // The ban ends on its own ...
    lab.run_for(Duration::from_secs(61), Duration::from_secs(1));
    assert!(lab.engine.bans(lab.now).is_empty());
    assert_eq!(
        only(&lab.feed(stranger, &options(STRANGER, 200)), STRANGER).len(),
        1
    );
    // ... or when the operator lifts it.
    for n in 300..320 {
        lab.feed(stranger, &options(STRANGER, n));
    }
    assert_eq!(lab.engine.bans(lab.now).len(), 1);
    assert_eq!(lab.engine.lift_bans(Some(addr(STRANGER).ip()), lab.now), 1);
    assert_eq!(
        only(&lab.feed(stranger, &options(STRANGER, 400)), STRANGER).len(),
        1
    );
}

#[test]
fn exempt_blocks_and_a_disabled_guard_count_nothing() {
    for mut lab in [
        guarded(|c| c.guard.exempt = vec!["127.0.0.96/30".parse().unwrap()]),
        guarded(|c| c.guard.limits = None),
    ] {
        let stranger = internal_from(&lab, STRANGER);
        for n in 0..100 {
            assert_eq!(
                only(&lab.feed(stranger, &options(STRANGER, n)), STRANGER).len(),
                1
            );
        }
        assert!(lab.engine.bans(lab.now).is_empty());
    }
}

#[test]
fn a_gateway_failing_authentication_is_banned() {
    let mut lab = guarded(|c| {
        let t = &mut c.trunks[0];
        t.kind = TrunkKind::AcceptRegister;
        t.host = "gw.example".into();
        t.domain = "gw.example".into();
        t.destinations.clear();
        t.credentials = Some(Credentials {
            username: "acct1".into(),
            password: "s3cret".into(),
        });
    });
    lab.engine.handle_timeout(lab.now);
    let gw = Flow {
        remote: addr(GATEWAY),
        ..lab.from_trunk()
    };
    let register = |auth: Option<String>, cseq: u32| {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:gw.example SIP/2.0\r\nVia: SIP/2.0/UDP {GATEWAY};branch=z9hG4bKr{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:acct1@gw.example>;tag=g1\r\nTo: <sip:acct1@gw.example>\r\n\
             Call-ID: reg1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:acct1@10.1.1.1:5060>\r\n\
             Expires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let o = lab.feed(gw, &register(None, 1));
    let ch = only(&o, GATEWAY)[0].clone();
    let c = Challenge::parse(ch.header(&HeaderName::WwwAuthenticate).unwrap()).unwrap();
    let wrong = Credentials {
        username: "acct1".into(),
        password: "guess".into(),
    };
    // Three failures are challenged again; the fourth bans the source.
    for cseq in 2..6 {
        let auth = wrong
            .authorize(&c, "REGISTER", "sip:gw.example", cseq, "cn")
            .to_header();
        let o = lab.feed(gw, &register(Some(auth), cseq));
        assert_eq!(statuses(&only(&o, GATEWAY)), [401], "failure {cseq}");
    }
    let bans = lab.engine.bans(lab.now);
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0].reason, BanReason::AuthFailures);
    // Even the right password is not heard now.
    let right = Credentials {
        username: "acct1".into(),
        password: "s3cret".into(),
    }
    .authorize(&c, "REGISTER", "sip:gw.example", 9, "cn")
    .to_header();
    assert!(lab.feed(gw, &register(Some(right), 9)).is_empty());
    assert_eq!(lab.engine.trunk_status(lab.now)[0].bindings, 0);
}

#[test]
fn a_strangers_options_learns_no_fingerprint() {
    let fingerprint = [
        HeaderName::Allow,
        HeaderName::Supported,
        HeaderName::Accept,
        HeaderName::Server,
    ];
    let mut lab = guarded(|_| {});
    let stranger = internal_from(&lab, STRANGER);
    let o = lab.feed(stranger, &options(STRANGER, 1));
    let ok = only(&o, STRANGER)[0];
    assert_eq!(ok.status(), Some(200));
    for h in &fingerprint {
        assert!(ok.header(h).is_none(), "{h:?} shown to a stranger: {ok}");
    }
    let o = lab.from_pbx_text(&options(PBX, 2));
    let ok = only(&o, PBX)[0];
    for h in &fingerprint {
        assert!(ok.header(h).is_some(), "{h:?} missing for the PBX: {ok}");
    }
    // Nor from the other answers a scanner collects: 489 to a SUBSCRIBE, 403 to an INVITE.
    let subscribe = options(STRANGER, 3)
        .replace("OPTIONS sip:", "SUBSCRIBE sip:")
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 SUBSCRIBE");
    let o = lab.feed(stranger, &subscribe);
    let refused = only(&o, STRANGER)[0];
    assert_eq!(refused.status(), Some(489));
    let invite = pbx_invite().replace("127.0.0.10:5060;branch", "127.0.0.99:5060;branch");
    let o = lab.feed(stranger, &invite);
    let forbidden = only(&o, STRANGER)[0];
    assert_eq!(forbidden.status(), Some(403));
    for m in [refused, forbidden] {
        assert!(
            m.header(&HeaderName::Server).is_none() && m.header(&HeaderName::Allow).is_none(),
            "{m}"
        );
    }
    // Configured to show them.
    let mut lab = guarded(|c| c.guard.fingerprint_strangers = true);
    let o = lab.feed(stranger, &options(STRANGER, 1));
    assert!(only(&o, STRANGER)[0].header(&HeaderName::Allow).is_some());
}

/// A provider's cluster node that only appears in a call's Contact (it will send the call's
/// BYE and refreshes) is never counted while the call is up; once the call is over it is a
/// stranger like any other.
#[test]
fn the_next_hop_of_a_call_in_progress_is_never_banned() {
    const NODE: &str = "127.0.0.25:5060";
    let mut lab = guarded(|_| {});
    let o = lab.from_pbx_text(&pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    let ok = trunk_response(&b_invite, 200, "OK", SDP).replace(
        "<sip:callee@127.0.0.20:5060>",
        &format!("<sip:callee@{NODE}>"),
    );
    let o = lab.from_trunk_text(&ok);
    let a_ok = only(&o, PBX)[0].clone();
    lab.from_pbx_text(&ack_from_pbx(&a_ok));
    let node = Flow {
        remote: addr(NODE),
        ..lab.from_trunk()
    };
    for n in 0..30 {
        assert_eq!(
            only(&lab.feed(node, &options(NODE, n)), NODE).len(),
            1,
            "request {n}"
        );
    }
    assert!(lab.engine.bans(lab.now).is_empty());
    // The PBX hangs up; the BYE goes to the node, which answers; the call is over.
    let o = lab.from_pbx_text(&pbx_in_dialog("BYE", 2, &a_ok, "z9hG4bKbye", ""));
    let bye = only(&o, NODE)[0].clone();
    lab.feed(node, &trunk_response(&bye, 200, "OK", ""));
    assert_eq!(lab.engine.active_calls(), 0);
    let answered: usize = (100..130)
        .map(|n| only(&lab.feed(node, &options(NODE, n)), NODE).len())
        .sum();
    assert_eq!(answered, 10, "counted again once the call is over");
}
