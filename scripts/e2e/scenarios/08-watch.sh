# shellcheck shell=bash
# watch keeps containerd's pulls fast while the cache's IP dies, comes back, and the cache hangs
#
# watch (default settings: rounds every 2 s +-20%, each a TCP connection check with an idle connection
# held, the HTTP probe every 30 s; out after 3 failures, back after 2 successes)
# keeps B's file, naming the cache 127.0.0.25, true while containerd pulls: through the cache while
# it is up, straight from the upstream once its IP is dead (iptables DROP) and watch took it out,
# through the cache again once it healed and watch put it back, straight again once it hangs (a
# server that accepts and never answers takes its address), back once a cache answers there again,
# and out once nothing listens (connection refused). The times from each event to the fixed file are
# figures, and bounded at about twice the targets (refused 3 s, dropped 5 s, back 5 s) so a busy
# machine passes. The hang here is the cache stopped and a hanging server at its address: the held
# connection's end brings HTTP probes at once (12 s). A cache process that hangs in place keeps its
# connections and is seen only by the HTTP probe (< 35 s; scripts/bench-watch.sh measures every
# fault over 20 trials). E2E_SLOW=1 adds the cost without watch: the same pulls with the file left
# stale. (Thresholds, SIGTERM, SIGHUP and metrics of watch: WatchTests, WatcherTests,
# HostTrackerTests; the times under load: scripts/bench-watch.sh.)

S8_HOST=http://127.0.0.25:5000

s8_undo() {
    make_alive 127.0.0.25
    stop_named s8-watch
    stop_named hang25
    answers "$S8_HOST" || start_registry cache25 127.0.0.25 5000 "http://$B" >/dev/null || true
}

s8_names_cache() { [[ -f "$(hosts_file "$B")" ]] && grep -qF "[host.\"$S8_HOST\"]" "$(hosts_file "$B")"; }
s8_no_file() { [[ ! -e "$(hosts_file "$B")" ]]; }

# s8_figure WHAT T_FAULT FILE_SECS PATTERN: how the time from the fault to the fixed file splits,
# from watch's JSON log: the wait for the first probe that saw the change ("mirror suspect"), then
# the probes until PATTERN
s8_figure() {
    local what=$1 t_fault=$2 file_secs=$3 pattern=$4 log=$T/logs/agent-s8-watch.err t_susp t_done a=never b=never
    t_susp=$("$PY" "$HELPERS/watchlog.py" "$log" "$t_fault" "$S8_HOST" "mirror suspect" | cut -f1) || t_susp=""
    t_done=$("$PY" "$HELPERS/watchlog.py" "$log" "$t_fault" "$S8_HOST" "$pattern" | cut -f1) || t_done=""
    [[ -z "$t_susp" ]] || a=$(elapsed "$t_fault" "$t_susp")
    [[ -z "$t_susp" || -z "$t_done" ]] || b=$(elapsed "$t_susp" "$t_done")
    [[ $a == never ]] || a="${a}s"
    [[ $b == never ]] || b="${b}s"
    figure "08 watch, $what: file fixed ${file_secs}s after the fault (first probe that saw it $a after the fault, \"$pattern\" $b after that)"
}

# s8_pulls cache|direct: ctr and CRI pulls of B's image, each < 5 s, through the cache or straight
s8_pulls() {
    local m_up
    m_up=$(mark "$T/logs/up11.log")
    if [[ $1 == cache ]]; then
        PULL_LIMIT=5 pulls_prove "$B/$IMG" "through the cache (?ns=$B)" mirror_saw "$T/logs/cache25.log" "$B" blobs
        check "upstream log: no request from containerd itself" no_containerd_direct "$T/logs/up11.log" "$m_up"
    else
        PULL_LIMIT=5 pulls_prove "$B/$IMG" "straight to the upstream $B" containerd_direct "$T/logs/up11.log"
    fi
}

