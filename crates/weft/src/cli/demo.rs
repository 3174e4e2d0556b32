//! `weft demo`: the whole mesh on this machine — a control plane, the Bookinfo
//! application with a sidecar beside every service (each under `weft run`), and an
//! ingress gateway — then what to open and what to try.

use super::run::free_port;
use anyhow::{bail, Context};
use clap::Args;
use hyper::Method;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;
use weft_control::api::types::{
    ChangeResponse, Document, DocumentsRequest, ServiceSummary, TokenCreated, TokenRequest,
};
use weft_control::client::ApiClient;
use weft_control::control::{
    read_admin_token, save_admin_token, ADMIN_TOKEN_FILE, DEFAULT_API_PORT, DEFAULT_XDS_PORT,
};
use weft_control::{Config, ControlPlane};

/// Flags of `weft demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Local port of the ingress gateway, where the product page is served (0: any).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Control-plane REST API address (`weft get`, `weft apply` talk to it).
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)))]
    pub api_address: SocketAddr,
    /// Control-plane xDS address.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_XDS_PORT)))]
    pub xds_address: SocketAddr,
    /// Directory for the store and the services' logs (default: a new temporary one,
    /// removed at exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// What the demo starts: (service, version, reviews variant).
const SERVICES: [(&str, &str); 6] = [
    ("details", "v1"),
    ("ratings", "v1"),
    ("reviews", "v1"),
    ("reviews", "v2"),
    ("reviews", "v3"),
    ("productpage", "v1"),
];

/// Applied at start: the gateway that exposes the product page and the subsets the
/// traffic-shifting examples use, exactly as Istio's Bookinfo ships them.
const INITIAL: [(&str, &str); 3] = [
    (
        "peer-authentication-strict.yaml",
        include_str!("../../../../examples/bookinfo/security/peer-authentication-strict.yaml"),
    ),
    (
        "bookinfo-gateway.yaml",
        include_str!("../../../../examples/bookinfo/networking/bookinfo-gateway.yaml"),
    ),
    (
        "destination-rule-all.yaml",
        include_str!("../../../../examples/bookinfo/networking/destination-rule-all.yaml"),
    ),
];

struct Child {
    name: String,
    process: std::process::Child,
}

/// Runs `weft demo` until SIGINT or SIGTERM.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let (data_dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("weft-demo-{}", std::process::id())),
            true,
        ),
    };
    let logs = data_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weft-demo")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(demo(&args, &data_dir, &logs));
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

