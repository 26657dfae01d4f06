//! Media anchoring end to end: SIPp as the PBX plays RTP (`play_pcap_audio`) through Sluice to
//! a trunk whose media is this test's own UDP socket. What is shown: the payload arrives byte
//! for byte; neither side's SIP messages or SDP carry the other side's addresses; Sluice latches
//! onto the port the trunk really sends from; a stranger's packets to the call's ports are not
//! relayed; a re-INVITE to hold and back keeps the media flowing; silence ends a call with BYE
//! on both legs.
#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use sluice_e2e::{http, parse_message_log, sipp_available, Lab, LabAddrs, Peer, Transport};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The RTP the PBX plays: 20 ms PCMA packets, payload bytes a function of the sequence number.
const SSRC: u32 = 0x5149_C3A1;
const PACKETS: u16 = 400;

fn payload_byte(seq: u16, i: usize) -> u8 {
    (usize::from(seq).wrapping_mul(31).wrapping_add(i) % 251) as u8
}

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend((0..160).map(|i| payload_byte(seq, i)));
    p
}

/// A pcap file (Ethernet, IPv4, UDP) of the packets above, 20 ms apart, for SIPp to play.
fn write_pcap(path: &std::path::Path) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65_535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    for seq in 0..PACKETS {
        let rtp = rtp_packet(seq);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[0x45, 0]);
        frame.extend_from_slice(&(ip_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        frame.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6002u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&rtp);
        let usec = u32::from(seq) * 20_000;
        f.extend_from_slice(&(usec / 1_000_000).to_le_bytes());
        f.extend_from_slice(&(usec % 1_000_000).to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&frame);
    }
    std::fs::write(path, f).expect("write pcap");
}

fn media_config(block: u8, extra: &str) -> String {
    Lab::config_for(&LabAddrs::v4(block), Transport::Udp).replace(
        "max_calls = 10000\n",
        &format!("max_calls = 10000\n\n[media]\n{extra}\n"),
    )
}

/// The test's sockets: what arrives, by the port it arrived on.
struct Arrivals {
    packets: Vec<(u16, Instant, std::net::SocketAddr, Vec<u8>)>,
}

