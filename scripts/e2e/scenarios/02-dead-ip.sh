# shellcheck shell=bash
# a cache on a dead cluster IP gets no file: containerd pulls straight from the upstream, fast
#
# B's only cache is 127.0.0.30, where every packet is dropped. With no file, containerd goes to the
# upstream at once (its user agent in the upstream's log). E2E_SLOW=1 adds the cost the agent
# avoids: the same pulls with a hand-written file naming the dead IP wait out containerd's dial
# timeout on every request. (apply's 69 at its deadline, with no file: ExitCodeTests, IsolationTests.)

scenario_dead_ip() {
    reset_hosts
    agent s2-apply apply --deadline 3s "$B,http://$DEAD_IP:5000,http://$B" || true
    show_file "$(hosts_file "$B")"
    PULL_LIMIT=5 pulls_prove "$B/$IMG" "straight to the upstream (containerd's user agent in its log)" \
        containerd_direct "$T/logs/up11.log"

    if [[ "$E2E_SLOW" != 1 ]]; then
        info "skipped: pulls with a hand-written hosts.toml naming the dead IP (~30 s per request); E2E_SLOW=1"
        return 0
    fi
    local f how t0 rc secs
    f=$(hosts_file "$B")
    mkdir -p "$HOSTS/$B"
    printf 'server = "http://%s"\n\n[host."http://%s:5000"]\n  capabilities = ["pull", "resolve"]\n' "$B" "$DEAD_IP" >"$f"
    info "E2E_SLOW=1: a hand-written hosts.toml naming the dead IP (no dial_timeout: containerd's 30 s):"
    show_file "$f"
    for how in ctr cri; do
        t0=$EPOCHREALTIME
        rc=0
        pull "$how" "$B/$IMG" || rc=$?
        secs=$(elapsed "$t0")
        check "dead IP in the file: the $how pull still succeeds (falls back to the upstream)" test "$rc" == 0
        check "dead IP in the file: the $how pull takes > 25 s (the dial timeout)" less_than 25 "$secs"
        figure "02 $how pull of $B/$IMG with a hand-written file naming the dead IP: ${secs}s"
    done
    rm -rf "${HOSTS:?}/$B"
}
