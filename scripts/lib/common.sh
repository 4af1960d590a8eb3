# shellcheck shell=bash disable=SC2034 # the package lists are read by the scripts that source this file
# Shared by the scripts: package installation and building. Source it; it changes nothing by itself.

# ensure_packages PKG...: installs the Debian packages that are missing (apt-get update once first).
ensure_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: missing packages (${missing[*]}) and not root; run: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The packages the agent needs to build and run.
BUILD_PACKAGES=(libcurl4-openssl-dev libsystemd-dev libc-ares-dev pkg-config)
# The real parts the tests run against.
TEST_PACKAGES=(docker-registry containerd skopeo iptables iproute2 openssl python3 curl prometheus dnsmasq-base)
# What scripts/e2e.sh runs besides containerd (which it adds unless CONTAINERD_BIN and CTR_BIN name
# another build): registries, skopeo to push the test image, the namespace and firewall tools, and
# python3-grpcio for the CRI calls.
E2E_PACKAGES=(docker-registry skopeo iptables iproute2 openssl python3 python3-grpcio curl dnsmasq-base bind9-dnsutils)

# What scripts/image.sh builds the OCI image with: umoci writes the layout, binutils' readelf and strip check and shrink what goes in, dpkg-dev names the multiarch directory,
# python3-apt resolves the packages from apt's index (scripts/image/debs.py).
IMAGE_PACKAGES=(umoci binutils dpkg-dev python3-apt)
# What scripts/image-test.sh runs the image with, besides E2E_PACKAGES: containerd and runc (its
# shim starts the container with runc) and python3-kubernetes, whose generated models check the
# manifests of deploy/ (scripts/k8s/validate.py).
IMAGE_TEST_PACKAGES=(containerd runc python3-kubernetes python3-yaml)

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }
