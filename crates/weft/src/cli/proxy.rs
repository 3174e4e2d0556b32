//! `weft proxy`: run the sidecar from an Envoy bootstrap, or `--validate` one.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use weft_proxy::{Proxy, ProxyOptions};

/// Flags of `weft proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Envoy v3 bootstrap file, YAML or JSON (static_resources; see docs/proxy.md for
    /// the supported subset).
    #[arg(short, long, env = "WEFT_PROXY_CONFIG")]
    pub config: PathBuf,
    /// Check the configuration, print every problem with its field path, and exit
    /// (0 when valid), like `envoy --mode validate`.
    #[arg(long)]
    pub validate: bool,
    /// Worker threads; each accepts and serves its own connections. Default: one per
    /// available core.
    #[arg(long, env = "WEFT_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// On SIGTERM or SIGINT, time given to in-flight requests before the process exits.
    #[arg(long, env = "WEFT_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

/// Parses `500ms`, `10s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 10s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Runs `weft proxy`.
pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    if args.validate {
        return match weft_proxy::validate(&args.config) {
            Ok(summary) => {
                println!("{summary}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        };
    }
    let mut options = ProxyOptions::new(&args.config);
    if let Some(n) = args.concurrency {
        anyhow::ensure!(n > 0, "--concurrency must be at least 1");
        options.concurrency = n;
    }
    options.drain_timeout = args.drain_timeout;
    let proxy = Proxy::load(&options)?;
    let running = proxy.start().context("starting the proxy")?;
    for (name, addr) in running.listeners() {
        tracing::info!(listener = %name, %addr, "listening");
    }
    if let Some(a) = running.admin_addr() {
        tracing::info!(admin = %a, "admin listening");
    }
    tracing::info!(workers = options.concurrency, "weft proxy ready");
    let handle = running.shutdown_handle();
    std::thread::Builder::new()
        .name("weft-signals".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(super::signals::terminated());
                tracing::info!("signal received; draining");
                handle.shutdown();
            }
        })?;
    running.wait();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
    }
}
