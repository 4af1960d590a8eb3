# shellcheck shell=bash
# watch follows a cache's Service through cluster DNS: it moves, containerd follows at once; DNS down keeps it
#
# A's cache is configured by its Service name, registry-a.kube-system.svc.cluster.local, which the
# suite's cluster DNS (dnsmasq at 127.0.0.53, scripts/e2e/lib/dns.sh) answers with cache A's address
# 127.0.0.20. The agent asks that server directly and writes the address into hosts.toml (containerd
# never resolves the name). apply (--cluster-dns, a positional mirror) started before the Service
# exists waits while the name is NXDOMAIN and writes the address once the record appears. watch
# ([discovery] in the config) keeps the file; containerd pulls through cache A. Then the Service
# moves: cache A dies (killed, and its IP drops packets, as a cluster IP nobody programs any more)
# and the record changes to the second cache of A, 127.0.0.23; watch rewrites the file to the new
# address (a figure, bounded at 10 s) and the next pulls go through 127.0.0.23 without a 30 s dial
# wait. With the DNS server stopped (queries refused), then its address dropping packets (queries
# time out), the file keeps naming 127.0.0.23 and pulls still go through it. With the server back
# and the name answering both addresses (a headless Service), both are in the file, in numeric
# order. A name outside cluster.local (localhost, for C's cache at 127.0.0.1:5002) is written as
# given and never asked of the cluster DNS. plan and check name the Service and its address.
# (Parsing of [discovery] and --cluster-dns, the address order, hysteresis of a change: the unit
# tests; the time from the record change to the file over 20 trials: bench-watch.sh --service.)

S10_SVC=registry-a.kube-system.svc.cluster.local
S10_URL=http://$S10_SVC:5000
S10_OLD=http://127.0.0.20:5000
S10_NEW=http://127.0.0.23:5000
S10_LOCAL=http://localhost:5002

s10_undo() {
    stop_named s10-watch
    stop_named s10-apply
    make_alive 127.0.0.20
    make_alive "$DNS_ADDR"
    answers "$S10_OLD" || start_registry cache20 127.0.0.20 5000 "http://$A" >/dev/null || true
    stop_named s10-local
    dns_stop
}

# s10_names URL: A's file names URL as a host
s10_names() { [[ -f "$(hosts_file "$A")" ]] && grep -qF "[host.\"$1\"]" "$(hosts_file "$A")"; }
s10_moved() { s10_names "$S10_NEW" && ! s10_names "$S10_OLD"; }
s10_both() { s10_names "$S10_OLD" && s10_names "$S10_NEW"; }

# s10_holds SECONDS CMD...: CMD holds at every poll (every 100 ms) for SECONDS
s10_holds() {
    local t0=$EPOCHREALTIME limit=$1
    shift
    while less_than "$(elapsed "$t0")" "$limit"; do
        "$@" || return 1
        sleep 0.1
    done
}

# s10_log PATTERN: watch's log lines containing PATTERN, indented
s10_log() { grep -F "$1" "$T/logs/agent-s10-watch.err" | cut -c1-300 | sed 's/^/        | /' || true; }

# s10_check_json FILE: check --output json has a host object of the Service with its name and the
# address 127.0.0.23
s10_check_json() {
    "$PY" -c '
import json, sys
try:
    report = json.load(open(sys.argv[1]))
except ValueError as e:
    print("not JSON (%s): %s" % (e, open(sys.argv[1]).read(200)))
    sys.exit(1)
hosts = [h for r in report.get("registries", []) for h in r.get("hosts", [])]
print("check: %s" % report.get("summary"))
for h in hosts:
    print("host: url %s name %s address %s state %s" % (h.get("url"), h.get("name"), h.get("address"), h.get("state")))
sys.exit(0 if any(h.get("name") == sys.argv[2] and "127.0.0.23" in str(h.get("address")) for h in hosts) else 1)' "$1" "$S10_SVC"
}

