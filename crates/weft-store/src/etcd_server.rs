//! [`EtcdServer`]: a real, single-member etcd server process for tests, on free
//! 127.0.0.1 ports with a temporary data directory, killed when dropped. It runs the
//! binary at `$WEFT_ETCD_BIN`, else `/usr/bin/etcd` (Debian's `etcd-server`); if that is
//! missing, [`EtcdServer::start`] fails saying so — tests never pass without etcd.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::etcd::EtcdStore;
use crate::Store;

/// Where Debian's `etcd-server` package installs etcd.
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";
/// Environment variable naming another etcd binary.
pub const ETCD_BIN_ENV: &str = "WEFT_ETCD_BIN";

/// How long etcd may take to answer after starting.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Tries with fresh ports if etcd exits at once (a port taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// Why the etcd test server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdServerError {
    /// No etcd binary.
    #[error(
        "etcd binary not found at {path}: install the Debian package `etcd-server` \
         (scripts/test.sh does) or set WEFT_ETCD_BIN to an etcd v3.4+ binary"
    )]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Preparing the data directory or log, or finding a port, failed.
    #[error("cannot prepare etcd's {what}: {source}")]
    Setup {
        /// What was being prepared.
        what: &'static str,
        /// The OS's reason.
        #[source]
        source: std::io::Error,
    },
    /// The process could not be started.
    #[error("cannot start {path}: {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The OS's reason.
        #[source]
        source: std::io::Error,
    },
    /// etcd exited before answering.
    #[error("etcd on 127.0.0.1:{port} exited before answering ({status}); its log:\n{log}")]
    Exited {
        /// Its client port.
        port: u16,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// etcd did not answer in time.
    #[error("etcd on 127.0.0.1:{port} did not answer within {after:?}; its log:\n{log}")]
    NotReady {
        /// Its client port.
        port: u16,
        /// The time allowed.
        after: Duration,
        /// The end of its log.
        log: String,
    },
}

/// A running etcd server; killed (SIGKILL) and its data removed when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    binary: PathBuf,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd from `$WEFT_ETCD_BIN` or `/usr/bin/etcd` and waits until it answers.
    pub async fn start() -> Result<Self, EtcdServerError> {
        let binary = std::env::var_os(ETCD_BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN));
        Self::start_with(&binary).await
    }

    /// Starts the etcd at `binary` and waits until it answers.
    pub async fn start_with(binary: &Path) -> Result<Self, EtcdServerError> {
        if !binary.is_file() {
            return Err(EtcdServerError::Missing {
                path: binary.to_path_buf(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("weft-etcd-")
            .tempdir()
            .map_err(|source| EtcdServerError::Setup {
                what: "data directory",
                source,
            })?;
        let mut server = Self {
            binary: binary.to_path_buf(),
            dir,
            client_port: 0,
            peer_port: 0,
            child: None,
        };
        let mut attempt = 1;
        loop {
            server.client_port = free_port()?;
            server.peer_port = free_port()?;
            // A fresh data directory: a failed start may have left a half-made one.
            let _ = std::fs::remove_dir_all(server.data_dir());
            match server.launch().await {
                Ok(()) => return Ok(server),
                Err(EtcdServerError::Exited { .. }) if attempt < START_ATTEMPTS => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }

    /// The client endpoint, `127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The store URL for [`EtcdStore::connect`]: `etcd://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoint())
    }

    /// Kills etcd with SIGKILL (a crash) and waits for it to exit; data is kept.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills etcd (if running) and starts it again on the same ports and data.
    pub async fn restart(&mut self) -> Result<(), EtcdServerError> {
        self.kill();
        self.launch().await
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Spawns etcd and waits until it answers a read.
    async fn launch(&mut self) -> Result<(), EtcdServerError> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|source| EtcdServerError::Setup {
                what: "log",
                source,
            })?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--name=weft-test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=weft-test={peer}"))
            .arg("--initial-cluster-state=new")
            // Fast ticks: a quick first election and a 1 s minimum lease TTL. Safe for
            // one member, which never loses its leader.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().map_err(|source| EtcdServerError::Spawn {
            path: self.binary.clone(),
            source,
        })?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), EtcdServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = self.url();
        loop {
            self.check_running()?;
            if let Ok(store) = EtcdStore::connect(&url).await {
                if store.revision().await.is_ok() {
                    // Still ours: not another test's etcd that took the port first.
                    return self.check_running();
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(EtcdServerError::NotReady {
                    port: self.client_port,
                    after: READY_TIMEOUT,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails with [`EtcdServerError::Exited`] if etcd has exited.
    fn check_running(&mut self) -> Result<(), EtcdServerError> {
        let exited = match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => return Ok(()),
        };
        match exited {
            Some(status) => {
                self.child = None;
                Err(EtcdServerError::Exited {
                    port: self.client_port,
                    status: status.to_string(),
                    log: self.log_tail(),
                })
            }
            None => Ok(()),
        }
    }

    /// The last few kilobytes of etcd's log.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(4096);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> Result<u16, EtcdServerError> {
    let setup = |source| EtcdServerError::Setup {
        what: "port",
        source,
    };
    let listener = TcpListener::bind("127.0.0.1:0").map_err(setup)?;
    Ok(listener.local_addr().map_err(setup)?.port())
}
