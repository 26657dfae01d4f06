//! Calls through the engine: set-up with fresh identifiers on the far leg, the answer, the
//! end, and the refusals of calls that cannot be made.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_b2bua::NoHooks;
use sluice_sip::{HeaderName, Method};
use sluice_transaction::{Flow, Transport};
use std::time::Duration;

#[test]
fn outbound_invite_gets_fresh_identifiers_and_hides_the_pbx() {
    let mut lab = Lab::new();
    let Answered { b_invite, a_ok } = lab.answered_call();
    let text = b_invite.to_string();
    assert_eq!(b_invite.request_uri(), Some("sip:15552001111@127.0.0.20"));
    assert_ne!(b_invite.call_id(), Some("pbx-call-1@127.0.0.10"));
    assert_ne!(b_invite.from_tag(), Some("pbxtag"));
    assert_eq!(b_invite.headers.count(&HeaderName::Via), 1);
    assert!(b_invite.top_via().unwrap().host == "127.0.0.1");
    assert_eq!(b_invite.max_forwards(), Some(69));
    let head = text.split("\r\n\r\n").next().unwrap();
    for leak in [
        "127.0.0.10:5060",
        "pbx-call-1",
        "pbxtag",
        "proxy.pbx.internal",
        "pbx.internal",
        "X-Internal-Secret",
    ] {
        assert!(!head.contains(leak), "{leak} leaked:\n{text}");
    }
    // The caller's number survives in the identity header, on Sluice's host.
    assert_eq!(
        b_invite.header(&HeaderName::PAssertedIdentity),
        Some("\"Alice\" <sip:+15552230000@127.0.0.1:5080>")
    );
    assert!(b_invite
        .header(&HeaderName::From)
        .unwrap()
        .starts_with("\"Alice\" <sip:2001@127.0.0.1:5080>"));
    assert_eq!(&b_invite.body[..], SDP.as_bytes());
    // Toward the PBX: its own Call-ID and tag, our tag, our Contact, the PBX's Record-Route.
    assert_eq!(a_ok.call_id(), Some("pbx-call-1@127.0.0.10"));
    assert_eq!(a_ok.from_tag(), Some("pbxtag"));
    assert!(a_ok.to_tag().is_some_and(|t| t != "trunktag"));
    assert_eq!(
        a_ok.header(&HeaderName::Contact),
        Some("<sip:15552001111@127.0.0.1:5060>")
    );
    assert_eq!(
        a_ok.header(&HeaderName::RecordRoute),
        Some("<sip:proxy.pbx.internal;lr>")
    );
    assert!(!a_ok.to_string().contains("127.0.0.20"));
    // rport was filled in for the PBX.
    assert!(a_ok
        .header(&HeaderName::Via)
        .unwrap()
        .contains("rport=5060"));
}

#[test]
fn ack_and_bye_are_relayed_and_the_call_ends() {
    let mut lab = Lab::new();
    let Answered { b_invite, a_ok } = lab.answered_call();
    let o = lab.from_pbx_text(&ack_from_pbx(&a_ok));
    let ack = only(&o, TRUNK);
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].method(), Some(&Method::Ack));
    assert_eq!(ack[0].call_id(), b_invite.call_id());
    assert_eq!(ack[0].to_tag(), Some("trunktag"));
    assert_eq!(ack[0].request_uri(), Some("sip:callee@127.0.0.20:5060"));
    assert_eq!(ack[0].cseq().map(|c| c.0), b_invite.cseq().map(|c| c.0));
    let o = lab.from_pbx_text(&pbx_in_dialog("BYE", 2, &a_ok, "z9hG4bKpbxbye", ""));
    let b_bye = only(&o, TRUNK)[0].clone();
    assert_eq!(b_bye.method(), Some(&Method::Bye));
    assert!(b_bye.cseq().unwrap().0 > b_invite.cseq().unwrap().0);
    let o = lab.from_trunk_text(&trunk_response(&b_bye, 200, "OK", ""));
    let ok = only(&o, PBX);
    assert_eq!(ok[0].status(), Some(200));
    assert_eq!(ok[0].cseq(), Some((2, Method::Bye)));
    assert_eq!(lab.engine.active_calls(), 0);
    assert_eq!(lab.engine.stats().calls_answered, 1);
}

