#!/usr/bin/env bash
# End-to-end: a real containerd pulls, by ctr and through the CRI as kubelet does, through real
# registry caches that configure-containerd-registries configured, in a private network namespace
# (loopback addresses only; nothing else is dialled, no rule touches the host's firewall).
#
#   sudo AGENT_BIN=.build/debug/configure-containerd-registries bash scripts/e2e.sh
#   sudo E2E_ONLY="1 watch" bash scripts/e2e.sh      # some scenarios; the setup is always complete
#   sudo CONTAINERD_BIN=/var/cache/ccr-containerd/2.1.9/usr/bin/containerd \
#        CTR_BIN=/var/cache/ccr-containerd/2.1.9/usr/bin/ctr \
#        bash scripts/e2e.sh                          # every scenario against another containerd
#   sudo bash scripts/containerd-versions.sh          # 1.6, 1.7 and 2.1 side by side: those paths
#
# Environment:
#   AGENT_BIN       the agent (default: swift build, then <repo>/.build/debug/configure-containerd-registries)
#   CONTAINERD_BIN  the containerd every scenario runs against (default: containerd on PATH, Debian 12's 1.6.20);
#                   its config is version 2 for 1.x, version 3 for 2.x (scripts/lib/containerd-config.sh)
#   CTR_BIN         the ctr of that containerd (default: ctr on PATH)
#   E2E_ONLY        scenarios to run, by number (8) or name (08-watch, watch); default: all
#   E2E_SLOW=1      also measure what a stale file costs containerd (minutes more)
#   E2E_KEEP=1      keep the work dir (logs, configs, hosts files)
#
# A scenario is a file scripts/e2e/scenarios/NN-name.sh defining scenario_name (dashes become
# underscores); its first comment line is its title, the comment below says what it proves. Each
# runs in a subshell of its own and reports only through scripts/lib/assert.sh. Shared setup:
# scripts/e2e/lib/ (world.sh has the address plan). The output ends with "N passed, N failed"
# over all checks; the exit status is 1 when a check failed.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib/common.sh"
source "$HERE/lib/assert.sh"
source "$HERE/lib/containerd-config.sh"
source "$HERE/e2e/lib/netns.sh"
source "$HERE/e2e/lib/registries.sh"
source "$HERE/e2e/lib/containerd.sh"
source "$HERE/e2e/lib/evidence.sh"
source "$HERE/e2e/lib/agent.sh"
source "$HERE/e2e/lib/dns.sh"
source "$HERE/e2e/lib/world.sh"
ROOT=$(repo_root)
HELPERS=$HERE/e2e
PY=/usr/bin/python3   # Debian's python3, where python3-grpcio is installed (not a pyenv shim)
NS=ccr-e2e-$$
E2E_SLOW=${E2E_SLOW:-0}
E2E_KEEP=${E2E_KEEP:-0}
T=""
SUITE_T0=$EPOCHREALTIME

log() { printf '[e2e %s] %s\n' "$(date +%T)" "$*"; }
# setup_failed TEXT: a failed check for the setup, the closing line, exit 1
setup_failed() {
    local own=""
    [[ -n "${ASSERT_RESULTS:-}" ]] || { own=$(mktemp /tmp/ccr-e2e-results.XXXXXX) && assert_init "$own"; }
    fail "setup: $*"
    assert_summary || true
    [[ -z "$own" ]] || rm -f "$own"
    exit 1
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n "$T" ]]; then
        namespace_down
        [[ "$E2E_KEEP" == 1 ]] || rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM

# --- the scenarios asked for, before anything is set up
all=("$HERE"/e2e/scenarios/[0-9][0-9]-*.sh)
# names FILE: what E2E_ONLY may call it: 08-watch, watch, 08, 8
names() { local b; b=$(basename "$1" .sh); echo "$b ${b#*-} ${b%%-*} $((10#${b%%-*}))"; }
scenarios=()
for f in "${all[@]}"; do
    [[ -z "${E2E_ONLY:-}" ]] && scenarios+=("$f") && continue
    for want in $E2E_ONLY; do
        [[ " $(names "$f") " == *" $want "* ]] && scenarios+=("$f") && break
    done
done
for want in ${E2E_ONLY:-}; do
    for f in "${all[@]}"; do [[ " $(names "$f") " == *" $want "* ]] && continue 2; done
    setup_failed "E2E_ONLY: no scenario '$want' in scripts/e2e/scenarios/"
done

