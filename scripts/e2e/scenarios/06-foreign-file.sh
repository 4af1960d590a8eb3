# shellcheck shell=bash
# an operator's hosts.toml is set aside while the agent's is in place, and containerd reads it again after
#
# B's directory holds a hand-written file naming the operator's own mirror (127.0.0.25). containerd
# pulls through that mirror; once apply has backed the file up and written its own, through the
# configured cache (127.0.0.21) and never the operator's; once B leaves the config, and again after
# `remove`, through the operator's mirror again. (That the backup and the restored file are the
# operator's bytes, mode included: WriteTests; remove's exit status: ExitCodeTests.)

# s6_pulls TEXT LOG: ctr and CRI pulls of B's image go through the mirror logging to LOG
s6_pulls() { pulls_prove "$B/$IMG" "$1 (?ns=$B)" mirror_saw "$2" "$B" blobs; }

scenario_foreign_file() {
    local f cfg_a=$T/s6-a.toml cfg_ab=$T/s6-ab.toml m25
    f=$(hosts_file "$B")
    reset_hosts
    mkdir -p "$HOSTS/$B"
    printf '# written by hand by an operator; not ours\nserver = "http://%s"\n\n[host."http://127.0.0.25:5000"]\n  capabilities = ["pull", "resolve"]\n' \
        "$B" >"$f"
    printf '[[registry]]\nupstream = "%s"\nserver = "http://%s"\n  [[registry.host]]\n  url = "http://127.0.0.20:5000"\n' \
        "$A" "$A" >"$cfg_a"
    { cat "$cfg_a"; printf '\n[[registry]]\nupstream = "%s"\nserver = "http://%s"\n  [[registry.host]]\n  url = "http://127.0.0.21:5000"\n' \
        "$B" "$B"; } >"$cfg_ab"
    show_file "$f"
    s6_pulls "the operator's file: through the operator's mirror 127.0.0.25" "$T/logs/cache25.log"

    agent s6-apply apply --config "$cfg_ab" --deadline 10s || true
    show_file "$f"
    m25=$(mark "$T/logs/cache25.log")
    s6_pulls "the agent's file: through the configured cache 127.0.0.21" "$T/logs/cache21.log"
    check "the operator's mirror got no request while the agent's file was in place" \
        no_image_request "$T/logs/cache25.log" "$m25"

    agent s6-leave apply --config "$cfg_a" --deadline 10s || true
    s6_pulls "$B left the config: through the operator's mirror again" "$T/logs/cache25.log"

    agent s6-again apply --config "$cfg_ab" --deadline 10s || true
    agent s6-remove remove --config "$cfg_ab" || true
    show_file "$f"
    s6_pulls "after remove: through the operator's mirror again" "$T/logs/cache25.log"
}
