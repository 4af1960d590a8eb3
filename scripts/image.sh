#!/usr/bin/env bash
# Builds the agent's OCI image offline, from the release binary and Debian's own packages, with
# umoci (no daemon, no Dockerfile, no base image pulled from anywhere); why umoci: docs/design.md §11.
#
#   scripts/image.sh [OUTPUT_DIR]        (default: .build/image)
#
# What is in it: the stripped release binary (--static-swift-stdlib) as
# /usr/bin/configure-containerd-registries, and the shared libraries it loads, taken from the .debs of
# libcurl4, libsystemd0, libc-ares2 and the packages they depend on (libc6, libssl3, ...), plus
# ca-certificates' bundle (/etc/ssl/certs/ca-certificates.crt, as update-ca-certificates would make it),
# Debian's os-release and a dpkg status.d entry per package (so image scanners know what is inside),
# and a minimal /etc/passwd, /etc/group and /etc/nsswitch.conf. No shell, no package manager, no other
# program: everything else the packages ship (binaries, man pages, locales, iconv modules, plug-ins
# nothing loads) is left out, and every ELF object left must be reached from the binary through
# NEEDED entries within the image (checked, the build fails otherwise).
# Entrypoint the binary, default arguments `watch`, user 0 (it writes containerd's hosts directory
# on the host through a hostPath; deploy/ says why and what it is denied).
#
# Reproducible: the same binary, the same .debs and the same SOURCE_DATE_EPOCH give the same image
# digest. Every file's mtime is SOURCE_DATE_EPOCH, owners are 0:0, the layer is written in name order
# (umoci repack), the config's and history's times are SOURCE_DATE_EPOCH. The .debs are the versions
# installed on this machine (else apt's candidate), downloaded once into DEB_CACHE and checked against
# apt's SHA256 before use.
#
# Output (OUTPUT_DIR):
#   oci/                                                   the OCI image layout, tagged with the version
#   configure-containerd-registries-<version>.oci.tar     the same as an oci-archive (the same bytes
#                                                          every time), named $IMAGE_NAME:<version>, for
#                                                          `ctr images import` and `skopeo copy oci-archive:...`
#   digest                                                 the manifest's digest (sha256:...)
#   packages                                               the Debian packages inside, "name version" a line
#
# Environment:
#   BINARY            the release binary (default: swift build -c release --static-swift-stdlib)
#   SOURCE_DATE_EPOCH the time written everywhere (default: the commit time of HEAD)
#   IMAGE_NAME        the name in the archive (default: localhost/configure-containerd-registries)
#   IMAGE_SOURCE      org.opencontainers.image.source (default: git's remote.origin.url, if any)
#   DEB_CACHE         where the .debs are kept (default: /var/cache/ccr-image/debs)
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
ROOT=$(repo_root)
cd "$ROOT"

NAME=configure-containerd-registries
OUT=${1:-$ROOT/.build/image}
IMAGE_NAME=${IMAGE_NAME:-localhost/$NAME}
DEB_CACHE=${DEB_CACHE:-/var/cache/ccr-image/debs}
ARCH=$(dpkg --print-architecture)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")
# The packages asked for; their Depends and Pre-Depends are added (first alternative of each).
WANTED=(libcurl4 libsystemd0 libc-ares2)
# Taken for their data alone: ca-certificates' certificates (its Depends, openssl and debconf, are
# what its maintainer script runs, which the build does instead), base-files' os-release.
DATA_ONLY=(ca-certificates base-files)

say() { echo "image.sh: $*" >&2; }
die() { say "$*"; exit 1; }

t_start=$EPOCHREALTIME
ensure_packages "${IMAGE_PACKAGES[@]}"

# --- the binary
if [ -n "${BINARY:-}" ]; then
    built=$BINARY
else
    say "building the release binary (swift build -c release --static-swift-stdlib)"
    swift build -c release --static-swift-stdlib >&2
    built=$(swift build -c release --static-swift-stdlib --show-bin-path)/$NAME
fi
[ -x "$built" ] || die "no binary at $built"
version=$("$built" --version | tr -d '[:space:]')
case "$version" in [0-9]*) ;; *) die "'$built --version' printed '$version', not a version" ;; esac

revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
source_url=${IMAGE_SOURCE:-$(git -C "$ROOT" config --get remote.origin.url 2>/dev/null || true)}

