//! The plugin host without sockets: chains over real components (the bundled plugins and the
//! test kit), failure handling and policies, refused modules, generations across reloads.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use sluice_b2bua::{
    run_new_call, Direction, HookContext, HookVerdict, Hooks, NewCallOutcome, Side,
};
use sluice_config::Config;
use sluice_plugins::{load, prepare, Limits, ModuleSource, PluginHost, PluginSpec, Runtime};
use sluice_sip::{parse_message, HeaderName, Message};
use sluice_transaction::Transport;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn runtime() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new(
            Limits {
                deadline: Duration::from_millis(5),
                memory_bytes: 16 << 20,
                max_instances: 64,
            },
            true,
        )
        .expect("plugin runtime")
    })
    .clone()
}

fn bundled(name: &str) -> Option<&'static [u8]> {
    if name.starts_with("testkit") || ["old-abi", "abi-020", "raw-reason"].contains(&name) {
        let bytes = std::fs::read(sluice_e2e::test_plugin(name)).ok()?;
        return Some(Box::leak(bytes.into_boxed_slice()));
    }
    sluice_bundled::get(name)
}

fn source() -> ModuleSource<'static> {
    ModuleSource {
        dir: None,
        bundled: &bundled,
        bundled_names: sluice_bundled::names().collect(),
    }
}

const BASE: &str = r#"
[internal]
listen = [ { transport = "udp", address = "127.0.0.1:5060" } ]
[external]
listen = [ { transport = "udp", address = "127.0.0.1:5080" } ]
[pbx]
host = "127.0.0.10"
[routing]
outbound_trunk = "t"
"#;

