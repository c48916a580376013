//! `pyctr-init`: the static container init embedded in the extension.  See
//! `pyctr_core::init`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(pyctr_core::init::main(&args));
}
