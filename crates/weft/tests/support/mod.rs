//! Running the mesh from the real `weft` binary in tests: control planes, `weft run`
//! sidecars beside in-test applications, and a client that speaks to a sidecar's
//! outbound listener as an application with `HTTP_PROXY` does.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_control::api::types::{ChangeResponse, Document, DocumentsRequest, ServiceDescription};
use weft_control::client::ApiClient;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `weft-test-{name}-{pid}-{n}`.
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weft-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A path inside.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // WEFT_KEEP_TEST_DIRS=1 keeps the logs of a failing run for a look.
        if std::env::var_os("WEFT_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// For messages.
    pub name: String,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Proc {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }

    /// Sends SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it to exit, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `weft` binary.
pub fn weft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
    c.env_remove("WEFT_SERVER")
        .env_remove("WEFT_TOKEN")
        .env_remove("WEFT_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env("WEFT_LOG_LEVEL", "info");
    c
}

/// Starts `weft ARGS`, output to `dir/name.log`.
pub fn spawn(dir: &Path, name: &str, args: &[String]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = weft()
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("start weft");
    Proc {
        child,
        name: name.to_string(),
        log,
    }
}

/// A running `weft control`.
pub struct Control {
    /// The process.
    pub proc: Proc,
    /// xDS address.
    pub xds: SocketAddr,
    /// xDS over TLS address.
    pub xds_tls: SocketAddr,
    /// API address.
    pub api: SocketAddr,
    /// The mesh's admin token (from the data directory of the replica that created
    /// it; set it from that replica for the others).
    pub token: String,
}

impl Control {
    /// Starts a replica with `extra` flags (e.g. `--store etcd://...`) and a data dir.
    pub fn start(dir: &Path, name: &str, data_dir: &Path, extra: &[String]) -> Control {
        Control::start_on(dir, name, data_dir, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// Starts a replica on given addresses.
    pub fn start_on(
        dir: &Path,
        name: &str,
        data_dir: &Path,
        xds: &str,
        api: &str,
        extra: &[String],
    ) -> Control {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut child = weft()
            .arg("control")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--xds-address", xds, "--api-address", api])
            .args(["--xds-tls-address", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("start weft control");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader
            .read_line(&mut line)
            .expect("read the control plane's first line");
        // "xDS over TLS on A (trust bundle: PATH)"
        let mut tls_line = String::new();
        reader
            .read_line(&mut tls_line)
            .expect("read the control plane's second line");
        // The rest (the admin token at the first start) is read and dropped, so the
        // control plane never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let proc = Proc {
            child,
            name: name.to_string(),
            log,
        };
        // "weft control plane: xDS on A, API on http://B"
        let parse = |after: &str| -> SocketAddr {
            let rest = line
                .split(after)
                .nth(1)
                .unwrap_or_else(|| panic!("no {after:?} in {line:?}: {}", proc.log_text()));
            let addr = rest
                .trim_start_matches("http://")
                .split([',', ' ', '\n'])
                .next()
                .expect("address");
            addr.parse().expect("socket address")
        };
        let xds = parse("xDS on ");
        let api = parse("API on ");
        let xds_tls = tls_line
            .split("xDS over TLS on ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no xDS/TLS address in {tls_line:?}: {}", proc.log_text()));
        let token = weft_control::control::read_admin_token(data_dir).unwrap_or_default();
        Control {
            proc,
            xds,
            xds_tls,
            api,
            token,
        }
    }

    /// A client of its API, with the admin token.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(&[self.api.to_string()], Some(self.token.clone()))
    }

    /// A join token for `service` in `default`, from `weft token create`.
    pub fn join_token(&self, service: &str) -> String {
        let out = weft()
            .args(["token", "create", "--service", service, "--server"])
            .arg(self.api.to_string())
            .args(["--token", &self.token])
            .output()
            .expect("weft token create");
        assert!(
            out.status.success(),
            "weft token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_string()
    }
}

/// `weft describe service NAME`'s output, from `control`.
pub fn describe(control: &Control, name: &str) -> String {
    let out = weft()
        .args([
            "describe",
            "service",
            name,
            "--server",
            &control.api.to_string(),
        ])
        .args(["--token", &control.token])
        .output()
        .expect("weft describe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Istio's mesh-wide STRICT PeerAuthentication, the file `weft demo` applies.
pub const MESH_STRICT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/bookinfo/security/peer-authentication-strict.yaml"
));

/// Applies `yaml` through an API client; panics on refusal.
pub async fn apply(client: &ApiClient, yaml: &str) -> ChangeResponse {
    send_documents(client, "/api/v1/apply", yaml).await
}

/// Deletes the resources `yaml` names; panics on refusal.
pub async fn delete(client: &ApiClient, yaml: &str) -> ChangeResponse {
    send_documents(client, "/api/v1/delete", yaml).await
}

async fn send_documents(client: &ApiClient, path: &str, yaml: &str) -> ChangeResponse {
    let request = DocumentsRequest {
        documents: vec![Document {
            source: "test.yaml".into(),
            text: yaml.into(),
        }],
    };
    client
        .json::<ChangeResponse>(Method::POST, path, Some(&request))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// Waits until `service` has `healthy` healthy instances.
pub async fn wait_healthy(client: &ApiClient, service: &str, healthy: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let path = format!("/api/v1/services/default/{service}");
    loop {
        let d = client
            .json::<ServiceDescription>(Method::GET, &path, None::<&()>)
            .await;
        if let Ok(d) = &d {
            if d.service.healthy == healthy {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{service} never had {healthy} healthy instances: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `weft run` for `service` with an application already listening on `app_port`
/// (the command run beside it is a `sleep`), connected to `control_planes`.
pub struct Sidecar {
    /// The `weft run` process.
    pub proc: Proc,
    /// Outbound listener (the application's HTTP proxy).
    pub outbound: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
}

/// Starts a sidecar.
pub fn sidecar(
    dir: &Path,
    name: &str,
    service: &str,
    labels: &[&str],
    app_port: u16,
    control: &[&Control],
    extra: &[&str],
) -> Sidecar {
    let outbound = free_port();
    let admin = free_port();
    let xds: Vec<String> = control.iter().map(|c| c.xds.to_string()).collect();
    let api: Vec<String> = control.iter().map(|c| c.api.to_string()).collect();
    let token = control[0].join_token(service);
    let mut args: Vec<String> = [
        "run",
        "--token",
        &token,
        "--service",
        service,
        "--port",
        &app_port.to_string(),
        "--service-port",
        "9080",
        "--outbound-port",
        &outbound.to_string(),
        "--admin-port",
        &admin.to_string(),
        "--control-plane",
        &xds.join(","),
        "--server",
        &api.join(","),
        "--health-interval",
        "200ms",
        "--drain-delay",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for l in labels {
        args.push("--label".into());
        args.push(l.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--", "sleep", "600"].iter().map(|s| s.to_string()));
    Sidecar {
        proc: spawn(dir, name, &args),
        outbound: SocketAddr::from(([127, 0, 0, 1], outbound)),
        admin: SocketAddr::from(([127, 0, 0, 1], admin)),
    }
}

/// A caller and a service, each an `Upstream` application (named `client` and
/// `server`) behind its own sidecar, in sync: the service is healthy and the caller's
/// sidecar holds the mTLS cluster to it.
pub struct Pair {
    /// The service's application.
    pub server_app: weft_test::Upstream,
    /// The caller's application.
    pub client_app: weft_test::Upstream,
    /// The service's sidecar (`server`, with the labels and flags given).
    pub server: Sidecar,
    /// The caller's sidecar (`client`).
    pub client: Sidecar,
}

impl Pair {
    /// Starts both and waits until they are in sync.
    pub async fn start(
        dir: &TempDir,
        control: &Control,
        server_labels: &[&str],
        server_extra: &[&str],
    ) -> Pair {
        let server_app = weft_test::Upstream::start("server").await;
        let client_app = weft_test::Upstream::start("client").await;
        let server = sidecar(
            &dir.0,
            "server",
            "server",
            server_labels,
            server_app.addr.port(),
            &[control],
            server_extra,
        );
        let client = sidecar(
            &dir.0,
            "client",
            "client",
            &[],
            client_app.addr.port(),
            &[control],
            &[],
        );
        wait_healthy(&control.client(), "server", 1, Duration::from_secs(20)).await;
        client.ready(Duration::from_secs(10)).await;
        wait_config(
            client.admin,
            "spiffe://cluster.local/ns/default/sa/server",
            Duration::from_secs(10),
        )
        .await;
        Pair {
            server_app,
            client_app,
            server,
            client,
        }
    }
}

/// An application's HTTP client whose requests go through a sidecar's outbound
/// listener (absolute-form, as with `HTTP_PROXY`), over one kept-alive connection.
pub struct MeshClient {
    proxy: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

/// One answer.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// The `x-upstream` header (which test upstream answered).
    pub upstream: String,
    /// Body.
    pub body: String,
}

impl MeshClient {
    /// A client of the sidecar whose outbound listener is `proxy`.
    pub fn new(proxy: SocketAddr) -> MeshClient {
        MeshClient {
            proxy,
            sender: None,
        }
    }

    /// `GET url` through the proxy; `Err` for a transport failure.
    pub async fn get(&mut self, url: &str) -> Result<Answer, String> {
        self.request(url, &[]).await
    }

    /// `GET url` with extra headers.
    pub async fn request(&mut self, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.proxy)
                .await
                .map_err(|e| e.to_string())?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("sender");
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = http::Request::get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e.to_string());
            }
        };
        let status = resp.status().as_u16();
        let upstream = resp
            .headers()
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            upstream,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

impl Sidecar {
    /// Waits until the proxy has its configuration (admin `/ready` answers 200).
    pub async fn ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let client =
            ApiClient::new(&[self.admin.to_string()], None).with_timeout(Duration::from_secs(2));
        while client.call(Method::GET, "/ready", None).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "sidecar {} never became ready:\n{}",
                self.proc.name,
                self.proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends requests until one is answered by each of `upstreams` (and by nothing else,
/// with status 200), or panics after `timeout`.
pub async fn wait_served(mesh: &mut MeshClient, url: &str, upstreams: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        match mesh.get(url).await {
            Ok(a) if a.status == 200 && upstreams.contains(&a.upstream.as_str()) => {
                seen.insert(a.upstream);
            }
            _ => seen.clear(),
        }
        if seen.len() == upstreams.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never served by {upstreams:?} (saw {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls a sidecar's admin `/config_dump` until it contains `needle`.
pub async fn wait_config(admin: SocketAddr, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let client =
            ApiClient::new(&[admin.to_string()], None).with_timeout(Duration::from_secs(2));
        if let Ok(body) = client.call(Method::GET, "/config_dump", None).await {
            if String::from_utf8_lossy(&body).contains(needle) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never reached the proxy at {admin}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests sent through a sidecar in the background, one every 2 ms, until stopped;
/// every answer other than a 200 is kept.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(u32, Vec<String>)>,
}

impl Load {
    /// Starts sending `GET url` through the outbound listener `proxy`.
    pub fn start(proxy: SocketAddr, url: &str) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, url) = (stop.clone(), url.to_string());
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut mesh = MeshClient::new(proxy);
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match mesh.get(&url).await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => {
                        failed.push(format!("{:?}: {} {}", started.elapsed(), r.status, r.body))
                    }
                    Err(e) => failed.push(format!("{:?}: {e}", started.elapsed())),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, failed)
        });
        Load { stop, task }
    }

    /// Stops and asserts that no request failed and at least `min` succeeded.
    pub async fn finish(self, min: u32) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = self.task.await.expect("load task");
        assert!(
            failed.is_empty(),
            "{} of {} requests failed: {:?}",
            failed.len(),
            ok as usize + failed.len(),
            &failed[..failed.len().min(5)]
        );
        assert!(ok >= min, "only {ok} requests ran");
    }
}
