//! The command line: `sluice check` on good and bad configurations.

use std::process::Command;

#[test]
fn check_accepts_the_bundled_lab() {
    let lab = sluice_e2e::repo_root().join("examples/loopback.toml");
    let out = Command::new(sluice_e2e::sluice_bin())
        .args(["check", "--config"])
        .arg(&lab)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_names_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = sluice_e2e::Lab::config_text(200, sluice_e2e::Transport::Udp)
        .replace("[pbx]\n", "[pbx]\ncolour = \"blue\"\n");
    let line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(sluice_e2e::sluice_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("bad.toml:{line}:")), "{err}");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn run_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[routing]\noutbound_trunk = 3\n").unwrap();
    let out = Command::new(sluice_e2e::sluice_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:"));
}
