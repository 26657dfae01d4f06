//! A minimal WASI for plugins. A Rust plugin built for wasm32-wasip2 imports a few WASI
//! interfaces through its standard library; Sluice provides them itself rather than through a
//! general WASI implementation, so that nothing a plugin does can block, reach a file or the
//! network, or touch the async runtime Sluice runs on.
//!
//! - environment and arguments: empty;
//! - stdin: closed; stdout and stderr: captured (bounded) and written to Sluice's log;
//! - clocks: the host's; waiting on a pollable returns at once (deadlines still apply);
//! - random: the host's;
//! - exit: ends the call as a trap.
//!
//! Anything else (filesystem, sockets) is linked as a trap.

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "sluice:wasi-shim/shim",
        with: {
            "wasi:io/error.error": super::IoError,
            "wasi:io/poll.pollable": super::Pollable,
            "wasi:io/streams.input-stream": super::InputStream,
            "wasi:io/streams.output-stream": super::OutputStream,
            "wasi:cli/terminal-input.terminal-input": super::Terminal,
            "wasi:cli/terminal-output.terminal-output": super::Terminal,
        },
        imports: {
            "wasi:cli/exit.exit": trappable,
            "wasi:cli/exit.exit-with-code": trappable,
        },
    });
}

pub struct IoError;
pub struct Pollable;
pub struct InputStream;
pub struct OutputStream;
pub struct Terminal;

use crate::state::PluginState;
use bindings::wasi::cli::{
    environment, exit, stderr, stdin, stdout, terminal_input, terminal_output, terminal_stderr,
    terminal_stdin, terminal_stdout,
};
use bindings::wasi::clocks::{monotonic_clock, wall_clock};
use bindings::wasi::io::{error, poll, streams};
use bindings::wasi::random::{insecure, insecure_seed, random};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasmtime::component::Resource;

/// Most output kept from one call (the rest is dropped).
pub const MAX_OUTPUT: usize = 4096;
/// Largest random buffer handed out at once.
const MAX_RANDOM: u64 = 64 * 1024;

const STDOUT: u32 = 1;
const STDERR: u32 = 2;

fn mono_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl PluginState {
    fn capture(&mut self, stream: u32, bytes: &[u8]) {
        let room = MAX_OUTPUT.saturating_sub(self.output.len());
        if room == 0 {
            return;
        }
        if self.output.is_empty() {
            self.output_is_stderr = stream == STDERR;
        }
        self.output
            .extend_from_slice(bytes.get(..room).unwrap_or(bytes));
    }
}

