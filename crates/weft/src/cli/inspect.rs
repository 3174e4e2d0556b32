//! `weft describe service` and `weft proxy-status`: what the mesh does with a service,
//! and whether every proxy runs what it was sent.

use super::connect::{block_on, ConnectArgs};
use super::table::Table;
use anyhow::bail;
use clap::Args;
use hyper::Method;
use std::process::ExitCode;
use weft_control::api::types::{SecurityView, ServiceDescription};
use weft_control::client::segment;
use weft_control::proxies::{unix_now, ProxyStatus};
use weft_xds::type_url;

/// Flags of `weft describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// What to describe: `service`.
    pub what: String,
    /// Its name.
    pub name: String,
    /// Namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Control-plane connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Flags of `weft proxy-status`.
#[derive(Debug, Args)]
pub struct ProxyStatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Control-plane connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs `weft describe`.
pub fn describe(args: DescribeArgs) -> anyhow::Result<ExitCode> {
    if !matches!(
        args.what.to_ascii_lowercase().as_str(),
        "service" | "services" | "svc"
    ) {
        bail!("weft describe knows `service` (for example: weft describe service reviews)");
    }
    let client = args.connect.client()?;
    let path = format!(
        "/api/v1/services/{}/{}",
        segment(&args.namespace),
        segment(&args.name)
    );
    let described = block_on(client.json::<ServiceDescription>(Method::GET, &path, None::<&()>))?;
    let d = match described {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    print!("{}", render(&d));
    Ok(ExitCode::SUCCESS)
}

/// The human form of a description.
pub fn render(d: &ServiceDescription) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let s = &d.service;
    let _ = writeln!(out, "Name:        {}", s.name);
    let _ = writeln!(out, "Namespace:   {}", s.namespace);
    let _ = writeln!(out, "Hostname:    {}", s.hostname);
    let ports: Vec<String> = s
        .ports
        .iter()
        .map(|p| {
            format!(
                "{} {}/{}",
                p.name,
                p.number,
                p.protocol.to_ascii_uppercase()
            )
        })
        .collect();
    let _ = writeln!(out, "Ports:       {}", ports.join(", "));
    let _ = writeln!(out, "Endpoints:   {} of {} healthy", s.healthy, s.instances);
    if !d.instances.is_empty() {
        let mut t = Table::new(&["ADDRESS", "HEALTHY", "LABELS", "SIDECAR", "ID"]);
        for i in &d.instances {
            let ports: Vec<String> = i
                .ports
                .iter()
                .map(|p| format!("{}:{}", i.address, p.endpoint_port))
                .collect();
            let labels: Vec<String> = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            t.row(vec![
                ports.join(","),
                if i.healthy { "yes" } else { "no" }.into(),
                if labels.is_empty() {
                    "<none>".into()
                } else {
                    labels.join(",")
                },
                if i.sidecar { "yes" } else { "no" }.into(),
                i.id.clone(),
            ]);
        }
        out.push('\n');
        out.push_str(&indent(&t.to_string()));
    }
    if !d.subsets.is_empty() {
        let _ = writeln!(out, "\nSubsets:");
        let mut t = Table::new(&["NAME", "LABELS", "ENDPOINTS"]);
        for sub in &d.subsets {
            let labels: Vec<String> = sub.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            t.row(vec![
                sub.name.clone(),
                labels.join(","),
                format!("{}/{} healthy", sub.healthy, sub.instances),
            ]);
        }
        out.push_str(&indent(&t.to_string()));
    }
    let list = |names: &[String]| {
        if names.is_empty() {
            "<none>".to_string()
        } else {
            names.join(", ")
        }
    };
    let _ = writeln!(out, "\nVirtualServices:   {}", list(&d.virtual_services));
    let _ = writeln!(out, "DestinationRules:  {}", list(&d.destination_rules));
    let _ = writeln!(out, "Policies:          {}", list(&d.policies));
    out.push_str(&security(&d.security));
    if !d.routes.is_empty() {
        let _ = writeln!(out, "\nRoutes (as callers in {} see them):", s.namespace);
        let mut t = Table::new(&["PORT", "ROUTE", "MATCH", "TO"]);
        for r in &d.routes {
            t.row(vec![
                r.port.to_string(),
                if r.source.is_empty() {
                    "(default)".into()
                } else {
                    r.source.clone()
                },
                r.matches.clone(),
                r.action.clone(),
            ]);
        }
        out.push_str(&indent(&t.to_string()));
    }
    if !d.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings:");
        for w in &d.warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
    out
}

