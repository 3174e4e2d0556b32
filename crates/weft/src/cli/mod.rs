//! The command line: global flags and the subcommands.

pub mod bookinfo;
pub mod ca;
pub mod child;
pub mod connect;
pub mod control;
pub mod demo;
pub mod identity;
pub mod inspect;
pub mod logging;
pub mod proxy;
pub mod resources;
pub mod run;
pub mod signals;
pub mod table;
pub mod token;

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
    /// The whole mesh on this machine: control plane, Bookinfo with sidecars, gateway.
    Demo(demo::DemoArgs),
    /// Run a control-plane replica (xDS server, registry, REST API).
    Control(control::ControlArgs),
    /// Run an application beside its sidecar: `weft run --service S --port P -- CMD`.
    Run(run::RunArgs),
    /// Run an ingress gateway (a proxy serving the mesh's Gateways).
    Gateway(run::GatewayArgs),
    /// Run the proxy alone from an Envoy v3 bootstrap file.
    Proxy(proxy::ProxyArgs),
    /// Create or update resources from files (Istio YAML).
    Apply(resources::ApplyArgs),
    /// List or show resources, or `services`.
    Get(resources::GetArgs),
    /// Delete resources named by files or by kind and name.
    Delete(resources::DeleteArgs),
    /// Show a service: endpoints and health, subsets, routes, policies.
    Describe(inspect::DescribeArgs),
    /// Show every connected proxy and whether it runs what it was sent.
    ProxyStatus(inspect::ProxyStatusArgs),
    /// Create, list and revoke join tokens (a sidecar's credential).
    Token(token::TokenArgs),
    /// The mesh's trust bundle and root rotation.
    Ca(ca::CaArgs),
    /// Run one service of the Bookinfo demo application (used by `weft demo`).
    #[command(hide = true)]
    Bookinfo(bookinfo::BookinfoArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Control(args) => control::run(args),
        Command::Run(args) => run::run(args),
        Command::Gateway(args) => run::gateway(args),
        Command::Proxy(args) => proxy::run(args),
        Command::Apply(args) => resources::apply(args),
        Command::Get(args) => resources::get(args),
        Command::Delete(args) => resources::delete(args),
        Command::Describe(args) => inspect::describe(args),
        Command::ProxyStatus(args) => inspect::proxy_status(args),
        Command::Token(args) => token::run(args),
        Command::Ca(args) => ca::run(args),
        Command::Bookinfo(args) => bookinfo::run(args),
    }
}
