//! Type URLs of the resources and extensions Weft understands.

/// Prefix of every type URL.
pub const PREFIX: &str = "type.googleapis.com/";

macro_rules! urls {
    ($($(#[$doc:meta])* $name:ident = $msg:literal;)*) => {
        $($(#[$doc])* pub const $name: &str = concat!("type.googleapis.com/", $msg);)*
        /// Every type URL named in this module.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

urls! {
    /// xDS resource: Listener.
    LISTENER = "envoy.config.listener.v3.Listener";
    /// xDS resource: RouteConfiguration.
    ROUTE_CONFIGURATION = "envoy.config.route.v3.RouteConfiguration";
    /// xDS resource: VirtualHost (VHDS, delta only: a route configuration's virtual
    /// hosts as resources of their own, named `ROUTE_CONFIGURATION_NAME/VIRTUAL_HOST`).
    VIRTUAL_HOST = "envoy.config.route.v3.VirtualHost";
    /// xDS resource: Cluster.
    CLUSTER = "envoy.config.cluster.v3.Cluster";
    /// xDS resource: ClusterLoadAssignment.
    CLUSTER_LOAD_ASSIGNMENT = "envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// xDS resource: Secret.
    SECRET = "envoy.extensions.transport_sockets.tls.v3.Secret";
    /// Network filter: HTTP connection manager.
    HTTP_CONNECTION_MANAGER = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    /// Network filter: TCP proxy.
    TCP_PROXY = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
    /// HTTP filter: router.
    ROUTER = "envoy.extensions.filters.http.router.v3.Router";
    /// Listener filter: TLS inspector.
    TLS_INSPECTOR = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
    /// Listener filter: HTTP inspector.
    HTTP_INSPECTOR = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";
    /// Listener filter: original destination.
    ORIGINAL_DST = "envoy.extensions.filters.listener.original_dst.v3.OriginalDst";
    /// Access logger: file.
    FILE_ACCESS_LOG = "envoy.extensions.access_loggers.file.v3.FileAccessLog";
    /// Access logger: standard output.
    STDOUT_ACCESS_LOG = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
    /// Access logger: standard error.
    STDERR_ACCESS_LOG = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog";
    /// Cluster protocol options for HTTP upstreams.
    HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    /// Load-balancing policy: round robin.
    LB_ROUND_ROBIN = "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin";
    /// Load-balancing policy: least request.
    LB_LEAST_REQUEST = "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest";
    /// Load-balancing policy: random.
    LB_RANDOM = "envoy.extensions.load_balancing_policies.random.v3.Random";
    /// Load-balancing policy: ring hash.
    LB_RING_HASH = "envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash";
    /// Load-balancing policy: Maglev.
    LB_MAGLEV = "envoy.extensions.load_balancing_policies.maglev.v3.Maglev";
    /// Load-balancing policy: Weft's peak-EWMA power of two choices.
    LB_PEAK_EWMA = "weft.config.lb.v1.PeakEwma";
    /// Admin: configuration dump.
    CONFIG_DUMP = "envoy.admin.v3.ConfigDump";
    /// Admin: bootstrap configuration dump.
    BOOTSTRAP_CONFIG_DUMP = "envoy.admin.v3.BootstrapConfigDump";
    /// Admin: listeners configuration dump.
    LISTENERS_CONFIG_DUMP = "envoy.admin.v3.ListenersConfigDump";
    /// Admin: clusters configuration dump.
    CLUSTERS_CONFIG_DUMP = "envoy.admin.v3.ClustersConfigDump";
    /// Admin: routes configuration dump.
    ROUTES_CONFIG_DUMP = "envoy.admin.v3.RoutesConfigDump";
}
