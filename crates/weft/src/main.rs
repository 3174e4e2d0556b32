//! `weft`: one binary for the whole mesh. Each subcommand lives in `cli/<command>.rs`.

mod cli;

/// mimalloc: the proxy allocates and frees many small objects per request on every
/// worker; mimalloc's per-thread free lists beat glibc's arenas there (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::logging::init(&args.log);
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
