//! Plugins end to end: SIPp peers on both sides of Sluice, bundled plugins rewriting what the
//! trunk receives, misbehaving plugins that Sluice outlives, plugins swapped under load and
//! from a relative directory, a plugin flooding the log. `sluice plugin test` and the example
//! plugin are in `plugin_authoring.rs`, STIR/SHAKEN in `stir.rs`.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use sluice_e2e::{
    header, http, log_tail, metric, parse_prometheus, received_at, test_plugin, Lab, LabAddrs,
    Peer, Transport,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn tel_uri_rule_sets_rewrite_what_the_trunk_receives() {
    let lab = Lab::start_with_trunk(
        30,
        "outbound_rules = [\"tel-uri-request\", \"tel-uri-to\"]",
        "",
    );
    let got = lab.outbound_call("+12345678");
    let invite = got
        .iter()
        .find(|m| m.starts_with("INVITE"))
        .expect("INVITE");
    assert!(
        invite.starts_with("INVITE tel:+12345678 SIP/2.0\n"),
        "{invite}"
    );
    assert_eq!(header(invite, "To"), Some("<tel:+12345678>"), "{invite}");
    // The dialog goes on normally: ACK and BYE go to the callee's Contact, To keeps its tag.
    let bye = got.iter().find(|m| m.starts_with("BYE")).expect("BYE");
    assert!(
        header(bye, "To")
            .unwrap()
            .starts_with("<tel:+12345678>;tag="),
        "{bye}"
    );
}

#[test]
fn voipms_brand_writes_nanp_digits_both_ways() {
    let lab = Lab::start_with_trunk(31, "brand = \"voipms\"", "");
    // Outbound: the + goes.
    let got = lab.outbound_call("+15557654321");
    let invite = got
        .iter()
        .find(|m| m.starts_with("INVITE"))
        .expect("INVITE");
    assert!(invite.starts_with("INVITE sip:15557654321@"), "{invite}");
    assert!(
        header(invite, "To")
            .unwrap()
            .starts_with("<sip:15557654321@"),
        "{invite}"
    );
    // Inbound: VoIP.ms sends 11 digits; the PBX gets E.164.
    let pbx = lab.sipp("pbx", "uas.xml", Peer::Pbx, None, &["-m", "1"]);
    let trunk = lab.sipp(
        "trunk",
        "uac.xml",
        Peer::Trunk,
        Some(&lab.external()),
        &["-m", "1", "-s", "15557654321"],
    );
    let log = pbx.messages_path().to_path_buf();
    lab.assert_calls("provider", &trunk.wait(LIMIT), 1);
    lab.assert_calls("pbx", &pbx.wait(Duration::from_secs(10)), 1);
    let got = received_at(&log);
    let invite = got
        .iter()
        .find(|m| m.starts_with("INVITE"))
        .expect("INVITE");
    assert!(invite.starts_with("INVITE sip:+15557654321@"), "{invite}");
    // The calling number 15552230000 (NANP with country code) becomes E.164 too.
    assert!(
        header(invite, "From")
            .unwrap()
            .contains("<sip:+15552230000@"),
        "{invite}"
    );
}

fn metrics(lab: &Lab) -> Vec<sluice_e2e::Sample> {
    let (status, text) = http("GET", &lab.admin(), "/metrics", None, "");
    assert_eq!(status, 200);
    parse_prometheus(&text)
}

fn errors(m: &[sluice_e2e::Sample], plugin: &str, kind: &str) -> f64 {
    m.iter()
        .filter(|s| {
            s.name == "sluice_plugin_errors_total"
                && s.labels.get("plugin").map(String::as_str) == Some(plugin)
                && s.labels.get("kind").map(String::as_str) == Some(kind)
        })
        .map(|s| s.value)
        .sum()
}

