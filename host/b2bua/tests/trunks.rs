//! Trunks as providers run them, through the engine with a fake clock: registration with a
//! challenge and refreshes, challenges to INVITEs answered once, failover to the next
//! destination, call limits, associated address blocks, keep-alive, and a gateway that
//! registers to Sluice and then takes a call.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_auth::{Algorithm, Authorization, Challenge, Credentials, NonceIssuer, Verdict};
use sluice_b2bua::testing::*;
use sluice_b2bua::{Destination, EngineConfig, NoHooks, TrunkConfig, TrunkKind};
use sluice_sip::{HeaderName, Message, Method};
use sluice_transaction::{response_to, Flow, Transport};
use std::time::Duration;

const SECOND: &str = "127.0.0.21:5060";

fn lab_with(change: impl FnOnce(&mut TrunkConfig)) -> Lab<NoHooks> {
    let mut cfg: EngineConfig = lab_config(Transport::Udp);
    change(&mut cfg.trunks[0]);
    let mut lab = Lab::with_hooks(cfg, NoHooks);
    // The agents start with the engine's first input.
    lab.engine.handle_timeout(lab.now);
    lab
}

/// The trunk's second destination, tried after the first.
fn second_destination() -> Destination {
    Destination {
        addr: addr(SECOND),
        transport: Transport::Udp,
        priority: 20,
        rank: 0,
        weight: 1,
    }
}

fn credentials() -> Option<Credentials> {
    Some(Credentials {
        username: "acct1".into(),
        password: "s3cret".into(),
    })
}

fn from(at: &str) -> Flow {
    Flow {
        transport: Transport::Udp,
        local: addr(EXTERNAL),
        remote: addr(at),
        conn: None,
    }
}

/// A challenge from the trunk to `req`.
fn challenge(req: &Message, status: u16, value: &str) -> String {
    let mut r = response_to(req, status, "Unauthorized", Some("trunktag"));
    let name = if status == 407 {
        HeaderName::ProxyAuthenticate
    } else {
        HeaderName::WwwAuthenticate
    };
    r.headers.push(name, value);
    String::from_utf8_lossy(&r.to_bytes()).into_owned()
}

/// `m` as the provider reads it: parsed again from its bytes, and valid SIP.
fn assert_valid_as_sent(m: &Message) {
    let again = sluice_sip::parse_message(&m.to_bytes()).expect("parses");
    assert_eq!(sluice_sip::validate(&again), Ok(()));
}

fn method(m: &Message) -> &str {
    m.method().map_or("", |m| m.as_str())
}

