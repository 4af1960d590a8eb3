#!/usr/bin/env bash
# End-to-end proof (issue 3): a real containerd pulls through a real registry
# cache that configure-containerd-registries configured.
#
#   sudo bash scripts/e2e.sh                 # default suite, well under 5 minutes
#   sudo E2E_SLOW=1 bash scripts/e2e.sh      # + the ~30 s-per-request dead-mirror and hanging-mirror demonstrations
#   sudo E2E_ONLY="7 8" bash scripts/e2e.sh  # only some scenarios (the setup is always complete)
#   sudo AGENT_BIN=/path/to/configure-containerd-registries bash scripts/e2e.sh
#
# Environment:
#   AGENT_BIN  the agent binary (default: `swift build -c debug` in the repo root
#              and .build/debug/configure-containerd-registries)
#   E2E_SLOW=1 also pull with a hand-written hosts.toml that names the dead
#              cluster IP (scenario 2), and with watch's file left stale
#              (naming the dead and then the hanging cache, scenario 8), to
#              show the cost the agent avoids (several minutes more)
#   E2E_ONLY   space-separated scenario numbers to run (default: all)
#   E2E_KEEP=1 keep the temp dir (logs, configs, hosts files) after the run
#
# Everything runs inside a private network namespace (ccr-e2e-<pid>) on loopback
# addresses only; nothing talks to any other address and no rule touches the
# host's firewall. Addresses inside the namespace:
#   127.0.0.10:5000  upstream registry A   (docker-registry)   image library/test:1
#   127.0.0.11:5000  upstream registry B   (docker-registry)   image library/test:1
#   127.0.0.12:5000  upstream registry C   (docker-registry)   image library/test:1
#   127.0.0.20:5000  cache of A (docker-registry proxy); started late in scenario 1
#   127.0.0.21:5000  cache of B
#   127.0.0.22:5000  cache of C
#   127.0.0.23:5000  second cache of A (several-hosts variant)
#   127.0.0.24:5000  third cache of A (scenario 7: made dead and healed with iptables)
#   127.0.0.25:5000  second cache of B (scenario 8: made dead, healed, then replaced
#                    by a hang server)
#   127.0.0.30       dead cluster IP: iptables DROP inside the namespace
#   127.0.0.40:5000  a "mirror" that accepts connections and never answers
#   127.0.0.50:5443  TLS cache of A, certificate from a CA made at test time
#   127.0.0.51:5443  mutual-TLS cache of A (requires a client certificate)
#   127.0.0.60:5000  logging proxy serving cache A below /cache/docker (override_path)
#   127.0.0.61:5000  logging proxy in front of cache A that records headers (header)
#
# Proof that a pull went through a mirror: containerd adds `?ns=<upstream>` to
# every request it sends to a mirror (and never to the upstream server itself),
# so the mirror's access log must show those requests; the upstream's log must
# show no request with containerd's user agent (the cache's own requests carry
# the distribution's user agent).
#
# Every pull is done twice: with `ctr images pull --hosts-dir` (ctr fetches in
# the client) and through the CRI ImageService PullImage, the way kubelet pulls
# (the daemon fetches, reading the CRI registry config_path). Debian 12 has no
# crictl, so scripts/e2e/cri.py makes that gRPC call with python3-grpcio and
# hand-encoded protobuf messages. containerd runs with
# content_sharing_policy = "isolated" and every ctr pull uses a fresh
# namespace (CRI images are removed after each pull), so each pull fetches
# every blob again.
#
# Scenarios (issue 3): 1 the agent waits for a cache that comes up late;
# 2 a cache on a dead cluster IP gets no file; 3 a cache that accepts and never
# answers is left out; 4 three upstreams at once, one dead; 5 every file
# variant containerd 1.6 supports (dial_timeout, ca, skip_verify, client,
# override_path, header, several hosts with capabilities, _default, host:port
# and bracketed IPv6 upstreams) is accepted by containerd, proven by the
# mirror's log; 6 a hand-written hosts.toml goes to hosts.toml.orig and comes
# back (when the upstream leaves the config, and with `remove` when the agent
# has that subcommand; otherwise that half is skipped with a message).
#
# Scenarios of issues 5 and 6: 7 the operator tools against the real
# containerd config: `check` is CRITICAL while our file names a cache whose IP
# went dead, WARNING once apply left it out, OK once it healed and apply put it
# back, CRITICAL for a containerd config without config_path; `check --output
# json`; `plan` with a foreign hosts.toml shows the backup and a diff and
# changes nothing (the whole hosts dir, modes and mtimes, compared); 8 `watch`
# with real containerd: the cache's IP goes dead (iptables DROP), comes back,
# and then the cache hangs; the time until the file is fixed is measured (from
# the fault and from the agent's first failed probe), pulls from then on are
# fast; with E2E_SLOW=1 the same pulls with the stale file and no watcher.
#
# Output ends with the line "N passed, M failed" (one count per scenario);
# the exit status is non-zero when any scenario failed.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPERS=$ROOT/scripts/e2e
PY=/usr/bin/python3          # Debian's python3 (python3-grpcio lives there), not a pyenv shim
NS=ccr-e2e-$$
E2E_SLOW=${E2E_SLOW:-0}
E2E_KEEP=${E2E_KEEP:-0}
SUITE_T0=$EPOCHREALTIME
T=""
PASSED=0
FAILED=0
TIMINGS=()
MARKER='# managed by configure-containerd-registries; manual changes are overwritten'

log() { printf '[e2e %s] %s\n' "$(date +%T)" "$*"; }
die() { log "FATAL: $*"; exit 1; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
indent() { sed 's/^/        | /'; }

# ---------------------------------------------------------------------------
# teardown: runs on every exit path
# ---------------------------------------------------------------------------
# ours PID: a process this run started that is still there (not a reused pid):
# inside our namespace, or a direct child of this script (a scenario subshell)
ours() {
    local pid=$1 ppid
    [[ -d /proc/$pid ]] || return 1
    ppid=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || true)
    [[ "$ppid" == "$$" ]] && return 0
    [[ -n "${NS_INODE:-}" && "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" == "net:[$NS_INODE]" ]]
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n "$T" && -f "$T/pids" ]]; then
        local pids=() pid
        while read -r pid; do ours "$pid" && pids+=("$pid"); done <"$T/pids"
        for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
        for _ in $(seq 1 30); do
            local alive=0
            for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
            [[ $alive == 0 ]] && break
            sleep 0.1
        done
        for pid in "${pids[@]}"; do ours "$pid" && kill -KILL "$pid" 2>/dev/null; done
    fi
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS"; then
        # anything still inside our namespace was started by this run
        for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        sleep 0.2
        ip netns delete "$NS" 2>/dev/null || log "warning: could not delete namespace $NS"
    fi
    if [[ -n "$T" && -d "$T" ]]; then
        [[ "$E2E_KEEP" == 1 ]] || rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ---------------------------------------------------------------------------
# prerequisites
# ---------------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "run as root (network namespaces, iptables, containerd)"

