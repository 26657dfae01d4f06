//! Compiles `bpf/forward.bpf.c` with clang (`SLUICE_BPF_CC`, else the first `clang` found on
//! the PATH) into the crate's output directory. Without clang the crate still builds; the
//! kernel fast path then reports at start that it is missing, and the relay works in userspace.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sluice_bpf_object)");
    println!("cargo::rerun-if-changed=bpf/forward.bpf.c");
    println!("cargo::rerun-if-env-changed=SLUICE_BPF_CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("forward.bpf.o");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // The kernel headers' <asm/types.h> lives under the multiarch directory on Debian.
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let candidates: Vec<String> = match std::env::var("SLUICE_BPF_CC") {
        Ok(cc) => vec![cc],
        Err(_) => [
            "clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14",
        ]
        .map(String::from)
        .to_vec(),
    };
    for cc in candidates {
        let status = Command::new(&cc)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg("-I")
            .arg(&multiarch)
            .args(["-c", "bpf/forward.bpf.c", "-o"])
            .arg(&out)
            .status();
        match status {
            Ok(s) if s.success() => {
                println!("cargo::rustc-cfg=sluice_bpf_object");
                return;
            }
            Ok(s) => {
                println!("cargo::warning={cc} could not compile bpf/forward.bpf.c ({s}): the kernel fast path is left out");
                return;
            }
            Err(_) => continue,
        }
    }
}
