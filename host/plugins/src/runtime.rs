//! The wasmtime engine every plugin runs on: the component model, a pooling allocator sized by
//! the configuration, epoch interruption for deadlines, a compiled-code cache on disk, and one
//! linker with the host's imports (and WASI with nothing granted).

use crate::state::PluginState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances while plugins are called. At each tick, a hook that is running
/// compares its own running time with its deadline ([`crate::loaded`]), so a hook is cut off
/// at the first tick past its deadline: between the deadline and one tick later. Every tick
/// wakes a thread: at 1,000 calls/s the ticker thread alone used 2.6 µs of CPU per call with a
/// 5 ms tick and 0.9 µs with 20 ms (its `schedstat`, bench/README.md), and a runaway hook still
/// cannot hold the engine for more than its deadline plus 20 ms.
pub const EPOCH_TICK: Duration = Duration::from_millis(20);
/// Ticks without a plugin call (a second) after which the ticker sleeps until the next call:
/// an idle Sluice wakes no thread at all.
const IDLE_TICKS: u32 = 50;

/// Limits every plugin call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest one hook call may run (checked every [`EPOCH_TICK`]).
    pub deadline: Duration,
    /// Linear memory cap of an instance, in bytes.
    pub memory_bytes: usize,
    /// Instances alive at once (the pool's size).
    pub max_instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(5),
            memory_bytes: 16 << 20,
            max_instances: 200,
        }
    }
}

/// The shared engine. Compiling happens off the SIP path (reloads run on a blocking thread);
/// instances are created from `InstancePre`s out of the pool.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<PluginState>,
    pub(crate) limits: Limits,
    /// Compiled components by SHA-256 of their bytes.
    compiled: Mutex<HashMap<[u8; 32], Component>>,
    pub(crate) ticker: Arc<Ticker>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

impl Runtime {
    /// Build the engine; `cache` enables wasmtime's compiled-code cache (its default directory).
    pub fn new(limits: Limits, cache: bool) -> Result<Arc<Runtime>, String> {
        let e = |what: &str, err: wasmtime::Error| format!("{what}: {err:#}");
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Plugins are small: a modest stack keeps deep recursion from taking the host along.
        config.max_wasm_stack(512 * 1024);
        let mut pool = PoolingAllocationConfig::default();
        let n = limits.max_instances;
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .max_core_instances_per_component(16)
            .total_memories(n.saturating_mul(2))
            .max_memories_per_component(2)
            .max_memories_per_module(1)
            .total_tables(n.saturating_mul(4))
            .max_tables_per_component(8)
            .table_elements(20_000)
            .max_memory_size(limits.memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if cache {
            let mut cache_config = wasmtime::CacheConfig::new();
            // Under systemd's CacheDirectory= (the home directory is out of reach there).
            if let Some(dir) = std::env::var_os("CACHE_DIRECTORY") {
                let first = std::env::split_paths(&dir).next().unwrap_or_default();
                cache_config.with_directory(first.join("plugins"));
            }
            match wasmtime::Cache::new(cache_config) {
                Ok(c) => {
                    config.cache(Some(c));
                }
                Err(e) => tracing::warn!("compiled plugin cache unavailable: {e:#}"),
            }
        }
        let engine = Engine::new(&config).map_err(|err| e("plugin engine", err))?;
        let mut linker: Linker<PluginState> = Linker::new(&engine);
        crate::wasi::bindings::Shim::add_to_linker::<
            PluginState,
            wasmtime::component::HasSelf<PluginState>,
        >(&mut linker, |s| s)
        .map_err(|err| e("linking the WASI subset", err))?;
        crate::bindings::Plugin::add_to_linker::<
            PluginState,
            wasmtime::component::HasSelf<PluginState>,
        >(&mut linker, |s| s)
        .map_err(|err| e("linking the host interface", err))?;
        let ticker = Ticker::spawn(engine.clone())
            .map_err(|err| format!("cannot start the plugin deadline thread: {err}"))?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            limits,
            compiled: Mutex::new(HashMap::new()),
            ticker,
        }))
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compile a component (or reuse the compilation of identical bytes).
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, [u8; 32]), String> {
        use sha2::Digest;
        let hash: [u8; 32] = sha2::Sha256::digest(bytes).into();
        if let Some(c) = self
            .compiled
            .lock()
            .ok()
            .and_then(|m| m.get(&hash).cloned())
        {
            return Ok((c, hash));
        }
        if !wasmparser_is_component(bytes) {
            return Err("not a WebAssembly component (build it for wasm32-wasip2)".into());
        }
        let c =
            Component::new(&self.engine, bytes).map_err(|e| format!("does not compile: {e:#}"))?;
        if let Ok(mut m) = self.compiled.lock() {
            m.insert(hash, c.clone());
        }
        Ok((c, hash))
    }

    /// Forget compilations no loaded plugin uses (called after a reload).
    pub fn retain_compiled(&self, keep: &[[u8; 32]]) {
        if let Ok(mut m) = self.compiled.lock() {
            m.retain(|h, _| keep.contains(h));
        }
    }
}

