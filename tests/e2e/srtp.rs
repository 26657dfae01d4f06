//! SRTP toward a trunk, end to end, against an SRTP implementation that is not Sluice's: SIPp
//! plays the PBX (plain RTP) and the trunk (which requires `RTP/SAVP`), and the media of both
//! is this test's own sockets. The trunk's side of the media is protected and checked by
//! libsrtp2 (Cisco's reference implementation, through Python's `pylibsrtp`), while Sluice
//! uses the `webrtc-srtp` crate. What is shown, for AES_CM_128_HMAC_SHA1_80 and
//! AEAD_AES_128_GCM: RTP from the PBX reaches the trunk encrypted with the key Sluice offered
//! and decrypts intact; SRTP from the trunk reaches the PBX decrypted and intact; SRTCP both
//! ways; a packet with a bad tag and a replayed packet are dropped and counted; the PBX never
//! sees a key and the trunk never the PBX's address.
#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use sluice_e2e::{
    http, parse_message_log, peer_program, sipp_available, Lab, LabAddrs, Peer, Sipp, Transport,
};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const SSRC: u32 = 0x0D0E_C0DE;

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend((0..160).map(|i| (usize::from(seq).wrapping_mul(37).wrapping_add(i) % 253) as u8));
    p
}

fn seq_of(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

/// A receiver report of SSRC `ssrc` with no report blocks.
fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// libsrtp2 behind a pipe (tests/peers/srtp_oracle.py).
struct Oracle {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Oracle {
    fn start() -> Oracle {
        let ok = Command::new("python3")
            .args(["-c", "import pylibsrtp"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "python3 with pylibsrtp (pip install pylibsrtp) is required for the SRTP tests"
        );
        let mut child = Command::new("python3")
            .arg(peer_program("srtp_oracle.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the SRTP oracle");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Oracle {
            child,
            input,
            output,
        }
    }

    fn ask(&mut self, request: &str) -> String {
        writeln!(self.input, "{request}").unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    fn session(&mut self, name: &str, suite: &str, key: &str, way: &str) {
        let r = self.ask(&format!("session {name} {suite} {key} {way}"));
        assert_eq!(r, "ok", "libsrtp refused the {name} key");
    }

    fn run(&mut self, op: &str, name: &str, kind: &str, packet: &[u8]) -> Result<Vec<u8>, String> {
        let r = self.ask(&format!("{op} {name} {kind} {}", hex(packet)));
        if r.starts_with("ERR") {
            return Err(r);
        }
        Ok(unhex(&r))
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn receive(sock: &UdpSocket, want: usize, limit: Duration) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < want && Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
    }
    got
}

/// The call's first stream in `/calls` once SRTP is agreed: Sluice's ports toward the caller
/// and the callee, the suite, and the SRTP failures counted at the callee's end.
fn srtp_stream(lab: &Lab) -> Option<(u16, u16, String, u64)> {
    let (status, body) = http("GET", &lab.admin(), "/calls", None, "");
    assert_eq!(status, 200, "{body}");
    let v: sluice_e2e::serde_json::Value = sluice_e2e::serde_json::from_str(&body).expect("JSON");
    let s = v.get(0)?.get("media")?.get(0)?;
    Some((
        s["caller"]["port"].as_u64()? as u16,
        s["callee"]["port"].as_u64()? as u16,
        s["srtp"].as_str()?.to_string(),
        s["callee"]["srtp_auth_failures"].as_u64()?,
    ))
}

fn metric(lab: &Lab, name_and_labels: &str) -> Option<f64> {
    let (_, body) = http("GET", &lab.admin(), "/metrics", None, "");
    body.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The trunk's own master key and salt: 30 bytes for AES-CM, 28 for AEAD (base64).
fn trunk_key(suite: &str) -> &'static str {
    if suite.starts_with("AEAD") {
        "KSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9AQUJDRA=="
    } else {
        "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e"
    }
}

/// The test's media sockets for the PBX and the trunk, Sluice's RTP addresses toward each,
/// and libsrtp holding the trunk's keys.
struct Ends {
    pbx_rtp: UdpSocket,
    pbx_rtcp: UdpSocket,
    trunk_rtp: UdpSocket,
    trunk_rtcp: UdpSocket,
    /// Sluice's RTP address toward the PBX and toward the trunk.
    sluice_internal: SocketAddr,
    sluice_external: SocketAddr,
    oracle: Oracle,
}

fn next_port(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port() + 1)
}

/// RTP from the PBX reaches the trunk as SRTP that libsrtp opens intact.
fn pbx_to_trunk(e: &mut Ends, lab: &Lab, suite: &str) {
    for seq in 0..50u16 {
        e.pbx_rtp
            .send_to(&rtp_packet(seq), e.sluice_internal)
            .unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let at_trunk = receive(&e.trunk_rtp, 50, Duration::from_secs(3));
    assert_eq!(at_trunk.len(), 50, "SRTP at the trunk; log:\n{}", lab.log());
    let tag_len = if suite.ends_with("_32") {
        4
    } else if suite.starts_with("AEAD") {
        16
    } else {
        10
    };
    for p in &at_trunk {
        let seq = seq_of(p);
        let plain = rtp_packet(seq);
        assert_eq!(
            p.len(),
            plain.len() + tag_len,
            "seq {seq}: the tag of {suite}"
        );
        assert_ne!(
            p[12..plain.len()],
            plain[12..],
            "seq {seq} left unencrypted"
        );
        let opened = e
            .oracle
            .run("unprotect", "from_sluice", "rtp", p)
            .unwrap_or_else(|err| panic!("libsrtp refused seq {seq}: {err}"));
        assert_eq!(opened, plain, "seq {seq} changed on the way");
    }
}

/// SRTP from the trunk reaches the PBX decrypted and intact; the last packet sent.
fn trunk_to_pbx(e: &mut Ends, lab: &Lab) -> Vec<u8> {
    let mut last_sealed = Vec::new();
    for seq in 1000..1050u16 {
        let sealed = e
            .oracle
            .run("protect", "to_sluice", "rtp", &rtp_packet(seq))
            .unwrap();
        e.trunk_rtp.send_to(&sealed, e.sluice_external).unwrap();
        last_sealed = sealed;
        std::thread::sleep(Duration::from_millis(1));
    }
    let at_pbx = receive(&e.pbx_rtp, 50, Duration::from_secs(3));
    assert_eq!(at_pbx.len(), 50, "RTP at the PBX; log:\n{}", lab.log());
    for p in &at_pbx {
        assert_eq!(p, &rtp_packet(seq_of(p)), "seq {} changed", seq_of(p));
    }
    last_sealed
}

/// A bad tag and a replay (of `sent`) are dropped; the next good packet passes.
fn forged_and_replayed(e: &mut Ends, sent: &[u8]) {
    let mut forged = e
        .oracle
        .run("protect", "to_sluice", "rtp", &rtp_packet(2000))
        .unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    e.trunk_rtp.send_to(&forged, e.sluice_external).unwrap();
    e.trunk_rtp.send_to(sent, e.sluice_external).unwrap();
    let marker = e
        .oracle
        .run("protect", "to_sluice", "rtp", &rtp_packet(2001))
        .unwrap();
    e.trunk_rtp.send_to(&marker, e.sluice_external).unwrap();
    let after = receive(&e.pbx_rtp, 1, Duration::from_secs(2));
    assert_eq!(after.len(), 1);
    assert_eq!(seq_of(&after[0]), 2001, "only the good packet crossed");
    assert!(
        receive(&e.pbx_rtp, 1, Duration::from_millis(200)).is_empty(),
        "nothing else crossed"
    );
}

/// SRTCP from the trunk arrives decrypted at the PBX; RTCP from the PBX arrives as SRTCP
/// that libsrtp opens.
fn srtcp_both_ways(e: &mut Ends) {
    let sr = e
        .oracle
        .run("protect", "to_sluice", "rtcp", &rtcp_rr(0x7777))
        .unwrap();
    e.trunk_rtcp
        .send_to(&sr, next_port(e.sluice_external))
        .unwrap();
    let rtcp_at_pbx = receive(&e.pbx_rtcp, 1, Duration::from_secs(2));
    assert_eq!(
        rtcp_at_pbx,
        [rtcp_rr(0x7777)],
        "SRTCP decrypted for the PBX"
    );
    e.pbx_rtcp
        .send_to(&rtcp_rr(SSRC), next_port(e.sluice_internal))
        .unwrap();
    let rtcp_at_trunk = receive(&e.trunk_rtcp, 1, Duration::from_secs(2));
    assert_eq!(rtcp_at_trunk.len(), 1);
    let opened = e
        .oracle
        .run("unprotect", "from_sluice", "rtcp", &rtcp_at_trunk[0])
        .unwrap_or_else(|err| panic!("libsrtp refused Sluice's SRTCP: {err}"));
    assert_eq!(opened, rtcp_rr(SSRC));
}

/// The call's stream once SRTP is agreed (bounded wait): Sluice's ports toward the PBX and
/// the trunk, and the suite.
fn wait_for_srtp(lab: &Lab) -> (u16, u16, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((caller, callee, suite, _)) = srtp_stream(lab) {
            return (caller, callee, suite);
        }
        assert!(
            Instant::now() < deadline,
            "no SRTP call in /calls; log:\n{}",
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The key Sluice offered the trunk for `suite` under `tag`, from the INVITE it received.
fn offered_key(uas_messages: &std::path::Path, tag: u32, suite: &str) -> String {
    let invite = parse_message_log(
        &std::fs::read_to_string(uas_messages).unwrap_or_default(),
        "received",
    )
    .into_iter()
    .find(|m| m.starts_with("INVITE"))
    .expect("the trunk's INVITE");
    let prefix = format!("a=crypto:{tag} {suite} inline:");
    invite
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix} in the offer:\n{invite}"))
        .to_string()
}

/// SIPp as the trunk (SRTP with `suite`, its crypto line tagged `tag`) and as the PBX (plain
/// RTP), one call placed.
fn srtp_peers(lab: &Lab, tag: u32, suite: &str) -> (Sipp, Sipp) {
    let tag_s = tag.to_string();
    let uas_keys = [
        "-key",
        "rtp_port",
        "17100",
        "-key",
        "trunk_key",
        trunk_key(suite),
        "-key",
        "tag",
        &tag_s,
        "-key",
        "suite",
        suite,
        "-m",
        "1",
    ];
    let uas = lab.sipp("uas", "uas_srtp.xml", Peer::Trunk, None, &uas_keys);
    let uac = lab.sipp(
        "uac",
        "uac_srtp.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-key", "pbx_rtp_port", "16100", "-d", "6000", "-m", "1"],
    );
    (uac, uas)
}

/// What each side received: the PBX no key and no trunk address, the trunk no PBX address.
fn assert_keys_and_topology_hidden(
    a: &LabAddrs,
    uac_log: &std::path::Path,
    uas_log: &std::path::Path,
) {
    let received = |p: &std::path::Path| {
        parse_message_log(&std::fs::read_to_string(p).unwrap_or_default(), "received")
    };
    for m in received(uac_log) {
        assert!(!m.contains("a=crypto"), "the PBX saw a key:\n{m}");
        assert!(!m.contains(&a.trunk_ip), "the PBX saw the trunk:\n{m}");
    }
    for m in received(uas_log) {
        assert!(!m.contains(&a.pbx_ip), "the trunk saw the PBX:\n{m}");
    }
}

fn srtp_call(block: u8, tag: u32, suite: &str) {
    if !sipp_available() {
        panic!("sipp (package sip-tester) is required for the end-to-end tests");
    }
    let oracle = Oracle::start();
    let a = LabAddrs::v4(block);
    let config = Lab::config_for(&a, Transport::Udp)
        .replace("max_calls = 10000\n", "max_calls = 10000\n\n[media]\n")
        .replace("\n[routing]", "srtp = \"required\"\n\n[routing]");
    let lab = Lab::start_with_text(a.clone(), Transport::Udp, &config);
    let bind = |ip: &str, port: u16| UdpSocket::bind(format!("{ip}:{port}")).unwrap();
    let (pbx_rtp, pbx_rtcp) = (bind(&a.pbx_ip, 16100), bind(&a.pbx_ip, 16101));
    let (trunk_rtp, trunk_rtcp) = (bind(&a.trunk_ip, 17100), bind(&a.trunk_ip, 17101));
    let (uac, uas) = srtp_peers(&lab, tag, suite);

    let (caller_port, callee_port, agreed) = wait_for_srtp(&lab);
    assert_eq!(agreed, suite);
    let (_, trunks) = http("GET", &lab.admin(), "/trunks", None, "");
    assert!(trunks.contains("\"srtp\":\"required\""), "{trunks}");
    let sluice_key = offered_key(uas.messages_path(), tag, suite);
    let sluice_ip: std::net::IpAddr = a.sluice_ip.parse().unwrap();
    let mut ends = Ends {
        pbx_rtp,
        pbx_rtcp,
        trunk_rtp,
        trunk_rtcp,
        sluice_internal: SocketAddr::new(sluice_ip, caller_port),
        sluice_external: SocketAddr::new(sluice_ip, callee_port),
        oracle,
    };
    ends.oracle.session("from_sluice", suite, &sluice_key, "in");
    ends.oracle
        .session("to_sluice", suite, trunk_key(suite), "out");

    pbx_to_trunk(&mut ends, &lab, suite);
    let last_sealed = trunk_to_pbx(&mut ends, &lab);
    forged_and_replayed(&mut ends, &last_sealed);
    srtcp_both_ways(&mut ends);
    let (_, _, _, failures) = srtp_stream(&lab).expect("the call is still up");
    assert_eq!(failures, 2, "the bad tag and the replay are counted");

    let (uac_log, uas_log) = lab.one_call_completed(uac, uas);
    assert_keys_and_topology_hidden(&a, &uac_log, &uas_log);
    let counted = metric(
        &lab,
        "sluice_srtp_auth_failures_total{trunk=\"loop\",side=\"external\"}",
    );
    assert_eq!(counted, Some(2.0), "counted when the call ended");
    assert!(
        !lab.log().contains(&sluice_key) && !lab.log().contains(trunk_key(suite)),
        "a key was logged"
    );
}

#[test]
fn srtp_aes_cm_80_toward_the_trunk_against_libsrtp() {
    srtp_call(90, 1, "AES_CM_128_HMAC_SHA1_80");
}

#[test]
fn srtp_aead_aes_128_gcm_toward_the_trunk_against_libsrtp() {
    srtp_call(91, 3, "AEAD_AES_128_GCM");
}
