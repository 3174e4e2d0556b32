//! `weft control`: one control-plane replica.

use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_control::control::{DEFAULT_API_PORT, DEFAULT_XDS_PORT};
use weft_control::{Config, ControlPlane};

/// Flags of `weft control`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Directory of the embedded store (`store.redb`), created if missing.
    #[arg(long, env = "WEFT_DATA_DIR", default_value = "weft-data")]
    pub data_dir: PathBuf,
    /// The store: absent for the embedded one in --data-dir, or
    /// `etcd://host:2379,host:2379` to share etcd with other replicas.
    #[arg(long, env = "WEFT_STORE")]
    pub store: Option<String>,
    /// Where proxies connect for xDS (gRPC, ADS). Istio's port: 15010.
    #[arg(long, env = "WEFT_XDS_ADDRESS", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_XDS_PORT)))]
    pub xds_address: SocketAddr,
    /// Where the REST API (`weft apply`, `get`, ...), `/ready` and `/metrics` are
    /// served. Istio's monitoring port: 15014.
    #[arg(long, env = "WEFT_API_ADDRESS", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)))]
    pub api_address: SocketAddr,
}

impl ControlArgs {
    /// The replica's configuration.
    pub fn config(&self) -> Config {
        let mut config = Config::new(self.data_dir.clone());
        config.store = self.store.clone();
        config.xds_address = self.xds_address;
        config.api_address = self.api_address;
        config
    }
}

/// Runs `weft control` until SIGINT or SIGTERM.
pub fn run(args: ControlArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("weft-control")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let control = ControlPlane::start(args.config()).await?;
        println!(
            "weft control plane: xDS on {}, API on http://{}",
            control.xds_address, control.api_address
        );
        super::signals::terminated().await;
        tracing::info!("shutting down");
        control.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
