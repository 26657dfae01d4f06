//! `[plugins]` and `[plugin.NAME]`: the plugin host's limits and defaults, and named plugins
//! with their module, policy, deadline and settings.

use crate::validate::{check_name, in_range, is_name, Checked, Problem};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The longest a plugin hook may run: the engine waits for it, so more would stall every call.
pub const MAX_PLUGIN_DEADLINE_MS: u64 = 1_000;

/// What happens to a message when a plugin fails on it (trap, deadline, memory, invalid edit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The message goes on without that plugin's edits.
    FailOpen,
    /// The request is refused (503 for a failure, 500 for an invalid edit).
    FailClosed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsSettings {
    /// A directory of `NAME.wasm` components (relative to the configuration file), watched for
    /// changes; a file there overrides the bundled plugin of the same name.
    pub dir: Option<Spanned<String>>,
    /// Longest a plugin may run on one message, in milliseconds.
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    /// Memory cap of each plugin instance, in MiB.
    #[serde(default = "default_plugin_memory")]
    pub memory_mb: u64,
    /// Plugin instances alive at once (each version in use counts).
    #[serde(default = "default_instances")]
    pub max_instances: u32,
    /// The failure policy of plugins that do not set their own.
    #[serde(default = "default_policy")]
    pub policy: Policy,
    /// Watch the plugin directory and the configuration file and reload on changes.
    #[serde(default = "default_true")]
    pub watch: bool,
}

fn default_deadline() -> u64 {
    5
}
fn default_plugin_memory() -> u64 {
    16
}
fn default_instances() -> u32 {
    200
}
fn default_policy() -> Policy {
    Policy::FailOpen
}
fn default_true() -> bool {
    true
}

impl Default for PluginsSettings {
    fn default() -> Self {
        PluginsSettings {
            dir: None,
            deadline_ms: default_deadline(),
            memory_mb: default_plugin_memory(),
            max_instances: default_instances(),
            policy: default_policy(),
            watch: true,
        }
    }
}

impl PluginsSettings {
    pub fn check(&self) -> Checked {
        in_range(
            "plugins.deadline_ms",
            self.deadline_ms,
            1,
            MAX_PLUGIN_DEADLINE_MS,
        )?;
        in_range("plugins.memory_mb", self.memory_mb, 1, 4096)?;
        in_range("plugins.max_instances", self.max_instances, 1, 100_000)
    }
}

/// A named plugin: `[plugin.NAME]`. A name used by a trunk without such a table is the module
/// of that name with no settings and the default policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// The module (`MODULE.wasm` in the plugin directory, or a bundled plugin); default: the
    /// plugin's name.
    pub module: Option<Spanned<String>>,
    pub policy: Option<Policy>,
    pub deadline_ms: Option<u64>,
    /// Settings handed to the plugin: strings, numbers, booleans, or arrays of them.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
}

impl PluginEntry {
    /// The settings as plugins read them.
    pub fn setting_lists(&self) -> BTreeMap<String, Vec<String>> {
        self.settings
            .iter()
            .filter_map(|(k, v)| setting_values(v).map(|v| (k.clone(), v)))
            .collect()
    }

    pub fn check(&self, name: &str) -> Checked {
        if !is_name(name) {
            return Err(Problem::new(format!(
                "plugin name `{name}` must be letters, digits, `-` or `_`"
            )));
        }
        if let Some(m) = &self.module {
            check_name(m, "plugin module")?;
        }
        for (key, value) in &self.settings {
            if setting_values(value).is_none() {
                return Err(Problem::new(format!(
                    "plugin.{name}.settings.{key}: settings are strings, numbers, booleans or \
                     arrays of them"
                )));
            }
        }
        if let Some(d) = self.deadline_ms {
            in_range(
                &format!("plugin.{name}.deadline_ms"),
                d,
                1,
                MAX_PLUGIN_DEADLINE_MS,
            )?;
        }
        Ok(())
    }
}

/// A plugin setting as the strings a plugin reads: one for a scalar, one per element for an
/// array; `None` for tables and nested arrays.
pub fn setting_values(v: &toml::Value) -> Option<Vec<String>> {
    fn scalar(v: &toml::Value) -> Option<String> {
        match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            toml::Value::Datetime(d) => Some(d.to_string()),
            _ => None,
        }
    }
    match v {
        toml::Value::Array(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}
