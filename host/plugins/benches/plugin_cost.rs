//! What a plugin costs per SIP message, measured on real components (bundled plugins):
//!
//! 1. the message hook on a typical INVITE for chains of 0, 1 and 3 plugins, and a new call's
//!    whole plugin work (numbers, message, attestation);
//! 2. the interface choice: the same edit through a message handle (Sluice's interface) and
//!    through a copy of the whole message.
//!
//!     cargo bench -p sluice-plugins --bench plugin_cost
//!
//! `PLUGIN_COST_PROFILE=SECS` runs the three plugins' new call in a loop for a profiler, then
//! times its phases and its cost with cold caches; `PLUGIN_COST_COLD=ROUNDS` times a new call
//! through one plugin at a time with warm and cold caches; `PLUGIN_COST_COLD_LOOP=N` runs N new
//! calls through the three plugins, each after walking 48 MiB (the walk is its own function, so
//! a profile can leave it out), to show where a cold call spends its time.
//!
//! Prints median and p99 in microseconds. Results and the command are recorded in
//! bench/README.md.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use sluice_b2bua::{run_new_call, Direction, HookContext, Hooks, Side};
use sluice_plugins::{prepare, Chain, GenerationSpec, Limits, ModuleSource, PluginHost, Runtime};
use sluice_sip::{edit, parse_message, HeaderName, Message};
use sluice_transaction::Transport;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WARMUP: usize = 2_000;
const RUNS: usize = 20_000;

fn invite() -> Message {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
               a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
    let text = format!(
        "INVITE sip:5552234567@trunk.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bK74bf9a1c2d3e4f5a6b7c;rport\r\n\
         Max-Forwards: 69\r\n\
         From: \"Alice\" <sip:5557654321@192.0.2.1:5080>;tag=9fxced76sl\r\n\
         To: <sip:5552234567@trunk.example.com>\r\n\
         Call-ID: 3848276298220188511a8f0ea2b3c4d5\r\n\
         CSeq: 4711 INVITE\r\n\
         Contact: <sip:5557654321@192.0.2.1:5080>\r\n\
         P-Asserted-Identity: \"Alice\" <sip:5557654321@192.0.2.1:5080>\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO\r\n\
         Supported: timer\r\n\
         Session-Expires: 1800\r\n\
         User-Agent: Sluice\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    parse_message(text.as_bytes()).expect("sample INVITE")
}

fn ctx() -> HookContext<'static> {
    HookContext {
        call: 1,
        direction: Direction::Outbound,
        leg: Side::External,
        trunk: "t",
        tenant: None,
        source: "127.0.0.10:5060".parse().unwrap(),
        transport: Transport::Udp,
    }
}

struct Stats {
    median: f64,
    p99: f64,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Stats {
        median: us(v[v.len() / 2]),
        p99: us(v[v.len() * 99 / 100]),
    }
}

fn measure(mut f: impl FnMut() -> Duration) -> Stats {
    for _ in 0..WARMUP {
        f();
    }
    stats((0..RUNS).map(|_| f()).collect())
}

fn host_for(rt: &Arc<Runtime>, trunk: &str, extra: &str) -> PluginHost {
    let text = format!(
        "[internal]\nlisten = [ {{ transport = \"udp\", address = \"127.0.0.1:5060\" }} ]\n\
         [external]\nlisten = [ {{ transport = \"udp\", address = \"127.0.0.1:5080\" }} ]\n\
         [pbx]\nhost = \"127.0.0.10\"\n[routing]\noutbound_trunk = \"t\"\n\
         [[trunk]]\nname = \"t\"\nhost = \"127.0.0.20\"\n{trunk}\n{extra}\n"
    );
    let cfg = sluice_config::Config::parse(&text, "bench.toml").expect("config");
    let source = ModuleSource {
        dir: None,
        bundled: &sluice_bundled::get,
        bundled_names: sluice_bundled::names().collect(),
    };
    let spec = prepare(rt, &cfg, &source).expect("plugins");
    let mut host = PluginHost::new();
    host.install(spec);
    host
}

