//! Builds `crates/weft-xds/src/descriptors.bin`: the descriptors of the Envoy API files
//! that Weft reads (taken from the descriptor set that ships inside the pinned
//! `envoy-types` crate, so they match its Rust types exactly) plus Weft's own protos,
//! without source info, so the proxy can parse proto3 JSON/YAML with prost-reflect.

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Files (and everything they import) that Weft needs descriptors for.
const ROOTS: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/admin/v3/config_dump.proto",
    "envoy/admin/v3/clusters.proto",
    "envoy/service/discovery/v3/ads.proto",
    "envoy/service/discovery/v3/discovery.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
    "envoy/extensions/filters/http/jwt_authn/v3/config.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto",
    "envoy/extensions/load_balancing_policies/least_request/v3/least_request.proto",
    "envoy/extensions/load_balancing_policies/random/v3/random.proto",
    "envoy/extensions/load_balancing_policies/ring_hash/v3/ring_hash.proto",
    "envoy/extensions/load_balancing_policies/maglev/v3/maglev.proto",
    "envoy/extensions/load_balancing_policies/wrr_locality/v3/wrr_locality.proto",
    "envoy/extensions/clusters/aggregate/v3/cluster.proto",
];

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let envoy_types = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(find_envoy_types);
    let bytes = std::fs::read(envoy_types.join("src/generated/types.bin")).expect("read types.bin");
    let set = FileDescriptorSet::decode(&bytes[..]).expect("decode types.bin");
    let by_name: BTreeMap<String, FileDescriptorProto> =
        set.file.into_iter().map(|f| (f.name().to_string(), f)).collect();

    let mut keep = BTreeSet::new();
    let mut todo: Vec<String> = ROOTS.iter().map(|s| s.to_string()).collect();
    while let Some(name) = todo.pop() {
        let file = by_name.get(&name).unwrap_or_else(|| panic!("{name} not in types.bin"));
        if keep.insert(name.clone()) {
            todo.extend(file.dependency.iter().cloned());
        }
    }

    // Weft's own protos, compiled against the same well-known types.
    let proto_dir = repo.join("crates/weft-xds/proto");
    let own = protox::compile(["weft/config/lb/v1/peak_ewma.proto"], [&proto_dir]).expect("compile weft protos");

    let mut out = FileDescriptorSet::default();
    // Dependencies first: topological order as the descriptor pool expects.
    let mut done = BTreeSet::new();
    for name in &keep {
        push_sorted(name, &by_name, &keep, &mut done, &mut out);
    }
    for mut f in own.file {
        if done.insert(f.name().to_string()) {
            f.source_code_info = None;
            out.file.push(f);
        }
    }
    let path = repo.join("crates/weft-xds/src/descriptors.bin");
    std::fs::write(&path, out.encode_to_vec()).expect("write descriptors.bin");
    println!("{} files -> {}", out.file.len(), path.display());
}

fn push_sorted(
    name: &str,
    by_name: &BTreeMap<String, FileDescriptorProto>,
    keep: &BTreeSet<String>,
    done: &mut BTreeSet<String>,
    out: &mut FileDescriptorSet,
) {
    if done.contains(name) || !keep.contains(name) {
        return;
    }
    let file = &by_name[name];
    for dep in &file.dependency {
        push_sorted(dep, by_name, keep, done, out);
    }
    done.insert(name.to_string());
    let mut file = file.clone();
    file.source_code_info = None;
    out.file.push(file);
}

fn find_envoy_types() -> PathBuf {
    let home = std::env::var("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cargo")
    });
    let src = home.join("registry/src");
    for index in std::fs::read_dir(&src).expect("cargo registry") {
        let dir = index.expect("entry").path().join(format!("envoy-types-{}", ENVOY_TYPES));
        if dir.exists() {
            return dir;
        }
    }
    panic!("envoy-types {ENVOY_TYPES} not found under {}: run `cargo fetch` first", src.display());
}

/// Must equal the version pinned in the workspace Cargo.toml.
const ENVOY_TYPES: &str = "0.7.7";
