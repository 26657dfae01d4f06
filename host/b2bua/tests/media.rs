//! Media anchoring in the engine: every SDP that crosses a call names Sluice on the side it
//! leaves on (never the other side's addresses), the relay is told what to open, update and
//! close (before the message that names the ports), the trunk's codec list filters offers, SDP
//! Sluice cannot anchor is refused with 488, and silence ends the call.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_b2bua::{EngineConfig, HookContext, HookVerdict, Hooks, NoHooks, Output, PeerMedia};
use sluice_media::{MediaEvent, MediaOp};
use sluice_sip::{HeaderName, Message};
use sluice_transaction::Transport;
use std::sync::Arc;
use std::time::Duration;

/// Sluice's media addresses in the lab: internal 127.0.0.1 (ports 20000…), external advertised
/// as 203.0.113.1 (ports 40000…).
const SLUICE_INTERNAL: &str = "127.0.0.1";
const SLUICE_EXTERNAL: &str = "203.0.113.1";

fn sdp(ip: &str, port: u16, version: u32, formats: &str, extra: &str) -> String {
    let mut s = format!(
        "v=0\r\no=party 77 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {formats}\r\n"
    );
    for f in formats.split(' ') {
        let name = match f {
            "0" => "PCMU/8000",
            "8" => "PCMA/8000",
            "9" => "G722/8000",
            "101" => "telephone-event/8000",
            _ => "opus/48000/2",
        };
        s.push_str(&format!("a=rtpmap:{f} {name}\r\n"));
    }
    s.push_str(extra);
    s
}

fn invite_with(body: &str) -> String {
    pbx_invite().replace(
        &format!("Content-Length: {}\r\n\r\n{SDP}", SDP.len()),
        &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
    )
}

fn lab() -> Lab<NoHooks> {
    Lab::with_hooks(lab_config_with_media(Transport::Udp), NoHooks)
}

fn lab_with(change: impl FnOnce(&mut EngineConfig)) -> Lab<NoHooks> {
    let mut cfg = lab_config_with_media(Transport::Udp);
    change(&mut cfg);
    Lab::with_hooks(cfg, NoHooks)
}

fn body(m: &Message) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

fn line<'a>(sdp: &'a str, prefix: &str) -> Vec<&'a str> {
    sdp.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// A call from the PBX (offer with PCMU, PCMA and DTMF), answered by the trunk; the PBX's ACK
/// relayed.
fn anchored_call(lab: &mut Lab<NoHooks>) -> (Message, Message) {
    let offer = sdp("127.0.0.10", 4000, 1, "0 8 101", "a=sendrecv\r\n");
    let o = lab.from_pbx_text(&invite_with(&offer));
    let b_invite = only(&o, TRUNK)[0].clone();
    let answer = sdp("127.0.0.20", 6000, 5, "8 101", "");
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 200, "OK", &answer));
    let a_ok = only(&o, PBX)[0].clone();
    let o = lab.from_pbx_text(&ack_from_pbx(&a_ok));
    assert_eq!(only(&o, TRUNK).len(), 1);
    (b_invite, a_ok)
}

#[test]
fn each_side_sees_only_sluice_in_the_sdp() {
    let mut lab = lab();
    let (b_invite, a_ok) = anchored_call(&mut lab);
    let offer = body(&b_invite);
    assert_eq!(
        line(&offer, "c="),
        [format!("c=IN IP4 {SLUICE_EXTERNAL}").as_str()]
    );
    assert_eq!(line(&offer, "o="), ["o=party 77 1 IN IP4 203.0.113.1"]);
    assert_eq!(line(&offer, "m="), ["m=audio 40000 RTP/AVP 0 8 101"]);
    assert!(
        !b_invite.to_bytes().windows(10).any(|w| w == b"127.0.0.10"),
        "the trunk sees nothing of the PBX:\n{b_invite}"
    );
    assert!(offer.contains("a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"));
    let answer = body(&a_ok);
    assert_eq!(
        line(&answer, "c="),
        [format!("c=IN IP4 {SLUICE_INTERNAL}").as_str()]
    );
    assert_eq!(line(&answer, "m="), ["m=audio 20000 RTP/AVP 8 101"]);
    assert!(!answer.contains("127.0.0.20"), "{answer}");
    assert_eq!(
        a_ok.header(&HeaderName::ContentLength),
        Some(answer.len().to_string().as_str())
    );
}

