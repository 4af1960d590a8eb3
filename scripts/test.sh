#!/usr/bin/env bash
# Runs every test: unit and integration tests (swift test), the containerd parse check
# (scripts/parse-check.sh), a short fuzz run (scripts/fuzz.sh; FUZZ_SECONDS, default 30), the
# end-to-end suite with a real containerd and real registries (scripts/e2e.sh), and the systemd
# proofs: unit verification, a real journald, and the units booted under systemd in a container
# (scripts/systemd-test.sh), and the OCI image with deploy/'s DaemonSet: the manifests against the
# Kubernetes API's schema, the image built twice, run by a real containerd as the DaemonSet runs it
# (scripts/image-test.sh). The parse check and the end-to-end suite run once per containerd
# release of scripts/containerd-versions.sh (1.6, 1.7, 2.1; CONTAINERD_RELEASES="1.6" for fewer); the
# end-to-end suite whole on the first and the last, its release-dependent scenarios on 1.7.
# Installs what is missing first. Run as root. SKIP_E2E=1 / SKIP_SYSTEMD=1 / SKIP_IMAGE=1 skip those parts.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$(repo_root)"
# part TITLE: a part's header, with the seconds since the start (CI's budget is read from these)
part() { echo "== $* [${SECONDS} s]"; }

ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"

part "build"
build_log=$(mktemp /tmp/ccr-build.XXXXXX.log)
if ! swift build --build-tests >"$build_log" 2>&1; then
    grep -E 'error|warning:' "$build_log" | grep -v '/.build/checkouts/' >&2 || tail -40 "$build_log" >&2
    echo "build FAILED (log: $build_log)" >&2
    exit 1
fi
# A warning in our own code fails the build (the packages' are theirs). A clean build shows them all.
warnings=$(grep -E 'warning:' "$build_log" | grep -v '/.build/checkouts/' | sort -u || true)
if [ -n "$warnings" ]; then
    echo "$warnings" >&2
    echo "build FAILED: warnings in the project's code (log: $build_log)" >&2
    exit 1
fi
tail -1 "$build_log"

part "swift test"
log=$(mktemp /tmp/ccr-swift-test.XXXXXX.log)
swift_status=0
# The core's tests (pure logic; timing on a manual clock) run in parallel. The system tests spawn
# servers and the agent and bound how it behaves in real time, and so do the core's suites that wait
# on the wall clock (tag wallClock, named ...WallClockTests): on 2 cores, tests beside them would
# starve the cooperative pool and make those bounds noise, so they run one at a time.
swift test --skip-build --filter RegistryMirrorCoreTests --skip WallClockTests >"$log" 2>&1 || swift_status=$?
swift test --skip-build --no-parallel --filter 'RegistryMirrorSystemTests|WallClockTests' >>"$log" 2>&1 || swift_status=$?
# Failures and the closing summaries; the whole log stays in $log.
grep -E '✘|recorded an issue|error:|Test run with|Executed [0-9]+ test' "$log" | grep -v 'Executed 0 tests' || true
echo "(full swift test log: $log)"

part "containerd releases (scripts/containerd-versions.sh)"
releases=$(mktemp /tmp/ccr-releases.XXXXXX)
versions_status=0
# shellcheck disable=SC2086 # the releases are words
bash scripts/containerd-versions.sh ${CONTAINERD_RELEASES:-} >"$releases" || versions_status=$?
cat "$releases"
[ -s "$releases" ] || { echo "no containerd release to test against" >&2; exit 1; }

parse_status=0
e2e_status=0
summary=()
# The end-to-end suite runs whole on the first release (the system's) and the last (the newest); a
# release between them runs the scenarios whose outcome depends on the release (E2E_BETWEEN): the
# files it reads, check's verdicts, watch, config_path. E2E_BETWEEN=all runs everything everywhere.
n_releases=$(wc -l <"$releases")
index=0
while read -r version containerd ctr; do
    index=$((index + 1))
    only=""
    if [ "$index" -ne 1 ] && [ "$index" -ne "$n_releases" ] && [ "${E2E_BETWEEN:-1 5 7 8 11}" != all ]; then
        only=${E2E_BETWEEN:-1 5 7 8 11}
    fi
    part "containerd $version: parse check (every accepted host form read as the agent probes it, by ctr and CRI)"
    out=$(mktemp /tmp/ccr-parse.XXXXXX.log)
    set +e
    CONTAINERD_BIN=$containerd CTR_BIN=$ctr AGENT_BIN="$PWD/.build/debug/configure-containerd-registries" PARSE_CHECK_CRI=1 \
        bash scripts/parse-check.sh </dev/null 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || parse_status=$rc
    line="containerd $version: parse check $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1 || echo "exit $rc")"
    if [ -f scripts/e2e.sh ] && [ "${SKIP_E2E:-0}" != 1 ]; then
        part "containerd $version: end-to-end${only:+ (scenarios $only)}"
        out=$(mktemp /tmp/ccr-e2e.XXXXXX.log)
        set +e
        E2E_ONLY=$only CONTAINERD_BIN=$containerd CTR_BIN=$ctr AGENT_BIN="$PWD/.build/debug/configure-containerd-registries" \
            bash scripts/e2e.sh </dev/null 2>&1 | tee "$out"
        rc=${PIPESTATUS[0]}
        set -e
        [ "$rc" -eq 0 ] || e2e_status=$rc
        line+="; end-to-end $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1 || echo "exit $rc")"
    fi
    summary+=("$line")
done <"$releases"
[ "$versions_status" -eq 0 ] || parse_status=$versions_status

part "fuzz: config loader and hosts.toml renderer (libFuzzer, ${FUZZ_SECONDS:-30} s), regressions replayed, tomllib oracle"
fuzz_status=0
bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}" || fuzz_status=$?

systemd_status=0
if [ "${SKIP_SYSTEMD:-0}" != 1 ]; then
    part "systemd: units, journald, sd_notify, a real systemd in a container"
    bash scripts/systemd-test.sh || systemd_status=$?
fi

# After the systemd part, whose release build it reuses (swift build is then incremental).
image_status=0
if [ "${SKIP_IMAGE:-0}" != 1 ]; then
    part "image and DaemonSet: deploy/ against the API's schema, the OCI image built twice, run by a real containerd as the DaemonSet runs it"
    # The pod's footprint over 30 s here (scripts/image-test.sh alone: 60 s, the README's figures).
    IMAGE_MEASURE_SECONDS=${IMAGE_MEASURE_SECONDS:-30} bash scripts/image-test.sh </dev/null || image_status=$?
fi

part "per containerd release"
printf '%s\n' "${summary[@]}"

if [ "$swift_status" -ne 0 ] || [ "$parse_status" -ne 0 ] || [ "$fuzz_status" -ne 0 ] || [ "$e2e_status" -ne 0 ] \
    || [ "$systemd_status" -ne 0 ] || [ "$image_status" -ne 0 ]; then
    echo "FAILED: swift test $swift_status, parse check $parse_status, fuzz $fuzz_status, e2e $e2e_status, systemd $systemd_status, image $image_status" >&2
    echo "(after ${SECONDS} s)" >&2
    exit 1
fi
echo "all tests passed in ${SECONDS} s"
