//! `Listener` → [`Listener`]: listener filters, filter chains and their network filters
//! (RBAC before the terminal one: HTTP connection manager or TCP proxy), and the HTTP
//! filters of a connection manager (JWT and RBAC, in their order, before the router).

use super::{access_log, decode_any, duration, route, socket_address, timeout, Context};
use crate::http::manager::{
    Codec, Http2Server, HttpFilter, HttpManager, ServerHeader, StripPort, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_HEADERS_COUNT, DEFAULT_MAX_REQUEST_HEADERS_KB,
    DEFAULT_STREAM_IDLE_TIMEOUT,
};
use crate::listener::{
    ChainMatch, FilterChain, Listener, Network, DEFAULT_LISTENER_FILTERS_TIMEOUT,
};
use crate::tcp::{TcpCluster, TcpProxy, DEFAULT_TCP_IDLE_TIMEOUT};
use http::HeaderValue;
use std::sync::Arc;
use weft_xds::pb::envoy::config::listener::v3 as lpb;
use weft_xds::pb::envoy::extensions::filters::http::router::v3::Router;
use weft_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use weft_xds::type_url;

/// Compiles one listener.
pub fn compile(l: &lpb::Listener, path: &str, ctx: &mut Context<'_>) -> Option<Listener> {
    let errors_before = ctx.errors.len();
    if l.name.is_empty() {
        ctx.error(&format!("{path}.name"), "a listener needs a name");
    }
    // The chains are compiled even when the address is wrong, to report all problems.
    let address = match l.address.as_ref() {
        Some(a) => socket_address(a, &format!("{path}.address"), ctx),
        None => {
            ctx.error(&format!("{path}.address"), "an address is required");
            None
        }
    };
    let (mut inspect_tls, mut inspect_http, mut original_dst) = (false, false, false);
    for (i, f) in l.listener_filters.iter().enumerate() {
        let fpath = format!("{path}.listener_filters[{i}]");
        let type_url = match &f.config_type {
            Some(lpb::listener_filter::ConfigType::TypedConfig(any)) => any.type_url.as_str(),
            _ => "",
        };
        match (type_url, f.name.as_str()) {
            (type_url::TLS_INSPECTOR, _) | ("", "envoy.filters.listener.tls_inspector") => {
                inspect_tls = true
            }
            (type_url::HTTP_INSPECTOR, _) | ("", "envoy.filters.listener.http_inspector") => {
                inspect_http = true
            }
            (type_url::ORIGINAL_DST, _) | ("", "envoy.filters.listener.original_dst") => {
                original_dst = true
            }
            _ => ctx.error(
                &fpath,
                format!("listener filter {:?} ({type_url}) is not supported", f.name),
            ),
        }
    }
    let name: Arc<str> = l.name.as_str().into();
    let mut chains = Vec::new();
    for (i, fc) in l.filter_chains.iter().enumerate() {
        if let Some(c) = filter_chain(fc, &format!("{path}.filter_chains[{i}]"), i, ctx) {
            if chains.iter().any(|o: &FilterChain| o.matcher == c.matcher) {
                ctx.error(
                    &format!("{path}.filter_chains[{i}].filter_chain_match"),
                    "another filter chain has the same match",
                );
            }
            chains.push(c);
        }
    }
    let default_chain = l
        .default_filter_chain
        .as_ref()
        .and_then(|fc| filter_chain(fc, &format!("{path}.default_filter_chain"), usize::MAX, ctx));
    if l.filter_chains.is_empty() && l.default_filter_chain.is_none() {
        ctx.error(
            &format!("{path}.filter_chains"),
            "at least one filter chain is required",
        );
    }
    // Matching on what only an inspector can see turns that inspector on, as Envoy does.
    for c in &chains {
        inspect_tls |= !c.matcher.server_names.is_empty()
            || c.matcher.transport_protocol.as_deref() == Some("tls");
        inspect_http |= c
            .matcher
            .application_protocols
            .iter()
            .any(|p| p.starts_with("http/") || p == "h2c");
    }
    let filters_timeout = l
        .listener_filters_timeout
        .as_ref()
        .and_then(|d| duration(d, &format!("{path}.listener_filters_timeout"), ctx))
        .unwrap_or(DEFAULT_LISTENER_FILTERS_TIMEOUT);
    let address = address?;
    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(Listener {
        stats: ctx.metrics.listener(&name),
        name,
        address,
        chains,
        default_chain,
        inspect_tls,
        inspect_http,
        original_dst,
        filters_timeout,
        backlog: l.tcp_backlog_size.map_or(1024, |v| v.value),
    })
}