#[test]
fn the_relay_learns_each_end_before_the_message_that_names_its_ports() {
    let mut lab = lab();
    let offer = sdp("127.0.0.10", 4000, 1, "0", "");
    let flow = lab.from_pbx();
    lab.engine
        .handle_datagram(lab.now, flow, invite_with(&offer).as_bytes());
    let outputs: Vec<Output> = std::iter::from_fn(|| lab.engine.poll_output()).collect();
    let open = outputs
        .iter()
        .position(|o| matches!(o, Output::Media(MediaOp::Open { .. })))
        .expect("an Open");
    let invite = outputs
        .iter()
        .position(|o| matches!(o, Output::Transmit { flow, .. } if flow.remote == addr(TRUNK)))
        .expect("the INVITE");
    assert!(open < invite, "{outputs:?}");
    let Output::Media(MediaOp::Open { a, b, peers, .. }) = &outputs[open] else {
        unreachable!()
    };
    assert_eq!(a.rtp().to_string(), "127.0.0.1:20000");
    assert_eq!(b.rtp().to_string(), "127.0.0.1:40000");
    assert_eq!(peers[0].to_string(), "127.0.0.10");
    assert_eq!(peers[1].to_string(), "127.0.0.20");
    let Some(Output::Media(MediaOp::Update {
        remotes, timeout, ..
    })) = outputs.get(open + 1)
    else {
        panic!("{outputs:?}");
    };
    assert_eq!(remotes[0].unwrap().rtp.to_string(), "127.0.0.10:4000");
    assert_eq!(remotes[0].unwrap().rtcp.to_string(), "127.0.0.10:4001");
    assert!(remotes[1].is_none(), "the callee has said nothing yet");
    assert_eq!(*timeout, None, "ringing is not silence");
}

#[test]
fn the_answer_arms_the_silence_timeout_and_the_end_returns_the_ports() {
    let mut lab = lab();
    assert_eq!(lab.engine.media_ports_free(), Some((50, 50)));
    let (b_invite, a_ok) = anchored_call(&mut lab);
    assert_eq!(lab.engine.media_ports_free(), Some((49, 49)));
    let armed = lab.media.iter().any(|op| {
        matches!(op, MediaOp::Update { remotes, timeout: Some(t), .. }
            if *t == Duration::from_secs(60)
                && remotes[1].is_some_and(|r| r.rtp.to_string() == "127.0.0.20:6000"))
    });
    assert!(armed, "{:?}", lab.media);
    lab.media.clear();
    let o = lab.from_pbx_text(&pbx_in_dialog("BYE", 2, &a_ok, "z9hG4bKbye1", ""));
    let bye = only(&o, TRUNK)[0].clone();
    lab.from_trunk_text(&trunk_response(&bye, 200, "OK", ""));
    assert!(
        lab.media
            .iter()
            .any(|op| matches!(op, MediaOp::Close { .. })),
        "{:?}",
        lab.media
    );
    assert_eq!(lab.engine.media_ports_free(), Some((50, 50)));
    let _ = b_invite;
}

