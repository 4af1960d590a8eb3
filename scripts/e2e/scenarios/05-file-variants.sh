# shellcheck shell=bash
# containerd reads every kind of file the agent writes as meant, proven by the mirror's log
#
# Each variant is a config the agent turns into a hosts.toml; containerd pulls with it, by ctr and
# by the CRI, and the mirror's log shows the requests: dial_timeout, ca (a CA made at test time),
# skip_verify, client (mutual TLS), override_path (a mirror below /cache/docker), header (seen by a
# logging proxy, a value with quotes, a header with two values), several hosts with different
# capabilities (tags resolved on one, blobs from the other), _default, an IPv6 upstream, and
# host:port upstreams throughout. (What the files hold, byte for byte: HostsFileTests; the
# directory names: WriteTests. scripts/parse-check.sh covers every accepted host URL form.)

# s5_variant NAME UPSTREAM CONFIG: CONFIG applied into an empty hosts dir; the file is shown
s5_variant() {
    local name=$1 upstream=$2 cfg=$T/s5-$1.toml
    reset_hosts
    printf '%s\n' "$3" >"$cfg"
    info "[$name]"
    agent "s5-$name" apply --config "$cfg" --deadline 10s || true
    show_file "$(hosts_file "$upstream")"
}

# s5_config UPSTREAM HOST: a config of one registry for UPSTREAM (server: its http URL) with one
# host, HOST being the lines of its table
s5_config() {
    printf '[[registry]]\nupstream = "%s"\nserver = "http://%s"\n\n  [[registry.host]]\n%s\n' "$1" "$1" "$2"
}

# s5_multi LOG MARK UPSTREAM: both values of the header X-E2E-Multi reached the proxy
s5_multi() {
    proxy_saw "$1" "$2" "$3" '/v2/library/test/manifests/1' X-E2E-Multi one &&
        proxy_saw "$1" "$2" "$3" '/v2/library/test/manifests/1' X-E2E-Multi two
}

# tag on one host, blobs from another: s5_split LOG_TAG LOG_BLOBS MARK_TAG MARK_BLOBS UPSTREAM
s5_split() { mirror_saw_tag "$1" "$3" "$5" && mirror_saw "$2" "$4" "$5" blobs && ! mirror_saw_tag "$2" "$4" "$5"; }

