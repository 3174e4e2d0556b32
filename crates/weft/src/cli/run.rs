//! `weft run`: an application and its sidecar, started together. The sidecar registers
//! the workload with the control plane, serves its inbound traffic, checks its health
//! and reports it; the application reaches other services through the sidecar's
//! outbound listener, set as its `HTTP_PROXY`. On SIGTERM or SIGINT the workload first
//! leaves its service's endpoints, then the application is stopped, then the sidecar
//! drains — so callers see no errors during a rolling restart.
//!
//! `weft gateway` runs the same proxy as an ingress gateway, with no application.

use super::connect::ConnectArgs;
use super::identity;
use super::proxy::parse_duration;
use anyhow::{bail, Context};
use clap::Args;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use weft_control::client::{segment, ApiClient};
use weft_control::health::{probe, Check};
use weft_control::identity::Identity;
use weft_proxy::sidecar::{PortSpec, SidecarSpec};
use weft_proxy::{Proxy, ProxyOptions, RunningProxy};

/// Flags shared by `weft run` and `weft gateway`.
#[derive(Debug, Clone, Args)]
pub struct MeshArgs {
    /// Namespace.
    #[arg(short, long, default_value = "default", env = "WEFT_NAMESPACE")]
    pub namespace: String,
    /// A label (`version=v1`), repeatable; DestinationRule subsets select on labels.
    #[arg(short, long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Control-plane xDS address(es), `host:port[,host:port...]`, tried in turn.
    #[arg(long, env = "WEFT_CONTROL_PLANE", default_value = "127.0.0.1:15010")]
    pub control_plane: String,
    /// Speak incremental (delta) xDS.
    #[arg(long)]
    pub delta: bool,
    /// Node id (default: `SERVICE-RANDOM.NAMESPACE`).
    #[arg(long)]
    pub id: Option<String>,
    /// Address the sidecar's inbound listeners bind and peers connect to.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// Admin port of the sidecar (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub admin_port: u16,
    /// Proxy worker threads.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Control-plane API connection (for health reports).
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Flags of `weft run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service this workload is an instance of.
    #[arg(short, long)]
    pub service: String,
    /// The port the application listens on (127.0.0.1).
    #[arg(short, long)]
    pub port: u16,
    /// The port callers name (`http://reviews:9080/`); default: --port.
    #[arg(long)]
    pub service_port: Option<u16>,
    /// Protocol of the port: http, http2, grpc or tcp.
    #[arg(long, default_value = "http")]
    pub protocol: String,
    /// Port of the sidecar's inbound listener (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub inbound_port: u16,
    /// Port of the outbound listener the application's HTTP_PROXY points at (0: any).
    #[arg(long, default_value_t = 0)]
    pub outbound_port: u16,
    /// Health check: an HTTP path on the application's port (2xx/3xx is healthy).
    /// Without --health or --health-exec, a TCP connect to the port.
    #[arg(long)]
    pub health: Option<String>,
    /// Health check: a shell command (exit 0 is healthy).
    #[arg(long, conflicts_with = "health")]
    pub health_exec: Option<String>,
    /// Time between health checks.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub health_interval: Duration,
    /// On shutdown, time between leaving the endpoints and stopping the application,
    /// for the change to reach every caller.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain_delay: Duration,
    /// Time the application gets to exit after SIGTERM before SIGKILL.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
    /// Mesh flags.
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// The application's command and arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Flags of `weft gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Name of the gateway workload.
    #[arg(long, default_value = "istio-ingressgateway")]
    pub name: String,
    /// A Gateway server port to serve, as `PORT` or `PORT:LOCAL` (serve the Gateway's
    /// PORT on local port LOCAL). Repeatable.
    #[arg(long = "port", required = true, value_parser = parse_gateway_port)]
    pub ports: Vec<(u16, u16)>,
    /// Mesh flags (give `--label istio=ingressgateway` to match Istio's samples;
    /// it is the default when no label is given).
    #[command(flatten)]
    pub mesh: MeshArgs,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not a label; write key=value"))
}

fn parse_gateway_port(s: &str) -> Result<(u16, u16), String> {
    let parse = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number"))
    };
    match s.split_once(':') {
        Some((port, local)) => Ok((parse(port)?, parse(local)?)),
        None => parse(s).map(|p| (p, p)),
    }
}

