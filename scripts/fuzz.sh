#!/usr/bin/env bash
# Fuzzes the config loader and the hosts.toml renderer (fuzz/, a package of its own), then checks what
# the fuzzer produced with Python's tomllib.
#
#   scripts/fuzz.sh [SECONDS]      (default 60)
#
# 1. builds fuzz/ twice: the libFuzzer target with AddressSanitizer (.build-fuzz/) and the plain
#    render-oracle (.build-fuzz-oracle/);
# 2. replays every input in fuzz/regressions/ (each one crashed once; each must now load cleanly);
# 3. fuzzes for SECONDS: arbitrary bytes into ConfigLoader.load(bytes:), and every accepted config's
#    hosts.toml files parsed back with TOMLKit and compared with the config (fuzz/Sources/RenderCheck);
#    the working corpus is .build-fuzz/corpus/, seeded from fuzz/corpus/ (never written to);
# 4. runs fuzz/oracle.py over fuzz/corpus/ and the working corpus: the rendered files parsed with
#    tomllib, and the loader's reading of each config compared with tomllib's.
#
# Exits 1 when a regression input still crashes, the fuzzer found a crash (saved under
# .build-fuzz/crashes/: add it to fuzz/regressions/), or the oracle found a difference; 2 on a usage
# error. Environment: FUZZ_SLICE_SECONDS (default 30): the run is cut into libFuzzer sessions of at most
# this long, because TOMLKit never frees a parsed document and memory grows with every input.
# FUZZ_SKIP_KNOWN=0: also report inputs that hit the bugs already in fuzz/regressions/ (by default the
# fuzzer skips them, see fuzz/Sources/RenderCheck/KnownBugs.swift, so that it can look for new ones).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$(repo_root)"

seconds=${1:-60}
slice=${FUZZ_SLICE_SECONDS:-30}
skip_known=${FUZZ_SKIP_KNOWN:-1}
if ! [[ "$seconds" =~ ^[0-9]+$ && "$slice" =~ ^[1-9][0-9]*$ ]] || [ $# -gt 1 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS]   (whole seconds of fuzzing, default 60)" >&2
    exit 2
fi

scratch=.build-fuzz
work="$scratch/corpus"
crashes="$scratch/crashes"
logs="$scratch/logs"
fuzzer="$scratch/debug/FuzzConfigLoader"
oracle_scratch=.build-fuzz-oracle
oracle_bin="$oracle_scratch/debug/render-oracle"
mkdir -p "$work" "$crashes" "$logs"

# tomllib is Python 3.11+ (Debian 12's python3 is 3.11).
python=""
for candidate in /usr/bin/python3 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import tomllib' 2>/dev/null; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    ensure_packages python3
    python=/usr/bin/python3
fi

# TOMLKit 0.6.0 never frees what it parses, so leak reports would drown everything else.
export ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}"
# The Swift runtime's own crash reporter reads memory ASan considers off limits; libFuzzer reports crashes.
export SWIFT_BACKTRACE=enable=no

start=$SECONDS
build() {  # build LOG SWIFT-BUILD-ARGS...
    local log=$1
    shift
    if ! swift build -c debug --package-path fuzz "$@" >"$log" 2>&1; then
        grep -E 'error:' "$log" | grep -v '/checkouts/' >&2 || tail -40 "$log" >&2
        echo "fuzz: build FAILED (log: $log)" >&2
        exit 1
    fi
}
echo "== build (fuzz target with -sanitize=fuzzer,address; render-oracle plain)"
build "$logs/build-fuzzer.log" --scratch-path "$scratch" --product FuzzConfigLoader \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
build "$logs/build-oracle.log" --scratch-path "$oracle_scratch" --product render-oracle
build_seconds=$((SECONDS - start))
echo "built in ${build_seconds}s"

status=0

