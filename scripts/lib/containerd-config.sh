# shellcheck shell=bash
# The config of a private containerd daemon for the tests (scripts/e2e.sh, scripts/parse-check.sh):
# its own root, state and socket, the CRI plugin reading hosts.toml files from one directory, no TCP
# or metrics listener, and nothing written outside the given directories. Source it; it changes
# nothing by itself.
#
# containerd 1.6 and 1.7 read config version 2, where the CRI plugin is one section
# (plugins."io.containerd.grpc.v1.cri" with .containerd, .cni and .registry below it). containerd 2.x
# reads version 3 (it would migrate a version 2 file at every start), where the CRI is split as
# `containerd config default` of 2.1 shows it: images (snapshotter, registry) in
# plugins."io.containerd.cri.v1.images", runtime settings (selinux, apparmor, cni) in
# plugins."io.containerd.cri.v1.runtime", and only the streaming server left in
# plugins."io.containerd.grpc.v1.cri". 2.x also has NRI on by default, which would listen on
# /var/run/nri/nri.sock: it is disabled here, as are the snapshotters 2.x adds (erofs, blockfile);
# and its transfer service, which the CRI images plugin needs, unpacks with "native" here too.

# containerd_major VERSION: the major release of a containerd version string (1.6.20~ds1, v2.1.9,
# 2.1.9+unknown, ...)
containerd_major() {
    local v=${1#v}
    v=${v%%.*}
    [[ $v =~ ^[0-9]+$ ]] || { echo "containerd_major: not a version: '$1'" >&2; return 1; }
    echo "$v"
}

# containerd_arch: the machine's architecture as containerd names platforms (amd64, arm64, ...)
containerd_arch() {
    case $(uname -m) in
        x86_64) echo amd64 ;;
        aarch64) echo arm64 ;;
        armv7l) echo arm ;;
        *) uname -m ;;
    esac
}

# containerd_daemon_config VERSION ROOT STATE SOCK HOSTS_DIR CNI_BIN CNI_CONF [OPTION...]: prints
# the config for containerd VERSION (as `containerd --version` prints it). OPTIONs:
#   debug          log at debug level (every request to a registry is logged)
#   isolated       content_sharing_policy = "isolated": every namespace fetches its own copy of
#                  each blob, so a pull in a fresh namespace really goes to the registry
#   no-overlayfs   disable the overlayfs snapshotter too (the CRI always uses "native")
containerd_daemon_config() {
    local version=$1 root=$2 state=$3 sock=$4 hosts=$5 cni_bin=$6 cni_conf=$7 major opt
    shift 7
    local debug=0 isolated=0 overlayfs=1
    for opt in "$@"; do
        case $opt in
            debug) debug=1 ;;
            isolated) isolated=1 ;;
            no-overlayfs) overlayfs=0 ;;
            *) echo "containerd_daemon_config: unknown option '$opt'" >&2; return 1 ;;
        esac
    done
    major=$(containerd_major "$version") || return 1

    ((major >= 2)) && echo "version = 3" || echo "version = 2"
    cat <<EOF
root = "$root"
state = "$state"
# opt would create /opt/containerd; the others are unused here
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
EOF
    ((overlayfs)) || echo '  "io.containerd.snapshotter.v1.overlayfs",'
    if ((major >= 2)); then
        cat <<EOF
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.differ.v1.erofs",
  "io.containerd.nri.v1.nri",
EOF
    fi
    cat <<EOF
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

EOF
    ((debug == 0)) || printf '[debug]\n  level = "debug"\n\n'
    printf '[metrics]\n  address = ""\n\n'
    if ((isolated)); then
        cat <<EOF
[plugins."io.containerd.metadata.v1.bolt"]
  # every namespace fetches its own copy: a pull in a fresh namespace really goes to the registry
  # for every blob
  content_sharing_policy = "isolated"

EOF
    fi
    if ((major >= 2)); then
        cat <<EOF
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "native"

  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$hosts"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  disable_apparmor = true

  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$cni_bin"]
    conf_dir = "$cni_conf"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

# the transfer service (ctr images pull without --local, and the CRI's pulls) unpacks into the
# platform's default snapshotter, overlayfs, unless told otherwise; where that is not loaded the
# transfer service fails to load, and with it the CRI images plugin and so the CRI
[plugins."io.containerd.transfer.v1.local"]
  [[plugins."io.containerd.transfer.v1.local".unpack_config]]
    platform = "linux/$(containerd_arch)"
    snapshotter = "native"
EOF
    else
        cat <<EOF
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$cni_conf"

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$hosts"
EOF
    fi
}

# containerd_cri_running CTR SOCK: the daemon at SOCK reports its CRI plugin (io.containerd.grpc.v1
# cri, in every release; 2.x loads it only when its io.containerd.cri.v1 images and runtime plugins
# loaded) "ok"; otherwise prints the plugin lines that name cri to stderr
containerd_cri_running() {
    local plugins
    plugins=$("$1" --address "$2" plugins ls 2>&1) || { echo "$plugins" >&2; return 1; }
    if ! grep -Eq '^io\.containerd\.grpc\.v1\s+cri\s.*\sok\s*$' <<<"$plugins"; then
        grep -i cri <<<"$plugins" >&2 || true
        return 1
    fi
}
