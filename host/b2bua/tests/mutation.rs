//! Mutation testing of every input path on stable Rust: seeded mutations of the torture corpus
//! and of well-formed messages (with the multi-byte UTF-8 and SIP tokens of `fuzz/sip.dict`)
//! fed to the engine as UDP datagrams from both sides and as a TCP stream through the framer,
//! with time moving so that timers fire. Any panic fails the test and prints the input that
//! caused it, escaped, ready to become a regression case.
//!
//! Bounded in count and time: `SLUICE_MUTATIONS` (default 400,000) and 60 s, whichever comes
//! first; `SLUICE_MUTATION_SEED` picks another seed. The cargo-fuzz targets in `fuzz/` run the
//! same entry points under libFuzzer where a fuzzing toolchain is available.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::{addr, corpus_dir, corpus_names, engine, load};
use sluice_sip::{Frame, StreamFramer};
use sluice_transaction::{Flow, Transport};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Tokens of a libFuzzer dictionary file: `"..."` lines with `\xNN` and `\\` escapes.
fn dictionary() -> Vec<Vec<u8>> {
    let path = corpus_dir().join("../../fuzz/sip.dict");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(body) = line
            .trim()
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
        else {
            continue;
        };
        let mut token = Vec::new();
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match (bytes[i], bytes.get(i + 1)) {
                (b'\\', Some(b'x')) => {
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                    token.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                }
                (b'\\', Some(&c)) => {
                    token.push(c);
                    i += 2;
                }
                (b, _) => {
                    token.push(b);
                    i += 1;
                }
            }
        }
        out.push(token);
    }
    assert!(out.len() > 50, "dictionary too small: {}", out.len());
    assert!(
        out.iter().any(|t| t == "é".as_bytes()),
        "the dictionary has multi-byte UTF-8"
    );
    out
}

/// Well-formed messages of every kind the engine handles, beside the torture corpus.
fn well_formed() -> Vec<Vec<u8>> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.10\r\ns=-\r\nc=IN IP4 127.0.0.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    let head = |start: &str, cseq: &str, extra: &str, body: &str| {
        format!(
            "{start}\r\nVia: SIP/2.0/UDP 127.0.0.10:5060;branch=z9hG4bKseed;rport\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:2001@127.0.0.10>;tag=seed\r\nTo: <sip:15552001111@127.0.0.1>\r\nCall-ID: seed@127.0.0.10\r\nCSeq: {cseq}\r\nContact: <sip:2001@127.0.0.10:5060>\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    vec![
        head(
            "INVITE sip:15552001111@127.0.0.1 SIP/2.0",
            "1 INVITE",
            "Content-Type: application/sdp\r\nP-Asserted-Identity: <sip:+15552230000@pbx>\r\nSupported: timer\r\n",
            sdp,
        ),
        head("OPTIONS sip:127.0.0.1 SIP/2.0", "1 OPTIONS", "", ""),
        head("BYE sip:x@127.0.0.1 SIP/2.0", "2 BYE", "", ""),
        head("CANCEL sip:15552001111@127.0.0.1 SIP/2.0", "1 CANCEL", "", ""),
        head("ACK sip:x@127.0.0.1 SIP/2.0", "1 ACK", "", ""),
        head("SIP/2.0 180 Ringing", "1 INVITE", "", ""),
        head("SIP/2.0 200 OK", "1 INVITE", "Content-Type: application/sdp\r\n", sdp),
        head("SIP/2.0 486 Busy Here", "1 INVITE", "", ""),
        b"\r\n\r\n".to_vec(),
    ]
}

fn corpus() -> Vec<Vec<u8>> {
    let mut seeds = well_formed();
    for set in ["rfc4475", "rfc5118"] {
        seeds.extend(corpus_names(set).iter().map(|n| load(set, n)));
    }
    seeds
}

fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>], dict: &[Vec<u8>]) -> Vec<u8> {
    let mut m = seeds[rng.usize(..seeds.len())].clone();
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(..=m.len());
        match rng.u8(..8) {
            0 | 1 => {
                let t = &dict[rng.usize(..dict.len())];
                m.splice(at..at, t.iter().copied());
            }
            2 => {
                let t = &dict[rng.usize(..dict.len())];
                let end = (at + t.len()).min(m.len());
                m.splice(at..end, t.iter().copied());
            }
            3 if !m.is_empty() => {
                let i = rng.usize(..m.len());
                m[i] = rng.u8(..);
            }
            4 => {
                let end = (at + rng.usize(1..=16)).min(m.len());
                m.drain(at..end);
            }
            5 => {
                let end = (at + rng.usize(1..=32)).min(m.len());
                let copy = m[at..end].to_vec();
                m.splice(at..at, copy);
            }
            6 => {
                let other = &seeds[rng.usize(..seeds.len())];
                let from = rng.usize(..=other.len());
                m.truncate(at);
                m.extend_from_slice(&other[from..]);
            }
            _ => m.truncate(at),
        }
    }
    m
}

fn escaped(data: &[u8]) -> String {
    data.escape_ascii().to_string()
}

#[test]
fn mutated_messages_never_panic_on_any_input_path() {
    let count: u64 = std::env::var("SLUICE_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    let seed: u64 = std::env::var("SLUICE_MUTATION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5_1u64 << 32 | 0xCE);
    let budget = Duration::from_secs(60);
    let seeds = corpus();
    let dict = dictionary();
    let mut rng = fastrand::Rng::with_seed(seed);
    let pbx = Flow {
        transport: Transport::Udp,
        local: addr("127.0.0.1:5060"),
        remote: addr("127.0.0.10:5060"),
        conn: None,
    };
    let trunk = Flow {
        transport: Transport::Udp,
        local: addr("127.0.0.1:5080"),
        remote: addr("127.0.0.20:5060"),
        conn: None,
    };
    let stream = Flow {
        transport: Transport::Tcp,
        conn: Some(1),
        ..pbx
    };
    let started = Instant::now();
    let mut now = Instant::now();
    let mut e = engine();
    let mut framer = StreamFramer::new(65_535);
    let mut done = 0u64;
    let mut multi_byte = 0u64;
    while done < count && started.elapsed() < budget {
        if done.is_multiple_of(2_000) {
            // A fresh engine and stream now and then: state stays bounded, and every input
            // path is also tried on a clean engine.
            e = engine();
            framer = StreamFramer::new(65_535);
        }
        let input = mutate(&mut rng, &seeds, &dict);
        if input.iter().any(|&b| b >= 0x80) {
            multi_byte += 1;
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            let flow = if rng.bool() { pbx } else { trunk };
            e.handle_datagram(now, flow, &input);
            // The same bytes on a stream, cut at a random place.
            let cut = rng.usize(..=input.len());
            for part in [&input[..cut], &input[cut..]] {
                framer.push(part);
                while let Some(frame) = framer.next_frame() {
                    match frame {
                        Ok(Frame::Message(m)) => e.handle_datagram(now, stream, &m),
                        Ok(Frame::Ping) => {}
                        Err(err) => {
                            if let Some(head) = err.head {
                                e.handle_unframed(now, stream, &head, (err.status, err.reason));
                            }
                            framer = StreamFramer::new(65_535);
                        }
                    }
                }
            }
            if rng.u8(..16) == 0 {
                now += Duration::from_millis(rng.u64(1..40_000));
                e.handle_timeout(now);
            }
            while e.poll_output().is_some() {}
        }));
        if r.is_err() {
            panic!(
                "panic on input {done} (seed {seed}): b\"{}\"",
                escaped(&input)
            );
        }
        done += 1;
    }
    eprintln!(
        "{done} mutated inputs ({multi_byte} with bytes above 0x7f) in {:?}, seed {seed}",
        started.elapsed()
    );
    // Bounded by time on a slow machine, but never vacuous.
    assert!(done >= 5_000, "only {done} inputs ran");
    assert!(
        multi_byte * 4 >= done,
        "too few multi-byte inputs: {multi_byte} of {done}"
    );
}