#[test]
fn error_responses_map_across_legs() {
    for (trunk_status, pbx_status) in [
        (486, 486),
        (404, 404),
        (503, 503),
        // A trunk's challenge Sluice cannot answer (this trunk has no credentials) is a refusal.
        (407, 403),
        (401, 403),
        (302, 480),
        (603, 603),
    ] {
        let mut lab = Lab::new();
        let o = lab.from_pbx_text(&pbx_invite());
        let b_invite = only(&o, TRUNK)[0].clone();
        let o = lab.from_trunk_text(&trunk_response(&b_invite, trunk_status, "X", ""));
        assert_eq!(
            statuses(&only(&o, PBX)),
            vec![pbx_status],
            "trunk {trunk_status}"
        );
        assert_eq!(lab.engine.active_calls(), 0);
    }
}

#[test]
fn callee_never_answers_gives_408() {
    let mut lab = Lab::new();
    lab.from_pbx_text(&pbx_invite());
    let o = lab.run_for(Duration::from_secs(33), Duration::from_millis(250));
    assert!(statuses(&only(&o, PBX)).contains(&408), "{o:?}");
    assert_eq!(lab.engine.active_calls(), 0);
}

#[test]
fn inbound_from_unknown_address_is_forbidden() {
    let mut lab = Lab::new();
    let stranger = Flow {
        remote: addr("127.0.0.99:5060"),
        ..lab.from_trunk()
    };
    let invite = pbx_invite().replace("127.0.0.10:5060;branch", "127.0.0.99:5060;branch");
    let o = lab.feed(stranger, &invite);
    let statuses: Vec<u16> = o.iter().filter_map(|(_, m)| m.status()).collect();
    // Stateless: no 100 Trying, and the 403 is not retransmitted (no amplification).
    assert_eq!(statuses, vec![403]);
    assert_eq!(lab.engine.active_calls(), 0);
    let o = lab.run_for(Duration::from_secs(40), Duration::from_millis(500));
    assert!(o.is_empty(), "{o:?}");

    // Configured to drop: nothing at all.
    let mut cfg = lab_config(Transport::Udp);
    cfg.refuse_strangers = false;
    let mut lab = Lab::with_hooks(cfg, NoHooks);
    let o = lab.feed(stranger, &invite);
    assert!(o.is_empty(), "{o:?}");
}

#[test]
fn only_the_pbx_may_call_out() {
    let mut cfg = lab_config(Transport::Udp);
    cfg.pbx_sources = vec!["127.0.5.0/24".parse().unwrap()];
    let mut lab = Lab::with_hooks(cfg, NoHooks);
    // A stranger on the PBX side: 403, nothing reaches the trunk (no toll fraud).
    let stranger = Flow {
        remote: addr("127.0.0.99:5060"),
        ..lab.from_pbx()
    };
    let invite = pbx_invite().replace("127.0.0.10:5060;branch", "127.0.0.99:5060;branch");
    let o = lab.feed(stranger, &invite);
    assert!(only(&o, TRUNK).is_empty(), "{o:?}");
    let refused: Vec<u16> = o.iter().filter_map(|(_, m)| m.status()).collect();
    assert_eq!(refused, vec![403]);
    assert_eq!(lab.engine.active_calls(), 0);
    // A member of the PBX cluster may.
    let member = Flow {
        remote: addr("127.0.5.7:5060"),
        ..lab.from_pbx()
    };
    let invite = pbx_invite()
        .replace("127.0.0.10:5060;branch", "127.0.5.7:5060;branch")
        .replace("pbx-call-1", "pbx-call-2");
    let o = lab.feed(member, &invite);
    assert_eq!(only(&o, TRUNK).len(), 1, "{o:?}");
}