fn receive(socks: &[&UdpSocket], until: Instant, into: &mut Arrivals) {
    let mut buf = [0u8; 2048];
    while Instant::now() < until {
        let mut got = false;
        for s in socks {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let port = s.local_addr().unwrap().port();
                into.packets
                    .push((port, Instant::now(), from, buf[..n].to_vec()));
                got = true;
            }
        }
        if !got {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn seq_of(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

fn ssrc_of(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[8], p[9], p[10], p[11]])
}

/// The first call's media in `/calls`: Sluice's port toward the caller and the callee, and
/// the caller end's dropped count.
fn call_media(lab: &Lab) -> Option<(u16, u16, u64)> {
    let (status, body) = http("GET", &lab.admin(), "/calls", None, "");
    assert_eq!(status, 200, "{body}");
    let v: sluice_e2e::serde_json::Value = sluice_e2e::serde_json::from_str(&body).expect("JSON");
    let s = v.get(0)?.get("media")?.get(0)?;
    let port = |end: &str| s[end]["port"].as_u64().map(|p| p as u16);
    Some((
        port("caller")?,
        port("callee")?,
        s["caller"]["dropped"].as_u64()?,
    ))
}

#[test]
fn rtp_crosses_sluice_unchanged_with_latching_strangers_refused_and_hold() {
    let (lab, _) = anchored_call(40, "");
    let samples = sluice_e2e::parse_prometheus(&http("GET", &lab.admin(), "/metrics", None, "").1);
    assert_eq!(
        sluice_e2e::metric(&samples, "sluice_media_kernel_packets_total", &[]).unwrap_or(0.0),
        0.0,
        "no kernel fast path unless configured"
    );
}

/// The same call with the kernel fast path: the same behaviour as seen from outside (payload,
/// latching, strangers, hold), and the kernel relayed most of it, counted as the relay would.
#[test]
fn the_kernel_fast_path_relays_the_same_call_the_same_way() {
    assert!(
        sluice_media_kernel::privileged(),
        "the kernel fast path's test needs CAP_BPF and CAP_NET_ADMIN (run the tests as root)"
    );
    let (lab, at_trunk) = anchored_call(46, "kernel_forwarding = true");
    assert!(
        lab.log().contains("media kernel fast path attached"),
        "{}",
        lab.log()
    );
    let samples = sluice_e2e::parse_prometheus(&http("GET", &lab.admin(), "/metrics", None, "").1);
    let kernel =
        sluice_e2e::metric(&samples, "sluice_media_kernel_packets_total", &[]).unwrap_or(0.0);
    let from_pbx = sluice_e2e::metric(
        &samples,
        "sluice_media_packets_total",
        &[("trunk", "loop"), ("side", "internal")],
    )
    .unwrap_or(0.0);
    eprintln!("kernel relayed {kernel}, counted from the PBX {from_pbx}, arrived {at_trunk}");
    assert!(
        kernel >= 200.0,
        "the kernel relayed most of the {at_trunk} packets that reached the trunk: {kernel}"
    );
    // Counted at the call's end: what the kernel relayed in the last half second may be
    // taken in after that.
    assert!(
        from_pbx <= f64::from(PACKETS),
        "nothing counted twice: {from_pbx} counted, the PBX sent {PACKETS}"
    );
    assert_eq!(
        sluice_e2e::metric(
            &samples,
            "sluice_media_lost_packets_total",
            &[("trunk", "loop"), ("side", "internal")],
        ),
        Some(0.0),
        "no loss on loopback, with the kernel's statistics handed back and forth"
    );
    assert!(
        from_pbx >= at_trunk as f64 - 30.0,
        "the PBX's packets are counted, kernel-relayed ones included: {from_pbx} counted, {at_trunk} arrived"
    );
    assert_eq!(
        sluice_e2e::metric(&samples, "sluice_media_kernel_directions", &[]),
        Some(0.0),
        "the call's directions left the kernel with it"
    );
}

/// The PBX (SIPp) calls the trunk and plays 400 RTP packets; the trunk's media is this test's
/// sockets. Checks everything the test's name says; returns the lab (for its metrics) and how
/// many packets reached the trunk.
fn anchored_call(block: u8, media: &str) -> (Lab, usize) {
    if !sipp_available() {
        panic!("sipp (package sip-tester) is required for the end-to-end tests");
    }
    let a = LabAddrs::v4(block);
    let lab = Lab::start_with_text(a.clone(), Transport::Udp, &media_config(block, media));
    write_pcap(&lab.dir.path().join("media.pcap"));
    // The trunk's media: it signals port 17000, and later sends from 17002 (as behind NAT).
    let signalled = UdpSocket::bind(format!("{}:17000", a.trunk_ip)).unwrap();
    let natted = UdpSocket::bind(format!("{}:17002", a.trunk_ip)).unwrap();
    let stranger = UdpSocket::bind(format!("127.0.{block}.99:0")).unwrap();
    for s in [&signalled, &natted] {
        s.set_nonblocking(true).unwrap();
    }
    let uas = lab.sipp(
        "uas",
        "uas_media.xml",
        Peer::Trunk,
        None,
        &["-key", "rtp_port", "17000", "-m", "1"],
    );
    let started = Instant::now();
    let uac = lab.sipp(
        "uac",
        "uac_media.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1", "-mp", "16000"],
    );

    // 1. The PBX's RTP reaches the trunk's signalled port, from Sluice's external side.
    let got = first_packets(&lab, &a, &signalled);
    let sluice_external = got.packets[0].2;

    // 2. A stranger sends to both of the call's ports: nothing of it is relayed.
    strangers_send(&lab, &a, &stranger, sluice_external);

    // 3. The trunk answers from another port: Sluice latches onto it.
    let after = trunk_sends_from(&natted, &signalled, sluice_external);
    let (_, _, dropped) = call_media(&lab).unwrap();
    assert!(
        dropped >= 10,
        "the stranger's packets are counted as dropped: {dropped}"
    );

    // 4. Hold at 3 s and back at 4 s (SIPp's re-INVITEs); RTP still flows after.
    let rest = after_hold(&[&signalled, &natted], started);
    check_payloads(&[&got, &after, &rest]);

    let (uac_log, uas_log) = lab.one_call_completed(uac, uas);
    check_topology(&a, &uac_log, &uas_log);
    let log = lab.log();
    assert!(log.contains("media of the call"), "{log}");
    let arrived = got.packets.len() + after.packets.len() + rest.packets.len();
    (lab, arrived)
}

