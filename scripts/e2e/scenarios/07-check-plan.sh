# shellcheck shell=bash
# check on the config of the containerd under test agrees with what it does; plan changes nothing
#
# check reads containerd's own config (the one this suite's daemon runs with) to see that it reads
# the hosts dir; when check says OK, a CRI pull (the daemon reading config_path, as kubelet's pulls
# do) goes through the mirror the file names. plan, on a hosts dir with a foreign file, a file of an
# upstream that left the config and a file to create, exits 1 with --exit-code and changes nothing
# (entries, modes, owners, mtimes, contents); after apply it exits 0, again changing nothing.
# (check's states and exit codes for dead hosts, stale and missing files, and containerd configs
# without config_path or missing: HealthReportTests, CheckTextTests, ContainerdConfigCheckTests;
# plan's text and diffs: PlanTextTests, UnifiedDiffTests.)

# s7_snapshot DIR: every entry with type, mode, owner, mtime (ns), size and link target, then the
# sha256 of every file: equal snapshots, nothing changed
s7_snapshot() {
    (
        cd "$1" || exit 1
        find . -printf '%p %y %m %U:%G %T@ %s %l\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    )
}

# s7_ok JSON: check --output json says OK overall and for containerd; prints what it says
s7_ok() {
    "$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
c = r.get("containerd", {})
print("state %s; containerd: %s: %s" % (r.get("state"), c.get("state"), c.get("message")))
sys.exit(0 if r.get("state") == "OK" and c.get("state") == "OK" else 1)' "$1"
}

scenario_check_plan() {
    local ctd=$T/containerd/config.toml cfg=$T/s7-check.toml said rc
    reset_hosts
    printf 'containerd_config = "%s"\n\n[[registry]]\nupstream = "%s"\nserver = "http://%s"\n\n  [[registry.host]]\n  url = "http://127.0.0.23:5000"\n' \
        "$ctd" "$A" "$A" >"$cfg"
    info "containerd's config: $ctd ($(grep -E '^\s*config_path' "$ctd" | sed 's/^ *//'))"
    agent s7-apply apply --config "$cfg" --deadline 10s || true
    agent s7-check check --config "$cfg" --output json || true
    rc=0
    said=$(s7_ok "$T/logs/agent-s7-check.out" 2>&1) || rc=$?
    info "check: $said"
    check "check --output json on the daemon's own config: OK, containerd reads the hosts dir" test "$rc" == 0
    PULL_WITH=cri pulls_prove "$A/$IMG" "as check said: the daemon pulls through 127.0.0.23 (?ns=$A)" \
        through_mirror "$T/logs/cache23.log" "$A"

    # the release's own default config (`containerd config default`), its CRI registry config_path
    # set to the hosts dir the way an operator would: check says OK for it too
    local default=$T/s7-containerd-default.toml dcfg=$T/s7-check-default.toml
    "$CONTAINERD_BIN" config default 2>/dev/null |
        sed -E "s#^([[:space:]]*config_path = ).*#\1\"$HOSTS\"#" >"$default"
    # as if edited before containerd (re)started, the way an operator applies it: dated like the
    # config the daemon started with (else check rightly says the daemon started before it changed)
    touch -r "$ctd" "$default"
    sed "s#^containerd_config = .*#containerd_config = \"$default\"#" "$cfg" >"$dcfg"
    info "containerd $CONTAINERD_VERSION's default config: version $(sed -n 's/^version = //p' "$default"), $(grep -cE '^[[:space:]]*config_path = ' "$default") config_path line(s) set to the hosts dir"
    agent s7-check-default check --config "$dcfg" --output json || true
    rc=0
    said=$(s7_ok "$T/logs/agent-s7-check-default.out" 2>&1) || rc=$?
    info "check: $said"
    check "check --output json on containerd $CONTAINERD_VERSION's default config (config_path set): OK" test "$rc" == 0

    local plan=$T/s7-plan.toml
    reset_hosts
    mkdir -p "$HOSTS/$B" "$HOSTS/$C"
    printf '# hand-written by an operator; not ours\nserver = "http://%s"\n\n[host."http://127.0.0.21:5000"]\n  capabilities = ["pull"]\n' \
        "$B" >"$(hosts_file "$B")"
    chmod 640 "$(hosts_file "$B")"
    # a file of ours (the marker line) for an upstream that is no longer configured
    printf '# managed by configure-containerd-registries; manual changes are overwritten\nserver = "http://%s"\n\n[host."http://127.0.0.22:5000"]\n  capabilities = ["pull", "resolve"]\n  dial_timeout = "1s"\n' \
        "$C" >"$(hosts_file "$C")"
    touch -d '2020-01-02 03:04:05.123456789' "$(hosts_file "$B")" "$(hosts_file "$C")" "$HOSTS/$B" "$HOSTS/$C" "$HOSTS"
    printf '[[registry]]\nupstream = "%s"\nserver = "http://%s"\n\n  [[registry.host]]\n  url = "http://127.0.0.23:5000"\n\n[[registry]]\nupstream = "%s"\nserver = "http://%s"\n\n  [[registry.host]]\n  url = "http://127.0.0.21:5000"\n' \
        "$A" "$A" "$B" "$B" >"$plan"

    s7_snapshot "$HOSTS" >"$T/s7-before"
    rc=0
    agent s7-plan plan --config "$plan" --exit-code || rc=$?
    check "plan --exit-code with changes pending (create, back up, remove): exit 1" test "$rc" == 1
    s7_snapshot "$HOSTS" >"$T/s7-after"
    check "plan changed nothing in the hosts dir (entries, modes, owners, mtimes, sizes, sha256)" cmp -s "$T/s7-before" "$T/s7-after"
    diff "$T/s7-before" "$T/s7-after" | sed 's/^/        | /' || true

    agent s7-plan-apply apply --config "$plan" --deadline 10s || true
    s7_snapshot "$HOSTS" >"$T/s7-before2"
    rc=0
    agent s7-plan-clean plan --config "$plan" --exit-code || rc=$?
    check "after apply, plan --exit-code: exit 0 (nothing pending)" test "$rc" == 0
    s7_snapshot "$HOSTS" >"$T/s7-after2"
    check "that plan changed nothing either" cmp -s "$T/s7-before2" "$T/s7-after2"
}
