# shellcheck shell=bash
# The agent under test ($AGENT_BIN) and the hosts dir containerd reads ($HOSTS). Every run gets
# --hosts-dir $HOSTS, so no scenario can reach the machine's /etc/containerd/certs.d, and the suite's
# containerd socket as containerd_address (agent_args).

# agent_args NAME ARGS...: ARGS with the agent pointed at the suite's containerd, so that its files
# fit the release under test (it asks the daemon for its version): a --config FILE is copied with
# containerd_address = "$SOCK" put first; without one, a config holding only that line is given.
# Sets AGENT_ARGS.
agent_args() {
    local name=$1 i
    shift
    AGENT_ARGS=("$@")
    local line="containerd_address = \"$SOCK\""
    for ((i = 0; i < ${#AGENT_ARGS[@]}; i++)); do
        if [[ ${AGENT_ARGS[i]} == --config && $((i + 1)) -lt ${#AGENT_ARGS[@]} ]]; then
            local copy=$T/agent-configs/$name.toml
            mkdir -p "$T/agent-configs"
            { echo "$line"; cat "${AGENT_ARGS[i + 1]}"; } >"$copy"
            AGENT_ARGS[i + 1]=$copy
            return 0
        fi
    done
    mkdir -p "$T/agent-configs"
    echo "$line" >"$T/agent-configs/$name.toml"
    AGENT_ARGS=(--config "$T/agent-configs/$name.toml" "${AGENT_ARGS[@]}")
}

# agent NAME SUBCOMMAND ARGS...: runs the agent in the namespace (2 minutes at most), stdout and
# stderr in $T/logs/agent-NAME.{out,err}; prints the command, its exit status and time and the
# first lines it printed; returns its exit status
agent() {
    local name=$1 sub=$2 t0=$EPOCHREALTIME rc=0
    shift 2
    agent_args "$name" "$@"
    nsx timeout --foreground 120 "$AGENT_BIN" "$sub" --hosts-dir "$HOSTS" "${AGENT_ARGS[@]}" \
        >"$T/logs/agent-$name.out" 2>"$T/logs/agent-$name.err" || rc=$?
    info "agent $sub $*: exit $rc after $(elapsed "$t0")s"
    cat "$T/logs/agent-$name.out" "$T/logs/agent-$name.err" | head -n 12 | sed 's/^/        | /'
    return "$rc"
}

# agent_bg NAME SUBCOMMAND ARGS...: the same in the background (a session of its own, so a Ctrl-C
# reaches only the runner); remembered as NAME; the caller waits for it or stops it
agent_bg() {
    local name=$1 sub=$2
    shift 2
    agent_args "$name" "$@"
    ip netns exec "$NS" setsid "$AGENT_BIN" "$sub" --hosts-dir "$HOSTS" "${AGENT_ARGS[@]}" \
        >"$T/logs/agent-$name.out" 2>"$T/logs/agent-$name.err" &
    remember "$name" $!
}

hosts_file() { printf '%s/%s/hosts.toml' "$HOSTS" "$1"; }
reset_hosts() { rm -rf "$HOSTS" && mkdir -p "$HOSTS"; }
# show_file FILE: FILE's lines, indented (or that there is none)
show_file() { if [[ -f "$1" ]]; then sed 's/^/        | /' "$1"; else info "(no ${1#"$HOSTS"/})"; fi; }
