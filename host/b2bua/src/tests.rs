//! The engine driven without sockets: SIP text in, SIP text out, a fake clock.

use crate::{Engine, EngineConfig, ListenerAddr, Output, PeerConfig, Side};
use sluice_sip::{parse_message, HeaderName, Message, Method};
use sluice_transaction::{Flow, TimerConfig, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const INTERNAL: &str = "127.0.0.1:5060";
const EXTERNAL: &str = "127.0.0.1:5080";
const PBX: &str = "127.0.0.10:5060";
const TRUNK: &str = "127.0.0.20:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn engine() -> Engine {
    let cfg = EngineConfig {
        timers: TimerConfig::default(),
        listeners: vec![
            ListenerAddr {
                side: Side::Internal,
                transport: Transport::Udp,
                addr: addr(INTERNAL),
            },
            ListenerAddr {
                side: Side::External,
                transport: Transport::Udp,
                addr: addr(EXTERNAL),
            },
        ],
        pbx: PeerConfig {
            name: "pbx".into(),
            host: "127.0.0.10".into(),
            transport: Transport::Udp,
            addr: addr(PBX),
        },
        trunks: vec![PeerConfig {
            name: "loop".into(),
            host: "127.0.0.20".into(),
            transport: Transport::Udp,
            addr: addr(TRUNK),
        }],
        outbound_trunk: 0,
        max_calls: 10,
        user_agent: "Sluice".into(),
    };
    Engine::new(cfg, 7)
}

fn from_pbx() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: addr(INTERNAL),
        remote: addr(PBX),
        conn: None,
    }
}

fn from_trunk() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: addr(EXTERNAL),
        remote: addr(TRUNK),
        conn: None,
    }
}

fn out(e: &mut Engine) -> Vec<(Flow, Message)> {
    std::iter::from_fn(|| e.poll_output())
        .map(|Output::Transmit { flow, data }| {
            (flow, parse_message(&data).expect("engine output parses"))
        })
        .collect()
}

const SDP: &str = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.10\r\ns=-\r\nc=IN IP4 127.0.0.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn pbx_invite() -> String {
    format!(
        "INVITE sip:15550001111@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.10:5060;branch=z9hG4bKpbx1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:2001@127.0.0.10>;tag=pbxtag\r\n\
To: <sip:15550001111@127.0.0.1>\r\n\
Call-ID: pbx-call-1@127.0.0.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:2001@127.0.0.10:5060>\r\n\
Record-Route: <sip:proxy.pbx.internal;lr>\r\n\
P-Asserted-Identity: \"Alice\" <sip:+15551230000@pbx.internal>\r\n\
X-Internal-Secret: 10.9.8.7\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

/// A response from the trunk to the request Sluice sent it.
fn trunk_response(req: &Message, status: u16, reason: &str, body: &str) -> String {
    let mut r = sluice_transaction::response_to(req, status, reason, Some("trunktag"));
    r.headers
        .push(HeaderName::Contact, "<sip:callee@127.0.0.20:5060>");
    if !body.is_empty() {
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.body = bytes::Bytes::copy_from_slice(body.as_bytes());
    }
    String::from_utf8(r.to_bytes()).unwrap()
}

fn feed(e: &mut Engine, now: Instant, flow: Flow, text: &str) -> Vec<(Flow, Message)> {
    e.handle_datagram(now, flow, text.as_bytes());
    out(e)
}

fn only<'a>(msgs: &'a [(Flow, Message)], to: &str) -> Vec<&'a Message> {
    msgs.iter()
        .filter(|(f, _)| f.remote == addr(to))
        .map(|(_, m)| m)
        .collect()
}

struct Up {
    e: Engine,
    t0: Instant,
    /// The INVITE as the trunk received it.
    b_invite: Message,
    /// The 200 as the PBX received it.
    a_ok: Message,
}

