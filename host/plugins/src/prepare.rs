//! From the configuration to a generation: which plugins the trunks name, where their modules
//! come from, their settings and policies; every plugin loaded and self-checked. Runs off the
//! SIP path (at start and on reload); any error refuses the whole generation.

use crate::host::{Chain, GenerationSpec};
use crate::loaded::{load, LoadedPlugin, PluginSpec};
use crate::runtime::Runtime;
use sha2::Digest;
use sluice_config::Config;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where plugin modules come from: a directory of `NAME.wasm` files first, then the bundled
/// ones.
pub struct ModuleSource<'a> {
    pub dir: Option<PathBuf>,
    pub bundled: &'a dyn Fn(&str) -> Option<&'static [u8]>,
    pub bundled_names: Vec<&'static str>,
}

impl ModuleSource<'_> {
    /// The bytes of a module and where they came from.
    pub fn read(&self, module: &str) -> Result<(Arc<[u8]>, String), String> {
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{module}.wasm"));
            match std::fs::read(&path) {
                Ok(b) => return Ok((b.into(), path.display().to_string())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
            }
        }
        if let Some(b) = (self.bundled)(module) {
            return Ok((Arc::from(b), "bundled".to_string()));
        }
        let looked = match &self.dir {
            Some(d) => format!("{} and the bundled plugins", d.display()),
            None => "the bundled plugins".to_string(),
        };
        Err(format!(
            "plugin module `{module}` not found (looked in {looked}: {})",
            self.bundled_names.join(", ")
        ))
    }
}

/// The plugin directory of a configuration, relative to the configuration file.
pub fn plugin_dir(cfg: &Config, config_path: Option<&Path>) -> Option<PathBuf> {
    let dir = PathBuf::from(cfg.plugins.dir.as_ref()?.get_ref());
    if dir.is_absolute() {
        return Some(dir);
    }
    let base = config_path
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some(base.join(dir))
}

/// Load every plugin the configuration names and build each trunk's chain.
pub fn prepare(
    runtime: &Arc<Runtime>,
    cfg: &Config,
    source: &ModuleSource<'_>,
) -> Result<GenerationSpec, String> {
    // Every plugin a trunk names, and every declared one (so that a bad declaration is refused
    // now, not when a trunk starts using it).
    let mut names: BTreeSet<String> = cfg.plugin.keys().cloned().collect();
    for t in &cfg.trunks {
        if !t.brand.get_ref().is_empty() {
            names.insert(t.brand.get_ref().clone());
        }
        for r in t.outbound_rules.iter().chain(&t.inbound_rules) {
            names.insert(r.get_ref().clone());
        }
    }
    let mut fingerprint = sha2::Sha256::new();
    let mut plugins: Vec<Arc<LoadedPlugin>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for name in &names {
        let entry = cfg.plugin.get(name);
        let module = entry
            .and_then(|e| e.module.as_ref())
            .map_or(name.clone(), |m| m.get_ref().clone());
        let (bytes, origin) = source
            .read(&module)
            .map_err(|e| format!("plugin `{name}`: {e}"))?;
        let spec = PluginSpec {
            name: name.clone(),
            module,
            origin,
            bytes,
            policy: entry.and_then(|e| e.policy).unwrap_or(cfg.plugins.policy),
            deadline: Duration::from_millis(
                entry
                    .and_then(|e| e.deadline_ms)
                    .unwrap_or(cfg.plugins.deadline_ms),
            ),
            settings: entry.map(|e| e.setting_lists()).unwrap_or_default(),
        };
        fingerprint.update(name.as_bytes());
        fingerprint.update(sha2::Sha256::digest(&spec.bytes));
        fingerprint.update(format!(
            "{:?}{:?}{:?}",
            spec.policy, spec.deadline, spec.settings
        ));
        index.insert(name.clone(), plugins.len());
        plugins.push(load(runtime, &spec)?);
    }
    let mut chains = HashMap::new();
    for t in &cfg.trunks {
        let brand = t.brand.get_ref();
        let idx = |n: &str| index.get(n).copied();
        let rules = |list: &[toml::Spanned<String>]| -> Vec<usize> {
            list.iter().filter_map(|r| idx(r.get_ref())).collect()
        };
        let b = idx(brand).into_iter();
        let mut to_trunk = rules(&t.outbound_rules);
        to_trunk.extend(b.clone());
        let mut to_pbx: Vec<usize> = b.collect();
        to_pbx.extend(rules(&t.inbound_rules));
        fingerprint.update(format!("{}{brand}{to_trunk:?}{to_pbx:?}", t.name.get_ref()));
        chains.insert(
            t.name.get_ref().clone(),
            Chain {
                brand: brand.clone(),
                to_trunk,
                to_pbx,
            },
        );
    }
    let keep: Vec<[u8; 32]> = plugins.iter().map(|p| p.hash).collect();
    runtime.retain_compiled(&keep);
    Ok(GenerationSpec {
        plugins,
        chains,
        fingerprint: fingerprint
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}
