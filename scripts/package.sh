#!/usr/bin/env bash
# Builds a Debian package of configure-containerd-registries with dpkg-deb.
#
#   scripts/package.sh [OUTPUT_DIR]     (default: .build/deb)
#
# Environment: BINARY=path uses an already built release binary instead of building one;
# DEB_MAINTAINER="Name <mail>" sets the Maintainer field;
# LINTIAN=1 runs lintian on the result (installed when missing).
#
# The package holds the binary (/usr/bin), both units (/lib/systemd/system), the example config as
# /etc/configure-containerd-registries/config.toml.example (a conffile) and under
# /usr/share/doc/configure-containerd-registries/examples/, and the README. It never ships
# config.toml: that file is the administrator's. Both units carry
# ConditionPathExists=/etc/configure-containerd-registries/config.toml, so enabling them at install
# is harmless: they are skipped until the node has a config.
#
# Maintainer scripts:
#   postinst  enables both units with deb-systemd-helper (works without a running systemd: image
#             builds, chroots); never starts them on a fresh install. On upgrade, a running watch unit
#             is restarted so it runs the new binary; the oneshot is left alone (it may wait minutes).
#   prerm     on remove: stops both units, then runs `configure-containerd-registries remove` so no
#             hosts.toml naming a mirror is left without the agent that keeps it true.
#   postrm    on remove: disables the units; on purge: forgets their enablement state and deletes
#             /etc/configure-containerd-registries (config.toml included) and the runtime directory.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
ROOT=$(repo_root)
cd "$ROOT"

NAME=configure-containerd-registries
OUT=${1:-$ROOT/.build/deb}
MAINTAINER=${DEB_MAINTAINER:-Node Agent Maintainers <node-agents@example.org>}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

command -v dpkg-deb >/dev/null || { echo "package.sh: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 69; }

if [ -n "${BINARY:-}" ]; then
    built=$BINARY
else
    echo "package.sh: building the release binary"
    swift build -c release --static-swift-stdlib
    built=$(swift build -c release --static-swift-stdlib --show-bin-path)/$NAME
fi
[ -x "$built" ] || { echo "package.sh: no binary at $built" >&2; exit 66; }

version=$("$built" --version | tr -d '[:space:]')
case "$version" in
    [0-9]*) ;;
    *) echo "package.sh: '$built --version' printed '$version', not a version" >&2; exit 70 ;;
esac
arch=$(dpkg --print-architecture)
stage=$(mktemp -d /tmp/ccr-deb.XXXXXX)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
doc=$pkg/usr/share/doc/$NAME

changelog_date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}")

# Files, installed the way scripts/install.sh installs them (PREFIX=/usr), plus docs.
BINARY=$built DESTDIR=$pkg PREFIX=/usr bash "$ROOT/scripts/install.sh" >/dev/null
rm -f "$pkg/etc/$NAME/config.toml"    # the administrator's file, never the package's
install -d -m 0755 "$doc/examples"
install -m 0644 examples/config.toml "$doc/examples/config.toml"
install -m 0644 README.md "$doc/README.md"
gzip -9n "$doc/README.md"

# A manual page made of the program's own --help texts (the top level and every subcommand).
man_page() {
    local sub
    printf '.TH %s 1 "%s" "%s %s" "System Administration"\n' "$(echo "$NAME" | tr a-z A-Z)" "$(date -u +%Y-%m-%d -d "$changelog_date")" "$NAME" "$version"
    printf '.SH NAME\n%s \\- point containerd at in-cluster registry caches once they answer\n' "$NAME"
    printf '.SH SYNOPSIS\n.B %s\n[\\fIapply\\fR|\\fIplan\\fR|\\fIcheck\\fR|\\fIwatch\\fR|\\fIremove\\fR] [\\fIoptions\\fR] [\\fIUPSTREAM,ENDPOINT[,SERVER]\\fR ...]\n' "$NAME"
    printf '.SH DESCRIPTION\n.nf\n'
    "$built" --help | sed -e 's/\\/\\e/g' -e 's/^\./\\\&./'
    printf '.fi\n'
    for sub in apply plan check watch remove; do
        printf '.SH "%s %s"\n.nf\n' "$(echo "$sub" | tr a-z A-Z)" "COMMAND"
        "$built" "$sub" --help | sed -e 's/\\/\\e/g' -e 's/^\./\\\&./'
        printf '.fi\n'
    done
    printf '.SH FILES\n.TP\n/etc/%s/config.toml\nthe configuration (see config.toml.example beside it)\n' "$NAME"
    printf '.TP\n/etc/containerd/certs.d/\\fIUPSTREAM\\fR/hosts.toml\nthe files it writes\n'
    printf '.SH SEE ALSO\n.BR systemctl (1),\n.BR journalctl (1)\n'
}
install -d -m 0755 "$pkg/usr/share/man/man1"
man_page | gzip -9n >"$pkg/usr/share/man/man1/$NAME.1.gz"
chmod 0644 "$pkg/usr/share/man/man1/$NAME.1.gz"

cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $NAME
Comment: Built from the $NAME source tree. Statically linked with the Swift
 standard library and Foundation (Apache-2.0 with Runtime Library Exception),
 swift-argument-parser and swift-log (Apache-2.0) and TOMLKit (MIT; bundles
 toml++, MIT).

Files: *
Copyright: $(date -u +%Y -d "$changelog_date") the $NAME authors
License: unspecified
 The source tree does not state a license yet (no LICENSE file). Replace
 this paragraph when it does.
EOF

cat >"$stage/changelog.Debian" <<EOF
$NAME ($version) unstable; urgency=medium

  * Package built by scripts/package.sh.

 -- $MAINTAINER  $changelog_date
EOF
gzip -9nc "$stage/changelog.Debian" >"$doc/changelog.gz"   # a native package: changelog.gz
chmod 0644 "$doc/copyright" "$doc/changelog.gz"

# Depends: from the binary's NEEDED entries when dpkg-shlibdeps can work them out, else the known set.
depends="libc-ares2 (>= 1.18), libc6 (>= 2.34), libcurl4 (>= 7.16.2), libgcc-s1 (>= 3.0), libstdc++6 (>= 5), libsystemd0"
if command -v dpkg-shlibdeps >/dev/null; then
    mkdir -p "$stage/shlibs/debian"
    printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$NAME" "$NAME" >"$stage/shlibs/debian/control"
    if found=$(cd "$stage/shlibs" && dpkg-shlibdeps -O -e"$pkg/usr/bin/$NAME" 2>/dev/null); then
        found=${found#shlibs:Depends=}
        [ -n "$found" ] && depends=$found
    fi
fi

install -d -m 0755 "$pkg/DEBIAN"
installed_size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<EOF
Package: $NAME
Version: $version
Architecture: $arch
Maintainer: $MAINTAINER
Installed-Size: $installed_size
Depends: $depends
Recommends: containerd | containerd.io
Section: admin
Priority: optional
Homepage: https://github.com/containerd/containerd/blob/main/docs/hosts.md
Description: point containerd at in-cluster registry caches once they answer
 Probes every configured registry mirror (pull-through cache) concurrently and
 writes containerd's hosts.toml for each upstream as soon as one of its mirrors
 answers, naming only the mirrors that are up, with the upstream as fallback.
 Files are replaced atomically and files it did not write are never changed.
 .
 Ships two systemd units: a oneshot that waits for the caches at boot, and a
 watch service that takes dead mirrors out and puts recovered ones back.
EOF

# Every file under /etc is a conffile.
(cd "$pkg" && find etc -type f | sed 's#^#/#' | sort) >"$pkg/DEBIAN/conffiles"

units="$NAME.service $NAME-watch.service"

cat >"$pkg/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
units="$units"
case "\$1" in
configure|abort-upgrade|abort-deconfigure|abort-remove)
    for unit in \$units; do
        # Undo a mask left by an earlier removal; enable on first install, or when it was enabled before.
        deb-systemd-helper unmask "\$unit" >/dev/null || true
        if deb-systemd-helper --quiet was-enabled "\$unit"; then
            deb-systemd-helper enable "\$unit" >/dev/null || true
        else
            deb-systemd-helper update-state "\$unit" >/dev/null || true
        fi
    done
    # Only with systemd running (not in an image build or chroot): reload, and move a running watch to
    # the new binary. Nothing is started on a fresh install; the oneshot runs at the next boot.
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        if [ -n "\$2" ]; then
            deb-systemd-invoke try-restart $NAME-watch.service >/dev/null || true
        fi
    fi
    ;;
esac
exit 0
EOF

cat >"$pkg/DEBIAN/prerm" <<EOF
#!/bin/sh
set -e
if [ "\$1" = remove ]; then
    if [ -d /run/systemd/system ]; then
        deb-systemd-invoke stop $units >/dev/null || true
    fi
    # Take our hosts.toml files away (backed-up foreign files come back): without the agent nothing
    # would keep them true.
    if command -v $NAME >/dev/null; then
        if [ -f /etc/$NAME/config.toml ]; then
            $NAME remove --config /etc/$NAME/config.toml --log-format text || true
        else
            $NAME remove --log-format text || true
        fi
    fi
fi
exit 0
EOF

cat >"$pkg/DEBIAN/postrm" <<EOF
#!/bin/sh
set -e
units="$units"
case "\$1" in
remove)
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
    for unit in \$units; do
        deb-systemd-helper mask "\$unit" >/dev/null || true
    done
    ;;
purge)
    for unit in \$units; do
        deb-systemd-helper purge "\$unit" >/dev/null || true
        deb-systemd-helper unmask "\$unit" >/dev/null || true
    done
    rm -rf /etc/$NAME /run/$NAME
    ;;
esac
exit 0
EOF
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -print0 | sort -z | xargs -0 md5sum | sed 's#  \./#  #') >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums"

deb=$OUT/${NAME}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "package.sh: built $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed -n '/Package:/,/Description:/p' | grep -E '^ (Package|Version|Depends|Installed-Size):'

if [ "${LINTIAN:-0}" = 1 ]; then
    ensure_packages lintian
    echo "package.sh: lintian"
    lintian --no-tag-display-limit --info "$deb" || true
fi
