#!/usr/bin/env bash
# The obvious shell way to do one apply pass, for comparison: one curl per mirror in the background,
# then write the files of the mirrors that answered. Usage: apply-with-curl.sh HOSTS_DIR UPSTREAM,URL...
set -u
hosts_dir=$1; shift
tmp=$(mktemp -d)
i=0
for mirror in "$@"; do
    url=${mirror#*,}
    curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --connect-timeout 1 -m 2 "$url/v2/" >"$tmp/$i" &
    i=$((i + 1))
done
wait
i=0
for mirror in "$@"; do
    upstream=${mirror%%,*}; url=${mirror#*,}
    code=$(cat "$tmp/$i"); i=$((i + 1))
    if [ "$code" = 200 ] || [ "$code" = 401 ]; then
        mkdir -p "$hosts_dir/$upstream"
        printf 'server = "https://%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n  dial_timeout = "1s"\n' \
            "$upstream" "$url" >"$hosts_dir/$upstream/.hosts.toml.tmp"
        sync "$hosts_dir/$upstream/.hosts.toml.tmp"
        mv "$hosts_dir/$upstream/.hosts.toml.tmp" "$hosts_dir/$upstream/hosts.toml"
    fi
done
rm -rf "$tmp"