fn chains(rt: &Arc<Runtime>) {
    let cases: Vec<(&str, PluginHost)> = vec![
        ("0 plugins", empty_host()),
        ("1 plugin (generic brand)", host_for(rt, "", "")),
        (
            "1 plugin (tel-uri-request: rewrites the Request-URI)",
            host_for(
                rt,
                "brand = \"\"\noutbound_rules = [\"tel-uri-request\"]",
                "",
            ),
        ),
        (
            "1 plugin (header-rules: adds one header, removes one)",
            host_for(
                rt,
                "brand = \"\"\noutbound_rules = [\"acct\"]",
                "[plugin.acct]\nmodule = \"header-rules\"\n\
                 settings = { rules = [\"add X-Account: 1234\", \"remove User-Agent\"] }",
            ),
        ),
        (
            "3 plugins (twilio brand, tel-uri-request, header-rules)",
            three_plugins(rt),
        ),
    ];
    let base = invite();
    println!(
        "message hook on a typical INVITE ({} bytes), per message:",
        base.to_bytes().len()
    );
    for (name, mut host) in cases {
        let g = host.current();
        let c = ctx();
        let s = measure(|| {
            let mut m = base.clone();
            let mut o = base.clone();
            let t = Instant::now();
            let v = host.message(g, &c, &mut m, &mut o);
            let d = t.elapsed();
            std::hint::black_box((v, m));
            d
        });
        println!(
            "  {name:<58} median {:>7.2} us   p99 {:>7.2} us",
            s.median, s.p99
        );
        let s = measure(|| {
            let mut m = base.clone();
            let t = Instant::now();
            let mut o = m.clone();
            let v = run_new_call(&mut host, g, &c, &mut m, &mut o);
            let d = t.elapsed();
            std::hint::black_box((v, m));
            d
        });
        println!(
            "  {:<58} median {:>7.2} us   p99 {:>7.2} us",
            "  new call: numbers + message + attestation", s.median, s.p99
        );
    }
}

/// The interface choice, on one engine: a handle the guest reads through, or a copy.
mod iface {
    wasmtime::component::bindgen!({
        path: "../../tests/plugins/iface-bench/wit",
        world: "sluice:iface-bench/bench",
        with: { "sluice:iface-bench/msg.sip-message": super::Handle },
    });
}

pub struct Handle;

struct BenchState {
    shim: sluice_plugins::state::PluginState,
    msg: Message,
}

use iface::sluice::iface_bench::msg as m;
use wasmtime::component::Resource;

impl m::HostSipMessage for BenchState {
    fn request_uri(&mut self, _: Resource<Handle>) -> Option<String> {
        self.msg.request_uri().map(str::to_string)
    }
    fn get(&mut self, _: Resource<Handle>, name: String) -> Option<String> {
        self.msg
            .headers
            .get(&HeaderName::parse(&name))
            .map(str::to_string)
    }
    fn set(&mut self, _: Resource<Handle>, name: String, value: String) -> Result<(), String> {
        edit::set_header(&mut self.msg, &name, &value).map_err(|e| e.to_string())
    }
    fn drop(&mut self, _: Resource<Handle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl m::Host for BenchState {}

struct ShimOf;
impl wasmtime::component::HasData for ShimOf {
    type Data<'a> = &'a mut sluice_plugins::state::PluginState;
}

fn interface() {
    use wasmtime::component::{Component, HasSelf, Linker};
    let bytes = std::fs::read(sluice_e2e::test_plugin("iface-bench")).expect("iface-bench.wasm");
    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, bytes).expect("compile");
    let mut linker: Linker<BenchState> = Linker::new(&engine);
    sluice_plugins::wasi::bindings::Shim::add_to_linker::<BenchState, ShimOf>(&mut linker, |s| {
        &mut s.shim
    })
    .expect("wasi");
    iface::Bench::add_to_linker::<BenchState, HasSelf<BenchState>>(&mut linker, |s| s)
        .expect("link");
    let ident = Arc::new(sluice_plugins::state::Ident {
        name: "iface-bench".into(),
        module: "iface-bench".into(),
        reported_name: "iface-bench".into(),
        version: "0".into(),
        settings: Default::default(),
        log: sluice_plugins::log_budget::LogBudget::with_counter(metrics::Counter::noop()),
    });
    let mut store = wasmtime::Store::new(
        &engine,
        BenchState {
            shim: sluice_plugins::state::PluginState::new(ident, 64 << 20),
            msg: Message::default(),
        },
    );
    let bench = iface::Bench::instantiate(&mut store, &component, &linker).expect("instantiate");
    let base = invite();
    println!("interface: read Request-URI and To, write To (same guest work), per message:");
    let s = measure(|| {
        let t = Instant::now();
        store.data_mut().msg = base.clone();
        let ok = bench
            .call_by_handle(&mut store, Resource::new_borrow(0))
            .expect("by-handle");
        let d = t.elapsed();
        assert!(ok && store.data().msg.headers.get(&HeaderName::To) == Some("<tel:5552234567>"));
        d
    });
    println!(
        "  {:<58} median {:>7.2} us   p99 {:>7.2} us",
        "by handle (Sluice's interface)", s.median, s.p99
    );
    let s = measure(|| {
        let t = Instant::now();
        let mut msg = base.clone();
        let whole = m::WholeMessage {
            start_line: match &msg.start {
                sluice_sip::StartLine::Request { method, uri } => format!("{method} {uri} SIP/2.0"),
                sluice_sip::StartLine::Response { status, reason } => {
                    format!("SIP/2.0 {status} {reason}")
                }
            },
            headers: msg
                .headers
                .iter()
                .map(|h| m::Header {
                    name: h.name.as_str().to_string(),
                    value: h.value.clone(),
                })
                .collect(),
            body: msg.body.to_vec(),
        };
        let edits = bench.call_by_copy(&mut store, &whole).expect("by-copy");
        for e in edits {
            edit::set_header(&mut msg, &e.name, &e.value).expect("edit");
        }
        let d = t.elapsed();
        assert_eq!(msg.headers.get(&HeaderName::To), Some("<tel:5552234567>"));
        d
    });
    println!(
        "  {:<58} median {:>7.2} us   p99 {:>7.2} us",
        "by copy of the whole message", s.median, s.p99
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this once with no argument:
    // keep that quick by doing nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = Runtime::new(
        Limits {
            deadline: Duration::from_millis(5),
            memory_bytes: 16 << 20,
            max_instances: 32,
        },
        true,
    )
    .expect("runtime");
    // For a profiler: only the three plugins' new call, in a loop for that many seconds.
    if let Some(secs) = std::env::var("PLUGIN_COST_PROFILE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        profile_new_call(&rt, Duration::from_secs(secs));
        return;
    }
    // Which plugin's work costs most with cold caches: one plugin at a time, that many rounds.
    if let Some(rounds) = std::env::var("PLUGIN_COST_COLD")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        cold_by_plugin(&rt, rounds.max(1));
        return;
    }
    // For a profiler: that many new calls through the three plugins, each after a walk over
    // 48 MiB (beyond L3), so that the profile shows where a cold call spends its time.
    if let Some(n) = std::env::var("PLUGIN_COST_COLD_LOOP")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        cold_loop(&rt, n);
        return;
    }
    chains(&rt);
    interface();
}

