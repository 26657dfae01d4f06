//! STIR/SHAKEN verification of calls from a trunk, with the fake clock and the test
//! certificates: the call waits for its certificate while others go on, and reaches the PBX
//! with `verstat`; a fetch that fails or never comes, a CANCEL while waiting, and the reject
//! policy each do what they must.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use sluice_b2bua::testing::*;
use sluice_b2bua::verify::Verification;
use sluice_sip::{HeaderName, Message, Method};
use sluice_stir::verify::Policy;
use sluice_stir::{Attest, Certificate, Claims, Signer};
use std::time::Duration;

const NOW: u64 = 1_800_000_000;
const X5U: &str = "https://certs.example.net/shaken.pem";

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../stir/tests/data")
            .join(name),
    )
    .unwrap()
}

fn lab(reject: bool) -> Lab<sluice_b2bua::NoHooks> {
    let mut cfg = lab_config(sluice_transaction::Transport::Udp);
    cfg.trunks[0].verification = Some(Verification {
        policy: Policy {
            anchors: Certificate::chain_from_pem(&data("ca.pem")).unwrap(),
            max_age: 60,
            allowed_hosts: vec!["certs.example.net".into()],
            allow_http: false,
        },
        reject,
        fetch_timeout: Duration::from_secs(3),
    });
    let mut lab = Lab::with_hooks(cfg, sluice_b2bua::NoHooks);
    let now = lab.now;
    lab.engine.set_wall_clock(now, NOW);
    lab
}