#[test]
fn a_register_trunk_registers_answers_the_challenge_and_refreshes() {
    let mut lab = Lab::with_hooks(
        {
            let mut cfg = lab_config(Transport::Udp);
            let t = &mut cfg.trunks[0];
            t.kind = TrunkKind::Register;
            t.credentials = credentials();
            t.domain = "voip.example".into();
            cfg
        },
        NoHooks,
    );
    lab.engine.handle_timeout(lab.now);
    let o = lab.out();
    let reg = only(&o, TRUNK)[0].clone();
    assert_eq!(method(&reg), "REGISTER");
    assert_eq!(reg.request_uri(), Some("sip:voip.example"));
    assert_eq!(
        reg.header(&HeaderName::Contact),
        Some("<sip:acct1@127.0.0.1:5080>")
    );
    // SHA-256, checked with Sluice's own verifier: the answer proves the password.
    let mut issuer = NonceIssuer::with_secret([3; 32], 300, Algorithm::Sha256);
    let c = issuer.challenge("voip.example", 1000, false);
    let o = lab.from_trunk_text(&challenge(&reg, 401, &c.to_header()));
    let authed = only(&o, TRUNK)[0].clone();
    assert_eq!(authed.call_id(), reg.call_id());
    assert_eq!(authed.cseq().unwrap().0, reg.cseq().unwrap().0 + 1);
    let a = Authorization::parse(authed.header(&HeaderName::Authorization).unwrap()).unwrap();
    let check = sluice_auth::Check {
        method: "REGISTER",
        realm: "voip.example",
        username: "acct1",
        password: "s3cret",
        now: 1001,
    };
    assert_eq!(issuer.check(&a, check), Verdict::Ok);
    let mut ok = response_to(&authed, 200, "OK", Some("trunktag"));
    ok.headers.push(
        HeaderName::Contact,
        "<sip:acct1@127.0.0.1:5080>;expires=120",
    );
    let o = lab.from_trunk_text(&String::from_utf8_lossy(&ok.to_bytes()));
    assert!(o.is_empty());
    let status = &lab.engine.trunk_status(lab.now)[0];
    assert_eq!(status.status, "registered");
    assert_eq!(status.last_registration.as_deref(), Some("200 OK"));
    // The refresh comes before the 120 s run out, with credentials for the known nonce.
    let o = lab.run_for(Duration::from_secs(89), Duration::from_secs(1));
    assert!(only(&o, TRUNK).is_empty(), "not yet");
    let o = lab.run_for(Duration::from_secs(2), Duration::from_secs(1));
    let refresh = only(&o, TRUNK)[0].clone();
    assert_eq!(method(&refresh), "REGISTER");
    let a = Authorization::parse(refresh.header(&HeaderName::Authorization).unwrap()).unwrap();
    assert_eq!(a.qop.unwrap().0, 2, "the nonce counted up");
    // A drain unregisters, once the refresh in flight is answered.
    lab.engine.unregister_trunks(lab.now);
    assert!(lab.out().is_empty());
    let o = lab.from_trunk_text(&String::from_utf8_lossy(
        &response_to(&refresh, 200, "OK", Some("trunktag")).to_bytes(),
    ));
    assert_eq!(only(&o, TRUNK)[0].header(&HeaderName::Expires), Some("0"));
}

/// An authentication ID that is an e-mail address (some providers use them), or holds a
/// space: the URIs of the REGISTER carry it escaped, and the message is valid SIP.
#[test]
fn a_username_that_a_uri_cannot_hold_as_it_is_is_escaped_in_the_register() {
    let mut lab = lab_with(|t| {
        t.kind = TrunkKind::Register;
        t.credentials = Some(Credentials {
            username: "ann@corp example".into(),
            password: "s3cret".into(),
        });
        t.domain = "voip.example".into();
    });
    let o = lab.out();
    let reg = only(&o, TRUNK)[0].clone();
    assert_eq!(method(&reg), "REGISTER");
    assert_eq!(
        reg.header(&HeaderName::Contact),
        Some("<sip:ann%40corp%20example@127.0.0.1:5080>")
    );
    for h in [HeaderName::To, HeaderName::From] {
        let v = reg.header(&h).unwrap();
        assert!(
            v.starts_with("<sip:ann%40corp%20example@voip.example>"),
            "{v}"
        );
    }
    assert_valid_as_sent(&reg);
}

/// A register trunk named by a bare IPv6 address and no domain: the REGISTER's URIs bracket it.
#[test]
fn a_register_trunk_on_an_ipv6_address_writes_it_in_brackets() {
    let mut lab = lab_with(|t| {
        t.kind = TrunkKind::Register;
        t.credentials = credentials();
        t.host = "2001:db8::20".into();
        t.domain = "2001:db8::20".into();
    });
    let o = lab.out();
    let reg = only(&o, TRUNK)[0].clone();
    assert_eq!(reg.request_uri(), Some("sip:[2001:db8::20]"));
    let to = reg.header(&HeaderName::To).unwrap();
    assert!(to.starts_with("<sip:acct1@[2001:db8::20]>"), "{to}");
    assert_valid_as_sent(&reg);
}

/// The keep-alive OPTIONS to a trunk on a bare IPv6 address brackets it in its Request-URI.
#[test]
fn a_keep_alive_probe_to_an_ipv6_trunk_writes_it_in_brackets() {
    let mut lab = lab_with(|t| {
        t.keepalive = Some((Duration::from_secs(10), false));
        t.host = "2001:db8::20".into();
    });
    let o = lab.out();
    let probe = only(&o, TRUNK)[0].clone();
    assert_eq!(method(&probe), "OPTIONS");
    assert_eq!(probe.request_uri(), Some("sip:[2001:db8::20]"));
    assert_valid_as_sent(&probe);
}