fn cold_loop(rt: &Arc<Runtime>, n: usize) {
    let mut host = three_plugins(rt);
    let (g, c, base) = (host.current(), ctx(), invite());
    let mut junk = vec![0u8; 48 << 20];
    let mut total = Duration::ZERO;
    for _ in 0..n {
        walk(&mut junk);
        let mut m = base.clone();
        let mut o = m.clone();
        let t = Instant::now();
        std::hint::black_box(run_new_call(&mut host, g, &c, &mut m, &mut o));
        total += t.elapsed();
    }
    println!(
        "{n} cold new calls, {:.2} us each",
        total.as_secs_f64() * 1e6 / n as f64
    );
}

#[inline(never)]
fn walk(junk: &mut [u8]) {
    for b in junk.iter_mut().step_by(64) {
        *b = b.wrapping_add(1);
    }
}

/// A new call's median cost with warm caches and after `mib` MiB of memory was walked.
fn cold_cost(host: &mut PluginHost, base: &Message, mib: usize) -> (f64, f64) {
    walked_cost(host, base, mib, 64)
}

/// [`cold_cost`], touching one byte in every `stride` bytes of the walk: 64 walks every cache
/// line (caches and TLB cold); 4096 one line per page (the TLB cold, the caches barely).
fn walked_cost(host: &mut PluginHost, base: &Message, mib: usize, stride: usize) -> (f64, f64) {
    let (g, c) = (host.current(), ctx());
    let mut junk = vec![0u8; mib << 20];
    let (mut warm, mut cold) = (Vec::new(), Vec::new());
    for i in 0..1_000u32 {
        if i % 2 == 1 {
            for b in junk.iter_mut().step_by(stride) {
                *b = b.wrapping_add(1);
            }
        }
        let mut m = base.clone();
        let mut o = m.clone();
        let t = Instant::now();
        std::hint::black_box(run_new_call(host, g, &c, &mut m, &mut o));
        let d = t.elapsed();
        if i % 2 == 1 {
            cold.push(d);
        } else {
            warm.push(d);
        }
    }
    std::hint::black_box(&junk);
    (stats(warm).median, stats(cold).median)
}

