//! Interop with a client no one here wrote: a proxyless gRPC client (Python `grpcio`,
//! C-core's xDS client, `GRPC_XDS_BOOTSTRAP` and an `xds:///` target) resolves and
//! balances against the real `weft control`, follows an Istio weighted split, and
//! follows a change of that split on the channel it already has.
//!
//! Needs `python3` with `grpcio` (`scripts/test.sh` installs it); without it the test
//! fails and says so. The client and its backends are
//! `tests/python/grpc_xds_interop.py`.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::{weft, Control, TempDir};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/grpc_xds_interop.py"
);

/// Calls measured against the 80/20 split.
const CALLS: u32 = 1000;

/// How long any one step (a process starting, a batch of calls) may take.
const STEP: Duration = Duration::from_secs(30);

/// A child process that is killed when dropped (also when the test panics), with its
/// standard output read line by line and its standard error kept in a file.
struct Driven {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl Driven {
    fn spawn(name: &'static str, mut command: Command, log: PathBuf) -> Driven {
        let stderr = std::fs::File::create(&log).expect("create a log file");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Driven {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            log,
        }
    }

    /// The end of its standard error, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Its next line of output.
    fn line(&self) -> String {
        match self.lines.recv_timeout(STEP) {
            Ok(l) => l,
            Err(e) => panic!(
                "{}: no output ({e}); its log ends with:\n{}",
                self.name,
                self.log_tail()
            ),
        }
    }

    /// Its next line of output, as JSON.
    fn json(&self) -> Value {
        let line = self.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {e} in {line:?}", self.name))
    }

