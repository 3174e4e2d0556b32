//! `weft bookinfo SERVICE`: one service of the demo application, as a plain process
//! that `weft run` starts beside a sidecar.

use anyhow::Context;
use clap::Args;
use std::process::ExitCode;

/// Flags of `weft bookinfo`.
#[derive(Debug, Args)]
pub struct BookinfoArgs {
    /// `productpage`, `details`, `reviews` or `ratings`.
    pub service: String,
    /// Version of `reviews`: v1 (no stars), v2 (black), v3 (red).
    #[arg(default_value = "v1")]
    pub variant: String,
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 9080)]
    pub port: u16,
}

/// Runs the service until the process is stopped.
pub fn run(args: BookinfoArgs) -> anyhow::Result<ExitCode> {
    let service =
        weft_bookinfo::Service::parse(&args.service, &args.variant).with_context(|| {
            format!(
                "unknown bookinfo service {:?} (version {:?})",
                args.service, args.variant
            )
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::select! {
            served = weft_bookinfo::serve(service, ([127, 0, 0, 1], args.port).into()) => served,
            _ = super::signals::terminated() => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