#[test]
fn an_invite_challenged_by_the_trunk_is_answered_once_and_invisibly() {
    let mut lab = lab_with(|t| {
        t.kind = TrunkKind::Credentials;
        t.credentials = credentials();
    });
    let o = lab.from_pbx_text(&pbx_invite());
    let first = only(&o, TRUNK)[0].clone();
    let c = r#"Digest realm="pstn.example", nonce="n1", qop="auth", algorithm=MD5"#;
    let o = lab.from_trunk_text(&challenge(&first, 407, c));
    assert!(only(&o, PBX).is_empty(), "the PBX sees nothing of it");
    let second = only(&o, TRUNK)
        .into_iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("the INVITE again")
        .clone();
    assert_eq!(second.call_id(), first.call_id());
    assert_eq!(second.from_tag(), first.from_tag());
    assert_eq!(second.cseq().unwrap().0, first.cseq().unwrap().0 + 1);
    let a = Authorization::parse(second.header(&HeaderName::ProxyAuthorization).unwrap());
    let a = a.unwrap();
    let expected = Credentials {
        username: "acct1".into(),
        password: "s3cret".into(),
    }
    .authorize(
        &Challenge::parse(c).unwrap(),
        "INVITE",
        second.request_uri().unwrap(),
        1,
        &a.qop.as_ref().unwrap().1,
    );
    assert_eq!(a.response, expected.response);
    let o = lab.from_trunk_text(&trunk_response(&second, 200, "OK", SDP));
    assert_eq!(statuses(&only(&o, PBX)), [200]);

    // The same nonce refused again: wrong credentials, the PBX gets 403.
    let mut lab = lab_with(|t| {
        t.kind = TrunkKind::Credentials;
        t.credentials = credentials();
    });
    let o = lab.from_pbx_text(&pbx_invite());
    let first = only(&o, TRUNK)[0].clone();
    let o = lab.from_trunk_text(&challenge(&first, 401, c));
    let second = only(&o, TRUNK)
        .into_iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .unwrap()
        .clone();
    let o = lab.from_trunk_text(&challenge(&second, 401, c));
    assert_eq!(statuses(&only(&o, PBX)), [403]);
    assert_eq!(lab.engine.active_calls(), 0);
}

#[test]
fn a_failing_destination_hands_the_call_to_the_next_with_a_fresh_dialog() {
    let mut lab = lab_with(|t| {
        t.destinations.push(second_destination());
    });
    let o = lab.from_pbx_text(&pbx_invite());
    let first = only(&o, TRUNK)[0].clone();
    let o = lab.from_trunk_text(&trunk_response(&first, 503, "Service Unavailable", ""));
    assert!(statuses(&only(&o, PBX)).is_empty(), "the PBX sees one call");
    let second = only(&o, SECOND)[0].clone();
    assert_eq!(method(&second), "INVITE");
    assert_ne!(second.call_id(), first.call_id(), "a fresh dialog");
    assert_ne!(second.from_tag(), first.from_tag());
    assert_eq!(second.body, first.body);
    let ok =
        trunk_response(&second, 200, "OK", SDP).replace("127.0.0.20:5060>", "127.0.0.21:5060>");
    let o = lab.feed(from(SECOND), &ok);
    let a_ok = only(&o, PBX)[0].clone();
    assert_eq!(a_ok.status(), Some(200));
    // The dialog continues with the second destination.
    let o = lab.from_pbx_text(&ack_from_pbx(&a_ok));
    assert_eq!(only(&o, SECOND).len(), 1);
    let o = lab.from_pbx_text(&pbx_in_dialog("BYE", 2, &a_ok, "z9hG4bKbye", ""));
    let bye = only(&o, SECOND)[0].clone();
    assert_eq!(bye.call_id(), second.call_id());
    let status = &lab.engine.trunk_status(lab.now)[0];
    assert_eq!(status.destinations.len(), 2);
}

