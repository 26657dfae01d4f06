//! STIR/SHAKEN end to end against Debian's secsipidx: what a signing trunk sends verifies, and
//! what a carrier signs is verified (its certificate fetched over HTTPS from `openssl
//! s_server`) and told to the PBX.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_e2e::{header, http, metric, parse_prometheus, received_at, Lab, Peer};
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(90);

/// STIR/SHAKEN end to end: calls to a trunk that signs arrive with an Identity header that
/// Debian's secsipidx accepts with the signer's certificate, carrying the attestation the
/// generic brand chose (A: the calling number is one of its `full_attestation_numbers`; the
/// trunk's default would be C) and the call's numbers; the signatures are counted.
#[test]
fn calls_to_a_signing_trunk_carry_an_identity_that_secsipidx_verifies() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stir/tests/data");
    // The key and certificate where an operator keeps them, to be rotated below.
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = (keys.path().join("key.pem"), keys.path().join("cert.pem"));
    std::fs::copy(data.join("signer-sec1.pem"), &key).unwrap();
    std::fs::copy(data.join("signer-cert.pem"), &cert).unwrap();
    let extra = format!(
        "[stir]\nkey = \"{}\"\nx5u = \"https://certs.example.net/shaken.pem\"\n\
         certificate = \"{}\"\n\n[plugin.generic.settings]\nattestation = \"B\"\n\
         full_attestation_numbers = [\"1555223\"]\n",
        key.display(),
        cert.display()
    );
    let lab = Lab::start_with_trunk(80, "stir = { sign = true }", &extra);
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "3"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "3", "-r", "10", "-s", "15552001111"],
    );
    let log = uas.messages_path().to_path_buf();
    lab.assert_calls("PBX caller", &uac.wait(LIMIT), 3);
    lab.assert_calls("signing trunk", &uas.wait(Duration::from_secs(10)), 3);
    let invites: Vec<String> = received_at(&log)
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 3);
    for invite in &invites {
        let identity = header(invite, "Identity").expect("an Identity header");
        let out = Command::new("secsipidx")
            .args(["-c", "-expire", "60", "-identity", identity, "-fpubkey"])
            .arg(&cert)
            .output()
            .expect("secsipidx (Debian package secsipidx) runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ok",
            "secsipidx: {out:?}\n{identity}"
        );
        let id = sluice_stir::parse_identity(identity).unwrap();
        assert_eq!(
            id.info.as_deref(),
            Some("https://certs.example.net/shaken.pem")
        );
        let p = sluice_stir::Passport::decode(&id.jws).unwrap();
        assert_eq!(p.claims.attest, "A", "the brand's choice");
        assert_eq!(p.claims.orig.tn.as_deref(), Some("15552230000"));
        assert_eq!(p.claims.dest.tn, ["15552001111"]);
        assert!(!invite.contains("PRIVATE KEY"));
    }
    let (_, text) = http("GET", &lab.admin(), "/metrics", None, "");
    let m = parse_prometheus(&text);
    assert_eq!(
        metric(
            &m,
            "sluice_stir_signed_total",
            &[("trunk", "loop"), ("attestation", "A")]
        ),
        Some(3.0)
    );
    // Key rotation without a restart: a new key alone is refused (it does not match the
    // certificate) and the running one stays; with its certificate it is taken.
    std::fs::copy(data.join("other-sec1.pem"), &key).unwrap();
    let (code, body) = http("POST", &lab.admin(), "/reload", None, "");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("does not match the certificate"), "{body}");
    let made = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=rotated",
            "-key",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let (code, body) = http("POST", &lab.admin(), "/reload", None, "");
    assert_eq!(code, 200, "{body}");
    let invites = lab.outbound_call("15552001111");
    let identity = header(&invites[0], "Identity").expect("signed with the new key");
    let checked = Command::new("secsipidx")
        .args(["-c", "-expire", "60", "-identity", identity, "-fpubkey"])
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&checked.stdout).trim(),
        "ok",
        "{checked:?}"
    );
}

