//! SDES offer/answer through a call's media (RFC 4568): what each end's SDP says of SRTP, and
//! what the relay is told, for a trunk's end that speaks SRTP and a PBX that speaks RTP.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]

use sluice_media::srtp::MasterKey;
use sluice_media::{
    CallMedia, End, EndCrypto, MediaOp, MediaSide, PortPool, Refusal, Role, SdesRefusal, SrtpMode,
    SrtpPolicy, Suite,
};
use sluice_sdp::{parse, rewrite, Sdp};
use std::net::IpAddr;

fn sides() -> [MediaSide; 2] {
    let side = |ip: &str, first: u16| MediaSide {
        bind: ip.parse().unwrap(),
        advertise: ip.parse().unwrap(),
        pool: PortPool::new(first, first + 100),
    };
    [side("10.0.0.1", 20_000), side("203.0.113.1", 30_000)]
}

const PEERS: [IpAddr; 2] = [
    IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)),
    IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7)),
];

fn sdp(proto: &str, crypto: &[&str]) -> Sdp {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n\
         m=audio 4000 {proto} 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    );
    for c in crypto {
        s.push_str(&format!("a=crypto:{c}\r\n"));
    }
    s.push_str("m=image 4002 udptl t38\r\n");
    parse(s.as_bytes()).unwrap()
}

fn key(suite: Suite) -> String {
    MasterKey::generate(suite).unwrap().to_base64()
}

/// Run one SDP from `from` through the call; the text the other end receives.
fn cross(
    media: &mut CallMedia,
    sides: &mut [MediaSide; 2],
    from: End,
    role: Role,
    body: &Sdp,
) -> Result<String, Refusal> {
    let [a, b] = sides;
    let mut ops = Vec::new();
    let plan = media.on_sdp(from, role, body, [a, b], PEERS, None, &mut ops)?;
    Ok(rewrite(body, &plan))
}

fn relay_view(media: &CallMedia) -> [EndCrypto; 2] {
    let mut ops = Vec::new();
    media.updates(Default::default(), None, &mut ops);
    match ops.first() {
        Some(MediaOp::Update { crypto, .. }) => **crypto,
        other => panic!("no update: {other:?}"),
    }
}

fn crypto_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("a=crypto:"))
        .collect()
}

fn policy(end: End, mode: SrtpMode) -> SrtpPolicy {
    SrtpPolicy {
        end,
        mode,
        suites: Suite::ALL.to_vec(),
    }
}

