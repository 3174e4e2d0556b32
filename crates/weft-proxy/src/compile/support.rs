//! The subset of Envoy's API the proxy honours, as data: for each message, the fields it
//! reads. A configuration that sets any other field is refused with the field's path,
//! so nothing is silently ignored. Messages not listed here are refused whole, except
//! plain value types (durations, wrappers, matchers' value types).

use super::ConfigError;
use prost_reflect::{DynamicMessage, MapKey, ReflectMessage, Value};

/// Message full name → fields honoured.
const SUPPORTED: &[(&str, &[&str])] = &[
    ("envoy.config.bootstrap.v3.Bootstrap", &["node", "static_resources", "dynamic_resources", "admin", "stats_flush_interval"]),
    ("envoy.config.bootstrap.v3.Bootstrap.DynamicResources", &["lds_config", "cds_config", "ads_config"]),
    ("envoy.config.core.v3.ApiConfigSource", &["api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only"]),
    ("envoy.config.core.v3.GrpcService", &["envoy_grpc", "timeout"]),
    ("envoy.config.core.v3.GrpcService.EnvoyGrpc", &["cluster_name", "authority"]),
    ("envoy.config.bootstrap.v3.Bootstrap.StaticResources", &["listeners", "clusters"]),
    ("envoy.config.bootstrap.v3.Admin", &["address", "access_log_path", "profile_path"]),
    ("envoy.config.core.v3.Node", &["id", "cluster", "metadata", "locality", "user_agent_name", "user_agent_version", "user_agent_build_version", "extensions", "client_features"]),
    ("envoy.config.core.v3.Locality", &["region", "zone", "sub_zone"]),
    ("envoy.config.core.v3.Address", &["socket_address"]),
    ("envoy.config.core.v3.SocketAddress", &["protocol", "address", "port_value", "ipv4_compat"]),
    ("envoy.config.core.v3.Metadata", &["filter_metadata", "typed_filter_metadata"]),
    ("envoy.config.core.v3.TypedExtensionConfig", &["name", "typed_config"]),
    ("envoy.config.core.v3.DataSource", &["inline_string", "inline_bytes", "filename"]),
    ("envoy.config.core.v3.HeaderValueOption", &["header", "append", "append_action", "keep_empty_value"]),
    ("envoy.config.core.v3.HeaderValue", &["key", "value", "raw_value"]),
    ("envoy.config.core.v3.RuntimeFractionalPercent", &["default_value", "runtime_key"]),
    ("envoy.config.core.v3.HttpProtocolOptions", &["idle_timeout", "max_headers_count", "max_requests_per_connection"]),
    ("envoy.config.core.v3.Http1ProtocolOptions", &["accept_http_10", "allow_absolute_url", "enable_trailers"]),
    ("envoy.config.core.v3.Http2ProtocolOptions", &["max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size", "connection_keepalive", "allow_connect"]),
    ("envoy.config.core.v3.KeepaliveSettings", &["interval", "timeout"]),
    ("envoy.config.core.v3.TransportSocket", &["name", "typed_config"]),
    ("envoy.config.listener.v3.Listener", &["name", "address", "filter_chains", "default_filter_chain", "listener_filters", "listener_filters_timeout", "continue_on_listener_filters_timeout", "per_connection_buffer_limit_bytes", "metadata", "traffic_direction", "stat_prefix", "enable_reuse_port", "tcp_backlog_size", "drain_type"]),
    ("envoy.config.listener.v3.ListenerFilter", &["name", "typed_config"]),
    ("envoy.config.listener.v3.FilterChain", &["filter_chain_match", "filters", "name", "metadata", "transport_socket", "transport_socket_connect_timeout"]),
    ("envoy.config.listener.v3.FilterChainMatch", &["destination_port", "server_names", "transport_protocol", "application_protocols"]),
    ("envoy.config.listener.v3.Filter", &["name", "typed_config"]),
    ("envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector", &[]),
    ("envoy.extensions.filters.listener.http_inspector.v3.HttpInspector", &[]),
    ("envoy.extensions.filters.listener.original_dst.v3.OriginalDst", &[]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", &["codec_type", "stat_prefix", "route_config", "rds", "http_filters", "stream_idle_timeout", "request_timeout", "request_headers_timeout", "drain_timeout", "delayed_close_timeout", "use_remote_address", "xff_num_trusted_hops", "skip_xff_append", "access_log", "generate_request_id", "preserve_external_request_id", "always_set_request_id_in_response", "server_name", "server_header_transformation", "upgrade_configs", "common_http_protocol_options", "http_protocol_options", "http2_protocol_options", "max_request_headers_kb", "normalize_path", "merge_slashes", "via", "strip_matching_host_port", "strip_any_host_port"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter", &["name", "typed_config", "is_optional"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig", &["upgrade_type", "enabled"]),
    ("envoy.extensions.filters.http.router.v3.Router", &["suppress_envoy_headers", "start_child_span", "dynamic_stats"]),
    ("envoy.extensions.filters.http.rbac.v3.RBAC", &["rules", "rules_stat_prefix"]),
    ("envoy.extensions.filters.http.rbac.v3.RBACPerRoute", &["rbac"]),
    ("envoy.extensions.filters.network.rbac.v3.RBAC", &["rules", "stat_prefix", "enforcement_type"]),
    ("envoy.config.rbac.v3.RBAC", &["action", "policies"]),
    ("envoy.config.rbac.v3.Policy", &["permissions", "principals"]),
    ("envoy.config.rbac.v3.Permission", &["any", "and_rules", "or_rules", "not_rule", "header", "url_path", "destination_ip", "destination_port", "destination_port_range", "requested_server_name", "metadata"]),
    ("envoy.config.rbac.v3.Permission.Set", &["rules"]),
    ("envoy.config.rbac.v3.Principal", &["any", "and_ids", "or_ids", "not_id", "authenticated", "source_ip", "direct_remote_ip", "remote_ip", "header", "url_path", "metadata"]),
    ("envoy.config.rbac.v3.Principal.Set", &["ids"]),
    ("envoy.config.rbac.v3.Principal.Authenticated", &["principal_name"]),
    ("envoy.config.core.v3.CidrRange", &["address_prefix", "prefix_len"]),
    ("envoy.type.matcher.v3.PathMatcher", &["path"]),
    ("envoy.type.matcher.v3.MetadataMatcher", &["filter", "path", "value", "invert"]),
    ("envoy.type.matcher.v3.MetadataMatcher.PathSegment", &["key"]),
    ("envoy.type.matcher.v3.ValueMatcher", &["null_match", "double_match", "string_match", "bool_match", "present_match", "list_match", "or_match"]),
    ("envoy.type.matcher.v3.ValueMatcher.NullMatch", &[]),
    ("envoy.type.matcher.v3.DoubleMatcher", &["range", "exact"]),
    ("envoy.type.matcher.v3.ListMatcher", &["one_of"]),
    ("envoy.type.matcher.v3.OrMatcher", &["value_matchers"]),
    ("envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication", &["providers", "rules", "requirement_map", "bypass_cors_preflight", "strip_failure_response", "stat_prefix"]),
    ("envoy.extensions.filters.http.jwt_authn.v3.JwtProvider", &["issuer", "audiences", "require_expiration", "forward", "from_headers", "from_params", "from_cookies", "forward_payload_header", "pad_forward_payload_header", "payload_in_metadata", "clock_skew_seconds", "local_jwks", "remote_jwks"]),
    ("envoy.extensions.filters.http.jwt_authn.v3.JwtHeader", &["name", "value_prefix"]),
    ("envoy.extensions.filters.http.jwt_authn.v3.RemoteJwks", &["http_uri", "cache_duration"]),
    ("envoy.config.core.v3.HttpUri", &["uri", "cluster", "timeout"]),
    ("envoy.extensions.filters.http.jwt_authn.v3.RequirementRule", &["match", "requires", "requirement_name"]),
    ("envoy.extensions.filters.http.jwt_authn.v3.JwtRequirement", &["provider_name", "provider_and_audiences", "requires_any", "requires_all", "allow_missing", "allow_missing_or_failed"]),
    ("envoy.extensions.filters.http.jwt_authn.v3.ProviderWithAudiences", &["provider_name", "audiences"]),
    ("envoy.extensions.filters.http.jwt_authn.v3.JwtRequirementOrList", &["requirements"]),
    ("envoy.extensions.filters.http.jwt_authn.v3.JwtRequirementAndList", &["requirements"]),
    ("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", &["stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "access_log", "max_connect_attempts"]),
    ("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster", &["clusters"]),
    ("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight", &["name", "weight"]),
    ("envoy.config.accesslog.v3.AccessLog", &["name", "typed_config"]),
    ("envoy.extensions.access_loggers.file.v3.FileAccessLog", &["path", "log_format", "format", "json_format"]),
    ("envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", &["log_format"]),
    ("envoy.extensions.access_loggers.stream.v3.StderrAccessLog", &["log_format"]),
    ("envoy.config.core.v3.SubstitutionFormatString", &["text_format", "text_format_source", "json_format", "omit_empty_values", "content_type"]),
    ("envoy.config.route.v3.RouteConfiguration", &["name", "virtual_hosts", "vhds", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "validate_clusters"]),
    ("envoy.config.route.v3.Vhds", &["config_source"]),
    ("envoy.config.route.v3.VirtualHost", &["name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "retry_policy", "include_request_attempt_count", "metadata", "typed_per_filter_config"]),
    ("envoy.config.route.v3.Route", &["name", "match", "route", "redirect", "direct_response", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "metadata", "decorator", "typed_per_filter_config"]),
    ("envoy.config.route.v3.Decorator", &["operation", "propagate"]),
    ("envoy.config.route.v3.RouteMatch", &["prefix", "path", "safe_regex", "path_separated_prefix", "connect_matcher", "case_sensitive", "headers", "query_parameters", "grpc", "runtime_fraction"]),
    ("envoy.config.route.v3.RouteMatch.ConnectMatcher", &[]),
    ("envoy.config.route.v3.RouteMatch.GrpcRouteMatchOptions", &[]),
    ("envoy.config.route.v3.HeaderMatcher", &["name", "exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match", "suffix_match", "contains_match", "string_match", "invert_match", "treat_missing_header_as_empty"]),
    ("envoy.config.route.v3.QueryParameterMatcher", &["name", "string_match", "present_match"]),
    ("envoy.type.matcher.v3.StringMatcher", &["exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case"]),
    ("envoy.type.matcher.v3.RegexMatcher", &["regex", "google_re2"]),
    ("envoy.type.matcher.v3.RegexMatcher.GoogleRE2", &["max_program_size"]),
    ("envoy.type.matcher.v3.RegexMatchAndSubstitute", &["pattern", "substitution"]),
    ("envoy.config.route.v3.RouteAction", &["cluster", "weighted_clusters", "cluster_header", "cluster_not_found_response_code", "prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "auto_host_rewrite", "host_rewrite_header", "timeout", "idle_timeout", "retry_policy", "hash_policy", "upgrade_configs", "max_stream_duration", "max_grpc_timeout", "grpc_timeout_offset", "priority"]),
    ("envoy.config.route.v3.RouteAction.UpgradeConfig", &["upgrade_type", "enabled", "connect_config"]),
    ("envoy.config.route.v3.RouteAction.UpgradeConfig.ConnectConfig", &[]),
    ("envoy.config.route.v3.RouteAction.MaxStreamDuration", &["max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy", &["header", "cookie", "connection_properties", "query_parameter", "terminal"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.Header", &["header_name"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.Cookie", &["name", "path"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties", &["source_ip"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter", &["name"]),
    ("envoy.config.route.v3.WeightedCluster", &["clusters", "total_weight", "runtime_key_prefix"]),
    ("envoy.config.route.v3.WeightedCluster.ClusterWeight", &["name", "weight", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"]),
    ("envoy.config.route.v3.RetryPolicy", &["retry_on", "num_retries", "per_try_timeout", "retry_back_off", "retriable_status_codes", "retriable_headers", "retriable_request_headers", "host_selection_retry_max_attempts"]),
    ("envoy.config.route.v3.RetryPolicy.RetryBackOff", &["base_interval", "max_interval"]),
    ("envoy.config.route.v3.RedirectAction", &["https_redirect", "scheme_redirect", "host_redirect", "port_redirect", "path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"]),
    ("envoy.config.route.v3.DirectResponseAction", &["status", "body"]),
    ("envoy.config.cluster.v3.Cluster", &["name", "type", "connect_timeout", "lb_policy", "load_assignment", "transport_socket", "dns_refresh_rate", "dns_lookup_family", "respect_dns_ttl", "typed_extension_protocol_options", "http2_protocol_options", "common_lb_config", "ring_hash_lb_config", "maglev_lb_config", "least_request_lb_config", "load_balancing_policy", "per_connection_buffer_limit_bytes", "alt_stat_name", "metadata", "ignore_health_on_host_removal", "cleanup_interval", "original_dst_lb_config", "eds_cluster_config"]),
    ("envoy.config.cluster.v3.Cluster.CommonLbConfig", &["healthy_panic_threshold"]),
    ("envoy.config.cluster.v3.Cluster.RingHashLbConfig", &["minimum_ring_size", "maximum_ring_size", "hash_function"]),
    ("envoy.config.cluster.v3.Cluster.MaglevLbConfig", &["table_size"]),
    ("envoy.config.cluster.v3.Cluster.LeastRequestLbConfig", &["choice_count"]),
    ("envoy.config.cluster.v3.Cluster.OriginalDstLbConfig", &["use_http_header", "http_header_name"]),
    ("envoy.config.cluster.v3.Cluster.EdsClusterConfig", &["eds_config", "service_name"]),
    ("envoy.config.cluster.v3.LoadBalancingPolicy", &["policies"]),
    ("envoy.config.cluster.v3.LoadBalancingPolicy.Policy", &["typed_extension_config"]),
    ("envoy.config.core.v3.TransportSocket", &["name", "typed_config"]),
    ("envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer", &[]),
    ("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", &["common_tls_context", "sni"]),
    ("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", &["common_tls_context", "require_client_certificate"]),
    ("envoy.extensions.transport_sockets.tls.v3.CommonTlsContext", &["tls_params", "tls_certificates", "tls_certificate_sds_secret_configs", "validation_context", "validation_context_sds_secret_config", "combined_validation_context", "alpn_protocols"]),
    ("envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext", &["default_validation_context", "validation_context_sds_secret_config"]),
    ("envoy.extensions.transport_sockets.tls.v3.TlsParameters", &["tls_minimum_protocol_version", "tls_maximum_protocol_version"]),
    ("envoy.extensions.transport_sockets.tls.v3.TlsCertificate", &["certificate_chain", "private_key"]),
    ("envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig", &["name", "sds_config"]),
    ("envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext", &["trusted_ca", "match_typed_subject_alt_names", "match_subject_alt_names"]),
    ("envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher", &["san_type", "matcher"]),
    ("envoy.config.core.v3.ConfigSource", &["ads", "resource_api_version", "initial_fetch_timeout"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.Rds", &["config_source", "route_config_name"]),
    ("envoy.config.core.v3.AggregatedConfigSource", &[]),
    ("envoy.config.endpoint.v3.ClusterLoadAssignment", &["cluster_name", "endpoints", "policy"]),
    ("envoy.config.endpoint.v3.ClusterLoadAssignment.Policy", &["overprovisioning_factor"]),
    ("envoy.config.endpoint.v3.LocalityLbEndpoints", &["locality", "lb_endpoints", "load_balancing_weight", "priority"]),
    ("envoy.config.endpoint.v3.LbEndpoint", &["endpoint", "health_status", "load_balancing_weight", "metadata"]),
    ("envoy.config.endpoint.v3.Endpoint", &["address", "hostname"]),
    ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", &["explicit_http_config", "use_downstream_protocol_config", "common_http_protocol_options"]),
    ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig", &["http_protocol_options", "http2_protocol_options"]),
    ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.UseDownstreamHttpConfig", &["http_protocol_options", "http2_protocol_options"]),
    ("envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin", &[]),
    ("envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest", &["choice_count"]),
    ("envoy.extensions.load_balancing_policies.random.v3.Random", &[]),
    ("envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash", &["minimum_ring_size", "maximum_ring_size", "hash_function"]),
    ("envoy.extensions.load_balancing_policies.maglev.v3.Maglev", &["table_size"]),
    ("weft.config.lb.v1.PeakEwma", &["decay", "default_rtt"]),
];

/// Packages whose messages are plain values, read whole.
const VALUE_PACKAGES: &[&str] = &["google.protobuf.", "envoy.type.v3.", "xds.core.v3."];

/// The table as Markdown, for `docs/proxy.md`.
pub fn markdown() -> String {
    let mut out = String::from("| message | fields weft honours |\n|---|---|\n");
    for (message, fields) in SUPPORTED {
        let list = if fields.is_empty() {
            "(no fields)".to_string()
        } else {
            fields.join(", ")
        };
        out.push_str(&format!("| `{message}` | {list} |\n"));
    }
    out
}

fn supported_fields(message: &str) -> Option<&'static [&'static str]> {
    SUPPORTED
        .iter()
        .find(|(m, _)| *m == message)
        .map(|(_, f)| *f)
}

/// Records an error for every field set in `msg` (recursively) that Weft does not honour.
pub fn check(msg: &DynamicMessage, path: &str, errors: &mut Vec<ConfigError>) {
    let desc = msg.descriptor();
    let name = desc.full_name();
    if name == "google.protobuf.Any" {
        return check_any(msg, path, errors);
    }
    if VALUE_PACKAGES.iter().any(|p| name.starts_with(p)) || name.ends_with("Entry") {
        return;
    }
    let Some(allowed) = supported_fields(name) else {
        errors.push(ConfigError::new(
            path,
            format!("{name} is not supported by weft"),
        ));
        return;
    };
    for (field, value) in msg.fields() {
        let field_path = join(path, field.name());
        if !allowed.contains(&field.name()) {
            errors.push(ConfigError::new(
                &field_path,
                "this field is not supported by weft",
            ));
            continue;
        }
        let is_any = matches!(field.kind(), prost_reflect::Kind::Message(m) if m.full_name() == "google.protobuf.Any");
        match value {
            // An `Any` may arrive unpacked; extension types Weft does not implement are
            // refused by the compiler, which knows the context (and skips optional
            // filters), so only supported ones are walked here.
            Value::Message(inner)
                if is_any && inner.descriptor().full_name() != "google.protobuf.Any" =>
            {
                if supported_fields(inner.descriptor().full_name()).is_some() {
                    check(inner, &field_path, errors);
                }
            }
            _ => check_value(value, &field_path, errors),
        }
    }
}

/// [`check`] on an encoded resource (an xDS `Any`), decoded by its type URL. Types the
/// descriptors do not know are left to the compiler, which refuses them in context.
pub fn check_encoded(
    any: &weft_xds::pb::google::protobuf::Any,
    path: &str,
    errors: &mut Vec<ConfigError>,
) {
    let pool = weft_xds::descriptor_pool();
    let name = super::type_name(&any.type_url);
    let Some(desc) = pool.get_message_by_name(name) else {
        return;
    };
    match DynamicMessage::decode(desc, any.value.as_slice()) {
        Ok(m) => check(&m, path, errors),
        Err(e) => errors.push(ConfigError::new(path, format!("cannot decode: {e}"))),
    }
}

fn check_value(value: &Value, path: &str, errors: &mut Vec<ConfigError>) {
    match value {
        Value::Message(m) => check(m, path, errors),
        Value::List(items) => {
            for (i, v) in items.iter().enumerate() {
                check_value(v, &format!("{path}[{i}]"), errors);
            }
        }
        Value::Map(map) => {
            for (k, v) in map {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                check_value(v, &format!("{path}[{key:?}]"), errors);
            }
        }
        _ => {}
    }
}

fn check_any(any: &DynamicMessage, path: &str, errors: &mut Vec<ConfigError>) {
    let type_url = any
        .get_field_by_name("type_url")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let name = type_url.rsplit('/').next().unwrap_or("");
    // Extension types Weft does not implement are refused by the compiler, which knows
    // the context (and skips optional filters); only supported ones are walked here.
    if supported_fields(name).is_none() {
        return;
    }
    let Some(desc) = weft_xds::descriptor_pool().get_message_by_name(name) else {
        return;
    };
    let Some(bytes) = any
        .get_field_by_name("value")
        .and_then(|v| v.as_bytes().cloned())
    else {
        return;
    };
    match DynamicMessage::decode(desc, bytes.as_ref()) {
        Ok(inner) => check(&inner, path, errors),
        Err(e) => errors.push(ConfigError::new(
            path,
            format!("cannot decode {type_url}: {e}"),
        )),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_message_and_field_exists() {
        let pool = weft_xds::descriptor_pool();
        let pool = &*pool;
        for (message, fields) in SUPPORTED {
            let desc = pool
                .get_message_by_name(message)
                .unwrap_or_else(|| panic!("no message {message}"));
            for f in *fields {
                assert!(
                    desc.get_field_by_name(f).is_some(),
                    "{message} has no field {f}"
                );
            }
        }
    }

    /// `docs/proxy.md` carries the table; `WEFT_BLESS=1 cargo test` rewrites it.
    #[test]
    fn reference_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/proxy.md");
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        let (begin, end) = (
            "<!-- supported-fields:begin -->\n",
            "<!-- supported-fields:end -->",
        );
        let table = markdown();
        let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) else {
            panic!("docs/proxy.md lacks the supported-fields markers")
        };
        let current = &doc[b + begin.len()..e];
        if current != table {
            if std::env::var_os("WEFT_BLESS").is_some() {
                let updated = format!("{}{table}{}", &doc[..b + begin.len()], &doc[e..]);
                std::fs::write(path, updated).expect("write docs/proxy.md");
            } else {
                panic!("docs/proxy.md is out of date: run `WEFT_BLESS=1 cargo test -p weft-proxy reference_doc`");
            }
        }
    }

    #[test]
    fn unsupported_fields_are_named() {
        let text = r#"
static_resources:
  clusters:
  - name: c
    outlier_detection: { consecutive_5xx: 3 }
    circuit_breakers: {}
"#;
        let (_, dynamic) = weft_xds::from_json_or_yaml::<
            weft_xds::pb::envoy::config::bootstrap::v3::Bootstrap,
        >(text)
        .expect("parses");
        let mut errors = Vec::new();
        check(&dynamic, "", &mut errors);
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "static_resources.clusters[0].circuit_breakers",
                "static_resources.clusters[0].outlier_detection"
            ]
        );
    }
}
