//! Gateway: a load balancer at the edge of the mesh — its servers (port, hosts, TLS)
//! and the workloads that run it. Also the server TLS settings Sidecars reuse, and the
//! `namespace/host` host form Gateways and Sidecars share.

use crate::networking::common::{check_port_name, Port};
use crate::networking::workload_entry::{check_unix_path, UNIX_PREFIX};
use crate::rules;
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// `networking.istio.io` Gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// The servers (at least one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    /// Labels of the gateway workloads that apply this.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
}

/// One listening port and the hosts served on it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// The port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// The IP or `unix://` socket to bind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// Hosts served: `[namespace/]host`, FQDN or wildcard.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// TLS settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Where to send traffic without a route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_endpoint: Option<String>,
    /// A name for the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// TLS for a server (Gateway) or an ingress listener (Sidecar).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Redirect plain HTTP to HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    /// How TLS is handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<ServerTlsMode>,
    /// Server certificate file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// Private key file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA bundle to verify clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// Certificate revocation list file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
    /// Secret holding the certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Accepted client identities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Accepted client certificate SPKI hashes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_spki: Vec<String>,
    /// Accepted client certificate hashes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_hash: Vec<String>,
    /// Lowest TLS version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<TlsProtocol>,
    /// Highest TLS version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_protocol_version: Option<TlsProtocol>,
    /// Allowed cipher suites.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
}

/// Server TLS modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// Forward TLS untouched, routed by SNI.
    Passthrough,
    /// Terminate TLS.
    Simple,
    /// Terminate TLS and require a client certificate.
    Mutual,
    /// Passthrough with routing by SNI to mesh services.
    AutoPassthrough,
    /// Mesh mTLS with the workload's certificate.
    IstioMutual,
    /// Terminate TLS and ask for a client certificate.
    OptionalMutual,
}

/// TLS protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TlsProtocol {
    /// The proxy's default.
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    /// TLS 1.0.
    #[serde(rename = "TLSV1_0")]
    TlsV1_0,
    /// TLS 1.1.
    #[serde(rename = "TLSV1_1")]
    TlsV1_1,
    /// TLS 1.2.
    #[serde(rename = "TLSV1_2")]
    TlsV1_2,
    /// TLS 1.3.
    #[serde(rename = "TLSV1_3")]
    TlsV1_3,
}

impl Validate for Gateway {
    fn validate(&self, v: &mut Validator<'_>) {
        if !v.name.is_empty() && !rules::is_dns1123_label(v.name) {
            v.error(format!(
                "invalid gateway name {:?}: a Gateway's name must be a DNS-1123 label (no dots)",
                v.name
            ));
        }
        if self.servers.is_empty() {
            v.error_at("servers", "a gateway must have at least one server");
        }
        let mut port_names = HashSet::new();
        v.each("servers", &self.servers, |v, server| {
            server.validate(v);
            if let Some(port) = &server.port {
                if !port.name.is_empty() && !port_names.insert(port.name.clone()) {
                    v.error_at(
                        "port",
                        format!(
                            "port names in servers must be unique: duplicate name {:?}",
                            port.name
                        ),
                    );
                }
                if !rules::is_http_protocol(&port.protocol)
                    && server.tls.as_ref().and_then(|t| t.https_redirect) == Some(true)
                {
                    v.warn_at("tls", "tls.httpsRedirect only makes sense on HTTP servers");
                }
            }
        });
        v.at("selector", |v| rules::check_labels(v, &self.selector));
    }
}

