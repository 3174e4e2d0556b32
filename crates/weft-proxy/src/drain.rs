//! Draining: one signal that stops listeners from accepting and asks connections to
//! finish, and a count of open connections to know when they have.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

#[derive(Debug)]
struct Inner {
    draining: watch::Sender<bool>,
    active: AtomicUsize,
    idle: Notify,
}

/// The drain signal and connection count shared by every part of one proxy.
#[derive(Debug, Clone)]
pub struct Drain {
    inner: Arc<Inner>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drain {
    /// Not draining, no connections.
    pub fn new() -> Drain {
        Drain {
            inner: Arc::new(Inner {
                draining: watch::Sender::new(false),
                active: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }

    /// Starts draining (idempotent).
    pub fn start(&self) {
        self.inner.draining.send_replace(true);
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        *self.inner.draining.borrow()
    }

    /// Resolves once draining starts.
    pub async fn signaled(&self) {
        let mut rx = self.inner.draining.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Counts a connection until the guard is dropped.
    pub fn track(&self) -> ConnectionGuard {
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard {
            drain: self.clone(),
        }
    }

    /// Open connections.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Waits until no connection is open, or `timeout` passes; returns whether all closed.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.inner.idle.notified();
                if self.active() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

/// Keeps one connection counted.
#[derive(Debug)]
pub struct ConnectionGuard {
    drain: Drain,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.drain.inner.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drain.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_connections() {
        let d = Drain::new();
        let g = d.track();
        assert!(!d.wait_idle(Duration::from_millis(20)).await);
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { d2.wait_idle(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(g);
        assert!(waiter.await.expect("join"));
    }

    #[tokio::test]
    async fn signal() {
        let d = Drain::new();
        assert!(!d.is_draining());
        let d2 = d.clone();
        let w = tokio::spawn(async move { d2.signaled().await });
        d.start();
        w.await.expect("signaled");
        assert!(d.is_draining());
    }
}