fn profile_new_call(rt: &Arc<Runtime>, secs: Duration) {
    let mut host = three_plugins(rt);
    let (g, c, base) = (host.current(), ctx(), invite());
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < secs {
        let mut m = base.clone();
        let mut o = m.clone();
        std::hint::black_box(run_new_call(&mut host, g, &c, &mut m, &mut o));
        n += 1;
    }
    println!(
        "{n} new calls, {:.2} us each (with two message copies)",
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let runs = (n / 4).max(1);
    let per = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / runs as f64;
    let t = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(host.number(g, &c, sluice_b2bua::NumberKind::Called, "5552234567"));
    }
    println!("one number hook: {:.2} us", per(t));
    let t = Instant::now();
    for _ in 0..runs {
        let mut m = base.clone();
        sluice_sip::edit::normalize_numbers(&mut m, |_, n| Some(format!("+1{n}")));
        std::hint::black_box(m);
    }
    println!(
        "numbers rewritten without plugins (one message copy): {:.2} us",
        per(t)
    );
    // The same new call with the caches cold, as in a process that does other work between
    // calls: memory walked before every other call, beyond L2 (8 MiB) and beyond L3 (48 MiB
    // on this machine); and the same without plugins, for comparison.
    let mut empty = empty_host();
    for mib in [8, 48] {
        let (warm, cold) = cold_cost(&mut host, &base, mib);
        let (warm0, cold0) = cold_cost(&mut empty, &base, mib);
        println!(
            "new call, caches warm / after {mib} MiB walked: three plugins {warm:.2} / \
             {cold:.2} us, no plugin {warm0:.2} / {cold0:.2} us"
        );
    }
    phases(&mut host, &base, runs);
}

/// A new call through one plugin at a time, warm and after 48 MiB walked (beyond L3), and
/// through the three plugins after a walk that leaves the caches warm but not the TLB:
/// medians of `rounds` rounds of 500 calls each.
fn cold_by_plugin(rt: &Arc<Runtime>, rounds: usize) {
    let base = invite();
    let acct = "[plugin.acct]\nmodule = \"header-rules\"\n\
                settings = { rules = [\"add X-Account: 1234\", \"remove User-Agent\"] }";
    let sets = [
        ("no plugin", None),
        ("generic brand (numbers)", Some(("brand = \"generic\"", ""))),
        ("twilio brand (numbers)", Some(("brand = \"twilio\"", ""))),
        (
            "tel-uri-request (+ generic numbers)",
            Some(("outbound_rules = [\"tel-uri-request\"]", "")),
        ),
        (
            "header-rules (+ generic numbers)",
            Some(("outbound_rules = [\"acct\"]", acct)),
        ),
    ];
    let median_of = |v: Vec<f64>| {
        let mut v = v;
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("new call, median of {rounds} rounds: caches warm / after 48 MiB walked (L3 cold)");
    for (name, set) in sets {
        let mut host = match set {
            None => empty_host(),
            Some((trunk, extra)) => host_for(rt, trunk, extra),
        };
        let (warm, cold): (Vec<f64>, Vec<f64>) =
            (0..rounds).map(|_| cold_cost(&mut host, &base, 48)).unzip();
        println!(
            "  {name:<38} {:6.2} / {:6.2} us",
            median_of(warm),
            median_of(cold)
        );
    }
    let mut host = three_plugins(rt);
    let (warm, cold): (Vec<f64>, Vec<f64>) = (0..rounds)
        .map(|_| walked_cost(&mut host, &base, 48, 4096))
        .unzip();
    println!(
        "  three plugins, one line per page walked  {:6.2} / {:6.2} us (TLB cold, caches warm)",
        median_of(warm),
        median_of(cold)
    );
}

/// A new call's phases, timed apart over `runs` calls.
fn phases(host: &mut PluginHost, base: &Message, runs: u64) {
    let (g, c) = (host.current(), ctx());
    let mut phases = [Duration::ZERO; 4];
    for _ in 0..runs {
        let mut m = base.clone();
        let mut o = m.clone();
        let t0 = Instant::now();
        let _ = sluice_b2bua::hooks::run_number_hooks(host, g, &c, &mut m);
        let t1 = Instant::now();
        let _ = host.message(g, &c, &mut m, &mut o);
        let t2 = Instant::now();
        let _ = host.attestation(g, &c, &mut m);
        let t3 = Instant::now();
        sluice_b2bua::hooks::with_keys_hidden(&mut m, &mut o, |_, _| ());
        let t4 = Instant::now();
        for (p, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
            *p += d;
        }
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / runs as f64;
    println!(
        "numbers {:.2} us, message {:.2} us, attestation {:.2} us, key hiding {:.2} us",
        per(phases[0]),
        per(phases[1]),
        per(phases[2]),
        per(phases[3])
    );
}

/// A host with no plugin on trunk `t`.
fn empty_host() -> PluginHost {
    let mut empty = PluginHost::new();
    empty.install(GenerationSpec {
        plugins: Vec::new(),
        chains: HashMap::from([("t".to_string(), Chain::default())]),
        fingerprint: "empty".into(),
    });
    empty
}

/// The benchmark's chain: the twilio brand, tel-uri-request and header-rules.
fn three_plugins(rt: &Arc<Runtime>) -> PluginHost {
    host_for(
        rt,
        "brand = \"twilio\"\noutbound_rules = [\"tel-uri-request\", \"acct\"]",
        "[plugin.acct]\nmodule = \"header-rules\"\n\
         settings = { rules = [\"add X-Account: 1234\", \"remove User-Agent\"] }",
    )
}
