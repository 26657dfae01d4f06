//! The RFC 4475 and RFC 5118 torture messages through the whole engine (message layer,
//! transactions, B2BUA), checking the answer each must get. The corpus is in
//! `tests/conformance/`.

use sluice_b2bua::{Engine, EngineConfig, ListenerAddr, Output, PeerConfig, Side};
use sluice_sip::{parse_message, Method};
use sluice_transaction::{Flow, TimerConfig, Transport};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance");
    assert!(
        dir.join("rfc4475").is_dir(),
        "conformance corpus missing at {}",
        dir.display()
    );
    dir
}

fn engine() -> Engine {
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
                name: "loop".into(),
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

#[derive(Debug, PartialEq)]
enum Outcome {
    /// Forwarded to the trunk as a new call.
    Forwarded,
    /// Final answers sent back (statuses, 100 Trying left out).
    Answered(Vec<u16>),
    /// Nothing sent at all.
    Silent,
}

fn run(bytes: &[u8]) -> (Outcome, Vec<(Flow, Vec<u8>)>) {
    let mut e = engine();
    let flow = Flow {
        transport: Transport::Udp,
        local: addr("127.0.0.1:5060"),
        remote: addr("127.0.0.10:5060"),
        conn: None,
    };
    e.handle_datagram(Instant::now(), flow, bytes);
    let outputs: Vec<(Flow, Vec<u8>)> = std::iter::from_fn(|| e.poll_output())
        .map(|Output::Transmit { flow, data }| (flow, data.to_vec()))
        .collect();
    let mut statuses = Vec::new();
    let mut forwarded = false;
    for (f, data) in &outputs {
        let m = parse_message(data).expect("Sluice's own output parses");
        if f.remote == addr("127.0.0.20:5060") && m.method() == Some(&Method::Invite) {
            forwarded = true;
        }
        if let Some(s) = m.status() {
            if s != 100 {
                statuses.push(s);
            }
        }
    }
    let outcome = if forwarded {
        Outcome::Forwarded
    } else if outputs.is_empty() {
        Outcome::Silent
    } else {
        Outcome::Answered(statuses)
    };
    (outcome, outputs)
}

fn load(set: &str, name: &str) -> Vec<u8> {
    let path = corpus_dir().join(set).join(format!("{name}.dat"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if set == "rfc5118" {
        // Stored with LF line ends: convert to CRLF and end the head where the file lacks the
        // empty line. The conversion changes the body's length, and the RFC's Content-Length
        // values do not match its own bodies (ipv6-in-sdp declares 268 for 251 bytes), so the
        // value is set to the converted body: these files test IPv6 handling, not framing.
        let text = String::from_utf8_lossy(&raw)
            .replace("\r\n", "\n")
            .replace('\n', "\r\n");
        let (head, body) = match text.find("\r\n\r\n") {
            Some(i) => (text[..i].to_string(), text[i + 4..].to_string()),
            None => (text.trim_end().to_string(), String::new()),
        };
        let head: Vec<String> = head
            .split("\r\n")
            .map(|l| {
                if l.to_ascii_lowercase().starts_with("content-length") {
                    format!("Content-Length: {}", body.len())
                } else {
                    l.to_string()
                }
            })
            .collect();
        return format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes();
    }
    raw
}

fn answered(codes: &[u16]) -> Outcome {
    Outcome::Answered(codes.to_vec())
}

#[test]
fn rfc4475_outcomes() {
    use Outcome::*;
    let cases: &[(&str, &[Outcome])] = &[
        // wsinv carries a To tag: a valid in-dialog request for a dialog Sluice does not know.
        ("wsinv", &[Forwarded, answered(&[481])]),
        ("intmeth", &[answered(&[501])]),
        ("esc01", &[Forwarded]),
        ("escnull", &[answered(&[405])]),
        ("esc02", &[answered(&[501]), answered(&[405])]),
        ("lwsdisp", &[answered(&[200])]),
        ("longreq", &[Forwarded]),
        ("semiuri", &[answered(&[200])]),
        ("transports", &[answered(&[200])]),
        ("mpart01", &[answered(&[405])]),
        ("inv2543", &[Forwarded]),
        ("unreason", &[Silent]),
        ("noreason", &[Silent]),
        ("cparam01", &[answered(&[405])]),
        ("cparam02", &[answered(&[405])]),
        ("regescrt", &[answered(&[405])]),
        ("unksm2", &[answered(&[405])]),
        ("regaut01", &[answered(&[405])]),
        ("dblreq", &[answered(&[405])]),
        ("badbranch", &[answered(&[200]), answered(&[400])]),
        ("badinv01", &[answered(&[400])]),
        ("clerr", &[answered(&[400])]),
        ("ncl", &[answered(&[400])]),
        ("scalar02", &[answered(&[400])]),
        ("quotbal", &[answered(&[400])]),
        ("ltgtruri", &[answered(&[400])]),
        ("lwsruri", &[answered(&[400])]),
        ("lwsstart", &[answered(&[400])]),
        ("trws", &[answered(&[400])]),
        ("escruri", &[answered(&[400])]),
        ("regbadct", &[answered(&[400])]),
        ("badaspec", &[answered(&[400])]),
        ("baddn", &[answered(&[400])]),
        ("mismatch01", &[answered(&[400])]),
        ("insuf", &[answered(&[400])]),
        ("multi01", &[answered(&[400])]),
        ("mcl01", &[answered(&[400])]),
        ("badvers", &[answered(&[505])]),
        ("mismatch02", &[answered(&[501]), answered(&[400])]),
        ("baddate", &[Forwarded, answered(&[400])]),
        ("scalarlg", &[Silent]),
        ("bigcode", &[Silent]),
        ("unkscm", &[answered(&[416])]),
        ("novelsc", &[answered(&[416])]),
        ("bext01", &[answered(&[420])]),
        ("invut", &[answered(&[415])]),
        ("sdp01", &[answered(&[406])]),
        ("zeromf", &[answered(&[200]), answered(&[483])]),
        ("bcast", &[Silent]),
    ];
    let mut failures = Vec::new();
    for (name, allowed) in cases {
        let (outcome, _) = run(&load("rfc4475", name));
        if !allowed.contains(&outcome) {
            failures.push(format!(
                "{name}: got {outcome:?}, expected one of {allowed:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rfc4475_bext01_names_the_unsupported_extensions() {
    let (_, out) = run(&load("rfc4475", "bext01"));
    let text = String::from_utf8_lossy(&out.last().unwrap().1).into_owned();
    assert!(text.contains("Unsupported: "), "{text}");
    assert!(text.contains("nothingSupportsThis"), "{text}");
}

#[test]
fn rfc4475_bcast_sends_nothing_to_broadcast() {
    let (_, out) = run(&load("rfc4475", "bcast"));
    assert!(out
        .iter()
        .all(|(f, _)| !f.remote.ip().to_string().starts_with("255.")));
}

#[test]
fn rfc4475_test_dat_does_not_panic() {
    let _ = run(&load("rfc4475", "test"));
}

#[test]
fn rfc5118_outcomes() {
    use Outcome::*;
    let cases: &[(&str, &[Outcome])] = &[
        ("ipv4-mapped-ipv6", &[Forwarded]),
        ("ipv6-bad", &[answered(&[400])]),
        ("ipv6-bug-abnf-3-colons", &[answered(&[200])]),
        ("ipv6-correct-abnf-2-colons", &[answered(&[200])]),
        ("ipv6-good", &[answered(&[405])]),
        ("ipv6-in-sdp", &[Forwarded]),
        ("mult-ip-in-header", &[answered(&[481])]),
        ("mult-ip-in-sdp", &[Forwarded]),
        ("port-ambiguous", &[answered(&[405])]),
        ("port-unambiguous", &[answered(&[405])]),
        ("via-received-param-no-delim", &[answered(&[200])]),
        ("via-received-param-with-delim", &[answered(&[481])]),
    ];
    let mut failures = Vec::new();
    for (name, allowed) in cases {
        let (outcome, _) = run(&load("rfc5118", name));
        if !allowed.contains(&outcome) {
            failures.push(format!(
                "{name}: got {outcome:?}, expected one of {allowed:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_prefix_of_every_torture_message_is_handled_without_panic() {
    let mut fed = 0;
    for set in ["rfc4475", "rfc5118"] {
        let mut names: Vec<String> = std::fs::read_dir(corpus_dir().join(set))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| n.strip_suffix(".dat").map(str::to_string))
            .collect();
        names.sort();
        for name in names {
            let data = load(set, &name);
            let mut e = engine();
            let flow = Flow {
                transport: Transport::Udp,
                local: addr("127.0.0.1:5060"),
                remote: addr("127.0.0.10:5060"),
                conn: None,
            };
            for cut in 0..=data.len() {
                e.handle_datagram(Instant::now(), flow, &data[..cut]);
                while e.poll_output().is_some() {}
                fed += 1;
            }
            // And through the TCP framer, byte by byte.
            let mut framer = sluice_sip::StreamFramer::new(65535);
            for b in &data {
                framer.push(std::slice::from_ref(b));
                while let Some(frame) = framer.next_frame() {
                    if let Ok(sluice_sip::Frame::Message(m)) = frame {
                        e.handle_datagram(Instant::now(), flow, &m);
                    }
                }
            }
        }
    }
    assert!(fed > 10_000, "fed {fed} prefixes");
}
