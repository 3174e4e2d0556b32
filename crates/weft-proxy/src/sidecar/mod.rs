//! A Weft sidecar: the proxy beside one workload, configured by the control plane. This
//! module writes its bootstrap: ADS to the control plane, and the workload described in
//! the node metadata the control plane registers it from.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

/// One port of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Port name.
    pub name: String,
    /// The port callers use (`reviews:9080`).
    pub service_port: u16,
    /// Where the application listens.
    pub app_port: u16,
    /// Where the sidecar's inbound listener for this port listens.
    pub inbound_port: u16,
    /// `http`, `http2`, `grpc` or `tcp`.
    pub protocol: String,
}

/// Everything a sidecar's bootstrap says.
#[derive(Debug, Clone)]
pub struct SidecarSpec {
    /// Node id, unique per sidecar.
    pub node_id: String,
    /// Service.
    pub service: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `sidecar` or `gateway`.
    pub role: String,
    /// Address peers reach the inbound listeners on.
    pub inbound_address: IpAddr,
    /// Ports.
    pub ports: Vec<PortSpec>,
    /// The outbound (HTTP proxy) listener's port.
    pub outbound_port: u16,
    /// Gateway server ports a gateway serves, each with the local port it binds.
    pub gateway_ports: Vec<(u16, u16)>,
    /// Admin listener port (0: any).
    pub admin_port: u16,
    /// Control-plane xDS addresses (`host:port`), tried in turn.
    pub control_planes: Vec<String>,
    /// Use incremental xDS.
    pub delta: bool,
}

impl SidecarSpec {
    /// The Envoy bootstrap, in YAML.
    pub fn bootstrap_yaml(&self) -> String {
        let mut y = String::new();
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let _ = writeln!(
            y,
            "node:\n  id: {}\n  cluster: {}\n  metadata:",
            q(&self.node_id),
            q(&self.service)
        );
        let _ = writeln!(
            y,
            "    WEFT_SERVICE: {}\n    WEFT_NAMESPACE: {}\n    WEFT_ROLE: {}",
            q(&self.service),
            q(&self.namespace),
            q(&self.role)
        );
        let _ = writeln!(
            y,
            "    WEFT_INBOUND_ADDRESS: {}",
            q(&self.inbound_address.to_string()),
        );
        if self.outbound_port != 0 {
            let _ = writeln!(y, "    WEFT_OUTBOUND_PORT: {}", self.outbound_port);
        }
        y.push_str("    WEFT_LABELS:");
        if self.labels.is_empty() {
            y.push_str(" {}\n");
        } else {
            y.push('\n');
            for (k, v) in &self.labels {
                let _ = writeln!(y, "      {}: {}", q(k), q(v));
            }
        }
        y.push_str("    WEFT_PORTS:");
        if self.ports.is_empty() {
            y.push_str(" []\n");
        } else {
            y.push('\n');
            for p in &self.ports {
                let _ = writeln!(
                    y,
                    "    - {{ name: {}, service_port: {}, app_port: {}, inbound_port: {}, protocol: {} }}",
                    q(&p.name),
                    p.service_port,
                    p.app_port,
                    p.inbound_port,
                    q(&p.protocol)
                );
            }
        }
        let gateway_ports: Vec<String> = self
            .gateway_ports
            .iter()
            .map(|(port, bind)| format!("{{ port: {port}, bind: {bind} }}"))
            .collect();
        let _ = writeln!(y, "    WEFT_GATEWAY_PORTS: [{}]", gateway_ports.join(", "));
        let _ = writeln!(
            y,
            "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}",
            self.admin_port
        );
        let api = if self.delta { "DELTA_GRPC" } else { "GRPC" };
        let _ = writeln!(
            y,
            "dynamic_resources:\n  lds_config: {{ ads: {{}} }}\n  cds_config: {{ ads: {{}} }}\n  ads_config:\n    api_type: {api}\n    transport_api_version: V3\n    grpc_services: [{{ envoy_grpc: {{ cluster_name: weft-control-plane }} }}]"
        );
        // STRICT_DNS: control-plane addresses may be names.
        y.push_str("static_resources:\n  clusters:\n  - name: weft-control-plane\n    type: STRICT_DNS\n    connect_timeout: 2s\n");
        y.push_str("    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n");
        y.push_str("        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n");
        y.push_str("        explicit_http_config: { http2_protocol_options: {} }\n");
        y.push_str("    load_assignment:\n      cluster_name: weft-control-plane\n      endpoints:\n      - lb_endpoints:\n");
        for cp in &self.control_planes {
            let (host, port) = cp.rsplit_once(':').unwrap_or((cp.as_str(), "15010"));
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let _ = writeln!(
                y,
                "        - endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: {} }} }} }}",
                q(host),
                port
            );
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_is_a_valid_weft_configuration() {
        let spec = SidecarSpec {
            node_id: "reviews-abc.default".into(),
            service: "reviews".into(),
            namespace: "default".into(),
            labels: [("version".to_string(), "v1".to_string())].into(),
            role: "sidecar".into(),
            inbound_address: "127.0.0.1".parse().expect("ip"),
            ports: vec![PortSpec {
                name: "http".into(),
                service_port: 9080,
                app_port: 9081,
                inbound_port: 15006,
                protocol: "http".into(),
            }],
            outbound_port: 15001,
            gateway_ports: vec![],
            admin_port: 0,
            control_planes: vec!["127.0.0.1:15010".into(), "localhost:25010".into()],
            delta: false,
        };
        let yaml = spec.bootstrap_yaml();
        let options = crate::ProxyOptions {
            concurrency: 1,
            ..crate::ProxyOptions::new("sidecar.yaml")
        };
        let proxy =
            crate::Proxy::from_text(&options, &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let xds = proxy.compiled().xds.clone().expect("xds");
        assert_eq!(
            xds.endpoints,
            vec!["http://127.0.0.1:15010", "http://localhost:25010"]
        );
        let node = proxy.compiled().bootstrap.node.clone().expect("node");
        let meta = node.metadata.expect("metadata");
        assert!(meta.fields.contains_key("WEFT_PORTS"));
    }
}