#[test]
fn silence_from_a_destination_fails_over_and_the_last_failure_reaches_the_pbx() {
    let mut lab = lab_with(|t| {
        t.destinations.push(second_destination());
    });
    let o = lab.from_pbx_text(&pbx_invite());
    assert_eq!(only(&o, TRUNK).len(), 1);
    // The first says nothing, not even 100 Trying, for the destination timeout (4 s).
    let o = lab.run_for(Duration::from_millis(3500), Duration::from_millis(500));
    assert!(
        only(&o, SECOND).is_empty(),
        "not before the destination timeout"
    );
    let o = lab.run_for(Duration::from_secs(1), Duration::from_millis(500));
    let second = only(&o, SECOND)
        .into_iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("the second destination")
        .clone();
    let o = lab.feed(from(SECOND), &trunk_response(&second, 486, "Busy Here", ""));
    assert_eq!(
        statuses(&only(&o, PBX)),
        [486],
        "486 is not a reason to fail over"
    );
}

#[test]
fn a_trunk_at_its_limit_takes_no_further_call() {
    let mut lab = lab_with(|t| t.max_calls = 1);
    lab.answered_call();
    let second = pbx_invite()
        .replace("pbx-call-1", "pbx-call-2")
        .replace("z9hG4bKpbx1", "z9hG4bKpbx2")
        .replace("tag=pbxtag", "tag=pbxtag2");
    let o = lab.from_pbx_text(&second);
    assert!(only(&o, TRUNK).is_empty(), "not sent to the trunk");
    assert_eq!(statuses(&only(&o, PBX)), [100, 503]);
    let status = &lab.engine.trunk_status(lab.now)[0];
    assert_eq!((status.active_calls, status.max_calls), (1, 1));
    assert_eq!(status.unusable, Some("at its call limit"));
    // The limit counts both directions: a call from the trunk now gets 503 too.
    let inbound = "INVITE sip:2001@127.0.0.1:5080 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.20:5060;branch=z9hG4bKin1\r\nMax-Forwards: 70\r\n\
        From: <sip:+15552230000@127.0.0.20>;tag=t1\r\nTo: <sip:2001@127.0.0.1>\r\n\
        Call-ID: in-1\r\nCSeq: 1 INVITE\r\nContact: <sip:p@127.0.0.20>\r\n\
        Content-Length: 0\r\n\r\n";
    let o = lab.from_trunk_text(inbound);
    assert!(only(&o, PBX).is_empty(), "not sent to the PBX");
    assert_eq!(statuses(&only(&o, TRUNK)), [100, 503]);
}

#[test]
fn associated_blocks_admit_a_trunks_other_addresses_and_only_those() {
    let mut lab = lab_with(|t| t.sources = vec!["127.0.9.0/24".parse().unwrap()]);
    let invite = |src: &str| {
        format!(
            "INVITE sip:2001@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bKin{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+15552230000@{src}>;tag=t1\r\nTo: <sip:2001@127.0.0.1>\r\n\
             Call-ID: in-{src}\r\nCSeq: 1 INVITE\r\nContact: <sip:p@{src}>\r\nContent-Length: 0\r\n\r\n",
            src.len()
        )
    };
    let o = lab.feed(from("127.0.9.5:5060"), &invite("127.0.9.5:5060"));
    assert_eq!(only(&o, PBX).len(), 1, "an associated address calls in");
    let o = lab.feed(from("127.0.8.5:5060"), &invite("127.0.8.5:5060"));
    let refused = only(&o, "127.0.8.5:5060");
    assert_eq!(statuses(&refused), [403]);
    assert!(only(&o, PBX).is_empty());
}

