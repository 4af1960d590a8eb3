# shellcheck shell=bash
# The containerd under test ($CONTAINERD_BIN, its client $CTR_BIN) as a daemon of the suite's own
# (root, state, socket and config under $T/containerd) reading the CRI registry config_path $HOSTS,
# and the two ways an image is pulled: by ctr, and through the CRI ImageService as kubelet does.
# Uses NS, T, HOSTS, PY and HELPERS of the runner, and scripts/lib/containerd-config.sh, which the
# runner sources; start_containerd sets SOCK.

# containerd_config: the daemon's config, for the release under test (CONTAINERD_VERSION: version 2
# for 1.x, version 3 for 2.x; scripts/lib/containerd-config.sh), at debug level (every registry
# request is logged), with blobs not shared between namespaces and only the native snapshotter
containerd_config() {
    local d=$T/containerd
    containerd_daemon_config "$CONTAINERD_VERSION" "$d/root" "$d/state" "$SOCK" "$HOSTS" \
        "$T/cni/bin" "$T/cni/conf" debug isolated no-overlayfs
}

ctrx() { nsx timeout --foreground 30 "$CTR_BIN" --address "$SOCK" "$@"; }

# start_containerd [CONFIG]: the daemon, up and answering, with the suite's config (or CONFIG, a
# file); fails when its CRI plugin is not running
start_containerd() {
    local d=$T/containerd i config=${1:-}
    SOCK=$d/containerd.sock
    mkdir -p "$d/root" "$d/state" "$T/cni/bin" "$T/cni/conf"
    containerd_config >"$d/config.toml" || { echo "no containerd config for $CONTAINERD_VERSION" >&2; return 1; }
    [[ -n "$config" ]] || config=$d/config.toml
    ip netns exec "$NS" setsid "$CONTAINERD_BIN" --config "$config" >>"$T/logs/containerd.log" 2>&1 &
    remember containerd $!
    for ((i = 0; i < 100; i++)); do
        ctrx version >/dev/null 2>&1 && break
        sleep 0.1
    done
    if ! ctrx version >/dev/null 2>&1; then
        tail -30 "$T/logs/containerd.log" >&2
        echo "containerd did not start" >&2
        return 1
    fi
    if ! containerd_cri_running "$CTR_BIN" "$SOCK"; then
        echo "containerd's CRI plugin is not running: every CRI pull would fail" >&2
        return 1
    fi
}

# restart_containerd [CONFIG]: the daemon stopped and started again (with CONFIG, or the suite's)
restart_containerd() {
    stop_named containerd
    start_containerd "$@"
}

# pull ctr|cri REF [TIMEOUT]: one pull of REF. ctr fetches in the client (1.x; 2.x's ctr hands the
# pull to the daemon's transfer service, which reads the same --hosts-dir), in a containerd
# namespace of its own; cri asks the daemon (PullImage), which reads config_path. The
# image is removed again afterwards so that the next pull fetches every blob. Prints one line on
# how it went; returns the pull's exit status (124 when it was killed after TIMEOUT s, default 600).
# The pull's own output goes to $PULL_LOG when the caller names one.
pull() {
    local how=$1 ref=$2 limit=${3:-600} t0=$EPOCHREALTIME rc=0 out img
    out=${PULL_LOG:-$T/logs/pull-${EPOCHREALTIME/./}.log}
    if [[ $how == ctr ]]; then
        local n=e2e-${EPOCHREALTIME/./}
        nsx timeout --foreground "$limit" "$CTR_BIN" --address "$SOCK" -n "$n" images pull --snapshotter native \
            --hosts-dir "$HOSTS" "$ref" >"$out" 2>&1 || rc=$?
        info "ctr images pull --hosts-dir \$HOSTS $ref: exit $rc after $(elapsed "$t0")s"
        ctrx -n "$n" images rm --sync "$ref" >/dev/null 2>&1 || true
        ctrx namespaces rm "$n" >/dev/null 2>&1 || true
    else
        nsx timeout --foreground "$limit" "$PY" "$HELPERS/cri.py" "$SOCK" pull "$ref" >"$out" 2>&1 || rc=$?
        info "CRI PullImage $ref: exit $rc after $(elapsed "$t0")s"
        nsx timeout --foreground 60 "$PY" "$HELPERS/cri.py" "$SOCK" rm "$ref" >/dev/null 2>&1 || true
        # k8s.io must be empty again, or the next CRI pull would find blobs there
        while read -r img; do
            ctrx -n k8s.io images rm --sync "$img" >/dev/null 2>&1 || true
        done < <(ctrx -n k8s.io images ls -q 2>/dev/null || true)
    fi
    [[ $rc == 0 ]] || tail -n 8 "$out" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g; s/^/        | /'
    return "$rc"
}