# --- prerequisites
[[ $(id -u) == 0 ]] || setup_failed "run as root (network namespaces, iptables, containerd)"
packages=("${E2E_PACKAGES[@]}")
[[ -n "${CONTAINERD_BIN:-}" && -n "${CTR_BIN:-}" ]] || packages+=(containerd)
ensure_packages "${packages[@]}" || setup_failed "cannot install ${packages[*]}"
CONTAINERD_BIN=$(readlink -f "${CONTAINERD_BIN:-$(command -v containerd || true)}")
CTR_BIN=$(readlink -f "${CTR_BIN:-$(command -v ctr || true)}")
[[ -x "$CONTAINERD_BIN" ]] || setup_failed "no containerd at '$CONTAINERD_BIN' (set CONTAINERD_BIN)"
[[ -x "$CTR_BIN" ]] || setup_failed "no ctr at '$CTR_BIN' (set CTR_BIN)"
if [[ -z "${AGENT_BIN:-}" ]]; then
    log "AGENT_BIN not set: swift build in $ROOT"
    (cd "$ROOT" && swift build) || setup_failed "swift build failed"
    AGENT_BIN=$ROOT/.build/debug/configure-containerd-registries
fi
[[ -x "$AGENT_BIN" ]] || setup_failed "no agent at '$AGENT_BIN' (set AGENT_BIN)"
AGENT_BIN=$(readlink -f "$AGENT_BIN")
CONTAINERD_VERSION=$("$CONTAINERD_BIN" --version | awk '{print $3}')
ctr_version=$("$CTR_BIN" --version | awk '{print $3}')
log "agent:      $AGENT_BIN ($("$AGENT_BIN" --version 2>/dev/null || echo '?'))"
log "containerd: $CONTAINERD_BIN ($CONTAINERD_VERSION)"
log "ctr:        $CTR_BIN ($ctr_version)"
[[ "$ctr_version" == "$CONTAINERD_VERSION" ]] || log "warning: ctr and containerd are different releases"
export AGENT_BIN CONTAINERD_BIN CTR_BIN CONTAINERD_VERSION

# --- the world every scenario finds (scripts/e2e/lib/world.sh)
clean_stale ccr-e2e-
T=$(mktemp -d "/tmp/ccr-e2e-$$.XXXXXX")
chmod 755 "$T"
mkdir -p "$T/logs"
[[ "$E2E_KEEP" != 1 ]] || : >"$T/keep"
: >"$T/pids"
assert_init "$T/results"
HOSTS=$T/hosts
mkdir -p "$HOSTS"
log "setting up the namespace $NS (work dir $T)"
world_up >"$T/logs/setup.log" 2>&1 || { tail -20 "$T/logs/setup.log"; setup_failed "world_up failed (its log's end above)"; }
setup_secs=$(elapsed "$SUITE_T0")
log "setup done in ${setup_secs}s"

# --- the scenarios, each in a subshell: its traps, variables and helpers end with it. It runs in
# the background so that a signal to the runner interrupts `wait` at once and the trap cleans up.
timings=()
for f in "${scenarios[@]}"; do
    base=$(basename "$f" .sh)
    fn=scenario_${base#*-}
    fn=${fn//-/_}
    title=$(grep -v '^# shellcheck' "$f" | grep -m1 '^# ' | sed 's/^# //' || true)
    echo
    section "$base: $title"
    m=$(mark "$ASSERT_RESULTS")
    t0=$EPOCHREALTIME
    (
        set -eE
        trap 'fail "unexpected: \"$BASH_COMMAND\" exited $? (${BASH_SOURCE[0]##*/} line $LINENO)"' ERR
        # shellcheck source=/dev/null
        source "$f"
        declare -F "$fn" >/dev/null || { fail "$base defines no $fn"; exit 1; }
        "$fn"
    ) &
    sp=$!
    remember "$base" "$sp"
    rc=0
    wait "$sp" || rc=$?
    secs=$(elapsed "$t0")
    failed=$(assert_count fail "$m")
    if [[ $rc != 0 && $failed == 0 ]]; then
        fail "$base ended with exit status $rc"
        failed=1
    fi
    verdict=PASS
    [[ $failed == 0 ]] || verdict=FAIL
    log "$base: $verdict in ${secs}s"
    timings+=("$(printf '%-22s %s %7ss  %3s ok, %s failed' "$base" "$verdict" "$secs" "$(assert_count pass "$m")" "$failed")")
done

echo
section "summary (containerd $CONTAINERD_VERSION)"
info "$(printf '%-22s      %7ss' setup "$setup_secs")"
for line in "${timings[@]}"; do info "$line"; done
info "$(printf '%-22s      %7ss' total "$(elapsed "$SUITE_T0")")"
while IFS= read -r line; do info "$line"; done < <(assert_figures 0)
[[ "$E2E_KEEP" != 1 ]] || info "work dir kept (E2E_KEEP=1): $T"
assert_summary
