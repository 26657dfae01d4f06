//! The plugin edit rules: a sequence of edits taken from the input (set, add, remove a header,
//! set the Request-URI or the body) applied to a typical INVITE; whatever is accepted leaves a
//! message that still parses and validates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sip::{edit, parse_message, validate};

const INVITE: &str = "INVITE sip:+15552001111@trunk.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKf1\r\nMax-Forwards: 70\r\n\
From: \"A\" <sip:+15552230000@192.0.2.1>;tag=f1\r\nTo: <sip:+15552001111@trunk.example.com>\r\n\
Call-ID: fuzz-1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.1:5080>\r\n\
Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Ok(mut msg) = parse_message(INVITE.as_bytes()) else { return };
    let text = String::from_utf8_lossy(data);
    for op in text.split('\n').take(16) {
        let mut chars = op.chars();
        let kind = chars.next();
        let rest = chars.as_str();
        let (name, value) = rest.split_once(':').unwrap_or((rest, ""));
        let _ = match kind {
            Some('s') => edit::set_header(&mut msg, name, value),
            Some('a') => edit::add_header(&mut msg, name, value),
            Some('r') => edit::remove_header(&mut msg, name).map(|_| ()),
            Some('u') => edit::set_request_uri(&mut msg, rest),
            Some('b') => edit::set_body(&mut msg, name, value.as_bytes()),
            _ => Ok(()),
        };
    }
    let bytes = msg.to_bytes();
    let again = parse_message(&bytes).unwrap_or_else(|e| {
        panic!("an accepted edit broke the message ({}): {:?}", e.reason, String::from_utf8_lossy(&bytes))
    });
    assert!(validate(&again).is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
});
