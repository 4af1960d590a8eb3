# shellcheck shell=bash
# The registries of the suite, all inside the namespace: docker-registry upstreams and pull-through
# caches (plain, TLS, mutual TLS), the test image, a "mirror" that accepts and never answers, and
# logging proxies. Uses NS, T, PY and HELPERS of the runner; logs go to $T/logs/NAME.log.

# make_tls: a CA, a server certificate for 127.0.0.50 and .51, and a client certificate, in $T/tls
make_tls() {
    local d=$T/tls
    mkdir -p "$d"
    (
        cd "$d" || exit 1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 2 -subj /CN=ccr-e2e-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj /CN=127.0.0.50 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.50,IP:127.0.0.51\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out server.pem -days 2 -extfile server.ext 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout client.key -out client.csr -subj /CN=ccr-e2e-node 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out client.pem -days 2 -extfile client.ext 2>/dev/null
    )
    chmod 644 "$d"/*.pem "$d"/*.key
}

# wait_http URL [CURL_OPTION...]: until GET URL answers 200 (10 s at most)
wait_http() {
    local url=$1 code="" i
    shift
    for ((i = 0; i < 100; i++)); do
        code=$(nsx curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 1 "$@" "$url" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    echo "no 200 from $url (last answer: ${code:-none})" >&2
    return 1
}

# start_registry NAME ADDR PORT [REMOTE_URL [tls|mtls]]: a docker-registry (a pull-through cache of
# REMOTE_URL when given) with empty storage, its access log in $T/logs/NAME.log; returns once it
# answers. Started again after stop_named NAME, it comes back empty, like a fresh cache pod.
start_registry() {
    local name=$1 addr=$2 port=$3 remote=${4:-} tls=${5:-}
    local d=$T/reg/$name scheme=http opts=()
    rm -rf "$d"
    mkdir -p "$d/data"
    {
        printf 'version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n'
        printf 'storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n' "$d/data"
        printf 'http:\n  addr: %s:%s\n  secret: ccr-e2e-%s\n' "$addr" "$port" "$name"
        if [[ -n "$tls" ]]; then
            printf '  tls:\n    certificate: %s\n    key: %s\n' "$T/tls/server.pem" "$T/tls/server.key"
            [[ "$tls" != mtls ]] || printf '    clientcas:\n      - %s\n' "$T/tls/ca.pem"
        fi
        [[ -z "$remote" ]] || printf 'proxy:\n  remoteurl: %s\n' "$remote"
    } >"$d/config.yml"
    ip netns exec "$NS" setsid /usr/bin/docker-registry serve "$d/config.yml" >>"$T/logs/$name.log" 2>&1 &
    remember "$name" $!
    if [[ -n "$tls" ]]; then
        scheme=https
        opts=(--cacert "$T/tls/ca.pem")
        [[ "$tls" != mtls ]] || opts+=(--cert "$T/tls/client.pem" --key "$T/tls/client.key")
    fi
    wait_http "$scheme://$addr:$port/v2/" "${opts[@]}"
}

# push_test_image REGISTRY...: a tiny one-layer image (scripts/e2e/mkimage.py) as library/test:1
push_test_image() {
    local r
    "$PY" "$HELPERS/mkimage.py" "$T/image" 1 >"$T/image.digest"
    for r in "$@"; do
        nsx skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
            "oci:$T/image:1" "docker://$r/library/test:1" >"$T/logs/skopeo-$r.log" 2>&1 || {
            cat "$T/logs/skopeo-$r.log" >&2
            return 1
        }
    done
}

# start_hang_server NAME ADDR PORT: accepts connections and never answers ("accept" lines in its log)
start_hang_server() {
    ip netns exec "$NS" setsid "$PY" "$HELPERS/hang_server.py" "$2" "$3" "$T/logs/$1.log" &
    remember "$1" $!
    local i
    for ((i = 0; i < 100; i++)); do
        grep -qs '^listening' "$T/logs/$1.log" && return 0
        sleep 0.1
    done
    return 1
}

# start_log_proxy NAME ADDR PORT BACKEND [PREFIX]: a proxy that logs every request with its headers
# as JSON (scripts/e2e/logproxy.py); with PREFIX the mirror lives below that path
start_log_proxy() {
    ip netns exec "$NS" setsid "$PY" "$HELPERS/logproxy.py" "$2" "$3" "$4" "$T/logs/$1.log" ${5:+"$5"} &
    remember "$1" $!
    local i
    for ((i = 0; i < 100; i++)); do
        nsx curl -s -o /dev/null --max-time 1 "http://$2:$3/" && return 0
        sleep 0.1
    done
    return 1
}