/// `openssl s_server -WWW` serving the files of a directory over HTTPS on 127.0.0.1 (the test
/// CA's server certificate), killed when dropped.
struct HttpsFiles {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl HttpsFiles {
    fn serve(files: &[(&str, &std::path::Path)]) -> HttpsFiles {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stir/tests/data");
        let dir = tempfile::tempdir().unwrap();
        for (name, from) in files {
            std::fs::copy(from, dir.path().join(name)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(data.join("server.pem"))
            .arg("-key")
            .arg(data.join("server-key.pem"))
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("openssl runs");
        // Listening once a connection is accepted (bounded: 10 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        HttpsFiles {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for HttpsFiles {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// STIR/SHAKEN verification end to end: a carrier's calls signed by Debian's secsipidx, whose
/// certificate chain Sluice fetches over HTTPS from `openssl s_server` (once, then from its
/// cache), reach the PBX with `verstat=TN-Validation-Passed`; a call whose certificate URL
/// answers nothing reaches it with `TN-Validation-Failed`; the results are counted.
#[test]
fn calls_signed_by_secsipidx_reach_the_pbx_verified_over_https() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stir/tests/data");
    let https = HttpsFiles::serve(&[("shaken.pem", &data.join("shaken-chain.pem"))]);
    let extra = format!(
        "[stir]\ntrust_anchors = \"{ca}\"\nx5u_ca = \"{ca}\"\nx5u_hosts = [\"127.0.0.1\"]\n\
         fetch_timeout_ms = 2000\n",
        ca = data.join("ca.pem").display()
    );
    let lab = Lab::start_with_trunk(81, "stir = { verify = true }", &extra);
    let sign = |x5u: &str| {
        let out = Command::new("secsipidx")
            .args([
                "-S",
                "-x5u",
                x5u,
                "-o",
                "15552230000",
                "-d",
                "15552001111",
                "-a",
                "A",
            ])
            .arg("-fprvkey")
            .arg(data.join("signer-pkcs8.pem"))
            .output()
            .expect("secsipidx runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let good = sign(&format!("https://127.0.0.1:{}/shaken.pem", https.port));
    let pbx = lab.sipp("pbx", "uas.xml", Peer::Pbx, None, &["-m", "4"]);
    // One call fetches the certificate; the next two find it in the cache.
    for (name, calls) in [("carrier1", "1"), ("carrier2", "2")] {
        let carrier = lab.sipp(
            name,
            "uac_identity.xml",
            Peer::Trunk,
            Some(&lab.external()),
            &["-m", calls, "-s", "15552001111", "-set", "identity", &good],
        );
        let calls: u64 = calls.parse().unwrap();
        lab.assert_calls("carrier (signed)", &carrier.wait(LIMIT), calls);
    }
    // A certificate URL where nothing answers.
    let dead = sign("https://127.0.0.1:1/shaken.pem");
    let carrier = lab.sipp(
        "carrier3",
        "uac_identity.xml",
        Peer::Trunk,
        Some(&lab.external()),
        &["-m", "1", "-s", "15552001111", "-set", "identity", &dead],
    );
    lab.assert_calls("carrier (dead x5u)", &carrier.wait(LIMIT), 1);
    let log = pbx.messages_path().to_path_buf();
    lab.assert_calls("PBX", &pbx.wait(Duration::from_secs(10)), 4);
    let invites: Vec<String> = received_at(&log)
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 4);
    for (i, invite) in invites.iter().enumerate() {
        let from = header(invite, "From").unwrap();
        let want = if i < 3 {
            "TN-Validation-Passed"
        } else {
            "TN-Validation-Failed"
        };
        assert!(
            from.contains(&format!("15552230000;verstat={want}@")),
            "call {i}: {from}"
        );
        assert!(header(invite, "Identity").is_none());
    }
    let (_, text) = http("GET", &lab.admin(), "/metrics", None, "");
    let m = parse_prometheus(&text);
    let count = |name: &str, labels: &[(&str, &str)]| metric(&m, name, labels).unwrap_or(0.0);
    assert_eq!(
        count(
            "sluice_stir_verified_total",
            &[("trunk", "loop"), ("result", "passed")]
        ),
        3.0
    );
    assert_eq!(
        count(
            "sluice_stir_verified_total",
            &[("trunk", "loop"), ("result", "fetch-failed")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "sluice_stir_certificate_fetches_total",
            &[("result", "fetched")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "sluice_stir_certificate_fetches_total",
            &[("result", "cached")]
        ),
        2.0
    );
}