#[test]
fn a_trunks_codec_list_filters_offers_and_an_offer_left_empty_gets_488() {
    let codecs = |cfg: &mut EngineConfig| {
        cfg.trunks[0].media =
            PeerMedia::AnchorWithCodecs(Arc::from(vec!["PCMA".into(), "telephone-event".into()]));
    };
    let mut lab = lab_with(codecs);
    let offer = sdp("127.0.0.10", 4000, 1, "0 8 101", "a=fmtp:101 0-16\r\n");
    let o = lab.from_pbx_text(&invite_with(&offer));
    let sent = body(only(&o, TRUNK)[0]);
    assert_eq!(line(&sent, "m="), ["m=audio 40000 RTP/AVP 8 101"]);
    assert!(!sent.contains("PCMU"), "{sent}");
    assert!(sent.contains("a=fmtp:101 0-16"), "{sent}");

    let mut lab = lab_with(codecs);
    let offer = sdp("127.0.0.10", 4000, 1, "0 9", "");
    let o = lab.from_pbx_text(&invite_with(&offer));
    assert!(only(&o, TRUNK).is_empty(), "nothing goes to the trunk");
    assert_eq!(statuses(&only(&o, PBX)), [100, 488]);
    assert_eq!(
        lab.engine.media_ports_free(),
        Some((50, 50)),
        "the ports were given back"
    );
}

#[test]
fn sdp_sluice_cannot_read_gets_488_and_the_call_is_not_made() {
    for bad in [
        "v=0\r\ns=no origin\r\nc=IN IP4 127.0.0.10\r\nm=audio 4000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.10\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.10\r\ns=-\r\nc=IN IP4 224.2.1.1/127\r\nm=audio 4000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.10\r\ns=-\r\nc=IN IP4 127.0.0.10\r\nm=audio 99999 RTP/AVP 0\r\n",
        "\u{0}\u{1}binary",
    ] {
        let mut lab = lab();
        let o = lab.from_pbx_text(&invite_with(bad));
        assert!(only(&o, TRUNK).is_empty(), "{bad:?}");
        assert_eq!(statuses(&only(&o, PBX)), [100, 488], "{bad:?}");
        assert_eq!(lab.engine.active_calls(), 0);
        assert_eq!(lab.engine.media_ports_free(), Some((50, 50)));
    }
}

#[test]
fn a_reinvite_to_hold_and_back_keeps_sluices_ports_and_moves_its_version() {
    let mut lab = lab();
    let (_, a_ok) = anchored_call(&mut lab);
    lab.media.clear();
    // Hold: the PBX's version moves, so does Sluice's toward the trunk.
    let hold = sdp("127.0.0.10", 4000, 2, "0 8 101", "a=sendonly\r\n");
    let o = lab.from_pbx_text(&pbx_in_dialog("INVITE", 2, &a_ok, "z9hG4bKhold", &hold));
    let reinvite = only(&o, TRUNK)[0].clone();
    let sent = body(&reinvite);
    assert_eq!(line(&sent, "m="), ["m=audio 40000 RTP/AVP 0 8 101"]);
    assert_eq!(line(&sent, "o="), ["o=party 77 2 IN IP4 203.0.113.1"]);
    assert!(sent.contains("a=sendonly"));
    let answer = sdp("127.0.0.20", 6000, 6, "8 101", "a=recvonly\r\n");
    let o = lab.from_trunk_text(&trunk_response(&reinvite, 200, "OK", &answer));
    let ok = only(&o, PBX)[0].clone();
    assert_eq!(line(&body(&ok), "m="), ["m=audio 20000 RTP/AVP 8 101"]);
    assert_eq!(line(&body(&ok), "o="), ["o=party 77 6 IN IP4 127.0.0.1"]);
    let on_hold = lab.media.iter().any(
        |op| matches!(op, MediaOp::Update { timeout: Some(t), .. } if *t == Duration::from_secs(600)),
    );
    assert!(on_hold, "the hold timeout applies: {:?}", lab.media);
    lab.from_pbx_text(&pbx_in_dialog("ACK", 2, &a_ok, "z9hG4bKholdack", ""));
    lab.media.clear();

    // Back: sendrecv again, from a new address on the PBX.
    let back = sdp("127.0.0.11", 4100, 3, "0 8 101", "");
    let o = lab.from_pbx_text(&pbx_in_dialog("INVITE", 3, &a_ok, "z9hG4bKback", &back));
    let reinvite = only(&o, TRUNK)[0].clone();
    assert_eq!(
        line(&body(&reinvite), "m="),
        ["m=audio 40000 RTP/AVP 0 8 101"]
    );
    assert!(!body(&reinvite).contains("127.0.0.11"));
    let moved = lab.media.iter().any(|op| {
        matches!(op, MediaOp::Update { remotes, timeout: Some(t), .. }
            if *t == Duration::from_secs(60)
                && remotes[0].is_some_and(|r| r.rtp.to_string() == "127.0.0.11:4100"))
    });
    assert!(moved, "the relay sends to the new address: {:?}", lab.media);
    assert!(
        !lab.media
            .iter()
            .any(|op| matches!(op, MediaOp::Open { .. })),
        "no new ports for the same stream"
    );

    // The same offer again (the PBX refreshes without a change): Sluice's version stays.
    let answer = sdp("127.0.0.20", 6000, 7, "8 101", "");
    let o = lab.from_trunk_text(&trunk_response(&reinvite, 200, "OK", &answer));
    let ok = only(&o, PBX)[0].clone();
    let v1 = line(&body(&ok), "o=")[0].to_string();
    lab.from_pbx_text(&pbx_in_dialog("ACK", 3, &a_ok, "z9hG4bKbackack", ""));
    let o = lab.from_pbx_text(&pbx_in_dialog("INVITE", 4, &a_ok, "z9hG4bKsame", &back));
    let reinvite = only(&o, TRUNK)[0].clone();
    let o = lab.from_trunk_text(&trunk_response(&reinvite, 200, "OK", &answer));
    let ok = only(&o, PBX)[0].clone();
    assert_eq!(
        line(&body(&ok), "o=")[0],
        v1,
        "nothing changed, nor does the version"
    );
}

