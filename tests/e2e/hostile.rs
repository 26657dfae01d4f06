//! Hostile and malformed input on a live Sluice while calls are in progress: each gets the
//! answer RFC 3261 prescribes (400/505, or silence), and the calls are not disturbed.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use sluice_e2e::{Lab, LabAddrs, Peer, Transport};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

struct Probe {
    sock: UdpSocket,
    target: String,
    n: u32,
}

impl Probe {
    fn new(local: &str, target: &str) -> Probe {
        let sock = UdpSocket::bind(local).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Probe {
            sock,
            target: target.to_string(),
            n: 0,
        }
    }

    fn local(&self) -> String {
        self.sock.local_addr().unwrap().to_string()
    }

    /// Send `data`, then a valid OPTIONS; return what came back before the OPTIONS' 200.
    /// Sluice handles one source's datagrams in order, so the 200 marks the end of any answer to
    /// `data` without waiting on a timer.
    fn answers_to(&mut self, data: &[u8]) -> Vec<String> {
        self.n += 1;
        // Unique per probe socket too: two probes' markers must not look like one request
        // merged (same From tag, Call-ID and CSeq).
        let port = self.sock.local_addr().map(|a| a.port()).unwrap_or(0);
        let marker = format!("marker-{}-{port}-{}", std::process::id(), self.n);
        self.sock.send_to(data, &self.target).unwrap();
        let local = self.local();
        let options = format!(
            "OPTIONS sip:{t} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{marker}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=1\r\nTo: <sip:{t}>\r\nCall-ID: {marker}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            t = self.target
        );
        self.sock.send_to(options.as_bytes(), &self.target).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut before = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.contains(&marker) && text.starts_with("SIP/2.0 200") {
                    return before;
                }
                before.push(text);
            }
        }
        panic!("no answer to the marker OPTIONS; got {before:?}");
    }
}

fn request(
    local: &str,
    target: &str,
    method: &str,
    extra: &str,
    cl: Option<usize>,
    body: &str,
) -> String {
    let cl = cl.unwrap_or(body.len());
    format!(
        "{method} sip:bob@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKh{}\r\nMax-Forwards: 70\r\nFrom: <sip:evil@{local}>;tag=e1\r\nTo: <sip:bob@{target}>\r\nCall-ID: hostile-{}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: {cl}\r\n\r\n{body}",
        body.len(),
        extra.len()
    )
}

fn status_of(answers: &[String]) -> Vec<u16> {
    answers
        .iter()
        .filter_map(|a| a.get(8..11).and_then(|c| c.parse().ok()))
        .collect()
}

