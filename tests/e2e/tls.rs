//! SIP over TLS end to end, against OpenSSL (`openssl s_server` as a TLS trunk, `openssl
//! s_client` as a TLS peer calling in), with certificates made by `openssl` for the test: a
//! call to a TLS trunk arrives over TLS after Sluice verified the trunk's certificate for its
//! name; a trunk presenting a certificate for another name, or from an unknown CA, is refused
//! (the PBX gets its answer at once, the failure is counted by reason); a request over TLS to
//! Sluice's TLS listener is answered on that connection; a provider refusing Sluice's client
//! certificate after a TLS 1.3 handshake fails the call at once; and whole calls, out and in,
//! cross Kamailio's TLS module (OpenSSL) as the provider's edge, each side verifying the
//! other's certificate.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_e2e::{
    http, metric, parse_prometheus, repo_root, sipp_available, Kamailio, Lab, LabAddrs, Peer,
    Transport,
};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (package openssl) is required");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.pem`) and certificates signed by it for each (file stem, DNS name), and one
/// from another CA (`stranger`).
fn certificates(dir: &Path, names: &[(&str, &str)]) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for ca in ["ca", "otherca"] {
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        let subj = format!("/CN=Sluice test {ca}");
        args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
        openssl(dir, &args);
    }
    let all =
        names
            .iter()
            .map(|(f, n)| (*f, *n, "ca"))
            .chain([("stranger", "trunk.test", "otherca")]);
    for (file, name, ca) in all {
        let (key, csr, ext, pem) = (
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("{file}.ext"),
            format!("{file}.pem"),
        );
        let mut args = vec!["req"];
        args.extend(ec);
        let subj = format!("/CN={name}");
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &args);
        std::fs::write(
            dir.join(&ext),
            format!(
                "subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
            ),
        )
        .unwrap();
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// The lab with a TLS listener on the external side and its trunk reached over TLS at .20:5061,
/// verified as `trunk.test`.
fn start(block: u8, certs: &Path) -> Lab {
    start_with(block, certs, "")
}

/// [`start`] with more keys in the trunk's table.
fn start_with(block: u8, certs: &Path, trunk_keys: &str) -> Lab {
    let a = LabAddrs::v4(block);
    let c = |f: &str| certs.join(f).display().to_string();
    let text = Lab::config_for(&a, Transport::Udp)
        .replace(
            &format!("{{ transport = \"tcp\", address = \"127.0.{block}.1:5080\" }},"),
            &format!(
                "{{ transport = \"tcp\", address = \"127.0.{block}.1:5080\" }},\n    \
                 {{ transport = \"tls\", address = \"127.0.{block}.1:5061\" }},"
            ),
        )
        .replace(
            &format!("host = \"127.0.{block}.20\"\nport = 5060\ntransport = \"udp\""),
            &format!(
                "host = \"127.0.{block}.20\"\nport = 5061\ntransport = \"tls\"\n\
                 tls_server_name = \"trunk.test\"\nmedia = \"signalling-only\"\n{trunk_keys}"
            ),
        );
    let text = format!(
        "{text}\n[tls]\ncertificate = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
        c("sluice.pem"),
        c("sluice.key"),
        c("ca.pem")
    );
    assert!(
        text.contains("transport = \"tls\"\ntls_server_name"),
        "{text}"
    );
    Lab::start_with_text(a, Transport::Udp, &text)
}

/// `openssl s_server` on `at` presenting `cert`, printing what it receives to `out`.
fn s_server(certs: &Path, at: &str, cert: &str, out: &Path) -> Child {
    s_server_with(certs, at, cert, out, &[])
}

fn s_server_with(certs: &Path, at: &str, cert: &str, out: &Path, extra: &[&str]) -> Child {
    let child = Command::new("openssl")
        .args(["s_server", "-accept", at, "-naccept", "1"])
        .args(extra)
        .arg("-cert")
        .arg(certs.join(format!("{cert}.pem")))
        .arg("-key")
        .arg(certs.join(format!("{cert}.key")))
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    // Listening before anyone connects (it takes one connection only).
    let ready = wait_for(out, "ACCEPT", Duration::from_secs(10));
    assert!(ready.contains("ACCEPT"), "s_server did not start: {ready}");
    child
}

