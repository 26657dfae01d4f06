//! The message layer: parse, validate, and every structured view of the headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sip::{edit, parse_message, validate, HeaderName, NameAddr, Uri};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = parse_message(data) else { return };
    let _ = validate(&msg);
    let _ = (
        msg.top_via(),
        msg.from_tag(),
        msg.to_tag(),
        msg.cseq(),
        msg.max_forwards(),
    );
    if let Some(uri) = msg.request_uri() {
        let _ = Uri::parse(uri);
        let _ = edit::uri_number(uri);
        let _ = edit::replace_uri_number(uri, "+15552001111");
    }
    for h in &msg.headers {
        let _ = NameAddr::parse(&h.value).map(|n| Uri::parse(n.uri));
        let _ = edit::replace_name_addr_number(&h.value, "+15552001111");
    }
    for v in msg.headers.values(&HeaderName::Via) {
        let _ = sluice_sip::Via::parse(v);
    }
    let again = msg.to_bytes();
    assert!(
        parse_message(&again).is_ok(),
        "Sluice's own serialisation parses"
    );
});
