# shellcheck shell=bash
# Where a pull went, from the logs of the registries. containerd adds ?ns=<upstream> to every
# request it sends to a mirror, and never to the upstream server itself, so a mirror's access log
# with those requests proves the pull went through it; an upstream's log with containerd's user
# agent proves containerd went straight there (a cache's own requests carry the distribution's
# user agent). Every proof takes LOG MARK first and looks only at the lines since the mark (read
# through < <(since ...): a grep -q that stops early must not turn into a pipefail status).
# Uses PY of the runner.

# ns_re UPSTREAM: regex of containerd's ns= query value for UPSTREAM, raw or %-encoded
ns_re() {
    local u=$1 out="" ch i
    for ((i = 0; i < ${#u}; i++)); do
        ch=${u:i:1}
        case "$ch" in
            :) out+='(:|%3A)' ;;
            "[") out+='(\[|%5B)' ;;
            "]") out+='(\]|%5D)' ;;
            .) out+='\.' ;;
            *) out+=$ch ;;
        esac
    done
    printf 'ns=%s' "$out"
}

# mirror_saw LOG MARK UPSTREAM KIND: a successful GET/HEAD of KIND (manifests|blobs) of
# library/test with ?ns=UPSTREAM
mirror_saw() {
    grep -Eq "\"(GET|HEAD) /v2/library/test/$4/[^ ]*[?&]$(ns_re "$3")[^ ]* HTTP/[0-9.]+\" 200 " < <(since "$1" "$2")
}
# mirror_saw_tag LOG MARK UPSTREAM: the tag resolved there (manifests/1) with ?ns=UPSTREAM
mirror_saw_tag() {
    grep -Eq "\"(GET|HEAD) /v2/library/test/manifests/1[?][^ ]*$(ns_re "$3")[^ ]* HTTP/[0-9.]+\" 200 " < <(since "$1" "$2")
}
# through_mirror LOG MARK UPSTREAM: the tag resolved and the blobs fetched there, with ?ns=UPSTREAM
through_mirror() { mirror_saw_tag "$@" && mirror_saw "$@" blobs; }
# containerd_direct LOG MARK: an upstream got requests from containerd itself (its user agent)
containerd_direct() { grep -Eq '"containerd/[^"]*"$' < <(since "$1" "$2"); }
no_containerd_direct() { ! containerd_direct "$@"; }
# image_request LOG MARK: a registry got a request for library/test (no_image_request: none)
image_request() { grep -Eq '"(GET|HEAD) /v2/library/test/' < <(since "$1" "$2"); }
no_image_request() { ! image_request "$@"; }

# proxy_saw LOG MARK UPSTREAM PATH_RE [HEADER VALUE]: a logging proxy (scripts/e2e/logproxy.py)
# answered 200 to a request for PATH_RE with ?ns=UPSTREAM (and, when given, that header value)
proxy_saw() {
    "$PY" -c '
import json, re, sys
from urllib.parse import parse_qs
upstream, path_re, hdr = sys.argv[1], sys.argv[2], [h.lower() for h in sys.argv[3:4]] + sys.argv[4:5]
for line in sys.stdin:
    r = json.loads(line)
    if r["status"] != 200 or parse_qs(r["query"]).get("ns") != [upstream] or not re.fullmatch(path_re, r["path"]):
        continue
    if hdr and hdr not in [[k.lower(), v] for k, v in r["headers"]]:
        continue
    sys.exit(0)
sys.exit(1)' "${@:3}" < <(since "$1" "$2")
}

# evidence TEXT PROOF LOG MARK ARGS...: a check that PROOF LOG MARK ARGS holds within 3 s (a
# registry logs a request once its answer is out); when it does not, the requests LOG got since
# MARK are shown
evidence() {
    local text=$1 proof=$2 logf=$3 m=$4
    shift 4
    if eventually "$proof" "$logf" "$m" "$@"; then
        pass "$text"
    else
        fail "$text"
        info "requests in $(basename "$logf") since the mark:"
        since "$logf" "$m" | grep -E '"(GET|HEAD) |"method"' | cut -c1-300 | sed 's/^/        | /' || true
    fi
}

# pulls_prove REF TEXT PROOF LOG ARGS...: REF pulled by ctr and through the CRI; each pull is one
# check, "ctr: TEXT" and "cri: TEXT", that passes when the pull succeeded and PROOF LOG MARK ARGS
# holds for what LOG got during it. PULL_LIMIT=S: the pull must also take less than S seconds.
# PULL_WITH="ctr" (or "cri"): that pull only.
pulls_prove() {
    local ref=$1 text=$2 proof=$3 logf=$4 how m t0 rc secs
    shift 4
    [[ -z "${PULL_LIMIT:-}" ]] || text+=", pull < ${PULL_LIMIT} s"
    for how in ${PULL_WITH:-ctr cri}; do
        m=$(mark "$logf")
        t0=$EPOCHREALTIME
        rc=0
        pull "$how" "$ref" || rc=$?
        secs=$(elapsed "$t0")
        if [[ $rc != 0 ]]; then
            fail "$how: $text (the pull failed: exit $rc)"
        elif [[ -n "${PULL_LIMIT:-}" ]] && ! less_than "$secs" "$PULL_LIMIT"; then
            fail "$how: $text (it took ${secs}s)"
        else
            evidence "$how: $text" "$proof" "$logf" "$m" "$@"
        fi
    done
}
