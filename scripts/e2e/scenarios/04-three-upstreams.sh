# shellcheck shell=bash
# three upstreams at once, one cache dead: containerd uses the live ones while apply still waits
#
# A and B have live caches, C's cache is the dead IP. While apply is still waiting for C, its files
# for A and B are already what containerd reads: pulls of A and B go through their caches, the pull
# of C straight to its upstream, none of them slowed down. (Files written as soon as a registry has
# a host up, complete and atomic, whatever the others do: IsolationTests, CrashTests.)

scenario_three_upstreams() {
    local pid m_up10 m_up11
    reset_hosts
    agent_bg s4-apply apply --deadline 60s \
        "$A,http://127.0.0.20:5000,http://$A" \
        "$B,http://127.0.0.21:5000,http://$B" \
        "$C,http://$DEAD_IP:5000,http://$C"
    pid=$(pid_of s4-apply)
    # shellcheck disable=SC2064 # the pid now: the trap runs after this function's locals are gone
    trap "stop $pid" EXIT
    ASSERT_PATIENCE=5 eventually test -f "$(hosts_file "$A")" -a -f "$(hosts_file "$B")" || true
    info "apply $(gone "$pid" && echo ended || echo "is still waiting for $C"); files: $(cd "$HOSTS" && echo */hosts.toml)"

    m_up10=$(mark "$T/logs/up10.log")
    m_up11=$(mark "$T/logs/up11.log")
    PULL_LIMIT=5 pulls_prove "$A/$IMG" "through A's cache (?ns=$A)" mirror_saw "$T/logs/cache20.log" "$A" blobs
    PULL_LIMIT=5 pulls_prove "$B/$IMG" "through B's cache (?ns=$B)" mirror_saw "$T/logs/cache21.log" "$B" blobs
    PULL_LIMIT=5 pulls_prove "$C/$IMG" "straight to C's upstream" containerd_direct "$T/logs/up12.log"
    check "upstreams A and B saw no request from containerd itself" \
        eval "no_containerd_direct '$T/logs/up10.log' $m_up10 && no_containerd_direct '$T/logs/up11.log' $m_up11"
    check "all this while apply was still waiting for $C" eval "! gone $pid"
}
