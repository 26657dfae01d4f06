//! SDP: parse any body, read its `a=crypto` lines, and rewrite what parses with a plan built
//! from the input's own bytes (ports, a profile and Sluice's own keys on odd seeds),
//! re-parsing the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sdp::{parse, rewrite, with_srtp, Plan, SectionPlan};

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = parse(data) else { return };
    let seed = data.first().copied().unwrap_or(0);
    let sections = sdp
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| SectionPlan {
            // As the engine does: a declined stream (port 0) stays declined.
            port: if m.port == 0 {
                0
            } else {
                u16::from(seed).wrapping_mul(2).wrapping_add(i as u16).max(2)
            },
            rtcp_port: u16::from(seed).wrapping_mul(2).wrapping_add(1),
            formats: None,
            // Read every crypto line; on odd seeds, write Sluice's own in their place.
            proto: (sdp.crypto_of(m).len() % 2 == 1 || seed % 2 == 1)
                .then(|| with_srtp(&m.proto, seed % 4 == 1).to_string()),
            crypto: (seed % 2 == 1).then(|| {
                vec!["1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk".into()]
            }),
        })
        .collect();
    let plan = Plan {
        address: if seed % 2 == 0 {
            "203.0.113.9".parse().unwrap()
        } else {
            "2001:db8::9".parse().unwrap()
        },
        version: u64::from(seed),
        sections,
    };
    let out = rewrite(&sdp, &plan);
    // What Sluice writes, it can read back.
    assert!(parse(out.as_bytes()).is_ok(), "rewritten SDP does not parse: {out:?}");
});
