//! `pyctr-fast-runtime`: the runc-compatible OCI runtime (see
//! `pyctr_core::runtime`).  Each container's init is this same binary, run
//! from a sealed memfd copy under another argv[0] (see `pyctr_core::init`).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.first().map(|a| a.rsplit('/').next().unwrap_or(a));
    let code = match name {
        Some(pyctr_core::runtime::ARGV0) => pyctr_core::runtime::main(&args),
        _ => pyctr_core::init::main(&args),
    };
    std::process::exit(code);
}
