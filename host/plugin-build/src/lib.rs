//! Used from build scripts: compile plugin crates of this workspace to `wasm32-wasip2`
//! components with a nested cargo (profile `plugin`, its own target directory so that it never
//! waits on the outer build), and copy each to `OUT_DIR/<package>.wasm`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// One build: packages (by name) and the features to build them with.
pub struct Build<'a> {
    /// The workspace's top directory.
    pub workspace: &'a Path,
    pub packages: &'a [&'a str],
    pub features: &'a [&'a str],
    /// A name for the nested target directory (builds with different features use their own).
    pub target_dir_name: &'a str,
    /// Appended to each output file's name (`<package><suffix>.wasm`).
    pub out_suffix: &'a str,
}

/// Build `b` and copy the components to `out_dir`; returns their paths by package name.
/// Panics with a message that says what to do when the build cannot run (build scripts report
/// failure by panicking).
pub fn build(b: &Build<'_>, out_dir: &Path) -> Vec<(String, PathBuf)> {
    // Everything a plugin is built from: its sources, the SDK and what it shares with the host
    // (host/sip), the interface, and the workspace's manifest (the `plugin` profile) and lock.
    for path in [
        "plugins",
        "sdk",
        "host/sip",
        "wit",
        "tests/plugins",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            b.workspace.join(path).display()
        );
    }
    check_target();
    let target_dir = b.workspace.join("target").join(b.target_dir_name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(b.workspace.join("Cargo.toml"))
        .args(["--profile", "plugin", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for p in b.packages {
        cmd.args(["-p", p]);
    }
    if !b.features.is_empty() {
        cmd.args(["--features", &b.features.join(",")]);
    }
    // The outer build's settings are for the host: a linter wrapper or host flags would break
    // (or silently replace) the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    if !status.success() {
        panic!("building the plugins for {TARGET} failed (see the output above)");
    }
    b.packages
        .iter()
        .map(|p| {
            let file = format!("{}.wasm", p.replace('-', "_"));
            let built = target_dir.join(TARGET).join("plugin").join(&file);
            let dest = out_dir.join(format!("{p}{}.wasm", b.out_suffix));
            std::fs::copy(&built, &dest).unwrap_or_else(|e| {
                panic!("cannot copy {} to {}: {e}", built.display(), dest.display())
            });
            (p.to_string(), dest)
        })
        .collect()
}

fn check_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(sysroot) = sysroot {
        let lib = Path::new(&sysroot).join("lib/rustlib").join(TARGET);
        if !lib.exists() {
            panic!(
                "the {TARGET} target is not installed: run `rustup target add {TARGET}` \
                 (Sluice's plugins are built for it)"
            );
        }
    }
}
