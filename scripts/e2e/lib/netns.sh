# shellcheck shell=bash
# The private network namespace every process of the suite runs in, the processes started there,
# and the faults made there. Uses NS (the namespace's name) and T (the work dir) of the runner.
# Nothing here touches the host's network: the addresses are aliases of the namespace's own
# loopback, and the iptables rules live in the namespace's own tables.

nsx() { ip netns exec "$NS" "$@"; }

# namespace_up ADDRESS...: the namespace with lo up and each 127.0.0.x address on it
namespace_up() {
    local a
    ip netns add "$NS"
    NS_INODE=$(stat -L -c %i "/run/netns/$NS")
    nsx ip link set lo up
    for a in "$@"; do nsx ip addr add "$a/8" dev lo; done
}

# Processes. A daemon is started with `ip netns exec "$NS" setsid ... &` (not through nsx): then $!
# is the daemon itself, no shell function with an inherited ERR trap wraps it, and a Ctrl-C
# reaches only the runner and its clients; teardown stops the daemons.
# remember NAME PID: a process of this run, stopped by teardown; pid_of NAME: its pid
remember() { printf '%s %s\n' "$1" "$2" >>"$T/pids"; }
pid_of() { awk -v n="$1" '$1 == n { p = $2 } END { if (p == "") exit 1; print p }' "$T/pids"; }

# gone PID: the process has ended (or is a zombie nobody reaped yet)
gone() { [[ ! -d /proc/$1 ]] || [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" == Z ]]; }

# ours PID: a process of this run that is still there, not a reused pid: inside our namespace, or
# a child of the runner (a scenario's subshell)
ours() {
    [[ $1 =~ ^[0-9]+$ && -d /proc/$1 ]] || return 1
    [[ "$(awk '{print $4}' "/proc/$1/stat" 2>/dev/null)" == "$$" ]] && return 0
    [[ -n "${NS_INODE:-}" && "$(readlink "/proc/$1/ns/net" 2>/dev/null)" == "net:[$NS_INODE]" ]]
}

# stop PID...: SIGTERM, then SIGKILL for what is still there after 3 s; only processes of ours.
# Children of this shell are reaped (init here may not reap an orphaned zombie).
stop() {
    local pids=() pid i alive
    for pid in "$@"; do ours "$pid" && pids+=("$pid"); done
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        alive=0
        for pid in "${pids[@]}"; do gone "$pid" || alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do gone "$pid" || kill -KILL "$pid" 2>/dev/null || true; done
    wait "${pids[@]}" 2>/dev/null || true
}

# stop_named NAME: stop the process remembered as NAME and wait until it is gone
stop_named() {
    local pid
    pid=$(pid_of "$1") || return 0
    stop "$pid"
}

# Faults. make_dead ADDR: every packet to ADDR vanishes, as for a cluster IP whose endpoints are
# gone: a dial hangs until its own timeout. make_alive ADDR undoes it.
make_dead() {
    nsx iptables -w -I INPUT -d "$1/32" -j DROP
    nsx iptables -w -I OUTPUT -d "$1/32" -j DROP
}
make_alive() {
    while nsx iptables -w -D INPUT -d "$1/32" -j DROP 2>/dev/null; do :; done
    while nsx iptables -w -D OUTPUT -d "$1/32" -j DROP 2>/dev/null; do :; done
}
# dial_hangs ADDR PORT: a TCP connect does not finish within 1.5 s
dial_hangs() {
    local rc=0
    nsx timeout --foreground 1.5 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null || rc=$?
    [[ $rc == 124 ]]
}
# answers URL: GET URL/v2/ gets an HTTP answer within 1 s
answers() { nsx curl -s -o /dev/null --noproxy '*' --max-time 1 "$1/v2/"; }

# teardown: every process of the run stopped, the namespace deleted (on every exit path)
namespace_down() {
    local pids=() pid
    if [[ -f "$T/pids" ]]; then
        while read -r _ pid; do pids+=("$pid"); done <"$T/pids"
        stop "${pids[@]}"
    fi
    if [[ -e "/run/netns/$NS" ]]; then
        # anything still inside the namespace was started by this run
        for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        sleep 0.2
        ip netns delete "$NS" 2>/dev/null || echo "warning: could not delete namespace $NS" >&2
    fi
    return 0
}

# clean_stale PREFIX: namespaces PREFIX<pid> and work dirs /tmp/PREFIX<pid>.* of runs whose
# runner is gone (killed with SIGKILL, so their trap never ran)
clean_stale() {
    local prefix=$1 ns pid p d
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${prefix}[0-9]*\$" || true); do
        pid=${ns#"$prefix"}
        kill -0 "$pid" 2>/dev/null && continue
        echo "removing the namespace $ns of an earlier run" >&2
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        ip netns delete "$ns" 2>/dev/null || true
    done
    for d in /tmp/"$prefix"[0-9]*.*; do
        [[ -d "$d" && ! -f "$d/keep" ]] || continue
        pid=${d#/tmp/"$prefix"}
        pid=${pid%%.*}
        kill -0 "$pid" 2>/dev/null && continue
        echo "removing the work dir $d of an earlier run" >&2
        rm -rf "$d"
    done
}