/// Interfaces the host provides (any 0.x patch version of them links by semver).
const PROVIDED: &[&str] = &[
    "sluice:plugin/host",
    "sluice:plugin/message",
    "sluice:plugin/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// A linker for one component: the host's interfaces, and every other import (filesystem,
/// sockets…) defined as a trap, so that a plugin may import them but never use them.
/// (wasmtime's `define_unknown_imports_as_traps` would also shadow imports that the host
/// provides at another patch version; this leaves those to semver matching.)
pub(crate) fn linker_for(
    runtime: &Runtime,
    component: &Component,
) -> Result<Linker<PluginState>, String> {
    use wasmtime::component::types::ComponentItem;
    use wasmtime::component::ResourceType;
    let mut l = runtime.linker.clone();
    let engine = &runtime.engine;
    let err = |e: wasmtime::Error| format!("{e:#}");
    for (name, import) in component.component_type().imports(engine) {
        let base = name.split('@').next().unwrap_or(name);
        if PROVIDED.contains(&base) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            return Err(format!("imports `{name}`, which Sluice does not provide"));
        };
        let mut li = l.instance(name).map_err(err)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    li.func_new(export, move |_, _, _, _| {
                        Err(wasmtime::format_err!("{what} is not available to plugins"))
                    })
                    .map_err(err)?;
                }
                ComponentItem::Resource(_) => {
                    // Other WASI packages reuse the wasi:io resources by name: they must be
                    // the provided types. Resources of their own get a placeholder type.
                    let ty = match export {
                        "input-stream" => ResourceType::host::<crate::wasi::InputStream>(),
                        "output-stream" => ResourceType::host::<crate::wasi::OutputStream>(),
                        "pollable" => ResourceType::host::<crate::wasi::Pollable>(),
                        "error" => ResourceType::host::<crate::wasi::IoError>(),
                        _ => ResourceType::host::<()>(),
                    };
                    li.resource(export, ty, |_, _| Ok(())).map_err(err)?;
                }
                _ => {}
            }
        }
    }
    Ok(l)
}

/// The component binary format starts with the magic and a layer field of 1.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    matches!(bytes, [0, b'a', b's', b'm', _, _, 1, 0, ..])
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while plugins are being called, which is
/// what makes a deadline fire; sleeps once none was called for [`IDLE_TICKS`], and wakes at the
/// next call. Without it deadlines would never fire, so failing to start it fails the runtime.
pub(crate) struct Ticker {
    /// A call happened since the ticker last looked.
    called: AtomicBool,
    asleep: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Ticker {
    fn spawn(engine: Engine) -> std::io::Result<Arc<Ticker>> {
        let ticker = Arc::new(Ticker {
            called: AtomicBool::new(false),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let t = ticker.clone();
        let handle = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || t.run(&engine))?;
        let _ = ticker.thread.set(handle.thread().clone());
        Ok(ticker)
    }

    /// A plugin is about to be called: make sure the epoch moves. Costs two atomic operations,
    /// and a wake-up only after an idle second.
    pub(crate) fn calling(&self) {
        // Sequentially consistent with the ticker's `asleep`/`called` pair: either the ticker
        // sees this call before it parks, or this sees it asleep and wakes it.
        self.called.store(true, Ordering::SeqCst);
        if self.asleep.load(Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    fn run(&self, engine: &Engine) {
        let mut idle: u32 = 0;
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
            if self.called.swap(false, Ordering::SeqCst) {
                idle = 0;
                continue;
            }
            idle = idle.saturating_add(1);
            if idle >= IDLE_TICKS {
                self.asleep.store(true, Ordering::SeqCst);
                if !self.called.load(Ordering::SeqCst) && !self.stop.load(Ordering::SeqCst) {
                    std::thread::park();
                }
                self.asleep.store(false, Ordering::SeqCst);
                idle = 0;
            }
        }
    }
}
