# shellcheck shell=bash
# a cache that accepts and never answers is left out: containerd never connects to it
#
# C has two hosts: 127.0.0.40 accepts connections and never answers, 127.0.0.22 is a live cache.
# The file the agent writes makes containerd pull through the live cache quickly and never open a
# connection to the silent one. (That the probe calls a silent host down within its timeout, and
# that apply is not held up by it: ProbeTests, IsolationTests.)

scenario_hanging_cache() {
    local cfg=$T/s3.toml m_hang
    reset_hosts
    cat >"$cfg" <<EOF
[probe]
connect_timeout = "1s"
timeout = "2s"

[[registry]]
upstream = "$C"
server = "http://$C"

  [[registry.host]]
  url = "http://127.0.0.40:5000"

  [[registry.host]]
  url = "http://127.0.0.22:5000"
EOF
    agent s3-apply apply --config "$cfg" --deadline 10s || true
    show_file "$(hosts_file "$C")"
    m_hang=$(mark "$T/logs/hang40.log")
    PULL_LIMIT=5 pulls_prove "$C/$IMG" "through the live cache 127.0.0.22 (?ns=$C)" mirror_saw "$T/logs/cache22.log" "$C" blobs
    check "containerd never connected to the silent host" s3_no_accept "$T/logs/hang40.log" "$m_hang"
}

# s3_no_accept LOG MARK: the hang server accepted no connection since MARK
s3_no_accept() { ! grep -q '^accept' < <(since "$1" "$2"); }