/// The trunk's INVITE for 2001 from +1 555 201 1111, branch `branch`, with `identity`.
fn inbound(branch: &str, call_id: &str, identity: Option<&str>) -> String {
    let id = identity.map_or(String::new(), |v| format!("Identity: {v}\r\n"));
    format!(
        "INVITE sip:2001@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.20:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15552011111@127.0.0.20>;tag=t1\r\nTo: <sip:2001@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:carrier@127.0.0.20:5060>\r\n{id}\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

fn identity(orig: &str, dest: &str, iat: u64) -> String {
    let pem = String::from_utf8(data("signer-sec1.pem")).unwrap();
    Signer::from_pem(&pem, X5U)
        .unwrap()
        .identity(&Claims::new(Attest::A, orig, dest, iat))
}

fn invite_to_pbx(o: &[(sluice_transaction::Flow, Message)]) -> Option<Message> {
    only(o, PBX)
        .into_iter()
        .find(|m| m.method() == Some(&Method::Invite))
        .cloned()
}

fn from_of(m: &Message) -> String {
    m.header(&HeaderName::From).unwrap().to_string()
}

#[test]
fn a_call_waits_for_its_certificate_while_others_go_on_and_reaches_the_pbx_verified() {
    let mut lab = lab(false);
    let signed = identity("15552011111", "2001", NOW - 2);
    let o = lab.from_trunk_text(&inbound("z9hG4bKv1", "v1", Some(&signed)));
    assert!(invite_to_pbx(&o).is_none(), "waiting for the certificate");
    assert_eq!(lab.fetches.len(), 1);
    let (id, url) = lab.fetches.remove(0);
    assert_eq!(url, X5U);
    // Another call, without Identity, is not held up.
    let o = lab.from_trunk_text(&inbound("z9hG4bKv2", "v2", None));
    let other = invite_to_pbx(&o).expect("the other call goes on");
    assert!(
        from_of(&other).contains(";verstat=No-TN-Validation@"),
        "{other}"
    );
    // The certificate comes.
    let chain = data("shaken-chain.pem");
    lab.engine.handle_certificate(lab.now, id, Ok(&chain));
    let o = lab.out();
    let invite = invite_to_pbx(&o).expect("the verified call goes on");
    assert!(
        from_of(&invite).contains("+15552011111;verstat=TN-Validation-Passed@"),
        "{invite}"
    );
    assert!(
        invite.header(&HeaderName::Identity).is_none(),
        "the PBX gets verstat, not the PASSporT"
    );
    assert_eq!(lab.engine.active_calls(), 2);
}

#[test]
fn failures_are_marked_or_refused_by_policy() {
    // A wrong called number, marked.
    let mut lab = lab(false);
    let signed = identity("15552011111", "15559999999", NOW);
    lab.from_trunk_text(&inbound("z9hG4bKv3", "v3", Some(&signed)));
    let (id, _) = lab.fetches.remove(0);
    lab.engine
        .handle_certificate(lab.now, id, Ok(&data("shaken-chain.pem")));
    let invite = invite_to_pbx(&lab.out()).unwrap();
    assert!(from_of(&invite).contains(";verstat=TN-Validation-Failed@"));
    // The same, refused: 438 to the trunk, nothing to the PBX.
    let mut lab = lab_reject();
    lab.from_trunk_text(&inbound("z9hG4bKv4", "v4", Some(&signed)));
    let (id, _) = lab.fetches.remove(0);
    lab.engine
        .handle_certificate(lab.now, id, Ok(&data("shaken-chain.pem")));
    let o = lab.out();
    assert!(invite_to_pbx(&o).is_none());
    let r = only(&o, TRUNK);
    assert_eq!(statuses(&r), [438]);
    assert_eq!(r[0].reason(), Some("Invalid Identity Header"));
    // An untrusted chain, refused with 437.
    let good = identity("15552011111", "2001", NOW);
    lab.from_trunk_text(&inbound("z9hG4bKv5", "v5", Some(&good)));
    let (id, _) = lab.fetches.remove(0);
    lab.engine
        .handle_certificate(lab.now, id, Ok(&data("rogue-chain.pem")));
    assert_eq!(statuses(&only(&lab.out(), TRUNK)), [437]);
    // A stale PASSporT: 403 Stale Date, without any fetch... after the fetch.
    let stale = identity("15552011111", "2001", NOW - 120);
    lab.from_trunk_text(&inbound("z9hG4bKv6", "v6", Some(&stale)));
    let (id, _) = lab.fetches.remove(0);
    lab.engine
        .handle_certificate(lab.now, id, Ok(&data("shaken-chain.pem")));
    let o = lab.out();
    assert_eq!(statuses(&only(&o, TRUNK)), [403]);
    assert_eq!(only(&o, TRUNK)[0].reason(), Some("Stale Date"));
    assert_eq!(lab.engine.active_calls(), 0);
}

fn lab_reject() -> Lab<sluice_b2bua::NoHooks> {
    lab(true)
}

#[test]
fn a_certificate_that_never_comes_fails_the_verification_in_time() {
    let mut lab = lab(false);
    let signed = identity("15552011111", "2001", NOW);
    lab.from_trunk_text(&inbound("z9hG4bKv7", "v7", Some(&signed)));
    let (id, _) = lab.fetches.remove(0);
    let o = lab.run_for(Duration::from_millis(2900), Duration::from_millis(100));
    assert!(invite_to_pbx(&o).is_none(), "still waiting");
    let o = lab.run_for(Duration::from_millis(200), Duration::from_millis(100));
    let invite = invite_to_pbx(&o).expect("given up after fetch_timeout");
    assert!(from_of(&invite).contains(";verstat=TN-Validation-Failed@"));
    // The late answer changes nothing.
    lab.engine
        .handle_certificate(lab.now, id, Ok(&data("shaken-chain.pem")));
    assert!(invite_to_pbx(&lab.out()).is_none());
    assert_eq!(lab.engine.active_calls(), 1);
}

#[test]
fn a_cancel_while_waiting_ends_the_call_with_487() {
    let mut lab = lab(false);
    let signed = identity("15552011111", "2001", NOW);
    let text = inbound("z9hG4bKv8", "v8", Some(&signed));
    lab.from_trunk_text(&text);
    let (id, _) = lab.fetches.remove(0);
    let cancel = text
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let head = cancel.split("Content-Type").next().unwrap().to_string();
    let o = lab.from_trunk_text(&format!("{head}Content-Length: 0\r\n\r\n"));
    let mut st = statuses(&only(&o, TRUNK));
    st.sort();
    assert_eq!(st, [200, 487]);
    lab.engine
        .handle_certificate(lab.now, id, Ok(&data("shaken-chain.pem")));
    assert!(
        invite_to_pbx(&lab.out()).is_none(),
        "nothing after the CANCEL"
    );
    assert_eq!(lab.engine.active_calls(), 0);
}

/// Every failure refused with RFC 8224's status (on_failure = "reject"): a future iat, a wrong
/// key, claims changed after signing, a signer's certificate without TNAuthList.
#[test]
fn each_failure_gets_its_status() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let other = {
        let pem = String::from_utf8(data("other-sec1.pem")).unwrap();
        Signer::from_pem(&pem, X5U).unwrap().identity(&Claims::new(
            Attest::A,
            "15552011111",
            "2001",
            NOW,
        ))
    };
    let tampered = {
        let good = identity("15552011111", "2001", NOW);
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let claims = String::from_utf8(b64.decode(&parts[1]).unwrap()).unwrap();
        parts[1] = b64.encode(claims.replace("\"A\"", "\"B\""));
        parts.join(".")
    };
    let cases: [(String, &str, u16); 4] = [
        (
            identity("15552011111", "2001", NOW + 10),
            "shaken-chain.pem",
            403,
        ),
        (other, "shaken-chain.pem", 438),
        (tampered, "shaken-chain.pem", 438),
        (identity("15552011111", "2001", NOW), "notn-chain.pem", 437),
    ];
    let mut lab = lab_reject();
    for (i, (value, chain, status)) in cases.iter().enumerate() {
        lab.from_trunk_text(&inbound(
            &format!("z9hG4bKn{i}"),
            &format!("n{i}"),
            Some(value),
        ));
        let (id, _) = lab.fetches.remove(0);
        lab.engine.handle_certificate(lab.now, id, Ok(&data(chain)));
        let o = lab.out();
        assert_eq!(statuses(&only(&o, TRUNK)), [*status], "case {i}");
        assert!(invite_to_pbx(&o).is_none());
    }
}

/// The compact header name (`y:`) and several Identity headers (a broken one first) are read.
#[test]
fn compact_and_several_identity_headers_are_read() {
    let mut lab = lab(false);
    let signed = identity("15552011111", "2001", NOW);
    let text = inbound("z9hG4bKc1", "c1", None).replace(
        "Content-Type: application/sdp",
        &format!("y: not-a-passport\r\ny: {signed}\r\nContent-Type: application/sdp"),
    );
    lab.from_trunk_text(&text);
    assert_eq!(
        lab.fetches.len(),
        1,
        "the good header's certificate is fetched"
    );
    let (id, _) = lab.fetches.remove(0);
    lab.engine
        .handle_certificate(lab.now, id, Ok(&data("shaken-chain.pem")));
    let invite = invite_to_pbx(&lab.out()).unwrap();
    assert!(from_of(&invite).contains(";verstat=TN-Validation-Passed@"));
}