async fn demo(
    args: &DemoArgs,
    data_dir: &std::path::Path,
    logs: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let mut config = Config::new(data_dir.to_path_buf());
    config.api_address = args.api_address;
    config.xds_address = args.xds_address;
    // The demo's sidecars are on this machine and use plaintext xDS with join tokens.
    config.xds_tls_address = None;
    let control = ControlPlane::start(config).await.context(
        "starting the control plane (is another `weft demo` or `weft control` running? \
         choose other ports with --api-address and --xds-address)",
    )?;
    let api = control.api_address;
    let xds = control.xds_address;
    let admin_token = match &control.admin_token {
        Some(token) => {
            save_admin_token(data_dir, token).context("saving the admin token")?;
            token.clone()
        }
        None => {
            read_admin_token(data_dir).context("reading the admin token of this data directory")?
        }
    };
    let client = ApiClient::new(&[api.to_string()], Some(admin_token));
    for (name, text) in INITIAL {
        let request = DocumentsRequest {
            documents: vec![Document {
                source: name.into(),
                text: text.into(),
            }],
        };
        client
            .json::<ChangeResponse>(Method::POST, "/api/v1/apply", Some(&request))
            .await
            .with_context(|| format!("applying {name}"))?;
    }

    let exe = std::env::current_exe().context("finding the weft binary")?;
    let gateway_port = match args.port {
        0 => free_port([127, 0, 0, 1].into())?,
        p => p,
    };
    let mut children = Vec::new();
    let started = start_all(&exe, &client, xds, gateway_port, logs, &mut children).await;
    let ready = match started {
        Ok(()) => match wait_for_instances(&client, &mut children).await {
            Ok(()) => wait_for_product_page(gateway_port, &mut children).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let code = match ready {
        Ok(()) => {
            print_banner(&exe, gateway_port, api, xds, data_dir, logs);
            tokio::select! {
                _ = super::signals::terminated() => {}
                name = watch_children(&mut children) => {
                    eprintln!("{name} exited; stopping the demo (its log: {})", logs.join(format!("{name}.log")).display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}\nthe services' logs are in {}", logs.display());
            ExitCode::from(1)
        }
    };
    eprintln!("stopping the demo...");
    stop_all(&mut children).await;
    control.shutdown().await;
    Ok(code)
}

fn spawn(
    exe: &std::path::Path,
    name: &str,
    args: &[String],
    token: &str,
    logs: &std::path::Path,
    children: &mut Vec<Child>,
) -> anyhow::Result<()> {
    let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
    let process = super::child::die_with_parent(&mut std::process::Command::new(exe))
        .args(args)
        // Each sidecar's own join token, in its environment rather than on `ps`.
        .env("WEFT_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    children.push(Child {
        name: name.to_string(),
        process,
    });
    Ok(())
}

/// A join token for `service`.
async fn join_token(client: &ApiClient, service: &str) -> anyhow::Result<String> {
    let request = TokenRequest {
        service: service.to_string(),
        namespace: None,
        ttl_seconds: None,
    };
    let created: TokenCreated = client
        .json(Method::POST, "/api/v1/tokens", Some(&request))
        .await
        .with_context(|| format!("creating a join token for {service}"))?;
    Ok(created.token)
}

async fn start_all(
    exe: &std::path::Path,
    client: &ApiClient,
    xds: SocketAddr,
    gateway_port: u16,
    logs: &std::path::Path,
    children: &mut Vec<Child>,
) -> anyhow::Result<()> {
    let mesh = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--control-plane".to_string(),
            xds.to_string(),
            "--server".to_string(),
            client.servers().join(","),
        ]);
        v
    };
    for (service, version) in SERVICES {
        let app_port = free_port([127, 0, 0, 1].into())?.to_string();
        let mut args = vec!["run".to_string()];
        args.extend(mesh(&[
            "--service",
            service,
            "--label",
            &format!("app={service}"),
            "--label",
            &format!("version={version}"),
            "--port",
            &app_port,
            "--service-port",
            "9080",
            "--health",
            "/health",
        ]));
        args.extend([
            "--".to_string(),
            exe.display().to_string(),
            "bookinfo".to_string(),
            service.to_string(),
            version.to_string(),
            "--port".to_string(),
            app_port.clone(),
        ]);
        let token = join_token(client, service).await?;
        spawn(
            exe,
            &format!("{service}-{version}"),
            &args,
            &token,
            logs,
            children,
        )?;
    }
    let mut args = vec!["gateway".to_string()];
    args.extend(mesh(&["--port", &format!("8080:{gateway_port}")]));
    let token = join_token(client, "istio-ingressgateway").await?;
    spawn(exe, "istio-ingressgateway", &args, &token, logs, children)
}

/// Fails when a child exited: start-up went wrong.
fn check_children(children: &mut [Child]) -> anyhow::Result<()> {
    for c in children.iter_mut() {
        if let Ok(Some(status)) = c.process.try_wait() {
            bail!("{} exited ({status}) during start-up", c.name);
        }
    }
    Ok(())
}

