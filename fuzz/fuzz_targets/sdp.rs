//! SDP: parse any body, and rewrite what parses with a plan built from the input's own bytes
//! (ports, codec lists), re-parsing the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sdp::{parse, rewrite, Plan, SectionPlan};

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
