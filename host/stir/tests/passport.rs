//! PASSporT signing and checking. What Sluice signs is verified by an independent JOSE
//! implementation (`jsonwebtoken`) and its signature by RustCrypto's `p256` (Sluice signs with
//! `ring`), and Sluice's checks fail where they must.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use sluice_stir::{
    check, parse_identity, Attest, Certificate, Claims, Expect, IdentityError, Passport, Signer,
    Verdict,
};

// Test keys and a self-signed certificate, made with OpenSSL for these tests only.
const SEC1: &str = include_str!("data/signer-sec1.pem");
const PKCS8: &str = include_str!("data/signer-pkcs8.pem");
const OTHER: &str = include_str!("data/other-sec1.pem");
const RSA: &str = include_str!("data/rsa.pem");
const CERT: &[u8] = include_bytes!("data/signer-cert.pem");
const X5U: &str = "https://cert.example.net/shaken.pem";
const IAT: u64 = 1_790_000_000;

fn signer() -> Signer {
    Signer::from_pem(SEC1, X5U).unwrap()
}

fn expect(now: u64) -> Expect<'static> {
    Expect {
        now,
        max_age: 60,
        orig: "15552011111",
        dest: "15559870000",
    }
}

#[test]
fn an_independent_jose_implementation_verifies_what_sluice_signs() {
    let s = signer();
    let claims = Claims::new(Attest::B, "15552011111", "15559870000", IAT);
    let jws = s.sign(&claims);
    let point = s.public_key();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        &B64.encode(&point[1..33]),
        &B64.encode(&point[33..65]),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<serde_json::Value>(&jws, &key, &v).expect("verifies");
    assert_eq!(data.claims["attest"], "B");
    assert_eq!(data.claims["orig"]["tn"], "15552011111");
    assert_eq!(data.claims["dest"]["tn"][0], "15559870000");
    assert_eq!(data.claims["iat"], IAT);
    assert_eq!(data.claims["origid"].as_str().unwrap().len(), 36, "a UUID");
    assert_eq!(data.header.x5u.as_deref(), Some(X5U));
    assert_eq!(data.header.typ.as_deref(), Some("passport"));
    // And the signature alone by RustCrypto's p256 (Sluice signs with ring).
    {
        use p256::ecdsa::signature::Verifier as _;
        let (input, sig) = jws.rsplit_once('.').unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&B64.decode(sig).unwrap()).unwrap();
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
        key.verify(input.as_bytes(), &sig).expect("p256 verifies");
    }
    // Tampered claims do not verify there either.
    let mut parts: Vec<String> = jws.split('.').map(str::to_string).collect();
    let forged = serde_json::to_vec(&Claims {
        attest: "A".into(),
        ..claims
    })
    .unwrap();
    parts[1] = B64.encode(forged);
    assert!(jsonwebtoken::decode::<serde_json::Value>(&parts.join("."), &key, &v).is_err());
}

