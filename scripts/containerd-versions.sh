#!/usr/bin/env bash
# The containerd releases the tests are proven on, side by side, without touching the machine's own
# containerd: 1.6 is Debian 12's package (installed with apt when missing), 1.7 and 2.1 are the
# `containerd` packages of Debian 13 "trixie" and of Debian unstable "sid", downloaded (not
# installed) and unpacked with dpkg-deb -x under the cache directory. Prints one line per release,
# "VERSION CONTAINERD_BIN CTR_BIN", for scripts/e2e.sh and scripts/parse-check.sh:
#
#   sudo bash scripts/containerd-versions.sh              # 1.6, 1.7 and 2.1
#   sudo bash scripts/containerd-versions.sh 2.1          # only some, by release
#   sudo bash scripts/containerd-versions.sh | while read -r v ctd ctr; do
#       CONTAINERD_BIN=$ctd CTR_BIN=$ctr bash scripts/e2e.sh
#   done
#
# Each suite gets a private apt configuration under $CCR_CONTAINERD_CACHE/<suite>/: a sources list
# naming the machine's own Debian mirror (read from /etc/apt/sources.list*, as
# scripts/systemd-test.sh does) with the suite swapped in, its own lists and archive cache, so the
# machine's apt state is never changed and no other suite ever reaches its package lists. The
# package is pinned to one upstream release (the Debian revision may move on); the exact version is
# read from the suite's own list with apt-cache madison. The .deb is unpacked into
# $CCR_CONTAINERD_CACHE/<version>/ (usr/bin/containerd, usr/bin/ctr, the shims); a second run finds
# the binaries there and uses no network at all. Every binary is checked by running
# `containerd --version` and `ctr --version`; a package that needs a newer libc6 than the
# machine's is refused with that reason.
#
# Environment:
#   CCR_CONTAINERD_CACHE   where the suites' apt state and the unpacked releases live
#                          (default /var/cache/ccr-containerd)
#
# Progress goes to stderr, the lines above to stdout. Exit status 1 when a release could not be made
# available (the others are still printed), 2 on a usage error. Needs root (apt).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib/common.sh"
CACHE=${CCR_CONTAINERD_CACHE:-/var/cache/ccr-containerd}

# RELEASE SUITE UPSTREAM-VERSION DEBIAN-VERSION-PATTERN: what each release is and where it comes
# from (1.6 is the machine's own package, suite "system": Debian 12 has 1.6.20, any 1.6.x is taken)
RELEASES=(
    "1.6 system 1.6 -"
    "1.7 trixie 1.7.24 1.7.24~ds1-*"
    "2.1 sid 2.1.9 2.1.9+ds1-*"
)

log() { printf '[containerd-versions] %s\n' "$*" >&2; }

# apt_mirror: the machine's Debian mirror (not the security one), as its apt sources name it
apt_mirror() {
    local uri
    uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
    if [[ -z "$uri" ]]; then
        uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed -e 's/\[[^]]*\]//' | awk '{print $2}' | grep -v security | head -1 || true)
    fi
    [[ -n "$uri" ]] || { echo "no Debian mirror in /etc/apt/sources.list*" >&2; return 1; }
    echo "$uri"
}

# suite_opts SUITE: the apt options that make apt-get and apt-cache use SUITE's private state only
suite_opts() {
    local d=$CACHE/$1
    printf '%s\n' -o "Dir::Etc::sourcelist=$d/sources.list" -o Dir::Etc::sourceparts=- \
        -o "Dir::State::lists=$d/lists" -o "Dir::Cache=$d/cache" -o APT::Get::List-Cleanup=0 \
        -o Acquire::Languages=none
}

# suite_update SUITE: the private sources list and a fresh package list for SUITE
suite_update() {
    local suite=$1 d=$CACHE/$1 mirror opts
    mirror=$(apt_mirror)
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/debs"
    printf 'deb [arch=%s signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
        "$(dpkg --print-architecture)" "$mirror" "$suite" >"$d/sources.list"
    mapfile -t opts < <(suite_opts "$suite")
    log "$suite: apt-get update (private lists under $d)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" -q update >"$d/update.log" 2>&1; then
        sed 's/^/    /' "$d/update.log" >&2
        return 1
    fi
}

# suite_version SUITE PATTERN: the version of the suite's containerd that matches PATTERN
suite_version() {
    local opts
    mapfile -t opts < <(suite_opts "$1")
    apt-cache "${opts[@]}" madison containerd 2>/dev/null |
        awk -F'|' -v s=" $1/" '$3 ~ s { gsub(/ /, "", $2); print $2 }' |
        while read -r v; do
            # shellcheck disable=SC2053 # PATTERN is a glob on purpose
            [[ $v == $2 ]] && echo "$v"
        done | head -1
}

# run_version BIN: the version BIN says it is (the third word of `BIN --version`)
run_version() { "$1" --version 2>/dev/null | awk 'NR == 1 { print $3 }'; }

# usable DIR UPSTREAM: DIR holds a containerd and a ctr of release UPSTREAM that run here
usable() {
    local v
    [[ -x "$1/usr/bin/containerd" && -x "$1/usr/bin/ctr" ]] || return 1
    v=$(run_version "$1/usr/bin/containerd") && [[ $v == "$2"[~+]* || $v == "$2" || $v == "v$2" ]] || return 1
    v=$(run_version "$1/usr/bin/ctr") && [[ $v == "$2"[~+]* || $v == "$2" || $v == "v$2" ]]
}

