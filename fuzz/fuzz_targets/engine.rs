//! The whole engine (message layer, transactions, B2BUA) on one datagram from the PBX's side.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_b2bua::testing::engine;
use sluice_transaction::{Flow, Transport};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let mut e = engine();
    let flow = Flow {
        transport: Transport::Udp,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: "127.0.0.10:5060".parse().unwrap(),
        conn: None,
    };
    e.handle_datagram(Instant::now(), flow, data);
    while e.poll_output().is_some() {}
});