scenario_watch() {
    local cfg=$T/s8.toml t0 secs
    reset_hosts
    trap s8_undo EXIT
    printf '[[registry]]\nupstream = "%s"\nserver = "http://%s"\n\n  [[registry.host]]\n  url = "%s"\n' \
        "$B" "$B" "$S8_HOST" >"$cfg"
    check "the cache $S8_HOST answers" answers "$S8_HOST"

    t0=$EPOCHREALTIME
    agent_bg s8-watch watch --config "$cfg" --log-format json
    secs=$(wait_from "$t0" 10 s8_names_cache) || { fail "watch wrote no file naming the cache within 10 s"; return 0; }
    info "watch started; its file names the cache after ${secs}s"
    cp "$(hosts_file "$B")" "$T/s8-stale-hosts.toml"
    s8_pulls cache

    info "fault 1: the cache's IP is dead (iptables DROP for 127.0.0.25)"
    t0=$EPOCHREALTIME
    make_dead 127.0.0.25
    s8_follows "$t0" 10 out "IP dead" "its only host is dead"

    info "heal: the DROP rules go"
    t0=$EPOCHREALTIME
    make_alive 127.0.0.25
    s8_follows "$t0" 10 in "IP healed" "its host answers again"

    info "fault 2: the cache hangs (stopped; a server that accepts and never answers takes 127.0.0.25:5000)"
    t0=$EPOCHREALTIME
    stop_named cache25
    start_hang_server hang25 127.0.0.25 5000
    check "127.0.0.25:5000 accepts and never answers" eval "! answers $S8_HOST"
    s8_follows "$t0" 12 out "cache hangs" "its only host hangs"

    info "heal: a cache answers at 127.0.0.25:5000 again (timed from its first answer)"
    stop_named hang25
    start_registry cache25 127.0.0.25 5000 "http://$B" >/dev/null
    t0=$EPOCHREALTIME
    s8_follows "$t0" 10 in "cache back" "its host answers again"

    info "fault 3: the cache is gone, nothing listens at 127.0.0.25:5000 (connection refused)"
    t0=$EPOCHREALTIME
    stop_named cache25
    s8_follows "$t0" 6 out "cache gone" "its only host refuses connections"

    stop_named s8-watch
    if [[ "$E2E_SLOW" == 1 ]]; then
        s8_stale
    else
        info "skipped: the same pulls without watch, the file left stale (~2 minutes); E2E_SLOW=1"
    fi
}

# s8_follows T0 LIMIT in|out LABEL WHY: after the event at T0, watch puts the cache into (in) or
# takes it out of (out) the file within LIMIT s; the time is a figure, and containerd's pulls then go
# through the cache (in) or straight to the upstream (out)
s8_follows() {
    local t0=$1 limit=$2 way=$3 label=$4 why=$5 secs
    if [[ $way == out ]]; then
        secs=$(wait_from "$t0" "$limit" s8_no_file) || true
        check "watch took the file out within $limit s ($why)" s8_no_file
        s8_figure "$label" "$t0" "$secs" "mirror down after"
        s8_no_file && s8_pulls direct
    else
        secs=$(wait_from "$t0" "$limit" s8_names_cache) || true
        check "watch put the file back within $limit s ($why)" s8_names_cache
        s8_figure "$label" "$t0" "$secs" "mirror back after"
        s8_names_cache && s8_pulls cache
    fi
}

# s8_stale: no watcher; the file watch wrote while the cache was up is put back, naming the hanging
# cache and then the dead IP
s8_stale() {
    local f how t0 rc secs m dial=30 least why
    f=$(hosts_file "$B")
    mkdir -p "$HOSTS/$B"
    cp "$T/s8-stale-hosts.toml" "$f"
    # the scenario ended with nothing listening at the cache's address: the hang server takes it
    stop_named cache25
    stop_named hang25
    start_hang_server hang25 127.0.0.25 5000
    info "E2E_SLOW=1: no watcher, the stale file back in place:"
    show_file "$f"
    m=$(mark "$T/logs/hang25.log")
    for how in ctr cri; do
        t0=$EPOCHREALTIME
        rc=0
        pull "$how" "$B/$IMG" 60 || rc=$?
        check "stale file, cache hangs: the $how pull did not finish in 60 s (killed: exit 124)" test "$rc" == 124
        figure "08 without watch, stale file, cache hangs: $how pull killed after $(elapsed "$t0")s (exit $rc)"
    done
    check "the hang server holds containerd's connections" eval "grep -q '^accept' < <(since '$T/logs/hang25.log' $m)"

    stop_named hang25
    make_dead 127.0.0.25
    # containerd reads a host's dial_timeout from 2.1 on; before, every dial waits its default 30 s
    why="containerd $CONTAINERD_VERSION ignores the file's dial_timeout: 30 s per dial"
    if s8_version_at_least 2 1; then
        dial=$(sed -n 's/^ *dial_timeout = "\([0-9]*\)s"$/\1/p' "$f" | head -n1)
        why="the file's dial_timeout: ${dial:-30} s per dial"
    fi
    least=$(awk -v d="${dial:-30}" 'BEGIN { print d * 0.8 }')
    t0=$EPOCHREALTIME
    rc=0
    pull ctr "$B/$IMG" || rc=$?
    secs=$(elapsed "$t0")
    make_alive 127.0.0.25
    rm -rf "${HOSTS:?}/$B"
    check "stale file, IP dead: the ctr pull still succeeds (falls back to the upstream)" test "$rc" == 0
    check "stale file, IP dead: the ctr pull takes > $least s ($why)" \
        less_than "$least" "$secs"
    figure "08 without watch, stale file, IP dead: ctr pull ${secs}s (exit $rc)"
}

# s8_version_at_least MAJOR MINOR: the containerd under test is that release or later
s8_version_at_least() {
    local v=${CONTAINERD_VERSION#v} major minor
    major=${v%%.*}
    minor=${v#*.}
    minor=${minor%%[!0-9]*}
    ((major > $1 || (major == $1 && minor >= $2)))
}
