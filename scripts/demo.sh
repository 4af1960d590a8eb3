#!/usr/bin/env bash
# The agent's main job against a real local registry cache, on loopback only:
#   1. an "upstream" registry and a pull-through cache in front of it (Debian's docker-registry,
#      the same distribution/distribution the in-cluster caches run),
#   2. `apply` started while the cache is still down; the cache comes up a second later,
#   3. the hosts.toml apply wrote, and the log of what it did.
# Everything lives in a temp dir and is cleaned up on exit. Run as root on a fresh Debian 12 machine
# (installs what is missing).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$(repo_root)"

ensure_packages "${BUILD_PACKAGES[@]}" docker-registry curl

echo "== building (release)"
swift build -c release 2>&1 | tail -1
agent="$PWD/.build/release/configure-containerd-registries"

work=$(mktemp -d /tmp/ccr-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream_port=$(free_port)
cache_port=$(free_port)

registry_config() { # NAME PORT [REMOTE]
    mkdir -p "$work/$1"
    {
        echo "version: 0.1"
        echo "log: {level: info, formatter: text}"
        echo "storage: {filesystem: {rootdirectory: $work/$1/data}, delete: {enabled: true}}"
        echo "http: {addr: 127.0.0.1:$2}"
        if [ -n "${3:-}" ]; then echo "proxy: {remoteurl: $3}"; fi
    } >"$work/$1/config.yml"
}
registry_config upstream "$upstream_port"
registry_config cache "$cache_port" "http://127.0.0.1:$upstream_port"

docker-registry serve "$work/upstream/config.yml" >"$work/upstream/log" 2>&1 &
pids+=($!)

cat >"$work/config.toml" <<TOML
hosts_dir = "$work/certs.d"

[probe]
deadline = "30s"

[[registry]]
upstream = "docker.io"
  [[registry.host]]
  url = "http://127.0.0.1:$cache_port"
TOML

echo "== config ($work/config.toml)"
cat "$work/config.toml"
echo
echo "== apply, with the cache still down (it starts 1 s later)"
( sleep 1; echo "   [demo] starting the registry cache on 127.0.0.1:$cache_port" >&2
  exec docker-registry serve "$work/cache/config.yml" >"$work/cache/log" 2>&1 ) &
pids+=($!)
start=$(date +%s.%N)
status=0
"$agent" apply --config "$work/config.toml" --log-format text || status=$?
end=$(date +%s.%N)
printf '== apply exited %d after %.2f s\n\n' "$status" "$(echo "$end - $start" | bc 2>/dev/null || python3 -c "print($end-$start)")"

for f in $(find "$work/certs.d" -name hosts.toml | sort); do
    echo "== $f"
    cat "$f"
    echo
done
echo "== the cache answers as a registry:"
curl -sS -o /dev/null -w "GET http://127.0.0.1:$cache_port/v2/ -> HTTP %{http_code}\n" "http://127.0.0.1:$cache_port/v2/"
exit "$status"
