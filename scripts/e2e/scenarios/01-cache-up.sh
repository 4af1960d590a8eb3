# shellcheck shell=bash
# the agent waits for a cache that comes up 2 s late; containerd then pulls through it
#
# The node's first minutes: apply starts while A's cache (127.0.0.20) is down and writes the file
# once it answers. containerd's requests then reach the cache (?ns=A in its log), by ctr and by the
# CRI, and none reaches the upstream itself; the upstream sees only the cache filling up.
# (That apply waits, writes nothing before and exits 0 after: ApplierTests, ExitCodeTests.)

scenario_cache_up() {
    local f pid rc=0 t_cache m_up
    f=$(hosts_file "$A")
    reset_hosts
    trap cache20_back EXIT
    stop_named cache20
    m_up=$(mark "$T/logs/up10.log")

    agent_bg s1-apply apply --deadline 30s "$A,http://127.0.0.20:5000,http://$A"
    pid=$(pid_of s1-apply)
    sleep 2
    info "after 2 s: $([[ -e "$f" ]] && echo "a hosts.toml" || echo "no hosts.toml"), apply $(gone "$pid" && echo ended || echo "still waiting")"
    t_cache=$EPOCHREALTIME
    start_registry cache20 127.0.0.20 5000 "http://$A"
    wait "$pid" || rc=$?
    info "apply: exit $rc, $(elapsed "$t_cache")s after the cache was started"
    figure "01 cache up late: apply ended $(elapsed "$t_cache")s after the cache started"
    show_file "$f"

    pulls_prove "$A/$IMG" "through the cache 127.0.0.20 (?ns=$A)" through_mirror "$T/logs/cache20.log" "$A"
    check "upstream log: no request from containerd itself" no_containerd_direct "$T/logs/up10.log" "$m_up"
    check "upstream log: the cache fetched the image from it" image_request "$T/logs/up10.log" "$m_up"
}

# later scenarios rely on A's cache
cache20_back() { answers http://127.0.0.20:5000 || start_registry cache20 127.0.0.20 5000 "http://$A" >/dev/null || true; }