/// Wait (bounded) until `file` holds `text`.
fn wait_for(file: &Path, text: &str, limit: Duration) -> String {
    let until = Instant::now() + limit;
    loop {
        let got = String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default()).into_owned();
        if got.contains(text) || Instant::now() > until {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn calls_reach_a_tls_trunk_verified_for_its_name_and_a_wrong_certificate_is_refused() {
    assert!(sipp_available(), "sipp (package sip-tester) is required");
    const BLOCK: u8 = 84;
    let certs = tempfile::tempdir().unwrap();
    certificates(
        certs.path(),
        &[
            ("sluice", "sluice.test"),
            ("trunk", "trunk.test"),
            ("wrong", "elsewhere.test"),
        ],
    );
    let lab = start(BLOCK, certs.path());
    let trunk = format!("127.0.{BLOCK}.20:5061");

    // The right certificate: the INVITE arrives over TLS, as TLS.
    let out = lab.dir.path().join("s_server.out");
    let mut server = s_server(certs.path(), &trunk, "trunk", &out);
    let mut uac = lab.sipp(
        "call",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1", "-timeout", "10"],
    );
    let got = wait_for(&out, "INVITE sip:", Duration::from_secs(10));
    assert!(
        got.contains("INVITE sip:service@127.0.84.20:5061;transport=tls SIP/2.0"),
        "{got}\n{}",
        lab.log()
    );
    assert!(got.contains("Via: SIP/2.0/TLS 127.0.84.1:5061;"), "{got}");
    let _ = server.kill();
    let _ = server.wait();
    uac.kill();

    // A certificate for another name, then one from an unknown CA: the handshake is refused,
    // the PBX gets 503 at once (no Timer B), and each failure is counted by its reason.
    for (cert, reason) in [("wrong", "wrong-name"), ("stranger", "unknown-issuer")] {
        let out = lab.dir.path().join(format!("s_server-{cert}.txt"));
        let mut server = s_server(certs.path(), &trunk, cert, &out);
        let started = Instant::now();
        let uac = lab.sipp(
            cert,
            "uac_503.xml",
            Peer::Pbx,
            Some(&lab.internal()),
            &["-m", "1"],
        );
        let r = uac.wait(Duration::from_secs(15));
        assert_eq!(
            (r.successful, r.failed),
            (1, 0),
            "{cert}: {r:?}\n{}",
            lab.log()
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        let _ = server.kill();
        let _ = server.wait();
        let got = String::from_utf8_lossy(&std::fs::read(&out).unwrap_or_default()).into_owned();
        assert!(
            !got.contains("INVITE"),
            "nothing sent to a peer that failed: {got}"
        );
        let (_, body) = http("GET", &lab.admin(), "/metrics", None, "");
        let samples = parse_prometheus(&body);
        let labels = [("way", "opened"), ("reason", reason)];
        assert_eq!(
            metric(&samples, "sluice_tls_handshake_failures_total", &labels),
            Some(1.0),
            "{cert}: {body}"
        );
    }
}

#[test]
fn a_request_over_tls_to_sluices_listener_is_answered_on_its_connection() {
    const BLOCK: u8 = 85;
    let certs = tempfile::tempdir().unwrap();
    certificates(
        certs.path(),
        &[("sluice", "sluice.test"), ("trunk", "trunk.test")],
    );
    let lab = start(BLOCK, certs.path());
    let at = format!("127.0.{BLOCK}.1:5061");
    // OpenSSL verifies Sluice's certificate for its name against the test CA.
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &at,
            "-servername",
            "sluice.test",
            "-verify_return_error",
            "-quiet",
            "-CAfile",
        ])
        .arg(certs.path().join("ca.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let options = format!(
        "OPTIONS sip:127.0.{BLOCK}.1:5061;transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:5099;branch=z9hG4bKtls1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=1\r\n\
         To: <sip:127.0.{BLOCK}.1>\r\n\
         Call-ID: tls-options-1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    client
        .stdin
        .as_mut()
        .unwrap()
        .write_all(options.as_bytes())
        .unwrap();
    // Read until the answer's head is in (bounded by the read itself: s_client ends when
    // Sluice closes, or is killed below).
    let mut stdout = client.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    let until = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = client.kill();
    let _ = client.wait();
    let got = reader.join().unwrap();
    assert!(got.starts_with("SIP/2.0 200"), "{got:?}\n{}", lab.log());
    assert!(got.contains("Call-ID: tls-options-1"), "{got}");
}

/// The subject of the certificate Sluice presents, as `openssl s_client` saw it.
fn probe(at: &str, ca: &Path) -> String {
    let client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            at,
            "-servername",
            "sluice.test",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let out = client.wait_with_output().expect("s_client output");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_reload_gives_new_handshakes_the_new_certificate() {
    const BLOCK: u8 = 86;
    let certs = tempfile::tempdir().unwrap();
    certificates(
        certs.path(),
        &[
            ("sluice", "sluice.test"),
            ("renewed", "sluice-renewed.test"),
            ("trunk", "trunk.test"),
        ],
    );
    let lab = start(BLOCK, certs.path());
    let at = format!("127.0.{BLOCK}.1:5061");
    let ca = certs.path().join("ca.pem");
    let before = probe(&at, &ca);
    assert!(before.contains("sluice.test"), "{before}");
    // The files are replaced, then a reload: handshakes from then on get the new certificate.
    for ext in ["pem", "key"] {
        std::fs::copy(
            certs.path().join(format!("renewed.{ext}")),
            certs.path().join(format!("sluice.{ext}")),
        )
        .unwrap();
    }
    let (code, body) = http("POST", &lab.admin(), "/reload", None, "");
    assert_eq!(code, 200, "{body}");
    let after = probe(&at, &ca);
    assert!(
        after.contains("sluice-renewed.test"),
        "{after}\n{}",
        lab.log()
    );
    // A key that is not the certificate's is refused, and the running one stays.
    std::fs::copy(
        certs.path().join("trunk.key"),
        certs.path().join("sluice.key"),
    )
    .unwrap();
    let (code, body) = http("POST", &lab.admin(), "/reload", None, "");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("is the key the certificate's?"), "{body}");
    let kept = probe(&at, &ca);
    assert!(kept.contains("sluice-renewed.test"), "{kept}");
}

#[test]
fn check_names_what_is_wrong_with_the_tls_files() {
    let certs = tempfile::tempdir().unwrap();
    certificates(
        certs.path(),
        &[("sluice", "sluice.test"), ("trunk", "trunk.test")],
    );
    let dir = certs.path();
    // An expired certificate (valid until yesterday).
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "sluice.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-out",
            "expired.pem",
            "-days",
            "-1",
        ],
    );
    let a = LabAddrs::v4(87);
    let base = Lab::config_for(&a, Transport::Udp).replace(
        "{ transport = \"tcp\", address = \"127.0.87.1:5080\" },",
        "{ transport = \"tcp\", address = \"127.0.87.1:5080\" },\n    { transport = \"tls\", address = \"127.0.87.1:5061\" },",
    );
    let check = |cert: &str, key: &str| {
        let text = format!("{base}\n[tls]\ncertificate = \"{cert}\"\nkey = \"{key}\"\n");
        let path = dir.join("check.toml");
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
    let (ok, err) = check("sluice.pem", "sluice.key");
    assert!(ok, "{err}");
    let (ok, err) = check("missing.pem", "sluice.key");
    assert!(
        !ok && err.contains("missing.pem: cannot read a certificate"),
        "{err}"
    );
    let (ok, err) = check("sluice.pem", "trunk.key");
    assert!(
        !ok && err.contains("is the key the certificate's?"),
        "{err}"
    );
    let (ok, err) = check("expired.pem", "sluice.key");
    assert!(
        !ok && err.contains("expired.pem: the certificate is valid from"),
        "{err}"
    );
    let (ok, err) = check("sluice.pem", "");
    assert!(!ok, "{err}");
}

#[test]
fn a_trunk_that_requires_a_client_certificate_gets_the_one_configured_for_it() {
    assert!(sipp_available(), "sipp (package sip-tester) is required");
    const BLOCK: u8 = 88;
    let certs = tempfile::tempdir().unwrap();
    certificates(
        certs.path(),
        &[("sluice", "sluice.test"), ("trunk", "trunk.test")],
    );
    let c = |f: &str| certs.path().join(f).display().to_string();
    let keys = format!(
        "tls_certificate = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"",
        c("sluice.pem"),
        c("sluice.key"),
        c("ca.pem")
    );
    let lab = start_with(BLOCK, certs.path(), &keys);
    let trunk = format!("127.0.{BLOCK}.20:5061");
    let out = lab.dir.path().join("s_server-mutual.txt");
    // The provider requires a client certificate from its CA, and checks it.
    let ca = c("ca.pem");
    let mut server = s_server_with(
        certs.path(),
        &trunk,
        "trunk",
        &out,
        &["-Verify", "1", "-verify_return_error", "-CAfile", &ca],
    );
    let mut uac = lab.sipp(
        "mutual",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1", "-timeout", "10"],
    );
    let got = wait_for(&out, "INVITE sip:", Duration::from_secs(10));
    let _ = server.kill();
    let _ = server.wait();
    uac.kill();
    assert!(got.contains("INVITE sip:service@"), "{got}\n{}", lab.log());
    // The client certificate's expiry is exported beside the listeners' (made for one day).
    let (_, body) = http("GET", &lab.admin(), "/metrics", None, "");
    let samples = parse_prometheus(&body);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for which in ["trunk:loop", "listeners"] {
        let expiry = metric(
            &samples,
            "sluice_tls_certificate_expiry_timestamp_seconds",
            &[("certificate", which)],
        )
        .unwrap_or_else(|| panic!("no expiry for {which}: {body}"));
        assert!(
            expiry > now && expiry < now + 3.0 * 86_400.0,
            "{which}: {expiry}"
        );
    }
}

#[test]
fn a_provider_refusing_sluices_client_certificate_after_the_handshake_fails_the_call_at_once() {
    assert!(sipp_available(), "sipp (package sip-tester) is required");
    const BLOCK: u8 = 92;
    let certs = tempfile::tempdir().unwrap();
    certificates(
        certs.path(),
        &[("sluice", "sluice.test"), ("trunk", "trunk.test")],
    );
    // No client certificate configured for the trunk, which requires one: over TLS 1.3 the
    // provider's refusal (an alert) comes after Sluice's handshake completed.
    let lab = start(BLOCK, certs.path());
    let trunk = format!("127.0.{BLOCK}.20:5061");
    let out = lab.dir.path().join("s_server-requires.txt");
    let ca = certs.path().join("ca.pem").display().to_string();
    let mut server = s_server_with(
        certs.path(),
        &trunk,
        "trunk",
        &out,
        &[
            "-tls1_3",
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
            &ca,
        ],
    );
    let started = Instant::now();
    let uac = lab.sipp(
        "refused",
        "uac_503.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1"],
    );
    let r = uac.wait(Duration::from_secs(20));
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}\n{}", lab.log());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "503 without waiting for Timer B: {:?}",
        started.elapsed()
    );
    let (_, body) = http("GET", &lab.admin(), "/metrics", None, "");
    let samples = parse_prometheus(&body);
    let labels = [("way", "opened"), ("reason", "refused-by-peer")];
    assert_eq!(
        metric(&samples, "sluice_tls_handshake_failures_total", &labels),
        Some(1.0),
        "{body}"
    );
}

