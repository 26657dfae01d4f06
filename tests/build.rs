//! Builds the test plugins (tests/plugins) to wasm32-wasip2 components for the tests.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.join("..");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    use sluice_plugin_build::{build, Build};
    build(
        &Build {
            workspace: &workspace,
            packages: &["testkit", "old-abi", "abi-020", "iface-bench", "raw-reason"],
            features: &[],
            target_dir_name: "wasm-test-plugins",
            out_suffix: "",
        },
        &out,
    );
    build(
        &Build {
            workspace: &workspace,
            packages: &["testkit"],
            features: &["testkit/v2"],
            target_dir_name: "wasm-test-plugins-v2",
            out_suffix: "-v2",
        },
        &out,
    );
    println!("cargo:rustc-env=SLUICE_TEST_PLUGINS={}", out.display());
}
