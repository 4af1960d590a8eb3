#!/usr/bin/env bash
# Installs configure-containerd-registries on this machine (or into DESTDIR), or uninstalls it.
#
#   scripts/install.sh                 build the release binary and install it, the units and the example config
#   scripts/install.sh --uninstall     stop the units, run `configure-containerd-registries remove`, delete what was installed
#
# Environment:
#   PREFIX   where the binary goes: $PREFIX/bin (default /usr, matching the units' ExecStart; any other
#            prefix is written into the installed units' ExecStart)
#   DESTDIR  staging root (default empty: the live system). With DESTDIR set, systemctl is never run.
#   BINARY   an already built binary to install instead of building one (package.sh and the tests use it)
#
# What goes where (under DESTDIR):
#   $PREFIX/bin/configure-containerd-registries
#   /lib/systemd/system/configure-containerd-registries.service, configure-containerd-registries-watch.service
#   /etc/configure-containerd-registries/config.toml.example   (always refreshed)
#   /etc/configure-containerd-registries/config.toml           (only when there is none: never overwritten)
#
# Idempotent: running it twice gives the same result. The units are not enabled or started; the script
# prints how. --uninstall keeps config.toml when it differs from the example (your edits), and deletes it
# when it is still the untouched example.
set -euo pipefail

PREFIX=${PREFIX:-/usr}
DESTDIR=${DESTDIR:-}
NAME=configure-containerd-registries
UNITS=("$NAME.service" "$NAME-watch.service")
UNIT_DIR=/lib/systemd/system
CONF_DIR=/etc/$NAME
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

uninstall=0
for arg in "$@"; do
    case "$arg" in
        --uninstall) uninstall=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument $arg (try --help)" >&2; exit 64 ;;
    esac
done

case "$PREFIX" in
    /*) ;;
    *) echo "install.sh: PREFIX must be an absolute path, got $PREFIX" >&2; exit 64 ;;
esac
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || PREFIX=/usr

bin_path="$PREFIX/bin/$NAME"

# systemctl only on the live system with systemd as init.
systemd_live() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

need_root() {
    if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
        echo "install.sh: installing into / needs root (or set DESTDIR)" >&2
        exit 77
    fi
}

say() { echo "install.sh: $*"; }

if [ "$uninstall" = 1 ]; then
    need_root
    if systemd_live; then
        for unit in "${UNITS[@]}"; do
            if systemctl cat "$unit" >/dev/null 2>&1; then
                systemctl disable --now "$unit" >/dev/null 2>&1 || true
                say "stopped and disabled $unit"
            fi
        done
    fi
    # The agent's files in containerd's hosts directory go first, while the binary is still there.
    if [ -z "$DESTDIR" ] && [ -x "$bin_path" ]; then
        config_args=()
        [ -f "$CONF_DIR/config.toml" ] && config_args=(--config "$CONF_DIR/config.toml")
        if "$bin_path" remove "${config_args[@]}" --log-format text; then
            say "removed the hosts.toml files written by $NAME"
        else
            echo "install.sh: '$bin_path remove' failed (exit $?); files under the hosts directory are left as they are" >&2
        fi
    fi
    for unit in "${UNITS[@]}"; do
        rm -f "$DESTDIR$UNIT_DIR/$unit"
    done
    rm -f "$DESTDIR$bin_path"
    conf="$DESTDIR$CONF_DIR/config.toml"
    example="$DESTDIR$CONF_DIR/config.toml.example"
    if [ -f "$conf" ] && [ -f "$example" ] && cmp -s "$conf" "$example"; then
        rm -f "$conf"
    elif [ -f "$conf" ]; then
        say "kept $CONF_DIR/config.toml (it differs from the example); delete it yourself if you no longer need it"
    fi
    rm -f "$example"
    rmdir "$DESTDIR$CONF_DIR" 2>/dev/null || true
    if systemd_live; then
        systemctl daemon-reload
        systemctl reset-failed "${UNITS[@]}" >/dev/null 2>&1 || true
    fi
    say "uninstalled"
    exit 0
fi

need_root

# 1. The binary: built here unless one is given.
if [ -n "${BINARY:-}" ]; then
    built=$BINARY
    [ -x "$built" ] || { echo "install.sh: BINARY=$built is not an executable" >&2; exit 66; }
else
    say "building the release binary (swift build -c release --static-swift-stdlib)"
    (cd "$ROOT" && swift build -c release --static-swift-stdlib)
    built=$(cd "$ROOT" && swift build -c release --static-swift-stdlib --show-bin-path)/$NAME
fi

install -d -m 0755 "$DESTDIR$PREFIX/bin"
# Replaced atomically (install writes a new inode), so a running watch keeps its old binary until restarted.
tmp_bin="$DESTDIR$bin_path.new.$$"
install -m 0755 "$built" "$tmp_bin"
strip --strip-unneeded "$tmp_bin" 2>/dev/null || true
if [ -f "$DESTDIR$bin_path" ] && cmp -s "$tmp_bin" "$DESTDIR$bin_path"; then
    rm -f "$tmp_bin"
else
    mv -f "$tmp_bin" "$DESTDIR$bin_path"
fi
say "installed $bin_path"

# 2. The units, with ExecStart pointing at the binary's real place.
install -d -m 0755 "$DESTDIR$UNIT_DIR"
for unit in "${UNITS[@]}"; do
    tmp_unit=$(mktemp)
    sed "s#^\(Exec[A-Za-z]*=\)/usr/bin/$NAME\b#\1$bin_path#" "$ROOT/systemd/$unit" >"$tmp_unit"
    install -m 0644 "$tmp_unit" "$DESTDIR$UNIT_DIR/$unit"
    rm -f "$tmp_unit"
done
say "installed ${UNITS[*]} into $UNIT_DIR"

# 3. The config: the example always; config.toml only when there is none.
install -d -m 0755 "$DESTDIR$CONF_DIR"
install -m 0644 "$ROOT/examples/config.toml" "$DESTDIR$CONF_DIR/config.toml.example"
if [ -e "$DESTDIR$CONF_DIR/config.toml" ]; then
    say "kept the existing $CONF_DIR/config.toml"
else
    install -m 0644 "$ROOT/examples/config.toml" "$DESTDIR$CONF_DIR/config.toml"
    say "installed $CONF_DIR/config.toml from the example: edit the mirror URLs before enabling the unit"
fi

if systemd_live; then
    systemctl daemon-reload
    say "systemctl daemon-reload done"
fi
cat <<EOF
install.sh: done. Next:
  \$EDITOR $CONF_DIR/config.toml
  $NAME check                                   # is the config right, are the mirrors up?
  systemctl enable --now $NAME.service          # at boot: wait for the caches, then write hosts.toml
  systemctl enable --now $NAME-watch.service    # keep the files true while caches come and go
EOF
