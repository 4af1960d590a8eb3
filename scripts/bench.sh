#!/usr/bin/env bash
# Benchmarks of apply: detection latency (mirror down 0.5 s, 5 s, 60 s), isolation from dead mirrors,
# CPU and memory of one apply, the cost with 1000 registries, and the same job in bash + curl. Prints figures; loopback only.
#   scripts/bench.sh           full run (about 3 minutes)
#   scripts/bench.sh --quick   skips the 60 s downtime case
#   scripts/bench.sh --only-scale        apply with 10, 100 and 1000 registries of refusing mirrors
#   scripts/bench.sh --only-detection    detection only, 20 trials per case: refused then listening, and
#                                        packets dropped then let through (iptables in a private netns)
#   scripts/bench.sh --only-plan-check   plan and check only
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$(repo_root)"
ensure_packages "${BUILD_PACKAGES[@]}" python3 curl time iptables iproute2
swift build -c release --static-swift-stdlib 2>&1 | tail -1
exec python3 scripts/bench/bench.py "$PWD/.build/release/configure-containerd-registries" "$@"