/// Waits until every Bookinfo instance is registered and passes its health check, so
/// that the banner never shows a mesh still coming up (a round-robin of good pages
/// can hide a version that is not healthy yet).
async fn wait_for_instances(client: &ApiClient, children: &mut [Child]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        check_children(children)?;
        let services: Vec<ServiceSummary> = client
            .json(
                Method::GET,
                "/api/v1/services?namespace=default",
                None::<&()>,
            )
            .await
            .unwrap_or_default();
        let healthy: usize = services.iter().map(|s| s.healthy).sum();
        if healthy >= SERVICES.len() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "only {healthy} of {} Bookinfo instances became healthy within 60 s",
                SERVICES.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the product page, fetched through the gateway, shows reviews.
async fn wait_for_product_page(port: u16, children: &mut [Child]) -> anyhow::Result<()> {
    let url = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Reviews rotate between versions and only v2 and v3 call ratings: several good
    // pages in a row mean every version reaches everything it calls.
    let mut good_in_a_row = 0;
    loop {
        check_children(children)?;
        match fetch(url, "/productpage").await {
            Ok(body) if body.contains("Book Reviews") && !body.contains("unavailable") => {
                good_in_a_row += 1;
                if good_in_a_row >= 9 {
                    return Ok(());
                }
                continue;
            }
            _ => good_in_a_row = 0,
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the product page did not come up within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// GET through the gateway; the body when the status is 200.
async fn fetch(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let client = ApiClient::new(&[addr.to_string()], None).with_timeout(Duration::from_secs(2));
    let bytes = client.call(Method::GET, path, None).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn print_banner(
    exe: &std::path::Path,
    port: u16,
    api: SocketAddr,
    xds: SocketAddr,
    data_dir: &std::path::Path,
    logs: &std::path::Path,
) {
    let weft = weft_command(exe);
    let token_file = data_dir.join(ADMIN_TOKEN_FILE);
    let server = if api.port() == DEFAULT_API_PORT && api.ip().is_loopback() {
        String::new()
    } else {
        format!(" --server {api}")
    };
    println!(
        "\nWeft demo: Bookinfo is running in the mesh.\n\n  \
         Product page    http://127.0.0.1:{port}/productpage\n  \
         Control plane   API http://{api} · xDS {xds} · metrics http://{api}/metrics\n  \
         Mutual TLS      STRICT mesh-wide; each workload proves its identity,\n                  \
         spiffe://cluster.local/ns/default/sa/{{productpage,details,reviews,ratings}}\n  \
         Service logs    {logs}\n\n\
         Reload the product page: reviews rotate between v1 (no stars), v2 (black) and v3 (red).\n\
         Then, in another terminal:\n\n  \
         export WEFT_TOKEN=$(cat {token_file})     # the mesh's admin token\n  \
         {weft} get services{server}\n  \
         {weft} apply{server} -f examples/bookinfo/networking/virtual-service-all-v1.yaml        # every service on v1\n  \
         {weft} apply{server} -f examples/bookinfo/networking/virtual-service-reviews-test-v2.yaml  # sign in as jason: v2\n  \
         {weft} apply{server} -f examples/bookinfo/networking/virtual-service-reviews-90-10.yaml    # canary: 10% to v2\n  \
         {weft} apply{server} -f examples/bookinfo/networking/virtual-service-reviews-50-50.yaml    # 50/50 v1 and v3\n  \
         {weft} describe service reviews{server}\n  \
         {weft} proxy-status{server}\n\n\
         Ctrl-C stops everything.",
        logs = logs.display(),
        token_file = token_file.display(),
    );
}

/// How to call this binary from a shell: `weft` when that is what PATH finds.
fn weft_command(exe: &std::path::Path) -> String {
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::canonicalize(dir.join("weft")).ok() == std::fs::canonicalize(exe).ok()
        })
    });
    if on_path {
        "weft".into()
    } else {
        exe.display().to_string()
    }
}

/// Resolves with the name of the first child that exits.
async fn watch_children(children: &mut [Child]) -> String {
    loop {
        for c in children.iter_mut() {
            if let Ok(Some(_)) = c.process.try_wait() {
                return c.name.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// SIGTERM to every child (they leave their endpoints and drain), SIGKILL to any still
/// running after 15 s.
async fn stop_all(children: &mut [Child]) {
    for c in children.iter() {
        super::signals::terminate(c.process.id());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for c in children.iter_mut() {
        loop {
            match c.process.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if tokio::time::Instant::now() > deadline => {
                    let _ = c.process.kill();
                    let _ = c.process.wait();
                    break;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}