/// Kamailio (OpenSSL, its tls module) as a provider's TLS edge: calls cross it both ways.
fn kamailio_tls_edge(block: u8, certs: &Path) -> Kamailio {
    let c = |f: &str| certs.join(f).display().to_string();
    let dir = tempfile::tempdir().expect("dir");
    let tls_cfg = dir.path().join("tls.cfg");
    std::fs::write(
        &tls_cfg,
        format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
             require_certificate = no\ncertificate = {}\nprivate_key = {}\n\n\
             [client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\n\
             require_certificate = yes\nca_list = {}\n",
            c("trunk.pem"),
            c("trunk.key"),
            c("ca.pem")
        ),
    )
    .unwrap();
    let template =
        std::fs::read_to_string(repo_root().join("tests/kamailio/provider-tls.cfg")).unwrap();
    let text = template
        .replace("UDP_LISTEN", &format!("127.0.{block}.20:5070"))
        .replace("TLS_LISTEN", &format!("127.0.{block}.20:5061"))
        .replace("TLS_IP", &format!("127.0.{block}.20"))
        .replace("TLS_CFG", &tls_cfg.display().to_string())
        .replace("sip:SWITCH", &format!("sip:127.0.{block}.21:5060"))
        .replace("sip:SLUICE", &format!("sip:127.0.{block}.1:5061"));
    Kamailio::start_in(dir, &text, &format!("127.0.{block}.20:5070"))
}

