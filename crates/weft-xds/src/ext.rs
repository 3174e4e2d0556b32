//! Weft's own typed extensions, carried in Envoy's API under `weft.*` type URLs.
//! Their schema is in `proto/weft/`; these structs are its Rust side.

/// Peak-EWMA power-of-two-choices load balancing (see `proto/weft/config/lb/v1/peak_ewma.proto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeakEwma {
    /// How fast old latency observations are forgotten. Default 10 s.
    #[prost(message, optional, tag = "1")]
    pub decay: Option<crate::pb::google::protobuf::Duration>,
    /// Latency assumed for an endpoint before its first response. Default 30 ms.
    #[prost(message, optional, tag = "2")]
    pub default_rtt: Option<crate::pb::google::protobuf::Duration>,
}

impl prost::Name for PeakEwma {
    const NAME: &'static str = "PeakEwma";
    const PACKAGE: &'static str = "weft.config.lb.v1";

    fn type_url() -> String {
        crate::type_url::LB_PEAK_EWMA.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Name;

    #[test]
    fn type_url_matches_envoy_convention() {
        assert_eq!(
            PeakEwma::type_url(),
            "type.googleapis.com/weft.config.lb.v1.PeakEwma"
        );
    }
}