/// A port nobody listens on now (the kernel's choice), for listeners whose number must
/// be known before the proxy binds them.
pub fn free_port(address: IpAddr) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(SocketAddr::new(address, 0))
        .with_context(|| format!("finding a free port on {address}"))?;
    Ok(l.local_addr()?.port())
}

fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:06x}",
        (nanos ^ u128::from(std::process::id()) << 20) & 0xff_ffff
    )
}

/// Starts the proxy, and on `runtime` the task that keeps its workload certificate.
fn start_proxy(
    spec: &SidecarSpec,
    mesh: &MeshArgs,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<RunningProxy> {
    let yaml = spec.bootstrap_yaml();
    let mut options = ProxyOptions::new(format!("<bootstrap of {}>", spec.node_id));
    options.concurrency = mesh.concurrency.max(1);
    options.xds_token = mesh.connect.token()?;
    let identity = Identity::new(spec.namespace.clone(), spec.service.clone());
    runtime.spawn(identity::maintain(
        mesh.connect.client()?,
        identity,
        options.secrets.clone(),
    ));
    let proxy = Proxy::from_text(&options, &yaml).context("the sidecar's bootstrap")?;
    proxy.start().context("starting the sidecar")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Runs `weft run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mesh = &args.mesh;
    let id = mesh
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}.{}", args.service, random_suffix(), mesh.namespace));
    let inbound_port = match args.inbound_port {
        0 => free_port(mesh.address)?,
        p => p,
    };
    let outbound_port = match args.outbound_port {
        0 => free_port([127, 0, 0, 1].into())?,
        p => p,
    };
    let protocol = args.protocol.to_ascii_lowercase();
    if !matches!(protocol.as_str(), "http" | "http2" | "grpc" | "tcp") {
        bail!("--protocol {protocol}: use http, http2, grpc or tcp");
    }
    let spec = SidecarSpec {
        node_id: id.clone(),
        service: args.service.clone(),
        namespace: mesh.namespace.clone(),
        labels: mesh.labels.iter().cloned().collect(),
        role: "sidecar".into(),
        inbound_address: mesh.address,
        ports: vec![PortSpec {
            name: protocol.clone(),
            service_port: args.service_port.unwrap_or(args.port),
            app_port: args.port,
            inbound_port,
            protocol,
        }],
        outbound_port,
        gateway_ports: Vec::new(),
        admin_port: mesh.admin_port,
        control_planes: mesh.control_plane.split(',').map(str::to_string).collect(),
        delta: mesh.delta,
    };
    let runtime = runtime()?;
    let proxy = start_proxy(&spec, mesh, &runtime)?;
    tracing::info!(
        id,
        service = args.service,
        inbound = %SocketAddr::new(mesh.address, inbound_port),
        outbound = %SocketAddr::from(([127, 0, 0, 1], outbound_port)),
        "sidecar started"
    );
    let app = SocketAddr::from(([127, 0, 0, 1], args.port));
    let check = match (&args.health, &args.health_exec) {
        (Some(path), _) => Check::Http {
            addr: app,
            path: path.clone(),
        },
        (None, Some(cmd)) => Check::Exec(cmd.clone()),
        (None, None) => Check::Tcp(app),
    };
    let client = mesh.connect.client()?;
    let code = runtime.block_on(supervise(&args, &id, outbound_port, check, client))?;
    proxy.shutdown();
    Ok(code)
}

/// Starts the application, keeps its health reported, and stops it in order.
async fn supervise(
    args: &RunArgs,
    id: &str,
    outbound_port: u16,
    check: Check,
    client: ApiClient,
) -> anyhow::Result<ExitCode> {
    let proxy_url = format!("http://127.0.0.1:{outbound_port}");
    let no_proxy = "localhost,127.0.0.1,::1";
    let mut command = tokio::process::Command::new(&args.command[0]);
    // Killed hard, the sidecar takes its application along: no unmanaged leftover.
    super::child::die_with_parent(command.as_std_mut());
    let mut child = command
        .args(&args.command[1..])
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("NO_PROXY", no_proxy)
        .env("no_proxy", no_proxy)
        .env("PORT", args.port.to_string())
        .env("WEFT_SERVICE", &args.service)
        .env("WEFT_NAMESPACE", &args.mesh.namespace)
        // The sidecar's credential is not the application's.
        .env_remove("WEFT_TOKEN")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.command[0]))?;
    let reporter = Reporter {
        client,
        path: format!(
            "/api/v1/registry/{}/{}/{}/health",
            segment(&args.mesh.namespace),
            segment(&args.service),
            segment(id)
        ),
    };
    let mut reported: Option<bool> = None;
    let mut last_report = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(args.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = super::signals::terminated();
    tokio::pin!(stop);
    let status = loop {
        tokio::select! {
            status = child.wait() => break Some(status?),
            _ = &mut stop => break None,
            _ = tick.tick() => {
                let healthy = probe(&check, Duration::from_secs(1)).await;
                // Report changes at once, and the state again every 10 s: a control
                // plane that restarted, or a registration not yet written, learns it.
                let due = last_report.elapsed() >= Duration::from_secs(10);
                if reported != Some(healthy) || due {
                    if reporter.report(healthy).await {
                        if reported != Some(healthy) {
                            tracing::info!(healthy, "health reported");
                        }
                        reported = Some(healthy);
                        last_report = tokio::time::Instant::now();
                    } else {
                        reported = None;
                    }
                }
            }
        }
    };
    // Leave the endpoints first, then stop the application, then (the caller) drain.
    if reported == Some(true) {
        reporter.report(false).await;
    }
    let status = match status {
        Some(s) => s,
        None => {
            tracing::info!(delay = ?args.drain_delay, "leaving the service's endpoints");
            tokio::time::sleep(args.drain_delay).await;
            stop_child(&mut child, args.stop_timeout).await?
        }
    };
    tracing::info!(%status, "application exited");
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        // Killed by a signal: 128 + signal, as shells report it.
        None => {
            use std::os::unix::process::ExitStatusExt;
            ExitCode::from(status.signal().map_or(1, |s| (128 + s) as u8))
        }
    })
}

/// SIGTERM, then SIGKILL after `timeout`.
async fn stop_child(
    child: &mut tokio::process::Child,
    timeout: Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        super::signals::terminate(pid);
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            tracing::warn!("the application did not exit in time; killing it");
            child.kill().await?;
            Ok(child.wait().await?)
        }
    }
}

/// Reports health to the control plane.
struct Reporter {
    client: ApiClient,
    path: String,
}

impl Reporter {
    async fn report(&self, healthy: bool) -> bool {
        let body = serde_json::json!({ "healthy": healthy });
        match self
            .client
            .call(
                hyper::Method::PUT,
                &self.path,
                Some(body.to_string().into_bytes()),
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                // 404 until the sidecar's registration lands; retried next tick.
                tracing::debug!(error = %e, "health report not recorded yet");
                false
            }
        }
    }
}

/// Runs `weft gateway`.
pub fn gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let mesh = &args.mesh;
    let mut labels: BTreeMap<String, String> = mesh.labels.iter().cloned().collect();
    if labels.is_empty() {
        labels.insert("istio".into(), "ingressgateway".into());
    }
    let id = mesh
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}.{}", args.name, random_suffix(), mesh.namespace));
    let spec = SidecarSpec {
        node_id: id.clone(),
        service: args.name.clone(),
        namespace: mesh.namespace.clone(),
        labels,
        role: "gateway".into(),
        inbound_address: mesh.address,
        ports: Vec::new(),
        outbound_port: 0,
        gateway_ports: args.ports.clone(),
        admin_port: mesh.admin_port,
        control_planes: mesh.control_plane.split(',').map(str::to_string).collect(),
        delta: mesh.delta,
    };
    let runtime = runtime()?;
    let proxy = start_proxy(&spec, mesh, &runtime)?;
    for (port, local) in &args.ports {
        tracing::info!(id, port, local = %SocketAddr::new(mesh.address, *local), "gateway port");
    }
    let handle = proxy.shutdown_handle();
    runtime.block_on(super::signals::terminated());
    handle.shutdown();
    proxy.wait();
    Ok(ExitCode::SUCCESS)
}
