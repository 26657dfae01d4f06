//! Plugins end to end: SIPp peers on both sides of Sluice, bundled plugins rewriting what the
//! trunk receives, misbehaving plugins that Sluice outlives, a plugin swapped under load, and
//! `sluice plugin test`.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use sluice_e2e::{
    http, metric, parse_message_log, parse_prometheus, sluice_bin, test_plugin, Lab, LabAddrs,
    Peer, SippResult, Transport,
};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(90);

/// The lab configuration with `trunk` lines added to the trunk and `extra` tables at the end.
fn config(addrs: &LabAddrs, trunk: &str, extra: &str) -> String {
    let base = Lab::config_for(addrs, Transport::Udp);
    let with_trunk = base.replace("[routing]", &format!("{trunk}\n\n[routing]"));
    format!("{with_trunk}\n{extra}\n")
}

fn start(block: u8, trunk: &str, extra: &str) -> Lab {
    let addrs = LabAddrs::v4(block);
    let text = config(&addrs, trunk, extra);
    Lab::start_with_text(addrs, Transport::Udp, &text)
}

fn assert_ok(what: &str, r: &SippResult, calls: u64, lab: &Lab) {
    assert_eq!(
        (r.successful, r.failed),
        (calls, 0),
        "{what}: {r:?}\nsluice log (tail):\n{}",
        tail(&lab.log())
    );
}

fn tail(s: &str) -> String {
    if let Some(i) = s.find("panicked") {
        return s[i.saturating_sub(200)..(i + 2000).min(s.len())].to_string();
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Messages a SIPp peer received, read from its message log.
fn received(log: &std::path::Path) -> Vec<String> {
    parse_message_log(
        &std::fs::read_to_string(log).unwrap_or_default(),
        "received",
    )
}

fn header<'a>(m: &'a str, name: &str) -> Option<&'a str> {
    m.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// One outbound call to `number`; the messages the trunk received.
fn outbound_call(lab: &Lab, number: &str) -> Vec<String> {
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "1"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1", "-s", number],
    );
    let log = uas.messages_path().to_path_buf();
    assert_ok("caller", &uac.wait(LIMIT), 1, lab);
    assert_ok("callee", &uas.wait(Duration::from_secs(10)), 1, lab);
    received(&log)
}