/// The first 40 packets of the PBX's RTP at the trunk's signalled port: unchanged, and sent
/// from Sluice's external address.
fn first_packets(lab: &Lab, a: &LabAddrs, signalled: &UdpSocket) -> Arrivals {
    let mut got = Arrivals {
        packets: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.packets.len() < 40 && Instant::now() < deadline {
        receive(
            &[signalled],
            Instant::now() + Duration::from_millis(50),
            &mut got,
        );
    }
    assert!(
        got.packets.len() >= 40,
        "RTP did not arrive: {} packets; log:\n{}\nPBX: {}{}",
        got.packets.len(),
        lab.log(),
        std::fs::read_to_string(lab.dir.path().join("uac.err")).unwrap_or_default(),
        std::fs::read_to_string(lab.dir.path().join("uac.msg")).unwrap_or_default(),
    );
    assert_eq!(
        got.packets[0].2.ip().to_string(),
        a.sluice_ip,
        "sent by Sluice"
    );
    for (_, _, _, p) in &got.packets {
        let seq = seq_of(p);
        assert_eq!(p, &rtp_packet(seq), "packet {seq} arrived changed");
    }
    got
}

/// A stranger sends ten packets (SSRC 0x0BAD0BAD) to each of the call's ports on Sluice.
fn strangers_send(lab: &Lab, a: &LabAddrs, stranger: &UdpSocket, sluice_external: SocketAddr) {
    let (caller_port, callee_port, _) = call_media(lab).expect("the call's media in /calls");
    assert_eq!(callee_port, sluice_external.port());
    let mut bad = rtp_packet(9);
    bad[8..12].copy_from_slice(&0x0BAD_0BADu32.to_be_bytes());
    for _ in 0..10 {
        stranger
            .send_to(&bad, format!("{}:{caller_port}", a.sluice_ip))
            .unwrap();
        stranger.send_to(&bad, sluice_external).unwrap();
    }
}

/// The trunk sends ten packets from its other port (as behind NAT): Sluice latches onto it.
/// What arrived at the trunk's two ports meanwhile.
fn trunk_sends_from(
    natted: &UdpSocket,
    signalled: &UdpSocket,
    sluice_external: SocketAddr,
) -> Arrivals {
    for seq in 0..10u16 {
        natted.send_to(&rtp_packet(seq), sluice_external).unwrap();
    }
    let mut after = Arrivals {
        packets: Vec::new(),
    };
    receive(
        &[signalled, natted],
        Instant::now() + Duration::from_millis(600),
        &mut after,
    );
    check_latched(&after);
    after
}

/// What arrives until 7.5 s after the call started: SIPp holds at 3 s and takes the call back
/// at 4 s, and RTP flows again after.
fn after_hold(socks: &[&UdpSocket], started: Instant) -> Arrivals {
    let mut rest = Arrivals {
        packets: Vec::new(),
    };
    receive(socks, started + Duration::from_millis(7500), &mut rest);
    let after_unhold = rest
        .packets
        .iter()
        .filter(|(_, t, ..)| *t > started + Duration::from_millis(5500))
        .count();
    assert!(
        after_unhold >= 20,
        "RTP flows after the call is taken off hold: {after_unhold} packets"
    );
    rest
}

/// After the trunk sent from another port: the PBX's RTP goes there, and once it does, nothing
/// more goes to the signalled port.
fn check_latched(after: &Arrivals) {
    let last_signalled = after
        .packets
        .iter()
        .filter(|(port, ..)| *port == 17000)
        .map(|(_, t, ..)| *t)
        .max();
    let to_natted: Vec<_> = after
        .packets
        .iter()
        .filter(|(port, ..)| *port == 17002)
        .collect();
    assert!(
        to_natted.len() >= 10,
        "after latching the PBX's RTP goes to the port the trunk sends from: {} packets there",
        to_natted.len()
    );
    if let Some(t) = last_signalled {
        assert!(
            to_natted.iter().all(|(_, t2, ..)| *t2 >= t),
            "once latched, nothing more goes to the signalled port"
        );
    }
}

/// Every packet that arrived is one the PBX sent, unchanged, once; none is the stranger's.
fn check_payloads(sets: &[&Arrivals]) {
    let mut by_seq: HashMap<u16, usize> = HashMap::new();
    for (_, _, _, p) in sets.iter().flat_map(|s| &s.packets) {
        assert_ne!(ssrc_of(p), 0x0BAD_0BAD, "a stranger's packet was relayed");
        assert_eq!(p, &rtp_packet(seq_of(p)), "changed on the way");
        *by_seq.entry(seq_of(p)).or_default() += 1;
    }
    assert!(by_seq.values().all(|&n| n == 1), "no packet relayed twice");
}

/// Topology: the trunk never saw the PBX's address, nor the PBX the trunk's; no ICE crossed.
fn check_topology(a: &LabAddrs, uac_log: &std::path::Path, uas_log: &std::path::Path) {
    let received = |p: &std::path::Path| {
        parse_message_log(&std::fs::read_to_string(p).unwrap_or_default(), "received")
    };
    let at_trunk = received(uas_log);
    assert!(at_trunk.len() >= 5, "{at_trunk:?}");
    for m in at_trunk {
        assert!(
            !m.contains(&a.pbx_ip),
            "the trunk saw the PBX's address:\n{m}"
        );
        assert!(!m.contains("a=candidate"), "ICE crossed:\n{m}");
    }
    for m in received(uac_log) {
        assert!(
            !m.contains(&a.trunk_ip),
            "the PBX saw the trunk's address:\n{m}"
        );
    }
}

#[test]
fn silence_ends_the_call_with_bye_on_both_legs() {
    if !sipp_available() {
        panic!("sipp (package sip-tester) is required for the end-to-end tests");
    }
    const BLOCK: u8 = 41;
    let a = LabAddrs::v4(BLOCK);
    let lab = Lab::start_with_text(
        a,
        Transport::Udp,
        &media_config(BLOCK, "timeout_seconds = 1\nhold_timeout_seconds = 1"),
    );
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "1"]);
    let started = Instant::now();
    let uac = lab.sipp(
        "uac",
        "uac_wait_bye.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1"],
    );
    let r = uac.wait(Duration::from_secs(15));
    let t = uas.wait(Duration::from_secs(5));
    assert_eq!(
        r.successful,
        1,
        "the PBX got Sluice's BYE: {r:?}\n{}",
        lab.log()
    );
    assert_eq!(t.successful, 1, "the trunk got Sluice's BYE: {t:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "ended after about a second of silence: {took:?}"
    );
    let (status, metrics) = http("GET", &lab.admin(), "/metrics", None, "");
    assert_eq!(status, 200);
    let samples = sluice_e2e::parse_prometheus(&metrics);
    assert_eq!(
        sluice_e2e::metric(
            &samples,
            "sluice_media_timeouts_total",
            &[("trunk", "loop")]
        ),
        Some(1.0),
        "{metrics}"
    );
}
