# shellcheck shell=bash
# Checks and their count, for scripts/e2e.sh (and its scenarios) and scripts/systemd-test.sh.
# Source it, then call assert_init once; sourcing alone changes nothing.
#
# Every result is one line in one file ($ASSERT_RESULTS, exported), so a check made in a subshell
# or in a child script that sources this file counts like any other. No count lives in a variable.
#
#   pass TEXT | fail TEXT | skip TEXT   record a result and print it ("  ok    TEXT", ...)
#   check TEXT CMD...                   pass when CMD succeeds, fail otherwise
#   info TEXT                           print a line that is not a result
#   figure TEXT                         print a measurement and keep it for the end (assert_figures)
#   section TEXT                        print a heading ("== TEXT")
#   tally                               results from "PASS x", "FAIL x", "SKIP x", "INFO x" lines on
#                                       stdin (helper programs print those); other lines are info
#   eventually CMD...                   CMD succeeds within ASSERT_PATIENCE whole seconds (default 3)
#   mark FILE / since FILE MARK         log lines since a mark (below)
#   elapsed T0 [T1]                     seconds from T0 to T1 (default now), two decimals
#   less_than A B                       A < B, as decimal numbers
#   assert_count pass|fail|skip [MARK]  how many results of that kind (since MARK of $ASSERT_RESULTS)
#   assert_figures [MARK]               the figures recorded (since MARK of $ASSERT_RESULTS)
#   assert_summary                      "N passed, N failed"; status 1 when anything failed

# assert_init FILE: start counting into FILE (made empty; the caller deletes it).
assert_init() {
    ASSERT_RESULTS=$1
    export ASSERT_RESULTS
    : >"$ASSERT_RESULTS"
}

assert_record() { # KIND TEXT
    printf '%s\t%s\n' "$1" "${2//$'\n'/ }" >>"$ASSERT_RESULTS"
}

pass() { assert_record pass "$*"; printf '  ok    %s\n' "$*"; }
fail() { assert_record fail "$*"; printf '  FAIL  %s\n' "$*"; }
skip() { assert_record skip "$*"; printf '  skip  %s\n' "$*"; }
info() { printf '        %s\n' "$*"; }
figure() { assert_record figure "$*"; info "$*"; }
section() { printf '== %s\n' "$*"; }

check() {
    local text=$1
    shift
    if "$@"; then pass "$text"; else fail "$text"; fi
}

tally() {
    local line
    while IFS= read -r line; do
        case "$line" in
            PASS\ *) pass "${line#PASS }" ;;
            FAIL\ *) fail "${line#FAIL }" ;;
            SKIP\ *) skip "${line#SKIP }" ;;
            INFO\ *) info "${line#INFO }" ;;
            *) info "$line" ;;
        esac
    done
}

# eventually CMD...: polls CMD every 0.1 s; evidence written a moment after the event (a registry
# logs a request once its answer is out, journald stores a line after the process wrote it) is
# waited for this way instead of with a fixed sleep.
eventually() {
    local i
    for ((i = 0; i < ${ASSERT_PATIENCE:-3} * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    "$@"
}

# Log lines since a mark, the one meaning of "since" in these scripts: take a mark of a log file
# before an action, and the lines it got after the mark are the action's evidence.
#   mark FILE        prints FILE's line count now (0 when FILE does not exist yet)
#   since FILE MARK  prints the lines FILE got after MARK (nothing when FILE does not exist); its
#                    reader may stop early (grep -q): that is not a failure of since
mark() { if [[ -f "$1" ]]; then wc -l <"$1"; else echo 0; fi; }
since() { if [[ -f "$1" ]]; then tail -n "+$(($2 + 1))" "$1" || true; fi; }

# elapsed T0 [T1]: T0 and T1 are $EPOCHREALTIME (or date +%s.%N) readings.
elapsed() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.2f", b - a }'; }
# less_than A B: false unless both are numbers ("never" is not less than anything)
less_than() {
    awk -v a="$1" -v b="$2" 'BEGIN { n = "^[0-9]+([.][0-9]*)?$"; exit !(a ~ n && b ~ n && a + 0 < b + 0) }'
}

# wait_from T0 LIMIT CMD...: polls CMD every 50 ms; prints the seconds from T0 to the poll that saw
# it hold, or "never" (status 1) once LIMIT seconds from T0 have passed
wait_from() {
    local t0=$1 limit=$2
    shift 2
    until "$@"; do
        less_than "$(elapsed "$t0")" "$limit" || { echo never; return 1; }
        sleep 0.05
    done
    elapsed "$t0"
}

assert_count() {
    since "$ASSERT_RESULTS" "${2:-0}" | grep -c "^$1"$'\t' || true
}

assert_figures() {
    since "$ASSERT_RESULTS" "${1:-0}" | sed -n 's/^figure\t//p'
}

assert_summary() {
    local passed failed skipped
    passed=$(assert_count pass)
    failed=$(assert_count fail)
    skipped=$(assert_count skip)
    [[ "$skipped" == 0 ]] || info "$skipped skipped"
    echo "$passed passed, $failed failed"
    [[ "$failed" == 0 ]]
}
