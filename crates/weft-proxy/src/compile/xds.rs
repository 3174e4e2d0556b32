//! `dynamic_resources` → where the xDS server is and how to talk to it: ADS over gRPC
//! (state of the world or delta) to the endpoints of a static cluster.

use super::{host_port, Context};
use weft_xds::client::Protocol;
use weft_xds::pb::envoy::config::bootstrap::v3::bootstrap::DynamicResources;
use weft_xds::pb::envoy::config::cluster::v3::Cluster;
use weft_xds::pb::envoy::config::core::v3::{
    api_config_source::ApiType, config_source, grpc_service, ConfigSource,
};

/// The compiled xDS settings.
#[derive(Debug, Clone)]
pub struct XdsSettings {
    /// Control-plane endpoints, `http://host:port`.
    pub endpoints: Vec<String>,
    /// Protocol variant.
    pub protocol: Protocol,
    /// Listeners come over ADS.
    pub lds: bool,
    /// Clusters come over ADS.
    pub cds: bool,
}

/// Compiles `dynamic_resources`; only ADS is supported (every resource on one stream).
pub fn compile(
    d: &DynamicResources,
    statics: &[Cluster],
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<XdsSettings> {
    let Some(ads) = &d.ads_config else {
        ctx.error(
            &format!("{path}.ads_config"),
            "weft takes its configuration over ADS: ads_config is required",
        );
        return None;
    };
    let apath = format!("{path}.ads_config");
    let protocol = match ApiType::try_from(ads.api_type) {
        Ok(ApiType::Grpc) | Ok(ApiType::AggregatedGrpc) => Protocol::Sotw,
        Ok(ApiType::DeltaGrpc) | Ok(ApiType::AggregatedDeltaGrpc) => Protocol::Delta,
        _ => {
            ctx.error(
                &format!("{apath}.api_type"),
                "GRPC or DELTA_GRPC is required",
            );
            return None;
        }
    };
    let Some(service) = ads.grpc_services.first() else {
        ctx.error(
            &format!("{apath}.grpc_services"),
            "one gRPC service naming the xDS cluster is required",
        );
        return None;
    };
    let cluster_name = match &service.target_specifier {
        Some(grpc_service::TargetSpecifier::EnvoyGrpc(g)) => g.cluster_name.clone(),
        _ => {
            ctx.error(
                &format!("{apath}.grpc_services[0]"),
                "envoy_grpc with a cluster_name is required",
            );
            return None;
        }
    };
    let Some(cluster) = statics.iter().find(|c| c.name == cluster_name) else {
        ctx.error(
            &format!("{apath}.grpc_services[0].envoy_grpc.cluster_name"),
            format!("{cluster_name:?} is not a static cluster"),
        );
        return None;
    };
    let mut endpoints = Vec::new();
    for (i, l) in cluster
        .load_assignment
        .iter()
        .flat_map(|a| a.endpoints.iter())
        .enumerate()
    {
        for (j, e) in l.lb_endpoints.iter().enumerate() {
            use weft_xds::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
            if let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier {
                if let Some(addr) = &ep.address {
                    let p = format!("static_resources.clusters[{cluster_name}].load_assignment.endpoints[{i}].lb_endpoints[{j}]");
                    if let Some((host, port)) = host_port(addr, &p, ctx) {
                        let host = if host.contains(':') {
                            format!("[{host}]")
                        } else {
                            host
                        };
                        endpoints.push(format!("http://{host}:{port}"));
                    }
                }
            }
        }
    }
    if endpoints.is_empty() {
        ctx.error(
            &format!("{apath}.grpc_services[0]"),
            format!("the xDS cluster {cluster_name:?} has no endpoint"),
        );
        return None;
    }
    let is_ads = |c: &Option<ConfigSource>, field: &str, ctx: &mut Context<'_>| match c {
        None => false,
        Some(ConfigSource {
            config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(_)),
            ..
        }) => true,
        Some(_) => {
            ctx.error(&format!("{path}.{field}"), "only `ads: {}` is supported");
            false
        }
    };
    let lds = is_ads(&d.lds_config, "lds_config", ctx);
    let cds = is_ads(&d.cds_config, "cds_config", ctx);
    Some(XdsSettings {
        endpoints,
        protocol,
        lds,
        cds,
    })
}