fn filter_chain(
    fc: &lpb::FilterChain,
    path: &str,
    index: usize,
    ctx: &mut Context<'_>,
) -> Option<FilterChain> {
    let matcher = match &fc.filter_chain_match {
        None => ChainMatch::default(),
        Some(m) => {
            let mpath = format!("{path}.filter_chain_match");
            let port = match m.destination_port.map(|p| p.value) {
                Some(p) if p == 0 || p > 65535 => {
                    ctx.error(
                        &format!("{mpath}.destination_port"),
                        format!("{p} is not a port"),
                    );
                    None
                }
                p => p.map(|p| p as u16),
            };
            ChainMatch {
                destination_port: port,
                server_names: m
                    .server_names
                    .iter()
                    .map(|s| s.to_ascii_lowercase())
                    .collect(),
                transport_protocol: (!m.transport_protocol.is_empty())
                    .then(|| m.transport_protocol.clone()),
                application_protocols: m.application_protocols.clone(),
            }
        }
    };
    if fc.filters.is_empty() {
        ctx.error(
            &format!("{path}.filters"),
            "at least one network filter is required",
        );
        return None;
    }
    let last = fc.filters.len() - 1;
    let mut rbac = Vec::new();
    for (i, f) in fc.filters.iter().enumerate().take(last) {
        let fpath = format!("{path}.filters[{i}]");
        match &f.config_type {
            Some(lpb::filter::ConfigType::TypedConfig(any))
                if super::rbac::is_network_filter(&any.type_url) =>
            {
                if let Some(r) =
                    super::rbac::network_filter(any, &format!("{fpath}.typed_config"), ctx)
                {
                    rbac.push(r);
                }
            }
            _ => ctx.error(
                &fpath,
                format!(
                    "network filter {:?} is not supported before the terminal filter (envoy.filters.network.rbac is)",
                    f.name
                ),
            ),
        }
    }
    let f = &fc.filters[last];
    let fpath = format!("{path}.filters[{last}].typed_config");
    let Some(lpb::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        ctx.error(&fpath, "a typed_config is required");
        return None;
    };
    let network = match any.type_url.as_str() {
        type_url::HTTP_CONNECTION_MANAGER => {
            let m: hcm::HttpConnectionManager = decode_any(any, &fpath, ctx)?;
            Network::Http(Arc::new(http_manager(&m, &fpath, ctx)?))
        }
        type_url::TCP_PROXY => {
            let t: tcp::TcpProxy = decode_any(any, &fpath, ctx)?;
            Network::Tcp(Arc::new(tcp_proxy(&t, &fpath, ctx)?))
        }
        other => {
            ctx.error(&fpath, format!("network filter {other} is not supported (http_connection_manager and tcp_proxy are)"));
            return None;
        }
    };
    let handshake_timeout = fc
        .transport_socket_connect_timeout
        .as_ref()
        .and_then(|d| duration(d, &format!("{path}.transport_socket_connect_timeout"), ctx))
        .filter(|d| !d.is_zero())
        .unwrap_or(crate::tls::DEFAULT_HANDSHAKE_TIMEOUT);
    let tls = match &fc.transport_socket {
        Some(ts) => super::tls::downstream(
            ts,
            handshake_timeout,
            &format!("{path}.transport_socket"),
            ctx,
        )?,
        None => None,
    };
    let name = if !fc.name.is_empty() {
        fc.name.clone()
    } else if index == usize::MAX {
        "default".to_string()
    } else {
        format!("chain_{index}")
    };
    Some(FilterChain {
        name: name.into(),
        matcher,
        network,
        tls,
        rbac: rbac.into(),
    })
}

