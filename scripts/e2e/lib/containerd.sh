# shellcheck shell=bash
# The containerd under test ($CONTAINERD_BIN, its client $CTR_BIN) as a daemon of the suite's own
# (root, state, socket and config under $T/containerd) reading the CRI registry config_path $HOSTS,
# and the two ways an image is pulled: by ctr, and through the CRI ImageService as kubelet does.
# Uses NS, T, HOSTS, PY and HELPERS of the runner; start_containerd sets SOCK.

# containerd_config: the daemon's config. Version 2 is read by containerd 1.6 and 1.7 and migrated
# by 2.x at start; a release that needs another form gets its branch here (on CONTAINERD_VERSION).
containerd_config() {
    local d=$T/containerd
    cat <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  level = "debug"

[metrics]
  address = ""

[plugins."io.containerd.metadata.v1.bolt"]
  # every namespace fetches its own copy: a pull in a fresh namespace really goes to the registry
  # for every blob
  content_sharing_policy = "isolated"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$T/cni/bin"
    conf_dir = "$T/cni/conf"

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$HOSTS"
EOF
}

ctrx() { nsx timeout --foreground 30 "$CTR_BIN" --address "$SOCK" "$@"; }

# start_containerd: the daemon, up and answering; fails when its CRI plugin is not running
start_containerd() {
    local d=$T/containerd i
    SOCK=$d/containerd.sock
    mkdir -p "$d/root" "$d/state" "$T/cni/bin" "$T/cni/conf"
    containerd_config >"$d/config.toml"
    ip netns exec "$NS" setsid "$CONTAINERD_BIN" --config "$d/config.toml" >"$T/logs/containerd.log" 2>&1 &
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
    if ! grep -Eq 'io\.containerd\.grpc\.v1\s+cri\s.*\sok\s*$' < <(ctrx plugins ls 2>/dev/null); then
        ctrx plugins ls 2>&1 | grep -i cri >&2 || true
        echo "containerd's CRI plugin is not running: every CRI pull would fail" >&2
        return 1
    fi
}

# pull ctr|cri REF [TIMEOUT]: one pull of REF. ctr fetches in the client, reading --hosts-dir, in a
# containerd namespace of its own; cri asks the daemon (PullImage), which reads config_path. The
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
