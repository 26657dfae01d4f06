//! The SDP layer over a corpus of offers and answers as PBXs and clients write them (Asterisk
//! and FreeSWITCH with G.711 and Opus, SRTP with ICE and rtcp-mux, audio + video + T.38, the
//! three forms of hold, IPv6 with bare LF line ends): what is modelled, what is rewritten, and
//! that every other line passes byte for byte.
#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use sluice_sdp::{parse, rewrite, Direction, Plan, Sdp, SectionPlan};
use std::net::IpAddr;
use std::path::Path;

fn corpus(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sluice() -> IpAddr {
    "198.51.100.1".parse().unwrap()
}

/// Sluice's ports 30000 + 2k (RTCP +1) for each section, every format kept.
fn plan(sdp: &Sdp, version: u64) -> Plan {
    Plan {
        address: sluice(),
        version,
        sections: sdp
            .media
            .iter()
            .enumerate()
            .map(|(k, m)| {
                let port = if m.port == 0 {
                    0
                } else {
                    30_000 + 2 * k as u16
                };
                SectionPlan {
                    port,
                    rtcp_port: if m.rtcp_mux { port } else { port + 1 },
                    formats: None,
                    proto: None,
                    crypto: None,
                }
            })
            .collect(),
    }
}

/// The lines of `before` that Sluice does not own must be in `after`, unchanged and in order.
fn assert_passthrough(before: &Sdp, after: &str) {
    let owned = |i: usize, line: &str| {
        i == before.origin.line
            || before.connection.is_some_and(|c| c.line == i)
            || before
                .media
                .iter()
                .any(|m| m.line == i || m.connection.is_some_and(|c| c.line == i))
            || line.starts_with("a=rtcp:")
            || line.starts_with("a=candidate")
            || line.starts_with("a=ice-")
            || line.starts_with("a=end-of-candidates")
            || line.starts_with("a=remote-candidates")
    };
    let out: Vec<&str> = after
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut at = 0;
    for (i, line) in before.lines.iter().enumerate() {
        if owned(i, line) {
            continue;
        }
        let found = out[at..].iter().position(|l| l == line);
        let Some(k) = found else {
            panic!("line {i} `{line}` is not in the output in order:\n{after}");
        };
        at += k + 1;
    }
}

#[test]
fn g711_offer_gets_sluices_address_and_port_and_keeps_the_rest() {
    let body = corpus("asterisk-g711.sdp");
    let sdp = parse(&body).unwrap();
    assert_eq!(sdp.origin.version, 1741234567);
    assert_eq!(
        sdp.connection.unwrap().address,
        "192.168.1.10".parse::<IpAddr>().unwrap()
    );
    assert_eq!(sdp.media.len(), 1);
    let m = &sdp.media[0];
    assert_eq!(
        (m.kind.as_str(), m.port, m.proto.as_str()),
        ("audio", 10000, "RTP/AVP")
    );
    assert_eq!(m.formats, ["0", "8", "101"]);
    assert_eq!(sdp.direction_of(m), Direction::SendRecv);
    assert_eq!(sdp.encoding(m, "101").as_deref(), Some("telephone-event"));
    let out = rewrite(&sdp, &plan(&sdp, 1741234568));
    assert_eq!(
        out,
        "v=0\r\no=- 1741234567 1741234568 IN IP4 198.51.100.1\r\ns=Asterisk\r\n\
         c=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=ptime:20\r\na=maxptime:150\r\na=sendrecv\r\n"
    );
    assert!(!out.contains("192.168.1.10"));
    assert_passthrough(&sdp, &out);
}

#[test]
fn rtcp_attribute_follows_the_port_and_address() {
    let sdp = parse(&corpus("freeswitch-opus.sdp")).unwrap();
    let m = &sdp.media[0];
    assert_eq!(m.rtcp_port, Some(16385));
    assert_eq!(sdp.encoding(m, "102").as_deref(), Some("opus"));
    let out = rewrite(&sdp, &plan(&sdp, 7));
    assert!(
        out.contains("a=rtcp:30001 IN IP4 198.51.100.1\r\n"),
        "{out}"
    );
    assert!(out.contains("m=audio 30000 RTP/AVP 102 9 0 8 101\r\n"));
    assert!(out.contains("a=fmtp:102 useinbandfec=1; maxplaybackrate=48000; stereo=0\r\n"));
    assert!(!out.contains("10.0.0.5"), "{out}");
    assert_passthrough(&sdp, &out);
}

#[test]
fn ice_goes_srtp_keys_and_mux_stay() {
    let sdp = parse(&corpus("srtp-ice-mux.sdp")).unwrap();
    let m = &sdp.media[0];
    assert!(m.rtcp_mux);
    assert_eq!(m.proto, "RTP/SAVPF");
    let out = rewrite(&sdp, &plan(&sdp, 3));
    for gone in [
        "a=candidate",
        "a=ice-",
        "a=end-of-candidates",
        "192.168.0.5",
        "203.0.113.7",
    ] {
        assert!(!out.contains(gone), "{gone} left:\n{out}");
    }
    assert!(out.contains("a=rtcp-mux\r\n"));
    assert!(
        out.contains("a=rtcp:30000 IN IP4 198.51.100.1\r\n"),
        "mux: RTCP on the RTP port"
    );
    assert!(out.contains(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
    ));
    assert!(out.contains("a=group:BUNDLE 0\r\na=mid:0\r\n") || out.contains("a=mid:0\r\n"));
    // A section-level c= is rewritten where it stood.
    assert!(out.contains("m=audio 30000 RTP/SAVPF 111 0 8 126\r\nc=IN IP4 198.51.100.1\r\n"));
    assert_passthrough(&sdp, &out);
}

#[test]
fn sluices_own_keys_replace_the_senders_and_the_profile_follows() {
    let sdp = parse(&corpus("srtp-ice-mux.sdp")).unwrap();
    let crypto = sdp.crypto_of(&sdp.media[0]);
    assert_eq!(crypto.len(), 1);
    assert_eq!(crypto[0].suite, "AES_CM_128_HMAC_SHA1_80");
    let mut p = plan(&sdp, 3);
    p.sections[0].proto = Some("RTP/AVPF".into());
    p.sections[0].crypto = Some(vec![]);
    let plain = rewrite(&sdp, &p);
    assert!(!plain.contains("a=crypto"), "{plain}");
    assert!(plain.contains("m=audio 30000 RTP/AVPF 111 0 8 126\r\n"));
    p.sections[0].crypto = Some(vec![
        "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA".into(),
        "2 AEAD_AES_128_GCM inline:BBBB".into(),
    ]);
    let ours = rewrite(&sdp, &p);
    assert!(
        !ours.contains("WVNfX19zZW1jdGwg"),
        "the sender's key left:\n{ours}"
    );
    assert!(
        ours.ends_with(
            "a=rtpmap:126 telephone-event/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 \
             inline:AAAA\r\na=crypto:2 AEAD_AES_128_GCM inline:BBBB\r\n"
        ),
        "added at the end of the section:\n{ours}"
    );
    // Only the section's lines move: a body with a second section keeps its order.
    let two = parse(&corpus("audio-video-t38.sdp")).unwrap();
    let mut p = plan(&two, 2);
    p.sections[0].crypto = Some(vec!["1 AES_CM_128_HMAC_SHA1_80 inline:CCCC".into()]);
    let out = rewrite(&two, &p);
    let crypto_at = out.find("a=crypto:1").unwrap();
    assert!(crypto_at < out.find("m=video").unwrap(), "{out}");
    assert_eq!(out.matches("a=crypto").count(), 1);
}

#[test]
fn several_streams_a_declined_one_and_t38() {
    let sdp = parse(&corpus("audio-video-t38.sdp")).unwrap();
    let kinds: Vec<(&str, u16)> = sdp
        .media
        .iter()
        .map(|m| (m.kind.as_str(), m.port))
        .collect();
    assert_eq!(kinds, [("audio", 49170), ("video", 0), ("image", 49172)]);
    assert_eq!(sdp.media[2].proto, "udptl");
    let out = rewrite(&sdp, &plan(&sdp, 457));
    assert!(out.contains("m=audio 30000 RTP/AVP 0 101\r\n"));
    assert!(
        out.contains("m=video 0 RTP/AVP 31\r\n"),
        "a declined stream stays declined"
    );
    assert!(out.contains("m=image 30004 udptl t38\r\na=T38FaxVersion:0\r\n"));
    assert_passthrough(&sdp, &out);
}

#[test]
fn the_three_forms_of_hold() {
    for (file, c_hold) in [
        ("hold-sendonly.sdp", false),
        ("hold-inactive.sdp", false),
        ("hold-rfc2543.sdp", true),
    ] {
        let sdp = parse(&corpus(file)).unwrap();
        assert!(sdp.on_hold(&sdp.media[0]), "{file}");
        let out = rewrite(&sdp, &plan(&sdp, 9));
        assert_eq!(out.contains("c=IN IP4 0.0.0.0"), c_hold, "{file}: {out}");
        assert_passthrough(&sdp, &out);
    }
    let sdp = parse(&corpus("asterisk-g711.sdp")).unwrap();
    assert!(!sdp.on_hold(&sdp.media[0]));
}

#[test]
fn ipv6_and_bare_line_feeds() {
    let sdp = parse(&corpus("ipv6-lf.sdp")).unwrap();
    assert!(!sdp.crlf);
    let mut p = plan(&sdp, 2);
    p.address = "2001:db8::1".parse().unwrap();
    let out = rewrite(&sdp, &p);
    assert_eq!(
        out,
        "v=0\no=- 1 2 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\nm=audio 30000 RTP/AVP 0 8\na=ptime:20\n"
    );
}

#[test]
fn a_codec_list_keeps_its_formats_in_its_order_and_their_attributes() {
    let sdp = parse(&corpus("freeswitch-opus.sdp")).unwrap();
    let m = &sdp.media[0];
    let allow: Vec<String> = ["PCMA", "telephone-event", "pcmu"]
        .map(String::from)
        .to_vec();
    let kept = sdp.allowed_formats(m, &allow).unwrap();
    assert_eq!(kept, ["8", "101", "0"]);
    let mut p = plan(&sdp, 2);
    p.sections[0].formats = Some(kept);
    let out = rewrite(&sdp, &p);
    assert!(out.contains("m=audio 30000 RTP/AVP 8 101 0\r\n"), "{out}");
    assert!(!out.contains("opus") && !out.contains("G722"), "{out}");
    assert!(out.contains("a=fmtp:101 0-16\r\n") && out.contains("a=rtpmap:8 PCMA/8000\r\n"));
    // Static payload types are known without an rtpmap; a list matching nothing keeps nothing.
    let g711 = parse(&corpus("audio-video-t38.sdp")).unwrap();
    assert_eq!(
        g711.allowed_formats(&g711.media[0], &["PCMU".into()])
            .unwrap(),
        ["0"]
    );
    assert_eq!(
        g711.allowed_formats(&g711.media[0], &["opus".into()])
            .unwrap(),
        Vec::<String>::new()
    );
    // T.38 is not RTP: never filtered.
    assert_eq!(g711.allowed_formats(&g711.media[2], &["PCMU".into()]), None);
}

#[test]
fn malformed_bodies_are_refused_with_the_line() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "does not start with v=0"),
        (b"o=- 1 1 IN IP4 1.2.3.4\r\n", "does not start with v=0"),
        (
            b"v=0\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\n",
            "no o= line",
        ),
        (
            b"v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n",
            "o= session version is not a number",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 example.com\r\n",
            "c= address is not an IP address",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP6 1.2.3.4\r\n",
            "c= address type does not match the address",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 224.2.1.1/127\r\n",
            "multicast connection addresses are not anchored",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 99999 RTP/AVP 0\r\n",
            "m= port is not a number from 0 to 65535",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 1000\r\n",
            "malformed m= line",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1000 RTP/AVP 0\r\n",
            "a media section without a connection address",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nbogus\r\n",
            "not a `<type>=<value>` line",
        ),
        (b"v=0\r\no=- 1 1 IN IP4 \xff\r\n", "not UTF-8"),
        // Found by the fuzzer: `a=rtcp` ending in two CRs parsed as an unknown attribute and
        // came back out as a malformed `a=rtcp`.
        (
            b"v=0\no=- ~ 1 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nm=audio 4 RTP/AVP 0\na=rtcp\r\r",
            "control character inside a line",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\0\r\n",
            "control character inside a line",
        ),
    ];
    for (body, reason) in cases {
        let e = parse(body).expect_err(&String::from_utf8_lossy(body));
        assert_eq!(e.reason, *reason, "{}", String::from_utf8_lossy(body));
    }
    let e =
        parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 99999 RTP/AVP 0\r\n")
            .unwrap_err();
    assert_eq!(e.line, Some(4));
}