fn http_manager(
    m: &hcm::HttpConnectionManager,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<HttpManager> {
    let errors_before = ctx.errors.len();
    use hcm::http_connection_manager::{
        CodecType, RouteSpecifier, ServerHeaderTransformation as Sh,
    };
    let codec = match CodecType::try_from(m.codec_type) {
        Ok(CodecType::Auto) => Codec::Auto,
        Ok(CodecType::Http1) => Codec::Http1,
        Ok(CodecType::Http2) => Codec::Http2,
        _ => {
            ctx.error(
                &format!("{path}.codec_type"),
                "only AUTO, HTTP1 and HTTP2 are supported",
            );
            Codec::Auto
        }
    };
    if m.stat_prefix.is_empty() {
        ctx.error(&format!("{path}.stat_prefix"), "a stat_prefix is required");
    }
    let routes = match &m.route_specifier {
        Some(RouteSpecifier::RouteConfig(rc)) => {
            route::compile(rc, &format!("{path}.route_config"), ctx)
                .map(|t| (Arc::new(arc_swap::ArcSwap::from_pointee(t)), None))
        }
        Some(RouteSpecifier::Rds(rds)) => match &ctx.rds {
            Some(registry) if !rds.route_config_name.is_empty() => Some((
                registry.slot(&rds.route_config_name),
                Some(rds.route_config_name.clone()),
            )),
            Some(_) => {
                ctx.error(
                    &format!("{path}.rds.route_config_name"),
                    "a route configuration name is required",
                );
                None
            }
            None => {
                ctx.error(
                    &format!("{path}.rds"),
                    "RDS needs an xDS server (dynamic_resources), which this configuration does not have",
                );
                None
            }
        },
        _ => {
            ctx.error(path, "route_config is required");
            None
        }
    };
    let filters = http_filters(
        &m.http_filters,
        &m.stat_prefix,
        &format!("{path}.http_filters"),
        ctx,
    );
    let suppress_envoy_headers = m
        .http_filters
        .iter()
        .filter_map(|f| match &f.config_type {
            Some(hcm::http_filter::ConfigType::TypedConfig(any))
                if any.type_url == type_url::ROUTER =>
            {
                prost::Message::decode(any.value.as_slice())
                    .ok()
                    .map(|r: Router| r.suppress_envoy_headers)
            }
            _ => None,
        })
        .next()
        .unwrap_or(false);
    let common = m.common_http_protocol_options.as_ref();
    let access_logs = access_log::compile_all(&m.access_log, &format!("{path}.access_log"), ctx);
    let mut request_header_names = Vec::new();
    let mut response_header_names = Vec::new();
    for log in &access_logs {
        log.format()
            .referenced_headers(&mut request_header_names, &mut response_header_names);
    }
    let server_name = if m.server_name.is_empty() {
        "weft"
    } else {
        m.server_name.as_str()
    };
    let server_value =
        HeaderValue::from_str(server_name).unwrap_or(HeaderValue::from_static("weft"));
    let server_header = match Sh::try_from(m.server_header_transformation) {
        Ok(Sh::AppendIfAbsent) => ServerHeader::AppendIfAbsent(server_value),
        Ok(Sh::PassThrough) => ServerHeader::PassThrough,
        _ => ServerHeader::Overwrite(server_value),
    };
    let strip_port = match (&m.strip_port_mode, m.strip_matching_host_port) {
        (Some(hcm::http_connection_manager::StripPortMode::StripAnyHostPort(true)), _) => {
            StripPort::Any
        }
        (_, true) => StripPort::Matching,
        _ => StripPort::None,
    };
    let h2 = m.http2_protocol_options.as_ref();
    let via = if m.via.is_empty() {
        None
    } else {
        match HeaderValue::from_str(&m.via) {
            Ok(v) => Some(v),
            Err(_) => {
                ctx.error(&format!("{path}.via"), "invalid header value");
                None
            }
        }
    };
    let max_request_headers_kb = m
        .max_request_headers_kb
        .map_or(DEFAULT_MAX_REQUEST_HEADERS_KB, |v| v.value);
    if !(1..=8192).contains(&max_request_headers_kb) {
        ctx.error(
            &format!("{path}.max_request_headers_kb"),
            "must be between 1 and 8192",
        );
    }
    let (routes, rds_name) = routes?;
    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(HttpManager {
        stats: ctx.metrics.http(&m.stat_prefix),
        stat_prefix: m.stat_prefix.clone(),
        codec,
        routes,
        rds_name,
        clusters: ctx.clusters.clone(),
        stream_idle_timeout: timeout(
            m.stream_idle_timeout.as_ref(),
            Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            &format!("{path}.stream_idle_timeout"),
            ctx,
        ),
        request_timeout: timeout(
            m.request_timeout.as_ref(),
            None,
            &format!("{path}.request_timeout"),
            ctx,
        ),
        request_headers_timeout: timeout(
            m.request_headers_timeout.as_ref(),
            None,
            &format!("{path}.request_headers_timeout"),
            ctx,
        ),
        idle_timeout: timeout(
            common.and_then(|c| c.idle_timeout.as_ref()),
            Some(DEFAULT_IDLE_TIMEOUT),
            &format!("{path}.common_http_protocol_options.idle_timeout"),
            ctx,
        ),
        drain_timeout: timeout(
            m.drain_timeout.as_ref(),
            Some(DEFAULT_DRAIN_TIMEOUT),
            &format!("{path}.drain_timeout"),
            ctx,
        )
        .unwrap_or_default(),
        use_remote_address: m.use_remote_address.is_some_and(|v| v.value),
        xff_num_trusted_hops: m.xff_num_trusted_hops,
        skip_xff_append: m.skip_xff_append,
        access_logs,
        request_header_names,
        response_header_names,
        generate_request_id: m.generate_request_id.is_none_or(|v| v.value),
        preserve_external_request_id: m.preserve_external_request_id,
        always_set_request_id_in_response: m.always_set_request_id_in_response,
        server_header,
        upgrades: m
            .upgrade_configs
            .iter()
            .map(|u| {
                (
                    u.upgrade_type.to_ascii_lowercase(),
                    u.enabled.is_none_or(|e| e.value),
                )
            })
            .collect(),
        max_request_headers_kb,
        max_headers_count: common
            .and_then(|c| c.max_headers_count.map(|v| v.value))
            .unwrap_or(DEFAULT_MAX_HEADERS_COUNT),
        normalize_path: m.normalize_path.is_some_and(|v| v.value),
        merge_slashes: m.merge_slashes,
        strip_port,
        accept_http_10: m
            .http_protocol_options
            .as_ref()
            .is_some_and(|o| o.accept_http_10),
        http2: Http2Server {
            max_concurrent_streams: h2.and_then(|o| o.max_concurrent_streams.map(|v| v.value)),
            initial_stream_window_size: h2
                .and_then(|o| o.initial_stream_window_size.map(|v| v.value)),
            initial_connection_window_size: h2
                .and_then(|o| o.initial_connection_window_size.map(|v| v.value)),
        },
        suppress_envoy_headers,
        via,
        filters,
    })
}

/// The router runs last, after the JWT and RBAC filters in their order; other filters
/// are errors unless marked `is_optional`, as Envoy treats them.
fn http_filters(
    filters: &[hcm::HttpFilter],
    stat_prefix: &str,
    path: &str,
    ctx: &mut Context<'_>,
) -> Vec<HttpFilter> {
    let is_router = |f: &hcm::HttpFilter| match &f.config_type {
        Some(hcm::http_filter::ConfigType::TypedConfig(any)) => any.type_url == type_url::ROUTER,
        _ => f.name == "envoy.filters.http.router" || f.name == "router",
    };
    match filters.last() {
        Some(f) if is_router(f) => {}
        Some(_) => ctx.error(
            path,
            "the last HTTP filter must be the router (envoy.filters.http.router)",
        ),
        None => ctx.error(path, "at least the router filter is required"),
    }
    let mut compiled = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        if f.disabled || is_router(f) {
            continue;
        }
        let fpath = format!("{path}[{i}].typed_config");
        let filter = match &f.config_type {
            Some(hcm::http_filter::ConfigType::TypedConfig(any))
                if super::rbac::is_http_filter(&any.type_url) =>
            {
                super::rbac::http_filter(&f.name, any, stat_prefix, &fpath, ctx)
                    .map(HttpFilter::Rbac)
            }
            Some(hcm::http_filter::ConfigType::TypedConfig(any))
                if super::jwt::is_http_filter(&any.type_url) =>
            {
                super::jwt::http_filter(&f.name, any, stat_prefix, &fpath, ctx)
                    .map(|j| HttpFilter::Jwt(Box::new(j)))
            }
            _ if f.is_optional => None,
            _ => {
                ctx.error(
                    &format!("{path}[{i}]"),
                    format!(
                        "HTTP filter {:?} is not supported (mark it is_optional to skip it)",
                        f.name
                    ),
                );
                None
            }
        };
        compiled.extend(filter);
    }
    compiled
}

