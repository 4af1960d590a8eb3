#!/usr/bin/env bash
# The agent's OCI image and deploy/'s manifests, proven with real parts. Run as root; standalone, and
# a part of scripts/test.sh (SKIP_IMAGE=1 skips it there).
#
#   a. deploy/ and deploy/uninstall/ against the Kubernetes API's own schema (python3-kubernetes's
#      models: unknown fields, wrong types, missing required fields refused) and the settings the
#      agent needs; then 35 broken copies (a mount or a setting removed, a typo, a wrong type), each
#      of which the check must refuse (scripts/k8s/validate.py).
#   b. the image built by scripts/image.sh, twice from scratch (the second time into another
#      directory, or compared with a cached build of the same binary): the same digest, the same
#      archive bytes. Its size and build time are printed.
#   c. a node: a private mount namespace (its own /etc/containerd, /run/containerd, /var/log,
#      /run/log, /etc/machine-id) and a private network namespace with a docker-registry upstream and
#      a pull-through cache in front of it; a real containerd (Debian 12's 1.6.20, or CONTAINERD_BIN)
#      whose CRI reads /etc/containerd/certs.d. The image is imported with `ctr images import` and run
#      with `ctr run` with exactly what deploy/daemonset.yaml gives its container (scripts/k8s/
#      validate.py runspec: the args after the image's entrypoint, the host network, each hostPath and
#      the ConfigMap at its path and read-only or not, ordered as containerd's CRI orders mounts, a
#      read-only root file system, every capability dropped, no new privileges, the runtime's
#      default seccomp profile, the memory limit). Checked: the container writes the node's
#      hosts.toml (backing up the node's own file), a CRI pull then goes through the cache (its log),
#      the readiness probe's `check` exits 0 in the container, the process has no capability, its
#      root file system refuses writes; SIGTERM ends it with 0 and leaves the files, and a new pod (a
#      rolling update) takes over without the file ever missing; then deploy/uninstall's container
#      removes them and puts the node's file back, its readiness `remove` exits 0, and SIGTERM ends it
#      with 0. The node's journal is a real systemd-journald's, with containerd logging into it as
#      containerd.service: a pull that goes past the cache shows up in the pod's log (read through the
#      mounted journal) and turns its readiness probe to exit 1 (not ready). The pod's memory (cgroup)
#      and CPU over IMAGE_MEASURE_SECONDS (default 60) are printed.
#
# The output ends with "N passed, N failed"; exit 1 on any failure.
# Environment: RELEASE_BIN (the --static-swift-stdlib release binary; default: built),
# CONTAINERD_BIN / CTR_BIN, IMAGE_MEASURE_SECONDS, IMAGE_CACHE (default /var/cache/ccr-image),
# TIMEOUT (whole run, default 600 s), IMAGE_KEEP=1 (keep the work dir).
# shellcheck source-path=SCRIPTDIR
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=configure-containerd-registries

# One hard timeout over everything, and a mount namespace of its own: the mounts below end with it.
if [ -z "${CCR_IMAGE_TEST_INNER:-}" ]; then
    export CCR_IMAGE_TEST_INNER=1
    exec timeout --kill-after=30 "${TIMEOUT:-600}" unshare --mount --propagation private bash "${BASH_SOURCE[0]}" "$@"
fi

source "$ROOT/scripts/lib/common.sh"
source "$ROOT/scripts/lib/assert.sh"
source "$ROOT/scripts/lib/containerd-config.sh"
source "$ROOT/scripts/e2e/lib/netns.sh"
source "$ROOT/scripts/e2e/lib/registries.sh"
source "$ROOT/scripts/e2e/lib/containerd.sh"
source "$ROOT/scripts/e2e/lib/evidence.sh"
PY=/usr/bin/python3
HELPERS=$ROOT/scripts/e2e
NS=ccr-img-$$
A=127.0.0.10:5000
IMG=library/test:1
CACHE=${IMAGE_CACHE:-/var/cache/ccr-image}
MEASURE=${IMAGE_MEASURE_SECONDS:-60}
started=$EPOCHREALTIME