# libc_ok DEB: the package's libc6 dependency is met by the machine's libc6 (prints why not)
libc_ok() {
    local need have
    need=$(dpkg-deb -f "$1" Depends | tr ',' '\n' | sed -nE 's/^ *libc6 \(>= ([^)]+)\).*/\1/p' | head -1)
    have=$(dpkg-query -W -f='${Version}' libc6)
    [[ -z "$need" ]] && return 0
    dpkg --compare-versions "$have" ge "$need" && return 0
    echo "it needs libc6 >= $need, this machine has $have"
    return 1
}

# fetch SUITE UPSTREAM PATTERN: the release unpacked under $CACHE/UPSTREAM (network only when it is
# not there yet); prints the directory
fetch() {
    local suite=$1 upstream=$2 pattern=$3 dir=$CACHE/$2 version deb opts why tmp
    if usable "$dir" "$upstream"; then
        log "$upstream: already unpacked in $dir ($(cat "$dir/.debian-version" 2>/dev/null || echo '?'))"
        echo "$dir"
        return 0
    fi
    # a .deb downloaded before is used again without asking the mirror
    deb=$(find "$CACHE/$suite/debs" -maxdepth 1 -name "containerd_${pattern//\*/}*.deb" 2>/dev/null | sort | tail -1 || true)
    if [[ -z "$deb" ]]; then
        suite_update "$suite" || { log "$suite: apt-get update failed"; return 1; }
        version=$(suite_version "$suite" "$pattern")
        if [[ -z "$version" ]]; then
            mapfile -t opts < <(suite_opts "$suite")
            log "$suite has no containerd $pattern; it has: $(apt-cache "${opts[@]}" madison containerd 2>/dev/null |
                awk -F'|' -v s=" $suite/" '$3 ~ s { gsub(/ /, "", $2); printf "%s ", $2 }')"
            return 1
        fi
        log "$suite: apt-get download containerd=$version"
        mapfile -t opts < <(suite_opts "$suite")
        chown _apt "$CACHE/$suite/debs" 2>/dev/null || true   # apt's sandbox user writes the file
        (cd "$CACHE/$suite/debs" && apt-get "${opts[@]}" -q download "containerd=$version") \
            >"$CACHE/$suite/download.log" 2>&1 || { sed 's/^/    /' "$CACHE/$suite/download.log" >&2; return 1; }
        deb=$CACHE/$suite/debs/containerd_${version}_$(dpkg --print-architecture).deb
        [[ -f "$deb" ]] || deb=$(find "$CACHE/$suite/debs" -maxdepth 1 -name "containerd_${pattern//\*/}*.deb" | sort | tail -1)
        [[ -n "$deb" ]] || { log "$suite: apt-get download left no .deb"; return 1; }
    fi
    why=$(libc_ok "$deb") || { log "$upstream: $(basename "$deb") cannot run on this machine: $why"; return 1; }
    tmp=$(mktemp -d "$CACHE/.unpack.XXXXXX")
    dpkg-deb -x "$deb" "$tmp"
    dpkg-deb -f "$deb" Version >"$tmp/.debian-version"
    chmod 755 "$tmp"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    log "$upstream: unpacked $(basename "$deb") into $dir"
    usable "$dir" "$upstream" || {
        log "$upstream: the unpacked binaries do not run or are another release: $("$dir/usr/bin/containerd" --version 2>&1 | head -2)"
        return 1
    }
    echo "$dir"
}

# system RELEASE: the machine's own containerd (Debian 12's package, installed when missing), which
# must be of RELEASE (1.6: a Debian 12 point release may bring another 1.6.x); prints
# "VERSION CONTAINERD CTR"
system() {
    local ctd ctr v
    ensure_packages containerd >&2 || { log "cannot install Debian's containerd"; return 1; }
    ctd=$(command -v containerd || true) ctr=$(command -v ctr || true)
    [[ -x "$ctd" && -x "$ctr" ]] || { log "no containerd or ctr on PATH after installing containerd"; return 1; }
    ctd=$(readlink -f "$ctd") ctr=$(readlink -f "$ctr")
    v=$(run_version "$ctd")
    [[ ${v#v} == "$1".* ]] || { log "the system's containerd is $v, not $1"; return 1; }
    [[ "$(run_version "$ctr")" == "$v" ]] || { log "the system's ctr is $(run_version "$ctr"), containerd $v"; return 1; }
    v=${v#v}
    v=${v%%[~+-]*}
    log "$v: the system's containerd ($(dpkg-query -W -f='${Version}' containerd 2>/dev/null || echo '?'))"
    echo "$v $ctd $ctr"
}

# --- main
wanted=("$@")
for w in "${wanted[@]}"; do
    printf '%s\n' "${RELEASES[@]}" | awk '{print $1}' | grep -qxF "$w" ||
        { echo "usage: $0 [RELEASE...]  (releases: $(printf '%s\n' "${RELEASES[@]}" | awk '{printf "%s ", $1}'))" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "run as root (apt)" >&2; exit 2; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # one run at a time: two would share the suites' apt state and the unpack directories

status=0
for entry in "${RELEASES[@]}"; do
    read -r release suite upstream pattern <<<"$entry"
    if ((${#wanted[@]})) && [[ " ${wanted[*]} " != *" $release "* ]]; then continue; fi
    if [[ $suite == system ]]; then
        if line=$(system "$release"); then
            echo "$line"
        else
            status=1
        fi
    elif dir=$(fetch "$suite" "$upstream" "$pattern"); then
        echo "$upstream $dir/usr/bin/containerd $dir/usr/bin/ctr"
    else
        log "$release: not available"
        status=1
    fi
done
exit "$status"