scenario_service_dns() {
    local cfg=$T/s10.toml t0 secs m_up m_dns rc=0 said line pid
    reset_hosts
    trap s10_undo EXIT

    dns_start
    dns_set "$S10_SVC" 127.0.0.20
    check "cluster DNS ($DNS_ADDR:$DNS_PORT) answers $S10_SVC with cache A's address 127.0.0.20" \
        dns_serves "$S10_SVC" 127.0.0.20
    check "cluster DNS: NXDOMAIN for another name under $DNS_DOMAIN" \
        dns_serves "registry-z.kube-system.svc.$DNS_DOMAIN" NXDOMAIN
    start_registry s10-local 127.0.0.1 5002 "http://$C"
    check "C's cache answers at $S10_LOCAL" answers "$S10_LOCAL"

    # the command-line form: --cluster-dns and a positional mirror naming the Service. apply while
    # the name does not exist yet (NXDOMAIN: not ready), then the Service is created
    dns_remove "$S10_SVC"
    agent_bg s10-apply apply --deadline 30s --cluster-dns "$DNS_ADDR:$DNS_PORT" "$A,$S10_URL,http://$A"
    pid=$(pid_of s10-apply)
    sleep 2
    check "while the name is NXDOMAIN, apply waits and writes nothing" \
        eval "[[ ! -e '$(hosts_file "$A")' ]] && ! gone $pid"
    t0=$EPOCHREALTIME  # the record changes now (dns_set returns once dnsmasq serves it)
    dns_set "$S10_SVC" 127.0.0.20
    secs=$(wait_from "$t0" 10 s10_names "$S10_OLD") || true
    wait "$pid" || rc=$?
    check "once the record exists, apply writes the address and exits 0 (exit $rc)" \
        eval "[[ $rc == 0 ]] && s10_names '$S10_OLD'"
    figure "10 Service created while apply waits: hosts.toml names its address ${secs}s after the record appeared"
    show_file "$(hosts_file "$A")"

    agent s10-plan plan --cluster-dns "$DNS_ADDR:$DNS_PORT" "$A,$S10_URL,http://$A" || true
    check "plan (--cluster-dns, positional mirror) shows the Service name and its address 127.0.0.20" \
        eval "grep -qF '$S10_SVC' '$T/logs/agent-s10-plan.out' && grep -qF 127.0.0.20 '$T/logs/agent-s10-plan.out'"

    # the config form: [discovery]; lookups every 2 s (default 30 s), so that a record that changes
    # while every cache answers (the headless step below) is seen within its 10 s bound
    {
        printf 'containerd_config = "%s"\n\n' "$T/containerd/config.toml"
        printf '[discovery]\ndns_servers = ["%s:%s"]\ndomain = "%s"\nlookup_interval = "2s"\n\n' "$DNS_ADDR" "$DNS_PORT" "$DNS_DOMAIN"
        printf '[[registry]]\nupstream = "%s"\nserver = "http://%s"\n\n  [[registry.host]]\n  url = "%s"\n\n' \
            "$A" "$A" "$S10_URL"
        printf '[[registry]]\nupstream = "%s"\nserver = "http://%s"\n\n  [[registry.host]]\n  url = "%s"\n' \
            "$C" "$C" "$S10_LOCAL"
    } >"$cfg"
    reset_hosts
    m_dns=$(mark "$T/logs/dns.log")
    t0=$EPOCHREALTIME
    agent_bg s10-watch watch --config "$cfg" --log-format json
    secs=$(wait_from "$t0" 10 s10_names "$S10_OLD") || { fail "watch wrote no file naming $S10_OLD within 10 s"; s10_log ""; return 0; }
    info "watch started; A's file names the Service's address after ${secs}s:"
    show_file "$(hosts_file "$A")"
    check "A's file names the address, not the Service name (containerd never resolves it)" \
        eval "! grep -qF '$S10_SVC' '$(hosts_file "$A")'"
    check "watch asked the cluster DNS for the Service name" \
        eventually eval "grep -qF 'query[A] $S10_SVC' < <(since '$T/logs/dns.log' $m_dns)"
    m_up=$(mark "$T/logs/up10.log")
    PULL_LIMIT=10 pulls_prove "$A/$IMG" "through cache A 127.0.0.20, found by its Service name (?ns=$A)" \
        through_mirror "$T/logs/cache20.log" "$A"
    check "upstream A: no request from containerd itself" no_containerd_direct "$T/logs/up10.log" "$m_up"

    info "the Service moves: cache A dies (killed, its IP drops packets), the record changes to 127.0.0.23"
    make_dead 127.0.0.20
    stop_named cache20
    t0=$EPOCHREALTIME
    dns_set "$S10_SVC" 127.0.0.23
    secs=$(wait_from "$t0" 10 s10_moved) || true
    check "watch rewrote A's file to the new address within 10 s of the record change (took ${secs}s)" s10_moved
    figure "10 Service moved (old cache dead): hosts.toml names the new address ${secs}s after the record change"
    show_file "$(hosts_file "$A")"
    line=$(grep -F 'service address changed' "$T/logs/agent-s10-watch.err" | tail -n1 || true)
    info "watch said: ${line:-(no \"service address changed\" line)}"
    check "watch logged \"service address changed 127.0.0.20 -> 127.0.0.23\"" \
        eval "[[ \"\$line\" == *'127.0.0.20'*' -> '*'127.0.0.23'* ]]"
    m_up=$(mark "$T/logs/up10.log")
    PULL_LIMIT=10 pulls_prove "$A/$IMG" "through cache B 127.0.0.23 after the move (?ns=$A)" \
        through_mirror "$T/logs/cache23.log" "$A"
    check "upstream A: no request from containerd itself" no_containerd_direct "$T/logs/up10.log" "$m_up"

    agent s10-check check --config "$cfg" --output json || true
    rc=0
    said=$(s10_check_json "$T/logs/agent-s10-check.out" 2>&1) || rc=$?
    while IFS= read -r line; do info "$line"; done <<<"$said"
    check "check --output json: the Service's host object has name $S10_SVC and address 127.0.0.23" test "$rc" == 0

    info "the cluster DNS stops (queries refused); watch keeps the address it has"
    dns_stop
    check "the cluster DNS no longer answers" eval "! dns_query '$S10_SVC' >/dev/null"
    check "for 6 s (3 rounds) without DNS, A's file keeps naming 127.0.0.23" s10_holds 6 s10_moved
    check "watch is still running" eval "! gone $(pid_of s10-watch)"
    info "watch's log on DNS since then:"
    s10_log "DNS" | tail -n 3
    PULL_LIMIT=10 pulls_prove "$A/$IMG" "DNS down: still through cache B 127.0.0.23 (?ns=$A)" \
        through_mirror "$T/logs/cache23.log" "$A"
    info "and the DNS server's address drops packets (queries time out)"
    make_dead "$DNS_ADDR"
    check "for 6 s with DNS queries timing out, A's file keeps naming 127.0.0.23" s10_holds 6 s10_moved
    check "watch is still running" eval "! gone $(pid_of s10-watch)"
    make_alive "$DNS_ADDR"

    info "the cluster DNS is back, the Service headless: cache A is back and the name has both addresses"
    make_alive 127.0.0.20
    start_registry cache20 127.0.0.20 5000 "http://$A" >/dev/null
    dns_start
    t0=$EPOCHREALTIME
    dns_set "$S10_SVC" 127.0.0.23 127.0.0.20
    secs=$(wait_from "$t0" 10 s10_both) || true
    check "A's file names both addresses within 10 s (took ${secs}s)" s10_both
    show_file "$(hosts_file "$A")"
    check "in numeric order: 127.0.0.20 before 127.0.0.23" \
        eval "[[ \$(grep -n -F '[host.\"$S10_OLD\"]' '$(hosts_file "$A")' | cut -d: -f1) -lt \$(grep -n -F '[host.\"$S10_NEW\"]' '$(hosts_file "$A")' | cut -d: -f1) ]]"

    show_file "$(hosts_file "$C")"
    check "C's file names localhost as given (a name outside $DNS_DOMAIN)" \
        eval "[[ -f '$(hosts_file "$C")' ]] && grep -qF '[host.\"$S10_LOCAL\"]' '$(hosts_file "$C")'"
    check "the cluster DNS was never asked about localhost" eval "! grep -q 'query\[[A-Z]*\] localhost' '$T/logs/dns.log'"
    PULL_LIMIT=10 pulls_prove "$C/$IMG" "through C's cache at $S10_LOCAL (?ns=$C)" \
        through_mirror "$T/logs/s10-local.log" "$C"
}