T=$(mktemp -d /tmp/ccr-img-$$.XXXXXX)
chmod 755 "$T"
mkdir -p "$T/logs"
: >"$T/pids"
assert_init "$T/results"
containers=()
cleanup() {
    set +e
    local c
    for c in "${containers[@]}"; do
        "$CTR_BIN" --address "$SOCK" -n k8s.io task kill -s SIGKILL "$c" >/dev/null 2>&1
        "$CTR_BIN" --address "$SOCK" -n k8s.io task delete -f "$c" >/dev/null 2>&1
        "$CTR_BIN" --address "$SOCK" -n k8s.io container delete "$c" >/dev/null 2>&1
    done
    namespace_down
    umount -R /run/containerd 2>/dev/null
    # the cgroups this run made (rmdir removes only an empty one)
    for c in /sys/fs/cgroup/*/"ccr-img-$$" /sys/fs/cgroup/unified/ccrimg$$.slice/containerd.service \
        /sys/fs/cgroup/unified/ccrimg$$.slice /sys/fs/cgroup/systemd/ccrimg$$.slice/containerd.service \
        /sys/fs/cgroup/systemd/ccrimg$$.slice /sys/fs/cgroup/ccrimg$$.slice/containerd.service /sys/fs/cgroup/ccrimg$$.slice; do
        [ -d "$c" ] && rmdir "$c" 2>/dev/null
    done
    if [ "${IMAGE_KEEP:-0}" = 1 ]; then echo "work dir kept: $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'echo "image-test.sh: interrupted" >&2; exit 124' TERM INT

if [ "$(id -u)" -ne 0 ]; then
    fail "image-test.sh: run as root (namespaces, mounts, containerd)"
    assert_summary
    exit 1
fi

section "prerequisites"
ensure_packages "${BUILD_PACKAGES[@]}" "${E2E_PACKAGES[@]}" "${IMAGE_PACKAGES[@]}" "${IMAGE_TEST_PACKAGES[@]}" >/dev/null 2>&1 \
    || info "could not install every package"
CONTAINERD_BIN=$(readlink -f "${CONTAINERD_BIN:-$(command -v containerd || echo /usr/bin/containerd)}")
CTR_BIN=$(readlink -f "${CTR_BIN:-$(command -v ctr || echo /usr/bin/ctr)}")
CONTAINERD_VERSION=$("$CONTAINERD_BIN" --version 2>/dev/null | awk '{print $3}')
for tool in "$CONTAINERD_BIN" "$CTR_BIN" "$(command -v runc || echo runc)" /usr/bin/docker-registry "$PY"; do
    [ -x "$tool" ] || { fail "missing: $tool"; assert_summary; exit 1; }
done
pass "containerd $CONTAINERD_VERSION ($CONTAINERD_BIN), runc $(runc --version | awk 'NR==1 {print $3}')"

# ---------------------------------------------------------------------------------------------------
section "a. deploy/: the Kubernetes API's schema (python3-kubernetes $("$PY" -c 'import kubernetes; print(kubernetes.__version__)')) and the agent's settings"
"$PY" "$ROOT/scripts/k8s/validate.py" check "$ROOT/deploy" "$ROOT/deploy/uninstall" | tally
section "a. the check refuses broken manifests"
"$PY" "$ROOT/scripts/k8s/validate.py" mutations "$ROOT/deploy" | tally

# ---------------------------------------------------------------------------------------------------
section "b. the image (scripts/image.sh), built twice"
release=${RELEASE_BIN:-}
if [ -z "$release" ]; then
    t0=$EPOCHREALTIME
    if ! (cd "$ROOT" && timeout 900 swift build -c release --static-swift-stdlib) >"$T/logs/release-build.log" 2>&1; then
        fail "release build: $(grep -E 'error' "$T/logs/release-build.log" | head -5)"
        assert_summary
        exit 1
    fi
    release=$(cd "$ROOT" && swift build -c release --static-swift-stdlib --show-bin-path)/$NAME
    info "release binary: swift build -c release --static-swift-stdlib in $(elapsed "$t0") s (incremental)"
fi
# build_image DIR: scripts/image.sh into DIR; prints its build time
build_image() {
    local t0=$EPOCHREALTIME
    BINARY=$release bash "$ROOT/scripts/image.sh" "$1" >"$T/logs/image-$(basename "$1").log" 2>&1 || return 1
    elapsed "$t0"
}
key=$( { sha256sum "$release" | cut -d' ' -f1; cat "$ROOT/scripts/image.sh" "$ROOT/scripts/image/debs.py"; git -C "$ROOT" rev-parse HEAD 2>/dev/null; } | sha256sum | cut -c1-16)
first=$T/image-1
if ! secs=$(build_image "$first"); then
    fail "scripts/image.sh: $(tail -5 "$T/logs/image-image-1.log" | tr '\n' ' ')"
    assert_summary
    exit 1
fi
digest=$(cat "$first/digest")
archive=$(ls "$first"/*.oci.tar)
layer_bytes=$(sed -n 's/.*size .*(\([0-9]*\) bytes).*/\1/p' "$T/logs/image-image-1.log")
unpacked=$(sed -n 's/.*compressed ([0-9]* bytes), \(.*\) unpacked/\1/p' "$T/logs/image-image-1.log")
figure "image: built in ${secs} s, $(numfmt --to=iec --suffix=B "$layer_bytes") compressed ($layer_bytes bytes, one layer), $unpacked unpacked, $(wc -l <"$first/packages") Debian packages"
figure "image: digest $digest"
if [ -f "$CACHE/$key/digest" ]; then
    second=$CACHE/$key
    info "the second build: the one an earlier run made of the same binary and scripts ($second)"
else
    second=$T/image-2
    if ! secs2=$(build_image "$second"); then
        fail "scripts/image.sh, second build: $(tail -5 "$T/logs/image-image-2.log" | tr '\n' ' ')"
        secs2=never
    fi
    info "the second build: from scratch into another directory, in ${secs2} s"
fi
if [ "$(cat "$second/digest" 2>/dev/null)" = "$digest" ]; then
    pass "reproducible: both builds have the digest $digest"
else
    fail "not reproducible: $digest and $(cat "$second/digest" 2>/dev/null)"
fi
if cmp -s "$archive" "$second/$(basename "$archive")"; then
    pass "reproducible: both archives are the same bytes ($(basename "$archive"))"
else
    fail "the archives differ: $archive, $second/$(basename "$archive")"
fi
if [ ! -f "$CACHE/$key/digest" ]; then
    rm -rf "$CACHE/$key.tmp" && mkdir -p "$CACHE" && cp -a "$first" "$CACHE/$key.tmp" && mv "$CACHE/$key.tmp" "$CACHE/$key"
    find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name debs -mtime +7 -exec rm -rf {} + 2>/dev/null
fi
labels=$("$PY" - "$first/oci" "$digest" <<'EOF'
import json, sys
layout, digest = sys.argv[1], sys.argv[2]
blob = lambda d: json.load(open(f"{layout}/blobs/sha256/{d.split(':')[1]}"))
config = blob(blob(digest)["config"]["digest"])
c = config["config"]
print("entrypoint=%s cmd=%s user=%s" % (c.get("Entrypoint"), c.get("Cmd"), c.get("User")))
for k, v in sorted(c.get("Labels", {}).items()):
    print(f"label {k}={v}")
EOF
)
info "$(printf '%s' "$labels" | head -1)"
if grep -q "label org.opencontainers.image.version=$("$release" --version)" <<<"$labels" \
    && grep -q "label org.opencontainers.image.revision=" <<<"$labels" \
    && grep -q "entrypoint=\['/usr/bin/$NAME'\] cmd=\['watch'\]" <<<"$labels"; then
    pass "labelled: $(grep -E 'version=|revision=' <<<"$labels" | sed 's/^label //' | tr '\n' ' ')"
else
    fail "labels or entrypoint: $labels"
fi

# ---------------------------------------------------------------------------------------------------
section "c. the image under containerd $CONTAINERD_VERSION, run as deploy/daemonset.yaml runs it"
# The node's own paths, private to this mount namespace
for dir in /etc/containerd /run/containerd /var/log /run/log; do
    mkdir -p "$dir"
    mount -t tmpfs -o mode=0755 tmpfs "$dir" || { fail "mount tmpfs on $dir"; assert_summary; exit 1; }
done
mkdir -p /etc/containerd/certs.d /var/log/journal /run/log/journal
"$PY" -c 'import uuid; print(uuid.uuid4().hex)' >"$T/machine-id"
mount --bind "$T/machine-id" /etc/machine-id || { fail "bind the test's machine id over /etc/machine-id"; assert_summary; exit 1; }
SOCK=/run/containerd/containerd.sock
HOSTS=/etc/containerd/certs.d
containerd_daemon_config "$CONTAINERD_VERSION" "$T/containerd/root" /run/containerd "$SOCK" "$HOSTS" \
    "$T/cni/bin" "$T/cni/conf" no-overlayfs >/etc/containerd/config.toml
mkdir -p "$T/containerd/root" "$T/cni/bin" "$T/cni/conf"
ctrk() { timeout --foreground 60 "$CTR_BIN" --address "$SOCK" -n k8s.io "$@"; }

if ! { namespace_up 127.0.0.10 127.0.0.20 >"$T/logs/setup.log" 2>&1 \
    && start_registry up10 127.0.0.10 5000 >>"$T/logs/setup.log" 2>&1 \
    && push_test_image "$A" >>"$T/logs/setup.log" 2>&1 \
    && start_registry cache20 127.0.0.20 5000 "http://$A" >>"$T/logs/setup.log" 2>&1; }; then
    fail "setup: $(tail -5 "$T/logs/setup.log" | tr '\n' ' ')"
    assert_summary
    exit 1
fi
# The node's journal: a real systemd-journald (on this namespace's /run/systemd, /var/log and
# /run/log), and containerd in it as containerd.service: journald names an entry's unit after the
# sender's cgroup, so containerd runs in a cgroup .../containerd.service of the hierarchy systemd
# tracks units in (under a slice without a dash: a dash in a slice's name means a parent slice),
# with its stderr on journald's stream socket (systemd-cat, which then becomes containerd). Without
# journald the rest runs as before and the journal's checks are skipped.
JOURNAL=0
mkdir -p /run/systemd
if [ -x /lib/systemd/systemd-journald ] && command -v systemd-cat >/dev/null && mount -t tmpfs -o mode=0755 tmpfs /run/systemd; then
    /lib/systemd/systemd-journald >"$T/logs/journald.out" 2>&1 &
    remember journald $!
    for _ in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done
    if [ -d /sys/fs/cgroup/unified ] && grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/self/mounts; then
        UNIT_CG=/sys/fs/cgroup/unified/ccrimg$$.slice/containerd.service
    elif grep -q ' /sys/fs/cgroup cgroup2 ' /proc/self/mounts; then
        UNIT_CG=/sys/fs/cgroup/ccrimg$$.slice/containerd.service
    else
        UNIT_CG=/sys/fs/cgroup/systemd/ccrimg$$.slice/containerd.service
    fi
    if [ -S /run/systemd/journal/stdout ] && mkdir -p "$UNIT_CG"; then
        JOURNAL=1
    else
        info "journal: no journald socket or no cgroup for containerd.service: $(tail -2 "$T/logs/journald.out" | tr '\n' ' ')"
    fi
fi
# containerd in the test's network namespace, by nsenter rather than `ip netns exec`: that one mounts a
# new /sys, without the cgroup file systems runc needs. Its own runc shim first on PATH (another
# release's containerd-shim-runc-v2 sits beside it).
PATH="$(dirname "$CONTAINERD_BIN"):$PATH"
export PATH
if [ "$JOURNAL" = 1 ]; then
    (
        echo "$BASHPID" >"$UNIT_CG/cgroup.procs" || exit 1
        exec nsenter --net="/run/netns/$NS" systemd-cat -t containerd "$CONTAINERD_BIN" --config /etc/containerd/config.toml
    ) >>"$T/logs/containerd.log" 2>&1 &
else
    nsenter --net="/run/netns/$NS" setsid "$CONTAINERD_BIN" --config /etc/containerd/config.toml >>"$T/logs/containerd.log" 2>&1 &
fi
remember containerd $!
for _ in $(seq 100); do ctrk version >/dev/null 2>&1 && break; sleep 0.1; done
if containerd_cri_running "$CTR_BIN" "$SOCK" 2>>"$T/logs/setup.log"; then
    pass "node: containerd $CONTAINERD_VERSION on /run/containerd/containerd.sock, CRI config_path $HOSTS; upstream $A and its cache 127.0.0.20:5000 in the network namespace $NS"
    booted() { journalctl -u containerd.service -o cat --no-pager 2>/dev/null | grep -q 'containerd successfully booted'; }
    if [ "$JOURNAL" = 1 ] && eventually booted; then
        pass "node: containerd's log is in a real journald's journal as containerd.service ($(journalctl -u containerd.service -o cat --no-pager | grep -m1 'successfully booted' | sed 's/^time="[^"]*" //'))"
    elif [ "$JOURNAL" = 1 ]; then
        fail "node: containerd's log is not in the journal as containerd.service: $(journalctl -o json --no-pager 2>&1 | tail -c 400)"
        JOURNAL=0
    fi
else
    fail "containerd did not start: $(tail -5 "$T/logs/containerd.log" | tr '\n' ' ')"
    assert_summary
    exit 1
fi

out=$(ctrk images import --snapshotter native "$archive" 2>&1)
image_ref=$(ctrk images ls 2>/dev/null | awk -v n="localhost/$NAME:" 'index($1, n) == 1 { print $1 }' | head -1)
image_digest=$(ctrk images ls 2>/dev/null | awk -v r="$image_ref" '$1 == r { print $3 }')
if [ -n "$image_ref" ] && [ "$image_digest" = "$digest" ]; then
    pass "ctr images import: $image_ref, digest $image_digest (the one built)"
else
    fail "ctr images import: '$out'; images: $(ctrk images ls 2>&1 | tr '\n' ' ')"
    assert_summary
    exit 1
fi

# The node's own hosts.toml for the upstream: the agent must back it up and, on uninstall, put it back.
mkdir -p "$HOSTS/$A"
printf '# the node'"'"'s own file\nserver = "http://%s"\n' "$A" >"$HOSTS/$A/hosts.toml"
cp "$HOSTS/$A/hosts.toml" "$T/node-own-hosts.toml"
# The ConfigMap's content for this node: the cache in the network namespace
mkdir -p "$T/configmap"
cat >"$T/configmap/config.toml" <<EOF
# deploy/config.toml's settings (the probes' defaults too), with the test's cache
hosts_dir = "/etc/containerd/certs.d"
containerd_config = "/etc/containerd/config.toml"
containerd_unit = "containerd.service"
containerd_version = "auto"

[[registry]]
upstream = "$A"
server = "http://$A"
  [[registry.host]]
  url = "http://127.0.0.20:5000"
EOF

# run_pod DIR DAEMONSET ID: the container DAEMONSET of DIR gives, started detached as ID (its output
# in $T/logs/ID.log); sets POD_PID and READINESS (the probe's command)
run_pod() {
    local dir=$1 ds=$2 id=$3 spec flags=() args=() m
    spec=$("$PY" "$ROOT/scripts/k8s/validate.py" runspec "$dir" "$ds") || { fail "runspec $ds: $spec"; return 1; }
    echo "$spec" >"$T/runspec-$id.json"
    # the hostPath volumes as the kubelet makes them: DirectoryOrCreate and FileOrCreate are made,
    # Directory and File must exist
    while IFS=$'\t' read -r kind host type; do
        [ "$kind" = hostPath ] || continue
        case $type in
            DirectoryOrCreate) mkdir -p "$host" ;;
            Directory) [ -d "$host" ] || { fail "$ds: hostPath $host (Directory) does not exist on the node"; return 1; } ;;
            File) [ -f "$host" ] || { fail "$ds: hostPath $host (File) does not exist on the node"; return 1; } ;;
        esac
    done < <("$PY" -c 'import json, sys; [print(m["kind"], m.get("host", ""), m.get("type", ""), sep="\t") for m in json.load(sys.stdin)["mounts"]]' <<<"$spec")
    mapfile -t flags < <("$PY" - "$T/configmap" "$T/runspec-$id.json" <<'EOF'
import json, sys
spec = json.load(open(sys.argv[2]))
flags = ["--snapshotter", "native", "--log-uri", "file://LOG"]
if spec["hostNetwork"]:
    flags.append("--net-host")
if spec["readOnlyRootFilesystem"]:
    flags.append("--read-only")
if not spec["noNewPrivileges"]:
    flags.append("--allow-new-privs")
if spec["seccomp"] == "RuntimeDefault":
    flags.append("--seccomp")
caps = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}  # ctr's defaults, as the CRI's
drop = caps if "ALL" in spec["capabilitiesDrop"] else {"CAP_" + c for c in spec["capabilitiesDrop"]}
for cap in sorted(drop):
    flags += ["--cap-drop", cap]
