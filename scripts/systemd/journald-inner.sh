#!/usr/bin/env bash
# Part of scripts/systemd-test.sh; run by it inside `unshare --mount --propagation private`.
# Starts a real systemd-journald on private tmpfs mounts and checks the agent's native journal
# entries, and the reader that follows containerd's journal (follow_check.py). Its checks count with the caller's (scripts/lib/assert.sh, $ASSERT_RESULTS from the
# caller). Loopback only.
#   journald-inner.sh AGENT_BIN WORK_DIR  (journal-follow-check is taken from beside AGENT_BIN)
set -uo pipefail
agent=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/assert.sh
source "$here/../lib/assert.sh"

for dir in /run/systemd /run/log /var/log/journal; do
    mkdir -p "$dir"    # the mount point (on the host when missing; the tmpfs itself is private)
    mount -t tmpfs -o mode=0755 tmpfs "$dir" || { fail "journald: mount tmpfs on $dir"; exit 0; }
done

/lib/systemd/systemd-journald >"$work/journald.out" 2>&1 &
journald=$!
trap 'kill "$journald" 2>/dev/null; wait "$journald" 2>/dev/null; kill "${registry:-}" 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 200); do
    [ -S /run/systemd/journal/socket ] && [ -S /run/systemd/journal/stdout ] && break
    sleep 0.05
done
if [ -S /run/systemd/journal/socket ] && [ -S /run/systemd/journal/stdout ]; then
    pass "journald: systemd-journald (pid $journald) listening on /run/systemd/journal/{socket,stdout}"
else
    fail "journald: sockets did not appear within 10 s: $(tail -5 "$work/journald.out")"
    exit 0
fi
journal_dir=/run/log/journal

# A real docker-registry on loopback that comes up one second after the agent starts.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/registry"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
hosts="$work/certs.d"
timeout 30 "$agent" apply --log-format journal --hosts-dir "$hosts" --deadline 20s \
    "docker.io,http://127.0.0.1:$port" >"$work/agent.out" 2>"$work/agent.err" &
agent_pid=$!
sleep 1
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry=$!
wait "$agent_pid"
status=$?
if [ "$status" = 0 ] && [ -f "$hosts/docker.io/hosts.toml" ]; then
    pass "journald: agent --log-format journal exit 0, hosts.toml written (registry 127.0.0.1:$port up 1 s late)"
else
    fail "journald: agent exit $status; stderr: $(head -c 600 "$work/agent.err")"
fi
if [ -s "$work/agent.err" ]; then
    fail "journald: --log-format journal wrote to stderr: $(head -c 300 "$work/agent.err")"
else
    pass "journald: nothing on stderr (every line went to the journal)"
fi

journalctl --sync >/dev/null 2>&1 || true
journalctl -D "$journal_dir" -o json --no-pager >"$work/journal.json" 2>"$work/journalctl.err"
python3 "$here/journal_fields.py" --upstream docker.io \
    REGISTRY_UPSTREAM=docker.io "REGISTRY_HOST=http://127.0.0.1:$port" PROBE_RESULT=down PROBE_RESULT=up \
    PROBE_ATTEMPTS PROBE_REASON "HOSTS_FILE=$hosts/docker.io/hosts.toml" PRIORITY=4 PRIORITY=5 \
    SYSLOG_IDENTIFIER=configure-containerd-registries _TRANSPORT=journal "MESSAGE~mirror up" \
    "MESSAGE~wrote hosts.toml" <"$work/journal.json" | tally

# --log-format auto: journal when $JOURNAL_STREAM names stderr. systemd-cat connects stdout and stderr
# to journald's stream socket (as systemd does for a service); the variable is set the way systemd
# sets it: device:inode of that socket.
# shellcheck disable=SC2016 # expanded by that sh
timeout 30 systemd-cat -t ccr-auto-journal sh -c \
    'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$0" apply --log-format auto --hosts-dir "$1" --deadline 10s "auto-journal.example,http://127.0.0.1:$2,https://auto-journal.example"' \
    "$agent" "$hosts" "$port"
info "auto (JOURNAL_STREAM matches): exit $?"
# And with a JOURNAL_STREAM that names something else (a stale variable inherited from a parent):
# text on stderr, which systemd-cat turns into plain stream entries.
# shellcheck disable=SC2016 # expanded by that sh
timeout 30 systemd-cat -t ccr-auto-text sh -c \
    'JOURNAL_STREAM=1:1 exec "$0" apply --log-format auto --hosts-dir "$1" --deadline 10s "auto-text.example,http://127.0.0.1:$2,https://auto-text.example"' \
    "$agent" "$hosts" "$port"
info "auto (JOURNAL_STREAM does not match): exit $?"
journalctl --sync >/dev/null 2>&1 || true
journalctl -D "$journal_dir" -o json --no-pager >"$work/journal2.json" 2>/dev/null
python3 "$here/journal_fields.py" --upstream auto-journal.example \
    REGISTRY_UPSTREAM=auto-journal.example _TRANSPORT=journal PROBE_RESULT=up HOSTS_FILE <"$work/journal2.json" \
    | sed 's/journal field/auto with matching JOURNAL_STREAM: journal field/' | tally
python3 "$here/journal_fields.py" --upstream auto-text.example REGISTRY_UPSTREAM=auto-text.example <"$work/journal2.json" \
    | sed -e 's/^PASS /WANTFAIL /' -e 's/^FAIL /PASS /' -e 's/^WANTFAIL /FAIL /' \
    | sed 's/journal field REGISTRY_UPSTREAM=auto-text.example.*/auto with a stale JOURNAL_STREAM: no native entry (text instead)/' \
    | tally
if journalctl -D "$journal_dir" -o cat --no-pager SYSLOG_IDENTIFIER=ccr-auto-text 2>/dev/null | grep -q "auto-text.example.*wrote hosts.toml"; then
    pass "auto with a stale JOURNAL_STREAM: text lines on stderr (seen as stream entries of ccr-auto-text)"
else
    fail "auto with a stale JOURNAL_STREAM: no text line 'auto-text.example ... wrote hosts.toml' in the stream entries"
fi
if journalctl -D "$journal_dir" -o cat --no-pager SYSLOG_IDENTIFIER=ccr-auto-journal 2>/dev/null | grep -q "wrote hosts.toml"; then
    fail "auto with matching JOURNAL_STREAM: text lines went to stderr as well"
else
    pass "auto with matching JOURNAL_STREAM: no text line on stderr"
fi

# The reader watch follows containerd's journal with (ContainerdJournal.Reader, through the test tool
# journal-follow-check built beside the agent): every entry is read as soon as journald tells of it,
# including one written while a pass was reading, with nothing after it to wake the reader again,
# and one written after the file holding the last entry read was rotated away and deleted.
follow_tool=$(dirname "$agent")/journal-follow-check
if [ -x "$follow_tool" ]; then
    python3 "$here/follow_check.py" "$follow_tool" spin 60 150 100 | tally
    python3 "$here/follow_check.py" "$follow_tool" wait 6 1200 1000 | tally
    python3 "$here/follow_check.py" "$follow_tool" wait 6 1200 1000 2 | tally
else
    fail "journal follow: no $follow_tool (swift build builds it beside the agent)"
fi