ensure_packages() {
    local missing=()
    command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
    [[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
    command -v skopeo >/dev/null || missing+=(skopeo)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v ip >/dev/null || missing+=(iproute2)
    [[ -x $PY ]] || missing+=(python3)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    [[ -x $PY ]] && $PY -c 'import grpc' 2>/dev/null || missing+=(python3-grpcio)
    if ((${#missing[@]})); then
        log "installing missing packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_agent() {
    if [[ -z "${AGENT_BIN:-}" ]]; then
        log "AGENT_BIN not set: building with swift build -c debug"
        (cd "$ROOT" && swift build -c debug) || die "swift build failed"
        AGENT_BIN=$ROOT/.build/debug/configure-containerd-registries
    fi
    [[ -x "$AGENT_BIN" ]] || die "agent binary not found or not executable: $AGENT_BIN"
    AGENT_BIN=$(readlink -f "$AGENT_BIN")
    log "agent: $AGENT_BIN ($("$AGENT_BIN" --version 2>/dev/null || echo 'no --version'))"
}

# stale namespaces of earlier runs that died without their trap (SIGKILL)
clean_stale() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^ccr-e2e-[0-9]*$' || true); do
        pid=${ns#ccr-e2e-}
        if ! kill -0 "$pid" 2>/dev/null; then
            log "removing stale namespace $ns"
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
            ip netns delete "$ns" 2>/dev/null || true
        fi
    done
    local d
    for d in /tmp/ccr-e2e-[0-9]*.*; do
        [[ -d "$d" ]] || continue
        pid=${d#/tmp/ccr-e2e-}
        pid=${pid%%.*}
        if ! kill -0 "$pid" 2>/dev/null && [[ ! -f "$d/keep" ]]; then
            log "removing stale workdir $d"
            rm -rf "$d"
        fi
    done
}

nsx() { ip netns exec "$NS" "$@"; }
# background jobs use `ip netns exec` directly, not nsx: so $! is the daemon
# itself (ip and setsid exec it) and no shell function (with an inherited ERR
# trap) wraps it. Daemons get a session of their own (setsid) so a Ctrl-C
# reaches only the script and its clients; the trap then stops the daemons.
# Clients run under `timeout --foreground` (same process group: Ctrl-C ends them).
ctrx() { nsx timeout --foreground 30 ctr --address "$SOCK" "$@"; }
remember() { echo "$1" >>"$T/pids"; }

# ---------------------------------------------------------------------------
# infrastructure
# ---------------------------------------------------------------------------
setup_netns() {
    ip netns add "$NS"
    NS_INODE=$(stat -L -c %i "/run/netns/$NS")
    nsx ip link set lo up
    local a
    for a in 10 11 12 20 21 22 23 24 25 30 40 50 51 60 61; do
        nsx ip addr add "127.0.0.$a/8" dev lo
    done
    # the dead cluster IP: SYNs vanish, so a dial hangs until its own timeout
    nsx iptables -w -A INPUT -d 127.0.0.30/32 -j DROP
    nsx iptables -w -A OUTPUT -d 127.0.0.30/32 -j DROP
    local rc=0
    nsx timeout --foreground 2 bash -c 'exec 3<>/dev/tcp/127.0.0.30/5000' 2>/dev/null || rc=$?
    [[ $rc == 124 ]] || die "dead IP 127.0.0.30 does not hang (rc=$rc)"
}

make_tls() {
    local d=$T/tls
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 2 -subj /CN=ccr-e2e-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj /CN=127.0.0.50 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.50,IP:127.0.0.51\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out server.pem -days 2 -extfile server.ext 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout client.key -out client.csr -subj /CN=ccr-e2e-node 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out client.pem -days 2 -extfile client.ext 2>/dev/null
    )
    chmod 644 "$d"/*.pem "$d"/*.key
}

# wait_http URL [curl options...]: until GET URL answers 200 (10 s at most)
wait_http() {
    local url=$1 code
    shift
    for _ in $(seq 1 100); do
        code=$(nsx curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 1 "$@" "$url" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    log "no 200 from $url (last: $code)"
    return 1
}

# start_registry NAME ADDR PORT [REMOTEURL] [tls|mtls]
start_registry() {
    local name=$1 addr=$2 port=$3 remote=${4:-} tls=${5:-}
    local d=$T/reg/$name
    mkdir -p "$d/data"
    {
        echo "version: 0.1"
        echo "log:"
        echo "  level: info"
        echo "  formatter: text"
        echo "  accesslog:"
        echo "    disabled: false"
        echo "storage:"
        echo "  filesystem:"
        echo "    rootdirectory: $d/data"
        echo "  delete:"
        echo "    enabled: true"
        echo "http:"
        echo "  addr: $addr:$port"
        echo "  secret: ccr-e2e-$name"
        if [[ -n "$tls" ]]; then
            echo "  tls:"
            echo "    certificate: $T/tls/server.pem"
            echo "    key: $T/tls/server.key"
            if [[ "$tls" == mtls ]]; then
                echo "    clientcas:"
                echo "      - $T/tls/ca.pem"
            fi
        fi
        if [[ -n "$remote" ]]; then
            echo "proxy:"
            echo "  remoteurl: $remote"
        fi
    } >"$d/config.yml"
    ip netns exec "$NS" setsid /usr/bin/docker-registry serve "$d/config.yml" >>"$T/logs/$name.log" 2>&1 &
    remember $!
    local scheme=http opts=()
    if [[ -n "$tls" ]]; then
        scheme=https
        opts=(--cacert "$T/tls/ca.pem")
        [[ "$tls" == mtls ]] && opts+=(--cert "$T/tls/client.pem" --key "$T/tls/client.key")
    fi
    wait_http "$scheme://$addr:$port/v2/" "${opts[@]}"
}

build_and_push_image() {
    $PY "$HELPERS/mkimage.py" "$T/image" 1 >"$T/image.digest"
    local up
    for up in 127.0.0.10 127.0.0.11 127.0.0.12; do
        nsx skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
            "oci:$T/image:1" "docker://$up:5000/library/test:1" >"$T/logs/skopeo-$up.log" 2>&1 ||
            { cat "$T/logs/skopeo-$up.log"; die "skopeo push to $up failed"; }
    done
    log "test image $(cat "$T/image.digest") pushed to the three upstreams"
}

start_containerd() {
    local d=$T/containerd
    mkdir -p "$d/root" "$d/state" "$T/cni/bin" "$T/cni/conf"
    SOCK=$d/containerd.sock
    cat >"$d/config.toml" <<EOF
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
  # every namespace fetches its own copy: a pull in a fresh namespace really
  # goes to the registry for every blob
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
    ip netns exec "$NS" setsid containerd --config "$d/config.toml" >"$T/logs/containerd.log" 2>&1 &
    remember $!
    for _ in $(seq 1 100); do
        ctrx version >/dev/null 2>&1 && break
        sleep 0.1
    done
    ctrx version >/dev/null 2>&1 || { tail -30 "$T/logs/containerd.log"; die "containerd did not start"; }
    if ctrx plugins ls 2>/dev/null | grep -E 'io\.containerd\.grpc\.v1\s+cri\s' | grep -q ok; then
        CRI_OK=1
    else
        CRI_OK=0
        log "warning: containerd's CRI plugin is not running here; CRI pulls will fail:"
        ctrx plugins ls | grep -i cri | indent || true
    fi
    log "containerd $(containerd --version | awk '{print $3}') up (CRI plugin: $([[ $CRI_OK == 1 ]] && echo ok || echo DOWN))"
}

# ---------------------------------------------------------------------------
# assertions and evidence
# ---------------------------------------------------------------------------
CHECK_FAILS=0
check() {
    local desc=$1
    shift
    if "$@"; then
        printf '    ok    %s\n' "$desc"
    else
        printf '    FAIL  %s\n' "$desc"
        CHECK_FAILS=$((CHECK_FAILS + 1))
    fi
}
note() { printf '    ..    %s\n' "$*"; }

# eventually CMD...: CMD succeeds within 3 s (a registry writes its access-log
# line only after the response is out, so give the evidence a moment)
eventually() {
    local i
    for i in $(seq 1 30); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}
# evidence DESC PROOF LOG MARK ARGS...: check that PROOF LOG MARK ARGS holds
# (eventually); on failure show the requests the log got since MARK
evidence() {
    local desc=$1 proof=$2 logf=$3 m=$4
    shift 4
    if eventually "$proof" "$logf" "$m" "$@"; then
        printf '    ok    %s\n' "$desc"
    else
        printf '    FAIL  %s\n' "$desc"
        CHECK_FAILS=$((CHECK_FAILS + 1))
        note "requests in $(basename "$logf") since the pull started:"
        since "$logf" "$m" | grep -E '"(GET|HEAD) |"method"' | cut -c1-300 | indent || true
    fi
}

# mark LOG: current line count; since LOG MARK: the lines added after it
mark() { if [[ -f "$1" ]]; then wc -l <"$1"; else echo 0; fi; }
since() { if [[ -f "$1" ]]; then tail -n "+$(($2 + 1))" "$1"; fi; }

ns_re() { # upstream host[:port] -> regex for containerd's ns= query value (raw or %-encoded)
    local u=$1 out="" ch i
    for ((i = 0; i < ${#u}; i++)); do
        ch=${u:i:1}
        case "$ch" in
            :) out+='(:|%3A)' ;;
            "[") out+='(\[|%5B)' ;;
            "]") out+='(\]|%5D)' ;;
            .) out+='\.' ;;
            *) out+=$ch ;;
        esac
    done
    printf 'ns=%s' "$out"
}

# mirror_saw LOG MARK UPSTREAM KIND: the registry's access log shows a
# successful GET/HEAD of KIND (manifests|blobs) with containerd's ns= query
mirror_saw() {
    since "$1" "$2" | grep -Eq "\"(GET|HEAD) /v2/library/test/$4/[^ ]*[?&]$(ns_re "$3")[^ ]* HTTP/[0-9.]+\" 200 "
}
# mirror_saw_tag LOG MARK UPSTREAM: a tag resolution (manifests/1) with ns=
mirror_saw_tag() {
    since "$1" "$2" | grep -Eq "\"(GET|HEAD) /v2/library/test/manifests/1[?][^ ]*$(ns_re "$3")[^ ]* HTTP/[0-9.]+\" 200 "
}
# containerd_direct LOG MARK: requests from containerd itself (its user agent)
containerd_direct() { since "$1" "$2" | grep -Eq '"containerd/[^"]*"$'; }
no_containerd_direct() { ! containerd_direct "$@"; }

# proxy_saw LOG MARK UPSTREAM PATH_RE [HEADER_NAME HEADER_VALUE]: the logging
# proxy got a 200 request whose path matches PATH_RE with ns=, and the header
proxy_saw() {
    $PY - "$@" <<'EOF'
import json, re, sys, urllib.parse
log, mark, upstream, path_re = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
hdr = sys.argv[5:7]
try:
    lines = open(log).read().splitlines()[mark:]
except FileNotFoundError:
    sys.exit(1)
for line in lines:
    r = json.loads(line)
    q = urllib.parse.parse_qs(r["query"])
    if r["status"] != 200 or q.get("ns") != [upstream] or not re.fullmatch(path_re, r["path"]):
        continue
    if hdr and [hdr[0], hdr[1]] not in [[k.lower(), v] for k, v in r["headers"]] \
            and [hdr[0], hdr[1]] not in r["headers"]:
        continue
    sys.exit(0)
sys.exit(1)
EOF
}

hosts_file() { printf '%s/%s/hosts.toml' "$HOSTS" "$1"; }
first_line_is_marker() { [[ -f "$1" ]] && [[ "$(head -n1 "$1")" == "$MARKER" ]]; }
file_has() { [[ -f "$1" ]] && grep -qF -- "$2" "$1"; }
# in_order FILE X Y: both X and Y occur in FILE, X first
in_order() {
    [[ -f "$1" ]] || return 1
    local x y
    x=$(grep -nF -- "$2" "$1" | head -n1 | cut -d: -f1 || true)
    y=$(grep -nF -- "$3" "$1" | head -n1 | cut -d: -f1 || true)
    [[ -n "$x" && -n "$y" && "$x" -lt "$y" ]]
}
file_lacks() { [[ ! -f "$1" ]] || ! grep -qF -- "$2" "$1"; }

reset_hosts() { rm -rf "$HOSTS"; mkdir -p "$HOSTS"; }

# run_agent NAME ARGS...: runs the agent in the namespace; sets AGENT_RC, AGENT_SECS
run_agent() {
    local name=$1
    shift
    local t0=$EPOCHREALTIME
    AGENT_RC=0
    nsx timeout --foreground 120 "$AGENT_BIN" "$@" >"$T/logs/agent-$name.out" 2>"$T/logs/agent-$name.err" || AGENT_RC=$?
    AGENT_SECS=$(secs "$t0" "$EPOCHREALTIME")
    note "agent $* -> exit $AGENT_RC after ${AGENT_SECS}s"
    show_agent_output "$name"
}
show_agent_output() { cat "$T/logs/agent-$1.out" "$T/logs/agent-$1.err" 2>/dev/null | head -n 25 | indent || true; }

# ctr_pull NAMESPACE REF: a pull as `ctr` does it (fetching in the client), in
# a containerd namespace of its own so every blob is fetched; sets PULL_RC, PULL_SECS
# (PULL_TIMEOUT: seconds before the pull is killed, default 600; exit 124 then)
ctr_pull() {
    local n=$1 ref=$2 t0=$EPOCHREALTIME
    PULL_RC=0
    nsx timeout --foreground "${PULL_TIMEOUT:-600}" ctr --address "$SOCK" -n "$n" images pull --snapshotter native \
        --hosts-dir "$HOSTS" "$ref" >"$T/logs/pull-$n.log" 2>&1 || PULL_RC=$?
    PULL_SECS=$(secs "$t0" "$EPOCHREALTIME")
    note "ctr -n $n images pull --hosts-dir \$HOSTS $ref -> exit $PULL_RC after ${PULL_SECS}s"
    [[ $PULL_RC == 0 ]] || tail -n 8 "$T/logs/pull-$n.log" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | indent || true
    ctrx -n "$n" images rm --sync "$ref" >/dev/null 2>&1 || true
}

# cri_pull REF: PullImage through the CRI ImageService, as kubelet does (the
# daemon fetches, with the CRI registry config_path); the image is removed
# again afterwards. Sets PULL_RC, PULL_SECS
CRI_N=0
cri_pull() {
    local ref=$1 t0=$EPOCHREALTIME
    CRI_N=$((CRI_N + 1))
    PULL_RC=0
    nsx timeout --foreground "${PULL_TIMEOUT:-600}" "$PY" "$HELPERS/cri.py" "$SOCK" pull "$ref" >"$T/logs/cri-$CRI_N.log" 2>&1 || PULL_RC=$?
    PULL_SECS=$(secs "$t0" "$EPOCHREALTIME")
    note "CRI PullImage $ref -> exit $PULL_RC after ${PULL_SECS}s"
    [[ $PULL_RC == 0 ]] || tail -n 8 "$T/logs/cri-$CRI_N.log" | indent || true
    nsx timeout --foreground 60 "$PY" "$HELPERS/cri.py" "$SOCK" rm "$ref" >/dev/null 2>&1 || true
    # the k8s.io namespace must be empty again, or the next CRI pull would skip blobs
    ctrx -n k8s.io images ls -q 2>/dev/null | while read -r img; do
        ctrx -n k8s.io images rm --sync "$img" >/dev/null 2>&1 || true
    done || true
}

# run_scenario N TITLE FUNCTION: a scenario passes when all its checks pass
# and nothing in it failed unexpectedly; it never aborts the suite
run_scenario() {
    local n=$1 title=$2 fn=$3 t0 rc dt
    if [[ -n "${E2E_ONLY:-}" && " $E2E_ONLY " != *" $n "* ]]; then
        TIMINGS+=("scenario $n  skip         $title (not in E2E_ONLY)")
        return 0
    fi
    echo
    log "scenario $n: $title"
    t0=$EPOCHREALTIME
    # in the background + wait: a signal to the script interrupts `wait` at
    # once and the trap tears everything down (the subshell is in the pid list)
    (
        set -eE
        trap 'printf "    FAIL  unexpected failure: \"%s\" exited %s (line %s)\n" "$BASH_COMMAND" "$?" "$LINENO"' ERR
        CHECK_FAILS=0
        "$fn"
        exit $((CHECK_FAILS > 0))
    ) &
    local sp=$!
    remember $sp
    rc=0
    wait $sp || rc=$?
    dt=$(secs "$t0" "$EPOCHREALTIME")
    if [[ $rc == 0 ]]; then
        PASSED=$((PASSED + 1))
        log "scenario $n: PASS (${dt}s)"
        TIMINGS+=("scenario $n  PASS  ${dt}s  $title")
    else
        FAILED=$((FAILED + 1))
        log "scenario $n: FAIL (${dt}s)"
        TIMINGS+=("scenario $n  FAIL  ${dt}s  $title")
    fi
}

# ---------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------
A=127.0.0.10:5000
B=127.0.0.11:5000
C=127.0.0.12:5000
IMG=library/test:1

# 1. agent started while the cache is down; the cache comes up 2 s later
scenario_1() {
    reset_hosts
    local f m_cache m_up apid t0 t_cache rc
    f=$(hosts_file $A)
    m_cache=$(mark "$T/logs/cache20.log")
    m_up=$(mark "$T/logs/up10.log")
    t0=$EPOCHREALTIME
    ip netns exec "$NS" timeout --foreground 120 "$AGENT_BIN" apply --hosts-dir "$HOSTS" --deadline 30s \
        "$A,http://127.0.0.20:5000,http://$A" >"$T/logs/agent-s1.out" 2>"$T/logs/agent-s1.err" &
    apid=$!
    remember $apid
    sleep 2
    check "no hosts.toml while the cache is down" test ! -e "$f"
    check "apply still waiting for the cache after 2 s" kill -0 $apid
    t_cache=$EPOCHREALTIME
    start_registry cache20 127.0.0.20 5000 "http://$A"
    note "cache 127.0.0.20:5000 answering $(secs "$t_cache" "$EPOCHREALTIME")s after its start"
    rc=0
    wait $apid || rc=$?
    local t_end=$EPOCHREALTIME
    note "agent apply --deadline 30s $A,http://127.0.0.20:5000,http://$A -> exit $rc after $(secs "$t0" "$t_end")s ($(secs "$t_cache" "$t_end")s after the cache started)"
    show_agent_output s1
    check "apply exits 0 once the file is written" test $rc == 0
    check "apply ends within 3 s of the cache starting" lt "$(secs "$t_cache" "$t_end")" 3
    check "hosts.toml written with our marker" first_line_is_marker "$f"
    check "hosts.toml names the cache" file_has "$f" '[host."http://127.0.0.20:5000"]'
    check "hosts.toml names the upstream server" file_has "$f" "server = \"http://$A\""
    [[ -f "$f" ]] && indent <"$f"

    local m=$(mark "$T/logs/cache20.log")
    ctr_pull e2e-s1 "$A/$IMG"
    check "ctr pull succeeds" test "$PULL_RC" == 0
    evidence "cache log: ctr resolved the tag through the cache (?ns=$A)" mirror_saw_tag "$T/logs/cache20.log" "$m" $A
    evidence "cache log: ctr fetched blobs through the cache (?ns=$A)" mirror_saw "$T/logs/cache20.log" "$m" $A blobs

    m=$(mark "$T/logs/cache20.log")
    cri_pull "$A/$IMG"
    check "CRI pull succeeds" test "$PULL_RC" == 0
    evidence "cache log: CRI resolved the tag through the cache (?ns=$A)" mirror_saw_tag "$T/logs/cache20.log" "$m" $A
    evidence "cache log: CRI fetched blobs through the cache (?ns=$A)" mirror_saw "$T/logs/cache20.log" "$m" $A blobs
    check "upstream log: no request from containerd itself" no_containerd_direct "$T/logs/up10.log" "$m_up"
    check "upstream log: the cache did fetch from it" test "$(since "$T/logs/up10.log" "$m_up" | grep -c 'GET /v2/library/test/')" -gt 0

    # contract extra (design 5): an unchanged file is not rewritten
    local before after
    before=$(stat -c %Y.%y "$f")
    sleep 1.1
    run_agent s1-again apply --hosts-dir "$HOSTS" --deadline 10s "$A,http://127.0.0.20:5000,http://$A"
    after=$(stat -c %Y.%y "$f")
    check "second apply exits 0" test $AGENT_RC == 0
    check "second apply leaves the unchanged file alone (mtime kept)" test "$before" == "$after"
}

DEAD_DIRECT_SECS=""
# 2. the cache is a dead cluster IP
scenario_2() {
    reset_hosts
    local f m_up
    f=$(hosts_file $B)
    run_agent s2 apply --hosts-dir "$HOSTS" --deadline 3s "$B,http://127.0.0.30:5000,http://$B"
    check "apply gives up at the deadline: exit 69" test $AGENT_RC == 69
    check "apply does not overrun the 3 s deadline by more than 1.5 s" lt "$AGENT_SECS" 4.5
    check "no hosts.toml written for $B" test ! -e "$f"

    m_up=$(mark "$T/logs/up11.log")
    ctr_pull e2e-s2 "$B/$IMG"
    local ctr_secs=$PULL_SECS
    check "ctr pull succeeds" test "$PULL_RC" == 0
    check "ctr pull is as fast as straight from the upstream (< 5 s)" lt "$ctr_secs" 5
    evidence "upstream log: the pull went straight to it (containerd user agent)" containerd_direct "$T/logs/up11.log" "$m_up"
    cri_pull "$B/$IMG"
    local cri_secs=$PULL_SECS
    check "CRI pull succeeds" test "$PULL_RC" == 0
    check "CRI pull is as fast as straight from the upstream (< 5 s)" lt "$cri_secs" 5
    DEAD_DIRECT_SECS="ctr ${ctr_secs}s, CRI ${cri_secs}s"

    if [[ "$E2E_SLOW" == 1 ]]; then
        note "E2E_SLOW=1: the same pulls with a hand-written hosts.toml naming the dead IP"
        mkdir -p "$HOSTS/$B"
        printf 'server = "http://%s"\n\n[host."http://127.0.0.30:5000"]\n  capabilities = ["pull", "resolve"]\n' "$B" >"$f"
        indent <"$f"
        ctr_pull e2e-s2-slow "$B/$IMG"
        local slow_ctr=$PULL_SECS slow_ctr_rc=$PULL_RC
        cri_pull "$B/$IMG"
        local slow_cri=$PULL_SECS slow_cri_rc=$PULL_RC
        rm -rf "${HOSTS:?}/$B"
        check "hand-written dead-mirror file: ctr pull still succeeds (falls back)" test "$slow_ctr_rc" == 0
        check "hand-written dead-mirror file: CRI pull still succeeds (falls back)" test "$slow_cri_rc" == 0
        check "hand-written dead-mirror file: ctr pull takes > 25 s (the dial timeout)" lt 25 "$slow_ctr"
        printf '\n    side by side, pull of %s/%s:\n' "$B" "$IMG"
        printf '      %-44s ctr %7ss   CRI %7ss\n' "no file (the agent wrote none):" "$ctr_secs" "$cri_secs"
        printf '      %-44s ctr %7ss   CRI %7ss\n\n' "hand-written file naming the dead IP:" "$slow_ctr" "$slow_cri"
        DEAD_DIRECT_SECS="$DEAD_DIRECT_SECS; with hand-written dead-mirror file: ctr ${slow_ctr}s, CRI ${slow_cri}s"
    else
        note "skipped: pull with a hand-written hosts.toml naming the dead IP (~30 s per request); set E2E_SLOW=1"
    fi
    measure "scenario 2 pull times (no file written): $DEAD_DIRECT_SECS"
}

# 3. a cache that accepts connections and never answers
scenario_3() {
    reset_hosts
    local f cfg=$T/s3.toml m_hang m_cache
    f=$(hosts_file $C)
    cat >"$cfg" <<EOF
[probe]
connect_timeout = "1s"
timeout = "2s"

[[registry]]
upstream = "$C"
server = "http://$C"

  [[registry.host]]
  url = "http://127.0.0.40:5000"

  [[registry.host]]
  url = "http://127.0.0.22:5000"
EOF
    m_hang=$(mark "$T/logs/hang40.log")
    run_agent s3 apply --config "$cfg" --hosts-dir "$HOSTS" --deadline 10s
    check "apply exits 0 (the live cache is enough)" test $AGENT_RC == 0
    check "apply is not held up by the silent host (< 4 s)" lt "$AGENT_SECS" 4
    check "the agent did try the silent host" grep -q '^accept' <(since "$T/logs/hang40.log" "$m_hang")
    check "hosts.toml lists the live cache" file_has "$f" '[host."http://127.0.0.22:5000"]'
    check "hosts.toml leaves the silent host out" file_lacks "$f" '127.0.0.40'
    [[ -f "$f" ]] && indent <"$f"

    m_hang=$(mark "$T/logs/hang40.log")
    m_cache=$(mark "$T/logs/cache22.log")
    ctr_pull e2e-s3 "$C/$IMG"
    check "ctr pull succeeds" test "$PULL_RC" == 0
    check "ctr pull is quick (< 5 s)" lt "$PULL_SECS" 5
    evidence "cache log: ctr pulled through the live cache (?ns=$C)" mirror_saw "$T/logs/cache22.log" "$m_cache" $C blobs
    m_cache=$(mark "$T/logs/cache22.log")
    cri_pull "$C/$IMG"
    check "CRI pull succeeds" test "$PULL_RC" == 0
    evidence "cache log: CRI pulled through the live cache (?ns=$C)" mirror_saw "$T/logs/cache22.log" "$m_cache" $C blobs
    check "containerd never connected to the silent host" test -z "$(since "$T/logs/hang40.log" "$m_hang" | grep '^accept' || true)"

    # the silent host alone: the probe's whole-request timeout must call it down
    reset_hosts
    cat >"$T/s3-alone.toml" <<EOF
[probe]
connect_timeout = "1s"
timeout = "2s"

[[registry]]
upstream = "$C"
server = "http://$C"

  [[registry.host]]
  url = "http://127.0.0.40:5000"
EOF
    m_hang=$(mark "$T/logs/hang40.log")
    run_agent s3-alone apply --config "$T/s3-alone.toml" --hosts-dir "$HOSTS" --deadline 4s
    check "silent host alone: apply gives up at the deadline (exit 69)" test $AGENT_RC == 69
    check "silent host alone: the hanging connection does not hold apply past the deadline (< 5.5 s)" lt "$AGENT_SECS" 5.5
    check "silent host alone: no hosts.toml written" test ! -e "$f"
    check "silent host alone: probed more than once (each attempt timed out and was retried)" \
        test "$(since "$T/logs/hang40.log" "$m_hang" | grep -c '^accept' || true)" -gt 1
}

# 4. several upstreams at once, one of them with a dead cache
scenario_4() {
    reset_hosts
    local apid t0 rc t_both="" m20 m21 m_up12
    t0=$EPOCHREALTIME
    ip netns exec "$NS" timeout --foreground 120 "$AGENT_BIN" apply --hosts-dir "$HOSTS" --deadline 4s \
        "$A,http://127.0.0.20:5000,http://$A" \
        "$B,http://127.0.0.21:5000,http://$B" \
        "$C,http://127.0.0.30:5000,http://$C" >"$T/logs/agent-s4.out" 2>"$T/logs/agent-s4.err" &
    apid=$!
    remember $apid
    while kill -0 $apid 2>/dev/null; do
        if [[ -z "$t_both" && -f "$(hosts_file $A)" && -f "$(hosts_file $B)" ]]; then
            t_both=$(secs "$t0" "$EPOCHREALTIME")
        fi
        sleep 0.05
    done
    rc=0
    wait $apid || rc=$?
    note "agent apply --deadline 4s (3 upstreams, $C's cache dead) -> exit $rc after $(secs "$t0" "$EPOCHREALTIME")s; live files present after ${t_both:-never (while it ran)}s"
    show_agent_output s4
    check "apply exits 69 (deadline; $C never configured)" test $rc == 69
    check "the live upstreams' files were written while apply still waited (< 2 s)" lt "${t_both:-99}" 2
    check "$A configured with its cache" file_has "$(hosts_file $A)" '[host."http://127.0.0.20:5000"]'
    check "$B configured with its cache" file_has "$(hosts_file $B)" '[host."http://127.0.0.21:5000"]'
    check "no file for $C (dead cache)" test ! -e "$(hosts_file $C)"

    m20=$(mark "$T/logs/cache20.log")
    m21=$(mark "$T/logs/cache21.log")
    m_up12=$(mark "$T/logs/up12.log")
    local m_up10 m_up11
    m_up10=$(mark "$T/logs/up10.log")
    m_up11=$(mark "$T/logs/up11.log")
    local t_pulls=$EPOCHREALTIME ok=0
    ctr_pull e2e-s4 "$A/$IMG"; [[ $PULL_RC == 0 ]] && ok=$((ok + 1))
    ctr_pull e2e-s4 "$B/$IMG"; [[ $PULL_RC == 0 ]] && ok=$((ok + 1))
    ctr_pull e2e-s4 "$C/$IMG"; [[ $PULL_RC == 0 ]] && ok=$((ok + 1))
    check "all three ctr pulls succeed" test $ok == 3
    check "three ctr pulls take < 8 s together" lt "$(secs "$t_pulls" "$EPOCHREALTIME")" 8
    evidence "cache of $A served containerd (?ns=$A)" mirror_saw "$T/logs/cache20.log" "$m20" $A blobs
    evidence "cache of $B served containerd (?ns=$B)" mirror_saw "$T/logs/cache21.log" "$m21" $B blobs
    evidence "$C pulled straight from its upstream" containerd_direct "$T/logs/up12.log" "$m_up12"
    m20=$(mark "$T/logs/cache20.log")
    m21=$(mark "$T/logs/cache21.log")
    ok=0
    cri_pull "$A/$IMG"; [[ $PULL_RC == 0 ]] && ok=$((ok + 1))
    cri_pull "$B/$IMG"; [[ $PULL_RC == 0 ]] && ok=$((ok + 1))
    cri_pull "$C/$IMG"; [[ $PULL_RC == 0 ]] && ok=$((ok + 1))
    check "all three CRI pulls succeed" test $ok == 3
    evidence "CRI: cache of $A served containerd (?ns=$A)" mirror_saw "$T/logs/cache20.log" "$m20" $A blobs
    evidence "CRI: cache of $B served containerd (?ns=$B)" mirror_saw "$T/logs/cache21.log" "$m21" $B blobs
    check "upstreams $A and $B saw no request from containerd itself" \
        eval "no_containerd_direct '$T/logs/up10.log' $m_up10 && no_containerd_direct '$T/logs/up11.log' $m_up11"
}

# 5. containerd accepts every file variant we write
# variant NAME CONFIG_BODY EXPECT_IN_FILE... ; then the caller checks the evidence
s5_apply() {
    local name=$1 body=$2
    shift 2
    reset_hosts
    local cfg=$T/s5-$name.toml
    printf '%s\n' "$body" >"$cfg"
    run_agent "s5-$name" apply --config "$cfg" --hosts-dir "$HOSTS" --deadline 10s
    check "[$name] apply exits 0" test $AGENT_RC == 0
    local f e
    local up=${S5_UPSTREAM:-$A}
    f=$(hosts_file "$up")
    check "[$name] file written under the upstream's dir ($up/hosts.toml)" first_line_is_marker "$f"
    for e in "$@"; do
        check "[$name] file has: $e" file_has "$f" "$e"
    done
    [[ -f "$f" ]] && indent <"$f"
    return 0
}
# s5_pull NAME MIRROR_LOG_CHECK...: a ctr and a CRI pull, each must leave the evidence
s5_pull() {
    local name=$1 kind=$2 logf=$3
    shift 3
    local m
    m=$(mark "$logf")
    ctr_pull "e2e-s5-$name" "$A/$IMG"
    check "[$name] ctr pull succeeds" test "$PULL_RC" == 0
    evidence "[$name] mirror log proves ctr went through it" "$kind" "$logf" "$m" "$@"
    m=$(mark "$logf")
    cri_pull "$A/$IMG"
    check "[$name] CRI pull succeeds" test "$PULL_RC" == 0
    evidence "[$name] mirror log proves CRI went through it" "$kind" "$logf" "$m" "$@"
}
both_blob_and_tag() { mirror_saw "$1" "$2" "$3" blobs && mirror_saw_tag "$1" "$2" "$3"; }

scenario_5() {
    local head="[[registry]]
upstream = \"$A\"
server = \"http://$A\"
"
    local m_up
    m_up=$(mark "$T/logs/up10.log")

    # dial_timeout (plain http cache)
    s5_apply dial_timeout "$head
  [[registry.host]]
  url = \"http://127.0.0.20:5000\"
  dial_timeout = \"3s\"" '[host."http://127.0.0.20:5000"]' 'dial_timeout = "3s"'
    s5_pull dial_timeout both_blob_and_tag "$T/logs/cache20.log" $A

    # ca: https cache whose certificate comes from a CA made at test time
    s5_apply ca "$head
  [[registry.host]]
  url = \"https://127.0.0.50:5443\"
  ca = [\"$T/tls/ca.pem\"]" '[host."https://127.0.0.50:5443"]' "$T/tls/ca.pem"
    s5_pull ca both_blob_and_tag "$T/logs/cache50.log" $A

    # skip_verify: the same https cache, certificate not verified
    s5_apply skip_verify "$head
  [[registry.host]]
  url = \"https://127.0.0.50:5443\"
  skip_verify = true" '[host."https://127.0.0.50:5443"]' 'skip_verify = true'
    s5_pull skip_verify both_blob_and_tag "$T/logs/cache50.log" $A

    # client: a cache that demands a client certificate (mutual TLS)
    local rc=0
    nsx curl -s -o /dev/null --max-time 2 --cacert "$T/tls/ca.pem" https://127.0.0.51:5443/v2/ || rc=$?
    check "[client] the mutual-TLS cache refuses a client without certificate" test $rc != 0
    s5_apply client "$head
  [[registry.host]]
  url = \"https://127.0.0.51:5443\"
  ca = [\"$T/tls/ca.pem\"]
  client = [[\"$T/tls/client.pem\", \"$T/tls/client.key\"]]" '[host."https://127.0.0.51:5443"]' "$T/tls/client.pem"
    s5_pull client both_blob_and_tag "$T/logs/cache51.log" $A

    # override_path: the mirror lives below /cache/docker (no /v2 appended)
    s5_apply override_path "$head
  [[registry.host]]
  url = \"http://127.0.0.60:5000/cache/docker\"
  override_path = true" '[host."http://127.0.0.60:5000/cache/docker"]' 'override_path = true'
    s5_pull override_path proxy_saw "$T/logs/proxy60.log" $A '/cache/docker/library/test/manifests/1'

    # header: the proxy records every header containerd sends
    s5_apply header "$head
  [[registry.host]]
  url = \"http://127.0.0.61:5000\"
  [registry.host.header]
  X-E2E-Token = [\"s3cr3t \\\"quoted\\\"\"]
  X-E2E-Multi = [\"one\", \"two\"]" '[host."http://127.0.0.61:5000".header]' 'X-E2E-Token'
    s5_pull header proxy_saw "$T/logs/proxy61.log" $A '/v2/library/test/manifests/1' X-E2E-Token 's3cr3t "quoted"'
    local m
    m=$(mark "$T/logs/proxy61.log")
    ctr_pull e2e-s5-header2 "$A/$IMG"
    check "[header] both values of a multi-value header arrive" \
        eval "proxy_saw '$T/logs/proxy61.log' $m $A '/v2/library/test/manifests/1' X-E2E-Multi one && proxy_saw '$T/logs/proxy61.log' $m $A '/v2/library/test/manifests/1' X-E2E-Multi two"

    # several hosts, all up: apply must list every one of them, in config order
    local several_hosts="
  [[registry.host]]
  url = \"http://127.0.0.20:5000\"
  capabilities = [\"pull\"]

  [[registry.host]]
  url = \"http://127.0.0.23:5000\"
  capabilities = [\"pull\", \"resolve\"]"
    local several="$head$several_hosts"
    s5_apply several_hosts "$several" '[host."http://127.0.0.20:5000"]' '[host."http://127.0.0.23:5000"]' 'capabilities = ["pull"]'
    check "[several_hosts] hosts in config order" in_order "$(hosts_file $A)" 127.0.0.20:5000 127.0.0.23:5000

    # the same hosts without probing (readiness_probe = false: written at once),
    # so containerd's handling of a several-host file is proven even when the
    # probed variant above does not list both: tags resolve on the second
    # host, blobs come from the first (pull only)
    several="${head}readiness_probe = false
$several_hosts"
    s5_apply several_hosts_unprobed "$several" '[host."http://127.0.0.20:5000"]' '[host."http://127.0.0.23:5000"]' 'capabilities = ["pull"]'
    check "[several_hosts_unprobed] hosts in config order" in_order "$(hosts_file $A)" 127.0.0.20:5000 127.0.0.23:5000
    local m20 m23
    m20=$(mark "$T/logs/cache20.log")
    m23=$(mark "$T/logs/cache23.log")
    ctr_pull e2e-s5-several "$A/$IMG"
    check "[several_hosts_unprobed] ctr pull succeeds" test "$PULL_RC" == 0
    evidence "[several_hosts_unprobed] tag resolved on the resolve host (127.0.0.23)" mirror_saw_tag "$T/logs/cache23.log" "$m23" $A
    evidence "[several_hosts_unprobed] blobs fetched from the first, pull-only host (127.0.0.20)" mirror_saw "$T/logs/cache20.log" "$m20" $A blobs
    check "[several_hosts_unprobed] no tag resolution on the pull-only host" eval "! mirror_saw_tag '$T/logs/cache20.log' $m20 $A"
    m20=$(mark "$T/logs/cache20.log")
    m23=$(mark "$T/logs/cache23.log")
    cri_pull "$A/$IMG"
    check "[several_hosts_unprobed] CRI pull succeeds" test "$PULL_RC" == 0
    check "[several_hosts_unprobed] CRI: tag resolved on 127.0.0.23, blobs from 127.0.0.20" \
        eval "mirror_saw_tag '$T/logs/cache23.log' $m23 $A && mirror_saw '$T/logs/cache20.log' $m20 $A blobs"

    # _default: the file containerd uses for every registry without a dir of
    # its own; the fallback is then the image's registry itself (no server line)
    S5_UPSTREAM=_default s5_apply _default "[[registry]]
upstream = \"_default\"

  [[registry.host]]
  url = \"http://127.0.0.22:5000\"" '[host."http://127.0.0.22:5000"]'
    check "[_default] no server line (the fallback is each image's own registry)" file_lacks "$(hosts_file _default)" 'server ='
    local m22 m_up12
    m22=$(mark "$T/logs/cache22.log")
    m_up12=$(mark "$T/logs/up12.log")
    ctr_pull e2e-s5-default "$C/$IMG"
    check "[_default] ctr pull of $C/$IMG succeeds" test "$PULL_RC" == 0
    evidence "[_default] went through the _default mirror (?ns=$C)" both_blob_and_tag "$T/logs/cache22.log" "$m22" $C
    m22=$(mark "$T/logs/cache22.log")
    cri_pull "$C/$IMG"
    check "[_default] CRI pull of $C/$IMG succeeds" test "$PULL_RC" == 0
    evidence "[_default] CRI went through the _default mirror (?ns=$C)" both_blob_and_tag "$T/logs/cache22.log" "$m22" $C
    check "[_default] upstream $C saw no request from containerd itself" no_containerd_direct "$T/logs/up12.log" "$m_up12"

    # bracketed IPv6 upstream: the dir is named "[::1]:5010" verbatim; the
    # mirror (a cache of A) serves the image, so that upstream need not exist
    local V6='[::1]:5010'
    S5_UPSTREAM=$V6 s5_apply ipv6_upstream "[[registry]]
upstream = \"$V6\"
server = \"http://$V6\"

  [[registry.host]]
  url = \"http://127.0.0.23:5000\"" '[host."http://127.0.0.23:5000"]' "server = \"http://$V6\""
    m23=$(mark "$T/logs/cache23.log")
    ctr_pull e2e-s5-v6 "$V6/$IMG"
    check "[ipv6_upstream] ctr pull of $V6/$IMG succeeds" test "$PULL_RC" == 0
    evidence "[ipv6_upstream] went through the mirror (?ns=$V6)" both_blob_and_tag "$T/logs/cache23.log" "$m23" "$V6"
    m23=$(mark "$T/logs/cache23.log")
    cri_pull "$V6/$IMG"
    if [[ $PULL_RC != 0 ]] && grep -q 'invalid reference format' "$T/logs/cri-$CRI_N.log"; then
        # containerd 1.6's CRI parses references with docker/distribution's
        # reference package, which has no IPv6 literals; ctr (above) does
        note "[ipv6_upstream] CRI half skipped: containerd 1.6's CRI rejects the reference itself (invalid reference format, before any hosts.toml is read)"
    else
        check "[ipv6_upstream] CRI pull of $V6/$IMG succeeds" test "$PULL_RC" == 0
        evidence "[ipv6_upstream] CRI went through the mirror (?ns=$V6)" both_blob_and_tag "$T/logs/cache23.log" "$m23" "$V6"
    fi

    note "[host:port upstream] every variant above uses the upstream $A: dir '$A', server http://$A"
    check "[host:port upstream] upstream saw no request from containerd in any variant" no_containerd_direct "$T/logs/up10.log" "$m_up"
}

# 6. a hand-written hosts.toml is backed up and comes back
scenario_6() {
    reset_hosts
    local f ref=$T/s6-foreign.toml cfg_both=$T/s6-both.toml cfg_a=$T/s6-a.toml
    f=$(hosts_file $B)
    mkdir -p "$HOSTS/$B"
    cat >"$ref" <<EOF
# written by hand by an operator; not ours
server = "http://$B"

[host."http://127.0.0.21:5000"]
  capabilities = ["pull", "resolve"]
  # a comment the agent must keep
EOF
    cp "$ref" "$f"
    cat >"$cfg_a" <<EOF
[[registry]]
upstream = "$A"
server = "http://$A"
  [[registry.host]]
  url = "http://127.0.0.20:5000"
EOF
    cat "$cfg_a" >"$cfg_both"
    cat >>"$cfg_both" <<EOF

[[registry]]
upstream = "$B"
server = "http://$B"
  [[registry.host]]
  url = "http://127.0.0.21:5000"
EOF
    run_agent s6-1 apply --config "$cfg_both" --hosts-dir "$HOSTS" --deadline 10s
    check "apply exits 0" test $AGENT_RC == 0
    check "the foreign file sits in hosts.toml.orig, byte for byte" cmp -s "$ref" "$f.orig"
    check "hosts.toml is now ours" first_line_is_marker "$f"
    local m
    m=$(mark "$T/logs/cache21.log")
    ctr_pull e2e-s6 "$B/$IMG"
    check "ctr pull through our file works" eval "[[ $PULL_RC == 0 ]] && mirror_saw '$T/logs/cache21.log' $m $B blobs"

    run_agent s6-again apply --config "$cfg_both" --hosts-dir "$HOSTS" --deadline 10s
    check "a second apply keeps the backup as it is" cmp -s "$ref" "$f.orig"

    run_agent s6-2 apply --config "$cfg_a" --hosts-dir "$HOSTS" --deadline 10s
    check "apply without $B exits 0" test $AGENT_RC == 0
    check "the foreign file is back at hosts.toml, byte for byte" cmp -s "$ref" "$f"
    check "no hosts.toml.orig left" test ! -e "$f.orig"
    check "$A's file is still ours" first_line_is_marker "$(hosts_file $A)"

    # the remove half
    if "$AGENT_BIN" --help 2>&1 | grep -Eq '^[[:space:]]+remove([[:space:]]|$)'; then
        run_agent s6-3 apply --config "$cfg_both" --hosts-dir "$HOSTS" --deadline 10s
        check "apply with $B again: backup made again" cmp -s "$ref" "$f.orig"
        run_agent s6-remove remove --config "$cfg_both" --hosts-dir "$HOSTS"
        if [[ $AGENT_RC == 64 ]]; then
            note "SKIPPED the remove half: 'remove' answered with a usage error (exit 64)"
        else
            check "remove exits 0" test $AGENT_RC == 0
            check "remove puts the foreign file back, byte for byte" cmp -s "$ref" "$f"
            check "remove leaves no hosts.toml.orig" test ! -e "$f.orig"
            check "remove deletes our file for $A" test ! -e "$(hosts_file $A)"
            check "remove deletes the directory it created for $A" test ! -e "$HOSTS/$A"
        fi
    else
        note "SKIPPED the remove half: the agent has no 'remove' subcommand yet (not in --help)"
    fi
}

# ---------------------------------------------------------------------------
# helpers of scenarios 7 and 8
# ---------------------------------------------------------------------------
# make_dead ADDR: every packet to ADDR vanishes (a cluster IP whose endpoints
# are gone: a dial hangs until its own timeout); make_alive ADDR undoes it.
# The rules live in the namespace's own tables only.
make_dead() {
    nsx iptables -w -I INPUT -d "$1/32" -j DROP
    nsx iptables -w -I OUTPUT -d "$1/32" -j DROP
}
make_alive() {
    while nsx iptables -w -D INPUT -d "$1/32" -j DROP 2>/dev/null; do :; done
    while nsx iptables -w -D OUTPUT -d "$1/32" -j DROP 2>/dev/null; do :; done
}
dial_hangs() { # ADDR PORT: a TCP connect does not finish within 1.5 s
    local rc=0
    nsx timeout --foreground 1.5 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null || rc=$?
    [[ $rc == 124 ]]
}
answers() { nsx curl -s -o /dev/null --noproxy '*' --max-time 1 "$1/v2/"; }

# wait_for T0 LIMIT CMD...: poll CMD every 50 ms until it holds; WAITED is then
# the seconds from T0 (an $EPOCHREALTIME) to the poll that saw it. After LIMIT
# seconds from T0: WAITED=never, status 1.
wait_for() {
    local t0=$1 limit=$2
    shift 2
    while :; do
        if "$@"; then
            WAITED=$(secs "$t0" "$EPOCHREALTIME")
            return 0
        fi
        if ! lt "$(secs "$t0" "$EPOCHREALTIME")" "$limit"; then
            WAITED=never
            return 1
        fi
        sleep 0.05
    done
}

# snapshot DIR: every entry with type, mode, owner, mtime (ns), size and link
# target, then the sha256 of every file: two equal snapshots = nothing changed
snapshot() {
    (
        cd "$1"
        find . -printf '%p %y %m %U:%G %T@ %s %l\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    )
}

# out_first NAME: first line of run_agent NAME's stdout; out_has NAME TEXT
out_first() { head -n1 "$T/logs/agent-$1.out" 2>/dev/null; }
first_line_matches() { out_first "$1" | grep -Eq -- "$2"; }
out_has() { grep -qF -- "$2" "$T/logs/agent-$1.out" "$T/logs/agent-$1.err" 2>/dev/null; }

# measure TEXT: a figure for the closing timings table (scenarios run in subshells)
measure() { echo "$*" >>"$T/measurements"; }

# 7. the operator tools against the real containerd config
# s7_json FILE HOST_URL: check --output json parses and describes the registry
# and host; prints a one-line summary
s7_json() {
    "$PY" - "$1" "$A" "$2" <<'EOF'
import json, sys
path, upstream, url = sys.argv[1:4]
r = json.load(open(path))
regs = {x["upstream"]: x for x in r["registries"]}
reg = regs[upstream]
hosts = {h["url"]: h for h in reg["hosts"]}
h = hosts[url]
print("state=%s exit_code=%s; %s: file_state=%s state=%s; host %s: state=%s reason=%r latency_ms=%s in_file=%s"
      % (r["state"], r.get("exit_code"), upstream, reg.get("file_state"), reg.get("state"),
         url, h["state"], h.get("reason"), h.get("latency_ms"), h.get("in_file")))
ok = (r["state"] == "CRITICAL" and h["state"] == "down" and h.get("reason")
      and reg.get("file") and "latency_ms" in h)
sys.exit(0 if ok else 1)
EOF
}

scenario_7() {
    reset_hosts
    trap 'make_alive 127.0.0.24' EXIT
    local ctd=$T/containerd/config.toml f one=$T/s7-one.toml two=$T/s7-two.toml summary
    f=$(hosts_file $A)
    local head="hosts_dir = \"$HOSTS\"
containerd_config = \"$ctd\"

[[registry]]
upstream = \"$A\"
server = \"http://$A\"
"
    printf '%s\n  [[registry.host]]\n  url = "http://127.0.0.24:5000"\n' "$head" >"$one"
    printf '%s\n  [[registry.host]]\n  url = "http://127.0.0.24:5000"\n\n  [[registry.host]]\n  url = "http://127.0.0.23:5000"\n' \
        "$head" >"$two"
    note "(a) check, with the config of the containerd that serves this suite: $ctd ($(grep -E '^\s*config_path' "$ctd" | sed 's/^ *//'))"

    run_agent s7-apply apply --config "$one" --deadline 10s
    check "apply while the cache 127.0.0.24 is alive exits 0" test $AGENT_RC == 0
    check "the file names the cache" file_has "$f" '[host."http://127.0.0.24:5000"]'
    run_agent s7-check-ok check --config "$one"
    check "check with everything fine: exit 0" test $AGENT_RC == 0
    check "check: first line starts with OK" first_line_matches s7-check-ok '^OK'

    make_dead 127.0.0.24
    note "iptables DROP for 127.0.0.24 inside the namespace: the cache's IP is dead, our file still names it"
    check "127.0.0.24 is dead (a dial hangs)" dial_hangs 127.0.0.24 5000
    run_agent s7-check-dead check --config "$one"
    local t_crit=$AGENT_SECS
    check "check while the file names the dead cache: exit 2 (CRITICAL)" test $AGENT_RC == 2
    check "check: first line starts with CRITICAL" first_line_matches s7-check-dead '^CRITICAL'
    check "check: first line names the host" first_line_matches s7-check-dead '127\.0\.0\.24:5000'
    check "check is bounded by the probe timeout (< 4 s)" lt "$AGENT_SECS" 4
    run_agent s7-check-json check --config "$one" --output json
    check "check --output json: exit 2" test $AGENT_RC == 2
    check "check --output json: parses (python3 -m json.tool)" eval "'$PY' -m json.tool <'$T/logs/agent-s7-check-json.out' >/dev/null"
    summary=$(s7_json "$T/logs/agent-s7-check-json.out" http://127.0.0.24:5000 2>&1) && rc=0 || rc=$?
    note "json: $summary"
    check "check --output json: CRITICAL, registry $A, host http://127.0.0.24:5000 down with a reason" test "$rc" == 0

    # the agent fixes it: a second, live cache is configured; apply leaves the dead one out
    run_agent s7-apply-two apply --config "$two" --deadline 10s
    check "apply (127.0.0.24 dead, 127.0.0.23 alive) exits 0" test $AGENT_RC == 0
    check "the file now names only the live cache" \
        eval "file_has '$f' '[host.\"http://127.0.0.23:5000\"]' && file_lacks '$f' 127.0.0.24"
    run_agent s7-check-warn check --config "$two"
    check "check with the dead cache left out: exit 1 (WARNING: degraded but safe)" test $AGENT_RC == 1
    check "check: first line starts with WARNING and names the dead host" \
        eval "first_line_matches s7-check-warn '^WARNING' && first_line_matches s7-check-warn '127\.0\.0\.24:5000'"

    # the cache heals; apply puts it back
    make_alive 127.0.0.24
    check "127.0.0.24 answers again" answers http://127.0.0.24:5000
    run_agent s7-apply-healed apply --config "$two" --deadline 10s
    check "apply after the cache healed exits 0" test $AGENT_RC == 0
    check "the file names both caches, in config order" in_order "$f" 127.0.0.24:5000 127.0.0.23:5000
    run_agent s7-check-healed check --config "$two"
    check "check after the agent fixed the file: exit 0" test $AGENT_RC == 0
    check "check: first line starts with OK" first_line_matches s7-check-healed '^OK'
    measure "scenario 7 check: OK/CRITICAL/WARNING/OK; check with a dead host in the file took ${t_crit}s"

    # negative: containerd configs that do not make containerd read hosts_dir
    local noconf=$T/s7-containerd-no-config-path.toml
    grep -v 'config_path' "$ctd" >"$noconf"
    sed "s|^containerd_config = .*|containerd_config = \"$noconf\"|" "$two" >"$T/s7-noconf.toml"
    run_agent s7-check-noconf check --config "$T/s7-noconf.toml"
    check "containerd config without config_path: exit 2 (CRITICAL)" test $AGENT_RC == 2
    check "check: first line starts with CRITICAL" first_line_matches s7-check-noconf '^CRITICAL'
    check "check: says config_path is what is missing" out_has s7-check-noconf config_path
    sed "s|^containerd_config = .*|containerd_config = \"$T/no-such-containerd-config.toml\"|" "$two" >"$T/s7-missing.toml"
    run_agent s7-check-missing check --config "$T/s7-missing.toml"
    check "missing containerd config file: exit 2 (CRITICAL)" test $AGENT_RC == 2
    check "check: first line starts with CRITICAL" first_line_matches s7-check-missing '^CRITICAL'

    note "(b) plan on a node with a foreign hand-written hosts.toml"
    reset_hosts
    local fb fc ref=$T/s7-foreign.toml cfg=$T/s7-plan.toml
    fb=$(hosts_file $B)
    fc=$(hosts_file $C)
    mkdir -p "$HOSTS/$B" "$HOSTS/$C"
    cat >"$ref" <<EOF
# hand-written by an operator before the agent came; not ours
server = "http://$B"

[host."http://127.0.0.21:5000"]
  capabilities = ["pull"]
EOF
    cp "$ref" "$fb"
    chmod 640 "$fb"
    # a file of ours for an upstream that left the config
    printf '%s\nserver = "http://%s"\n\n[host."http://127.0.0.22:5000"]\n  capabilities = ["pull", "resolve"]\n  dial_timeout = "1s"\n' \
        "$MARKER" "$C" >"$fc"
    touch -d '2020-01-02 03:04:05.123456789' "$fb" "$fc" "$HOSTS/$B" "$HOSTS/$C" "$HOSTS"
    cat >"$cfg" <<EOF
hosts_dir = "$HOSTS"
containerd_config = "$ctd"

[[registry]]
upstream = "$A"
server = "http://$A"

  [[registry.host]]
  url = "http://127.0.0.24:5000"

[[registry]]
upstream = "$B"
server = "http://$B"

  [[registry.host]]
  url = "http://127.0.0.21:5000"
EOF
    snapshot "$HOSTS" >"$T/s7-before"
    run_agent s7-plan plan --config "$cfg"
    check "plan exits 0 (no --exit-code)" test $AGENT_RC == 0
    check "plan: \"would back up foreign file to hosts.toml.orig\"" out_has s7-plan 'would back up foreign file to hosts.toml.orig'
    check "plan: a unified diff (---/+++ header and @@ hunk)" \
        eval "grep -Eq '^ *--- ' '$T/logs/agent-s7-plan.out' && grep -Eq '^ *\+\+\+ ' '$T/logs/agent-s7-plan.out' && grep -Eq '^ *@@ ' '$T/logs/agent-s7-plan.out'"
    check "plan: the diff adds our marker line" grep -qF -- "+$MARKER" "$T/logs/agent-s7-plan.out"
    # the diff runs from what containerd reads now (the foreign file) to what apply would write
    check "plan: for $B the backup comes first, then a diff from the foreign file to ours" \
        eval "grep -A3 -F 'would back up foreign file to hosts.toml.orig' '$T/logs/agent-s7-plan.out' | grep -qF -- 'not ours: backed up to hosts.toml.orig)'"
    check "plan: would create the file for $A" grep -Eq 'would create' "$T/logs/agent-s7-plan.out"
    check "plan: would remove our file for $C (left the config)" grep -Eq 'would remove' "$T/logs/agent-s7-plan.out"
    note "full plan output ($(wc -l <"$T/logs/agent-s7-plan.out") lines): $T/logs/agent-s7-plan.out"
    local plan_secs=$AGENT_SECS
    run_agent s7-plan-x plan --config "$cfg" --exit-code
    check "plan --exit-code with changes pending: exit 1" test $AGENT_RC == 1
    snapshot "$HOSTS" >"$T/s7-after"
    check "plan changed nothing: the hosts dir (entries, modes, owners, mtimes, sizes, sha256) is identical" \
        cmp -s "$T/s7-before" "$T/s7-after"
    diff "$T/s7-before" "$T/s7-after" | indent || true
    check "no hosts.toml.orig made by plan" test ! -e "$fb.orig"

    run_agent s7-plan-apply apply --config "$cfg" --deadline 10s
    check "apply exits 0" test $AGENT_RC == 0
    check "apply backed up the foreign file byte for byte" cmp -s "$ref" "$fb.orig"
    check "apply removed our file for $C" test ! -e "$fc"
    snapshot "$HOSTS" >"$T/s7-before2"
    run_agent s7-plan-clean plan --config "$cfg" --exit-code
    check "plan --exit-code after apply: exit 0 (nothing pending)" test $AGENT_RC == 0
    snapshot "$HOSTS" >"$T/s7-after2"
    check "that plan changed nothing either" cmp -s "$T/s7-before2" "$T/s7-after2"
    measure "scenario 7 plan (3 hosts, all up): ${plan_secs}s"
}

# 8. watch with real containerd: dead IP, recovery, hanging cache
S8_CFG=""
S8_PROM=""
S8_WPID=""
S8_HANG_PID=""
S8_H=http://127.0.0.25:5000
# (runs as the scenario's EXIT trap, under set -e: nothing in it may fail)
s8_undo() {
    make_alive 127.0.0.25
    if [[ -n "$S8_WPID" ]]; then kill -TERM "$S8_WPID" 2>/dev/null || true; fi
    if [[ -n "$S8_HANG_PID" ]]; then kill -TERM "$S8_HANG_PID" 2>/dev/null || true; fi
    return 0
}
# s8_watch NAME: start `watch` in the namespace (json log in $T/logs/watch-NAME.err)
s8_watch() {
    ip netns exec "$NS" setsid "$AGENT_BIN" watch --config "$S8_CFG" --metrics-file "$S8_PROM" --log-format json \
        >"$T/logs/watch-$1.out" 2>"$T/logs/watch-$1.err" &
    S8_WPID=$!
    remember "$S8_WPID"
}
# s8_stop NAME: SIGTERM the watcher; sets STOP_RC (124: still running after 10 s)
s8_stop() {
    local t0=$EPOCHREALTIME
    kill -TERM "$S8_WPID"
    if wait_for "$t0" 10 exited "$S8_WPID"; then
        STOP_RC=0
        wait "$S8_WPID" || STOP_RC=$?
    else
        STOP_RC=124
    fi
    note "SIGTERM to watch (pid $S8_WPID) -> exit $STOP_RC after $(secs "$t0" "$EPOCHREALTIME")s"
    S8_WPID=""
}
# logt LOG SINCE PATTERN: the time of the watcher's first line about our host matching PATTERN
logt() { "$PY" "$HELPERS/watchlog.py" "$1" "$2" "$S8_H" "$3" | cut -f1; }
# logline LOG SINCE PATTERN: that line's time and message
logline() { "$PY" "$HELPERS/watchlog.py" "$1" "$2" "$S8_H" "$3" | cut -f2- | cut -c1-300; }
# exited PID: the process is gone (or a zombie nobody reaped yet)
exited() { [[ ! -d /proc/$1 ]] || [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" == Z ]]; }
metric() { # NAME VALUE: the metrics file has the sample for our host
    [[ -f "$S8_PROM" ]] && grep -qxF -- "configure_containerd_registries_$1{upstream=\"$B\",host=\"$S8_H\"} $2" "$S8_PROM"
}
file_in_place() { [[ -f "$S8_PROM" ]] && grep -qxF -- "configure_containerd_registries_registry_file_in_place{upstream=\"$B\"} $1" "$S8_PROM"; }
names_cache() { file_has "$(hosts_file $B)" "[host.\"$S8_H\"]"; }
no_file() { [[ ! -e "$(hosts_file $B)" ]]; }
# s8_pulls WHAT: ctr and CRI pull of B's image, through the cache (WHAT=cache)
# or straight from the upstream (WHAT=direct), each < 5 s; sets S8_PULLS
s8_pulls() {
    local what=$1 m m_up
    m=$(mark "$T/logs/cache25.log")
    m_up=$(mark "$T/logs/up11.log")
    ctr_pull "e2e-s8-$what" "$B/$IMG"
    local c=$PULL_SECS
    check "ctr pull succeeds in < 5 s" eval "[[ $PULL_RC == 0 ]] && lt $PULL_SECS 5"
    if [[ $what == cache ]]; then
        evidence "cache log: ctr went through the cache (?ns=$B)" mirror_saw "$T/logs/cache25.log" "$m" $B blobs
    else
        evidence "upstream log: ctr went straight to $B" containerd_direct "$T/logs/up11.log" "$m_up"
    fi
    m=$(mark "$T/logs/cache25.log")
    m_up=$(mark "$T/logs/up11.log")
    cri_pull "$B/$IMG"
    check "CRI pull succeeds in < 5 s" eval "[[ $PULL_RC == 0 ]] && lt $PULL_SECS 5"
    if [[ $what == cache ]]; then
        evidence "cache log: CRI went through the cache (?ns=$B)" mirror_saw "$T/logs/cache25.log" "$m" $B blobs
        check "upstream log: no request from containerd itself" no_containerd_direct "$T/logs/up11.log" "$m_up"
    else
        evidence "upstream log: CRI went straight to $B" containerd_direct "$T/logs/up11.log" "$m_up"
    fi
    S8_PULLS="ctr ${c}s, CRI ${PULL_SECS}s"
}
# s8_times LOG SINCE WHAT FILE_SECS LINE_PATTERN: report the fault->first probe
# result and first result->hosts.toml change times from the agent's log
s8_times() {
    local logf=$1 since=$2 what=$3 file_secs=$4 pattern=$5 t_susp t_done
    t_susp=$(logt "$logf" "$since" "mirror suspect") || t_susp=""
    t_done=$(logt "$logf" "$since" "$pattern") || t_done=""
    S8_FROM_FAULT=$file_secs
    S8_FAULT_TO_SUSPECT=never
    S8_SUSPECT_TO_DONE=never
    if [[ -n "$t_susp" ]]; then S8_FAULT_TO_SUSPECT=$(secs "$since" "$t_susp"); fi
    if [[ -n "$t_susp" && -n "$t_done" ]]; then S8_SUSPECT_TO_DONE=$(secs "$t_susp" "$t_done"); fi
    note "$what: hosts.toml fixed ${file_secs}s after the fault; agent log: first failing/succeeding probe result (\"mirror suspect\") ${S8_FAULT_TO_SUSPECT}s after the fault, \"$pattern\" ${S8_SUSPECT_TO_DONE}s after that"
    [[ -n "$t_susp" ]] && note "  $(logline "$logf" "$since" 'mirror suspect')"
    [[ -n "$t_done" ]] && note "  $(logline "$logf" "$since" "$pattern")"
    return 0
}

scenario_8() {
    reset_hosts
    trap s8_undo EXIT
    local f t0 rc
    f=$(hosts_file $B)
    S8_CFG=$T/s8.toml
    S8_PROM=$T/s8.prom
    cat >"$S8_CFG" <<EOF
# default probe settings: watch_interval 10s (+-20%), failure_threshold 3,
# success_threshold 2, connect_timeout 1s, timeout 2s, suspects re-probed 200ms..1s
hosts_dir = "$HOSTS"

[[registry]]
upstream = "$B"
server = "http://$B"

  [[registry.host]]
  url = "$S8_H"
EOF
    check "the cache 127.0.0.25:5000 (of $B) answers" answers "$S8_H"

    # --- start, pull through the cache
    t0=$EPOCHREALTIME
    s8_watch w1
    note "watch --config s8.toml --metrics-file s8.prom --log-format json started (pid $S8_WPID)"
    wait_for "$t0" 10 names_cache || true
    local t_first=$WAITED
    note "hosts.toml naming the cache ${t_first}s after watch started"
    check "watch writes the file for the live cache" names_cache
    check "watch logs its first pass" eventually grep -q 'first pass done' "$T/logs/watch-w1.err"
    check "metrics: mirror_up 1 and file in place" eventually eval "metric mirror_up 1 && file_in_place 1"
    cp "$f" "$T/s8-stale-hosts.toml" || true
    s8_pulls cache
    local pulls_up=$S8_PULLS

    # --- the cache's IP goes dead
    echo
    make_dead 127.0.0.25
    local t_dead=$EPOCHREALTIME
    note "fault 1: iptables DROP for 127.0.0.25 (the cache's IP is dead) at $(date -u +%T.%3N)"
    wait_for "$t_dead" 40 no_file || true
    local dead_secs=$WAITED
    check "watch removed the file (its only host is dead) within 40 s" no_file
    s8_times "$T/logs/watch-w1.err" "$t_dead" "dead IP" "$dead_secs" "mirror down after"
    local dead_f2s=$S8_FAULT_TO_SUSPECT dead_s2d=$S8_SUSPECT_TO_DONE
    check "dead IP: out of the file < 5 s after the first failed probe (issue 6 target)" lt "$dead_s2d" 5
    check "dead IP: out of the file < 20 s after the fault (one round of 8-12 s + 3 probes)" lt "$dead_secs" 20
    check "metrics while dead: mirror_up 0, mirror_in_hosts_file 0, registry_file_in_place 0" \
        eventually eval "metric mirror_up 0 && metric mirror_in_hosts_file 0 && file_in_place 0"
    grep -E "^configure_containerd_registries_(mirror_up|mirror_in_hosts_file|mirror_consecutive_failures|registry_file_in_place)\{" \
        "$S8_PROM" | indent || true
    s8_pulls direct
    local pulls_dead=$S8_PULLS

    # --- the IP comes back
    echo
    make_alive 127.0.0.25
    local t_heal=$EPOCHREALTIME
    note "heal: DROP rules deleted at $(date -u +%T.%3N)"
    wait_for "$t_heal" 40 names_cache || true
    local heal_secs=$WAITED
    check "watch put the file back within 40 s" names_cache
    s8_times "$T/logs/watch-w1.err" "$t_heal" "recovery" "$heal_secs" "mirror back after"
    local heal_f2s=$S8_FAULT_TO_SUSPECT heal_s2d=$S8_SUSPECT_TO_DONE
    check "the file is the one watch wrote before the fault" cmp -s "$T/s8-stale-hosts.toml" "$f"
    check "metrics: mirror_up 1, file in place" eventually eval "metric mirror_up 1 && file_in_place 1"
    s8_pulls cache
    local pulls_back=$S8_PULLS

    # --- SIGTERM with the file in place: exit 0, file as it is; a new watcher keeps it
    echo
    snapshot "$HOSTS" >"$T/s8-before-term"
    s8_stop w1
    check "watch exits 0 on SIGTERM" test "$STOP_RC" == 0
    check "watch logged that it stops and leaves the files" grep -q 'stopping on signal' "$T/logs/watch-w1.err"
    snapshot "$HOSTS" >"$T/s8-after-term"
    check "the hosts dir is as it was (file, mode, mtime)" cmp -s "$T/s8-before-term" "$T/s8-after-term"
    t0=$EPOCHREALTIME
    s8_watch w2
    wait_for "$t0" 10 grep -q 'first pass done' "$T/logs/watch-w2.err" || true
    note "second watcher (pid $S8_WPID): first pass done after ${WAITED}s"
    snapshot "$HOSTS" >"$T/s8-after-restart"
    check "a restarted watcher leaves the unchanged file alone (mtime kept)" cmp -s "$T/s8-before-term" "$T/s8-after-restart"

    # --- the cache hangs: the registry stops, a server that accepts and never answers takes its address
    echo
    local t_kill=$EPOCHREALTIME
    kill -TERM "$CACHE25_PID"
    wait_for "$t_kill" 10 exited "$CACHE25_PID" || true
    ip netns exec "$NS" setsid "$PY" "$HELPERS/hang_server.py" 127.0.0.25 5000 "$T/logs/hang25.log" &
    S8_HANG_PID=$!
    remember "$S8_HANG_PID"
    wait_for "$t_kill" 10 grep -qs '^listening' "$T/logs/hang25.log" || true
    local t_hang=$EPOCHREALTIME
    note "fault 2: cache stopped (time 0 of the figures below); hang server listening on 127.0.0.25:5000 $(secs "$t_kill" "$t_hang")s later"
    check "127.0.0.25:5000 accepts and never answers (curl --max-time 1 times out)" eval "! answers $S8_H"
    wait_for "$t_kill" 45 no_file || true
    local hang_secs=$WAITED
    check "watch removed the file (its only host hangs) within 45 s" no_file
    s8_times "$T/logs/watch-w2.err" "$t_kill" "hanging cache" "$hang_secs" "mirror down after"
    local hang_f2s=$S8_FAULT_TO_SUSPECT hang_s2d=$S8_SUSPECT_TO_DONE
    check "hanging cache: taken out for a timeout (not a refusal)" \
        eval "logline '$T/logs/watch-w2.err' $t_kill 'mirror down after' | cut -f2 | grep -qi 'time'"
    check "hanging cache: out of the file < 8 s after the first failed probe (issue 6 target)" lt "$hang_s2d" 8
    check "hanging cache: out of the file < 25 s after the fault" lt "$hang_secs" 25
    check "metrics while hanging: mirror_up 0, file not in place" eventually eval "metric mirror_up 0 && file_in_place 0"
    s8_pulls direct
    local pulls_hang=$S8_PULLS

    echo
    snapshot "$HOSTS" >"$T/s8-before-term2"
    s8_stop w2
    check "watch exits 0 on SIGTERM (no file in place)" test "$STOP_RC" == 0
    snapshot "$HOSTS" >"$T/s8-after-term2"
    check "the hosts dir is as it was (still no file for $B)" cmp -s "$T/s8-before-term2" "$T/s8-after-term2"

    printf '\n    watch, default settings (times from the fault / from the first failed or good probe in the agent log):\n'
    printf '      %-34s %8s  %8s  %s\n' "" "fault->" "probe->" "pulls afterwards"
    printf '      %-34s %7ss  %8s  %s\n' "started, cache alive: file after" "$t_first" "" "$pulls_up (through the cache)"
    printf '      %-34s %7ss  %7ss  %s\n' "IP dead: file removed after" "$dead_secs" "$dead_s2d" "$pulls_dead (straight from the upstream)"
    printf '      %-34s %7ss  %7ss  %s\n' "IP healed: file back after" "$heal_secs" "$heal_s2d" "$pulls_back (through the cache)"
    printf '      %-34s %7ss  %7ss  %s\n' "cache hangs: file removed after" "$hang_secs" "$hang_s2d" "$pulls_hang (straight from the upstream)"
    printf '      (fault -> first probe result: dead %ss, healed %ss, hang %ss; the rest is the wait for the next 8-12 s round)\n\n' \
        "$dead_f2s" "$heal_f2s" "$hang_f2s"
    measure "scenario 8 watch: cache started -> file ${t_first}s; pulls: $pulls_up"
    measure "scenario 8 watch: IP dead -> file removed ${dead_secs}s (first failed probe -> removed ${dead_s2d}s; fault -> first failed probe result ${dead_f2s}s); pulls then: $pulls_dead"
    measure "scenario 8 watch: IP healed -> file back ${heal_secs}s (first good probe -> back ${heal_s2d}s); pulls then: $pulls_back"
    measure "scenario 8 watch: cache hangs -> file removed ${hang_secs}s (first failed probe -> removed ${hang_s2d}s; fault -> first failed probe result ${hang_f2s}s); pulls then: $pulls_hang"

    if [[ "$E2E_SLOW" == 1 ]]; then
        s8_slow "$pulls_hang"
    else
        note "skipped: the same pulls without watch, with the stale file naming the hanging cache (hangs) and the dead IP (~90 s); set E2E_SLOW=1"
    fi
}

# without watch: the file watch wrote while the cache was alive, left stale
s8_slow() {
    local f fast=$1
    f=$(hosts_file $B)
    note "E2E_SLOW=1: no watcher; the file watch wrote while the cache was alive is put back (stale):"
    mkdir -p "$HOSTS/$B"
    cp "$T/s8-stale-hosts.toml" "$f"
    indent <"$f"
    local m
    m=$(mark "$T/logs/hang25.log")
    note "the cache hangs (hang server on 127.0.0.25:5000); pulls under timeout 60:"
    PULL_TIMEOUT=60 ctr_pull e2e-s8-slow-hang "$B/$IMG"
    local hang_ctr=$PULL_SECS hang_ctr_rc=$PULL_RC
    PULL_TIMEOUT=60 cri_pull "$B/$IMG"
    local hang_cri=$PULL_SECS hang_cri_rc=$PULL_RC
    check "stale file naming the hanging cache: ctr pull did not finish in 60 s (killed: exit 124)" test "$hang_ctr_rc" == 124
    check "stale file naming the hanging cache: CRI pull did not finish in 60 s (killed: exit 124)" test "$hang_cri_rc" == 124
    check "the hang server holds containerd's connections" test "$(since "$T/logs/hang25.log" "$m" | grep -c '^accept' || true)" -gt 0
    kill -TERM "$S8_HANG_PID" 2>/dev/null || true
    S8_HANG_PID=""
    make_dead 127.0.0.25
    note "the cache's IP is dead (iptables DROP for 127.0.0.25):"
    ctr_pull e2e-s8-slow-dead "$B/$IMG"
    local dead_ctr=$PULL_SECS dead_ctr_rc=$PULL_RC
    make_alive 127.0.0.25
    rm -rf "${HOSTS:?}/$B"
    check "stale file naming the dead IP: ctr pull still succeeds (falls back to the upstream)" test "$dead_ctr_rc" == 0
    check "stale file naming the dead IP: ctr pull takes > 25 s (30 s dial timeout per request)" lt 25 "$dead_ctr"
    local hang_txt="did not finish in ${hang_ctr}s (exit $hang_ctr_rc)" hang_cri_txt="did not finish in ${hang_cri}s (exit $hang_cri_rc)"
    [[ $hang_ctr_rc == 0 ]] && hang_txt="${hang_ctr}s"
    [[ $hang_cri_rc == 0 ]] && hang_cri_txt="${hang_cri}s"
    printf '\n    side by side, pull of %s/%s once the cache failed:\n' "$B" "$IMG"
    printf '      %-40s %s\n' "with watch (file fixed):" "$fast"
    printf '      %-40s ctr %s\n' "stale file, cache IP dead:" "${dead_ctr}s (exit $dead_ctr_rc)"
    printf '      %-40s ctr %s; CRI %s\n\n' "stale file, cache hangs:" "$hang_txt" "$hang_cri_txt"
    measure "scenario 8 without watch (stale file): IP dead: ctr ${dead_ctr}s (exit $dead_ctr_rc); cache hangs: ctr $hang_txt, CRI $hang_cri_txt"
}

# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
ensure_packages
ensure_agent
clean_stale
T=$(mktemp -d "/tmp/ccr-e2e-$$.XXXXXX")
[[ "$E2E_KEEP" == 1 ]] && : >"$T/keep"
chmod 755 "$T"
mkdir -p "$T/logs"
: >"$T/pids"
: >"$T/measurements"
HOSTS=$T/hosts
mkdir -p "$HOSTS"

log "setting up namespace $NS (workdir $T)"
setup_netns
make_tls
start_registry up10 127.0.0.10 5000
start_registry up11 127.0.0.11 5000
start_registry up12 127.0.0.12 5000
build_and_push_image
start_registry cache21 127.0.0.21 5000 "http://$B"
start_registry cache22 127.0.0.22 5000 "http://$C"
start_registry cache23 127.0.0.23 5000 "http://$A"
start_registry cache24 127.0.0.24 5000 "http://$A"
start_registry cache25 127.0.0.25 5000 "http://$B"
CACHE25_PID=$(tail -n1 "$T/pids")   # scenario 8 stops it (start_registry remembered it last)
start_registry cache50 127.0.0.50 5443 "http://$A" tls
start_registry cache51 127.0.0.51 5443 "http://$A" mtls
ip netns exec "$NS" setsid "$PY" "$HELPERS/hang_server.py" 127.0.0.40 5000 "$T/logs/hang40.log" &
remember $!
ip netns exec "$NS" setsid "$PY" "$HELPERS/logproxy.py" 127.0.0.60 5000 http://127.0.0.20:5000 "$T/logs/proxy60.log" /cache/docker &
remember $!
ip netns exec "$NS" setsid "$PY" "$HELPERS/logproxy.py" 127.0.0.61 5000 http://127.0.0.20:5000 "$T/logs/proxy61.log" &
remember $!
start_containerd
log "setup done in $(secs "$SUITE_T0" "$EPOCHREALTIME")s (cache 127.0.0.20:5000 stays down until scenario 1)"

run_scenario 1 "agent waits for a cache that comes up 2 s later; pulls go through it" scenario_1
# later scenarios need the cache of A even if scenario 1 died before starting it
if ! nsx curl -s -o /dev/null --max-time 1 http://127.0.0.20:5000/v2/; then
    start_registry cache20 127.0.0.20 5000 "http://$A"
fi
run_scenario 2 "cache on a dead cluster IP: no file, pulls stay fast" scenario_2
run_scenario 3 "cache that accepts and never answers is left out" scenario_3
run_scenario 4 "three upstreams at once, one with a dead cache" scenario_4
run_scenario 5 "containerd accepts every file variant we write" scenario_5
run_scenario 6 "a hand-written hosts.toml is backed up and comes back" scenario_6
run_scenario 7 "operator tools on the real containerd config: check (CRITICAL/WARNING/OK) and plan (foreign file, changes nothing)" scenario_7
run_scenario 8 "watch: dead IP, recovery, hanging cache; pulls stay fast" scenario_8

echo
log "timings:"
for t in "${TIMINGS[@]}"; do echo "    $t"; done
while read -r line; do echo "    $line"; done <"$T/measurements"
echo "    total suite: $(secs "$SUITE_T0" "$EPOCHREALTIME")s"
[[ "$E2E_KEEP" == 1 ]] && echo "    workdir kept (E2E_KEEP=1): $T"
echo "$PASSED passed, $FAILED failed"
[[ $FAILED == 0 ]]