#[test]
fn misbehaving_plugins_never_stop_sluice() {
    // Four plugins that fail on calls to 666…: an infinite loop, a trap, a memory bomb and
    // garbage output, all fail-open; and a fail-closed one that traps on calls to 667….
    let kit = |name: &str, mode: &str, policy: &str, trigger: &str| {
        format!(
            "[plugin.{name}]\nmodule = \"testkit\"\npolicy = \"{policy}\"\n\
             settings = {{ mode = \"{mode}\", trigger = \"{trigger}\" }}\n"
        )
    };
    let plugins = [
        kit("looper", "loop", "fail-open", "666"),
        kit("trapper", "trap", "fail-open", "666"),
        kit("bomber", "membomb", "fail-open", "666"),
        kit("garbler", "garbage", "fail-open", "666"),
        kit("partial", "edit-then-trap", "fail-open", "666"),
        kit("strict", "trap", "fail-closed", "667"),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_plugin("testkit"), dir.path().join("testkit.wasm")).unwrap();
    let lab = Lab::start_with_trunk(
        32,
        "outbound_rules = [\"looper\", \"trapper\", \"bomber\", \"garbler\", \"partial\", \"strict\"]",
        &format!("[plugins]\ndir = \"{}\"\n\n{plugins}", dir.path().display()),
    );
    // Calls that trigger the fail-open plugins all go through, and so do ordinary ones.
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "10"]);
    let bad = lab.sipp(
        "bad",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "5", "-r", "10", "-s", "6660001"],
    );
    let log = uas.messages_path().to_path_buf();
    lab.assert_calls("calls that make plugins fail", &bad.wait(LIMIT), 5);
    let good = lab.sipp(
        "good",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "5", "-r", "10", "-s", "15552234567", "-p", "5070"],
    );
    lab.assert_calls("ordinary calls", &good.wait(LIMIT), 5);
    lab.assert_calls("callee", &uas.wait(Duration::from_secs(20)), 10);
    // Fail open: the trunk got the messages without the failing plugins' edits.
    let got = received_at(&log);
    assert!(got.len() >= 30, "{got:?}");
    for m in got {
        assert!(!m.contains("6.6.6.6") && !m.contains("X-Garbage"), "{m}");
        // The plugin that edited and then trapped: none of its edits left Sluice.
        assert!(
            !m.contains("X-Partial") && !m.contains("leaked") && !m.contains("partial.invalid"),
            "{m}"
        );
    }
    // Every failure was counted by kind: INVITE, ACK and BYE of 5 calls each, per plugin.
    let m = metrics(&lab);
    assert_eq!(errors(&m, "looper", "deadline"), 15.0);
    assert_eq!(errors(&m, "trapper", "trap"), 15.0);
    assert_eq!(errors(&m, "bomber", "memory"), 15.0);
    assert_eq!(errors(&m, "garbler", "invalid"), 15.0);
    assert_eq!(errors(&m, "partial", "trap"), 15.0);
    assert_eq!(errors(&m, "strict", "trap"), 0.0);
    // ...and logged with the plugin's name and version.
    let log_text = lab.log();
    for p in ["looper", "trapper", "bomber", "garbler"] {
        assert!(
            log_text.lines().any(|l| l.contains("plugin failed")
                && l.contains(&format!("plugin={p}"))
                && l.contains("version=1.0.0")),
            "no failure line for {p}:\n{}",
            log_tail(&log_text)
        );
    }
    // Fail closed: the call is refused with 503 and never reaches the trunk.
    let refused = lab.sipp(
        "refused",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "3", "-r", "10", "-s", "6670001", "-p", "5071"],
    );
    let r = refused.wait(LIMIT);
    assert_eq!((r.successful, r.failed), (0, 3), "{r:?}");
    assert!(r.errors.contains("503"), "{}", r.errors);
    assert_eq!(errors(&metrics(&lab), "strict", "trap"), 3.0);

    // A module of the wrong interface version, and one that is no WebAssembly at all, are
    // refused at reload with a clear message; the running plugins stay.
    for (file, expect) in [
        (test_plugin("old-abi"), "sluice:plugin"),
        (std::path::PathBuf::new(), "not a WebAssembly component"),
    ] {
        let target = dir.path().join("testkit.wasm.new");
        if file.as_os_str().is_empty() {
            std::fs::write(&target, b"\0asm garbage").unwrap();
        } else {
            std::fs::copy(&file, &target).unwrap();
        }
        std::fs::rename(&target, dir.path().join("testkit.wasm")).unwrap();
        let (code, body) = http("POST", &lab.admin(), "/reload", None, "");
        assert_eq!(code, 422, "{body}");
        assert!(body.contains(expect) && body.contains("testkit"), "{body}");
        let (_, plugins) = http("GET", &lab.admin(), "/plugins", None, "");
        assert!(
            plugins.contains("\"load_error\":\"") && plugins.contains(expect),
            "{plugins}"
        );
    }
    let m = metrics(&lab);
    assert!(metric(&m, "sluice_config_reloads_total", &[("result", "failure")]).unwrap() >= 2.0);
    // Still serving, with the plugins it had.
    let again = lab.sipp(
        "again",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "2", "-s", "15552234567", "-p", "5072"],
    );
    let uas = lab.sipp("uas2", "uas.xml", Peer::Trunk, None, &["-m", "2"]);
    lab.assert_calls("after refused reloads", &again.wait(LIMIT), 2);
    lab.assert_calls("callee", &uas.wait(Duration::from_secs(10)), 2);
}

