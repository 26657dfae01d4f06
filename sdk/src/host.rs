//! What the host offers a plugin: logging, counters, settings and a clock. On wasm these call
//! Sluice; in native tests they go to the [`crate::testing`] harness.

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::__guest::bindings::sluice::plugin::host as h;

    pub fn log(level: super::Level, message: &str) {
        let level = match level {
            super::Level::Trace => h::Level::Trace,
            super::Level::Debug => h::Level::Debug,
            super::Level::Info => h::Level::Info,
            super::Level::Warn => h::Level::Warn,
            super::Level::Error => h::Level::Error,
        };
        h::log(level, message);
    }
    pub fn counter(name: &str, delta: u64) {
        h::counter_add(name, delta);
    }
    pub fn setting(key: &str) -> Option<String> {
        h::setting(key)
    }
    pub fn setting_list(key: &str) -> Vec<String> {
        h::setting_list(key)
    }
    pub fn now_ms() -> u64 {
        h::now_ms()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub use crate::testing::host::{counter, log, now_ms, setting, setting_list};
}

/// Write a line to Sluice's log (with the plugin's name and the call's identifier).
pub fn log(level: Level, message: &str) {
    imp::log(level, message)
}

/// Add to the counter `sluice_plugin_counter_total{plugin, counter=name}`.
pub fn counter(name: &str, delta: u64) {
    imp::counter(name, delta)
}

/// A setting of this plugin from the Sluice configuration.
pub fn setting(key: &str) -> Option<String> {
    imp::setting(key)
}

/// A setting that is a list of strings.
pub fn setting_list(key: &str) -> Vec<String> {
    imp::setting_list(key)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    imp::now_ms()
}

/// `info!("...", args)`: log at info level. Also `debug!`, `warn!`, `error!`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::Level::Info, &format!($($arg)*)) };
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::Level::Debug, &format!($($arg)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::Level::Warn, &format!($($arg)*)) };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log($crate::Level::Error, &format!($($arg)*)) };
}
