//! The command line: `sluice check` on good and bad configurations.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use std::process::Command;

#[test]
fn check_accepts_the_bundled_lab() {
    let lab = sluice_e2e::repo_root().join("examples/loopback.toml");
    let out = Command::new(sluice_e2e::sluice_bin())
        .args(["check", "--config"])
        .arg(&lab)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_names_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = sluice_e2e::Lab::config_text(200, sluice_e2e::Transport::Udp)
        .replace("[pbx]\n", "[pbx]\ncolour = \"blue\"\n");
    let line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(sluice_e2e::sluice_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("bad.toml:{line}:")), "{err}");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn run_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[routing]\noutbound_trunk = 3\n").unwrap();
    let out = Command::new(sluice_e2e::sluice_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:"));
}

#[test]
fn check_loads_the_plugins_and_names_the_one_that_fails() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("plugins.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(sluice_e2e::sluice_bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let addrs = sluice_e2e::LabAddrs::v4(201);
    let with = |trunk: &str, extra: &str| sluice_e2e::Lab::config_with(&addrs, trunk, extra);
    let (ok, out) = check(&with(
        "brand = \"voipms\"\noutbound_rules = [\"tel-uri-to\"]",
        "",
    ));
    assert!(ok && out.contains("2 plugins"), "{out}");
    let (ok, out) = check(&with("brand = \"nosuchbrand\"", ""));
    assert!(!ok && out.contains("`nosuchbrand` not found"), "{out}");
    // Settings the plugin refuses are found by its self-check.
    let (ok, out) = check(&with(
        "outbound_rules = [\"acme\"]",
        "[plugin.acme]\nmodule = \"header-rules\"\nsettings = { rules = [\"frobnicate X\"] }",
    ));
    assert!(
        !ok && out.contains("plugin `acme`") && out.contains("frobnicate"),
        "{out}"
    );
}

/// `tcp_for_large_requests` with no TCP listener beside the UDP one would silently do nothing:
/// `sluice check` refuses it and says what to add.
#[test]
fn check_refuses_tcp_for_large_requests_without_a_tcp_listener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    let base = sluice_e2e::Lab::config_text(201, sluice_e2e::Transport::Udp);
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(sluice_e2e::sluice_bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let with_option = base.replace(
        "name = \"loop\"",
        "name = \"loop\"\ntcp_for_large_requests = true",
    );
    assert!(
        check(&with_option).0,
        "a tcp listener beside the udp one: accepted"
    );
    let udp_only = with_option.replace(
        "    { transport = \"tcp\", address = \"127.0.201.1:5080\" },\n",
        "",
    );
    assert_ne!(udp_only, with_option);
    let (ok, err) = check(&udp_only);
    assert!(
        !ok && err.contains("tcp_for_large_requests") && err.contains("127.0.201.1:5080"),
        "{err}"
    );
}