/// Set up an answered call (ACK not yet sent by the PBX).
fn answered_call() -> Up {
    let mut e = engine();
    let t0 = Instant::now();
    let o = feed(&mut e, t0, from_pbx(), &pbx_invite());
    let to_pbx = only(&o, PBX);
    assert_eq!(to_pbx[0].status(), Some(100));
    let b_invite = only(&o, TRUNK)[0].clone();
    let o = feed(
        &mut e,
        t0,
        from_trunk(),
        &trunk_response(&b_invite, 180, "Ringing", ""),
    );
    assert_eq!(only(&o, PBX)[0].status(), Some(180));
    let o = feed(
        &mut e,
        t0,
        from_trunk(),
        &trunk_response(&b_invite, 200, "OK", SDP),
    );
    let a_ok = only(&o, PBX)[0].clone();
    assert_eq!(a_ok.status(), Some(200));
    Up {
        e,
        t0,
        b_invite,
        a_ok,
    }
}

fn ack_from_pbx(a_ok: &Message) -> String {
    format!(
        "ACK sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5060;branch=z9hG4bKpbxack\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: pbx-call-1@127.0.0.10\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        a_ok.header(&HeaderName::From).unwrap(),
        a_ok.header(&HeaderName::To).unwrap()
    )
}

#[test]
fn outbound_invite_gets_fresh_identifiers_and_hides_the_pbx() {
    let Up { b_invite, a_ok, .. } = answered_call();
    let text = b_invite.to_string();
    assert_eq!(b_invite.request_uri(), Some("sip:15550001111@127.0.0.20"));
    assert_ne!(b_invite.call_id(), Some("pbx-call-1@127.0.0.10"));
    assert_ne!(b_invite.from_tag(), Some("pbxtag"));
    assert_eq!(b_invite.headers.count(&HeaderName::Via), 1);
    assert!(b_invite.top_via().unwrap().host == "127.0.0.1");
    assert_eq!(b_invite.max_forwards(), Some(69));
    for leak in [
        "127.0.0.10:5060",
        "pbx-call-1",
        "pbxtag",
        "proxy.pbx.internal",
        "pbx.internal",
        "X-Internal-Secret",
    ] {
        let head = text.split("\r\n\r\n").next().unwrap();
        assert!(!head.contains(leak), "{leak} leaked:\n{text}");
    }
    // The caller's number survives in the identity header, on Sluice's host.
    assert_eq!(
        b_invite.header(&HeaderName::PAssertedIdentity),
        Some("\"Alice\" <sip:+15551230000@127.0.0.1:5080>")
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
        Some("<sip:15550001111@127.0.0.1:5060>")
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
    let Up {
        mut e,
        t0,
        b_invite,
        a_ok,
    } = answered_call();
    let o = feed(&mut e, t0, from_pbx(), &ack_from_pbx(&a_ok));
    let ack = only(&o, TRUNK);
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].method(), Some(&Method::Ack));
    assert_eq!(ack[0].call_id(), b_invite.call_id());
    assert_eq!(ack[0].to_tag(), Some("trunktag"));
    assert_eq!(ack[0].request_uri(), Some("sip:callee@127.0.0.20:5060"));
    assert_eq!(ack[0].cseq().map(|c| c.0), b_invite.cseq().map(|c| c.0));
    let bye = ack_from_pbx(&a_ok)
        .replace("ACK sip", "BYE sip")
        .replace("CSeq: 1 ACK", "CSeq: 2 BYE")
        .replace("pbxack", "pbxbye");
    let o = feed(&mut e, t0, from_pbx(), &bye);
    let b_bye = only(&o, TRUNK)[0].clone();
    assert_eq!(b_bye.method(), Some(&Method::Bye));
    assert!(b_bye.cseq().unwrap().0 > b_invite.cseq().unwrap().0);
    let o = feed(
        &mut e,
        t0,
        from_trunk(),
        &trunk_response(&b_bye, 200, "OK", ""),
    );
    let ok = only(&o, PBX);
    assert_eq!(ok[0].status(), Some(200));
    assert_eq!(ok[0].cseq(), Some((2, Method::Bye)));
    assert_eq!(e.active_calls(), 0);
    assert_eq!(e.stats().calls_answered, 1);
}