#[test]
fn silence_ends_an_answered_call_with_bye_on_both_legs() {
    let mut lab = lab();
    anchored_call(&mut lab);
    let stream = lab
        .media
        .iter()
        .find_map(|op| match op {
            MediaOp::Open { stream, .. } => Some(*stream),
            _ => None,
        })
        .unwrap();
    // An event about a stream no call has is ignored.
    lab.engine.handle_media_event(
        lab.now,
        MediaEvent::Timeout {
            stream: stream + 64,
        },
    );
    assert!(lab.out().is_empty());
    lab.engine
        .handle_media_event(lab.now, MediaEvent::Timeout { stream });
    let o = lab.out();
    assert_eq!(only(&o, PBX)[0].method().unwrap().as_str(), "BYE");
    assert_eq!(only(&o, TRUNK)[0].method().unwrap().as_str(), "BYE");
}

#[test]
fn ports_that_cannot_be_bound_end_a_call_before_its_answer_with_503() {
    let mut lab = lab();
    let o = lab.from_pbx_text(&invite_with(&sdp("127.0.0.10", 4000, 1, "0", "")));
    let b_invite = only(&o, TRUNK)[0].clone();
    lab.from_trunk_text(&trunk_response(&b_invite, 180, "Ringing", ""));
    let stream = match &lab.media[0] {
        MediaOp::Open { stream, .. } => *stream,
        other => panic!("{other:?}"),
    };
    lab.engine.handle_media_event(
        lab.now,
        MediaEvent::OpenFailed {
            stream,
            reason: "address in use".into(),
        },
    );
    let o = lab.out();
    assert_eq!(statuses(&only(&o, PBX)), [503]);
    assert_eq!(only(&o, TRUNK)[0].method().unwrap().as_str(), "CANCEL");
}

