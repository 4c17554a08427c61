//! The `prism` binary: a thin layer over [`prism_engine::cli`].

fn main() {
    std::process::exit(prism_engine::cli::main());
}