#[test]
fn inbound_call_from_the_trunk_reaches_the_pbx() {
    let mut lab = Lab::new();
    let o = lab.from_trunk_text(&trunk_invite());
    let a = only(&o, PBX);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].request_uri(), Some("sip:2001@127.0.0.10"));
    assert_eq!(a[0].top_via().unwrap().port, Some(5060));
    assert_eq!(
        lab.engine.calls_snapshot(lab.now)[0].direction,
        sluice_b2bua::Direction::Inbound
    );
}

#[test]
fn unsupported_extension_and_zero_max_forwards() {
    let mut lab = Lab::new();
    let req = pbx_invite().replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: foo, timer\r\n",
    );
    let o = lab.from_pbx_text(&req);
    let r = o
        .iter()
        .map(|(_, m)| m)
        .find(|m| m.status() == Some(420))
        .expect("420");
    assert_eq!(r.header(&HeaderName::Unsupported), Some("foo"));
    let req = pbx_invite()
        .replace("Max-Forwards: 70", "Max-Forwards: 0")
        .replace("pbx1", "pbx2")
        .replace("pbx-call-1", "pbx-call-2");
    let o = lab.from_pbx_text(&req);
    assert!(o.iter().any(|(_, m)| m.status() == Some(483)));
}

#[test]
fn retransmitted_invite_is_absorbed() {
    let mut lab = Lab::new();
    let o1 = lab.from_pbx_text(&pbx_invite());
    let o2 = lab.from_pbx_text(&pbx_invite());
    assert_eq!(only(&o1, TRUNK).len(), 1);
    assert!(only(&o2, TRUNK).is_empty(), "no second INVITE to the trunk");
    assert_eq!(only(&o2, PBX)[0].status(), Some(100));
    assert_eq!(lab.engine.active_calls(), 1);
}

#[test]
fn the_call_limit_refuses_with_503() {
    let mut cfg = lab_config(sluice_transaction::Transport::Udp);
    cfg.max_calls = 1;
    let mut lab = Lab::with_hooks(cfg, sluice_b2bua::NoHooks);
    lab.from_pbx_text(&pbx_invite());
    let second = pbx_invite()
        .replace("pbx1", "pbx9")
        .replace("pbx-call-1", "pbx-call-9");
    let o = lab.from_pbx_text(&second);
    let r = only(&o, PBX)
        .into_iter()
        .find(|m| m.status() == Some(503))
        .expect("503");
    assert_eq!(r.reason(), Some("Call Limit Reached"));
    assert_eq!(lab.engine.active_calls(), 1);
}

#[test]
fn a_request_a_stream_could_not_frame_is_answered_never_acted_on() {
    let mut lab = Lab::new();
    // An INVITE without Content-Length on TCP: its head alone reaches the engine.
    let invite = pbx_invite();
    let (head, _body) = invite.split_once("\r\n\r\n").unwrap();
    let head = format!("{head}\r\n\r\n").replace("Content-Length", "X-Length");
    let flow = lab.from_pbx();
    lab.engine.handle_unframed(
        lab.now,
        flow,
        head.as_bytes(),
        (400, "Content-Length missing on a stream"),
    );
    let o = lab.out();
    assert!(only(&o, TRUNK).is_empty(), "not relayed: {o:?}");
    assert_eq!(statuses(&only(&o, PBX)), [400]);
    assert_eq!(lab.engine.active_calls(), 0);
    // Too large: 513.
    lab.engine.handle_unframed(
        lab.now,
        flow,
        head.as_bytes(),
        (513, "message exceeds the size limit"),
    );
    let o = lab.out();
    assert_eq!(statuses(&only(&o, PBX)), [513]);
    // A NUL in a header: 400 on any transport.
    let nul = pbx_invite()
        .replace("Subject", "X")
        .replace("X-Internal-Secret: 10.9.8.7", "Subject: a\u{0}b");
    let o = lab.from_pbx_text(&nul);
    assert!(only(&o, TRUNK).is_empty(), "not relayed: {o:?}");
    assert_eq!(statuses(&only(&o, PBX)), [400]);
}

