//! An inbound call's Identity checked in two steps around the certificate fetch: the header
//! picked and the URL allowed, then the chain to the trust anchor, TNAuthList, validity and
//! the PASSporT. Certificates: a test STI-CA root, an intermediate, and the signer (with a
//! TNAuthList), made with OpenSSL for these tests; the same signer certified without a
//! TNAuthList, and by a look-alike CA no one trusts.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use sluice_stir::verify::{finish, start, Failure, Outcome, Policy, Started};
use sluice_stir::{Attest, Certificate, Claims, Expect, IdentityError, Signer};

const X5U: &str = "https://certs.example.net/shaken.pem";
const NOW: u64 = 1_800_000_000;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn policy() -> Policy {
    Policy {
        anchors: Certificate::chain_from_pem(&data("ca.pem")).unwrap(),
        max_age: 60,
        allowed_hosts: vec![".example.net".into()],
        allow_http: false,
    }
}

fn identity(claims: &Claims, x5u: &str) -> String {
    let pem = String::from_utf8(data("signer-sec1.pem")).unwrap();
    Signer::from_pem(&pem, x5u).unwrap().identity(claims)
}

fn expect() -> Expect<'static> {
    Expect {
        now: NOW,
        max_age: 0,
        orig: "15552011111",
        dest: "15559870000",
    }
}

fn good() -> String {
    identity(
        &Claims::new(Attest::A, "+1 555 201 1111", "15559870000", NOW - 5),
        X5U,
    )
}

/// The outcome of both steps with the certificates in `file`.
fn verify(value: &str, file: &str) -> Outcome {
    match start(&policy(), [value]) {
        Started::Done(o) => o,
        Started::Fetch { url, identity } => {
            assert_eq!(url, X5U);
            finish(&policy(), &identity, Ok(&data(file)), expect())
        }
    }
}

#[test]
fn a_good_identity_passes_with_its_attestation() {
    let o = verify(&good(), "shaken-chain.pem");
    assert_eq!(o, Outcome::Passed { attest: "A".into() });
    assert_eq!(o.verstat(), "TN-Validation-Passed");
}

#[test]
fn the_chain_must_reach_the_anchor_and_carry_a_tnauthlist() {
    assert_eq!(
        verify(&good(), "rogue-chain.pem"),
        Outcome::Failed(Failure::Untrusted)
    );
    assert_eq!(
        verify(&good(), "notn-chain.pem"),
        Outcome::Failed(Failure::NoTnAuthList)
    );
    // A certificate issued by the SHAKEN signer's own (an end entity, CA:false) to another
    // key, with a TNAuthList: refused, though each signature verifies.
    let other = {
        let pem = String::from_utf8(data("other-sec1.pem")).unwrap();
        Signer::from_pem(&pem, X5U).unwrap().identity(&Claims::new(
            Attest::A,
            "15552011111",
            "15559870000",
            NOW - 5,
        ))
    };
    assert_eq!(
        verify(&other, "ee-issued-chain.pem"),
        Outcome::Failed(Failure::Untrusted)
    );
    // Without its intermediate, the signer's certificate reaches no anchor.
    let leaf_only: Vec<u8> = {
        let text = String::from_utf8(data("shaken-chain.pem")).unwrap();
        let end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
        text.as_bytes()[..end].to_vec()
    };
    let Started::Fetch { identity, .. } = start(&policy(), [good().as_str()]) else {
        panic!("fetch expected");
    };
    assert_eq!(
        finish(&policy(), &identity, Ok(&leaf_only), expect()),
        Outcome::Failed(Failure::Untrusted)
    );
    assert_eq!(
        finish(&policy(), &identity, Ok(b"not a certificate"), expect()),
        Outcome::Failed(Failure::CertificateUnreadable)
    );
    assert_eq!(
        finish(&policy(), &identity, Err(()), expect()),
        Outcome::Failed(Failure::Fetch)
    );
    let late = Expect {
        now: 1_700_000_000, // before the certificates were issued
        ..expect()
    };
    assert_eq!(
        finish(&policy(), &identity, Ok(&data("shaken-chain.pem")), late),
        Outcome::Failed(Failure::CertificateExpired)
    );
}

#[test]
fn the_passport_must_be_fresh_and_name_the_calls_numbers() {
    let stale = identity(
        &Claims::new(Attest::A, "15552011111", "15559870000", NOW - 61),
        X5U,
    );
    assert_eq!(
        verify(&stale, "shaken-chain.pem"),
        Outcome::Failed(Failure::Identity(IdentityError::Stale))
    );
    let future = identity(
        &Claims::new(Attest::A, "15552011111", "15559870000", NOW + 30),
        X5U,
    );
    assert_eq!(
        verify(&future, "shaken-chain.pem"),
        Outcome::Failed(Failure::Identity(IdentityError::Future))
    );
    let other = identity(
        &Claims::new(Attest::A, "15550000000", "15559870000", NOW),
        X5U,
    );
    let o = verify(&other, "shaken-chain.pem");
    assert_eq!(
        o,
        Outcome::Failed(Failure::Identity(IdentityError::OrigMismatch))
    );
    assert_eq!(o.verstat(), "TN-Validation-Failed");
    assert_eq!(o.label(), "orig-mismatch");
    let wrong_key = {
        let pem = String::from_utf8(data("other-sec1.pem")).unwrap();
        Signer::from_pem(&pem, X5U).unwrap().identity(&Claims::new(
            Attest::A,
            "15552011111",
            "15559870000",
            NOW,
        ))
    };
    let o = verify(&wrong_key, "shaken-chain.pem");
    assert_eq!(
        o,
        Outcome::Failed(Failure::Identity(IdentityError::BadSignature))
    );
    assert_eq!(
        match o {
            Outcome::Failed(f) => f.status(),
            _ => unreachable!(),
        },
        (438, "Invalid Identity Header")
    );
}

#[test]
fn the_header_is_picked_and_its_url_allowed_before_any_fetch() {
    let none: [&str; 0] = [];
    assert_eq!(start(&policy(), none), Started::Done(Outcome::NoIdentity));
    assert_eq!(
        start(&policy(), ["garbage"]),
        Started::Done(Outcome::Failed(Failure::Identity(
            IdentityError::Malformed("not a JWS")
        )))
    );
    // A malformed header beside a good one: the good one is used.
    assert!(matches!(
        start(&policy(), ["garbage", good().as_str()]),
        Started::Fetch { .. }
    ));
    for url in [
        "https://evil.example.com/c.pem",
        "http://certs.example.net/c.pem",
        "https://user@certs.example.net/c.pem",
        "ftp://certs.example.net/c.pem",
        // A WHATWG parser (the fetch's) reads the host as evil.example.
        "https://evil.example\\.certs.example.net/c.pem",
    ] {
        let v = identity(&Claims::new(Attest::A, "1", "2", NOW), url);
        assert_eq!(
            start(&policy(), [v.as_str()]),
            Started::Done(Outcome::Failed(Failure::CertificateUrl)),
            "{url}"
        );
    }
    // info and x5u must agree.
    let v = good().replace(
        "info=<https://certs.example.net",
        "info=<https://other.example.net",
    );
    assert_eq!(
        start(&policy(), [v.as_str()]),
        Started::Done(Outcome::Failed(Failure::CertificateUrl))
    );
}