scenario_file_variants() {
    local m_up m rc how v6='[::1]:5010'
    m_up=$(mark "$T/logs/up10.log")

    s5_variant dial_timeout "$A" "$(s5_config "$A" '  url = "http://127.0.0.20:5000"
  dial_timeout = "3s"')"
    pulls_prove "$A/$IMG" "[dial_timeout] through 127.0.0.20 (?ns=$A)" through_mirror "$T/logs/cache20.log" "$A"

    s5_variant ca "$A" "$(s5_config "$A" "  url = \"https://127.0.0.50:5443\"
  ca = [\"$T/tls/ca.pem\"]")"
    pulls_prove "$A/$IMG" "[ca] through the TLS cache 127.0.0.50 (?ns=$A)" through_mirror "$T/logs/cache50.log" "$A"

    s5_variant skip_verify "$A" "$(s5_config "$A" '  url = "https://127.0.0.50:5443"
  skip_verify = true')"
    pulls_prove "$A/$IMG" "[skip_verify] through the TLS cache 127.0.0.50 (?ns=$A)" through_mirror "$T/logs/cache50.log" "$A"

    rc=0
    nsx curl -s -o /dev/null --max-time 2 --cacert "$T/tls/ca.pem" https://127.0.0.51:5443/v2/ || rc=$?
    check "[client] the mutual-TLS cache refuses a client without a certificate" test "$rc" != 0
    s5_variant client "$A" "$(s5_config "$A" "  url = \"https://127.0.0.51:5443\"
  ca = [\"$T/tls/ca.pem\"]
  client = [[\"$T/tls/client.pem\", \"$T/tls/client.key\"]]")"
    pulls_prove "$A/$IMG" "[client] through the mutual-TLS cache 127.0.0.51 (?ns=$A)" through_mirror "$T/logs/cache51.log" "$A"

    s5_variant override_path "$A" "$(s5_config "$A" '  url = "http://127.0.0.60:5000/cache/docker"
  override_path = true')"
    pulls_prove "$A/$IMG" "[override_path] through the proxy below /cache/docker (?ns=$A)" \
        proxy_saw "$T/logs/proxy60.log" "$A" '/cache/docker/library/test/manifests/1'

    s5_variant header "$A" "$(s5_config "$A" '  url = "http://127.0.0.61:5000"
  [registry.host.header]
  X-E2E-Token = ["s3cr3t \"quoted\""]
  X-E2E-Multi = ["one", "two"]')"
    pulls_prove "$A/$IMG" "[header] the proxy got X-E2E-Token with its quotes (?ns=$A)" \
        proxy_saw "$T/logs/proxy61.log" "$A" '/v2/library/test/manifests/1' X-E2E-Token 's3cr3t "quoted"'
    PULL_WITH=ctr pulls_prove "$A/$IMG" "[header] both values of X-E2E-Multi arrive" s5_multi "$T/logs/proxy61.log" "$A"

    # written without probing (readiness_probe = false) so that both hosts are in the file for sure
    s5_variant several_hosts "$A" "[[registry]]
upstream = \"$A\"
server = \"http://$A\"
readiness_probe = false

  [[registry.host]]
  url = \"http://127.0.0.20:5000\"
  capabilities = [\"pull\"]

  [[registry.host]]
  url = \"http://127.0.0.23:5000\"
  capabilities = [\"pull\", \"resolve\"]"
    for how in ctr cri; do
        local m20 m23
        m20=$(mark "$T/logs/cache20.log")
        m23=$(mark "$T/logs/cache23.log")
        rc=0
        pull "$how" "$A/$IMG" || rc=$?
        check "$how: [several_hosts] tag resolved on the resolve host 127.0.0.23, blobs from the pull-only 127.0.0.20 (and no tag there)" \
            eval "[[ $rc == 0 ]] && eventually s5_split '$T/logs/cache23.log' '$T/logs/cache20.log' $m23 $m20 '$A'"
    done

    # _default: the file for every registry without a directory of its own; no server line, so
    # the fallback is each image's own registry
    s5_variant _default _default '[[registry]]
upstream = "_default"

  [[registry.host]]
  url = "http://127.0.0.22:5000"'
    m=$(mark "$T/logs/up12.log")
    pulls_prove "$C/$IMG" "[_default] $C's image through the _default mirror 127.0.0.22 (?ns=$C)" \
        through_mirror "$T/logs/cache22.log" "$C"
    check "[_default] upstream $C saw no request from containerd itself" no_containerd_direct "$T/logs/up12.log" "$m"

    # an IPv6 upstream: the directory is "[::1]:5010" verbatim; its mirror (a cache of A) serves the
    # image, so that upstream need not exist
    s5_variant ipv6_upstream "$v6" "$(s5_config "$v6" '  url = "http://127.0.0.23:5000"')"
    PULL_WITH=ctr pulls_prove "$v6/$IMG" "[ipv6_upstream] through 127.0.0.23 (?ns=$v6)" through_mirror "$T/logs/cache23.log" "$v6"
    m=$(mark "$T/logs/cache23.log")
    rc=0
    PULL_LOG=$T/logs/s5-v6-cri.log pull cri "$v6/$IMG" || rc=$?
    if [[ $rc != 0 ]] && grep -q 'invalid reference format' "$T/logs/s5-v6-cri.log"; then
        # the CRI of containerd 1.6 parses references with docker/distribution's reference
        # package, which knows no IPv6 literal; ctr (above) does
        info "[ipv6_upstream] CRI half skipped: this containerd's CRI refuses the reference itself (invalid reference format), before any hosts.toml is read"
    else
        check "cri: [ipv6_upstream] through 127.0.0.23 (?ns=$v6)" \
            eval "[[ $rc == 0 ]] && eventually through_mirror '$T/logs/cache23.log' $m '$v6'"
    fi

    check "[host:port upstream] every variant above used the upstream $A: it saw no request from containerd" \
        no_containerd_direct "$T/logs/up10.log" "$m_up"
}