#[test]
fn a_late_offer_in_the_2xx_is_answered_in_the_ack() {
    let mut lab = lab();
    let mut invite = invite_with("");
    invite = invite.replace("Content-Type: application/sdp\r\n", "");
    let o = lab.from_pbx_text(&invite);
    let b_invite = only(&o, TRUNK)[0].clone();
    assert!(b_invite.body.is_empty());
    let offer = sdp("127.0.0.20", 6000, 1, "0 8", "");
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 200, "OK", &offer));
    let a_ok = only(&o, PBX)[0].clone();
    assert_eq!(line(&body(&a_ok), "c="), ["c=IN IP4 127.0.0.1"]);
    let answer = sdp("127.0.0.10", 4000, 1, "0", "");
    let ack = pbx_in_dialog("ACK", 1, &a_ok, "z9hG4bKlateack", &answer);
    let o = lab.from_pbx_text(&ack);
    let b_ack = only(&o, TRUNK)[0].clone();
    assert_eq!(line(&body(&b_ack), "c="), ["c=IN IP4 203.0.113.1"]);
    assert_eq!(line(&body(&b_ack), "m="), ["m=audio 40000 RTP/AVP 0"]);
}

#[test]
fn early_media_in_a_183_is_anchored_and_a_failure_carries_no_sdp() {
    let mut lab = lab();
    let o = lab.from_pbx_text(&invite_with(&sdp("127.0.0.10", 4000, 1, "0", "")));
    let b_invite = only(&o, TRUNK)[0].clone();
    let early = sdp("127.0.0.20", 6000, 1, "0", "");
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 183, "Session Progress", &early));
    let p = only(&o, PBX)[0].clone();
    assert_eq!(p.status(), Some(183));
    assert_eq!(line(&body(&p), "c="), ["c=IN IP4 127.0.0.1"]);
    let o = lab.from_trunk_text(&trunk_response(
        &b_invite,
        488,
        "Not Acceptable Here",
        &early,
    ));
    let fail = only(&o, PBX)
        .into_iter()
        .find(|m| m.status() == Some(488))
        .unwrap()
        .clone();
    assert!(fail.body.is_empty(), "{fail}");
    assert_eq!(lab.engine.media_ports_free(), Some((50, 50)));
}

#[test]
fn a_signalling_only_trunk_gets_the_sdp_as_it_was() {
    let mut lab = lab_with(|cfg| cfg.trunks[0].media = PeerMedia::SignallingOnly);
    let offer = sdp(
        "127.0.0.10",
        4000,
        1,
        "0",
        "a=candidate:1 1 UDP 1 127.0.0.10 4000 typ host\r\n",
    );
    let o = lab.from_pbx_text(&invite_with(&offer));
    assert_eq!(body(only(&o, TRUNK)[0]), offer);
    assert!(lab.media.is_empty());
}

/// The bodies plugins are shown, in order.
#[derive(Clone, Default)]
struct SeeBodies(Arc<std::sync::Mutex<Vec<String>>>);

impl SeeBodies {
    fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    /// Plugins that only note the bodies they are shown.
    fn hooks(&self) -> impl Hooks {
        let bodies = self.clone();
        FnHooks {
            number: |_: &HookContext<'_>, _, _: &str| sluice_b2bua::NumberVerdict::Keep,
            message: move |_: &HookContext<'_>, msg: &mut Message| {
                bodies.0.lock().unwrap().push(body(msg));
                HookVerdict::Continue
            },
        }
    }
}

#[test]
fn plugins_see_the_sdp_as_it_leaves() {
    let bodies = SeeBodies::default();
    let mut lab = Lab::with_hooks(lab_config_with_media(Transport::Udp), bodies.hooks());
    lab.from_pbx_text(&invite_with(&sdp("127.0.0.10", 4000, 1, "0", "")));
    let seen = bodies.seen();
    assert!(seen[0].contains("c=IN IP4 203.0.113.1"), "{seen:?}");
    assert!(!seen[0].contains("127.0.0.10"), "{seen:?}");
}

fn srtp_trunk(cfg: &mut EngineConfig, mode: sluice_media::SrtpMode) {
    cfg.trunks[0].srtp = Some(sluice_b2bua::config::TrunkSrtp {
        mode,
        suites: Arc::from(vec![
            sluice_media::Suite::AesCm128HmacSha1_80,
            sluice_media::Suite::AesCm128HmacSha1_32,
        ]),
    });
}

