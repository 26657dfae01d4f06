//! The whole engine (message layer, transactions, B2BUA) on one datagram from the PBX's side.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_b2bua::{Engine, EngineConfig, ListenerAddr, PeerConfig, Side};
use sluice_transaction::{Flow, TimerConfig, Transport};
use std::time::Instant;

fn engine() -> Engine {
    let addr = |s: &str| s.parse().unwrap();
    Engine::new(
        EngineConfig {
            timers: TimerConfig::default(),
            listeners: vec![
                ListenerAddr {
                    side: Side::Internal,
                    transport: Transport::Udp,
                    addr: addr("127.0.0.1:5060"),
                },
                ListenerAddr {
                    side: Side::External,
                    transport: Transport::Udp,
                    addr: addr("127.0.0.1:5080"),
                },
            ],
            pbx: PeerConfig {
                name: "pbx".into(),
                host: "127.0.0.10".into(),
                transport: Transport::Udp,
                addr: addr("127.0.0.10:5060"),
            },
            trunks: vec![PeerConfig {
                name: "t".into(),
                host: "127.0.0.20".into(),
                transport: Transport::Udp,
                addr: addr("127.0.0.20:5060"),
            }],
            outbound_trunk: 0,
            max_calls: 100,
            user_agent: "Sluice".into(),
        },
        1,
    )
}

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