/// The PBX's INVITE with `n` Subject headers of `len` bytes each, as call `call`.
fn invite_with_subjects(call: u32, n: usize, len: usize) -> String {
    let subject = format!("\r\nSubject: {}", "x".repeat(len)).repeat(n);
    pbx_invite()
        .replace(
            "X-Internal-Secret: 10.9.8.7",
            &format!("X-Internal-Secret: 10.9.8.7{subject}"),
        )
        .replace("pbx-call-1", &format!("pbx-call-{call}"))
        .replace("z9hG4bKpbx1", &format!("z9hG4bKpbx{call}"))
}

#[test]
fn an_invite_too_large_for_udp_is_refused_not_sent_as_a_giant_datagram() {
    let mut lab = Lab::new();
    // One 60 KB header: refused as it arrives (sip.max_header_bytes), statelessly.
    let o = lab.from_pbx_text(&invite_with_subjects(1, 1, 60_000));
    assert!(only(&o, TRUNK).is_empty(), "no giant datagram to the trunk");
    assert_eq!(statuses(&only(&o, PBX)), [513]);
    // Headers each within the limit, together over max_udp_bytes: 513 for the call.
    let o = lab.from_pbx_text(&invite_with_subjects(2, 3, 3000));
    assert!(only(&o, TRUNK).is_empty(), "no giant datagram to the trunk");
    assert_eq!(statuses(&only(&o, PBX)), [100, 513]);
    assert_eq!(lab.engine.active_calls(), 0);
    // Over 1,300 bytes but within the limit, to a trunk that does not take TCP: UDP.
    let o = lab.from_pbx_text(&invite_with_subjects(3, 1, 2000));
    let sent: Vec<_> = o.iter().filter(|(f, _)| f.remote == addr(TRUNK)).collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.transport, Transport::Udp);
    // An ordinary INVITE still goes.
    let o = lab.from_pbx_text(&invite_with_subjects(4, 0, 0));
    assert_eq!(only(&o, TRUNK).len(), 1);
}

#[test]
fn a_large_invite_goes_over_tcp_to_a_trunk_that_takes_it() {
    let mut cfg = lab_config(Transport::Udp);
    cfg.trunks[0].large_over_tcp = true;
    let mut lab = Lab::with_hooks(cfg, NoHooks);
    // Small: UDP as configured.
    let o = lab.from_pbx_text(&invite_with_subjects(1, 0, 0));
    let small: Vec<_> = o.iter().filter(|(f, _)| f.remote == addr(TRUNK)).collect();
    assert_eq!(small[0].0.transport, Transport::Udp);
    // Over 1,300 bytes (RFC 3261 §18.1.1), even over max_udp_bytes: TCP, with Via and Contact
    // saying so, from the TCP listener on the same address.
    for (call, n) in [(2, 1), (3, 3)] {
        let o = lab.from_pbx_text(&invite_with_subjects(call, n, 2000));
        let big: Vec<_> = o.iter().filter(|(f, _)| f.remote == addr(TRUNK)).collect();
        assert_eq!(big.len(), 1, "{o:?}");
        let (flow, invite) = big[0];
        assert_eq!(flow.transport, Transport::Tcp);
        assert_eq!(flow.local, addr(EXTERNAL));
        let via = invite.header(&HeaderName::Via).unwrap();
        assert!(via.starts_with("SIP/2.0/TCP "), "{invite}");
        assert!(
            invite
                .header(&HeaderName::Contact)
                .unwrap()
                .ends_with(";transport=tcp>"),
            "{invite}"
        );
        // The trunk answers on that connection; the call completes.
        let ok = trunk_response(invite, 200, "OK", SDP);
        let tcp = Flow {
            transport: Transport::Tcp,
            conn: Some(9),
            ..*flow
        };
        let o = lab.feed(tcp, &ok);
        assert!(statuses(&only(&o, PBX)).contains(&200), "{o:?}");
    }
}

