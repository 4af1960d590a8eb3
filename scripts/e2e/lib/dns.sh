# shellcheck shell=bash
# The cluster DNS of the suite: a real DNS server (dnsmasq) inside the namespace at
# $DNS_ADDR:$DNS_PORT, playing the cluster DNS Service. It answers A and AAAA queries for Service
# names under $DNS_DOMAIN from a hosts file of its own ($T/dns/hosts), NXDOMAIN for every other name
# under $DNS_DOMAIN, and nothing else: it forwards no query (no resolv.conf, no upstream server) and
# reads neither /etc/hosts nor /etc/dnsmasq.conf. Answers carry a TTL of 5 s, CoreDNS's default for
# Services. Uses NS, T and PY of the runner and remember/pid_of/stop_named (netns.sh); its log, with
# every query, is $T/logs/dns.log.
#
#   dns_start                 the server, up and answering (again after dns_stop: same records)
#   dns_set NAME ADDR...      NAME's records are exactly ADDR... (IPv4 and IPv6); returns once served
#   dns_remove NAME           NAME has no record (NXDOMAIN); returns once served
#   dns_stop                  the server gone (queries to it are refused: ICMP port unreachable)
#   dns_query NAME            prints NAME's addresses as the server answers them, one a line, or
#                             NXDOMAIN / NODATA / SERVFAIL / REFUSED / "no answer ..."; status 0
#                             only when there are addresses

DNS_ADDR=127.0.0.53
DNS_PORT=53
DNS_DOMAIN=cluster.local
DNSMASQ=/usr/sbin/dnsmasq

dns_hosts() { printf '%s/dns/hosts' "$T"; }

# dns_args: the server's whole configuration, on its command line
dns_args() {
    printf '%s\n' \
        --conf-file=/dev/null \
        --keep-in-foreground \
        --no-resolv \
        --no-poll \
        --no-hosts \
        "--addn-hosts=$(dns_hosts)" \
        "--local=/$DNS_DOMAIN/" \
        --domain-needed \
        "--listen-address=$DNS_ADDR" \
        --bind-interfaces \
        "--port=$DNS_PORT" \
        --local-ttl=5 \
        --pid-file= \
        --log-queries \
        "--log-facility=$T/logs/dns.log"
}

dns_start() {
    local args=() i
    mkdir -p "$T/dns"
    chmod 755 "$T/dns"
    [[ -f "$(dns_hosts)" ]] || : >"$(dns_hosts)"
    chmod 644 "$(dns_hosts)"
    # the address lives on the namespace's loopback (added once; dnsmasq binds only to it)
    nsx ip -4 addr show dev lo | grep -qF " $DNS_ADDR/" || nsx ip addr add "$DNS_ADDR/8" dev lo
    mapfile -t args < <(dns_args)
    "$DNSMASQ" --test "${args[@]}" >/dev/null 2>&1 || {
        "$DNSMASQ" --test "${args[@]}" >&2
        return 1
    }
    ip netns exec "$NS" setsid "$DNSMASQ" "${args[@]}" >>"$T/logs/dns.stderr" 2>&1 &
    remember dns $!
    # answering: a query for a name it holds no record of gets NXDOMAIN (not "no answer")
    for ((i = 0; i < 100; i++)); do
        [[ "$(dns_query "ready-check.$DNS_DOMAIN")" == NXDOMAIN ]] && return 0
        sleep 0.1
    done
    echo "dnsmasq does not answer at $DNS_ADDR:$DNS_PORT:" >&2
    tail -5 "$T/logs/dns.stderr" "$T/logs/dns.log" >&2 2>/dev/null
    return 1
}

dns_stop() { stop_named dns; }

# dns_running: the server was started and is still there
dns_running() { local pid; pid=$(pid_of dns) && ! gone "$pid"; }

# dns_write NAME [ADDR...]: the hosts file with NAME's lines replaced by ADDR... (atomically), then
# SIGHUP to the server so it reads it again (while it is stopped, the next dns_start reads it)
dns_write() {
    local name=$1 f tmp a
    shift
    f=$(dns_hosts)
    tmp=$f.new
    mkdir -p "$T/dns"
    [[ -f "$f" ]] || : >"$f"
    {
        awk -v n="$name" '$2 != n' "$f"
        for a in "$@"; do printf '%s %s\n' "$a" "$name"; done
    } >"$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$f"
    if dns_running; then kill -HUP "$(pid_of dns)"; fi
}

# dns_serves NAME WANT: the server answers NAME with exactly WANT (addresses sorted, one a line, or
# NXDOMAIN)
dns_serves() { [[ "$(dns_query "$1" | sort)" == "$2" ]]; }

# dns_settle NAME WANT: until the server answers NAME with WANT (3 s at most); immediate when it is
# stopped
dns_settle() {
    local i
    dns_running || return 0
    for ((i = 0; i < 300; i++)); do
        dns_serves "$1" "$2" && return 0
        sleep 0.01
    done
    echo "dnsmasq still answers $1 with: $(dns_query "$1" | tr '\n' ' ') (wanted: $(echo "$2" | tr '\n' ' '))" >&2
    return 1
}

dns_set() {
    local name=$1
    shift
    dns_write "$name" "$@"
    dns_settle "$name" "$(printf '%s\n' "$@" | sort)"
}

dns_remove() {
    dns_write "$1"
    dns_settle "$1" NXDOMAIN
}

# dns_query NAME: dig's A and AAAA queries for NAME, sent straight to the server from inside the
# namespace (the namespace's resolver and /etc/hosts play no part)
dns_query() {
    local out addrs status
    if ! out=$(nsx dig @"$DNS_ADDR" -p "$DNS_PORT" +tries=1 +time=1 +noall +comments +answer "$1" A "$1" AAAA 2>&1); then
        echo "no answer: $(grep -m1 ';;' <<<"$out" | sed 's/^;; //')"
        return 2
    fi
    addrs=$(awk '$4 == "A" || $4 == "AAAA" { print $5 }' <<<"$out")
    if [[ -n $addrs ]]; then
        echo "$addrs"
        return 0
    fi
    status=$(grep -o 'status: [A-Z]*' <<<"$out" | awk '$2 != "NOERROR" { print $2; exit }')
    echo "${status:-NODATA}"
    return 1
}
