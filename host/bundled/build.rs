use std::path::{Path, PathBuf};

/// Every crate under plugins/ is a bundled plugin.
const PLUGINS: &[&str] = &[
    "generic",
    "twilio",
    "voipms",
    "telnyx",
    "tel-uri-request",
    "tel-uri-to",
    "strip-plus",
    "from-caller-id",
    "single-via",
    "header-rules",
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.join("../..");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let built = sluice_plugin_build::build(
        &sluice_plugin_build::Build {
            workspace: &workspace,
            packages: PLUGINS,
            features: &[],
            target_dir_name: "wasm-plugins",
            out_suffix: "",
        },
        &out,
    );
    let mut code = String::from("/// The bundled plugins: module name and component bytes.\n");
    code.push_str("pub static BUNDLED: &[(&str, &[u8])] = &[\n");
    for (name, path) in &built {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            Path::new(path).display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out.join("bundled.rs"), code).unwrap();
}