#[test]
fn outbound_required_offers_sluices_keys_and_the_pbx_gets_plain_rtp() {
    let mut sides = sides();
    let mut call = CallMedia::with_srtp(1, policy(End::B, SrtpMode::Required));
    // The PBX offers best-effort SRTP of its own: its key never reaches the trunk.
    let pbx_key = key(Suite::AesCm128HmacSha1_80);
    let pbx_line = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{pbx_key}");
    let offer = sdp("RTP/AVP", &[&pbx_line]);
    let to_trunk = cross(&mut call, &mut sides, End::A, Role::Offer, &offer).unwrap();
    assert!(
        to_trunk.contains("m=audio 30000 RTP/SAVP 0 101\r\n"),
        "{to_trunk}"
    );
    assert!(!to_trunk.contains(&pbx_key), "the PBX's key crossed");
    let lines = crypto_lines(&to_trunk);
    assert_eq!(lines.len(), 3, "one line per suite: {to_trunk}");
    assert!(lines[0].starts_with("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    assert!(lines[1].starts_with("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:"));
    assert!(lines[2].starts_with("a=crypto:3 AEAD_AES_128_GCM inline:"));
    assert!(
        to_trunk.contains("m=image 30002 udptl t38\r\n"),
        "T.38 untouched"
    );
    assert_eq!(relay_view(&call), [EndCrypto::Plain, EndCrypto::Waiting]);

    // The trunk answers with tag 2: the PBX gets RTP/AVP without keys.
    let trunk_key = key(Suite::AesCm128HmacSha1_32);
    let answer = sdp(
        "RTP/SAVP",
        &[&format!(
            "2 AES_CM_128_HMAC_SHA1_32 inline:{trunk_key}|2^31"
        )],
    );
    let to_pbx = cross(&mut call, &mut sides, End::B, Role::Answer, &answer).unwrap();
    assert!(
        to_pbx.contains("m=audio 20000 RTP/AVP 0 101\r\n"),
        "{to_pbx}"
    );
    assert!(crypto_lines(&to_pbx).is_empty(), "{to_pbx}");
    let [a, b] = relay_view(&call);
    assert_eq!(a, EndCrypto::Plain);
    let EndCrypto::Srtp(keys) = b else {
        panic!("SRTP toward the trunk: {b:?}")
    };
    assert_eq!(keys.theirs.to_base64(), trunk_key);
    let offered_32 = lines[1].split("inline:").nth(1).unwrap();
    assert_eq!(
        keys.ours.to_base64(),
        offered_32,
        "Sluice sends with the key it offered"
    );

    // A re-INVITE from the PBX: the trunk is offered the same keys again.
    let again = cross(
        &mut call,
        &mut sides,
        End::A,
        Role::Offer,
        &sdp("RTP/AVP", &[]),
    )
    .unwrap();
    assert_eq!(crypto_lines(&again), lines, "keys kept across a re-offer");
}

#[test]
fn inbound_offer_is_answered_with_the_first_usable_line() {
    let mut sides = sides();
    let mut call = CallMedia::with_srtp(2, policy(End::A, SrtpMode::Optional));
    let theirs = key(Suite::AesCm128HmacSha1_80);
    let offer = sdp(
        "RTP/SAVP",
        &[
            "1 AES_256_CM_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj",
            &format!("2 AES_CM_128_HMAC_SHA1_80 inline:{theirs}|2^20|1:4"),
            &format!("3 AES_CM_128_HMAC_SHA1_80 inline:{theirs}"),
        ],
    );
    let to_pbx = cross(&mut call, &mut sides, End::A, Role::Offer, &offer).unwrap();
    assert!(
        to_pbx.contains("m=audio 30000 RTP/AVP 0 101\r\n"),
        "{to_pbx}"
    );
    assert!(crypto_lines(&to_pbx).is_empty());
    assert_eq!(relay_view(&call)[0], EndCrypto::Waiting);
    let to_trunk = cross(
        &mut call,
        &mut sides,
        End::B,
        Role::Answer,
        &sdp("RTP/AVP", &[]),
    )
    .unwrap();
    assert!(
        to_trunk.contains("m=audio 20000 RTP/SAVP 0 101\r\n"),
        "{to_trunk}"
    );
    let lines = crypto_lines(&to_trunk);
    assert_eq!(lines.len(), 1, "{to_trunk}");
    assert!(
        lines[0].starts_with("a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:"),
        "the first line without an MKI: {}",
        lines[0]
    );
    let EndCrypto::Srtp(keys) = relay_view(&call)[0] else {
        panic!("SRTP toward the trunk")
    };
    assert_eq!(keys.theirs.to_base64(), theirs);
    assert_ne!(keys.ours, keys.theirs, "Sluice's own key");
}

#[test]
fn optional_falls_back_to_rtp_and_required_refuses() {
    // Optional: a trunk answering without keys stays plain.
    let mut sides_ = sides();
    let mut call = CallMedia::with_srtp(3, policy(End::B, SrtpMode::Optional));
    let to_trunk = cross(
        &mut call,
        &mut sides_,
        End::A,
        Role::Offer,
        &sdp("RTP/AVP", &[]),
    )
    .unwrap();
    assert!(
        to_trunk.contains(" RTP/AVP 0 101"),
        "best effort: {to_trunk}"
    );
    assert_eq!(crypto_lines(&to_trunk).len(), 3);
    cross(
        &mut call,
        &mut sides_,
        End::B,
        Role::Answer,
        &sdp("RTP/AVP", &[]),
    )
    .unwrap();
    assert_eq!(relay_view(&call), [EndCrypto::Plain, EndCrypto::Plain]);

    // Optional: an inbound offer without keys is plain; with RTP/SAVP and none usable, 488.
    let mut call = CallMedia::with_srtp(4, policy(End::A, SrtpMode::Optional));
    cross(
        &mut call,
        &mut sides_,
        End::A,
        Role::Offer,
        &sdp("RTP/AVP", &[]),
    )
    .unwrap();
    let mut call = CallMedia::with_srtp(5, policy(End::A, SrtpMode::Optional));
    let r = cross(
        &mut call,
        &mut sides_,
        End::A,
        Role::Offer,
        &sdp("RTP/SAVP", &["1 F8_128_HMAC_SHA1_80 inline:abcd"]),
    );
    assert_eq!(r, Err(Refusal::Srtp(SdesRefusal::NoUsableKey)));

    // Required: an inbound offer without keys is refused.
    let mut call = CallMedia::with_srtp(6, policy(End::A, SrtpMode::Required));
    let r = cross(
        &mut call,
        &mut sides_,
        End::A,
        Role::Offer,
        &sdp("RTP/AVP", &[]),
    );
    assert_eq!(r, Err(Refusal::Srtp(SdesRefusal::NoUsableKey)));

    // Required: an answer without keys declines the stream toward the PBX.
    let mut call = CallMedia::with_srtp(7, policy(End::B, SrtpMode::Required));
    cross(
        &mut call,
        &mut sides_,
        End::A,
        Role::Offer,
        &sdp("RTP/AVP", &[]),
    )
    .unwrap();
    let to_pbx = cross(
        &mut call,
        &mut sides_,
        End::B,
        Role::Answer,
        &sdp("RTP/SAVP", &[]),
    )
    .unwrap();
    assert!(to_pbx.contains("m=audio 0 "), "declined: {to_pbx}");
    assert_eq!(relay_view(&call)[1], EndCrypto::Waiting, "nothing relayed");
    // Nor does a declined section carry the trunk's keys or its profile to the PBX.
    let mut call = CallMedia::with_srtp(11, policy(End::B, SrtpMode::Required));
    cross(
        &mut call,
        &mut sides_,
        End::A,
        Role::Offer,
        &sdp("RTP/AVP", &[]),
    )
    .unwrap();
    let theirs = format!(
        "9 AES_CM_128_HMAC_SHA1_80 inline:{}",
        key(Suite::AesCm128HmacSha1_80)
    );
    let refused = sdp("RTP/SAVP", &[&theirs])
        .lines
        .join("\r\n")
        .replace("m=audio 4000", "m=audio 0");
    let refused = parse(format!("{refused}\r\n").as_bytes()).unwrap();
    let to_pbx = cross(&mut call, &mut sides_, End::B, Role::Answer, &refused).unwrap();
    assert!(to_pbx.contains("m=audio 0 RTP/AVP "), "{to_pbx}");
    assert!(!to_pbx.contains("a=crypto"), "{to_pbx}");

    // A key of the wrong length for its suite is not usable.
    let mut call = CallMedia::with_srtp(8, policy(End::A, SrtpMode::Required));
    let short = "1 AES_CM_128_HMAC_SHA1_80 inline:QUJDRA==";
    let r = cross(
        &mut call,
        &mut sides_,
        End::A,
        Role::Offer,
        &sdp("RTP/SAVP", &[short]),
    );
    assert_eq!(r, Err(Refusal::Srtp(SdesRefusal::NoUsableKey)));
}

#[test]
fn the_pbx_offering_srtp_itself_is_refused() {
    let mut sides = sides();
    let mut call = CallMedia::with_srtp(9, policy(End::B, SrtpMode::Optional));
    let line = format!(
        "1 AES_CM_128_HMAC_SHA1_80 inline:{}",
        key(Suite::AesCm128HmacSha1_80)
    );
    let r = cross(
        &mut call,
        &mut sides,
        End::A,
        Role::Offer,
        &sdp("RTP/SAVP", &[&line]),
    );
    assert_eq!(r, Err(Refusal::Srtp(SdesRefusal::SrtpFromPlainEnd)));
}

#[test]
fn configured_suites_limit_the_offer_and_the_answer() {
    let mut sides = sides();
    let only_gcm = SrtpPolicy {
        end: End::B,
        mode: SrtpMode::Required,
        suites: vec![Suite::AeadAes128Gcm],
    };
    let mut call = CallMedia::with_srtp(10, only_gcm);
    let to_trunk = cross(
        &mut call,
        &mut sides,
        End::A,
        Role::Offer,
        &sdp("RTP/AVP", &[]),
    )
    .unwrap();
    let lines = crypto_lines(&to_trunk);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("a=crypto:1 AEAD_AES_128_GCM inline:"));
    let k = lines[0].split("inline:").nth(1).unwrap();
    assert_eq!(
        MasterKey::from_base64(Suite::AeadAes128Gcm, k).map(|m| m.suite()),
        Ok(Suite::AeadAes128Gcm),
        "a 28-byte GCM key and salt"
    );
    // An answer naming a tag Sluice did not offer is no agreement.
    let wrong = format!(
        "1 AES_CM_128_HMAC_SHA1_80 inline:{}",
        key(Suite::AesCm128HmacSha1_80)
    );
    let to_pbx = cross(
        &mut call,
        &mut sides,
        End::B,
        Role::Answer,
        &sdp("RTP/SAVP", &[&wrong]),
    )
    .unwrap();
    assert!(to_pbx.contains("m=audio 0 "), "{to_pbx}");
}
