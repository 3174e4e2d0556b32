#!/usr/bin/env bash
# Benchmarks weft proxy against a direct connection, nginx and HAProxy, in one run,
# as bench/README.md describes. Installs what it needs (Debian packages, oha), builds
# weft in release mode, then runs bench/proxy_bench.py and prints a Markdown report.
#
#   bench/run.sh                 # full run (3 rounds, ~15 minutes)
#   ROUNDS=1 DURATION=5 bench/run.sh   # quick look
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/tools.sh
need_tools nginx haproxy wrk taskset oha

cargo build --release -p weft
exec python3 bench/proxy_bench.py --weft target/release/weft "$@"
