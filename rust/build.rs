//! Builds `pyctr-init` as a static binary and hands its path to the
//! extension, which embeds it (`include_bytes!`) and runs it from a sealed
//! memfd.  A nested cargo with its own target dir keeps the two builds apart.
//!
//! The same build makes `pyctr-fast-runtime`, the OCI runtime (the same core
//! with the runtime's commands): it is copied to
//! `python/pyctr_fast.data/scripts/`, which maturin installs into the
//! environment's bin directory (git ignores the copy).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for dir in ["rust/core/src", "rust/core/Cargo.toml", "rust/init/src", "rust/init/Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", manifest_dir.join(dir).display());
    }
    let target_dir = out_dir.join("init-target");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&manifest_dir)
        .args(["build", "--quiet", "-p", "pyctr-init", "--profile", "init", "--target", &target, "--target-dir"])
        .arg(&target_dir);
    if manifest_dir.join("Cargo.lock").exists() {
        cmd.arg("--locked");
    }
    // The outer build's flags and wrappers (clippy, coverage, maturin's
    // rustflags) are not for the init: it is built alone, statically.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    // Static and not position-independent: exec maps it and jumps in, with no
    // dynamic loader and no self-relocation on every container start.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static\x1f-Crelocation-model=static");
    let status = cmd.status().expect("run cargo to build pyctr-init");
    assert!(status.success(), "building pyctr-init failed");
    let bin = target_dir.join(&target).join("init").join("pyctr-init");
    println!("cargo:rustc-env=PYCTR_INIT_PATH={}", bin.display());
    let runtime = target_dir.join(&target).join("init").join("pyctr-fast-runtime");
    install_runtime(&runtime, &manifest_dir.join("python/pyctr_fast.data/scripts/pyctr-fast-runtime"));
}

/// Copy the binary to `dest` (mode 0755) unless it is there already:
/// through a temporary file and a rename, so a running copy is never
/// rewritten in place.
fn install_runtime(bin: &std::path::Path, dest: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(bin).expect("read the built pyctr-fast-runtime");
    if std::fs::read(dest).is_ok_and(|old| old == bytes) {
        return;
    }
    let tmp = dest.with_extension("tmp");
    std::fs::write(&tmp, &bytes).expect("write pyctr-fast-runtime");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod pyctr-fast-runtime");
    std::fs::rename(&tmp, dest).expect("install pyctr-fast-runtime");
}
