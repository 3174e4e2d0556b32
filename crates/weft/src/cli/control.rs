//! `weft control`: one control-plane replica.

use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_control::ca::SuppliedCa;
use weft_control::control::save_admin_token;
use weft_control::control::{DEFAULT_API_PORT, DEFAULT_XDS_PORT};
use weft_control::identity::DEFAULT_TRUST_DOMAIN;
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
    /// Where xDS over TLS is served (Istio's port 15012), with a certificate the mesh's
    /// CA signs; `off` to serve plaintext xDS only.
    #[arg(long, env = "WEFT_XDS_TLS_ADDRESS", default_value = "127.0.0.1:15012", value_parser = parse_optional_address)]
    pub xds_tls_address: OptionalAddress,
    /// Another name (DNS or IP) clients use to reach xDS over TLS; repeatable.
    #[arg(long = "xds-tls-name")]
    pub xds_tls_names: Vec<String>,
    /// SPIFFE trust domain of workload identities.
    #[arg(long, env = "WEFT_TRUST_DOMAIN", default_value = DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// The root namespace: PeerAuthentications there without a selector apply to
    /// the whole mesh (Istio's `istio-system`).
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,
    /// A 32-byte key (64 hex digits) that seals the CA key and the token key in the
    /// store; required with etcd. Make one with `openssl rand -hex 32`.
    #[arg(long, env = "WEFT_SEAL_KEY")]
    pub seal_key: Option<PathBuf>,
    /// Signing certificate of a CA you supply (PEM; a root or an intermediate), like
    /// Istio's `cacerts`. Without it, Weft makes its own root at the first start.
    #[arg(long, requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// Private key of --ca-cert (PEM).
    #[arg(long, requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Certificates above --ca-cert up to the root (PEM), for an intermediate.
    #[arg(long, requires = "ca_cert")]
    pub ca_chain: Option<PathBuf>,
    /// Lifetime of workload certificates (sidecars renew them at half-life).
    #[arg(long, default_value = "24h", value_parser = super::proxy::parse_duration)]
    pub workload_cert_ttl: std::time::Duration,
    /// How often sidecars fetch the trust bundle (a root rotation waits two periods
    /// between adding a root and signing with it).
    #[arg(long, default_value = "30s", value_parser = super::proxy::parse_duration)]
    pub bundle_refresh: std::time::Duration,
}

impl ControlArgs {
    /// The replica's configuration.
    pub fn config(&self) -> Config {
        let mut config = Config::new(self.data_dir.clone());
        config.store = self.store.clone();
        config.xds_address = self.xds_address;
        config.api_address = self.api_address;
        config.xds_tls_address = self.xds_tls_address.0;
        config.xds_tls_names = self.xds_tls_names.clone();
        config.trust_domain = self.trust_domain.clone();
        config.root_namespace = self.root_namespace.clone();
        config.seal_key = self.seal_key.clone();
        config.workload_cert_ttl = self.workload_cert_ttl;
        config.bundle_refresh = self.bundle_refresh;
        config.ca = match (&self.ca_cert, &self.ca_key) {
            (Some(cert), Some(key)) => Some(SuppliedCa {
                cert: cert.clone(),
                key: key.clone(),
                chain: self.ca_chain.clone(),
            }),
            _ => None,
        };
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
        // Written before anything is printed: whoever reads the first line finds it.
        let token_file = match &control.admin_token {
            Some(token) => Some(save_admin_token(&args.data_dir, token).with_context(|| {
                format!("saving the admin token in {}", args.data_dir.display())
            })?),
            None => None,
        };
        println!(
            "weft control plane: xDS on {}, API on http://{}",
            control.xds_address, control.api_address
        );
        if let Some(address) = control.xds_tls_address {
            println!(
                "xDS over TLS on {address} (trust bundle: {})",
                control.roots_file.display()
            );
        }
        if let (Some(token), Some(path)) = (&control.admin_token, token_file) {
            println!(
                "The mesh's admin token (shown once; also in {path}, readable by you alone):\n\n  {token}\n\n\
                 Use it with: export WEFT_TOKEN=$(cat {path})",
                path = path.display()
            );
        }
        super::signals::terminated().await;
        tracing::info!("shutting down");
        control.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// A socket address, or none (`off`).
#[derive(Debug, Clone, Copy)]
pub struct OptionalAddress(pub Option<SocketAddr>);

fn parse_optional_address(s: &str) -> Result<OptionalAddress, String> {
    match s {
        "off" | "none" | "" => Ok(OptionalAddress(None)),
        _ => s
            .parse()
            .map(|a| OptionalAddress(Some(a)))
            .map_err(|e| format!("{s:?}: {e} (an address like 127.0.0.1:15012, or `off`)")),
    }
}
