//! Health checks the control plane runs itself: hosts registered by a `weft.dev/v1`
//! Workload with a `healthCheck` have no sidecar to check them. Each replica probes
//! independently (results are not stored: they are this replica's view, like its
//! connections), with the Workload's interval, timeout and thresholds; a change of
//! health translates the mesh again.

use crate::health::{probe, Check};
use crate::mesh::Mesh;
use crate::translate::services::{workload_id, Probed};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use weft_model::weft::workload::{HealthCheck, Workload};
use weft_model::Spec;

/// One probed Workload.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    address: String,
    check: HealthCheck,
}

struct State {
    target: Target,
    due: Instant,
    passes: u32,
    failures: u32,
    healthy: bool,
}

impl Target {
    fn interval(&self) -> Duration {
        self.check
            .interval
            .map_or(Duration::from_secs(10), |d| d.as_std())
    }

    fn timeout(&self) -> Duration {
        self.check
            .timeout
            .map_or(Duration::from_secs(1), |d| d.as_std())
    }

    /// Runs one check: resolves the address (it may be a name), then probes.
    async fn run(&self) -> bool {
        let (port, path) = match (&self.check.http, &self.check.tcp) {
            (Some(h), _) => (h.port, Some(h.path.clone())),
            (None, Some(t)) => (t.port, None),
            (None, None) => return false,
        };
        let Ok(port) = u16::try_from(port) else {
            return false;
        };
        let resolved = tokio::time::timeout(
            self.timeout(),
            tokio::net::lookup_host((self.address.as_str(), port)),
        )
        .await;
        let Some(addr) = resolved
            .ok()
            .and_then(|r| r.ok())
            .and_then(|mut a| a.next())
        else {
            return false;
        };
        let check = match path {
            Some(path) => Check::Http { addr, path },
            None => Check::Tcp(addr),
        };
        probe(&check, self.timeout()).await
    }
}

fn targets(mesh: &Mesh) -> BTreeMap<String, Target> {
    let state = mesh.state();
    state
        .resources
        .values()
        .filter_map(|r| match &r.spec {
            Spec::Workload(Workload {
                address,
                health_check: Some(check),
                ..
            }) => Some((
                workload_id(r.namespace(), r.name()),
                Target {
                    address: address.clone(),
                    check: check.clone(),
                },
            )),
            _ => None,
        })
        .collect()
}

/// Probes until `stop` fires.
pub async fn run(mesh: Arc<Mesh>, mut stop: watch::Receiver<bool>) {
    let mut states: BTreeMap<String, State> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => return,
        }
        let now = Instant::now();
        let wanted = targets(&mesh);
        states.retain(|id, s| wanted.get(id) == Some(&s.target));
        for (id, target) in wanted {
            states.entry(id).or_insert(State {
                target,
                due: now,
                passes: 0,
                failures: 0,
                healthy: false,
            });
        }
        let due: Vec<(String, Target)> = states
            .iter()
            .filter(|(_, s)| s.due <= now)
            .map(|(id, s)| (id.clone(), s.target.clone()))
            .collect();
        let results = futures_util::future::join_all(due.into_iter().map(|(id, t)| async move {
            let ok = t.run().await;
            (id, ok)
        }))
        .await;
        for (id, ok) in results {
            let Some(s) = states.get_mut(&id) else {
                continue;
            };
            s.due = Instant::now() + s.target.interval();
            if ok {
                s.passes += 1;
                s.failures = 0;
                if !s.healthy && s.passes >= s.target.check.healthy_threshold.unwrap_or(1) {
                    tracing::info!(workload = id, "health check passes");
                    s.healthy = true;
                }
            } else {
                s.failures += 1;
                s.passes = 0;
                if s.healthy && s.failures >= s.target.check.unhealthy_threshold.unwrap_or(3) {
                    tracing::info!(workload = id, "health check fails");
                    s.healthy = false;
                }
            }
        }
        let probed: Probed = states
            .iter()
            .map(|(id, s)| (id.clone(), s.healthy))
            .collect();
        mesh.set_probed(probed);
    }
}