#[test]
fn keep_alive_takes_a_silent_trunk_out_and_puts_it_back() {
    let mut lab = lab_with(|t| t.keepalive = Some((Duration::from_secs(10), false)));
    let o = lab.out();
    let probe = only(&o, TRUNK)[0].clone();
    assert_eq!(method(&probe), "OPTIONS");
    // No answer: after Timer F the trunk is down and calls are refused.
    lab.run_for(Duration::from_secs(33), Duration::from_millis(500));
    assert_eq!(lab.engine.trunk_status(lab.now)[0].status, "down");
    let o = lab.from_pbx_text(&pbx_invite());
    assert!(only(&o, TRUNK)
        .iter()
        .all(|m| m.method() != Some(&Method::Invite)));
    assert_eq!(statuses(&only(&o, PBX)), [100, 503]);
    // It answers the next probe (even with 404): up again.
    let o = lab.run_for(Duration::from_secs(11), Duration::from_millis(500));
    let probe = only(&o, TRUNK)
        .into_iter()
        .find(|m| m.method() == Some(&Method::Options))
        .expect("probed again")
        .clone();
    lab.from_trunk_text(&trunk_response(&probe, 404, "Not Found", ""));
    assert_eq!(lab.engine.trunk_status(lab.now)[0].status, "up");
}

