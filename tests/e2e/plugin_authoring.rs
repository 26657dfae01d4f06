//! What a plugin author uses, end to end: `sluice plugin test` (one plugin on a capture, and a
//! whole chain as a live call runs it) and the walkthrough's example plugin, built as its
//! README says and run on a live call.
#![allow(clippy::indexing_slicing, clippy::string_slice)]

use sluice_e2e::{header, parse_message_log, received_at, sluice_bin, test_plugin, Lab, Peer};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);

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
    let lab = Lab::start_with_trunk(
        34,
        "outbound_rules = [\"acme\"]",
        &format!(
            "[plugins]\ndir = \"{}\"\n\n[plugin.acme.settings]\naccount = \"AC-42\"\n",
            dir.path().display()
        ),
    );
    let got = lab.outbound_call("+15552234567");
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
    let lab = Lab::start_with_trunk(
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
    lab.assert_calls("caller", &uac.wait(LIMIT), 1);
    lab.assert_calls("callee", &uas.wait(Duration::from_secs(10)), 1);
    let live = received_at(&uas_log)
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
