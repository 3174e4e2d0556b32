//! Envoy's v3 API as Weft uses it: the protobuf types (re-exported from `envoy-types`),
//! the type URLs Weft understands, Weft's own typed extensions, and the proto3 JSON
//! mapping that turns Envoy YAML/JSON into those types and back.

pub mod ext;
pub mod json;
pub mod type_url;

pub use envoy_types::pb;
pub use json::{from_json_or_yaml, to_json, ParseError};

use prost_reflect::DescriptorPool;
use std::sync::OnceLock;

/// Descriptors of the Envoy API files Weft reads plus Weft's own protos; built by
/// `tools/descriptors` from the descriptor set inside the pinned `envoy-types` crate.
static DESCRIPTORS: &[u8] = include_bytes!("descriptors.bin");

/// The descriptor pool used for the proto3 JSON mapping, decoded on first use.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(DESCRIPTORS)
            .expect("descriptors.bin is generated from valid descriptors")
    })
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
