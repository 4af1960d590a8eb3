#!/usr/bin/env bash
# Benchmarks of watch, from the event itself: a cache that fails (refused, packets dropped in a
# network namespace of its own, hanging) until hosts.toml no longer names it, and each heal until it
# does again, 20 trials each with p50/p95/max; idle CPU and RSS every minute over 10 minutes with 10
# registries; a soak of 10,000 rounds; the probe load 100 watchers put on one cache (per-second
# histogram). Prints figures; loopback only; run as root.
#   scripts/bench-watch.sh                    everything (about 20 minutes)
#   scripts/bench-watch.sh --quick            shorter runs
#   scripts/bench-watch.sh --only idle,fleet  some parts (removal, idle, soak, fleet)
#   scripts/bench-watch.sh --service          watch following a cache's Service through cluster DNS: from
#                                             the record change (old cache killed, or dropped) to hosts.toml
#                                             naming the new address, 20 trials each (scripts/bench/service_bench.py;
#                                             --trials N, --only refused,dropped)
#   scripts/bench-watch.sh --dns-idle         idle CPU of watch with 10 Service names against the same
#                                             config with the addresses written out (scripts/bench/dns_idle.py;
#                                             --seconds N, --repeat K, --threads)
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$(repo_root)"
ensure_packages "${BUILD_PACKAGES[@]}" python3 iptables iproute2
swift build -c release --static-swift-stdlib 2>&1 | tail -1
if [[ "${1:-}" == --service ]]; then
    shift
    ensure_packages dnsmasq-base bind9-dnsutils docker-registry
    exec python3 scripts/bench/service_bench.py "$PWD/.build/release/configure-containerd-registries" "$@"
fi
if [[ "${1:-}" == --dns-idle ]]; then
    shift
    ensure_packages dnsmasq-base docker-registry
    exec python3 scripts/bench/dns_idle.py "$PWD/.build/release/configure-containerd-registries" "$@"
fi
exec python3 scripts/bench/watch_bench.py "$PWD/.build/release/configure-containerd-registries" "$@"