impl environment::Host for PluginState {
    fn get_environment(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn get_arguments(&mut self) -> Vec<String> {
        Vec::new()
    }
    fn initial_cwd(&mut self) -> Option<String> {
        None
    }
}

impl exit::Host for PluginState {
    fn exit(&mut self, _status: Result<(), ()>) -> wasmtime::Result<()> {
        Err(wasmtime::format_err!("the plugin called exit"))
    }
    fn exit_with_code(&mut self, code: u8) -> wasmtime::Result<()> {
        Err(wasmtime::format_err!("the plugin called exit({code})"))
    }
}

impl stdin::Host for PluginState {
    fn get_stdin(&mut self) -> Resource<InputStream> {
        Resource::new_own(0)
    }
}

impl stdout::Host for PluginState {
    fn get_stdout(&mut self) -> Resource<OutputStream> {
        Resource::new_own(STDOUT)
    }
}

impl stderr::Host for PluginState {
    fn get_stderr(&mut self) -> Resource<OutputStream> {
        Resource::new_own(STDERR)
    }
}

impl terminal_input::HostTerminalInput for PluginState {
    fn drop(&mut self, _: Resource<Terminal>) -> wasmtime::Result<()> {
        Ok(())
    }
}
impl terminal_input::Host for PluginState {}

impl terminal_output::HostTerminalOutput for PluginState {
    fn drop(&mut self, _: Resource<Terminal>) -> wasmtime::Result<()> {
        Ok(())
    }
}
impl terminal_output::Host for PluginState {}

impl terminal_stdin::Host for PluginState {
    fn get_terminal_stdin(&mut self) -> Option<Resource<Terminal>> {
        None
    }
}
impl terminal_stdout::Host for PluginState {
    fn get_terminal_stdout(&mut self) -> Option<Resource<Terminal>> {
        None
    }
}
impl terminal_stderr::Host for PluginState {
    fn get_terminal_stderr(&mut self) -> Option<Resource<Terminal>> {
        None
    }
}

impl monotonic_clock::Host for PluginState {
    fn now(&mut self) -> u64 {
        u64::try_from(mono_epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    fn resolution(&mut self) -> u64 {
        1
    }
    fn subscribe_instant(&mut self, _when: u64) -> Resource<Pollable> {
        Resource::new_own(0)
    }
    fn subscribe_duration(&mut self, _when: u64) -> Resource<Pollable> {
        Resource::new_own(0)
    }
}

impl wall_clock::Host for PluginState {
    fn now(&mut self) -> wall_clock::Datetime {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        wall_clock::Datetime {
            seconds: d.as_secs(),
            nanoseconds: d.subsec_nanos(),
        }
    }
    fn resolution(&mut self) -> wall_clock::Datetime {
        wall_clock::Datetime {
            seconds: 0,
            nanoseconds: 1,
        }
    }
}

fn random_bytes(len: u64) -> Vec<u8> {
    let mut v = vec![0u8; len.min(MAX_RANDOM) as usize];
    fastrand::fill(&mut v);
    v
}

impl random::Host for PluginState {
    fn get_random_bytes(&mut self, len: u64) -> Vec<u8> {
        random_bytes(len)
    }
    fn get_random_u64(&mut self) -> u64 {
        fastrand::u64(..)
    }
}

impl insecure::Host for PluginState {
    fn get_insecure_random_bytes(&mut self, len: u64) -> Vec<u8> {
        random_bytes(len)
    }
    fn get_insecure_random_u64(&mut self) -> u64 {
        fastrand::u64(..)
    }
}

impl insecure_seed::Host for PluginState {
    fn insecure_seed(&mut self) -> (u64, u64) {
        (fastrand::u64(..), fastrand::u64(..))
    }
}

impl error::HostError for PluginState {
    fn to_debug_string(&mut self, _: Resource<IoError>) -> String {
        "error".into()
    }
    fn drop(&mut self, _: Resource<IoError>) -> wasmtime::Result<()> {
        Ok(())
    }
}
impl error::Host for PluginState {}

impl poll::HostPollable for PluginState {
    /// Everything is ready at once: a plugin has nothing to wait for.
    fn ready(&mut self, _: Resource<Pollable>) -> bool {
        true
    }
    fn block(&mut self, _: Resource<Pollable>) {}
    fn drop(&mut self, _: Resource<Pollable>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl poll::Host for PluginState {
    fn poll(&mut self, list: Vec<Resource<Pollable>>) -> Vec<u32> {
        // Every pollable is ready: nothing here waits. A list longer than u32 cannot be passed.
        (0..u32::try_from(list.len()).unwrap_or(u32::MAX)).collect()
    }
}

impl streams::HostInputStream for PluginState {
    fn read(&mut self, _: Resource<InputStream>, _: u64) -> Result<Vec<u8>, streams::StreamError> {
        Err(streams::StreamError::Closed)
    }
    fn blocking_read(
        &mut self,
        _: Resource<InputStream>,
        _: u64,
    ) -> Result<Vec<u8>, streams::StreamError> {
        Err(streams::StreamError::Closed)
    }
    fn skip(&mut self, _: Resource<InputStream>, _: u64) -> Result<u64, streams::StreamError> {
        Err(streams::StreamError::Closed)
    }
    fn blocking_skip(
        &mut self,
        _: Resource<InputStream>,
        _: u64,
    ) -> Result<u64, streams::StreamError> {
        Err(streams::StreamError::Closed)
    }
    fn subscribe(&mut self, _: Resource<InputStream>) -> Resource<Pollable> {
        Resource::new_own(0)
    }
    fn drop(&mut self, _: Resource<InputStream>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl streams::HostOutputStream for PluginState {
    fn check_write(&mut self, _: Resource<OutputStream>) -> Result<u64, streams::StreamError> {
        Ok(MAX_OUTPUT as u64)
    }
    fn write(
        &mut self,
        s: Resource<OutputStream>,
        contents: Vec<u8>,
    ) -> Result<(), streams::StreamError> {
        self.capture(s.rep(), &contents);
        Ok(())
    }
    fn blocking_write_and_flush(
        &mut self,
        s: Resource<OutputStream>,
        contents: Vec<u8>,
    ) -> Result<(), streams::StreamError> {
        self.capture(s.rep(), &contents);
        Ok(())
    }
    fn flush(&mut self, _: Resource<OutputStream>) -> Result<(), streams::StreamError> {
        Ok(())
    }
    fn blocking_flush(&mut self, _: Resource<OutputStream>) -> Result<(), streams::StreamError> {
        Ok(())
    }
    fn subscribe(&mut self, _: Resource<OutputStream>) -> Resource<Pollable> {
        Resource::new_own(0)
    }
    fn write_zeroes(
        &mut self,
        _: Resource<OutputStream>,
        _: u64,
    ) -> Result<(), streams::StreamError> {
        Ok(())
    }
    fn blocking_write_zeroes_and_flush(
        &mut self,
        _: Resource<OutputStream>,
        _: u64,
    ) -> Result<(), streams::StreamError> {
        Ok(())
    }
    fn splice(
        &mut self,
        _: Resource<OutputStream>,
        _: Resource<InputStream>,
        _: u64,
    ) -> Result<u64, streams::StreamError> {
        Err(streams::StreamError::Closed)
    }
    fn blocking_splice(
        &mut self,
        _: Resource<OutputStream>,
        _: Resource<InputStream>,
        _: u64,
    ) -> Result<u64, streams::StreamError> {
        Err(streams::StreamError::Closed)
    }
    fn drop(&mut self, _: Resource<OutputStream>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl streams::Host for PluginState {}