#[test]
fn tel_uri_rule_sets_rewrite_what_the_trunk_receives() {
    let lab = start(
        30,
        "outbound_rules = [\"tel-uri-request\", \"tel-uri-to\"]",
        "",
    );
    let got = outbound_call(&lab, "+12345678");
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
    let lab = start(31, "brand = \"voipms\"", "");
    // Outbound: the + goes.
    let got = outbound_call(&lab, "+15557654321");
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
    assert_ok("provider", &trunk.wait(LIMIT), 1, &lab);
    assert_ok("pbx", &pbx.wait(Duration::from_secs(10)), 1, &lab);
    let got = received(&log);
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
    let lab = start(
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
    assert_ok("calls that make plugins fail", &bad.wait(LIMIT), 5, &lab);
    let good = lab.sipp(
        "good",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "5", "-r", "10", "-s", "15552234567", "-p", "5070"],
    );
    assert_ok("ordinary calls", &good.wait(LIMIT), 5, &lab);
    assert_ok("callee", &uas.wait(Duration::from_secs(20)), 10, &lab);
    // Fail open: the trunk got the messages without the failing plugins' edits.
    let got = received(&log);
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
            tail(&log_text)
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
    assert_ok("after refused reloads", &again.wait(LIMIT), 2, &lab);
    assert_ok("callee", &uas.wait(Duration::from_secs(10)), 2, &lab);
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
    let lab = start(
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
    assert_ok("caller", &r, 1000, &lab);
    assert_ok("callee", &uas.wait(Duration::from_secs(20)), 1000, &lab);

    // Which version tagged each message, per call, in the order the trunk received them.
    let mut per_call: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut invites: Vec<String> = Vec::new();
    for m in received(&uas_log) {
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

/// `sluice plugin test` on a captured INVITE (LF line ends, as a capture is often saved), run
/// by the returned function with a plugin and further options: exit code, stdout, stderr.
fn plugin_test_on_a_capture(
    dir: &tempfile::TempDir,
) -> impl Fn(&std::path::Path, &[&str]) -> (Option<i32>, String, String) {
    let msg = dir.path().join("invite.sip");
    std::fs::write(
        &msg,
        "INVITE sip:6660001@trunk.example.com SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKx\n\
         Max-Forwards: 69\n\
         From: <sip:100@192.0.2.1>;tag=a\n\
         To: <sip:6660001@trunk.example.com>\n\
         Call-ID: c1\n\
         CSeq: 1 INVITE\n\
         Content-Length: 0\n\n",
    )
    .unwrap();
    move |plugin: &std::path::Path, extra: &[&str]| {
        let out = Command::new(sluice_bin())
            .args(["plugin", "test"])
            .arg(plugin)
            .arg("--message")
            .arg(&msg)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn plugin_test_command_shows_the_message_as_it_would_leave() {
    let dir = tempfile::tempdir().unwrap();
    let run = plugin_test_on_a_capture(&dir);
    let (code, out, err) = run(&test_plugin("testkit"), &["--setting", "label=dry"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("plugin: testkit 1.0.0"), "{out}");
    assert!(out.contains("verdict: continue"), "{out}");
    assert!(out.contains("X-Testkit: dry v1\r\n"), "{out}");
    assert!(
        out.contains("--- message as it would leave Sluice ---\nINVITE sip:6660001@"),
        "{out}"
    );
    let (code, out, _) = run(&test_plugin("testkit"), &["--setting", "mode=reject"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("verdict: reject 403 Testkit Says No"), "{out}");
    // A failing plugin is reported and the command fails.
    let (code, out, _) = run(&test_plugin("testkit"), &["--setting", "mode=loop"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("failure: on-message: ran past its deadline"),
        "which hook, and why: {out}"
    );
    assert!(out.contains("plugin=testkit"), "named by its file: {out}");
    // A bundled plugin by its name.
    let (code, out, err) = run(std::path::Path::new("strip-plus"), &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("plugin: strip-plus"), "{out}");
    // The wrong interface version is refused with a message.
    let (code, _, err) = run(&test_plugin("old-abi"), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("sluice:plugin"), "{err}");
}

/// The one-plugin dry run tells the plugin the brand and tenant it is given, as Sluice tells a
/// call's.
#[test]
fn plugin_test_command_tells_the_plugin_its_brand_and_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let run = plugin_test_on_a_capture(&dir);
    let context = ["--setting", "mode=show-context", "--setting", "trigger=999"];
    let (code, out, err) = run(
        &test_plugin("testkit"),
        &[&context[..], &["--tenant", "acme"]].concat(),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(";trunk=test;brand=generic;tenant=acme;"),
        "{out}"
    );
    assert!(
        out.contains(", trunk test (brand generic), tenant acme\n"),
        "{out}"
    );
    // And the brand: `generic` (a trunk without one) unless named.
    let (_, out, _) = run(
        &test_plugin("testkit"),
        &[&context[..], &["--brand", "twilio"]].concat(),
    );
    assert!(out.contains(";brand=twilio;tenant=-;"), "{out}");
}

/// The out-of-tree example (examples/plugin-acme), built as its README says, rewrites a live
/// call: the trunk receives the prefixed number and the account header.
#[test]
fn example_plugin_from_its_walkthrough_rewrites_a_live_call() {
    let root = sluice_e2e::repo_root();
    let example = root.join("examples/plugin-acme");
    let target = root.join("target/example-plugin");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(example.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("cargo");
    assert!(status.success(), "the example plugin builds");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        target.join("wasm32-wasip2/release/acme.wasm"),
        dir.path().join("acme.wasm"),
    )
    .unwrap();
    let lab = start(
        34,
        "outbound_rules = [\"acme\"]",
        &format!(
            "[plugins]\ndir = \"{}\"\n\n[plugin.acme.settings]\naccount = \"AC-42\"\n",
            dir.path().display()
        ),
    );
    let got = outbound_call(&lab, "+15552234567");
    let invite = got
        .iter()
        .find(|m| m.starts_with("INVITE"))
        .expect("INVITE");
    assert!(
        invite.starts_with("INVITE sip:101015552234567@"),
        "{invite}"
    );
    assert_eq!(header(invite, "X-Acme-Account"), Some("AC-42"), "{invite}");
    // Premium numbers never reach the trunk.
    let uac = lab.sipp(
        "premium",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1", "-s", "+19005550000", "-p", "5070"],
    );
    let r = uac.wait(LIMIT);
    assert_eq!((r.successful, r.failed), (0, 1), "{r:?}");
    assert!(r.errors.contains("403"), "{}", r.errors);

    // The walkthrough's complete configuration passes `sluice check` with the plugin it built.
    let readme = std::fs::read_to_string(example.join("README.md")).unwrap();
    let toml = fenced(&readme, "toml")
        .into_iter()
        .find(|b| b.contains("[plugin.acme.settings]") && b.contains("[pbx]"))
        .expect("a complete configuration in the walkthrough");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::copy(
        target.join("wasm32-wasip2/release/acme.wasm"),
        dir.path().join("plugins/acme.wasm"),
    )
    .unwrap();
    std::fs::write(dir.path().join("acme.toml"), toml).unwrap();
    let out = Command::new(sluice_bin())
        .args(["check", "--config", "acme.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The code blocks of a Markdown text in language `lang`.
fn fenced(text: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}\n");
    text.split(&open)
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(code, _)| code.to_string()))
        .collect()
}

/// The walkthrough shows the example's code whole: its Rust block is `src/lib.rs` up to the
/// tests, and its Cargo.toml block the crate's manifest.
#[test]
fn the_plugin_walkthrough_shows_the_code_it_builds() {
    let example = sluice_e2e::repo_root().join("examples/plugin-acme");
    let readme = std::fs::read_to_string(example.join("README.md")).unwrap();
    let lib = std::fs::read_to_string(example.join("src/lib.rs")).unwrap();
    let code = lib[..lib.find("#[cfg(test)]").unwrap()].trim_end();
    let rust = fenced(&readme, "rust");
    assert!(
        rust.iter().any(|b| b.trim_end() == code),
        "README.md's code differs from src/lib.rs"
    );
    let manifest = std::fs::read_to_string(example.join("Cargo.toml")).unwrap();
    assert!(
        fenced(&readme, "toml")
            .iter()
            .any(|b| b.trim_end() == manifest.trim_end()),
        "README.md's Cargo.toml differs from the crate's"
    );
}

/// A brand and three rule sets on one trunk: what the trunk receives is the B2BUA's INVITE with
/// exactly these rewrites and nothing else changed.
#[test]
fn brand_and_rule_sets_together_end_to_end() {
    let lab = start(
        35,
        "brand = \"twilio\"\noutbound_rules = [\"strip-plus\", \"single-via\", \"acct\"]",
        "[plugin.acct]\nmodule = \"header-rules\"\n\
         settings = { rules = [\"add X-Account: 1234\", \"remove Subject\", \
         \"replace From /Caller/Sluice Caller/\"] }\n",
    );
    let got = outbound_call(&lab, "5552234567");
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
    let lab = start(
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
    assert_ok("caller", &uac.wait(LIMIT), 10, &lab);
    assert_ok("callee", &uas.wait(Duration::from_secs(10)), 10, &lab);
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
    let text = config(
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
        let msgs = outbound_call(lab, "15552234567");
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
            tail(&lab.log())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tag(&lab), "m v2");
}

/// What a message looks like once the values Sluice makes up per call (branch, tag, Call-ID,
/// CSeq number, media port) are blanked.
fn blank_per_call(m: &str) -> String {
    m.lines()
        .map(|l| {
            let cut = |l: &str, at: &str| l.split(at).next().unwrap_or("").to_string() + at;
            if l.starts_with("Via:") {
                cut(l, ";branch=")
            } else if l.starts_with("From:") {
                cut(l, ";tag=")
            } else if l.starts_with("Call-ID:") {
                "Call-ID: *".into()
            } else if let Some(rest) = l.strip_prefix("CSeq: ") {
                format!("CSeq: * {}", rest.split(' ').nth(1).unwrap_or(""))
            } else if let Some(rest) = l.strip_prefix("m=audio ") {
                format!("m=audio * {}", rest.split_once(' ').map_or("", |(_, r)| r))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `sluice plugin test --config` on the PBX's own INVITE prints the very message a live call
/// through the same chain delivers to the trunk (but for the values made up per call), with no
/// trace of the PBX's addresses or Call-ID.
#[test]
fn the_chain_dry_run_prints_what_a_live_call_sends() {
    let lab = start(
        38,
        "brand = \"twilio\"\noutbound_rules = [\"tel-uri-to\", \"acct\"]",
        "[plugin.acct]\nmodule = \"header-rules\"\nsettings = { rules = [\"add X-Account: 1234\"] }\n",
    );
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "1"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1", "-s", "4155550123"],
    );
    let (uas_log, uac_log) = (
        uas.messages_path().to_path_buf(),
        uac.messages_path().to_path_buf(),
    );
    assert_ok("caller", &uac.wait(LIMIT), 1, &lab);
    assert_ok("callee", &uas.wait(Duration::from_secs(10)), 1, &lab);
    let live = received(&uas_log)
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("the trunk's INVITE");
    let capture = parse_message_log(&std::fs::read_to_string(&uac_log).unwrap(), "sent")
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("the PBX's INVITE");
    let call_id = header(&capture, "Call-ID").unwrap().to_string();
    let capture_file = lab.dir.path().join("capture.sip");
    std::fs::write(&capture_file, &capture).unwrap();

    let out = Command::new(sluice_bin())
        .args(["plugin", "test", "--config"])
        .arg(&lab.config_path)
        .args(["--trunk", "loop", "--message"])
        .arg(&capture_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("plugin: twilio"), "{stdout}");
    assert!(
        stdout.contains("plugin: acct"),
        "named by its name: {stdout}"
    );
    let dry = stdout
        .split_once(" ---\n")
        .map(|(_, m)| m.to_string())
        .expect("the message");
    assert!(!dry.contains(&call_id), "{dry}");
    assert!(!dry.contains(&lab.pbx_ip()), "no PBX address: {dry}");
    assert!(dry.starts_with("INVITE sip:+14155550123@"), "{dry}");
    assert!(dry.contains("To: <tel:+14155550123>"), "{dry}");
    assert!(dry.contains("X-Account: 1234"), "{dry}");
    let norm = |m: &str| blank_per_call(m.replace("\r\n", "\n").trim_end());
    assert_eq!(norm(&dry), norm(&live), "dry run:\n{dry}\nlive:\n{live}");
}

/// STIR/SHAKEN end to end: calls to a trunk that signs arrive with an Identity header that
/// Debian's secsipidx accepts with the signer's certificate, carrying the attestation the
/// generic brand chose (A: the calling number is one of its `full_attestation_numbers`; the
/// trunk's default would be C) and the call's numbers; the signatures are counted.
#[test]
fn calls_to_a_signing_trunk_carry_an_identity_that_secsipidx_verifies() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stir/tests/data");
    // The key and certificate where an operator keeps them, to be rotated below.
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = (keys.path().join("key.pem"), keys.path().join("cert.pem"));
    std::fs::copy(data.join("signer-sec1.pem"), &key).unwrap();
    std::fs::copy(data.join("signer-cert.pem"), &cert).unwrap();
    let extra = format!(
        "[stir]\nkey = \"{}\"\nx5u = \"https://certs.example.net/shaken.pem\"\n\
         certificate = \"{}\"\n\n[plugin.generic.settings]\nattestation = \"B\"\n\
         full_attestation_numbers = [\"1555223\"]\n",
        key.display(),
        cert.display()
    );
    let lab = start(80, "stir = { sign = true }", &extra);
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "3"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "3", "-r", "10", "-s", "15552001111"],
    );
    let log = uas.messages_path().to_path_buf();
    assert_ok("PBX caller", &uac.wait(LIMIT), 3, &lab);
    assert_ok("signing trunk", &uas.wait(Duration::from_secs(10)), 3, &lab);
    let invites: Vec<String> = received(&log)
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 3);
    for invite in &invites {
        let identity = header(invite, "Identity").expect("an Identity header");
        let out = Command::new("secsipidx")
            .args(["-c", "-expire", "60", "-identity", identity, "-fpubkey"])
            .arg(&cert)
            .output()
            .expect("secsipidx (Debian package secsipidx) runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ok",
            "secsipidx: {out:?}\n{identity}"
        );
        let id = sluice_stir::parse_identity(identity).unwrap();
        assert_eq!(
            id.info.as_deref(),
            Some("https://certs.example.net/shaken.pem")
        );
        let p = sluice_stir::Passport::decode(&id.jws).unwrap();
        assert_eq!(p.claims.attest, "A", "the brand's choice");
        assert_eq!(p.claims.orig.tn.as_deref(), Some("15552230000"));
        assert_eq!(p.claims.dest.tn, ["15552001111"]);
        assert!(!invite.contains("PRIVATE KEY"));
    }
    let (_, text) = http("GET", &lab.admin(), "/metrics", None, "");
    let m = parse_prometheus(&text);
    assert_eq!(
        metric(
            &m,
            "sluice_stir_signed_total",
            &[("trunk", "loop"), ("attestation", "A")]
        ),
        Some(3.0)
    );
    // Key rotation without a restart: a new key alone is refused (it does not match the
    // certificate) and the running one stays; with its certificate it is taken.
    std::fs::copy(data.join("other-sec1.pem"), &key).unwrap();
    let (code, body) = http("POST", &lab.admin(), "/reload", None, "");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("does not match the certificate"), "{body}");
    let made = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=rotated",
            "-key",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let (code, body) = http("POST", &lab.admin(), "/reload", None, "");
    assert_eq!(code, 200, "{body}");
    let invites = outbound_call(&lab, "15552001111");
    let identity = header(&invites[0], "Identity").expect("signed with the new key");
    let checked = Command::new("secsipidx")
        .args(["-c", "-expire", "60", "-identity", identity, "-fpubkey"])
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&checked.stdout).trim(),
        "ok",
        "{checked:?}"
    );
}

/// `openssl s_server -WWW` serving the files of a directory over HTTPS on 127.0.0.1 (the test
/// CA's server certificate), killed when dropped.
struct HttpsFiles {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl HttpsFiles {
    fn serve(files: &[(&str, &std::path::Path)]) -> HttpsFiles {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stir/tests/data");
        let dir = tempfile::tempdir().unwrap();
        for (name, from) in files {
            std::fs::copy(from, dir.path().join(name)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(data.join("server.pem"))
            .arg("-key")
            .arg(data.join("server-key.pem"))
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("openssl runs");
        // Listening once a connection is accepted (bounded: 10 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        HttpsFiles {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for HttpsFiles {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// STIR/SHAKEN verification end to end: a carrier's calls signed by Debian's secsipidx, whose
/// certificate chain Sluice fetches over HTTPS from `openssl s_server` (once, then from its
/// cache), reach the PBX with `verstat=TN-Validation-Passed`; a call whose certificate URL
/// answers nothing reaches it with `TN-Validation-Failed`; the results are counted.
#[test]
fn calls_signed_by_secsipidx_reach_the_pbx_verified_over_https() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stir/tests/data");
    let https = HttpsFiles::serve(&[("shaken.pem", &data.join("shaken-chain.pem"))]);
    let extra = format!(
        "[stir]\ntrust_anchors = \"{ca}\"\nx5u_ca = \"{ca}\"\nx5u_hosts = [\"127.0.0.1\"]\n\
         fetch_timeout_ms = 2000\n",
        ca = data.join("ca.pem").display()
    );
    let lab = start(81, "stir = { verify = true }", &extra);
    let sign = |x5u: &str| {
        let out = Command::new("secsipidx")
            .args([
                "-S",
                "-x5u",
                x5u,
                "-o",
                "15552230000",
                "-d",
                "15552001111",
                "-a",
                "A",
            ])
            .arg("-fprvkey")
            .arg(data.join("signer-pkcs8.pem"))
            .output()
            .expect("secsipidx runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let good = sign(&format!("https://127.0.0.1:{}/shaken.pem", https.port));
    let pbx = lab.sipp("pbx", "uas.xml", Peer::Pbx, None, &["-m", "4"]);
    // One call fetches the certificate; the next two find it in the cache.
    for (name, calls) in [("carrier1", "1"), ("carrier2", "2")] {
        let carrier = lab.sipp(
            name,
            "uac_identity.xml",
            Peer::Trunk,
            Some(&lab.external()),
            &["-m", calls, "-s", "15552001111", "-set", "identity", &good],
        );
        let calls: u64 = calls.parse().unwrap();
        assert_ok("carrier (signed)", &carrier.wait(LIMIT), calls, &lab);
    }
    // A certificate URL where nothing answers.
    let dead = sign("https://127.0.0.1:1/shaken.pem");
    let carrier = lab.sipp(
        "carrier3",
        "uac_identity.xml",
        Peer::Trunk,
        Some(&lab.external()),
        &["-m", "1", "-s", "15552001111", "-set", "identity", &dead],
    );
    assert_ok("carrier (dead x5u)", &carrier.wait(LIMIT), 1, &lab);
    let log = pbx.messages_path().to_path_buf();
    assert_ok("PBX", &pbx.wait(Duration::from_secs(10)), 4, &lab);
    let invites: Vec<String> = received(&log)
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 4);
    for (i, invite) in invites.iter().enumerate() {
        let from = header(invite, "From").unwrap();
        let want = if i < 3 {
            "TN-Validation-Passed"
        } else {
            "TN-Validation-Failed"
        };
        assert!(
            from.contains(&format!("15552230000;verstat={want}@")),
            "call {i}: {from}"
        );
        assert!(header(invite, "Identity").is_none());
    }
    let (_, text) = http("GET", &lab.admin(), "/metrics", None, "");
    let m = parse_prometheus(&text);
    let count = |name: &str, labels: &[(&str, &str)]| metric(&m, name, labels).unwrap_or(0.0);
    assert_eq!(
        count(
            "sluice_stir_verified_total",
            &[("trunk", "loop"), ("result", "passed")]
        ),
        3.0
    );
    assert_eq!(
        count(
            "sluice_stir_verified_total",
            &[("trunk", "loop"), ("result", "fetch-failed")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "sluice_stir_certificate_fetches_total",
            &[("result", "fetched")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "sluice_stir_certificate_fetches_total",
            &[("result", "cached")]
        ),
        2.0
    );
}