work=$(mktemp -d /tmp/ccr-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs" "$DEB_CACHE"

# --- the packages: names, versions, .debs (scripts/image/debs.py reads apt's index once)
# The packages that hold the binary's NEEDED libraries here (libc6, libstdc++6, libgcc-s1 for the
# static Swift runtime) join the wanted ones.
for so in $(readelf -d "$built" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    owner=""
    for dir in "/lib/$MULTIARCH" "/usr/lib/$MULTIARCH" /lib /usr/lib /lib64; do
        [ -e "$dir/$so" ] || continue
        owner=$(dpkg -S "$dir/$so" 2>/dev/null | head -1 | cut -d: -f1 || true)
        [ -n "$owner" ] || owner=$(dpkg -S "$(readlink -f "$dir/$so")" 2>/dev/null | head -1 | cut -d: -f1 || true)
        [ -z "$owner" ] || break
    done
    [ -n "$owner" ] || die "no package here holds $so, which the binary needs"
    case " ${WANTED[*]} " in *" $owner "*) ;; *) WANTED+=("$owner") ;; esac
done
resolved=$work/debs
data_args=()
for pkg in "${DATA_ONLY[@]}"; do data_args+=(--data-only "$pkg"); done
/usr/bin/python3 "$ROOT/scripts/image/debs.py" "${data_args[@]}" "${WANTED[@]}" >"$resolved" \
    || die "cannot resolve the packages (apt-get update?)"
declare -A seen=()
packages=()
downloads=()
while read -r pkg v _ sha file; do
    deb=$DEB_CACHE/$file
    if [ -f "$deb" ] && [ "$(sha256sum "$deb" | cut -d' ' -f1)" != "$sha" ]; then
        say "$deb: not the SHA256 apt has ($sha): fetching it again"
        rm -f "$deb"
    fi
    [ -f "$deb" ] || downloads+=("$pkg=$v")
    seen[$pkg]=$deb
    case " ${DATA_ONLY[*]} " in *" $pkg "*) ;; *) packages+=("$pkg") ;; esac
