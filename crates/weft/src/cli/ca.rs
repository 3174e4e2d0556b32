//! `weft ca`: the mesh's trust bundle and root rotation.

use super::connect::{block_on, ConnectArgs};
use super::resources::report;
use super::table::Table;
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use std::path::PathBuf;
use std::process::ExitCode;
use weft_control::api::types::RotationRequest;
use weft_control::ca::{CaStatus, Step, SuppliedCa};
use weft_control::proxies::unix_now;

/// Flags of `weft ca`.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: CaAction,
}

/// A root-rotation step.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RotationStep {
    /// Add a new root to the trust bundle; the current one keeps signing.
    Prepare,
    /// Sign with the new root (two bundle refresh periods after prepare).
    Activate,
    /// Drop the old roots (one certificate lifetime after activate).
    Finish,
}

/// `weft ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaAction {
    /// The trust bundle: each root, which one signs, where a rotation stands.
    Status {
        /// Control-plane API connection.
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// One step of a root rotation (admin); refused while a request could fail.
    Rotate {
        /// prepare, activate or finish.
        step: RotationStep,
        /// Do it now even if a workload could still need the old state.
        #[arg(long)]
        force: bool,
        /// With prepare: the new signing certificate (PEM) instead of a new root.
        #[arg(long, requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long, requires = "ca_cert")]
        ca_key: Option<PathBuf>,
        /// The certificates above it up to the root (PEM).
        #[arg(long, requires = "ca_cert")]
        ca_chain: Option<PathBuf>,
        /// Control-plane API connection.
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// Runs `weft ca`.
pub fn run(args: CaArgs) -> anyhow::Result<ExitCode> {
    let connect = match &args.action {
        CaAction::Status { connect } | CaAction::Rotate { connect, .. } => connect,
    };
    let client = connect.client()?;
    let answer = match args.action {
        CaAction::Status { .. } => {
            block_on(client.json::<CaStatus>(Method::GET, "/api/v1/ca", None::<&()>))?
        }
        CaAction::Rotate {
            step,
            force,
            ca_cert,
            ca_key,
            ca_chain,
            ..
        } => {
            let ca = match (ca_cert, ca_key) {
                (Some(cert), Some(key)) => Some(
                    SuppliedCa {
                        cert,
                        key,
                        chain: ca_chain,
                    }
                    .read()?,
                ),
                _ => None,
            };
            let request = RotationRequest {
                step: match step {
                    RotationStep::Prepare => Step::Prepare,
                    RotationStep::Activate => Step::Activate,
                    RotationStep::Finish => Step::Finish,
                },
                force,
                ca,
            };
            block_on(client.json::<CaStatus>(Method::POST, "/api/v1/ca/rotation", Some(&request)))?
        }
    };
    match answer {
        Ok(status) => {
            print!("{}", render(&status));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report(&e)),
    }
}

/// The status as a table and a line on the rotation.
fn render(status: &CaStatus) -> String {
    let mut table = Table::new(&["ROOT", "SHA-256", "EXPIRES", "STATE"]);
    for r in &status.roots {
        let state = match (r.signing, r.pending) {
            (true, _) => "signing",
            (_, true) => "prepared",
            _ => "trusted",
        };
        let expires = time::OffsetDateTime::from_unix_timestamp(r.not_after)
            .map(|t| t.date().to_string())
            .unwrap_or_else(|_| r.not_after.to_string());
        table.row(vec![
            r.subject.clone(),
            r.sha256[..16].to_string(),
            expires,
            state.into(),
        ]);
    }
    let wait = |from: u64| from.saturating_sub(unix_now());
    let rotation = match (status.activate_from, status.finish_from) {
        (Some(from), _) if wait(from) == 0 => {
            "rotation: a new root is prepared; `weft ca rotate activate` may run now".into()
        }
        (Some(from), _) => format!(
            "rotation: a new root is prepared; activate in {}s",
            wait(from)
        ),
        (None, Some(from)) if wait(from) == 0 => {
            "rotation: the new root signs; `weft ca rotate finish` may run now".into()
        }
        (None, Some(from)) => format!(
            "rotation: the new root signs; finish in {}s (old certificates expire)",
            wait(from)
        ),
        (None, None) => "rotation: none under way".into(),
    };
    format!("trust domain {}\n{table}{rotation}\n", status.trust_domain)
}