#[test]
fn malformed_input_is_answered_and_calls_continue() {
    let lab = Lab::start(10, Transport::Udp);
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "60"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "60", "-r", "20", "-d", "500", "-s", "15552001111"],
    );
    let mut probe = Probe::new("127.0.10.30:0", &lab.internal());
    let local = probe.local();
    let t = lab.internal();

    // Garbage: nothing can be answered.
    assert!(probe
        .answers_to(b"\x00\x01\x02 this is not SIP \xff\r\n\r\n")
        .is_empty());
    // A message cut in the middle of its headers: no complete head, silence.
    let full = request(&local, &t, "INVITE", "", None, "v=0\r\n");
    assert!(probe.answers_to(&full.as_bytes()[..60]).is_empty());
    // Content-Length larger than the body: 400.
    let long = request(
        &local,
        &t,
        "INVITE",
        "Content-Type: application/sdp\r\n",
        Some(9999),
        "v=0\r\n",
    );
    assert_eq!(status_of(&probe.answers_to(long.as_bytes())), vec![400]);
    // Content-Length that is not a number: 400.
    let neg = request(&local, &t, "OPTIONS", "", None, "")
        .replace("Content-Length: 0", "Content-Length: -5");
    assert_eq!(status_of(&probe.answers_to(neg.as_bytes())), vec![400]);
    // Missing Call-ID: 400, still routed back by the Via.
    let no_cid: String = request(&local, &t, "OPTIONS", "", None, "")
        .lines()
        .filter(|l| !l.starts_with("Call-ID"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let answers = probe.answers_to(no_cid.as_bytes());
    assert_eq!(status_of(&answers), vec![400]);
    assert!(answers[0].contains("Missing Call-ID"), "{answers:?}");
    // Another SIP version: 505.
    let v3 = request(&local, &t, "OPTIONS", "", None, "").replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
    assert_eq!(status_of(&probe.answers_to(v3.as_bytes())), vec![505]);
    // Valid folded headers are accepted: OPTIONS answered 200 like any other.
    let folded = request(
        &local,
        &t,
        "OPTIONS",
        "Subject: a subject\r\n  folded over\r\n\tthree lines\r\n",
        None,
        "",
    );
    assert_eq!(status_of(&probe.answers_to(folded.as_bytes())), vec![200]);
    // A response that matches nothing: dropped.
    let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKnothing\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert!(probe.answers_to(stray.as_bytes()).is_empty());
    // In-dialog request for a dialog that does not exist: 481.
    let bye = request(&local, &t, "BYE", "", None, "").replace(
        "To: <sip:bob@127.0.10.1:5060>",
        "To: <sip:bob@127.0.10.1:5060>;tag=nosuchdialog",
    );
    assert_eq!(status_of(&probe.answers_to(bye.as_bytes())), vec![481]);

    let uac_r = uac.wait(Duration::from_secs(60));
    let uas_r = uas.wait(Duration::from_secs(10));
    assert_eq!((uac_r.successful, uac_r.failed), (60, 0), "{uac_r:?}");
    assert_eq!((uas_r.successful, uas_r.failed), (60, 0), "{uas_r:?}");
}

#[test]
fn tcp_keepalive_pong_and_framing_error_closes() {
    use std::io::{Read, Write};
    let lab = Lab::start(11, Transport::Tcp);
    let mut s = std::net::TcpStream::connect(lab.internal()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // RFC 5626 keep-alive: a double CRLF ping gets a single CRLF pong.
    s.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
    // A request split across writes is reassembled and answered on the same connection.
    let local = s.local_addr().unwrap().to_string();
    let t = lab.internal();
    let opts = request(&local, &t, "OPTIONS", "", None, "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let (a, b) = opts.as_bytes().split_at(40);
    s.write_all(a).unwrap();
    s.flush().unwrap();
    s.write_all(b).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A negative Content-Length cannot be framed: 400, then the stream is closed.
    let bad = request(&local, &t, "OPTIONS", "", None, "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("Content-Length: 0", "Content-Length: -999")
        .replace("hostile-0", "hostile-bad");
    s.write_all(bad.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("SIP/2.0 400"), "{text}");

    // No Content-Length on a stream (RFC 3261 §18.3): 400 and the stream closed, the request
    // never acted on (an OPTIONS would otherwise get its 200).
    let mut s = std::net::TcpStream::connect(lab.internal()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = s.local_addr().unwrap().to_string();
    let bare = request(&local, &t, "OPTIONS", "", None, "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("Content-Length: 0\r\n", "")
        .replace("hostile-0", "hostile-bare");
    assert!(!bare.contains("Content-Length"), "{bare}");
    s.write_all(bare.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("SIP/2.0 400"), "{text}");
    assert!(!text.contains("SIP/2.0 200"), "{text}");
}

/// Start lines and headers with multi-byte UTF-8 where byte-indexed parsing would cut a
/// character: the datagram that once crashed Sluice, and its siblings.
fn multi_byte_cases(local: &str, target: &str) -> Vec<Vec<u8>> {
    let via = format!("Via: SIP/2.0/UDP {local};branch=z9hG4bKmb");
    let rest = format!(
        "Max-Forwards: 70\r\nFrom: <sip:a@{local}>;tag=mb\r\nTo: <sip:b@{target}>\r\nCall-ID: mb\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let mut cases: Vec<Vec<u8>> = vec![
        b"INVITE \xC3\xA9 sip:x SIP/2.0\r\n\r\n".to_vec(),
        "SIP/2.0é 200 OK\r\n\r\n".as_bytes().to_vec(),
        "SIP/2.0 2é0 OK\r\n\r\n".as_bytes().to_vec(),
        "ÉNVITE sip:x SIP/2.0\r\n\r\n".as_bytes().to_vec(),
        "INVITE sip:x SIP/2.0\r\nVé: x\r\n\r\n".as_bytes().to_vec(),
        "€€€€€€€€\r\n\r\n".as_bytes().to_vec(),
    ];
    for start in [
        "OPTIONS \u{e9} sip:x SIP/2.0",
        "OPTIONS sip:\u{e9}@x SIP/2.0",
        "OPTIONS sip:x SIP/2.\u{e9}",
    ] {
        cases.push(format!("{start}\r\n{via}\r\n{rest}").into_bytes());
    }
    // Headers whose values hold multi-byte characters at the places parsers cut.
    for header in [
        format!("Via: SIP/2.0/UDP {local};branch=z9hG4bKmb;é=é"),
        format!("Via: SIP/é.0/UDP {local};branch=z9hG4bKmb"),
        format!("Via: SIP/2.0/UDP [é]:5060;branch=z9hG4bKmb\r\n{via}"),
    ] {
        cases.push(format!("OPTIONS sip:x@{target} SIP/2.0\r\n{header}\r\n{rest}").into_bytes());
    }
    cases.push(
        format!(
            "OPTIONS sip:x@{target} SIP/2.0\r\n{via}\r\n{}",
            rest.replace("<sip:a@", "\"é\" <sip:é:é@")
        )
        .into_bytes(),
    );
    cases
}

#[test]
fn multi_byte_characters_do_not_crash_sluice_on_any_path() {
    use std::io::{Read, Write};
    let mut lab = Lab::start(12, Transport::Udp);
    for (side, target) in [lab.internal(), lab.external()].into_iter().enumerate() {
        let mut probe = Probe::new("127.0.12.30:0", &target);
        let local = probe.local();
        for (i, case) in multi_byte_cases(&local, &target).into_iter().enumerate() {
            // Fresh transaction identifiers per case and transport, so that no case is taken
            // for a retransmission of another.
            let case = String::from_utf8_lossy(&case)
                .replace("z9hG4bKmb", &format!("z9hG4bKmb{side}-{i}"))
                .replace("Call-ID: mb", &format!("Call-ID: mb{side}-{i}"))
                .into_bytes();
            let tcp_case = String::from_utf8_lossy(&case)
                .replace("z9hG4bKmb", &format!("z9hG4bKtcp{side}-{i}"))
                .replace("Call-ID: mb", &format!("Call-ID: tcp{side}-{i}"))
                .replace("UDP", "TCP")
                .into_bytes();
            // UDP: each is refused with 400 when it carries a usable Via (or, where UTF-8 is
            // allowed, answered like any OPTIONS), else dropped; either way the marker OPTIONS
            // that follows is answered, so Sluice lives.
            let answers = probe.answers_to(&case);
            assert!(
                status_of(&answers)
                    .iter()
                    .all(|&s| s == 400 || s == 505 || s == 200),
                "{}: {answers:?}",
                String::from_utf8_lossy(&case)
            );
            // TCP: the same bytes on a stream, then the connection is read until it closes or
            // goes quiet.
            let mut s = std::net::TcpStream::connect(&target).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            s.write_all(&tcp_case).unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.is_empty()
                    || ["SIP/2.0 400", "SIP/2.0 505", "SIP/2.0 200"]
                        .iter()
                        .any(|s| text.starts_with(s)),
                "{text}"
            );
        }
        assert!(lab.sluice_alive(), "sluice died; log:\n{}", lab.log());
    }
    // The crash datagram with a Via gets its 400 with the reason.
    let mut probe = Probe::new("127.0.12.31:0", &lab.internal());
    let local = probe.local();
    let answers = probe.answers_to(
        format!(
            "INVITE \u{e9} sip:x SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKcrash\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: crash\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&answers), vec![400], "{answers:?}");
    assert!(answers[0].contains("malformed request line"), "{answers:?}");
    // And calls still complete.
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "3"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "3", "-r", "10"],
    );
    let r = uac.wait(Duration::from_secs(30));
    assert_eq!((r.successful, r.failed), (3, 0), "{r:?}");
    assert_eq!(uas.wait(Duration::from_secs(10)).successful, 3);
    assert!(lab.sluice_alive(), "{}", lab.log());
}

#[test]
fn a_panic_is_logged_with_its_input_and_exits_non_zero() {
    if !cfg!(debug_assertions) {
        // The test trigger exists in debug builds only.
        return;
    }
    let addrs = LabAddrs::v4(13);
    let text = Lab::config_for(&addrs, Transport::Udp);
    let mut lab = Lab::start_with_env(addrs, Transport::Udp, &text, &[("SLUICE_PANIC_TEST", "1")]);
    let sock = UdpSocket::bind("127.0.13.30:0").unwrap();
    sock.send_to(b"SLUICE-PANIC-TEST +15551234 \xC3\xA9\r\n", lab.internal())
        .unwrap();
    let status = lab
        .wait_exit(Duration::from_secs(10))
        .expect("sluice exits after a panic");
    assert_eq!(status.code(), Some(70), "{}", lab.log());
    let log = lab.log();
    assert!(
        log.contains("panic requested by the test datagram"),
        "{log}"
    );
    // The input is in the log, redacted: digits masked, the multi-byte character escaped.
    assert!(
        log.contains("SLUICE-PANIC-TEST +######## \\\\xC3\\\\xA9"),
        "{log}"
    );
    assert!(!log.contains("5551234"), "{log}");
}

/// Toll fraud: an INVITE on the PBX side from an address that is not the PBX gets 403 and
/// never reaches the trunk; the PBX itself still calls out.
#[test]
fn a_stranger_on_the_pbx_side_cannot_call_out() {
    assert!(
        sluice_e2e::sipp_available(),
        "sipp (package sip-tester) is required"
    );
    let lab = Lab::start(72, Transport::Udp);
    let stranger = lab.sipp_on(
        "stranger",
        "uac_403.xml",
        ("127.0.72.99".to_string(), 5060),
        Some(&lab.internal()),
        &["-m", "1"],
    );
    let s = stranger.wait(Duration::from_secs(10));
    assert_eq!(
        s.successful,
        1,
        "the stranger got 403: {s:?}\n{}",
        lab.log()
    );
    assert!(lab.log().contains("not the PBX"), "{}", lab.log());
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "1"]);
    let pbx = lab.sipp(
        "pbx",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1"],
    );
    assert_eq!(pbx.wait(Duration::from_secs(20)).successful, 1);
    let t = uas.wait(Duration::from_secs(10));
    assert_eq!(
        t.successful, 1,
        "only the PBX's call reached the trunk: {t:?}"
    );
}

/// A TCP peer that sends requests and never reads the answers: its connection is closed once
/// its write queue is full, and Sluice's memory does not grow with what it sends.
#[test]
fn a_tcp_peer_that_never_reads_is_cut_off_with_memory_bounded() {
    use std::io::Write;
    // The write queue is what is under test: the flood guard, which would ban this source long
    // before its queue fills, is off.
    let a = LabAddrs::v4(73);
    let text = Lab::config_for(&a, Transport::Tcp) + "\n[guard]\nenabled = false\n";
    let lab = Lab::start_with_text(a, Transport::Tcp, &text);
    let before = lab.rss_kib().expect("rss");
    let mut s = std::net::TcpStream::connect(lab.internal()).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let local = s.local_addr().unwrap().to_string();
    let t = lab.internal();
    let started = Instant::now();
    let mut sent = 0u32;
    let mut closed = false;
    // Up to 150,000 OPTIONS, bounded in time too.
    while sent < 150_000 && started.elapsed() < Duration::from_secs(60) {
        let opts = request(&local, &t, "OPTIONS", "", None, "")
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .replace("hostile-0", &format!("noread-{sent}"));
        if s.write_all(opts.as_bytes()).is_err() {
            closed = true;
            break;
        }
        sent += 1;
    }
    let after = lab.rss_kib().expect("rss");
    eprintln!(
        "closed after {sent} requests; resident memory {before} KiB before, {after} KiB after"
    );
    assert!(
        closed,
        "the connection was closed after {sent} requests\n{}",
        lab.log()
    );
    assert!(lab.log().contains("does not read"), "{}", lab.log());
    assert!(
        after.saturating_sub(before) < 30 * 1024,
        "memory bounded: {before} KiB before, {after} KiB after {sent} requests"
    );
}

/// Accepted TCP connections are limited per source address, and one that sends no complete
/// message in time is closed; the places come back when connections end.
#[test]
fn tcp_connections_are_limited_per_source_and_silent_ones_closed() {
    use std::io::{Read, Write};
    let a = LabAddrs::v4(74);
    let text = Lab::config_for(&a, Transport::Tcp).replace(
        "t1_ms = 500",
        "t1_ms = 500\nmax_connections_per_source = 3\ntcp_first_message_seconds = 1",
    );
    let lab = Lab::start_with_text(a, Transport::Tcp, &text);
    let open = || {
        let s = std::net::TcpStream::connect(lab.internal()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let closed = |s: &mut std::net::TcpStream| {
        let mut b = [0u8; 1];
        matches!(s.read(&mut b), Ok(0) | Err(_))
    };
    let held: Vec<_> = (0..3).map(|_| open()).collect();
    // The fourth from the same address is closed at once.
    let mut fourth = open();
    let started = Instant::now();
    assert!(closed(&mut fourth), "over the per-source limit");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The three held say nothing: each is closed after the first-message time.
    for mut s in held {
        assert!(closed(&mut s), "silent connection closed");
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    // Their places are free again: a connection that speaks is served.
    let mut s = open();
    let local = s.local_addr().unwrap().to_string();
    let opts = request(&local, &lab.internal(), "OPTIONS", "", None, "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.write_all(opts.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

/// A flood of 5,000 INVITEs from a stranger: it is banned within the configured limit (its
/// first requests get their stateless 403, the rest nothing), `/bans` lists it and the metrics
/// count it, while the PBX's and a trunk's calls complete at the same time; lifting the ban
/// through the admin API lets it be answered again.
#[test]
fn a_flood_is_banned_within_the_limit_while_the_pbx_and_trunk_calls_complete() {
    use sluice_e2e::{http, metric, parse_prometheus};
    assert!(
        sluice_e2e::sipp_available(),
        "sipp (package sip-tester) is required"
    );
    const LIMIT: usize = 20;
    let a = LabAddrs::v4(76);
    let text = Lab::config_for(&a, Transport::Udp)
        + &format!("\n[guard]\nmax_requests = {LIMIT}\nwindow_seconds = 10\nban_seconds = 600\n");
    let lab = Lab::start_with_text(a, Transport::Udp, &text);
    let calls = ["-m", "100", "-r", "50", "-timeout", "60s"];
    // Outbound (PBX -> trunk) and inbound (trunk -> PBX) calls during the flood; callers use a
    // second port of the PBX's and the trunk's addresses.
    let trunk_uas = lab.sipp("trunk-uas", "uas.xml", Peer::Trunk, None, &calls[..2]);
    let pbx_uas = lab.sipp("pbx-uas", "uas.xml", Peer::Pbx, None, &calls[..2]);
    let pbx_uac = lab.sipp_on(
        "pbx-uac",
        "uac.xml",
        (lab.pbx_ip(), 5070),
        Some(&lab.internal()),
        &calls,
    );
    let trunk_uac = lab.sipp_on(
        "trunk-uac",
        "uac.xml",
        (lab.trunk_ip(), 5070),
        Some(&lab.external()),
        &calls,
    );

    let flooder = UdpSocket::bind("127.0.76.99:5060").unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let target = lab.internal();
    let local = flooder.local_addr().unwrap().to_string();
    let started = Instant::now();
    let mut sent = 0;
    while sent < 5_000 && started.elapsed() < Duration::from_secs(20) {
        let invite = request(&local, &target, "INVITE", "", None, "")
            .replace("hostile-0", &format!("flood-{sent}"))
            .replace("bKh0", &format!("bKflood{sent}"));
        flooder.send_to(invite.as_bytes(), &target).unwrap();
        sent += 1;
    }
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok((n, _)) = flooder.recv_from(&mut buf) {
        answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let statuses = status_of(&answers);
    eprintln!("{sent} INVITEs sent, {} answered", statuses.len());
    assert!(
        !statuses.is_empty() && statuses.len() <= LIMIT && statuses.iter().all(|&s| s == 403),
        "at most {LIMIT} stateless 403s, then silence: {statuses:?}"
    );

    for (name, s) in [("pbx-uac", pbx_uac), ("trunk-uac", trunk_uac)] {
        let r = s.wait(Duration::from_secs(60));
        assert_eq!(
            (r.successful, r.failed),
            (100, 0),
            "{name}'s calls all completed during the flood: {r:?}\n{}",
            lab.log()
        );
    }
    for s in [trunk_uas, pbx_uas] {
        assert_eq!(s.wait(Duration::from_secs(20)).successful, 100);
    }

    let (status, body) = http("GET", &lab.admin(), "/bans", None, "");
    assert_eq!(status, 200, "{body}");
    let bans: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(bans.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(bans[0]["source"], "127.0.76.99");
    assert_eq!(bans[0]["reason"], "flood");
    let dropped = bans[0]["dropped_packets"].as_u64().unwrap();
    assert!(dropped >= (sent - LIMIT) as u64, "{body}");
    let log = lab.log();
    assert_eq!(
        log.matches("banned, its packets are dropped unread")
            .count(),
        1,
        "one log line per ban, not per packet:\n{log}"
    );
    assert!(
        log.matches("not the PBX").count() <= 2,
        "warnings about strangers at most once a second:\n{log}"
    );

    let (_, text) = http("GET", &lab.admin(), "/metrics", None, "");
    let m = parse_prometheus(&text);
    assert_eq!(
        metric(&m, "sluice_guard_bans_total", &[("reason", "flood")]),
        Some(1.0)
    );
    assert_eq!(metric(&m, "sluice_guard_banned_sources", &[]), Some(1.0));
    assert!(metric(&m, "sluice_guard_dropped_packets_total", &[]).unwrap() >= dropped as f64);

    // Lifted by the operator: the stranger is heard (and refused) again.
    let (status, body) = http("DELETE", &lab.admin(), "/bans?source=127.0.76.99", None, "");
    assert_eq!((status, body.trim()), (200, r#"{"lifted":1}"#));
    let (status, _) = http(
        "DELETE",
        &lab.admin(),
        "/bans?source=not-an-address",
        None,
        "",
    );
    assert_eq!(status, 400);
    let invite = request(&local, &target, "INVITE", "", None, "")
        .replace("hostile-0", "after-lift")
        .replace("bKh0", "bKafterlift");
    flooder.send_to(invite.as_bytes(), &target).unwrap();
    let (n, _) = flooder
        .recv_from(&mut buf)
        .expect("answered after the lift");
    assert!(buf[..n].starts_with(b"SIP/2.0 403"));
}

/// Oversized requests from the PBX: a 60 KB header is refused with 513 and never reaches the
/// trunk; an INVITE over 1,300 bytes goes to a trunk configured to take TCP over TCP
/// (RFC 3261 §18.1.1), and the call completes there.
#[test]
fn oversized_requests_get_513_or_move_to_tcp() {
    assert!(
        sluice_e2e::sipp_available(),
        "sipp (package sip-tester) is required"
    );
    let a = LabAddrs::v4(77);
    let text = Lab::config_for(&a, Transport::Udp).replace(
        "name = \"loop\"",
        "name = \"loop\"\ntcp_for_large_requests = true",
    );
    let lab = Lab::start_with_text(a, Transport::Udp, &text);
    // The trunk listens on TCP only: an INVITE that came over UDP would get nowhere.
    let uas = lab.sipp(
        "uas",
        "uas.xml",
        Peer::Trunk,
        None,
        &["-m", "1", "-t", "t1"],
    );
    let subject = "s".repeat(2000);
    let pbx = lab.sipp(
        "pbx",
        "uac_subject.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1", "-set", "subject", &subject],
    );
    let r = pbx.wait(Duration::from_secs(30));
    assert_eq!(r.successful, 1, "{r:?}\n{}", lab.log());
    let log = uas.messages_path().to_path_buf();
    assert_eq!(uas.wait(Duration::from_secs(10)).successful, 1);
    let received =
        sluice_e2e::parse_message_log(&std::fs::read_to_string(log).unwrap(), "received");
    let invite = received
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("the trunk got the INVITE");
    assert!(invite.contains("Via: SIP/2.0/TCP "), "{invite}");
    assert!(invite.contains(&subject), "the Subject crossed: {invite}");

    // A 60 KB header: 513, statelessly, and nothing for the trunk.
    let probe = UdpSocket::bind(format!("{}:5071", lab.pbx_ip())).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let local = probe.local_addr().unwrap().to_string();
    let giant = request(
        &local,
        &lab.internal(),
        "INVITE",
        &format!("Subject: {}\r\n", "g".repeat(60_000)),
        None,
        "",
    );
    probe.send_to(giant.as_bytes(), lab.internal()).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = probe.recv_from(&mut buf).expect("an answer");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 513"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        !lab.log().contains("ggggggggggggggggggggggg"),
        "not logged either"
    );
}
