//! DID pools at the scale of a large multi-tenant deployment: 100,000 ranges covering 10
//! million numbers, split between two tenants on one trunk. Prints the time to load such a
//! configuration (TOML parse and every check, the per-trunk overlap check included), the time
//! to build the routing table, the memory the table holds, lookups per second, and the cost of
//! normalising a number (libphonenumber) that every call pays twice.
//!
//! `cargo bench -p sluice-config --bench did_pools`
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::indexing_slicing
)]

use sluice_config::{Config, DEFAULT_CONFIG};
use sluice_routing::{DidIndex, Numbering};
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

const RANGES: u64 = 100_000;
const PER_RANGE: u64 = 100;
const FIRST: u64 = 12_000_000_000;

/// One tenant's pool: every other block of 100 numbers (tenant 0 the even blocks, 1 the odd).
fn pool(tenant: u64) -> String {
    let mut s = String::new();
    for i in (tenant..RANGES).step_by(2) {
        // Ranges 200 apart so that a tenant's ranges do not merge into one.
        let start = FIRST + i * PER_RANGE * 2;
        let _ = write!(s, "{}-{};", start, start + PER_RANGE - 1);
    }
    s
}

fn main() {
    let base = DEFAULT_CONFIG.replace("outbound_trunk = \"loop\"", "");
    let mut text = base.clone();
    for t in 0..2u64 {
        let _ = write!(
            text,
            "\n[[tenant]]\nname = \"t{t}\"\ndomains = [\"t{t}.example\"]\n[[tenant.trunk]]\nname = \"loop\"\ndids = \"{}\"\n",
            pool(t)
        );
    }
    let started = Instant::now();
    let cfg = Config::parse(&text, "bench.toml").expect("the configuration loads");
    let load = started.elapsed();

    let started = Instant::now();
    let pools: Vec<(String, sluice_routing::DidPool)> = cfg
        .tenants
        .iter()
        .map(|t| (t.name.get_ref().clone(), t.pools().remove(0).1))
        .collect();
    let refs: Vec<(&str, &sluice_routing::DidPool)> =
        pools.iter().map(|(n, p)| (n.as_str(), p)).collect();
    let index = DidIndex::new(&refs).expect("no overlap");
    let build = started.elapsed();
    let held = pools.iter().map(|(_, p)| p.heap_bytes()).sum::<usize>() + index.heap_bytes();
    let numbers: u64 = pools.iter().map(|(_, p)| p.numbers()).sum();
    let entries: usize = pools.iter().map(|(_, p)| p.entries()).sum::<usize>() + index.entries();

    // Lookups of random numbers across the covered span (half owned, half in the gaps).
    let span = RANGES * PER_RANGE * 2;
    let queries: Vec<String> = (0..1_000_000)
        .map(|_| (FIRST + fastrand::u64(0..span)).to_string())
        .collect();
    let started = Instant::now();
    let mut owned = 0u64;
    for q in &queries {
        if black_box(index.owner(black_box(q))).is_some() {
            owned += 1;
        }
    }
    let lookups = started.elapsed();

    let us = Numbering::new("US").expect("US");
    let n = 200_000;
    let per_number = |forms: &[&str]| {
        let started = Instant::now();
        for i in 0..n {
            black_box(us.normalise(black_box(forms[i % forms.len()])));
        }
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let valid = per_number(&[
        "+13322496213",
        "3322496213",
        "13322496213",
        "011442079460000",
    ]);
    let invalid = per_number(&["15552001111", "2001", "+15552230000"]);
    // Every number different: what a call pays for a number not seen lately.
    let started = Instant::now();
    for i in 0..n {
        let raw = format!("+1212555{:04}", i % 10_000);
        black_box(us.normalise_uncached(black_box(&raw)));
    }
    let uncached = started.elapsed().as_secs_f64() * 1e6 / n as f64;

    println!("DID pools: {RANGES} ranges, {numbers} numbers, 2 tenants on one trunk");
    println!(
        "  configuration load (TOML + checks): {:.0} ms",
        load.as_secs_f64() * 1e3
    );
    println!(
        "  routing index build:                {:.0} ms",
        build.as_secs_f64() * 1e3
    );
    println!("  entries held (pools + index):       {entries}");
    println!(
        "  memory of pools + index:            {:.1} MiB ({} bytes per entry)",
        held as f64 / 1_048_576.0,
        held / entries.max(1)
    );
    println!(
        "  lookups:                            {:.1} M/s ({:.0} ns each; {owned} of 1,000,000 owned)",
        queries.len() as f64 / lookups.as_secs_f64() / 1e6,
        lookups.as_nanos() as f64 / queries.len() as f64
    );
    println!(
        "  number normalisation, cached:       {valid:.3} us (valid), {invalid:.3} us (not valid)"
    );
    println!("  number normalisation, uncached (libphonenumber): {uncached:.2} us");
}
