//! `pyctr-init`: the static container init embedded in the extension (see
//! `pyctr_core::init`).  The same binary, run from a file with argv[0]
//! `pyctr-supervise`, is the per-container supervisor (see
//! `pyctr_core::supervisor`).  The OCI runtime is its own binary
//! (`runtime.rs`), so an idle supervisor maps none of the runtime's code.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.first().map(String::as_str) {
        Some(pyctr_core::supervisor::launch::ARGV0) => pyctr_core::supervisor::main(&args),
        _ => pyctr_core::init::main(&args),
    };
    std::process::exit(code);
}
