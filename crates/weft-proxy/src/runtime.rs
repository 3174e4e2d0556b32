//! Threads and sockets: one worker thread per core, each with its own single-threaded
//! runtime and its own `SO_REUSEPORT` socket per listener (the kernel spreads new
//! connections; a connection never leaves its worker), plus one main thread for the
//! admin listener, DNS refreshes and shutdown.

use crate::drain::Drain;
use crate::listener::{accept_loop, ListenerHandle};
use socket2::{Domain, Protocol, Socket, Type};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's worker index (`usize::MAX` outside workers: pools clamp it to their
/// spare slot).
pub fn worker_index() -> usize {
    WORKER.with(Cell::get)
}

/// Binds `count` sockets to `addr` with `SO_REUSEPORT`; port 0 is resolved by the
/// first and shared by the rest.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut sockets = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&bound.into())?;
        socket.listen(backlog.min(i32::MAX as u32) as i32)?;
        if bound.port() == 0 {
            if let Some(local) = socket.local_addr()?.as_socket() {
                bound = local;
            }
        }
        sockets.push(socket.into());
    }
    Ok(sockets)
}

/// What the main thread asks of a worker.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Accept on this socket (the worker's own, `SO_REUSEPORT`) for this listener.
    Listen {
        /// The listener.
        handle: Arc<ListenerHandle>,
        /// The worker's socket.
        socket: std::net::TcpListener,
    },
}

/// The worker threads of one proxy.
pub struct Workers {
    handles: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    commands: Vec<mpsc::UnboundedSender<WorkerCommand>>,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// Starts `count` workers, idle until told to listen.
    pub fn start(count: usize, drain: Drain) -> std::io::Result<Workers> {
        let (stop, stop_rx) = watch::channel(false);
        let mut handles = Vec::with_capacity(count);
        let mut commands = Vec::with_capacity(count);
        for index in 0..count {
            let (tx, mut rx) = mpsc::unbounded_channel::<WorkerCommand>();
            commands.push(tx);
            let (drain, mut stop_rx) = (drain.clone(), stop_rx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("weft-worker-{index}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(index));
                    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start worker runtime");
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        loop {
                            tokio::select! {
                                command = rx.recv() => match command {
                                    Some(WorkerCommand::Listen { handle, socket }) => {
                                        match tokio::net::TcpListener::from_std(socket) {
                                            Ok(s) => {
                                                tokio::spawn(accept_loop(s, handle, drain.clone()));
                                            }
                                            Err(e) => tracing::error!(error = %e, "cannot register listener socket"),
                                        }
                                    }
                                    None => break,
                                },
                                _ = stop_rx.wait_for(|s| *s) => break,
                            }
                        }
                    });
                })?;
            handles.push(handle);
        }
        Ok(Workers {
            handles: std::sync::Mutex::new(handles),
            commands,
            stop,
        })
    }

    /// Number of workers.
    pub fn count(&self) -> usize {
        self.commands.len()
    }

    /// Binds `handle`'s address once per worker (`SO_REUSEPORT`) and has every worker
    /// accept on its socket; returns the bound address (port 0 resolved).
    pub fn listen(&self, handle: &Arc<ListenerHandle>) -> std::io::Result<SocketAddr> {
        let config = handle.config.load();
        let sockets =
            bind_reuseport(config.address, self.count(), config.backlog).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "listener {:?} cannot bind {}: {e}",
                        config.name, config.address
                    ),
                )
            })?;
        let bound = sockets[0].local_addr()?;
        for (tx, socket) in self.commands.iter().zip(sockets) {
            let _ = tx.send(WorkerCommand::Listen {
                handle: handle.clone(),
                socket,
            });
        }
        Ok(bound)
    }

    /// Stops every worker (open connections are dropped) and waits for them.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuseport_shares_one_port() {
        let socks = bind_reuseport("127.0.0.1:0".parse().expect("addr"), 3, 16).expect("bind");
        let ports: Vec<u16> = socks
            .iter()
            .map(|s| s.local_addr().expect("addr").port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0));
    }
}
