//! The RFC 4475 and RFC 5118 torture messages through the whole engine (message layer,
//! transactions, B2BUA), checking the answer each must get. The corpus is in
//! `tests/conformance/`.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use sluice_b2bua::testing::{addr, corpus_names, engine, load};
use sluice_b2bua::Output;
use sluice_sip::{parse_message, Method};
use sluice_transaction::{Flow, Transport};
use std::time::Instant;

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
        .filter_map(|o| match o {
            Output::Transmit { flow, data } => Some((flow, data.to_vec())),
            Output::Media(_) | Output::Forward { .. } | Output::FetchCertificate { .. } => None,
        })
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
        // A MESSAGE outside any dialog: parsed, then refused by policy (`sip.unsolicited`).
        ("mpart01", &[answered(&[403])]),
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

/// The stray responses of the corpus are silent whatever happens to them (a response that
/// matches nothing is dropped, and so is a malformed one), so their outcome above cannot tell a
/// correct parse from a wrong one: check the message layer's verdict on each directly.
#[test]
fn rfc4475_stray_responses_get_the_right_parse_verdict() {
    use sluice_sip::validate;
    let cases: &[(&str, Result<u16, &str>)] = &[
        // A reason phrase in UTF-8 with odd characters is well-formed.
        ("unreason", Ok(200)),
        // An empty reason phrase is well-formed.
        ("noreason", Ok(100)),
        // A broadcast address in the second Via is well-formed (it is what a proxy must not
        // forward to, which the bcast outcome test checks).
        ("bcast", Ok(200)),
        // A status code beyond three digits is not a status line.
        ("bigcode", Err("malformed status code")),
        // A CSeq number beyond 2**31 is invalid (RFC 3261 §8.1.1.5).
        ("scalarlg", Err("Malformed CSeq")),
    ];
    for (name, want) in cases {
        let data = load("rfc4475", name);
        let got = parse_message(&data)
            .map_err(|e| e.reason)
            .and_then(|m| validate(&m).map(|()| m).map_err(|r| r.reason))
            .map(|m| m.status().unwrap_or(0));
        assert_eq!(&got, want, "{name}");
    }
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
        for name in corpus_names(set) {
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
