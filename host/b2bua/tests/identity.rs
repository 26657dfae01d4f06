//! STIR/SHAKEN signing in the engine, with the fake clock: the INVITE to a trunk that signs
//! carries a PASSporT with the engine's time, the call's numbers as the trunk receives them,
//! and the trunk's default attestation when no plugin chooses; `none` and a party without a
//! number leave it unsigned. Calls from the trunk are not signed.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use sluice_b2bua::identity::Signing;
use sluice_b2bua::testing::*;
use sluice_b2bua::Attestation;
use sluice_sip::HeaderName;
use sluice_stir::{check, parse_identity, Expect, Passport, Signer, Verdict};
use std::sync::Arc;

const NOW: u64 = 1_800_000_000;

fn signer() -> Signer {
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stir/tests/data/signer-sec1.pem"),
    )
    .unwrap();
    Signer::from_pem(&pem, "https://certs.example.net/shaken.pem").unwrap()
}

fn lab(attestation: Attestation) -> Lab<sluice_b2bua::NoHooks> {
    let mut cfg = lab_config(sluice_transaction::Transport::Udp);
    cfg.trunks[0].identity = Some(Signing {
        signer: Arc::new(signer()),
        attestation,
    });
    let mut lab = Lab::with_hooks(cfg, sluice_b2bua::NoHooks);
    let now = lab.now;
    lab.engine.set_wall_clock(now, NOW);
    lab
}

#[test]
fn an_outbound_invite_is_signed_with_the_engines_time_and_the_calls_numbers() {
    let mut lab = lab(Attestation::B);
    lab.run_for(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(1),
    );
    let o = lab.from_pbx_text(&pbx_invite());
    let invite = only(&o, TRUNK)[0].clone();
    let value = invite.header(&HeaderName::Identity).expect("Identity");
    let id = parse_identity(value).unwrap();
    let p = Passport::decode(&id.jws).unwrap();
    assert_eq!(p.claims.iat, NOW + 5, "the engine's clock");
    assert_eq!(p.claims.attest, "B", "the trunk's default");
    assert_eq!(
        p.claims.orig.tn.as_deref(),
        Some("15552230000"),
        "P-Asserted-Identity's number"
    );
    let expect = Expect {
        now: NOW + 5,
        max_age: 60,
        orig: p.claims.orig.tn.as_deref().unwrap(),
        dest: "15552001111",
    };
    assert!(matches!(
        check(&id, &signer().public_key(), expect),
        Verdict::Passed(_)
    ));
    assert_eq!(
        lab.engine.calls_snapshot(lab.now)[0].attestation,
        Some(Attestation::B)
    );
}

#[test]
fn attestation_none_and_a_caller_without_a_number_leave_the_call_unsigned() {
    let mut lab = lab(Attestation::None);
    let o = lab.from_pbx_text(&pbx_invite());
    assert!(only(&o, TRUNK)[0].header(&HeaderName::Identity).is_none());
    let mut lab = lab_b();
    let anonymous = pbx_invite().replace("sip:2001@", "sip:anonymous@").replace(
        "P-Asserted-Identity: \"Alice\" <sip:+15552230000@pbx.internal>\r\n",
        "",
    );
    assert_ne!(anonymous, pbx_invite());
    let o = lab.from_pbx_text(&anonymous);
    assert!(only(&o, TRUNK)[0].header(&HeaderName::Identity).is_none());
}

fn lab_b() -> Lab<sluice_b2bua::NoHooks> {
    lab(Attestation::B)
}

#[test]
fn calls_from_the_trunk_are_not_signed() {
    let mut lab = lab_b();
    let o = lab.from_trunk_text(&trunk_invite());
    let to_pbx = only(&o, PBX);
    assert!(!to_pbx.is_empty());
    assert!(to_pbx[0].header(&HeaderName::Identity).is_none());
}