#[test]
fn two_hundred_is_retransmitted_until_ack_then_call_is_torn_down() {
    let Up { mut e, t0, .. } = answered_call();
    let mut retransmits = 0;
    let mut byes = std::collections::HashSet::new();
    let mut now = t0;
    while now < t0 + Duration::from_secs(40) {
        now += Duration::from_millis(100);
        e.handle_timeout(now);
        for (f, m) in out(&mut e) {
            if m.status() == Some(200) && f.remote == addr(PBX) {
                retransmits += 1;
            }
            if m.method() == Some(&Method::Bye) {
                byes.insert((f.remote, m.top_via().unwrap().branch().unwrap().to_string()));
            }
        }
    }
    // T1, 2T1, 4T1, then every T2 until 64*T1: 0.5 1.5 3.5 7.5 11.5 ... 31.5 = 10.
    assert_eq!(retransmits, 10);
    assert_eq!(byes.len(), 2, "BYE on both legs when the ACK never comes");
    assert!(
        byes.iter().any(|(a, _)| *a == addr(PBX)) && byes.iter().any(|(a, _)| *a == addr(TRUNK))
    );
}

#[test]
fn no_retransmission_once_acked() {
    let Up {
        mut e, t0, a_ok, ..
    } = answered_call();
    feed(&mut e, t0, from_pbx(), &ack_from_pbx(&a_ok));
    e.handle_timeout(t0 + Duration::from_secs(5));
    assert!(out(&mut e).iter().all(|(_, m)| m.status() != Some(200)));
}

