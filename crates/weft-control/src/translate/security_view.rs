//! The security of one service as the translation decided it, for `weft describe`:
//! its identity, whether sidecars call each port over mTLS (read from the clusters
//! actually sent), each instance port's PeerAuthentication mode with the policies
//! behind it and what that means for each kind of caller, and the
//! AuthorizationPolicies that decide each instance's requests.

use super::authorization::{self, Target};
use super::cluster::cluster_name;
use super::peer_authentication::{self, Mode};
use super::services::Service;
use super::Diagnostics;
use super::Snapshot;
use crate::api::types::{CallerTls, InboundSecurity, InstanceAuthorization, SecurityView};
use crate::identity::Identity;
use prost::Message;
use weft_model::security::authorization_policy::Action;
use weft_xds::pb::envoy::config::cluster::v3::Cluster;

impl Snapshot {
    /// The security view of `svc`.
    pub fn security_view(&self, svc: &Service) -> SecurityView {
        let identity = Identity::new(svc.namespace.clone(), svc.name.clone())
            .spiffe_id(&self.settings.trust_domain);
        let callers: Vec<CallerTls> = svc
            .ports
            .values()
            .map(|port| self.caller_tls(svc, port.number))
            .collect();
        let mut inbound = Vec::new();
        let mut authz = Vec::new();
        // Warnings were given when the listeners were built; not again here.
        let mut quiet = Diagnostics::default();
        for instance in &svc.instances {
            for p in &instance.ports {
                let mtls = callers
                    .iter()
                    .find(|c| c.port == p.service_port)
                    .is_some_and(|c| c.mtls);
                let (mode, policies) = match (instance.sidecar, p.app_port) {
                    (true, Some(app_port)) => {
                        let d = peer_authentication::resolve(
                            &self.peer_authentications,
                            &self.settings.root_namespace,
                            &instance.namespace,
                            &instance.labels,
                            app_port,
                            &mut quiet,
                        );
                        (Some(d.mode), d.policies)
                    }
                    _ => (None, Vec::new()),
                };
                inbound.push(InboundSecurity {
                    instance: instance.id.clone(),
                    port: p.service_port,
                    mode: mode.map_or("none", Mode::as_str).to_string(),
                    policies,
                    from_sidecars: from_sidecars(mtls, mode).to_string(),
                    from_outside: from_outside(mode).to_string(),
                });
            }
            if instance.sidecar {
                authz.push(self.instance_authorization(instance));
            }
        }
        SecurityView {
            identity,
            callers,
            inbound,
            authorization: authz,
        }
    }

    fn caller_tls(&self, svc: &Service, port: u16) -> CallerTls {
        let name = cluster_name(port, "", &svc.hostname);
        let mtls = self
            .clusters
            .get(&name)
            .and_then(|r| Cluster::decode(r.body.value.as_slice()).ok())
            .is_some_and(|c| c.transport_socket.is_some());
        let reason = match (mtls, svc.instances.iter().find(|i| !i.sidecar)) {
            (true, _) if svc.instances.iter().all(|i| i.sidecar) => "every instance has a sidecar",
            (true, _) => "a DestinationRule asks for ISTIO_MUTUAL",
            (false, Some(_)) => "an instance has no sidecar",
            (false, None) if svc.instances.is_empty() => "no instance yet",
            (false, None) => "a DestinationRule disables TLS",
        };
        CallerTls {
            port,
            mtls,
            reason: reason.to_string(),
        }
    }

    fn instance_authorization(
        &self,
        instance: &crate::registry::Instance,
    ) -> InstanceAuthorization {
        let target = Target {
            namespace: &instance.namespace,
            labels: &instance.labels,
            root_namespace: &self.settings.root_namespace,
            trust_domain: &self.settings.trust_domain,
        };
        let mut view = InstanceAuthorization {
            instance: instance.id.clone(),
            audit: Vec::new(),
            deny: Vec::new(),
            allow: Vec::new(),
            unsupported: Vec::new(),
        };
        for (ns, name, policy) in authorization::selecting(&self.authorization_policies, &target) {
            let list = match policy.action.unwrap_or(Action::Allow) {
                Action::Audit => &mut view.audit,
                Action::Deny => &mut view.deny,
                Action::Allow => &mut view.allow,
                Action::Custom => &mut view.unsupported,
            };
            list.push(format!("{ns}/{name}"));
        }
        view
    }
}

/// What a sidecar's call gets from a port in `mode` (`None`: no sidecar there).
fn from_sidecars(mtls: bool, mode: Option<Mode>) -> &'static str {
    match (mtls, mode) {
        (true, Some(Mode::Strict | Mode::Permissive)) => "mTLS",
        (true, Some(Mode::Disable)) => "fails: callers send mTLS, the port takes plain text only",
        (true, None) => "fails: callers send mTLS, the instance has no sidecar",
        (false, Some(Mode::Strict)) => "refused: STRICT takes mTLS only",
        (false, _) => "plaintext",
    }
}

/// What a plaintext caller from outside the mesh gets.
fn from_outside(mode: Option<Mode>) -> &'static str {
    match mode {
        Some(Mode::Strict) => "refused (STRICT)",
        _ => "plaintext",
    }
}