done <"$resolved"
if [ ${#downloads[@]} -gt 0 ]; then
    say "downloading ${#downloads[@]} packages into $DEB_CACHE"
    (cd "$DEB_CACHE" && apt-get download -qq -o APT::Sandbox::User=root "${downloads[@]}" >&2) \
        || die "apt-get download ${downloads[*]} failed"
fi
while read -r pkg _ _ sha file; do
    [ "$(sha256sum "$DEB_CACHE/$file" | cut -d' ' -f1)" = "$sha" ] || die "$DEB_CACHE/$file: not the SHA256 apt has ($sha)"
done <"$resolved"

# --- the root file system
for pkg in "${packages[@]}"; do
    dpkg-deb -x "${seen[$pkg]}" "$rootfs"
done
# Everything that is not a library the binary loads: programs, documentation, locales, iconv
# modules, the packages' own configuration hooks. The copyright files stay.
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
rm -rf "${rootfs:?}"/{bin,sbin,usr/bin,usr/sbin,usr/libexec,usr/games,etc} "${rootfs:?}/usr/lib/$MULTIARCH/gconv" \
    "${rootfs:?}"/usr/lib/systemd
find "$rootfs/usr/share" -mindepth 1 -maxdepth 1 ! -name doc -exec rm -rf {} +
# ca-certificates: the bundle libcurl reads, made as update-ca-certificates makes it (every
# certificate of /usr/share/ca-certificates, in name order), without its maintainer script
ca=$work/ca
dpkg-deb -x "${seen[ca-certificates]}" "$ca"
install -d -m 0755 "$rootfs/etc/ssl/certs" "$rootfs/usr/share/doc/ca-certificates"
(cd "$ca/usr/share/ca-certificates" && find . -name '*.crt' -type f | LC_ALL=C sort | while read -r crt; do
    cat "$crt"
    tail -c1 "$crt" | od -An -c | grep -q '\\n' || echo
done) >"$rootfs/etc/ssl/certs/ca-certificates.crt"
[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || die "no certificates in ca-certificates"
install -m 0644 "$ca/usr/share/doc/ca-certificates/copyright" "$rootfs/usr/share/doc/ca-certificates/copyright"
# base-files: what the image is (os-release, debian_version), for scanners
bf=$work/base-files
dpkg-deb -x "${seen[base-files]}" "$bf"
install -d -m 0755 "$rootfs/usr/lib" "$rootfs/etc"
install -m 0644 "$bf/usr/lib/os-release" "$rootfs/usr/lib/os-release"
ln -sfn ../usr/lib/os-release "$rootfs/etc/os-release"
install -m 0644 "$bf/etc/debian_version" "$rootfs/etc/debian_version"
# Who root is (Foundation asks for the home directory), and how names are looked up
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
# Mount points the DaemonSet uses, so a read-only root file system needs nothing created in it
install -d -m 0755 "$rootfs"/etc/containerd/certs.d "$rootfs"/etc/"$NAME" "$rootfs"/run/containerd \
    "$rootfs"/var/log/journal "$rootfs"/run/log/journal "$rootfs"/tmp "$rootfs"/root "$rootfs"/proc "$rootfs"/sys \
    "$rootfs"/dev
chmod 1777 "$rootfs/tmp"
: >"$rootfs/etc/machine-id"
chmod 0444 "$rootfs/etc/machine-id"
# The binary, stripped as scripts/install.sh strips it
install -d -m 0755 "$rootfs/usr/bin"
install -m 0755 "$built" "$rootfs/usr/bin/$NAME"
strip --strip-unneeded "$rootfs/usr/bin/$NAME"

# --- only what it loads: the NEEDED closure of the binary, resolved inside the image
# resolve SONAME: the file the dynamic loader would take, in its system search path, inside rootfs
resolve() {
    local dir
    for dir in "lib/$MULTIARCH" "usr/lib/$MULTIARCH" lib usr/lib; do
        if [ -e "$rootfs/$dir/$1" ]; then
            echo "$dir/$1"
            return 0
        fi
    done
    return 1
}
needed() { readelf -d "$rootfs/$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
interp=$(readelf -l "$rootfs/usr/bin/$NAME" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
[ -e "$rootfs$interp" ] || die "the binary's interpreter $interp is not in the image"
declare -A reached=()
todo=("usr/bin/$NAME")
missing=()
while [ ${#todo[@]} -gt 0 ]; do
    f=${todo[0]}
    todo=("${todo[@]:1}")
    [ -z "${reached[$f]:-}" ] || continue
    reached[$f]=1
    while read -r so; do
        [ -n "$so" ] || continue
        if path=$(resolve "$so"); then
            real=$(cd "$rootfs" && realpath --relative-to=. "$path")
            reached[$path]=1
            todo+=("$real")
        else
            missing+=("$so (needed by /$f)")
        fi
    done < <(needed "$f")
done
[ ${#missing[@]} -eq 0 ] || die "not in the image: ${missing[*]}"
interp_real=$(cd "$rootfs" && realpath --relative-to=. ".$interp")
reached[$interp_real]=1
reached[${interp#/}]=1
# Every other shared object is something nothing here loads (SASL, Kerberos and OpenSSL plug-ins,
# libc's auditing and debugging helpers): left out.
dropped=()
while IFS= read -r -d '' f; do
    rel=${f#"$rootfs"/}
    [ -n "${reached[$rel]:-}" ] && continue
    # a symlink stays when it is the name a library is loaded by (libcurl.so.4 -> libcurl.so.4.8.0)
    if [ -L "$f" ]; then
        rm -f "$f"
        continue
    fi
    if head -c4 "$f" | grep -q 'ELF'; then
        dropped+=("/$rel")
        rm -f "$f"
    fi
done < <(find "$rootfs" \( -type f -o -type l \) -print0)
# symlinks whose target is gone, then empty directories (but the mount points)
find "$rootfs" -xtype l -delete
find "$rootfs" -mindepth 1 -type d -empty \
    ! -path "$rootfs/etc/containerd*" ! -path "$rootfs/etc/$NAME" ! -path "$rootfs/run*" \
    ! -path "$rootfs/var/log*" ! -path "$rootfs/tmp" ! -path "$rootfs/root" ! -path "$rootfs/proc" \
    ! -path "$rootfs/sys" ! -path "$rootfs/dev" -delete
say "left out ${#dropped[@]} shared objects nothing loads: ${dropped[*]:-none}"

# The packages the image holds a file of (beyond its copyright): a dpkg status entry for each, in
# distroless's layout (status.d), so that image scanners know what is inside; the others (a library
# only a left-out plug-in needed) lose their copyright file too.
install -d -m 0755 "$rootfs/var/lib/dpkg/status.d"
kept=()
for pkg in "${packages[@]}" ca-certificates base-files; do
    has=0
    case $pkg in
        ca-certificates|base-files) has=1 ;;
        *) while read -r f; do
               case "$f" in ./usr/share/doc/*) continue ;; esac
               if [ -e "$rootfs/${f#./}" ] || [ -L "$rootfs/${f#./}" ]; then
                   [ -d "$rootfs/${f#./}" ] && [ ! -L "$rootfs/${f#./}" ] && continue
                   has=1; break
               fi
           done < <(dpkg-deb --fsys-tarfile "${seen[$pkg]}" | tar -t) ;;
    esac
    if [ "$has" = 1 ]; then
        kept+=("$pkg")
        dpkg-deb -f "${seen[$pkg]}" >"$rootfs/var/lib/dpkg/status.d/$pkg"
    else
        rm -rf "$rootfs/usr/share/doc/$pkg"
    fi
done

# --- normalised: owners 0:0, directories 0755, every mtime SOURCE_DATE_EPOCH
chown -R -h 0:0 "$rootfs"
find "$rootfs" -type d ! -path "$rootfs/tmp" -exec chmod 0755 {} +
find "$rootfs" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# --- the image: an OCI layout made with umoci, one layer
layout=$work/oci
bundle=$work/bundle
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci unpack --image "$layout:$version" "$bundle" >/dev/null
cp -a "$rootfs/." "$bundle/rootfs/"
touch -h -d "@$SOURCE_DATE_EPOCH" "$bundle/rootfs"
umoci repack --image "$layout:$version" --history.created "$created" \
    --history.created_by "scripts/image.sh: $NAME $version and files of ${#kept[@]} Debian packages" "$bundle"
labels=(
    --config.label "org.opencontainers.image.title=$NAME"
    --config.label "org.opencontainers.image.description=Points containerd at in-cluster registry caches once they answer"
    --config.label "org.opencontainers.image.version=$version"
    --config.label "org.opencontainers.image.revision=$revision"
    --config.label "org.opencontainers.image.created=$created"
)
[ -z "$source_url" ] || labels+=(--config.label "org.opencontainers.image.source=$source_url")
umoci config --image "$layout:$version" --created "$created" --history.created "$created" \
    --history.created_by "scripts/image.sh: entrypoint, arguments, labels" \
    --os linux --architecture "$ARCH" --config.user 0:0 --config.workingdir / \
    --config.entrypoint "/usr/bin/$NAME" --config.cmd watch "${labels[@]}"
umoci gc --layout "$layout"

digest=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$layout/index.json")
archive_name=$NAME-$version.oci.tar
# The archive: the layout with the image's full name as its ref.name (what `ctr images import` names
# the image), as a tar written in name order with fixed times and owners, so it is the same bytes
# every time too.
arch_dir=$work/archive
mkdir -p "$arch_dir"
cp -a "$layout/oci-layout" "$layout/blobs" "$arch_dir/"
python3 - "$layout/index.json" "$IMAGE_NAME:$version" >"$arch_dir/index.json" <<'EOF_PY'
import json, sys
index = json.load(open(sys.argv[1]))
for manifest in index["manifests"]:
    manifest.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = sys.argv[2]
json.dump(index, sys.stdout, separators=(",", ":"))
EOF_PY
find "$arch_dir" -type f -exec chmod 0644 {} +
find "$arch_dir" -type d -exec chmod 0755 {} +
find "$arch_dir" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$arch_dir" -cf "$work/$archive_name" oci-layout index.json blobs

# --- into place
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/oci.old"
[ ! -e "$OUT/oci" ] || mv "$OUT/oci" "$OUT/oci.old"
mv "$layout" "$OUT/oci"
rm -rf "$OUT/oci.old"
rm -f "$OUT"/"$NAME"-*.oci.tar
mv "$work/$archive_name" "$OUT/$archive_name"
echo "$digest" >"$OUT/digest"
for pkg in "${kept[@]}"; do
    printf '%s %s\n' "$pkg" "$(dpkg-deb -f "${seen[$pkg]}" Version)"
done | LC_ALL=C sort >"$OUT/packages"

layer_bytes=$(python3 - "$OUT/oci" "$digest" <<'EOF'
import json, sys
layout, digest = sys.argv[1], sys.argv[2]
manifest = json.load(open(f"{layout}/blobs/sha256/{digest.split(':')[1]}"))
print(sum(layer["size"] for layer in manifest["layers"]))
EOF
)
rootfs_bytes=$(du -sb "$rootfs" | cut -f1)
say "image $IMAGE_NAME:$version"
say "  digest    $digest"
say "  size      $(numfmt --to=iec --suffix=B "$layer_bytes") compressed ($layer_bytes bytes), $(numfmt --to=iec --suffix=B "$rootfs_bytes") unpacked"
say "  packages  files of ${#kept[@]} Debian packages (ca-certificates' bundle, base-files' os-release among them): $OUT/packages"
say "  layout    $OUT/oci"
say "  archive   $OUT/$archive_name"
say "  built in  $(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, revision $revision)"
