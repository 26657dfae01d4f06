//! The bundled plugins, compiled from `plugins/` to `wasm32-wasip2` components by this crate's
//! build script and embedded in the binary. A plugin directory in the configuration may
//! override any of them with a file of the same name.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The component of a bundled plugin module.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The names of the bundled plugin modules.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUNDLED.iter().map(|(n, _)| *n)
}