#[test]
fn cancel_before_answer() {
    let mut e = engine();
    let t0 = Instant::now();
    let o = feed(&mut e, t0, from_pbx(), &pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    // CANCEL before any provisional from the trunk: held back until one arrives (§9.1).
    let cancel = pbx_invite()
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("\r\n\r\n").next().unwrap().replace(
        &format!("Content-Length: {}", SDP.len()),
        "Content-Length: 0",
    ) + "\r\n\r\n";
    let o = feed(&mut e, t0, from_pbx(), &cancel);
    let to_pbx: Vec<u16> = only(&o, PBX).iter().filter_map(|m| m.status()).collect();
    assert_eq!(to_pbx, vec![200, 487]);
    assert!(only(&o, TRUNK).is_empty());
    let o = feed(
        &mut e,
        t0,
        from_trunk(),
        &trunk_response(&b_invite, 180, "Ringing", ""),
    );
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
    // The trunk's 487 is ACKed hop by hop and the call is gone.
    let o = feed(
        &mut e,
        t0,
        from_trunk(),
        &trunk_response(&b_invite, 487, "Request Terminated", ""),
    );
    assert_eq!(only(&o, TRUNK)[0].method(), Some(&Method::Ack));
    let _ = feed(
        &mut e,
        t0,
        from_trunk(),
        &trunk_response(c[0], 200, "OK", ""),
    );
    assert_eq!(e.active_calls(), 0);
}

#[test]
fn callee_never_answers_gives_408() {
    let mut e = engine();
    let t0 = Instant::now();
    feed(&mut e, t0, from_pbx(), &pbx_invite());
    let mut statuses = Vec::new();
    let mut now = t0;
    while now < t0 + Duration::from_secs(33) {
        now += Duration::from_millis(250);
        e.handle_timeout(now);
        statuses.extend(
            out(&mut e)
                .iter()
                .filter(|(f, _)| f.remote == addr(PBX))
                .filter_map(|(_, m)| m.status()),
        );
    }
    assert!(statuses.contains(&408), "{statuses:?}");
}

#[test]
fn error_responses_map_across_legs() {
    for (trunk_status, pbx_status) in [
        (486, 486),
        (404, 404),
        (503, 503),
        (407, 503),
        (302, 480),
        (603, 603),
    ] {
        let mut e = engine();
        let t0 = Instant::now();
        let o = feed(&mut e, t0, from_pbx(), &pbx_invite());
        let b_invite = only(&o, TRUNK)[0].clone();
        let o = feed(
            &mut e,
            t0,
            from_trunk(),
            &trunk_response(&b_invite, trunk_status, "X", ""),
        );
        let got: Vec<u16> = only(&o, PBX).iter().filter_map(|m| m.status()).collect();
        assert_eq!(got, vec![pbx_status], "trunk {trunk_status}");
        assert_eq!(e.active_calls(), 0);
    }
}

#[test]
fn reinvite_from_the_trunk_reaches_the_pbx() {
    let Up {
        mut e,
        t0,
        b_invite,
        a_ok,
    } = answered_call();
    feed(&mut e, t0, from_pbx(), &ack_from_pbx(&a_ok));
    // The trunk re-INVITEs inside its dialog: From is its To, To is Sluice's From.
    let reinvite = format!(
        "INVITE sip:x@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.20:5060;branch=z9hG4bKre1\r\nMax-Forwards: 70\r\nFrom: <sip:15550001111@127.0.0.20>;tag=trunktag\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 7 INVITE\r\nContact: <sip:callee@127.0.0.20:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        b_invite.header(&HeaderName::From).unwrap(),
        b_invite.call_id().unwrap(),
        SDP.len()
    );
    let o = feed(&mut e, t0, from_trunk(), &reinvite);
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
    // In-dialog requests follow the Record-Route: but the route is a name, so the address of
    // the dialog is used.
    assert!(o
        .iter()
        .any(|(f, m)| m.method() == Some(&Method::Invite) && f.remote == addr(PBX)));
}

#[test]
fn inbound_from_unknown_address_is_forbidden() {
    let mut e = engine();
    let stranger = Flow {
        remote: addr("127.0.0.99:5060"),
        ..from_trunk()
    };
    let invite = pbx_invite().replace("127.0.0.10:5060;branch", "127.0.0.99:5060;branch");
    let o = feed(&mut e, Instant::now(), stranger, &invite);
    let statuses: Vec<u16> = o.iter().filter_map(|(_, m)| m.status()).collect();
    assert_eq!(statuses, vec![100, 403]);
    assert_eq!(e.active_calls(), 0);
}

#[test]
fn draining_refuses_new_calls_with_retry_after() {
    let mut e = engine();
    e.set_draining(true);
    let o = feed(&mut e, Instant::now(), from_pbx(), &pbx_invite());
    let r = o
        .iter()
        .map(|(_, m)| m)
        .find(|m| m.status() == Some(503))
        .expect("503");
    assert!(r.header(&HeaderName::RetryAfter).is_some());
}

#[test]
fn unsupported_extension_and_zero_max_forwards() {
    let mut e = engine();
    let t0 = Instant::now();
    let req = pbx_invite().replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: foo, timer\r\n",
    );
    let o = feed(&mut e, t0, from_pbx(), &req);
    let r = o
        .iter()
        .map(|(_, m)| m)
        .find(|m| m.status() == Some(420))
        .expect("420");
    assert_eq!(r.header(&HeaderName::Unsupported), Some("foo"));
    let req = pbx_invite()
        .replace("Max-Forwards: 70", "Max-Forwards: 0")
        .replace("pbx1", "pbx2");
    let o = feed(
        &mut e,
        t0,
        from_pbx(),
        &req.replace("pbx-call-1", "pbx-call-2"),
    );
    assert!(o.iter().any(|(_, m)| m.status() == Some(483)));
}

#[test]
fn retransmitted_invite_is_absorbed() {
    let mut e = engine();
    let t0 = Instant::now();
    let o1 = feed(&mut e, t0, from_pbx(), &pbx_invite());
    let o2 = feed(&mut e, t0, from_pbx(), &pbx_invite());
    assert_eq!(only(&o1, TRUNK).len(), 1);
    assert!(only(&o2, TRUNK).is_empty(), "no second INVITE to the trunk");
    assert_eq!(only(&o2, PBX)[0].status(), Some(100));
    assert_eq!(e.active_calls(), 1);
}
