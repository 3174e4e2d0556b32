//! Envoy's v3 API as Weft uses it: the protobuf types (re-exported from `envoy-types`),
//! the type URLs Weft understands, Weft's own typed extensions, and the proto3 JSON
//! mapping that turns Envoy YAML/JSON into those types and back.

pub mod client;
pub mod ext;
pub mod json;
mod names;
mod requests;
pub mod resource;
pub mod server;
pub mod type_url;
mod warming;

pub use envoy_types::pb;
pub use json::{from_json_or_yaml, to_json, ParseError};
pub use resource::Resource;

/// The client feature (`Node.client_features`) by which a proxy says it takes a route
/// configuration's virtual hosts over VHDS (delta ADS). `weft proxy` lists it; Envoy
/// supports VHDS without saying so.
pub const VHDS_CLIENT_FEATURE: &str = "weft.vhds";

use prost_reflect::DescriptorPool;
use std::sync::{Arc, Mutex, Weak};

/// Descriptors of the Envoy API files Weft reads plus Weft's own protos; built by
/// `tools/descriptors` from the descriptor set inside the pinned `envoy-types` crate.
static DESCRIPTORS: &[u8] = include_bytes!("descriptors.bin");

/// The descriptor pool used for the proto3 JSON mapping. Decoded (~50 ms, ~20 MB) when
/// needed and shared while anyone holds it; a sidecar needs it only while it reads a
/// configuration file or renders a dump, so it is not kept for the process's life.
pub fn descriptor_pool() -> Arc<DescriptorPool> {
    static CACHE: Mutex<Weak<DescriptorPool>> = Mutex::new(Weak::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = cache.upgrade() {
        return pool;
    }
    let pool = Arc::new(
        DescriptorPool::decode(DESCRIPTORS)
            .expect("descriptors.bin is generated from valid descriptors"),
    );
    *cache = Arc::downgrade(&pool);
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_url_we_name_has_a_descriptor() {
        for url in type_url::ALL {
            let name = url.strip_prefix(type_url::PREFIX).expect("prefixed");
            assert!(
                descriptor_pool().get_message_by_name(name).is_some(),
                "no descriptor for {url}"
            );
        }
    }
}