impl Validate for Server {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.hosts.is_empty() {
            v.error_at("hosts", "a server must have at least one host");
        }
        v.each("hosts", &self.hosts, |v, h| {
            check_namespaced_host(v, h, true)
        });
        let unix = self
            .bind
            .as_deref()
            .is_some_and(|b| b.starts_with(UNIX_PREFIX));
        match &self.port {
            None => v.required("port"),
            Some(port) => v.at("port", |v| {
                if port.protocol.is_empty() {
                    v.required("protocol");
                } else {
                    v.check_at("protocol", rules::check_protocol(&port.protocol));
                }
                if port.number > 0 || !unix {
                    v.check_at("number", rules::check_port(port.number));
                }
                if port.target_port.is_some() {
                    v.error_at("targetPort", "targetPort has no effect on gateways");
                }
                if port.name.is_empty() {
                    v.required("name");
                }
            }),
        }
        if let Some(bind) = &self.bind {
            if let Some(path) = bind.strip_prefix(UNIX_PREFIX) {
                v.check_at("bind", check_unix_path(path));
                if self.port.as_ref().is_some_and(|p| p.number != 0) {
                    v.error_at(
                        "port",
                        "the port number must be 0 when binding a unix socket",
                    );
                }
            } else if !bind.is_empty() && !rules::is_ip(bind) {
                v.error_at("bind", format!("{bind:?} is not a valid IP address"));
            }
        }
        v.field("tls", &self.tls);
        let Some(port) = &self.port else { return };
        if port.protocol.is_empty() || rules::check_protocol(&port.protocol).is_err() {
            return;
        }
        let tls_port = rules::is_tls_protocol(&port.protocol);
        match &self.tls {
            None if tls_port => v.error("a server with an HTTPS or TLS port needs tls settings"),
            Some(tls) if !tls_port => {
                if rules::is_http_protocol(&port.protocol) {
                    let passthrough = matches!(
                        tls.mode,
                        None | Some(ServerTlsMode::Passthrough)
                            | Some(ServerTlsMode::AutoPassthrough)
                    );
                    if !passthrough
                        || tls.ca_certificates.is_some()
                        || tls.private_key.is_some()
                        || tls.server_certificate.is_some()
                    {
                        v.error_at(
                            "tls",
                            "a plain-text HTTP server can only have tls.httpsRedirect",
                        );
                    }
                } else {
                    v.error_at("tls", "only HTTPS and TLS servers can have tls settings");
                }
            }
            _ => {}
        }
    }
}

impl Validate for ServerTlsSettings {
    fn validate(&self, v: &mut Validator<'_>) {
        if matches!(
            self.min_protocol_version,
            Some(TlsProtocol::TlsV1_0 | TlsProtocol::TlsV1_1)
        ) && self.cipher_suites.is_empty()
        {
            v.warn_at(
                "minProtocolVersion",
                "TLS versions below 1.2 need compatible cipherSuites set explicitly",
            );
        }
        let mode = self.mode.unwrap_or(ServerTlsMode::Passthrough);
        let certs = self.server_certificate.is_some()
            || self.private_key.is_some()
            || self.ca_certificates.is_some()
            || self.credential_name.is_some();
        match mode {
            ServerTlsMode::IstioMutual => {
                if certs {
                    v.error("ISTIO_MUTUAL uses the workload's certificate: remove serverCertificate, privateKey, caCertificates and credentialName");
                }
                return;
            }
            ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
                if certs || self.ca_crl.is_some() =>
            {
                v.warn("passthrough modes do not use certificates; they are ignored");
            }
            _ => {}
        }
        let terminating = matches!(
            mode,
            ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
        );
        if terminating && self.credential_name.is_some() {
            return;
        }
        if terminating {
            let name = if mode == ServerTlsMode::Simple {
                "SIMPLE"
            } else {
                "MUTUAL"
            };
            if self.server_certificate.is_none() {
                v.error_at(
                    "serverCertificate",
                    format!("{name} TLS needs serverCertificate (or credentialName)"),
                );
            }
            if self.private_key.is_none() {
                v.error_at(
                    "privateKey",
                    format!("{name} TLS needs privateKey (or credentialName)"),
                );
            }
            if mode != ServerTlsMode::Simple && self.ca_certificates.is_none() {
                v.error_at(
                    "caCertificates",
                    "MUTUAL TLS needs caCertificates (or credentialName)",
                );
            }
        }
        if self.ca_crl.is_some() {
            if self.credential_name.is_some() {
                v.error_at(
                    "caCrl",
                    "caCrl cannot be used with credentialName (put the CRL in the credential)",
                );
            }
            if mode == ServerTlsMode::Simple {
                v.error_at("caCrl", "caCrl is not supported with SIMPLE TLS");
            }
        }
    }
}

/// `[namespace/]host` in Gateway servers (namespace optional) and Sidecar egress
/// (namespace required). Short names are refused: write a fully qualified name.
pub(crate) fn check_namespaced_host(v: &mut Validator<'_>, host: &str, gateway: bool) {
    let (ns, name) = match host.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None if gateway => (None, host),
        None => {
            v.error(format!("host {host:?} must be of the form namespace/host (e.g. \"./{host}\" or \"*/{host}\")"));
            return;
        }
    };
    if let Some(ns) = ns {
        if ns.is_empty() || name.is_empty() {
            v.error("the namespace and host parts cannot be empty");
            return;
        }
        let special = ns == "*" || ns == "." || (!gateway && ns == "~");
        if !special && !rules::is_dns1123_label(ns) {
            v.error(format!("invalid namespace {ns:?} in host {host:?}"));
        }
    }
    if name != "*" && !name.contains('.') {
        v.error(format!(
            "short name {name:?} is not allowed here: use a fully qualified name such as {name}.<namespace>.svc.cluster.local"
        ));
        return;
    }
    if let Err(e) = rules::check_wildcard_domain(name) {
        if !(gateway && rules::is_ip(name)) {
            v.error(e);
        }
    }
    if name.contains('*') && name != "*" && !name.starts_with("*.") {
        v.error(format!("partial wildcard {name:?} is not allowed"));
    }
}

