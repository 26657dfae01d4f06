//! Interoperability with an independent implementation: Debian's `secsipidx` (installed by
//! `.ci/run`) checks the Identity headers Sluice signs, and Sluice checks the ones it signs.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use sluice_stir::{check, parse_identity, Attest, Certificate, Claims, Expect, Signer, Verdict};
use std::path::PathBuf;
use std::process::Command;

const X5U: &str = "https://cert.example.net/shaken.pem";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `secsipidx -c` on `identity` with the test certificate: whether it said `ok`.
fn secsipidx_accepts(identity: &str) -> bool {
    let out = Command::new("secsipidx")
        .args(["-c", "-expire", "60", "-identity", identity, "-fpubkey"])
        .arg(data("signer-cert.pem"))
        .output()
        .expect("secsipidx (Debian package secsipidx) runs");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    out.status.success() && said.trim() == "ok"
}

#[test]
fn secsipidx_verifies_what_sluice_signs() {
    let signer = Signer::from_pem(
        &std::fs::read_to_string(data("signer-sec1.pem")).unwrap(),
        X5U,
    )
    .unwrap();
    let identity = signer.identity(&Claims::new(Attest::A, "15552011111", "15559870000", now()));
    assert!(secsipidx_accepts(&identity), "{identity}");
    // Signed by another key: refused.
    let other = Signer::from_pem(
        &std::fs::read_to_string(data("other-sec1.pem")).unwrap(),
        X5U,
    )
    .unwrap();
    let forged = other.identity(&Claims::new(Attest::A, "15552011111", "15559870000", now()));
    assert!(!secsipidx_accepts(&forged));
    // Too old for `-expire 60`.
    let old = signer.identity(&Claims::new(Attest::A, "1555", "1666", now() - 120));
    assert!(!secsipidx_accepts(&old));
}

#[test]
fn sluice_verifies_what_secsipidx_signs() {
    let out = Command::new("secsipidx")
        .args([
            "-S",
            "-x5u",
            X5U,
            "-o",
            "15552011111",
            "-d",
            "15559870000",
            "-a",
            "B",
        ])
        .arg("-fprvkey")
        .arg(data("signer-pkcs8.pem"))
        .output()
        .expect("secsipidx runs");
    assert!(out.status.success(), "{out:?}");
    let value = String::from_utf8(out.stdout).unwrap();
    let id = parse_identity(value.trim()).unwrap();
    assert_eq!(id.info.as_deref(), Some(X5U));
    let cert =
        &Certificate::chain_from_pem(&std::fs::read(data("signer-cert.pem")).unwrap()).unwrap()[0];
    let expect = Expect {
        now: now(),
        max_age: 60,
        orig: "15552011111",
        dest: "15559870000",
    };
    match check(&id, &cert.public_key, expect) {
        Verdict::Passed(p) => assert_eq!(p.claims.attest, "B"),
        Verdict::Failed(e) => panic!("secsipidx's PASSporT failed: {e}"),
    }
    let wrong = Expect {
        dest: "15550000000",
        ..expect
    };
    assert!(matches!(
        check(&id, &cert.public_key, wrong),
        Verdict::Failed(_)
    ));
}
