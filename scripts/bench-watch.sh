#!/usr/bin/env bash
# Benchmarks of watch, from the event itself: a cache that fails (refused, packets dropped in a
# network namespace of its own, its Service rule gone, hanging) until hosts.toml no longer names it,
# and each heal until it does again, 20 trials each with p50/p95/max against the targets; idle CPU and
# RSS every minute over 10 minutes with 10 registries; a soak of 10,000 rounds; the probe load 100
# watchers put on one cache (per-second histogram). Prints figures; loopback only; run as root.
#   scripts/bench-watch.sh                    everything (about 30 minutes)
#   scripts/bench-watch.sh --quick            shorter runs
#   scripts/bench-watch.sh --only idle,fleet  some parts (removal, idle, soak, fleet), or some faults
#                                             (refused, dropped, rule-gone, hanging: removal with those);
#                                             --trials N per fault, --hang-spread S (the hanging fault
#                                             anywhere in S = 30 s after the cache is back)
#   scripts/bench-watch.sh --service          watch following a cache's Service through cluster DNS: from
#                                             the record change (old cache killed, or dropped) to hosts.toml
#                                             naming the new address, 20 trials each (scripts/bench/service_bench.py;
#                                             --trials N, --only refused,dropped)
#   scripts/bench-watch.sh --dns-idle         idle CPU of watch with 10 Service names against the same
#                                             config with the addresses written out (scripts/bench/dns_idle.py;
#                                             --seconds N, --repeat K, --threads)
#   scripts/bench-watch.sh --detection        the whole detection table: every fault of removal, then
#                                             the Service moves (--trials N for both; about 25 minutes)
#   scripts/bench-watch.sh --fleet-cost       one watch against a real docker-registry and dnsmasq for
#                                             5 minutes: per node and mirror requests/s, connections/s,
#                                             cache log lines/s and CPU, lookups/s, projected to 1,000 and
#                                             10,000 nodes; the cache's CPU per operation; 100 watchers
#                                             against one cache; the cache under 1,000 and 10,000 nodes'
#                                             operations replayed at their rates (scripts/bench/fleet_cost.py;
#                                             --seconds N, --ops N, --fleet N, --fleet-seconds N, --scale
#                                             N,N, --rates R,C, --skip PHASES, --quick, --keep; about 9 minutes)
# Any of these with --agent PATH measures that build of the agent (e.g. one from before a change)
# instead of building this checkout's release binary.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$(repo_root)"
agent=""
args=()
while [[ $# -gt 0 ]]; do
    if [[ "$1" == --agent ]]; then
        [[ $# -ge 2 ]] || { echo "error: --agent needs a path" >&2; exit 64; }
        agent="$(realpath "$2")"
        shift 2
    else
        args+=("$1")
        shift
    fi
done
set -- "${args[@]+"${args[@]}"}"
if [[ -n "$agent" ]]; then
    [[ -x "$agent" ]] || { echo "error: $agent is not an executable" >&2; exit 64; }
    ensure_packages python3 iptables iproute2
else
    ensure_packages "${BUILD_PACKAGES[@]}" python3 iptables iproute2
    swift build -c release --static-swift-stdlib 2>&1 | tail -1
    agent="$PWD/.build/release/configure-containerd-registries"
fi
if [[ "${1:-}" == --service ]]; then
    shift
    ensure_packages dnsmasq-base bind9-dnsutils docker-registry
    exec python3 scripts/bench/service_bench.py "$agent" "$@"
fi
if [[ "${1:-}" == --dns-idle ]]; then
    shift
    ensure_packages dnsmasq-base docker-registry
    exec python3 scripts/bench/dns_idle.py "$agent" "$@"
fi
if [[ "${1:-}" == --fleet-cost ]]; then
    shift
    ensure_packages dnsmasq-base docker-registry
    exec python3 scripts/bench/fleet_cost.py "$agent" "$@"
fi
if [[ "${1:-}" == --detection ]]; then
    shift
    trials=()
    if [[ "${1:-}" == --trials ]]; then
        trials=(--trials "$2")
        shift 2
    fi
    [[ $# -eq 0 ]] || { echo "error: --detection takes only --trials N" >&2; exit 64; }
    ensure_packages dnsmasq-base bind9-dnsutils docker-registry
    python3 scripts/bench/watch_bench.py "$agent" --only removal "${trials[@]+"${trials[@]}"}"
    exec python3 scripts/bench/service_bench.py "$agent" "${trials[@]+"${trials[@]}"}"
fi
exec python3 scripts/bench/watch_bench.py "$agent" "$@"
