//! Open connections follow their listener's updates. An in-place listener update
//! (LDS: same name, same address) swaps the configuration new connections get; an
//! open connection looks the update up as well, so a policy applied now governs
//! traffic already in flight:
//!
//! - HTTP: before each request the connection checks whether the listener changed;
//!   if so it selects its filter chain again (same port, same detected protocols) and
//!   serves the request with that chain's connection manager, its RBAC filters
//!   included. A connection whose chain would now be TCP, or would terminate TLS
//!   differently, or none at all, finishes the request with the manager it has and
//!   then closes, as Envoy drains connections of a changed filter chain.
//! - TCP: when the listener changes, the connection selects its chain again and runs
//!   the chain's network RBAC filters; a connection they deny, or that no TCP chain
//!   takes any more, is closed.
//!
//! Envoy drains every connection of a changed filter chain instead; re-selecting
//! keeps connections (and their TLS sessions) open across updates that do not concern
//! them, and applies the ones that do from the next request on.

use crate::detect::Detected;
use crate::http::manager::HttpManager;
use crate::http::proxy::Connection;
use crate::listener::{Listener, ListenerHandle, Network};
use crate::stream_info::Downstream;
use crate::tcp::TcpProxy;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What chose a connection's filter chain, kept to choose it again after an update.
#[derive(Debug)]
pub struct Origin {
    handle: Arc<ListenerHandle>,
    port: u16,
    detected: Detected,
    tls: bool,
}

/// A connection's chain under the listener's current configuration.
pub enum Followed {
    /// An HTTP chain terminating TLS as the connection does.
    Http(Arc<HttpManager>),
    /// A TCP chain terminating TLS as the connection does.
    Tcp(Arc<TcpProxy>),
    /// The connection's network RBAC filters now deny it (termination details).
    Denied(String),
    /// No chain of the same kind takes the connection any more.
    Gone,
}

impl Origin {
    /// The origin of a connection accepted on `handle`'s listener.
    pub fn new(handle: Arc<ListenerHandle>, port: u16, detected: Detected, tls: bool) -> Origin {
        Origin {
            handle,
            port,
            detected,
            tls,
        }
    }

    /// The listener's configuration now.
    pub fn current(&self) -> Arc<Listener> {
        self.handle.config.load_full()
    }

    /// Whether `listener` is still the listener's configuration (one atomic load).
    pub fn is_current(&self, listener: &Arc<Listener>) -> bool {
        Arc::ptr_eq(&self.handle.config.load(), listener)
    }

    /// The connection's chain under `listener`.
    pub fn follow(&self, listener: &Listener, conn: &Downstream) -> Followed {
        let Some(chain) = listener.select(self.port, &self.detected) else {
            return Followed::Gone;
        };
        if chain.tls.is_some() != self.tls {
            return Followed::Gone;
        }
        if let Err(details) = crate::rbac::network::check(&chain.rbac, conn) {
            return Followed::Denied(details);
        }
        match &chain.network {
            Network::Http(m) => Followed::Http(m.clone()),
            Network::Tcp(p) => Followed::Tcp(p.clone()),
        }
    }

    /// Resolves with termination details once an update leaves no TCP chain that
    /// takes the connection (accepted under `accepted`: an update that came before
    /// this was called counts too).
    pub async fn revoked(&self, conn: &Downstream, accepted: &Arc<Listener>) -> String {
        let mut updates = self.handle.updates();
        let mut missed = !self.is_current(accepted);
        loop {
            if !std::mem::take(&mut missed) && updates.changed().await.is_err() {
                // The handle is gone with its listener; open connections go on.
                std::future::pending::<()>().await;
            }
            match self.follow(&self.current(), conn) {
                Followed::Tcp(_) => continue,
                Followed::Denied(details) => return details,
                Followed::Http(_) | Followed::Gone => {
                    return "filter_chain_not_found".to_string();
                }
            }
        }
    }
}

/// An HTTP connection across listener updates: the configuration its requests are
/// served with, and a signal to close it gracefully.
pub struct Following {
    origin: Origin,
    state: Mutex<(Arc<Listener>, Arc<Connection>)>,
    retire: Notify,
}

impl Following {
    /// `conn`, accepted under `listener`.
    pub fn new(conn: Connection, listener: Arc<Listener>, origin: Origin) -> Arc<Following> {
        Arc::new(Following {
            origin,
            state: Mutex::new((listener, Arc::new(conn))),
            retire: Notify::new(),
        })
    }

    /// The connection manager the connection was accepted with (for codec settings).
    pub fn manager(&self) -> Arc<HttpManager> {
        self.lock().1.manager.clone()
    }

    /// The connection to serve the next request with: after a listener update, the
    /// current chain's.
    pub fn next(&self) -> Arc<Connection> {
        let mut state = self.lock();
        if self.origin.is_current(&state.0) {
            return state.1.clone();
        }
        let listener = self.origin.current();
        let conn = &state.1;
        let next = match self.origin.follow(&listener, &conn.downstream) {
            Followed::Http(manager) => Connection {
                downstream: conn.downstream.clone(),
                manager,
                verdicts: conn.verdicts.clone(),
                denied: None,
            },
            Followed::Denied(details) => {
                self.retire.notify_one();
                Connection {
                    downstream: conn.downstream.clone(),
                    manager: conn.manager.clone(),
                    verdicts: conn.verdicts.clone(),
                    denied: Some(details),
                }
            }
            Followed::Tcp(_) | Followed::Gone => {
                // Serve what is asked now as before, then close.
                self.retire.notify_one();
                return conn.clone();
            }
        };
        *state = (listener, Arc::new(next));
        state.1.clone()
    }

    /// Resolves once an update asked the connection to close.
    pub async fn retired(&self) {
        self.retire.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Arc<Listener>, Arc<Connection>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