/// Port names are DNS labels when given.
pub(crate) fn check_optional_port_name(v: &mut Validator<'_>, port: &Port) {
    if !port.name.is_empty() {
        v.check_at("name", check_port_name(&port.name));
    }
}

#[cfg(test)]
mod tests {
    use crate::resource::{Kind, Spec};
    use crate::testing::{err, ok, warn};

    const K: Kind = Kind::Gateway;

    #[test]
    fn bookinfo_gateway() {
        let g = match ok(
            K,
            "selector: {istio: ingressgateway}\nservers:\n- port: {number: 8080, name: http, protocol: HTTP}\n  hosts: [\"*\"]\n",
        )
        .spec
        {
            Spec::Gateway(g) => g,
            other => panic!("{other:?}"),
        };
        assert_eq!(g.servers[0].port.as_ref().map(|p| p.number), Some(8080));
    }

    #[test]
    fn tls_servers() {
        ok(
            K,
            "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [prod/bookinfo.example.com]\n  tls: {mode: SIMPLE, credentialName: bookinfo-cert, minProtocolVersion: TLSV1_2}\n",
        );
        ok(
            K,
            "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"*.example.com\"]\n  tls: {httpsRedirect: true}\n",
        );
        err(
            K,
            "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.example.com]\n",
            ".servers[0]",
        );
        err(
            K,
            "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.example.com]\n  tls: {mode: SIMPLE}\n",
            ".servers[0].tls.serverCertificate",
        );
        err(
            K,
            "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.example.com]\n  tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}\n",
            ".servers[0].tls.caCertificates",
        );
        err(
            K,
            "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.example.com]\n  tls: {mode: ISTIO_MUTUAL, credentialName: x}\n",
            ".servers[0].tls",
        );
        err(
            K,
            "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [a.example.com]\n  tls: {mode: SIMPLE, credentialName: x}\n",
            ".servers[0].tls",
        );
        warn(
            K,
            "servers:\n- port: {number: 443, name: tls, protocol: TLS}\n  hosts: [a.example.com]\n  tls: {mode: PASSTHROUGH, httpsRedirect: true}\n",
            ".servers[0].tls",
        );
    }

    #[test]
    fn hosts_need_fully_qualified_names() {
        let e = err(
            K,
            "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [reviews]\n",
            ".servers[0].hosts[0]",
        );
        assert!(e.message.contains("short name"), "{e}");
        err(
            K,
            "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"Bad_NS/a.example.com\"]\n",
            ".servers[0].hosts[0]",
        );
        err(
            K,
            "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"a*.example.com\"]\n",
            ".servers[0].hosts[0]",
        );
        ok(K, "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [\"./*\", \"*/a.example.com\", 10.1.1.1]\n");
    }

    #[test]
    fn server_rules() {
        err(K, "selector: {app: gw}\n", ".servers");
        err(
            K,
            "servers:\n- hosts: [a.example.com]\n",
            ".servers[0].port",
        );
        err(
            K,
            "servers:\n- port: {number: 80, protocol: HTTP}\n  hosts: [a.example.com]\n",
            ".servers[0].port.name",
        );
        err(
            K,
            "servers:\n- port: {number: 80, name: http}\n  hosts: [a.example.com]\n",
            ".servers[0].port.protocol",
        );
        err(
            K,
            "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [a.example.com]\n- port: {number: 81, name: http, protocol: HTTP}\n  hosts: [b.example.com]\n",
            ".servers[1].port",
        );
        err(
            K,
            "servers:\n- port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}\n  hosts: [a.example.com]\n",
            ".servers[0].port.targetPort",
        );
        err(
            K,
            "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  bind: not-an-ip\n  hosts: [a.example.com]\n",
            ".servers[0].bind",
        );
        ok(K, "servers:\n- port: {number: 0, name: uds, protocol: HTTP}\n  bind: unix:///var/run/gw.sock\n  hosts: [a.example.com]\n");
        let p = crate::parse::parse_documents(
            "gw.yaml",
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: my.gateway}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [a.example.com]\n",
        );
        assert!(
            p.errors
                .iter()
                .any(|e| e.message.contains("invalid gateway name")),
            "{p:?}"
        );
    }
}