/// STIR/SHAKEN keys are checked by `sluice check`: a key matching its certificate (relative
/// paths, beside the configuration) is accepted; a key that does not match, a file that is no
/// key, a missing key and a trunk that signs without one are refused with what is wrong.
#[test]
fn check_names_what_is_wrong_with_a_stir_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stir/tests/data");
    for f in [
        "signer-sec1.pem",
        "signer-cert.pem",
        "other-sec1.pem",
        "rsa.pem",
    ] {
        std::fs::copy(data.join(f), dir.path().join(f)).unwrap();
    }
    let path = dir.path().join("s.toml");
    let base = sluice_e2e::Lab::config_text(201, sluice_e2e::Transport::Udp)
        .replace("name = \"loop\"", "name = \"loop\"\nstir = { sign = true }");
    let check = |stir: &str| {
        std::fs::write(&path, format!("{base}\n[stir]\n{stir}\n")).unwrap();
        let out = Command::new(sluice_e2e::sluice_bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let x5u = "x5u = \"https://certs.example.net/shaken.pem\"\n";
    let (ok, err) = check(&format!(
        "key = \"signer-sec1.pem\"\ncertificate = \"signer-cert.pem\"\n{x5u}"
    ));
    assert!(ok, "{err}");
    let (ok, err) = check(&format!(
        "key = \"other-sec1.pem\"\ncertificate = \"signer-cert.pem\"\n{x5u}"
    ));
    assert!(
        !ok && err.contains("does not match the certificate"),
        "{err}"
    );
    let (ok, err) = check(&format!("key = \"rsa.pem\"\n{x5u}"));
    assert!(!ok && err.contains("not a P-256 private key"), "{err}");
    let (ok, err) = check(&format!("key = \"missing.pem\"\n{x5u}"));
    assert!(
        !ok && err.contains("missing.pem") && err.contains("cannot read"),
        "{err}"
    );
    let (ok, err) = check(x5u);
    assert!(!ok && err.contains("has no key"), "{err}");
    let (ok, err) = check("key = \"signer-sec1.pem\"\nx5u = \"ftp://x\"\n");
    assert!(!ok && err.contains("not an http(s) URL"), "{err}");
}

/// `sluice stir sign` then `sluice stir verify` on a captured INVITE: every step printed, the
/// verification passes; the same INVITE with another called number fails at `dest`.
#[test]
fn stir_sign_and_verify_print_every_step() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stir/tests/data");
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("invite.txt");
    std::fs::write(
        &capture,
        "INVITE sip:+15559870000@sip.example.net SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcap1\nMax-Forwards: 70\n\
         From: \"Alice\" <sip:+1-555-201-1111@pbx.example.com>;tag=1\n\
         To: <sip:+15559870000@sip.example.net>\nCall-ID: cap1@192.0.2.1\nCSeq: 1 INVITE\n\
         Contact: <sip:alice@192.0.2.1>\nContent-Length: 0\n\n",
    )
    .unwrap();
    let out = Command::new(sluice_e2e::sluice_bin())
        .args([
            "stir",
            "sign",
            "--attest",
            "A",
            "--x5u",
            "https://certs.example.net/s.pem",
        ])
        .arg("--message")
        .arg(&capture)
        .arg("--key")
        .arg(data.join("signer-sec1.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Some(\"15552011111\")"),
        "canonical calling number: {text}"
    );
    assert!(text.contains("\"attest\": \"A\""), "{text}");
    assert!(!text.contains("PRIVATE KEY"));
    let signed = &text[text.find("INVITE sip:").unwrap()..];
    assert!(signed.contains("Identity: "));
    let verify = |invite: &str| {
        let file = dir.path().join("signed.txt");
        std::fs::write(&file, invite).unwrap();
        let out = Command::new(sluice_e2e::sluice_bin())
            .args(["stir", "verify"])
            .arg("--message")
            .arg(&file)
            .arg("--trust-anchors")
            .arg(data.join("ca.pem"))
            .arg("--certificate")
            .arg(data.join("shaken-chain.pem"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = verify(signed);
    assert!(ok, "{text}");
    for step in [
        "certificate [0]: subject CN=SHAKEN 709J",
        "check: chain to a trust anchor, validity, TNAuthList: ok",
        "check: signature (ES256, the certificate's key): ok",
        "check: iat fresh: ok",
        "verstat=TN-Validation-Passed",
    ] {
        assert!(text.contains(step), "{step}: {text}");
    }
    let (ok, text) = verify(&signed.replace("To: <sip:+15559870000@", "To: <sip:+15550000000@"));
    assert!(!ok);
    assert!(
        text.contains("check: dest names the called number: FAILED"),
        "{text}"
    );
    assert!(
        text.contains("verstat=TN-Validation-Failed (dest-mismatch)"),
        "{text}"
    );
}

/// `sluice route` explains tenant routing without sending anything: inbound (the tenant and
/// the DID as its PBX gets it, or 404) and outbound (route, trunks, caller ID per trunk).
#[test]
fn route_explains_a_calls_routing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.toml");
    let base = sluice_e2e::Lab::config_text(202, sluice_e2e::Transport::Udp)
        .replace("outbound_trunk = \"loop\"", "");
    let text = format!(
        "{base}\n[[trunk]]\nname = \"backup\"\nhost = \"127.0.202.21\"\nnumber_format = \"digits\"\n\n\
         [[tenant]]\nname = \"acme\"\ndefault_caller_id = \"13322496213\"\n\
         [[tenant.trunk]]\nname = \"loop\"\ndids = \"13322496213-13322496215\"\n\
         [[tenant.trunk]]\nname = \"backup\"\ndids = \"16468097069\"\n\
         [[tenant.route]]\nprefix = \"1\"\ntrunks = [\"loop\", \"backup\"]\n\n\
         [[tenant]]\nname = \"globex\"\npbx = {{ host = \"127.0.202.11\" }}\npbx_number_format = \"national\"\n\
         [[tenant.trunk]]\nname = \"loop\"\ndids = \"16468097069-16468097079\"\n"
    );
    std::fs::write(&path, text).unwrap();
    let route = |args: &[&str]| {
        let out = Command::new(sluice_e2e::sluice_bin())
            .args(["route", "--config"])
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = route(&["--from", "3322496214", "--to", "(212) 555-0100"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("tenant     acme"), "{text}");
    assert!(text.contains("route      1 (prefix 1)"), "{text}");
    assert!(
        text.contains("1. loop: called +12125550100, calling +13322496214"),
        "{text}"
    );
    assert!(
        text.contains("2. backup: called 12125550100, calling 13322496213 (the tenant's default)"),
        "{text}"
    );
    let (code, text) = route(&[
        "--trunk",
        "loop",
        "--from",
        "12125550100",
        "--to",
        "+16468097070",
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("tenant     globex"), "{text}");
    assert!(text.contains("127.0.202.11:5060"), "{text}");
    assert!(text.contains("called 6468097070"), "{text}");
    let (code, text) = route(&["--trunk", "loop", "--from", "1", "--to", "13322496299"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("404 Not Found"), "{text}");
    let (code, text) = route(&["--tenant", "globex", "--from", "1", "--to", "2125550100"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("404 No Route"), "{text}");
}