/// The security section: identity, mTLS per port and instance, authorization.
fn security(v: &SecurityView) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if v.identity.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\nSecurity:\n  Identity: {}", v.identity);
    if !v.callers.is_empty() {
        let _ = writeln!(out, "  Callers:");
        let mut t = Table::new(&["PORT", "SIDECARS SEND", "BECAUSE"]);
        for c in &v.callers {
            let tls = if c.mtls { "mTLS" } else { "plaintext" };
            t.row(vec![c.port.to_string(), tls.into(), c.reason.clone()]);
        }
        out.push_str(&indent(&indent(&t.to_string())));
    }
    if !v.inbound.is_empty() {
        let _ = writeln!(out, "  Inbound (PeerAuthentication):");
        let mut t = Table::new(&[
            "INSTANCE",
            "PORT",
            "MODE",
            "FROM SIDECARS",
            "FROM OUTSIDE",
            "POLICIES",
        ]);
        for i in &v.inbound {
            let policies = if i.policies.is_empty() {
                "<none: PERMISSIVE default>".to_string()
            } else {
                i.policies.join(" > ")
            };
            t.row(vec![
                i.instance.clone(),
                i.port.to_string(),
                i.mode.clone(),
                i.from_sidecars.clone(),
                i.from_outside.clone(),
                policies,
            ]);
        }
        out.push_str(&indent(&indent(&t.to_string())));
    }
    if !v.authorization.is_empty() {
        let _ = writeln!(out, "  Authorization (AUDIT, then DENY, then ALLOW):");
        let mut t = Table::new(&["INSTANCE", "AUDIT", "DENY", "ALLOW", "DEFAULT"]);
        let names = |l: &[String]| {
            if l.is_empty() {
                "-".to_string()
            } else {
                l.join(",")
            }
        };
        for a in &v.authorization {
            let default = if a.allow.is_empty() {
                "allow"
            } else {
                "deny unless an ALLOW matches"
            };
            t.row(vec![
                a.instance.clone(),
                names(&a.audit),
                names(&a.deny),
                names(&a.allow),
                default.into(),
            ]);
            for custom in &a.unsupported {
                let _ = writeln!(
                    out,
                    "  note: {custom} is CUSTOM, which Weft does not enforce"
                );
            }
        }
        out.push_str(&indent(&indent(&t.to_string())));
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn age(since: u64) -> String {
    let secs = unix_now().saturating_sub(since);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// Runs `weft proxy-status`.
pub fn proxy_status(args: ProxyStatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    let proxies = match block_on(client.json::<Vec<ProxyStatus>>(
        Method::GET,
        "/api/v1/proxies",
        None::<&()>,
    ))? {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&proxies)?);
        return Ok(ExitCode::SUCCESS);
    }
    if proxies.is_empty() {
        eprintln!("No proxies connected.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "NAME",
        "ROLE",
        "SERVICE",
        "CDS",
        "LDS",
        "EDS",
        "RDS",
        "PROTOCOL",
        "CONNECTED",
    ]);
    let state = |p: &ProxyStatus, url: &str| match p.types.get(url) {
        Some(s) => s.state(p.last_nack.as_ref(), url).to_string(),
        None => "NOT SENT".to_string(),
    };
    for p in &proxies {
        let service = if p.service.is_empty() {
            "-".to_string()
        } else {
            format!("{}.{}", p.service, p.namespace)
        };
        t.row(vec![
            p.id.clone(),
            p.role.clone(),
            service,
            state(p, type_url::CLUSTER),
            state(p, type_url::LISTENER),
            state(p, type_url::CLUSTER_LOAD_ASSIGNMENT),
            state(p, type_url::ROUTE_CONFIGURATION),
            p.protocol.clone(),
            age(p.connected_since),
        ]);
    }
    print!("{t}");
    let nacks: Vec<&ProxyStatus> = proxies.iter().filter(|p| p.last_nack.is_some()).collect();
    if !nacks.is_empty() {
        println!("\nLast rejections:");
        for p in nacks {
            if let Some(n) = &p.last_nack {
                println!(
                    "  {} {} version {} ({} ago): {}",
                    p.id,
                    weft_control::metrics::short_type(&n.type_url).to_ascii_uppercase(),
                    n.version,
                    age(n.at),
                    n.message
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
