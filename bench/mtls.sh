#!/usr/bin/env bash
# What mTLS between two Weft sidecars costs (bench/mtls_bench.py): latency at a fixed
# rate through a pair of proxies with plaintext vs mTLS between them, and new
# connections (handshakes) per second per core. Installs what it needs, builds weft
# in release mode, prints Markdown.
#
#   bench/mtls.sh                      # 3 rounds, 10 s per measurement (~3 minutes)
#   ROUNDS=1 DURATION=5 bench/mtls.sh  # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/tools.sh
need_tools nginx wrk taskset openssl oha

cargo build --release -p weft
exec python3 bench/mtls_bench.py --weft target/release/weft "$@"
