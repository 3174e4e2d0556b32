#!/bin/sh
# Control-plane scale benchmark: 1,000 services x 10 endpoints, 1,000 simulated
# sidecars over real gRPC, SotW and delta. Parameters by environment (see the header
# of crates/weft-control/benches/xds_scale.rs): SERVICES, ENDPOINTS, CLIENTS,
# CHANGES, MODES, CP_CPUS, TIMEOUT_SECS, OUT.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -p weft
# cargo runs the bench in its crate directory: the default path is absolute.
export OUT="${OUT:-$PWD/bench/xds-scale-last.json}"
exec cargo bench -p weft-control --bench xds_scale