fn tcp_proxy(t: &tcp::TcpProxy, path: &str, ctx: &mut Context<'_>) -> Option<TcpProxy> {
    use tcp::tcp_proxy::ClusterSpecifier as C;
    if t.stat_prefix.is_empty() {
        ctx.error(&format!("{path}.stat_prefix"), "a stat_prefix is required");
    }
    let check = |name: &str, p: &str, ctx: &mut Context<'_>| {
        if !ctx.cluster_names.contains(name) {
            ctx.error(p, format!("cluster {name:?} does not exist"));
        }
    };
    let cluster = match &t.cluster_specifier {
        Some(C::Cluster(c)) => {
            check(c, &format!("{path}.cluster"), ctx);
            TcpCluster::Named(c.as_str().into())
        }
        Some(C::WeightedClusters(w)) => {
            let arms: Vec<(Arc<str>, u64)> = w
                .clusters
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    check(
                        &c.name,
                        &format!("{path}.weighted_clusters.clusters[{i}].name"),
                        ctx,
                    );
                    (Arc::from(c.name.as_str()), u64::from(c.weight))
                })
                .collect();
            let total = arms.iter().map(|(_, w)| w).sum();
            if total == 0 {
                ctx.error(
                    &format!("{path}.weighted_clusters"),
                    "the weights must not all be zero",
                );
            }
            TcpCluster::Weighted(arms, total)
        }
        None => {
            ctx.error(path, "cluster or weighted_clusters is required");
            return None;
        }
    };
    Some(TcpProxy {
        stats: ctx.metrics.tcp(&t.stat_prefix),
        stat_prefix: t.stat_prefix.clone(),
        cluster,
        idle_timeout: timeout(
            t.idle_timeout.as_ref(),
            Some(DEFAULT_TCP_IDLE_TIMEOUT),
            &format!("{path}.idle_timeout"),
            ctx,
        ),
        max_connect_attempts: t.max_connect_attempts.map_or(1, |v| v.value.max(1)),
        access_logs: access_log::compile_all(&t.access_log, &format!("{path}.access_log"), ctx),
        clusters: ctx.clusters.clone(),
    })
}
