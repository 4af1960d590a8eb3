# shellcheck shell=bash
# check's verdict on containerd's config_path is what the daemon does with it
#
# The daemon under test is restarted with its CRI registry config_path set each way an operator
# writes it: the release's default (""), the hosts dir, the hosts dir first of two, second of two,
# and (2.1 and later) first of two with use_local_image_pull = true. Each time apply writes A's file
# (cache 23), check --output json says whether containerd reads the hosts dir, and a CRI pull shows
# where the daemon really went: check's containerd finding is OK exactly when the pull goes through
# the cache. On 1.6 and 1.7 both lists are read; from 2.1 the transfer service takes a list as one
# directory and reads neither. Each form is tried twice: in the suite's config, and in the release's
# own `containerd config default` (changed only for paths, the socket and the snapshotter);
# S11_CONFIG=suite or own runs one of them. At the end the daemon runs with the suite's config again.

# s11_state JSON: the state of check's containerd finding, and its message
s11_state() {
    "$PY" -c '
import json, sys
c = json.load(open(sys.argv[1])).get("containerd", {})
print("%s\t%s" % (c.get("state"), c.get("message")))' "$1"
}

# s11_own_default FILE: the release's own default config with the suite's paths, socket and the
# native snapshotter (the transfer service told to unpack into it too)
s11_own_default() {
    local d=$T/containerd-own
    mkdir -p "$d/root" "$d/state" "$d/opt" "$T/cni/bin" "$T/cni/conf"
    "$CONTAINERD_BIN" config default 2>/dev/null | sed -E \
        -e "s#^root = .*#root = '$d/root'#" \
        -e "s#^state = .*#state = '$d/state'#" \
        -e "s#^imports = .*#imports = []#" \
        -e "s#address = ['\"]/run/containerd/containerd.sock['\"]#address = '$SOCK'#" \
        -e "s#address = ['\"]/run/containerd/containerd.sock.ttrpc['\"]#address = '$SOCK.ttrpc'#" \
        -e "s#snapshotter = ['\"]overlayfs['\"]#snapshotter = 'native'#" \
        -e "s#path = ['\"]/opt/containerd['\"]#path = '$d/opt'#" \
        -e "s#^([[:space:]]*)bin_dir = ['\"](/opt/cni/bin|/usr/lib/cni)['\"]#\\1bin_dir = '$T/cni/bin'#" \
        -e "s#^([[:space:]]*)bin_dirs = .*#\\1bin_dirs = ['$T/cni/bin']#" \
        -e "s#conf_dir = .*#conf_dir = '$T/cni/conf'#" \
        -e "s#^([[:space:]]*)(socket_path|plugin_path|plugin_config_path) = .*#\\1\\2 = ''#" \
        -e "s#^([[:space:]]*)cdi_spec_dirs = .*#\\1cdi_spec_dirs = []#" >"$1"
    local major=${CONTAINERD_VERSION#v}
    if [[ ${major%%.*} -ge 2 ]]; then
        printf "\n[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]\n  platform = 'linux/%s'\n  snapshotter = 'native'\n" \
            "$(containerd_arch)" >>"$1"
    fi
}

# s11_config BASE OUT VALUE LOCAL: BASE with the CRI registry table's config_path set to VALUE (only
# that one: a 2.x file has another, unused, in the transfer plugin) and, with LOCAL=1,
# use_local_image_pull = true in the images table
s11_config() {
    "$PY" - "$1" "$2" "$3" "$4" <<'PYEOF'
import re, sys
base, out, value, local = sys.argv[1:5]
lines = open(base).read().split("\n")
registry = re.compile(r"""^\s*\[plugins\.(['"])io\.containerd\.(grpc\.v1\.cri|cri\.v1\.images)\1\.registry\]\s*$""")
images = re.compile(r"""^\s*\[plugins\.(['"])io\.containerd\.cri\.v1\.images\1\]\s*$""")
done = False
for i, line in enumerate(lines):
    if registry.match(line):
        for j in range(i + 1, len(lines)):
            if lines[j].lstrip().startswith("["):
                lines.insert(j, '  config_path = "%s"' % value)
                break
            if re.match(r"^\s*config_path\s*=", lines[j]):
                lines[j] = re.sub(r"=.*", '= "%s"' % value, lines[j])
                break
        done = True
        break
if not done:
    sys.exit("no CRI registry table in " + base)
text = "\n".join(lines)
if local == "1":
    text = re.sub(r"(?m)^(\s*)use_local_image_pull = .*$", r"\1use_local_image_pull = true", text)
    if "use_local_image_pull = true" not in text:
        text = "\n".join(l + ("\n  use_local_image_pull = true" if images.match(l) else "") for l in text.split("\n"))
open(out, "w").write(text)
PYEOF
}

scenario_config_path() {
    local which
    for which in ${S11_CONFIG:-suite own}; do s11_forms "$which"; done
    restart_containerd || fail "containerd did not start again with the suite's config"
    reset_hosts
}

# s11_forms suite|own: every form of config_path in that config
s11_forms() {
    local cfg=$T/s11-check.toml other=$T/s11-other-certs.d base form value local conf line state message m rc through forms
    mkdir -p "$other"
    base=$T/containerd/config.toml
    if [[ $1 == own ]]; then
        base=$T/s11-own-default.toml
        s11_own_default "$base"
        info "from containerd $CONTAINERD_VERSION's own default config (version $(sed -n 's/^version = //p' "$base"))"
    else
        info "from the suite's config for containerd $CONTAINERD_VERSION (version $(sed -n 's/^version = //p' "$base"))"
    fi
    forms="default one first second"
    local release=${CONTAINERD_VERSION#v}
    [[ ${release%%.*} -lt 2 ]] || [[ $release == 2.0.* ]] || forms+=" local-first"
    for form in $forms; do
        local=0
        case $form in
            default) value="" ;;
            one) value=$HOSTS ;;
            first) value="$HOSTS:$other" ;;
            second) value="$other:$HOSTS" ;;
            local-first) value="$HOSTS:$other" local=1 ;;
        esac
        conf=$T/s11-containerd-$1-$form.toml
        s11_config "$base" "$conf" "$value" "$local" || { fail "no config for $form"; continue; }
        restart_containerd "$conf" || { fail "containerd did not start with config_path = \"$value\" ($form)"; continue; }
        reset_hosts
        printf 'containerd_config = "%s"\ncontainerd_unit = ""\n\n[[registry]]\nupstream = "%s"\nserver = "http://%s"\n\n  [[registry.host]]\n  url = "http://127.0.0.23:5000"\n' \
            "$conf" "$A" "$A" >"$cfg"
        agent "s11-apply-$1-$form" apply --config "$cfg" --deadline 10s || true
        agent "s11-check-$1-$form" check --config "$cfg" --output json || true
        agent "s11-plan-$1-$form" plan --config "$cfg" || true
        line=$(s11_state "$T/logs/agent-s11-check-$1-$form.out")
        state=${line%%$'\t'*}
        message=${line#*$'\t'}
        m=$(mark "$T/logs/cache23.log")
        rc=0
        pull cri "$A/$IMG" || rc=$?
        through=no
        eventually through_mirror "$T/logs/cache23.log" "$m" "$A" && through=yes
        info "containerd $CONTAINERD_VERSION, $1 config, $form: config_path = \"$value\"$([[ $local == 1 ]] && echo ", use_local_image_pull = true"): check $state ($message); CRI pull through the cache: $through"
        check "$1 config, $form: the CRI pull succeeds" test "$rc" == 0
        if [[ $through == yes ]]; then
            check "$1 config, $form: the pull went through the cache, and check says containerd reads the hosts dir" test "$state" == OK
        else
            check "$1 config, $form: the pull went past the cache, and check says CRITICAL" test "$state" == CRITICAL
        fi
    done
}