    /// Sends one line to its standard input.
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: writing {line:?}: {e}", self.name));
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> Command {
    let mut c = Command::new("python3");
    c.arg(SCRIPT);
    c
}

/// Fails, clearly, when the machine lacks what the test drives.
fn require_grpcio() -> String {
    let out = Command::new("python3")
        .args(["-c", "import grpc; print(grpc.__version__)"])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed for the gRPC interop test and did not start: {e}")
        });
    assert!(
        out.status.success(),
        "the gRPC interop test needs Python's grpcio: `python3 -m pip install grpcio` \
         (scripts/test.sh installs it)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `weft apply -f` of `yaml`, as a user runs it.
fn apply(dir: &TempDir, control: &Control, name: &str, yaml: &str) {
    let file = dir.join(name);
    std::fs::write(&file, yaml).expect("write the resources");
    let out = weft()
        .args(["apply", "--server", &control.api.to_string()])
        .args(["--token", &control.token, "-f"])
        .arg(&file)
        .env_remove("WEFT_TOKEN")
        .env_remove("WEFT_CONFIG")
        .env("XDG_CONFIG_HOME", &dir.0)
        .output()
        .expect("run weft apply");
    assert!(
        out.status.success(),
        "weft apply -f {name} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three hosts of service `echo` without sidecars: two of version v1, one of v2, each
/// on its own loopback address and all on the service's port.
fn workloads(port: u16) -> String {
    let mut out = String::new();
    for (name, address, version) in [
        ("echo-v1-a", "127.0.0.1", "v1"),
        ("echo-v1-b", "127.0.0.2", "v1"),
        ("echo-v2", "127.0.0.3", "v2"),
    ] {
        out.push_str(&format!(
            r#"apiVersion: weft.dev/v1
kind: Workload
metadata:
  name: {name}
spec:
  service: echo
  address: {address}
  ports:
  - name: grpc
    number: {port}
    protocol: GRPC
  labels:
    app: echo
    version: {version}
---
"#
        ));
    }
    out
}

const SUBSETS: &str = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo
spec:
  host: echo
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"#;

fn split(v1: u32, v2: u32) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: echo
spec:
  hosts:
  - echo
  http:
  - route:
    - destination:
        host: echo
        subset: v1
      weight: {v1}
    - destination:
        host: echo
        subset: v2
      weight: {v2}
"#
    )
}

/// Replies counted by backend (`v1@127.0.0.1`, ...).
fn counts(answer: &Value) -> Vec<(String, u64)> {
    answer["counts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
                .collect()
        })
        .unwrap_or_default()
}

fn count(counts: &[(String, u64)], prefix: &str) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn proxyless_grpc_client_follows_a_weighted_split() {
    let grpcio = require_grpcio();
    let dir = TempDir::new("grpc-xds");
    let control = Control::start(&dir.0, "control", &dir.join("data"), &[]);

    let mut serve = python();
    serve.args(["serve", "v1=127.0.0.1", "v1=127.0.0.2", "v2=127.0.0.3"]);
    let backends = Driven::spawn("backends", serve, dir.join("backends.log"));
    let port = backends.json()["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("the backends' port");

    apply(
        &dir,
        &control,
        "echo.yaml",
        &format!("{}{SUBSETS}---\n{}", workloads(port), split(80, 20)),
    );

    // gRPC's bootstrap as its documentation writes it; the node carries no Weft
    // metadata, so the control plane treats it as a proxyless client.
    // Its credential: a join token, read by gRPC's JWT call credentials (gRFC A97),
    // sent over TLS (gRFC A65) to a server whose certificate the mesh's CA signed.
    let token_file = dir.join("token.jwt");
    std::fs::write(&token_file, control.join_token("echo-client")).expect("write the token");
    let bootstrap = dir.join("bootstrap.json");
    let bootstrap_json = serde_json::json!({
        "xds_servers": [{
            "server_uri": control.xds_tls.to_string(),
            "channel_creds": [{"type": "tls", "config": {
                "ca_certificate_file": dir.join("data").join("ca-roots.pem"),
            }}],
            "call_creds": [{"type": "jwt_token_file", "config": {"jwt_token_file": token_file}}],
            "server_features": ["xds_v3"],
        }],
        "node": {"id": "weft-grpc-xds-test", "locality": {}},
    });
    std::fs::write(&bootstrap, bootstrap_json.to_string()).expect("write the bootstrap");
    let mut c = python();
    c.arg("client")
        .env("GRPC_XDS_BOOTSTRAP", &bootstrap)
        .env("GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS", "true");
    let mut client = Driven::spawn("gRPC client", c, dir.join("client.log"));
    let context = |client: &Driven| {
        format!(
            "(grpcio {grpcio})\n--- gRPC client log:\n{}\n--- weft control log:\n{}",
            client.log_tail(),
            control.proc.log_text()
        )
    };

    // 80/20 by weight, and round robin within subset v1's two hosts.
    let target = format!("xds:///echo:{port}");
    client.send(&format!("calls {target} {CALLS}"));
    let answer = client.json();
    let by_host = counts(&answer);
    assert_eq!(
        answer["errors"],
        0,
        "every call succeeds: {answer}\n{}",
        context(&client)
    );
    let v1 = count(&by_host, "v1@");
    let v2 = count(&by_host, "v2@");
    assert_eq!(v1 + v2, u64::from(CALLS), "{answer}");
    // Each call picks a cluster at random with the weights: a binomial count. Five
    // standard deviations (±6.3 points for 1000 calls) fail once in millions of runs.
    let n = f64::from(CALLS);
    let tolerance = 5.0 * (0.8 * 0.2 / n).sqrt();
    let share = v1 as f64 / n;
    assert!(
        (share - 0.8).abs() <= tolerance,
        "v1's share is {share:.3}, expected 0.8 ± {tolerance:.3}: {answer}"
    );
    for host in ["v1@127.0.0.1", "v1@127.0.0.2"] {
        let n = count(&by_host, host);
        assert!(
            n * 10 >= v1 * 4,
            "round robin spreads v1's {v1} calls over both hosts, {host} had {n}: {answer}"
        );
    }

    // Dialled without a port, the service's only port answers, with the same routes.
    client.send("calls xds:///echo 100");
    let answer = client.json();
    let portless = counts(&answer);
    assert_eq!(
        answer["errors"],
        0,
        "xds:///echo: {answer}\n{}",
        context(&client)
    );
    assert!(
        count(&portless, "v1@") > 0 && count(&portless, "v2@") > 0,
        "xds:///echo follows the split too: {answer}"
    );

    // The canary is promoted: everything to v2. The client keeps its channel and
    // follows the pushed routes.
    apply(&dir, &control, "promote.yaml", &split(0, 100));
    client.send(&format!("follow {target} v2@ 50 15"));
    let answer = client.json();
    assert_eq!(
        answer["followed"],
        true,
        "the client follows the change without restarting: {answer}\n{}",
        context(&client)
    );
    assert_eq!(
        answer["errors"],
        0,
        "no call fails while the routes change: {answer}\n{}",
        context(&client)
    );
    client.send(&format!("calls {target} 200"));
    let answer = client.json();
    assert_eq!(
        (count(&counts(&answer), "v2@"), &answer["errors"]),
        (200, &Value::from(0)),
        "after the change every call goes to v2: {answer}"
    );

    client.send("quit");
    let log = read_log(&client.log);
    assert!(
        !log.contains("NACK"),
        "the gRPC client accepted every resource Weft sent:\n{log}"
    );
}