#[test]
fn calls_cross_kamailio_over_tls_both_ways() {
    assert!(sipp_available(), "sipp (package sip-tester) is required");
    const BLOCK: u8 = 93;
    let certs = tempfile::tempdir().unwrap();
    certificates(
        certs.path(),
        &[("sluice", "sluice.test"), ("trunk", "trunk.test")],
    );
    let lab = start(BLOCK, certs.path());
    let kamailio = kamailio_tls_edge(BLOCK, certs.path());
    let switch = format!("127.0.{BLOCK}.21");

    // Out: PBX → Sluice → (TLS) Kamailio → the provider's switch.
    let uas = lab.sipp_on(
        "switch",
        "uas_switch.xml",
        (switch.clone(), 5060),
        None,
        &["-m", "1"],
    );
    let uac = lab.sipp(
        "out",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1"],
    );
    let r = uac.wait(Duration::from_secs(20));
    let t = uas.wait(Duration::from_secs(10));
    assert_eq!(
        (r.successful, t.successful),
        (1, 1),
        "outbound over TLS: {r:?} {t:?}\n{}\n{}",
        lab.log(),
        kamailio.log()
    );

    // In: the provider's caller → Kamailio → (TLS) Sluice → PBX.
    let pbx = lab.sipp("pbx", "uas.xml", Peer::Pbx, None, &["-m", "1"]);
    let caller = lab.sipp_on(
        "caller",
        "uac.xml",
        (switch, 5062),
        Some(&format!("127.0.{BLOCK}.20:5070")),
        &["-m", "1"],
    );
    let r = caller.wait(Duration::from_secs(20));
    let t = pbx.wait(Duration::from_secs(10));
    let klog = kamailio.stop();
    assert_eq!(
        (r.successful, t.successful),
        (1, 1),
        "inbound over TLS: {r:?} {t:?}\n{}\n{klog}",
        lab.log()
    );
    assert!(
        klog.contains(&format!("over TLS from 127.0.{BLOCK}.1: INVITE")),
        "Sluice's INVITE reached Kamailio over TLS: {klog}"
    );
    assert!(
        klog.contains(&format!("reply over TLS from 127.0.{BLOCK}.1: 200")),
        "Sluice answered over TLS: {klog}"
    );
}

