//! `weft token`: join tokens that let a sidecar act as one service.

use super::connect::{block_on, ConnectArgs};
use super::proxy::parse_duration;
use super::resources::report;
use super::table::Table;
use clap::{Args, Subcommand};
use hyper::Method;
use std::process::ExitCode;
use std::time::Duration;
use weft_control::api::types::{TokenCreated, TokenRequest};
use weft_control::auth::{Role, TokenRecord};
use weft_control::client::segment;
use weft_control::proxies::unix_now;

/// Flags of `weft token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: TokenAction,
}

/// `weft token` subcommands (each needs the admin token).
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Issue a join token bound to one service identity; prints the token alone.
    Create {
        /// The service.
        #[arg(long)]
        service: String,
        /// Its namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Lifetime (e.g. `30d`, `12h`; default a year).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// Control-plane API connection.
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List tokens (ids, identities, expiry; never the tokens).
    List {
        /// Control-plane API connection.
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Revoke a token by id: every replica refuses it from now on.
    Revoke {
        /// The token's id (from `weft token list`).
        id: String,
        /// Control-plane API connection.
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

impl TokenAction {
    fn connect(&self) -> &ConnectArgs {
        match self {
            TokenAction::Create { connect, .. }
            | TokenAction::List { connect }
            | TokenAction::Revoke { connect, .. } => connect,
        }
    }
}

fn when(unix: u64) -> String {
    let now = unix_now();
    if unix <= now {
        return "expired".into();
    }
    let left = unix - now;
    match left {
        l if l >= 2 * 86400 => format!("in {}d", l / 86400),
        l if l >= 2 * 3600 => format!("in {}h", l / 3600),
        l => format!("in {}m", l / 60),
    }
}

/// Runs `weft token`.
pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let client = args.action.connect().client()?;
    block_on(async {
        match args.action {
            TokenAction::Create {
                service,
                namespace,
                ttl,
                ..
            } => {
                let request = TokenRequest {
                    service,
                    namespace: Some(namespace),
                    ttl_seconds: ttl.map(|t| t.as_secs().max(1)),
                };
                match client
                    .json::<TokenCreated>(Method::POST, "/api/v1/tokens", Some(&request))
                    .await
                {
                    Ok(created) => {
                        eprintln!(
                            "token {} for {} (expires {})",
                            created.record.id,
                            created.spiffe_id,
                            when(created.record.expires)
                        );
                        println!("{}", created.token);
                        ExitCode::SUCCESS
                    }
                    Err(e) => report(&e),
                }
            }
            TokenAction::List { .. } => {
                match client
                    .json::<Vec<TokenRecord>>(Method::GET, "/api/v1/tokens", None::<&()>)
                    .await
                {
                    Ok(records) => {
                        let mut table = Table::new(&["ID", "ROLE", "IDENTITY", "EXPIRES"]);
                        for r in records {
                            let (role, identity) = match r.role {
                                Role::Admin => ("admin", "-".to_string()),
                                Role::Workload { identity } => ("workload", identity.to_string()),
                            };
                            table.row(vec![r.id, role.into(), identity, when(r.expires)]);
                        }
                        print!("{table}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => report(&e),
                }
            }
            TokenAction::Revoke { id, .. } => {
                let path = format!("/api/v1/tokens/{}", segment(&id));
                match client.call(Method::DELETE, &path, None).await {
                    Ok(_) => {
                        println!("token {id} revoked");
                        ExitCode::SUCCESS
                    }
                    Err(e) => report(&e),
                }
            }
        }
    })
}