for cap in spec["capabilitiesAdd"]:
    flags += ["--cap-add", "CAP_" + cap]
if spec["memoryLimit"]:
    flags += ["--memory-limit", str(spec["memoryLimit"])]
# the CRI orders mounts by the number of components of their path (parents first), stable
mounts = sorted(spec["mounts"], key=lambda m: len([p for p in m["path"].split("/") if p]))
# and, for a pod on the host network, gives it the node's /etc/hosts and (dnsPolicy Default) resolv.conf
extra = [{"kind": "hostPath", "host": "/etc/hosts", "path": "/etc/hosts", "readOnly": True},
         {"kind": "hostPath", "host": "/etc/resolv.conf", "path": "/etc/resolv.conf", "readOnly": True}]
for m in mounts + extra:
    src = m["host"] if m["kind"] == "hostPath" else sys.argv[1]
    flags += ["--mount", f"type=bind,src={src},dst={m['path']},options=rbind:{'ro' if m['readOnly'] else 'rw'}"]
for f in flags:
    print(f)
print("--")
print(spec["image"])
for a in ["/usr/bin/configure-containerd-registries"] + spec["args"]:
    print(a)
EOF
)
    for ((m = 0; m < ${#flags[@]}; m++)); do
        [ "${flags[m]}" = "--" ] && break
        [ "${flags[m]}" = "file://LOG" ] && flags[m]=file://$T/logs/$id.log
        args+=("${flags[m]}")
    done
    local image=${flags[m + 1]}
    local command=("${flags[@]:m+2}")
    READINESS=()
    mapfile -t READINESS < <("$PY" -c 'import json, sys; print("\n".join(json.load(sys.stdin)["readiness"]))' <<<"$spec")
    info "ctr run -d ${args[*]} $image $id ${command[*]}" >"$T/logs/ctr-run-$id.cmd"
    args+=(--cgroup "/ccr-img-$$/$id")
    if ! out=$(ctrk run -d "${args[@]}" "$image" "$id" "${command[@]}" 2>&1); then
        fail "ctr run $id: $out"
        return 1
    fi
    containers+=("$id")
    POD_PID=$(ctrk task ls 2>/dev/null | awk -v id="$id" '$1 == id { print $2 }')
}

# stop_pod ID: SIGTERM, as the kubelet stops a container; prints the task's exit status
stop_pod() {
    local id=$1 i status
    ctrk task kill -s SIGTERM "$id" >/dev/null 2>&1
    for ((i = 0; i < 100; i++)); do
        [ "$(ctrk task ls 2>/dev/null | awk -v id="$id" '$1 == id { print $3 }')" = STOPPED ] && break
        sleep 0.1
    done
    status=$(ctrk task delete "$id" 2>&1)
    ctrk container delete "$id" >/dev/null 2>&1
    containers=("${containers[@]/$id/}")
    if [[ $status == *"non-zero exit code"* ]]; then
        sed -n 's/.*non-zero exit code \([0-9]*\).*/\1/p' <<<"$status"
    elif [ "$i" -ge 100 ]; then
        echo "still running after 10 s"
    else
        echo 0
    fi
}
ours_file() { head -1 "$HOSTS/$A/hosts.toml" 2>/dev/null | grep -q '^# managed by configure-containerd-registries'; }
names_cache() { grep -qF '[host."http://127.0.0.20:5000"]' "$HOSTS/$A/hosts.toml" 2>/dev/null; }
written() { ours_file && names_cache; }

# --- the agent's DaemonSet
t0=$EPOCHREALTIME
if run_pod "$ROOT/deploy" "$NAME" ccr-watch-1; then
    pass "ctr run: the image as deploy/daemonset.yaml's container (pid $POD_PID): $(sed 's/^ *//' "$T/logs/ctr-run-ccr-watch-1.cmd" | cut -c1-400)..."
fi
if ASSERT_PATIENCE=20 eventually written; then
    pass "the pod wrote the node's $HOSTS/$A/hosts.toml naming the cache, $(elapsed "$t0") s after ctr run"
    sed 's/^/        | /' "$HOSTS/$A/hosts.toml"
else
    fail "no hosts.toml of ours naming the cache: $(cat "$HOSTS/$A/hosts.toml" 2>&1 | tr '\n' ' '); pod log: $(tail -5 "$T/logs/ccr-watch-1.log" | tr '\n' ' ')"
fi
if cmp -s "$HOSTS/$A/hosts.toml.orig" "$T/node-own-hosts.toml"; then
    pass "the node's own hosts.toml was backed up as hosts.toml.orig, byte for byte"
else
    fail "no backup of the node's own file: $(ls -la "$HOSTS/$A" | tr '\n' ' ')"
fi
info "pod log:"
sed 's/^/        | /' "$T/logs/ccr-watch-1.log" | head -12
if grep -q "files for containerd ${CONTAINERD_VERSION%%[~+]*} " "$T/logs/ccr-watch-1.log" 2>/dev/null; then
    pass "the pod asked containerd for its version through the mounted socket: $(grep -m1 'files for containerd' "$T/logs/ccr-watch-1.log" | cut -d' ' -f3-)"
else
    fail "the pod did not learn containerd's version from the socket: $(grep -m1 -i containerd "$T/logs/ccr-watch-1.log")"
fi
if grep -q "reading containerd's log: journal entries of containerd.service" "$T/logs/ccr-watch-1.log"; then
    pass "the pod opened the node's journal (mounted /var/log, /run/log, /etc/machine-id)"
else
    fail "the pod does not read the journal: $(grep -m1 "containerd's log" "$T/logs/ccr-watch-1.log")"
fi

# the process as the kernel sees it
status=$(cat "/proc/$POD_PID/status" 2>/dev/null)
caps=$(awk '/^Cap(Inh|Prm|Eff|Bnd|Amb):/ { printf "%s%s ", $1, $2 }' <<<"$status")
if grep -qE '^CapEff:\s+0+$' <<<"$status" && grep -qE '^CapPrm:\s+0+$' <<<"$status" && grep -qE '^CapBnd:\s+0+$' <<<"$status" \
    && grep -qE '^NoNewPrivs:\s+1$' <<<"$status" && grep -qE '^Seccomp:\s+2$' <<<"$status" && grep -qE '^Uid:\s+0\s' <<<"$status"; then
    pass "the process: uid 0, no capability (${caps% }), NoNewPrivs 1, Seccomp 2 (filter)"
else
    fail "the process: $(grep -E '^(Uid|Cap|NoNewPrivs|Seccomp)' <<<"$status" | tr '\n' ' ')"
fi

# a CRI pull, as the kubelet pulls, through the cache the pod wrote into the file
m=$(mark "$T/logs/cache20.log")
t0=$EPOCHREALTIME
rc=0
nsx timeout --foreground 120 "$PY" "$HELPERS/cri.py" "$SOCK" pull "$A/$IMG" >"$T/logs/cri-pull.log" 2>&1 || rc=$?
if [ "$rc" = 0 ]; then
    evidence "a CRI pull (PullImage, as the kubelet pulls) of $A/$IMG went through the cache the pod configured (?ns=$A in the cache's log; $(elapsed "$t0") s)" \
        through_mirror "$T/logs/cache20.log" "$m" "$A"
else
    fail "CRI pull of $A/$IMG: exit $rc: $(tail -3 "$T/logs/cri-pull.log" | tr '\n' ' ')"
fi

# the readiness probe, as the kubelet runs it: an exec in the container
rc=0
out=$(ctrk task exec --exec-id ready-1 ccr-watch-1 "${READINESS[@]}" 2>&1) || rc=$?
if [ "$rc" = 0 ]; then
    pass "readiness probe (${READINESS[*]}) in the container: exit 0: $(head -1 <<<"$out")"
else
    fail "readiness probe in the container: exit $rc: $(head -3 <<<"$out" | tr '\n' ' ')"
fi
# the read-only root file system: the agent told to write elsewhere cannot
rc=0
out=$(ctrk task exec --exec-id rofs ccr-watch-1 /usr/bin/$NAME apply --hosts-dir /ccr-rofs-check --deadline 5s \
    "rofs.example,http://127.0.0.20:5000,https://rofs.example" 2>&1) || rc=$?
if [ "$rc" = 73 ] && grep -qi 'read-only' <<<"$out"; then
    pass "read-only root file system: apply --hosts-dir /ccr-rofs-check in the container exits 73 ($(grep -io 'read-only file system' <<<"$out" | head -1))"
else
    fail "read-only root: apply elsewhere exited $rc: $(tail -2 <<<"$out" | tr '\n' ' ')"
fi

# the footprint: the container's cgroup (every process of the pod, the probes' execs too)
cg_mem=/sys/fs/cgroup/memory/ccr-img-$$/ccr-watch-1
cg_cpu=/sys/fs/cgroup/cpuacct/ccr-img-$$/ccr-watch-1
if [ -r "$cg_mem/memory.usage_in_bytes" ] && [ -r "$cg_cpu/cpuacct.usage" ]; then
    info "measuring the pod for $MEASURE s (idle watch, one readiness probe every 30 s as the kubelet would)"
    cpu0=$(cat "$cg_cpu/cpuacct.usage")
    t_m=$EPOCHREALTIME
    rss_max=0
    probes=0
    while less_than "$(elapsed "$t_m")" "$MEASURE"; do
        if [ "$probes" = 0 ] || less_than "$((probes * 30))" "$(elapsed "$t_m")"; then
            ctrk task exec --exec-id "probe-$probes" ccr-watch-1 "${READINESS[@]}" >/dev/null 2>&1
            probes=$((probes + 1))
        fi
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$POD_PID/status" 2>/dev/null || echo 0)
        [ "${rss:-0}" -gt "$rss_max" ] && rss_max=$rss
        sleep 1
    done
    cpu1=$(cat "$cg_cpu/cpuacct.usage")
    window=$(elapsed "$t_m")
    mem_now=$(cat "$cg_mem/memory.usage_in_bytes")
    mem_max=$(cat "$cg_mem/memory.max_usage_in_bytes")
    rss_now=$(awk '/^VmRSS:/ { print $2 }' "/proc/$POD_PID/status")
    cpu_s=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    figure "pod footprint over ${window} s ($probes readiness probes): CPU ${cpu_s} s ($(awk -v c="$cpu_s" -v w="$window" 'BEGIN { printf "%.2f", 100 * c / w }')% of a core, $(awk -v c="$cpu_s" -v w="$window" 'BEGIN { printf "%.1f", 3600 * c / w }') s/h); cgroup memory now $(numfmt --to=iec --suffix=B "$mem_now"), peak $(numfmt --to=iec --suffix=B "$mem_max") (the probes' execs included); watch's RSS now $((rss_now / 1024)) MiB, peak $((rss_max / 1024)) MiB"
    limit=$(cat "$cg_mem/memory.limit_in_bytes")
    info "cgroup memory limit: $(numfmt --to=iec --suffix=B "$limit") (deploy/daemonset.yaml's limits.memory)"
    if [ "$mem_max" -lt "$limit" ]; then pass "peak memory $(numfmt --to=iec --suffix=B "$mem_max") below the DaemonSet's limit $(numfmt --to=iec --suffix=B "$limit")"; else fail "peak memory $mem_max at the limit $limit"; fi
else
    skip "footprint: no cgroup v1 memory/cpuacct files at $cg_mem, $cg_cpu"
fi

# --- a rolling update: SIGTERM leaves the files, the next pod starts from them
mtime0=$(stat -c %Y.%N "$HOSTS/$A/hosts.toml" 2>/dev/null)
: >"$T/gaps"
(
    while [ ! -e "$T/stop-poll" ]; do
        if ! ours_file; then date +%T.%N >>"$T/gaps"; fi
        sleep 0.02
    done
) &
poller=$!
code=$(stop_pod ccr-watch-1)
if [ "$code" = 0 ]; then pass "SIGTERM (ctr task kill): the pod ended with exit 0"; else fail "SIGTERM: the pod's exit status: $code"; fi
if written && [ -f "$HOSTS/$A/.configure-containerd-registries" ]; then
    pass "after SIGTERM the files are still there (hosts.toml naming the cache, the ownership record)"
else
    fail "after SIGTERM: $(ls -la "$HOSTS/$A" 2>&1 | tr '\n' ' ')"
fi
if [ ! -e "$HOSTS/.configure-containerd-registries.lock" ]; then
    pass "the lock file ($HOSTS/.configure-containerd-registries.lock) is gone with its holder"
else
    fail "the lock file was left behind after SIGTERM"
fi
t0=$EPOCHREALTIME
run_pod "$ROOT/deploy" "$NAME" ccr-watch-2 >/dev/null
ready=0
for _ in $(seq 50); do
    if ctrk task exec --exec-id "ready-2-$RANDOM" ccr-watch-2 "${READINESS[@]}" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.2
done
touch "$T/stop-poll"
wait "$poller" 2>/dev/null
if [ "$ready" = 1 ]; then pass "the next pod (a rolling update) is ready $(elapsed "$t0") s after ctr run"; else fail "the next pod did not become ready: $(tail -3 "$T/logs/ccr-watch-2.log" | tr '\n' ' ')"; fi
if [ ! -s "$T/gaps" ] && [ "$(stat -c %Y.%N "$HOSTS/$A/hosts.toml" 2>/dev/null)" = "$mtime0" ]; then
    pass "rolling update: hosts.toml never missing (polled every 20 ms) and not even rewritten (same mtime)"
else
    fail "rolling update: hosts.toml missing at $(head -3 "$T/gaps" | tr '\n' ' ') or rewritten"
fi

# --- what containerd saw, through the mounted journal: a pull goes past the cache
if [ "$JOURNAL" = 1 ]; then
    m=$(mark "$T/logs/ccr-watch-2.log")
    rc=0
    nsx timeout --foreground 60 "$PY" "$HELPERS/cri.py" "$SOCK" pull "$A/library/not-cached:1" >"$T/logs/cri-pull-missing.log" 2>&1 || rc=$?
    info "a CRI pull of an image neither the cache nor the upstream has: exit $rc"
    line=$(journalctl -u containerd.service -o cat --no-pager 2>/dev/null | grep -F 'trying next host' | grep -F 'host="127.0.0.20:5000"' | head -1)
    if [ -n "$line" ]; then
        pass "the node's journal: containerd.service logged $(sed 's/^time="[^"]*" //' <<<"$line" | cut -c1-160)"
    else
        fail "containerd logged no 'trying next host' for the cache: $(journalctl -u containerd.service -o cat --no-pager | tail -3 | tr '\n' ' ')"
    fi
    went_past() { since "$T/logs/ccr-watch-2.log" "$m" | grep -q "containerd went past this mirror"; }
    if ASSERT_PATIENCE=10 eventually went_past; then
        pass "the pod read it from the node's journal (mounted read-only): $(since "$T/logs/ccr-watch-2.log" "$m" | grep -m1 "containerd went past this mirror" | cut -d' ' -f2- | cut -c1-200)"
    else
        fail "the pod did not see containerd going past the cache: $(since "$T/logs/ccr-watch-2.log" "$m" | tail -3 | tr '\n' ' ')"
    fi
    rc=0
    out=$(ctrk task exec --exec-id ready-3 ccr-watch-2 "${READINESS[@]}" 2>&1) || rc=$?
    if [ "$rc" = 1 ] && head -1 <<<"$out" | grep -q '^WARNING: .*containerd went past'; then
        pass "readiness probe now exits 1, so kubectl would show this node's pod not ready: $(head -1 <<<"$out" | cut -c1-200)"
    else
        fail "readiness probe after the bypass: exit $rc: $(head -2 <<<"$out" | tr '\n' ' ')"
    fi
else
    skip "journal: no journald here; the pod's reading of containerd's journal is not shown"
fi
code=$(stop_pod ccr-watch-2)
[ "$code" = 0 ] || fail "the second pod's exit status on SIGTERM: $code"

# --- uninstall: deploy/uninstall's container on the node
t0=$EPOCHREALTIME
if run_pod "$ROOT/deploy/uninstall" "$NAME-remove" ccr-remove; then
    pass "ctr run: deploy/uninstall/daemonset.yaml's container (remove --keep-running)"
fi
removed() { ! ours_file && [ ! -e "$HOSTS/$A/.configure-containerd-registries" ] && cmp -s "$HOSTS/$A/hosts.toml" "$T/node-own-hosts.toml"; }
if ASSERT_PATIENCE=10 eventually removed; then
    pass "uninstall: the agent's files are gone and the node's own hosts.toml is back, byte for byte ($(elapsed "$t0") s)"
else
    fail "uninstall: $(ls -la "$HOSTS/$A" 2>&1 | tr '\n' ' '); log: $(tail -3 "$T/logs/ccr-remove.log" | tr '\n' ' ')"
fi
rc=0
out=$(ctrk task exec --exec-id ready-r ccr-remove "${READINESS[@]}" 2>&1) || rc=$?
if [ "$rc" = 0 ]; then pass "uninstall readiness probe (${READINESS[*]}): exit 0"; else fail "uninstall readiness probe: exit $rc: $out"; fi
if [ "$(ctrk task ls 2>/dev/null | awk '$1 == "ccr-remove" { print $3 }')" = RUNNING ]; then
    pass "the uninstall pod keeps running once done (Ready: its node is clean)"
else
    fail "the uninstall pod is not running: $(tail -3 "$T/logs/ccr-remove.log" | tr '\n' ' ')"
fi
info "uninstall pod log:"
sed 's/^/        | /' "$T/logs/ccr-remove.log" | head -6
code=$(stop_pod ccr-remove)
if [ "$code" = 0 ]; then pass "SIGTERM: the uninstall pod ended with exit 0"; else fail "SIGTERM: the uninstall pod's exit status: $code"; fi

section "summary"
info "elapsed: $(elapsed "$started") s"
while IFS= read -r line; do info "$line"; done < <(assert_figures 0)
assert_summary