#[test]
fn certificates_replaced_while_a_call_is_up_over_tls() {
    assert!(sipp_available(), "sipp (package sip-tester) is required");
    const BLOCK: u8 = 94;
    let certs = tempfile::tempdir().unwrap();
    certificates(
        certs.path(),
        &[
            ("sluice", "sluice.test"),
            ("renewed", "sluice-renewed.test"),
            ("trunk", "trunk.test"),
        ],
    );
    let lab = start(BLOCK, certs.path());
    let kamailio = kamailio_tls_edge(BLOCK, certs.path());
    let at = format!("127.0.{BLOCK}.1:5061");
    let ca = certs.path().join("ca.pem");
    assert!(probe(&at, &ca).contains("sluice.test"));

    // A call in over TLS (through Kamailio) that lasts 4 s.
    let pbx = lab.sipp("pbx", "uas.xml", Peer::Pbx, None, &["-m", "1"]);
    let caller = lab.sipp_on(
        "caller",
        "uac.xml",
        (format!("127.0.{BLOCK}.21"), 5062),
        Some(&format!("127.0.{BLOCK}.20:5070")),
        &["-m", "1", "-d", "4000"],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, calls) = http("GET", &lab.admin(), "/calls", None, "");
        if calls.contains("\"established\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no call up: {calls}\n{}",
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The files are replaced and reloaded while it is up.
    for ext in ["pem", "key"] {
        std::fs::copy(
            certs.path().join(format!("renewed.{ext}")),
            certs.path().join(format!("sluice.{ext}")),
        )
        .unwrap();
    }
    let (code, body) = http("POST", &lab.admin(), "/reload", None, "");
    assert_eq!(code, 200, "{body}");
    assert!(
        probe(&at, &ca).contains("sluice-renewed.test"),
        "new handshakes get the new certificate"
    );

    // The call goes on over its connection and ends normally.
    let r = caller.wait(Duration::from_secs(20));
    let t = pbx.wait(Duration::from_secs(10));
    let klog = kamailio.stop();
    assert_eq!(
        (r.successful, t.successful),
        (1, 1),
        "{r:?} {t:?}\n{}\n{klog}",
        lab.log()
    );
}
