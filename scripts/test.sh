#!/usr/bin/env bash
# Runs Weft's whole test suite on a fresh machine: installs what the tests use (Debian
# packages), then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real clients and servers the tests drive: curl (HTTP/1.1, h2c, proxy requests),
# etcd (the weft-store etcd backend's tests start /usr/bin/etcd), tshark (a capture
# between two sidecars shows no plaintext) and sslscan (TLS 1.3 only between them).
packages=()
command -v curl >/dev/null || packages+=(curl)
[ -x /usr/bin/etcd ] || packages+=(etcd-server)
command -v tshark >/dev/null || packages+=(tshark)
command -v sslscan >/dev/null || packages+=(sslscan)
if ((${#packages[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi
# A proxyless gRPC client no one here wrote (crates/weft/tests/grpc_xds.rs): Python's
# grpcio, whose wheels carry gRPC C-core's xDS client.
if ! python3 -c 'import grpc' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'grpcio==1.85.3'
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
cargo test --workspace --locked
