//! STIR/SHAKEN work per call on one core: signing an outbound call's PASSporT (what a trunk
//! that signs adds), and verifying an inbound one in full (header parsed, PASSporT decoded,
//! the chain checked to the anchor, the signature, iat and numbers), its certificate already
//! cached. Prints operations per second and microseconds per operation, CPU time of this
//! thread, best of 5 runs of N operations (N = 2000 by default, `STIR_BENCH_N`).
#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

use sluice_stir::verify::{finish, start, Policy, Started};
use sluice_stir::{Attest, Certificate, Claims, Expect, Signer};
use std::time::Duration;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

/// CPU time of this thread.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime: fields 14 and 15 (1-based), 11 and 12 after the command name's ')'.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn best_of<F: FnMut()>(n: u32, mut op: F) -> Duration {
    (0..5)
        .map(|_| {
            let cpu = thread_cpu();
            let wall = std::time::Instant::now();
            for _ in 0..n {
                op();
            }
            // Ticks are 10 ms: below a few ticks, wall time (one busy thread) is the measure.
            let c = thread_cpu() - cpu;
            if c >= Duration::from_millis(100) {
                c / n
            } else {
                wall.elapsed() / n
            }
        })
        .min()
        .unwrap()
}

fn main() {
    let n: u32 = std::env::var("STIR_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let x5u = "https://certs.example.net/shaken.pem";
    let signer =
        Signer::from_pem(&String::from_utf8(data("signer-sec1.pem")).unwrap(), x5u).unwrap();
    let now = 1_800_000_000;
    let sign = best_of(n, || {
        let claims = Claims::new(Attest::A, "15552011111", "15559870000", now);
        std::hint::black_box(signer.identity(&claims));
    });
    let policy = Policy {
        anchors: Certificate::chain_from_pem(&data("ca.pem")).unwrap(),
        max_age: 60,
        allowed_hosts: Vec::new(),
        allow_http: false,
    };
    let value = signer.identity(&Claims::new(Attest::A, "15552011111", "15559870000", now));
    let chain = data("shaken-chain.pem");
    let expect = Expect {
        now,
        max_age: 60,
        orig: "15552011111",
        dest: "15559870000",
    };
    let verify = best_of(n, || {
        let Started::Fetch { identity, .. } = start(&policy, [value.as_str()]) else {
            panic!("fetch expected");
        };
        let outcome = finish(&policy, &identity, Ok(&chain), expect);
        assert!(matches!(
            outcome,
            sluice_stir::verify::Outcome::Passed { .. }
        ));
    });
    for (what, d) in [("sign", sign), ("verify (chain + PASSporT)", verify)] {
        println!(
            "{what}: {:.1} us per call, {:.0} per second per core",
            d.as_secs_f64() * 1e6,
            1.0 / d.as_secs_f64()
        );
    }
}