#[test]
fn header_and_claims_are_written_in_lexicographic_order() {
    let jws = signer().sign(&Claims::new(Attest::A, "1555", "1666", IAT));
    let mut parts = jws.split('.');
    let header = String::from_utf8(B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    assert_eq!(
        header,
        format!("{{\"alg\":\"ES256\",\"ppt\":\"shaken\",\"typ\":\"passport\",\"x5u\":\"{X5U}\"}}")
    );
    let claims = String::from_utf8(B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    assert!(
        claims.starts_with(&format!(
            "{{\"attest\":\"A\",\"dest\":{{\"tn\":[\"1666\"]}},\"iat\":{IAT},\"orig\":{{\"tn\":\"1555\"}},\"origid\":\""
        )),
        "{claims}"
    );
}

#[test]
fn keys_load_from_sec1_and_pkcs8_and_nothing_else() {
    let a = Signer::from_pem(SEC1, X5U).unwrap();
    let b = Signer::from_pem(PKCS8, X5U).unwrap();
    assert_eq!(a.public_key(), b.public_key());
    assert!(Signer::from_pem(RSA, X5U).is_err());
    assert!(Signer::from_pem("not a key", X5U).is_err());
    let shown = format!("{a:?}");
    assert!(
        shown.contains("<hidden>") && !shown.contains("SigningKey"),
        "{shown}"
    );
}

#[test]
fn the_certificate_matches_its_key_only() {
    let chain = Certificate::chain_from_pem(CERT).unwrap();
    assert_eq!(chain.len(), 1);
    let cert = &chain[0];
    assert!(
        cert.subject.contains("SHAKEN test signer"),
        "{}",
        cert.subject
    );
    assert!(cert.matches(&signer()));
    assert!(!cert.matches(&Signer::from_pem(OTHER, X5U).unwrap()));
    assert!(cert.not_after > cert.not_before);
    assert!(cert.valid_at(cert.not_before + 1));
    assert!(!cert.valid_at(cert.not_before - 1));
    assert!(!cert.valid_at(cert.not_after + 1));
    assert!(!cert.has_tn_auth_list);
    assert!(Certificate::chain_from_pem(SEC1.as_bytes()).is_err());
}

#[test]
fn identity_headers_are_parsed_in_their_full_form() {
    let value = signer().identity(&Claims::new(Attest::C, "1555", "1666", IAT));
    let id = parse_identity(&value).unwrap();
    assert_eq!(id.info.as_deref(), Some(X5U));
    assert_eq!(id.alg.as_deref(), Some("ES256"));
    assert_eq!(id.ppt.as_deref(), Some("shaken"));
    assert_eq!(Passport::decode(&id.jws).unwrap().claims.attest, "C");
    let spaced = format!("{} ; info = <{X5U}> ; alg=ES256; ppt=\"shaken\"", id.jws);
    assert_eq!(parse_identity(&spaced).unwrap(), id);
    assert!(parse_identity("garbage;info=<x>").is_err());
    assert!(parse_identity("a.b.c;info=<unterminated").is_err());
}

#[test]
fn checks_pass_and_fail_where_they_must() {
    let s = signer();
    let key = s.public_key();
    let good =
        parse_identity(&s.identity(&Claims::new(Attest::A, "15552011111", "15559870000", IAT)))
            .unwrap();
    assert!(
        matches!(check(&good, &key, expect(IAT + 10)), Verdict::Passed(p) if p.claims.attest == "A")
    );
    let failed = |id: &sluice_stir::Identity, key: &[u8], e: Expect<'_>| match check(id, key, e) {
        Verdict::Failed(f) => f,
        Verdict::Passed(_) => panic!("passed"),
    };
    assert_eq!(failed(&good, &key, expect(IAT + 61)), IdentityError::Stale);
    // A signer's clock a few seconds ahead is tolerated; more is not.
    assert!(matches!(
        check(
            &good,
            &key,
            expect(IAT - sluice_stir::passport::FUTURE_SKEW)
        ),
        Verdict::Passed(_)
    ));
    assert_eq!(
        failed(
            &good,
            &key,
            expect(IAT - sluice_stir::passport::FUTURE_SKEW - 1)
        ),
        IdentityError::Future
    );
    let other = Signer::from_pem(OTHER, X5U).unwrap().public_key();
    assert_eq!(
        failed(&good, &other, expect(IAT)),
        IdentityError::BadSignature
    );
    let e = Expect {
        orig: "15550000000",
        ..expect(IAT)
    };
    assert_eq!(failed(&good, &key, e), IdentityError::OrigMismatch);
    let e = Expect {
        dest: "15550000000",
        ..expect(IAT)
    };
    assert_eq!(failed(&good, &key, e), IdentityError::DestMismatch);
    // Claims changed after signing.
    let mut parts: Vec<String> = good.jws.split('.').map(str::to_string).collect();
    let mut claims = Passport::decode(&good.jws).unwrap().claims;
    claims.orig.tn = Some("15550000000".into());
    parts[1] = B64.encode(serde_json::to_vec(&claims).unwrap());
    let tampered = sluice_stir::Identity {
        jws: parts.join("."),
        ..good.clone()
    };
    assert_eq!(
        failed(&tampered, &key, expect(IAT)),
        IdentityError::BadSignature
    );
    assert_eq!(IdentityError::BadSignature.status(), 438);
    assert_eq!(IdentityError::Stale.status(), 403);
}