#[test]
fn a_header_over_the_limit_is_refused_and_never_relayed() {
    let mut lab = Lab::new();
    let a = lab.answered_call();
    let o = lab.from_pbx_text(&ack_from_pbx(&a.a_ok));
    assert_eq!(only(&o, TRUNK).len(), 1);
    // A re-INVITE whose headers are each within the limit but too large together for UDP.
    let reinvite = pbx_in_dialog("INVITE", 2, &a.a_ok, "z9hG4bKre1", SDP).replace(
        "Content-Type",
        &format!(
            "{}Content-Type",
            format!("Subject: {}\r\n", "y".repeat(3000)).repeat(3)
        ),
    );
    let o = lab.from_pbx_text(&reinvite);
    assert!(only(&o, TRUNK).is_empty(), "not relayed: {o:?}");
    assert_eq!(statuses(&only(&o, PBX)), [100, 513]);
    // A response with a header over sip.max_header_bytes is dropped, not relayed.
    let bye = pbx_in_dialog("BYE", 3, &a.a_ok, "z9hG4bKbye1", "");
    let o = lab.from_pbx_text(&bye);
    let to_trunk = only(&o, TRUNK)[0].clone();
    let huge = trunk_response(&to_trunk, 200, "OK", "").replace(
        "Content-Length",
        &format!("Subject: {}\r\nContent-Length", "z".repeat(5000)),
    );
    let o = lab.from_trunk_text(&huge);
    assert!(
        only(&o, PBX).iter().all(|m| m.status() != Some(200)),
        "{o:?}"
    );
    // The call is still there: the trunk's retransmitted 200 (a sane one) ends it.
    let o = lab.from_trunk_text(&trunk_response(&to_trunk, 200, "OK", ""));
    assert!(statuses(&only(&o, PBX)).contains(&200), "{o:?}");
}

/// A callee that rings for a minute (longer than 64*T1) is waited for: the caller hears no
/// 408, and the answer still connects the call.
#[test]
fn a_call_ringing_past_64_t1_is_answered_normally() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    lab.from_trunk_text(&trunk_response(&b_invite, 180, "Ringing", ""));
    let o = lab.run_for(Duration::from_secs(60), Duration::from_millis(500));
    assert!(
        only(&o, PBX)
            .iter()
            .all(|m| m.status().is_none_or(|s| s < 300)),
        "{o:?}"
    );
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 200, "OK", SDP));
    assert_eq!(statuses(&only(&o, PBX)), [200]);
}

/// A callee that rang and then fell silent for Timer C is cancelled, not tried elsewhere, and
/// the caller gets 408.
#[test]
fn a_callee_ringing_past_timer_c_is_cancelled_and_the_caller_told_408() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    lab.from_trunk_text(&trunk_response(&b_invite, 180, "Ringing", ""));
    let o = lab.run_for(Duration::from_secs(180), Duration::from_secs(1));
    assert!(statuses(&only(&o, PBX)).iter().all(|&s| s < 300), "{o:?}");
    let o = lab.run_for(Duration::from_secs(3), Duration::from_secs(1));
    assert!(statuses(&only(&o, PBX)).contains(&408), "{o:?}");
    let to_trunk = only(&o, TRUNK);
    assert!(
        to_trunk.iter().any(|m| m.method() == Some(&Method::Cancel)),
        "{to_trunk:?}"
    );
    assert!(
        to_trunk.iter().all(|m| m.method() != Some(&Method::Invite)),
        "no failover after ringing"
    );
}
