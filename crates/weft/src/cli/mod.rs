//! The command line: global flags and the subcommands.

pub mod bookinfo;
pub mod logging;
pub mod proxy;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Weft: a service mesh. A sidecar proxy beside every service, configured with Envoy's
/// xDS API and Istio's resources.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Logging options.
    #[command(flatten)]
    pub log: logging::LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar proxy (the data plane) from an Envoy v3 bootstrap file.
    Proxy(proxy::ProxyArgs),
    /// Run one service of the Bookinfo demo application (used by `weft demo`).
    #[command(hide = true)]
    Bookinfo(bookinfo::BookinfoArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Proxy(args) => proxy::run(args),
        Command::Bookinfo(args) => bookinfo::run(args),
    }
}