fn config(trunk: &str, plugins: &str) -> Config {
    let text =
        format!("{BASE}\n[[trunk]]\nname = \"t\"\nhost = \"127.0.0.20\"\n{trunk}\n{plugins}");
    Config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn host_for(trunk: &str, plugins: &str) -> PluginHost {
    let spec =
        prepare(&runtime(), &config(trunk, plugins), &source()).unwrap_or_else(|e| panic!("{e}"));
    let mut host = PluginHost::new();
    assert!(host.install(spec).is_some());
    host
}

fn invite(called: &str) -> Message {
    let text = format!(
        "INVITE sip:{called}@trunk.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKt;rport\r\n\
         Max-Forwards: 69\r\n\
         From: <sip:+15557654321@127.0.0.1:5080>;tag=a\r\n\
         To: <sip:{called}@trunk.example.com>\r\n\
         Call-ID: c\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:+15557654321@127.0.0.1:5080>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    parse_message(text.as_bytes()).unwrap()
}

fn ctx(leg: Side) -> HookContext<'static> {
    HookContext {
        call: 7,
        direction: if leg == Side::External {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        leg,
        trunk: "t",
        tenant: None,
        source: "127.0.0.10:5060".parse().unwrap(),
        transport: Transport::Udp,
    }
}

/// A new call's INVITE through the host, by the engine's own sequence (numbers, then the
/// message chain, then the attestation).
fn new_call(host: &mut PluginHost, leg: Side, msg: &mut Message) -> HookVerdict {
    let g = host.current();
    let c = ctx(leg);
    let mut original = msg.clone();
    match run_new_call(host, g, &c, msg, &mut original) {
        NewCallOutcome::Continue { .. } => HookVerdict::Continue,
        NewCallOutcome::Refuse { status, reason } => HookVerdict::Reject { status, reason },
    }
}

#[test]
fn brand_and_rule_sets_in_order() {
    // Outbound: rule sets, then the brand. strip-plus (a rule set) sees +1555…, voipms (the
    // brand) writes digits either way; tel-uri-request writes tel: in the Request-Line.
    let mut host = host_for(
        "brand = \"voipms\"\noutbound_rules = [\"tel-uri-request\", \"tel-uri-to\"]",
        "",
    );
    let mut msg = invite("+15552234567");
    assert_eq!(
        new_call(&mut host, Side::External, &mut msg),
        HookVerdict::Continue
    );
    // tel: URIs are global (RFC 3966): the digits the brand wrote, made E.164 again.
    assert_eq!(msg.request_uri(), Some("tel:+15552234567"));
    assert_eq!(msg.headers.get(&HeaderName::To), Some("<tel:+15552234567>"));
    assert_eq!(
        msg.headers.get(&HeaderName::From),
        Some("<sip:15557654321@127.0.0.1:5080>;tag=a")
    );
    // A re-INVITE (its To has a tag: Sluice tells the plugins it is no initial request) is
    // left alone by both rule sets.
    let mut reinvite = invite("+15552234567");
    let to = reinvite.headers.get(&HeaderName::To).unwrap().to_string();
    reinvite
        .headers
        .set(HeaderName::To, format!("{to};tag=far"));
    let mut original = reinvite.clone();
    let g = host.current();
    assert_eq!(
        host.message(g, &ctx(Side::External), &mut reinvite, &mut original),
        HookVerdict::Continue
    );
    assert_eq!(
        reinvite.request_uri(),
        Some("sip:+15552234567@trunk.example.com")
    );
    assert_eq!(
        reinvite.headers.get(&HeaderName::To),
        Some("<sip:+15552234567@trunk.example.com>;tag=far")
    );
    // Inbound (toward the PBX): the brand writes E.164 with +, the outbound rule sets do not run.
    let mut msg = invite("15552234567");
    assert_eq!(
        new_call(&mut host, Side::Internal, &mut msg),
        HookVerdict::Continue
    );
    assert_eq!(
        msg.request_uri(),
        Some("sip:+15552234567@trunk.example.com")
    );
}

#[test]
fn declared_numbers_are_written_by_sluice_without_the_hook() {
    // testkit declares E.164 with country code 44, and its number hook writes +999 whenever it
    // is called: Sluice writes the declared format itself.
    let tk = "[plugin.tk]\nmodule = \"testkit\"\nsettings = { number_country = \"44\" }";
    let mut host = host_for("brand = \"tk\"", tk);
    let mut msg = invite("02079460018");
    assert_eq!(
        new_call(&mut host, Side::External, &mut msg),
        HookVerdict::Continue
    );
    assert_eq!(
        msg.request_uri(),
        Some("sip:+442079460018@trunk.example.com")
    );
    assert_eq!(
        msg.headers.get(&HeaderName::To),
        Some("<sip:+442079460018@trunk.example.com>")
    );
    // In its place in the chain: outbound rule sets first (strip-plus, through its hook), then
    // the brand (voipms, declared: `nanp` toward the trunk). In the other order voipms would
    // write 011442079460018 and strip-plus would find no + to strip.
    let mut host = host_for("brand = \"voipms\"\noutbound_rules = [\"strip-plus\"]", "");
    let mut msg = invite("+442079460018");
    assert_eq!(
        new_call(&mut host, Side::External, &mut msg),
        HookVerdict::Continue
    );
    assert_eq!(
        msg.request_uri(),
        Some("sip:442079460018@trunk.example.com")
    );
    // A policy Sluice cannot apply refuses the plugin at load.
    let rt = runtime();
    let mut s = spec("testkit", bundled("testkit").unwrap());
    s.settings
        .insert("number_country".into(), vec!["1234".into()]);
    let e = load(&rt, &s).err().unwrap();
    assert!(e.contains("country code `1234`"), "{e}");
}

#[test]
fn declared_edits_are_made_by_sluice_without_the_hook() {
    // kit (testkit, `tag`: its hook adds X-Testkit) declares two edits; the header-rules on
    // either side keep theirs in their hooks (a copy rule), so the order shows: `after` copies
    // what kit set, `before`'s X-Step was replaced.
    let plugins = "[plugin.before]\nmodule = \"header-rules\"\n\
                   settings = { rules = [\"set X-Step: before\", \"copy X-Step -> X-Before\"] }\n\
                   [plugin.kit]\nmodule = \"testkit\"\n\
                   settings = { declare = [\"set X-Step: kit\", \"remove Subject\"] }\n\
                   [plugin.after]\nmodule = \"header-rules\"\n\
                   settings = { rules = [\"copy X-Step -> X-After\"] }";
    let mut host = host_for("outbound_rules = [\"before\", \"kit\", \"after\"]", plugins);
    let mut msg = invite("+15552234567");
    msg.headers.push(HeaderName::Subject, "s");
    assert_eq!(
        new_call(&mut host, Side::External, &mut msg),
        HookVerdict::Continue
    );
    let h = |m: &Message, n: &str| m.headers.get(&HeaderName::parse(n)).map(str::to_string);
    assert_eq!(h(&msg, "X-Before").as_deref(), Some("before"));
    assert_eq!(h(&msg, "X-Step").as_deref(), Some("kit"));
    assert_eq!(h(&msg, "X-After").as_deref(), Some("kit"));
    assert_eq!(h(&msg, "Subject"), None);
    assert_eq!(h(&msg, "X-Testkit"), None, "the hook was entered");

    // A message the edits would take past the line limit is left as it was; fail-closed
    // refuses it.
    for (policy, verdict) in [
        ("fail-open", HookVerdict::Continue),
        (
            "fail-closed",
            HookVerdict::Reject {
                status: 500,
                reason: "Plugin Failure".into(),
            },
        ),
    ] {
        let mut host = host_for(
            "outbound_rules = [\"kit\"]",
            &format!(
                "[plugin.kit]\nmodule = \"testkit\"\npolicy = \"{policy}\"\n\
                 settings = {{ declare = [\"add X-Kit: 1\"] }}"
            ),
        );
        let mut msg = invite("+15552234567");
        while msg.headers.len() < sluice_sip::edit::MAX_HEADERS {
            msg.headers.push(HeaderName::parse("X-Filler"), "x");
        }
        let before = msg.headers.len();
        assert_eq!(new_call(&mut host, Side::External, &mut msg), verdict);
        assert_eq!(msg.headers.len(), before, "{policy}");
        assert!(
            last_failure(&host).contains("header lines"),
            "{policy}: {}",
            last_failure(&host)
        );
    }

    // A declaration Sluice could not always honour refuses the plugin at load.
    let rt = runtime();
    for (edit, why) in [
        ("add Via: SIP/2.0/UDP evil", "managed"),
        ("set To: <sip:x@y>", "dialog's tag"),
        ("add Expires: 60", "declare set"),
    ] {
        let mut s = spec("testkit", bundled("testkit").unwrap());
        s.settings.insert("declare".into(), vec![edit.into()]);
        let e = load(&rt, &s).err().unwrap();
        assert!(
            e.contains(&format!("declared edit `{edit}`")) && e.contains(why),
            "{e}"
        );
    }
}

#[test]
fn the_context_names_each_message_s_own_source() {
    let tk = "[plugin.tk]\nmodule = \"testkit\"\nsettings = { mode = \"show-source\" }";
    let mut host = host_for("outbound_rules = [\"tk\"]", tk);
    let g = host.current();
    for source in [
        "127.0.0.10:5060",
        "127.0.0.10:5060",
        "[::1]:5062",
        "127.0.0.11:5060",
    ] {
        let c = HookContext {
            source: source.parse().unwrap(),
            ..ctx(Side::External)
        };
        let mut msg = invite("100");
        let mut original = msg.clone();
        host.message(g, &c, &mut msg, &mut original);
        assert_eq!(
            msg.headers.get(&HeaderName::parse("X-Source")),
            Some(source)
        );
    }
}

/// A plugin built with the SDK is sent the context's strings only when they differ from the
/// last ones its instance received, whichever hook that was: every message still sees its own
/// call's context, across trunks, brands, tenants, legs, sources and transports, after the
/// number hook of a new call, and on the fresh instance that follows a trap.
#[test]
fn every_hook_sees_its_own_call_s_context() {
    let plugins = "[[trunk]]\nname = \"u\"\nhost = \"127.0.0.21\"\nbrand = \"twilio\"\n\
                   outbound_rules = [\"tk\"]\ninbound_rules = [\"tk\"]\n\
                   [plugin.tk]\nmodule = \"testkit\"\nsettings = { mode = \"show-context\" }";
    let mut host = host_for(
        "outbound_rules = [\"tk\"]\ninbound_rules = [\"tk\"]",
        plugins,
    );
    let g = host.current();
    let shown = HeaderName::parse("X-Context");
    // call, trunk, leg (toward the trunk or the PBX), source, transport, called number, and
    // whether it is a new call (numbers, then the message) or a message of a call.
    // The tenant last (`-`: none); calls 12 and 13 differ from the one before only in it.
    let steps = [
        "7 t trunk 127.0.0.10:5060 udp 100 new -",
        "7 t trunk 127.0.0.10:5060 udp 100 message -",
        "8 u trunk 127.0.0.10:5060 udp 100 new acme",
        "8 u pbx 127.0.0.21:5060 udp 100 message acme",
        "9 t pbx 127.0.0.20:5060 tcp 100 new globex",
        "9 t pbx 127.0.0.20:5060 tcp 6661 message globex",
        "10 u trunk [::1]:5060 tls 100 message -",
        "11 t trunk 127.0.0.10:5060 udp 100 new acme",
        "12 t trunk 127.0.0.10:5060 udp 100 message globex",
        "13 t trunk 127.0.0.10:5060 udp 100 message -",
    ];
    for step in steps {
        let f: Vec<&str> = step.split(' ').collect();
        let (call, trunk, source, called, new) = (f[0].parse().unwrap(), f[1], f[3], f[5], f[6]);
        let tenant = f[7];
        let brand = if trunk == "u" { "twilio" } else { "generic" };
        let (leg, direction, leg_shown) = match f[2] {
            "trunk" => (Side::External, Direction::Outbound, "external"),
            _ => (Side::Internal, Direction::Inbound, "internal"),
        };
        let transport = match f[4] {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            _ => Transport::Tls,
        };
        let c = HookContext {
            call,
            direction,
            leg,
            trunk,
            tenant: (tenant != "-").then_some(tenant),
            source: source.parse().unwrap(),
            transport,
        };
        let mut msg = invite(called);
        let mut original = msg.clone();
        if new == "new" {
            run_new_call(&mut host, g, &c, &mut msg, &mut original);
        } else {
            host.message(g, &c, &mut msg, &mut original);
        }
        let want = format!(
            "call={call};direction={};leg={leg_shown};trunk={trunk};brand={brand};tenant={tenant};\
             source={source};transport={}",
            format!("{direction:?}").to_lowercase(),
            f[4],
        );
        // The trap (To user 666…) leaves the message as it came: fail-open.
        let want = (called != "6661").then_some(want.as_str());
        assert_eq!(msg.headers.get(&shown), want, "call {call}");
    }
}

/// The SDK tells requests from responses by the plugin's interest when it lets only one kind
/// through (without asking the host): each still reaches its own hook.
#[test]
fn requests_and_responses_reach_their_own_hooks() {
    let ok = || {
        parse_message(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKt\r\n\
              From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:b@127.0.0.1>;tag=b\r\n\
              Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
    };
    let kind = HeaderName::parse("X-Kind");
    for (only, on_invite, on_ok) in [
        ("responses", None, Some("response")),
        ("requests", Some("request"), None),
        ("both", Some("request"), Some("response")),
    ] {
        let tk = format!(
            "[plugin.tk]\nmodule = \"testkit\"\n\
             settings = {{ mode = \"show-kind\", only = \"{only}\" }}"
        );
        let mut host = host_for("outbound_rules = [\"tk\"]", &tk);
        let g = host.current();
        for (mut msg, want) in [(invite("100"), on_invite), (ok(), on_ok)] {
            let mut original = msg.clone();
            host.message(g, &ctx(Side::External), &mut msg, &mut original);
            assert_eq!(msg.headers.get(&kind), want, "only {only}: {msg:?}");
        }
    }
}

#[test]
fn plugins_built_before_declared_numbers_keep_working() {
    // abi-020 was built against the interface as first published (no host.declare-numbers):
    // it loads, and its number hook is called.
    let mut host = host_for("brand = \"abi-020\"", "");
    let mut msg = invite("5552234567");
    assert_eq!(
        new_call(&mut host, Side::External, &mut msg),
        HookVerdict::Continue
    );
    assert_eq!(msg.request_uri(), Some("sip:+5552234567@trunk.example.com"));
    assert_eq!(
        msg.headers.get(&HeaderName::From),
        Some("<sip:+15557654321@127.0.0.1:5080>;tag=a")
    );
}

#[test]
fn header_rules_from_configuration() {
    let mut host = host_for(
        "outbound_rules = [\"acme\"]",
        "[plugin.acme]\nmodule = \"header-rules\"\n\
         settings = { rules = [\"add X-Account: 42\", \"remove User-Agent\"] }",
    );
    let mut msg = invite("+15552234567");
    msg.headers.push(HeaderName::UserAgent, "PBX");
    assert_eq!(
        new_call(&mut host, Side::External, &mut msg),
        HookVerdict::Continue
    );
    assert_eq!(msg.headers.get(&HeaderName::parse("X-Account")), Some("42"));
    assert_eq!(msg.headers.get(&HeaderName::UserAgent), None);
    let st = host.status();
    let acme = st.iter().find(|p| p.name == "acme").unwrap();
    assert_eq!(
        (acme.module.as_str(), acme.origin.as_str()),
        ("header-rules", "bundled")
    );
    assert_eq!(acme.trunks, ["t"]);
    assert!(acme.current && acme.last_failure.is_none());
}

fn testkit(mode: &str, policy: &str) -> PluginHost {
    host_for(
        "outbound_rules = [\"kit\"]",
        &format!(
            "[plugin.kit]\nmodule = \"testkit\"\npolicy = \"{policy}\"\n\
             settings = {{ mode = \"{mode}\" }}"
        ),
    )
}

fn last_failure(host: &PluginHost) -> String {
    host.status()
        .into_iter()
        .find(|p| p.name == "kit")
        .and_then(|p| p.last_failure)
        .unwrap_or_default()
}

#[test]
fn misbehaving_plugins_are_cut_off_and_the_message_goes_on() {
    for (mode, failure) in [
        ("loop", "deadline"),
        ("trap", "trapped"),
        ("membomb", "memory"),
        ("garbage", "invalid output"),
        // Valid edits first, then the failure: fail-open rolls every one of them back.
        ("edit-then-trap", "trapped"),
        ("edit-then-loop", "deadline"),
    ] {
        let mut host = testkit(mode, "fail-open");
        let mut msg = invite("6660001");
        msg.headers.push(HeaderName::Supported, "timer");
        let before = msg.clone();
        let started = Instant::now();
        let v = new_call(&mut host, Side::External, &mut msg);
        let took = started.elapsed();
        assert_eq!(v, HookVerdict::Continue, "{mode}");
        assert_eq!(
            msg, before,
            "{mode}: fail open leaves the message unmodified"
        );
        assert!(
            last_failure(&host).contains(failure),
            "{mode}: {}",
            last_failure(&host)
        );
        // A 5 ms deadline ends the hook at the first epoch tick past it (one every 20 ms); the
        // margin is for a loaded 2-core machine, not for a deadline that is not enforced. A
        // hook is never cut off before its deadline.
        assert!(took < Duration::from_millis(80), "{mode} took {took:?}");
        if failure == "deadline" {
            assert!(took >= Duration::from_millis(5), "{mode} took {took:?}");
        }
        // The plugin keeps serving other calls (a trapped instance is replaced).
        let mut ok = invite("15552234567");
        assert_eq!(
            new_call(&mut host, Side::External, &mut ok),
            HookVerdict::Continue,
            "{mode}"
        );
    }
}

#[test]
fn no_filesystem_network_or_environment() {
    // Reaching a file or a socket traps (the WASI interfaces for them are not provided); the
    // environment and arguments are empty.
    for (mode, failure, header) in [
        ("fs", "wasi:filesystem", "X-Fs"),
        ("net", "wasi:sockets", "X-Net"),
    ] {
        let mut host = testkit(mode, "fail-open");
        let mut msg = invite("6660001");
        assert_eq!(
            new_call(&mut host, Side::External, &mut msg),
            HookVerdict::Continue
        );
        let f = last_failure(&host);
        assert!(
            f.contains(failure) && f.contains("not available to plugins"),
            "{mode}: {f}"
        );
        // The plugin never got to write what it found.
        assert!(
            msg.headers.get(&HeaderName::parse(header)).is_none(),
            "{mode}"
        );
    }
    let mut host = testkit("env", "fail-open");
    let mut msg = invite("6660001");
    assert_eq!(
        new_call(&mut host, Side::External, &mut msg),
        HookVerdict::Continue
    );
    assert_eq!(msg.headers.get(&HeaderName::parse("X-Env")), Some("0"));
    assert_eq!(last_failure(&host), "");
}

#[test]
fn fail_closed_refuses_the_request() {
    for (mode, status) in [("loop", 503), ("trap", 503), ("garbage", 500)] {
        let mut host = testkit(mode, "fail-closed");
        let mut msg = invite("6660001");
        match new_call(&mut host, Side::External, &mut msg) {
            HookVerdict::Reject { status: s, .. } => assert_eq!(s, status, "{mode}"),
            v => panic!("{mode}: {v:?}"),
        }
        // A response cannot be refused: it goes on unmodified.
        let mut resp = Message::response(180, "Ringing");
        resp.headers.push(HeaderName::To, "<sip:6660001@h>;tag=x");
        let before = resp.clone();
        let mut original = resp.clone();
        let g = host.current();
        assert_eq!(
            host.message(g, &ctx(Side::External), &mut resp, &mut original),
            HookVerdict::Continue
        );
        assert_eq!(resp, before);
    }
}

#[test]
fn a_plugin_may_reject_a_request() {
    // The reason phrase comes apart from the answer (`host.reject-reason`): given, it is used;
    // not given, the status's own is, even right after a call that gave one.
    let mut host = testkit("reject", "fail-open");
    for (called, reason) in [
        ("6660001", "Testkit Says No"),
        ("6660010", "Forbidden"),
        ("6660001", "Testkit Says No"),
        ("6660010", "Forbidden"),
    ] {
        let mut msg = invite(called);
        assert_eq!(
            new_call(&mut host, Side::External, &mut msg),
            HookVerdict::Reject {
                status: 403,
                reason: reason.into()
            },
            "{called}"
        );
    }
}

fn spec(module: &str, bytes: &[u8]) -> PluginSpec {
    PluginSpec {
        name: module.into(),
        module: module.into(),
        origin: "test".into(),
        bytes: Arc::from(bytes),
        policy: sluice_config::Policy::FailOpen,
        deadline: Duration::from_millis(5),
        settings: Default::default(),
    }
}

#[test]
fn refused_modules_say_why() {
    let rt = runtime();
    let e = load(&rt, &spec("junk", b"definitely not wasm"))
        .err()
        .unwrap();
    assert!(
        e.contains("plugin `junk`") && e.contains("not a WebAssembly component"),
        "{e}"
    );
    let old = bundled("old-abi").unwrap();
    let e = load(&rt, &spec("old-abi", old)).err().unwrap();
    assert!(e.contains("sluice:plugin"), "{e}");
    // A plugin that loops on everything fails its self-check, every time it is tried (a
    // deadline missed once may be the machine's doing).
    let mut s = spec("testkit", bundled("testkit").unwrap());
    s.settings.insert("mode".into(), vec!["every-loop".into()]);
    let e = load(&rt, &s).err().unwrap();
    assert!(
        e.contains("self-check failed: ran past its deadline (3 tries)"),
        "{e}"
    );
    // Settings the plugin refuses.
    let mut s = spec("testkit", bundled("testkit").unwrap());
    s.settings.insert("mode".into(), vec!["sideways".into()]);
    let e = load(&rt, &s).err().unwrap();
    assert!(
        e.contains("init refused its settings") && e.contains("sideways"),
        "{e}"
    );
    // A missing module names where it looked.
    let e = prepare(&rt, &config("brand = \"nope\"", ""), &source())
        .err()
        .unwrap();
    assert!(
        e.contains("`nope` not found") && e.contains("generic"),
        "{e}"
    );
}

#[test]
fn calls_keep_their_generation_across_a_reload() {
    let kit = |m: &str| {
        config(
            "outbound_rules = [\"kit\"]",
            &format!("[plugin.kit]\nmodule = \"{m}\"\nsettings = {{ label = \"k\" }}"),
        )
    };
    let rt = runtime();
    let mut host = PluginHost::new();
    let g1 = host
        .install(prepare(&rt, &kit("testkit"), &source()).unwrap())
        .unwrap();
    host.pin(g1);
    // The same inputs again: nothing to install.
    assert!(host
        .install(prepare(&rt, &kit("testkit"), &source()).unwrap())
        .is_none());
    let g2 = host
        .install(prepare(&rt, &kit("testkit-v2"), &source()).unwrap())
        .unwrap();
    assert_ne!(g1, g2);
    assert_eq!(host.current(), g2);
    assert_eq!(host.loaded_generations(), [g1, g2]);
    let tag = |host: &mut PluginHost, g| {
        let mut m = invite("15552234567");
        let mut o = m.clone();
        host.message(g, &ctx(Side::External), &mut m, &mut o);
        m.headers
            .get(&HeaderName::parse("X-Testkit"))
            .unwrap()
            .to_string()
    };
    assert_eq!(tag(&mut host, g1), "k v1");
    assert_eq!(tag(&mut host, g2), "k v2");
    let versions: Vec<(u64, String)> = host
        .status()
        .into_iter()
        .filter(|p| p.name == "kit")
        .map(|p| (p.generation, p.version))
        .collect();
    assert_eq!(
        versions,
        [(g1, "1.0.0".to_string()), (g2, "2.0.0".to_string())]
    );
    // The last call of the old generation ends: it is unloaded.
    host.release(g1);
    assert_eq!(host.loaded_generations(), [g2]);
}

/// A reason a hook gave with `host.reject-reason` belongs to that hook call: one that let its
/// request through, or trapped, does not name the next call's rejection (raw-reason gives the
/// reason in those ways, which the SDK never does).
#[test]
fn a_reason_left_by_an_earlier_hook_call_is_forgotten() {
    let mut host = host_for(
        "outbound_rules = [\"raw\"]",
        "[plugin.raw]\nmodule = \"raw-reason\"",
    );
    let g = host.current();
    let mut verdict = |called: &str| {
        let mut msg = invite(called);
        let mut original = msg.clone();
        host.message(g, &ctx(Side::External), &mut msg, &mut original)
    };
    let standard = HookVerdict::Reject {
        status: 403,
        reason: "Forbidden".into(),
    };
    assert_eq!(
        verdict("2000"),
        standard,
        "no reason given: the standard phrase"
    );
    // A reason given by a hook that then let the request through.
    assert_eq!(verdict("1000"), HookVerdict::Continue);
    assert_eq!(
        verdict("2001"),
        standard,
        "the reason of a request let through"
    );
    // A reason given by a hook that then trapped (fail-open: the request goes on).
    assert_eq!(verdict("3000"), HookVerdict::Continue);
    assert_eq!(verdict("2002"), standard, "the reason of a trapped call");
}