#[test]
fn mutated_bodies_never_panic() {
    let seeds: Vec<Vec<u8>> = [
        "asterisk-g711.sdp",
        "freeswitch-opus.sdp",
        "srtp-ice-mux.sdp",
        "audio-video-t38.sdp",
        "hold-rfc2543.sdp",
        "ipv6-lf.sdp",
    ]
    .iter()
    .map(|f| corpus(f))
    .collect();
    let tokens: &[&[u8]] = &[
        b"\r\n",
        b"m=",
        b"c=IN IP4 ",
        b"a=rtcp:",
        b" ",
        b"0",
        b"65536",
        b"\xc3\xa9",
        b"/",
        b":",
        b"=",
        b"IP6",
        b"::",
    ];
    let mut rng = fastrand::Rng::with_seed(8866);
    let mut parsed = 0;
    for _ in 0..20_000 {
        let mut m = seeds[rng.usize(..seeds.len())].clone();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..=m.len());
            match rng.u8(..3) {
                0 => {
                    let t = tokens[rng.usize(..tokens.len())];
                    m.splice(at..at, t.iter().copied());
                }
                1 => {
                    let end = (at + rng.usize(1..8)).min(m.len());
                    m.drain(at..end);
                }
                _ => m.truncate(at),
            }
        }
        if let Ok(sdp) = parse(&m) {
            parsed += 1;
            let _ = rewrite(&sdp, &plan(&sdp, 1));
        }
    }
    assert!(
        parsed > 1_000,
        "the mutations should not all be refused: {parsed}"
    );
}
