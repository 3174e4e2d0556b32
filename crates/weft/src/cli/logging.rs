//! Logs for people (text) or machines (JSON), filtered by level or `RUST_LOG`.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Log format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging flags, shared by every subcommand.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log level (error, warn, info, debug, trace) or a full filter such as
    /// `weft_proxy=debug,info`. `RUST_LOG` overrides it.
    #[arg(long, global = true, default_value = "info", env = "WEFT_LOG_LEVEL")]
    pub log_level: String,
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "WEFT_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

/// Installs the global subscriber; logs go to standard error.
pub fn init(args: &LogArgs) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&args.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
