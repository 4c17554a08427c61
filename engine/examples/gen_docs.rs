//! Writes the `prism` man pages and shell completions from the clap definitions, for the
//! packages (scripts/package.sh runs it):
//!
//! `cargo run -p prism-engine --example gen_docs -- OUTDIR`
//!
//! gives `OUTDIR/man/prism.1`, `OUTDIR/man/prism-<subcommand>.1` for each subcommand,
//! and `OUTDIR/completions/{prism.bash,_prism,prism.fish}`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use prism_engine::cli::Cli;

fn main() {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen_docs OUTDIR");
        std::process::exit(2);
    };
    if let Err(e) = generate(&out) {
        eprintln!("gen_docs: {e}");
        std::process::exit(1);
    }
}

fn generate(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;

    let cmd = Cli::command();
    // `prism.1`, then `prism-process.1` etc.; each page's SEE ALSO-style subcommand list
    // comes from the same definitions.
    clap_mangen::generate_to(cmd.clone(), &man)?;

    for (shell, name) in [
        (Shell::Bash, "prism.bash"),
        (Shell::Zsh, "_prism"),
        (Shell::Fish, "prism.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "prism", &mut buf);
        std::fs::write(completions.join(name), buf)?;
    }
    Ok(())
}