#[test]
fn a_gateway_registers_to_sluice_and_then_takes_a_call() {
    let gw = "127.0.0.30:5062";
    let mut lab = lab_with(|t| {
        t.kind = TrunkKind::AcceptRegister;
        t.host = "gw.example".into();
        t.domain = "gw.example".into();
        t.destinations.clear();
        t.credentials = credentials();
    });
    // Not registered: a call to it gets 480.
    let o = lab.from_pbx_text(&pbx_invite());
    assert_eq!(statuses(&only(&o, PBX)), [100, 480]);
    let register = |auth: Option<String>, cseq: u32| {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:gw.example SIP/2.0\r\nVia: SIP/2.0/UDP {gw};branch=z9hG4bKr{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:acct1@gw.example>;tag=g1\r\nTo: <sip:acct1@gw.example>\r\n\
             Call-ID: reg1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:acct1@10.1.1.1:5060>\r\n\
             Expires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let o = lab.feed(from(gw), &register(None, 1));
    let ch = only(&o, gw)[0].clone();
    assert_eq!(ch.status(), Some(401));
    let c = Challenge::parse(ch.header(&HeaderName::WwwAuthenticate).unwrap()).unwrap();
    let answer = |password: &str, nc: u32| {
        Credentials {
            username: "acct1".into(),
            password: password.into(),
        }
        .authorize(&c, "REGISTER", "sip:gw.example", nc, "cn")
        .to_header()
    };
    let o = lab.feed(from(gw), &register(Some(answer("wrong", 1)), 2));
    assert_eq!(
        statuses(&only(&o, gw)),
        [401],
        "a wrong password is challenged again"
    );
    let o = lab.feed(from(gw), &register(Some(answer("s3cret", 1)), 3));
    let ok = only(&o, gw)[0].clone();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        ok.header(&HeaderName::Contact),
        Some("<sip:acct1@10.1.1.1:5060>;expires=600")
    );
    assert_eq!(lab.engine.trunk_status(lab.now)[0].bindings, 1);
    // The call goes where the gateway registered from (it may be behind NAT).
    let o = lab.from_pbx_text(
        &pbx_invite()
            .replace("pbx-call-1", "pbx-call-2")
            .replace("z9hG4bKpbx1", "z9hG4bKpbx2"),
    );
    let invite = only(&o, gw)[0].clone();
    assert_eq!(method(&invite), "INVITE");
    assert!(
        invite.request_uri().unwrap().contains("@10.1.1.1:5060"),
        "{invite}"
    );
    // Its binding expires on its own.
    lab.run_for(Duration::from_secs(601), Duration::from_secs(5));
    assert_eq!(lab.engine.trunk_status(lab.now)[0].bindings, 0);
}

#[test]
fn keep_alive_skips_a_silent_destination_and_keeps_the_trunk_up() {
    let mut lab = lab_with(|t| {
        t.keepalive = Some((Duration::from_secs(10), false));
        t.destinations.push(second_destination());
    });
    let o = lab.out();
    let to_second = only(&o, SECOND)[0].clone();
    assert_eq!(method(&to_second), "OPTIONS", "each destination is probed");
    lab.feed(from(SECOND), &trunk_response(&to_second, 200, "OK", ""));
    // The first never answers: after Timer F it is skipped, the trunk stays up.
    lab.run_for(Duration::from_secs(33), Duration::from_millis(500));
    let status = &lab.engine.trunk_status(lab.now)[0];
    assert_eq!(status.status, "up");
    assert!(status.destinations[0].ends_with("(down)"), "{status:?}");
    let o = lab.from_pbx_text(&pbx_invite());
    assert!(only(&o, TRUNK)
        .iter()
        .all(|m| m.method() != Some(&Method::Invite)));
    assert_eq!(method(only(&o, SECOND)[0]), "INVITE");
}

#[test]
fn a_reload_adds_changes_and_removes_trunks_without_touching_calls_on_the_others() {
    const REGISTRAR: &str = "127.0.0.30:5060";
    let registering = |name: &str| {
        let mut t = TrunkConfig::simple(name, "127.0.0.30", Transport::Udp, addr(REGISTRAR));
        t.kind = TrunkKind::Register;
        t.credentials = credentials();
        t.domain = "voip.example".into();
        t
    };
    let mut cfg = lab_config(Transport::Udp);
    cfg.trunks.push(registering("reg"));
    let mut lab = Lab::with_hooks(cfg.clone(), NoHooks);
    lab.engine.handle_timeout(lab.now);
    let to_registrar = |o: &Sent| -> Vec<Message> {
        o.iter()
            .filter(|(f, _)| f.remote == addr(REGISTRAR))
            .map(|(_, m)| m.clone())
            .collect()
    };
    let o = lab.out();
    let reg = to_registrar(&o)[0].clone();
    assert_eq!(method(&reg), "REGISTER");
    let mut ok = response_to(&reg, 200, "OK", Some("regtag"));
    ok.headers.push(
        HeaderName::Contact,
        "<sip:acct1@127.0.0.1:5080>;expires=600",
    );
    lab.feed(from(REGISTRAR), &String::from_utf8_lossy(&ok.to_bytes()));
    assert_eq!(lab.engine.trunk_status(lab.now)[1].status, "registered");
    // A call on `loop`, established.
    let call = lab.established_call();

    // A change that leaves the registration as it is (a call limit): no unregister.
    let mut changed = cfg.clone();
    changed.trunks[1].max_calls = 5;
    lab.engine.reconfigure(changed.clone()).unwrap();
    lab.engine.handle_timeout(lab.now);
    let o = lab.out();
    assert!(
        to_registrar(&o)
            .iter()
            .all(|m| m.header(&HeaderName::Expires) != Some("0")),
        "the binding stays: {o:?}"
    );
    assert_eq!(lab.engine.trunk_status(lab.now)[1].status, "registered");

    // `reg` removed, `loop` changed, `new` added.
    let mut next = changed;
    next.trunks.remove(1);
    next.trunks[0].max_calls = 7;
    next.trunks.push(TrunkConfig::simple(
        "new",
        "127.0.0.40",
        Transport::Udp,
        addr("127.0.0.40:5060"),
    ));
    lab.engine.reconfigure(next).unwrap();
    lab.engine.handle_timeout(lab.now);
    let o = lab.out();
    let gone = to_registrar(&o);
    assert_eq!(gone.len(), 1, "{o:?}");
    assert_eq!(method(&gone[0]), "REGISTER");
    assert_eq!(gone[0].header(&HeaderName::Expires), Some("0"));
    let names: Vec<String> = lab
        .engine
        .trunk_status(lab.now)
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["loop", "new"]);
    // The call on `loop` goes on: the PBX's BYE reaches the trunk and its 200 comes back.
    let o = lab.from_pbx_text(&pbx_in_dialog("BYE", 2, &call.a_ok, "z9hG4bKbye1", ""));
    let bye = only(&o, TRUNK)[0].clone();
    assert_eq!(method(&bye), "BYE");
    let o = lab.from_trunk_text(&trunk_response(&bye, 200, "OK", ""));
    assert_eq!(statuses(&only(&o, PBX)), [200]);
}

