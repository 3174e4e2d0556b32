//! Where the CLI finds the control plane and its credential, as kubectl does with its
//! kubeconfig: flags first, then the environment (`WEFT_SERVER`, `WEFT_TOKEN`), then a
//! config file (`--weftconfig`, `WEFT_CONFIG`, or `~/.config/weft/config.yaml`), then
//! the default `127.0.0.1:15014`.
//!
//! ```yaml
//! # ~/.config/weft/config.yaml
//! server: 10.0.0.5:15014,10.0.0.6:15014   # several replicas, tried in turn
//! token: s3cr3t
//! ```

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;
use weft_control::client::ApiClient;
use weft_control::control::DEFAULT_API_PORT;

/// Flags naming the control plane.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Control-plane API address(es), `host:port[,host:port...]`.
    #[arg(long, env = "WEFT_SERVER")]
    pub server: Option<String>,
    /// Bearer token for the API.
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Client config file (default: `~/.config/weft/config.yaml` when it exists).
    #[arg(long, env = "WEFT_CONFIG")]
    pub weftconfig: Option<PathBuf>,
}

/// The client config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    server: Option<String>,
    token: Option<String>,
}

fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("weft").join("config.yaml"))
}

impl ConnectArgs {
    fn config_file(&self) -> anyhow::Result<ConfigFile> {
        let (path, required) = match &self.weftconfig {
            Some(p) => (p.clone(), true),
            None => match default_config_path() {
                Some(p) => (p, false),
                None => return Ok(ConfigFile::default()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConfigFile::default())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_yaml_ng::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    /// The credential these settings name.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        // An empty WEFT_TOKEN is no token.
        if let Some(t) = self.token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(t.clone()));
        }
        Ok(self.config_file()?.token.filter(|t| !t.is_empty()))
    }

    /// The API client these settings describe.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        let file = self.config_file()?;
        let server = self
            .server
            .clone()
            .or(file.server)
            .unwrap_or_else(|| format!("127.0.0.1:{DEFAULT_API_PORT}"));
        let token = self
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or(file.token.filter(|t| !t.is_empty()));
        Ok(ApiClient::new(&[server], token))
    }
}

/// Runs one async CLI action on a small runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    Ok(runtime.block_on(f))
}
