#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]
//! `sluice plugin test`'s dry run lends messages to a plugin as the engine does: SRTP keys
//! hidden on every message, not only on a new call's INVITE; and under the same deadline, which
//! holds however long it is.

use sluice_b2bua::Direction;
use sluice_plugins::dry_run::{dry_run, DryRun, DryRunInput};
use sluice_sip::HeaderName;
use std::collections::BTreeMap;
use std::time::Duration;

const KEY: &str = "WVNfX19zZWNyZXRfa2V5X19fX19fX19fX19fX19fX19f";

fn invite_with_key(to_tag: &str) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
    );
    format!(
        "INVITE sip:15552234567@192.0.2.2 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
         From: <sip:200@192.0.2.1>;tag=a\r\nTo: <sip:15552234567@192.0.2.2>{to_tag}\r\n\
         Call-ID: dry-run-keys\r\nCSeq: 2 INVITE\r\nContact: <sip:200@192.0.2.1>\r\n\
         Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// `text` through testkit in `mode`, outbound, under `deadline`.
fn testkit(text: &str, mode: &str, deadline: Duration) -> Result<DryRun, String> {
    let wasm = std::fs::read(sluice_e2e::test_plugin("testkit")).unwrap();
    dry_run(DryRunInput {
        name: "testkit",
        wasm: &wasm,
        origin: "test".into(),
        message: text.as_bytes(),
        direction: Direction::Outbound,
        trunk: "t",
        brand: "generic",
        tenant: None,
        settings: BTreeMap::from([("mode".into(), vec![mode.into()])]),
        deadline,
    })
}

#[test]
fn the_dry_run_hides_srtp_keys_on_every_message() {
    for (what, text) in [
        ("new call", invite_with_key("")),
        ("re-INVITE", invite_with_key(";tag=b")),
    ] {
        let out = testkit(&text, "show-crypto", Duration::from_millis(50)).unwrap();
        assert!(out.failures.is_empty(), "{what}: {:?}", out.failures);
        let seen = out
            .message
            .headers
            .get(&HeaderName::parse("X-Crypto"))
            .unwrap()
            .to_string();
        assert!(
            seen.starts_with("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{what}: {seen}"
        );
        assert!(
            !seen.contains(KEY),
            "{what}: the plugin saw the key: {seen}"
        );
        // What leaves carries the key again.
        let body = String::from_utf8_lossy(&out.message.body).to_string();
        assert!(body.contains(&format!("inline:{KEY}")), "{what}: {body}");
    }
}

#[test]
fn a_deadline_longer_than_the_tickers_idle_second_still_cuts_a_loop_off() {
    // The epoch ticker sleeps after a second without a new call; a hook that loops must keep
    // it awake until its own deadline, here 1.5 s, cuts it off.
    let text = invite_with_key("").replace("sip:15552234567@", "sip:6665551234@");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let out = testkit(&text, "loop", Duration::from_millis(1500));
        let _ = tx.send((out.map(|o| o.failures), started.elapsed()));
    });
    // Bounded: without the fix the hook never ends, and the loop thread is left behind.
    let (failures, took) = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the looping hook was never cut off");
    let failures = failures.unwrap();
    assert!(
        failures.iter().any(|f| f.contains("deadline")),
        "{failures:?}"
    );
    assert!(took >= Duration::from_millis(1500), "{took:?}");
}