#[test]
fn public_address_and_outbound_proxy_shape_what_the_trunk_sees() {
    const PROXY: &str = "127.0.0.99:5060";
    let mut lab = lab_with(|t| {
        t.public_address = Some("203.0.113.5".parse().unwrap());
        t.outbound_proxy = Some(addr(PROXY));
    });
    let o = lab.from_pbx_text(&pbx_invite());
    assert!(
        only(&o, TRUNK).is_empty(),
        "sent through the proxy, not to the trunk"
    );
    let invite = only(&o, PROXY)[0].clone();
    assert_eq!(method(&invite), "INVITE");
    assert!(
        invite.request_uri().unwrap().contains("127.0.0.20"),
        "the Request-URI still names the trunk: {:?}",
        invite.request_uri()
    );
    let contact = invite.header(&HeaderName::Contact).unwrap();
    assert!(contact.contains("203.0.113.5:5080"), "{contact}");
    let via = invite.header(&HeaderName::Via).unwrap();
    assert!(
        via.contains("127.0.0.1:5080"),
        "Via keeps the private address: {via}"
    );

    // Via rewritten too.
    let mut lab = lab_with(|t| {
        t.public_address = Some("203.0.113.5".parse().unwrap());
        t.via_public = true;
    });
    let o = lab.from_pbx_text(&pbx_invite());
    let invite = only(&o, TRUNK)[0].clone();
    let via = invite.header(&HeaderName::Via).unwrap();
    assert!(via.contains("203.0.113.5:5080"), "{via}");
    let text = String::from_utf8_lossy(&invite.to_bytes()).into_owned();
    assert!(!text.contains("127.0.0.1:5080"), "{text}");
}

#[test]
fn a_destination_given_up_that_answers_late_is_hung_up() {
    let mut lab = lab_with(|t| {
        t.destinations.push(second_destination());
    });
    let o = lab.from_pbx_text(&pbx_invite());
    let first = only(&o, TRUNK)[0].clone();
    let o = lab.run_for(Duration::from_millis(4500), Duration::from_millis(500));
    let second = only(&o, SECOND)
        .into_iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .expect("the second destination")
        .clone();
    let o = lab.feed(from(SECOND), &trunk_response(&second, 180, "Ringing", ""));
    assert_eq!(statuses(&only(&o, PBX)), [180]);
    // The first answers after all: ACKed and hung up in its own dialog; the PBX hears nothing.
    let late = trunk_response(&first, 200, "OK", SDP);
    let o = lab.from_trunk_text(&late);
    assert!(only(&o, PBX).is_empty(), "{o:?}");
    let to_first = only(&o, TRUNK);
    let methods: Vec<&str> = to_first.iter().map(|m| method(m)).collect();
    assert_eq!(methods, ["ACK", "BYE"]);
    for m in &to_first {
        assert_eq!(m.call_id(), first.call_id(), "the first attempt's dialog");
        assert_ne!(m.call_id(), second.call_id());
    }
    // Its retransmission does not start another hang-up.
    let o = lab.from_trunk_text(&late);
    assert!(only(&o, TRUNK).iter().all(|m| method(m) != "BYE"));
    // The call goes on at the second.
    let o = lab.feed(from(SECOND), &trunk_response(&second, 200, "OK", SDP));
    assert_eq!(statuses(&only(&o, PBX)), [200]);
}