echo "== regressions (fuzz/regressions/)"
replayed=0
still=0
shopt -s nullglob
for input in fuzz/regressions/*; do
    [ -f "$input" ] || continue
    replayed=$((replayed + 1))
    log="$logs/regression-$(basename "$input").log"
    if "$fuzzer" -runs=1 -artifact_prefix="$logs/replay-" "$input" >"$log" 2>&1; then
        echo "ok    $input"
    else
        still=$((still + 1))
        why=$(grep -m1 -E 'Assertion|Fatal error|ERROR: |round trip failed|deadly signal' "$log" || tail -1 "$log")
        echo "CRASH $input: $why"
        echo "      (log: $log)"
    fi
done
echo "regressions: $replayed replayed, $still still crash"
[ "$still" -eq 0 ] || status=1

echo "== fuzz for ${seconds}s (slices of at most ${slice}s; working corpus $work)"
for seed in fuzz/corpus/*; do
    [ -e "$work/$(basename "$seed")" ] || cp "$seed" "$work"/
done
before=$(ls "$crashes")
executions=0
new_inputs=0
peak_rss=0
found=""
fuzz_start=$SECONDS
remaining=$seconds
n=0
while [ "$remaining" -gt 0 ]; do
    n=$((n + 1))
    this=$((remaining < slice ? remaining : slice))
    log="$logs/fuzz-$n.log"
    slice_start=$SECONDS
    rc=0
    # Inputs that hit a bug already in fuzz/regressions/ are skipped, not reported again.
    FUZZ_SKIP_KNOWN=$skip_known "$fuzzer" "$work" -max_total_time="$this" -max_len=4096 -timeout=10 -rss_limit_mb=4096 \
        -dict=fuzz/config.dict -artifact_prefix="$crashes/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    added=$(sed -n 's/^stat::new_units_added: *//p' "$log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
    executions=$((executions + ${runs:-0}))
    new_inputs=$((new_inputs + ${added:-0}))
    [ "${rss:-0}" -gt "$peak_rss" ] && peak_rss=$rss
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 || true)
    echo "slice $n: $((SECONDS - slice_start))s, ${runs:-?} executions, ${added:-?} new inputs, peak RSS ${rss:-?} MB, $cov"
    if [ "$rc" -ne 0 ]; then
        found=$(grep -m1 -E 'Assertion|Fatal error|ERROR: |round trip failed' "$log" || echo "libFuzzer exit status $rc")
        echo "the fuzzer found a crash: $found (log: $log)"
        break
    fi
    remaining=$((seconds - (SECONDS - fuzz_start)))
done
fuzz_seconds=$((SECONDS - fuzz_start))
rate=$((fuzz_seconds > 0 ? executions / fuzz_seconds : 0))
echo "fuzzing: ${executions} executions in ${fuzz_seconds}s (${rate}/s), ${new_inputs} new inputs, corpus $(ls "$work" | wc -l) files, peak RSS ${peak_rss} MB"

new_crashes=$(comm -13 <(echo "$before" | sort) <(ls "$crashes" | sort) | sed '/^$/d')
if [ -n "$new_crashes" ] || [ -n "$found" ]; then
    status=1
    for name in $new_crashes; do
        echo "crash input: $crashes/$name ($(wc -c <"$crashes/$name") bytes); first bytes:"
        od -A x -t x1z -v "$crashes/$name" | head -16 | sed 's/^/    /'
    done
    echo "to keep it as a regression: cp $crashes/<name> fuzz/regressions/<what-it-shows>.toml"
else
    echo "fuzzing found nothing"
fi

echo "== tomllib oracle (fuzz/corpus/ and the working corpus)"
oracle_start=$SECONDS
"$oracle_bin" --self-test fuzz/corpus/readme-example.toml fuzz/corpus/several-registries.toml \
    fuzz/corpus/ipv6.toml fuzz/corpus/headers.toml fuzz/corpus/tls-ca-client.toml || status=1
"$python" fuzz/oracle.py --bin "$oracle_bin" fuzz/corpus "$work" || status=1
echo "oracle ran in $((SECONDS - oracle_start))s"

echo "fuzz: total ${SECONDS}s (build ${build_seconds}s, fuzzing ${fuzz_seconds}s)"
if [ "$status" -ne 0 ]; then
    echo "fuzz: FAILED (see above)" >&2
fi
exit "$status"