fn srtp_keys_of(ops: &[MediaOp]) -> Option<[sluice_media::EndCrypto; 2]> {
    ops.iter().rev().find_map(|op| match op {
        MediaOp::Update { crypto, .. } => Some(**crypto),
        _ => None,
    })
}

#[test]
fn an_srtp_trunk_gets_sluices_keys_and_the_pbx_plain_rtp() {
    let mut cfg = lab_config_with_media(Transport::Udp);
    srtp_trunk(&mut cfg, sluice_media::SrtpMode::Required);
    let bodies = SeeBodies::default();
    let mut lab = Lab::with_hooks(cfg, bodies.hooks());
    let offer = sdp("127.0.0.10", 4000, 1, "0 8 101", "");
    let o = lab.from_pbx_text(&invite_with(&offer));
    let b_invite = only(&o, TRUNK)[0].clone();
    let to_trunk = body(&b_invite);
    assert_eq!(line(&to_trunk, "m="), ["m=audio 40000 RTP/SAVP 0 8 101"]);
    let crypto = line(&to_trunk, "a=crypto:");
    assert_eq!(crypto.len(), 2, "{to_trunk}");
    assert!(crypto[0].starts_with("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    assert!(!to_trunk.contains("SLUICE-HIDDEN"), "the real key leaves");
    // The plugins saw the INVITE with the keys replaced.
    let seen = bodies.seen();
    let key = crypto[0].split("inline:").nth(1).unwrap();
    assert!(
        seen.iter().all(|b| !b.contains(key)),
        "a plugin saw a key: {seen:?}"
    );
    assert!(seen[0].contains("inline:SLUICE-HIDDEN-KEY-0"), "{seen:?}");
    assert_eq!(
        srtp_keys_of(&lab.media),
        Some([
            sluice_media::EndCrypto::Plain,
            sluice_media::EndCrypto::Waiting
        ])
    );

    // The trunk answers with the 32-bit suite: the PBX gets RTP/AVP and no keys.
    let trunk_key = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";
    let answer = sdp(
        "127.0.0.20",
        6000,
        5,
        "8 101",
        &format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{trunk_key}\r\n"),
    )
    .replace("RTP/AVP", "RTP/SAVP");
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 200, "OK", &answer));
    let a_ok = only(&o, PBX)[0].clone();
    let to_pbx = body(&a_ok);
    assert_eq!(line(&to_pbx, "m="), ["m=audio 20000 RTP/AVP 8 101"]);
    assert!(line(&to_pbx, "a=crypto").is_empty(), "{to_pbx}");
    let seen = bodies.seen();
    assert!(
        seen.iter().all(|b| !b.contains(trunk_key)),
        "a plugin saw the trunk's key: {seen:?}"
    );
    let Some([sluice_media::EndCrypto::Plain, sluice_media::EndCrypto::Srtp(keys)]) =
        srtp_keys_of(&lab.media)
    else {
        panic!(
            "SRTP agreed toward the trunk: {:?}",
            srtp_keys_of(&lab.media)
        );
    };
    assert_eq!(keys.theirs.to_base64(), trunk_key);
    assert_eq!(keys.ours.suite(), sluice_media::Suite::AesCm128HmacSha1_32);
}

#[test]
fn an_srtp_trunk_refuses_an_offer_without_keys_with_488() {
    let mut lab = lab_with(|cfg| srtp_trunk(cfg, sluice_media::SrtpMode::Required));
    let mut inv = trunk_invite();
    let offer = sdp("127.0.0.20", 6000, 1, "0", "");
    inv = inv.replace(
        &format!("Content-Length: {}\r\n\r\n{SDP}", SDP.len()),
        &format!("Content-Length: {}\r\n\r\n{offer}", offer.len()),
    );
    let o = lab.from_trunk_text(&inv);
    let statuses: Vec<_> = only(&o, TRUNK).iter().filter_map(|m| m.status()).collect();
    assert!(statuses.contains(&488), "{statuses:?}");
    assert!(only(&o, PBX).is_empty(), "nothing reached the PBX");
}
