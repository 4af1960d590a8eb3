#!/usr/bin/env bash
# Benchmarks of watch: time to take a dead cache out of hosts.toml (dropped packets, in a network
# namespace of its own, and a hanging cache), idle CPU and memory with 10 registries, a soak of 10,000
# rounds, and the probe load 100 watchers put on one cache. Prints figures; loopback only; run as root.
#   scripts/bench-watch.sh                    everything (about 15 minutes)
#   scripts/bench-watch.sh --quick            shorter runs
#   scripts/bench-watch.sh --only idle,fleet  some parts (removal, idle, soak, fleet)
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$(repo_root)"
ensure_packages "${BUILD_PACKAGES[@]}" python3 iptables iproute2
swift build -c release --static-swift-stdlib 2>&1 | tail -1
exec python3 scripts/bench/watch_bench.py "$PWD/.build/release/configure-containerd-registries" "$@"