#[test]
fn after_handing_over_an_engine_neither_refreshes_nor_unregisters_and_its_gateways_move() {
    let gw = "127.0.0.30:5062";
    let mut cfg = lab_config(Transport::Udp);
    cfg.trunks[0].kind = TrunkKind::Register;
    cfg.trunks[0].credentials = credentials();
    cfg.trunks[0].domain = "voip.example".into();
    let mut gateway = cfg.trunks[0].clone();
    gateway.name = "gw".into();
    gateway.kind = TrunkKind::AcceptRegister;
    gateway.host = "gw.example".into();
    gateway.domain = "gw.example".into();
    gateway.destinations.clear();
    cfg.trunks.push(gateway);
    let mut old = Lab::with_hooks(cfg.clone(), NoHooks);
    old.engine.handle_timeout(old.now);
    let o = old.out();
    let reg = only(&o, TRUNK)[0].clone();
    let mut ok = response_to(&reg, 200, "OK", Some("trunktag"));
    ok.headers.push(
        HeaderName::Contact,
        "<sip:acct1@127.0.0.1:5080>;expires=120",
    );
    old.from_trunk_text(&String::from_utf8_lossy(&ok.to_bytes()));
    // The gateway registers (challenged once).
    let register = |auth: Option<String>, cseq: u32| {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:gw.example SIP/2.0\r\nVia: SIP/2.0/UDP {gw};branch=z9hG4bKr{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:acct1@gw.example>;tag=g1\r\nTo: <sip:acct1@gw.example>\r\n\
             Call-ID: reg1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:acct1@10.1.1.1:5060>\r\n\
             Expires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let o = old.feed(from(gw), &register(None, 1));
    let ch = only(&o, gw)[0].clone();
    let c = Challenge::parse(ch.header(&HeaderName::WwwAuthenticate).unwrap()).unwrap();
    let auth = credentials()
        .unwrap()
        .authorize(&c, "REGISTER", "sip:gw.example", 1, "cn")
        .to_header();
    let o = old.feed(from(gw), &register(Some(auth), 2));
    assert_eq!(statuses(&only(&o, gw)), [200]);

    let h = old.engine.hand_over(old.now);
    assert_eq!(h.bindings.len(), 1, "{h:?}");
    assert_eq!(h.bindings[0].trunk, "gw");
    // The successor registers now: the old engine sends nothing of its own, not even when
    // asked to unregister (the successor registered the same contact).
    let o = old.run_for(Duration::from_secs(300), Duration::from_secs(1));
    assert!(o.is_empty(), "no refresh: {o:?}");
    old.engine.unregister_trunks(old.now);
    assert!(old.out().is_empty(), "no unregistration");

    let mut new = Lab::with_hooks(cfg, NoHooks);
    new.engine.adopt(h, new.now);
    let gw_status = new
        .engine
        .trunk_status(new.now)
        .into_iter()
        .find(|t| t.name == "gw")
        .unwrap();
    assert_eq!(gw_status.bindings, 1, "the gateway's registration moved");
}

#[test]
fn a_trunk_asking_for_sips_uris_gets_them_over_tls() {
    let mut cfg: EngineConfig = lab_config(Transport::Udp);
    cfg.listeners.push(sluice_b2bua::ListenerAddr {
        side: sluice_b2bua::Side::External,
        transport: Transport::Tls,
        addr: addr("127.0.0.1:5061"),
    });
    let t = &mut cfg.trunks[0];
    t.transport = Transport::Tls;
    t.destinations[0].transport = Transport::Tls;
    let plain = Lab::with_hooks(cfg.clone(), NoHooks);
    cfg.trunks[0].sips = true;
    for (mut lab, sips) in [(plain, false), (Lab::with_hooks(cfg, NoHooks), true)] {
        let o = lab.from_pbx_text(&pbx_invite());
        let invite = only(&o, TRUNK)[0].clone();
        let uri = invite.request_uri().unwrap().to_string();
        let contact = invite.header(&HeaderName::Contact).unwrap().to_string();
        let to = invite.header(&HeaderName::To).unwrap().to_string();
        if sips {
            assert!(uri.starts_with("sips:15552001111@"), "{uri}");
            assert!(!uri.contains("transport="), "sips implies TLS: {uri}");
            assert!(contact.starts_with("<sips:"), "{contact}");
            assert!(to.starts_with("<sips:"), "{to}");
        } else {
            assert!(
                uri.starts_with("sip:15552001111@") && uri.ends_with(";transport=tls"),
                "{uri}"
            );
            assert!(contact.contains(";transport=tls"), "{contact}");
        }
        let via = invite.header(&HeaderName::Via).unwrap();
        assert!(via.starts_with("SIP/2.0/TLS 127.0.0.1:5061;"), "{via}");
    }
}
