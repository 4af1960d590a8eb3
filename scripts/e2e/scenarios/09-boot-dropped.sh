# shellcheck shell=bash
# a node boots before kube-proxy: the cache's IP drops packets, then lets them through; the file follows at once
#
# The realistic boot: A's cache 127.0.0.20 is up, but every packet to its IP is dropped (iptables in
# the namespace), as for a cluster IP kube-proxy has not programmed yet. apply waits; the moment the
# rule goes, its next attempt (one every 150 ms, overlapping, since each lost SYN waits out its own
# connect timeout) connects, and the file is written well within a second. containerd then pulls
# through the cache. (The timing logic: TimingTests; the p95 from the event: bench.sh --only-detection.)

scenario_boot_dropped() {
    local f pid rc=0 t_open waited=never i
    f=$(hosts_file "$A")
    reset_hosts
    trap 'make_alive 127.0.0.20' EXIT
    make_dead 127.0.0.20
    check "127.0.0.20 drops packets (a dial hangs)" dial_hangs 127.0.0.20 5000

    agent_bg s9-apply apply --deadline 30s "$A,http://127.0.0.20:5000,http://$A"
    pid=$(pid_of s9-apply)
    sleep 2
    check "while the packets are dropped, apply waits and writes nothing" test ! -e "$f"
    t_open=$EPOCHREALTIME
    make_alive 127.0.0.20
    for ((i = 0; i < 1000; i++)); do
        [[ -e "$f" ]] && { waited=$(elapsed "$t_open"); break; }
        sleep 0.01
    done
    wait "$pid" || rc=$?
    check "apply exits 0 once the path opens" test "$rc" == 0
    check "the file is on disk within 1 s of the rule's removal (took ${waited}s)" less_than "$waited" 1
    figure "09 packets let through -> hosts.toml on disk: ${waited}s"
    show_file "$f"
    pulls_prove "$A/$IMG" "through the cache 127.0.0.20 (?ns=$A)" through_mirror "$T/logs/cache20.log" "$A"
}