/// Replace a file atomically, as an operator's deployment should (write, then rename).
fn replace(from: &std::path::Path, to: &std::path::Path) {
    let tmp = to.with_extension("wasm.tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn plugin_swapped_under_load_without_a_failed_call() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker.wasm");
    std::fs::copy(test_plugin("testkit"), &marker).unwrap();
    let lab = Lab::start_with_trunk(
        33,
        "outbound_rules = [\"marker\"]",
        &format!(
            "[plugins]\ndir = \"{}\"\n\n[plugin.marker]\nsettings = {{ label = \"m\" }}\n",
            dir.path().display()
        ),
    );
    // 50 calls a second for 20 s, each held 2 s: about a hundred calls are up at the swap.
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "1000"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &[
            "-m",
            "1000",
            "-r",
            "50",
            "-d",
            "2000",
            "-l",
            "400",
            "-s",
            "15552234567",
        ],
    );
    let uas_log = uas.messages_path().to_path_buf();
    // Swap once calls have been going for a while; the watcher reloads.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http("GET", &lab.admin(), "/status", None, "");
        if body.contains("\"calls_answered\":") && answered(&body) >= 200 {
            break;
        }
        assert!(Instant::now() < deadline, "calls did not start: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    replace(&test_plugin("testkit-v2"), &marker);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http("GET", &lab.admin(), "/plugins", None, "");
        if body.contains("\"version\":\"2.0.0\"") {
            assert!(
                body.contains("\"version\":\"1.0.0\""),
                "v1 stays while its calls run: {body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new version was not loaded: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = uac.wait(Duration::from_secs(120));
    lab.assert_calls("caller", &r, 1000);
    lab.assert_calls("callee", &uas.wait(Duration::from_secs(20)), 1000);

    // Which version tagged each message, per call, in the order the trunk received them.
    let mut per_call: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut invites: Vec<String> = Vec::new();
    for m in received_at(&uas_log) {
        let method = m.split(' ').next().unwrap_or("").to_string();
        let (Some(id), Some(tag)) = (header(&m, "Call-ID"), header(&m, "X-Testkit")) else {
            continue;
        };
        let generation = tag.rsplit(' ').next().unwrap_or("").to_string();
        if method == "INVITE" {
            invites.push(generation.clone());
        }
        per_call
            .entry(id.to_string())
            .or_default()
            .push((method, generation));
    }
    assert_eq!(per_call.len(), 1000);
    // Every message of a call was handled by the version its call started with.
    for (id, msgs) in &per_call {
        assert!(
            msgs.iter().all(|(_, g)| *g == msgs[0].1),
            "call {id}: {msgs:?}"
        );
    }
    // Calls started before the swap ran v1, calls started after ran v2.
    let first_v2 = invites.iter().position(|g| g == "v2").expect("calls on v2");
    assert!(first_v2 > 0, "calls on v1 first");
    assert!(invites[..first_v2].iter().all(|g| g == "v1"));
    assert!(
        invites[first_v2..].iter().all(|g| g == "v2"),
        "no v1 call after the swap"
    );
    // Some v1 calls were still up after the swap and ended on v1.
    let v1_after: usize = per_call
        .values()
        .filter(|msgs| msgs[0].1 == "v1" && msgs.iter().any(|(m, _)| m == "BYE"))
        .count();
    assert!(v1_after > 0);
    // Once those calls ended, v1 was unloaded.
    let (_, body) = http("GET", &lab.admin(), "/plugins", None, "");
    assert!(!body.contains("\"version\":\"1.0.0\""), "{body}");
    let m = metrics(&lab);
    let loaded = |v| {
        metric(
            &m,
            "sluice_plugin_loaded",
            &[("plugin", "marker"), ("version", v)],
        )
    };
    assert_eq!((loaded("1.0.0"), loaded("2.0.0")), (Some(0.0), Some(1.0)));
    let gen = |v: &str| -> f64 {
        m.iter()
            .filter(|s| {
                s.name == "sluice_plugin_invocations_total"
                    && s.labels.get("plugin").map(String::as_str) == Some("marker")
                    && s.labels.get("version").map(String::as_str) == Some(v)
            })
            .map(|s| s.value)
            .sum()
    };
    assert!(gen("1.0.0") > 0.0 && gen("2.0.0") > 0.0);
}

fn answered(status: &str) -> u64 {
    let at = status
        .find("\"calls_answered\":")
        .map(|i| i + 17)
        .unwrap_or(0);
    status[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

/// A brand and three rule sets on one trunk: what the trunk receives is the B2BUA's INVITE with
/// exactly these rewrites and nothing else changed.
#[test]
fn brand_and_rule_sets_together_end_to_end() {
    let lab = Lab::start_with_trunk(
        35,
        "brand = \"twilio\"\noutbound_rules = [\"strip-plus\", \"single-via\", \"acct\"]",
        "[plugin.acct]\nmodule = \"header-rules\"\n\
         settings = { rules = [\"add X-Account: 1234\", \"remove Subject\", \
         \"replace From /Caller/Sluice Caller/\"] }\n",
    );
    let got = lab.outbound_call("5552234567");
    let invite = got
        .iter()
        .find(|m| m.starts_with("INVITE"))
        .expect("INVITE");
    // twilio (the brand, last) writes E.164 with +; strip-plus ran before it and saw no +.
    assert!(invite.starts_with("INVITE sip:+15552234567@"), "{invite}");
    assert!(
        header(invite, "To")
            .unwrap()
            .starts_with("<sip:+15552234567@"),
        "{invite}"
    );
    assert!(
        header(invite, "From")
            .unwrap()
            .starts_with("\"Sluice Caller\" <sip:+15552230000@"),
        "{invite}"
    );
    assert_eq!(header(invite, "X-Account"), Some("1234"));
    assert_eq!(header(invite, "Subject"), None);
    // Exactly the headers the B2BUA writes (its own Allow and Supported, the session interval
    // it asks for), less Subject, plus X-Account.
    let head = invite.split("\n\n").next().unwrap();
    let names: Vec<&str> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .collect();
    assert_eq!(
        names,
        [
            "Via",
            "Max-Forwards",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Content-Type",
            "Allow",
            "Supported",
            "User-Agent",
            "Session-Expires",
            "X-Account",
            "Content-Length"
        ],
        "{invite}"
    );
}

/// A plugin that writes 3,000 log lines and 3,000 lines to stdout on every message: Sluice's
/// log gets its burst and then its steady rate, the rest is dropped and counted, one warning
/// says so per interval, and every call completes.
#[test]
fn a_plugin_logging_in_a_loop_cannot_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(test_plugin("testkit"), dir.path().join("testkit.wasm")).unwrap();
    let lab = Lab::start_with_trunk(
        36,
        "outbound_rules = [\"flooder\"]",
        &format!(
            "[plugins]\ndir = \"{}\"\n\n[plugin.flooder]\nmodule = \"testkit\"\n\
             deadline_ms = 200\nsettings = {{ mode = \"log-flood\", trigger = \"666\" }}\n",
            dir.path().display()
        ),
    );
    let started = Instant::now();
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "10"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "10", "-r", "10", "-s", "6660001"],
    );
    lab.assert_calls("caller", &uac.wait(LIMIT), 10);
    lab.assert_calls("callee", &uas.wait(Duration::from_secs(10)), 10);
    let elapsed = started.elapsed().as_secs();
    let log = lab.log();
    let written = log.matches("testkit flood").count() as u64;
    let warnings = log.matches("plugin log lines dropped").count() as u64;
    eprintln!("{written} plugin lines written in {elapsed} s, {warnings} warnings");
    // The burst, then 10 lines a second.
    let most = 50 + 10 * (elapsed + 1);
    assert!(
        (1..=most).contains(&written),
        "{written} lines of the plugin's in {elapsed} s (at most {most})"
    );
    assert!(
        (1..=elapsed / 10 + 1).contains(&warnings),
        "one warning per interval: {warnings}"
    );
    let m = metrics(&lab);
    let dropped = sluice_e2e::metric(
        &m,
        "sluice_plugin_log_dropped_total",
        &[("plugin", "flooder")],
    )
    .unwrap_or(0.0);
    // Each of the 10 INVITEs alone asked for 3,000 log lines and 3,000 prints.
    assert!(dropped >= (30_000 - written) as f64, "dropped {dropped}");
}

/// Started as the walkthrough says, from its directory with `--config sluice.toml` and
/// `plugins.dir = "."`: a new plugin file renamed into the directory is loaded, and the next
/// call runs it. The load-time probe and self-check leave no metric series behind.
#[test]
fn a_plugin_file_swapped_is_loaded_with_a_relative_config_path() {
    let addrs = LabAddrs::v4(37);
    let text = Lab::config_with(
        &addrs,
        "outbound_rules = [\"marker\"]",
        "[plugins]\ndir = \".\"\n\n[plugin.marker]\nsettings = { label = \"m\" }\n",
    );
    let v1 = test_plugin("testkit");
    let lab = Lab::start_relative(addrs, Transport::Udp, &text, &[("marker.wasm", &v1)]);
    let text = http("GET", &lab.admin(), "/metrics", None, "").1;
    assert!(!text.contains("version=\"?\""), "no probe series:\n{text}");
    let invoked = |text: &str| -> f64 {
        parse_prometheus(text)
            .iter()
            .filter(|s| {
                s.name == "sluice_plugin_invocations_total"
                    && s.labels.get("plugin").map(String::as_str) == Some("marker")
            })
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(invoked(&text), 0.0, "the self-check is no call:\n{text}");
    let tag = |lab: &Lab| -> String {
        let msgs = lab.outbound_call("15552234567");
        let invite = msgs
            .iter()
            .rev()
            .find(|m| m.starts_with("INVITE "))
            .unwrap();
        header(invite, "X-Testkit").unwrap_or("").to_string()
    };
    assert_eq!(tag(&lab), "m v1");

    replace(
        &test_plugin("testkit-v2"),
        &lab.dir.path().join("marker.wasm"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http("GET", &lab.admin(), "/plugins", None, "");
        if body.contains("\"version\":\"2.0.0\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new file was not loaded: {body}\n{}",
            lab.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tag(&lab), "m v2");
}
