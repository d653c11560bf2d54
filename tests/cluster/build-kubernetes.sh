#!/usr/bin/env bash
# Build the Kubernetes control plane + kubelet the cluster tier boots, from Debian's own
# `kubernetes` source package (no binaries of a control plane exist in the package
# registries this project may use; see ../shared/notes/local-kubernetes.md).
#
# The five binaries and the static pause binary are cached under
#   ${CELLSHIP_CACHE:-~/.cache/cellship}/kubernetes/<version>-reflect2-<version>/
# so only the first run on a machine pays the 13-17 min build. Safe to rerun; prints the
# cache directory on its last line.
set -euo pipefail

K8S_VERSION=1.20.2
CACHE_ROOT="${CELLSHIP_CACHE:-$HOME/.cache/cellship}/kubernetes"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

apt_install() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "build-kubernetes: apt-get install ${missing[*]}" >&2
        $SUDO apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >&2
    fi
}

# What the cluster needs at run time (also checked here so one script prepares everything).
apt_install etcd-server containerd runc containernetworking-plugins umoci iproute2 dnsmasq-base \
    iptables openssl debootstrap busybox-static

# The reflect2 version is part of the cache key (the patched apiserver depends on it); read
# from the package lists, so a cached build needs no download.
reflect2_version() {
    apt-cache show --no-all-versions golang-github-modern-go-reflect2-dev 2>/dev/null \
        | awk '/^Version:/ {print $2; exit}'
}
REFLECT2_VERSION=$(reflect2_version)
if [ -z "$REFLECT2_VERSION" ]; then
    $SUDO apt-get update -q >&2
    REFLECT2_VERSION=$(reflect2_version)
fi
OUT="$CACHE_ROOT/$K8S_VERSION-reflect2-$REFLECT2_VERSION"

# Which commands to build: all of them the first time; only the missing ones when a cache
# made before a command joined the list is there (kube-proxy joined later: building it alone
# takes minutes, the whole set 13-17).
BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"
WHAT=""
for bin in $BINARIES; do [ -x "$OUT/$bin" ] || WHAT="$WHAT cmd/$bin"; done
if [ -z "$WHAT" ] && [ -x "$OUT/pause" ]; then
    echo "$OUT"; exit 0
fi

REFLECT2_DIR=$(mktemp -d)
cleanup() { rm -rf "$REFLECT2_DIR" "${WORK:-}"; }
trap cleanup EXIT
apt_install dpkg-dev
( cd "$REFLECT2_DIR" && apt-get download "golang-github-modern-go-reflect2-dev=$REFLECT2_VERSION" >&2 )
REFLECT2_DEB=$(ls "$REFLECT2_DIR"/*.deb)

apt_install golang-go rsync jq gcc libc6-dev make
if ! grep -rqs "deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # A deb-src twin of the machine's Debian source entry, so `apt-get source` works.
    SRC=/etc/apt/sources.list.d/debian.sources
    sed 's/^Types: deb$/Types: deb-src/' "$SRC" | $SUDO tee /etc/apt/sources.list.d/cellship-src.sources >/dev/null
    $SUDO apt-get update -q >&2
fi

WORK=$(mktemp -d)
cd "$WORK"
echo "build-kubernetes: fetching the kubernetes source package" >&2
apt-get source -q --download-only kubernetes >&2
dpkg-source -x kubernetes_*.dsc src >&2
TREE="$WORK/src"
# Debian versions it "1.20.5+really1.20.2-...": the upstream tree is 1.20.2.
grep -Eq "(^|really)$K8S_VERSION" <(cd "$TREE" && dpkg-parsechangelog -S Version) \
    || { echo "build-kubernetes: expected Kubernetes $K8S_VERSION source" >&2; exit 1; }

# reflect2 1.0.1 (vendored) crashes the apiserver under Go >= 1.18: use Debian's 1.0.2.
dpkg-deb -x "$REFLECT2_DEB" "$REFLECT2_DIR/x"
R2SRC=$(dirname "$(find "$REFLECT2_DIR/x" -name reflect2.go | head -1)")
rm -f "$TREE"/vendor/github.com/modern-go/reflect2/*.go
cp "$R2SRC"/*.go "$TREE"/vendor/github.com/modern-go/reflect2/

mkdir -p "$TREE/.go/src/k8s.io"
ln -s "$TREE" "$TREE/.go/src/k8s.io/kubernetes"
echo "build-kubernetes: building$WHAT (13-17 min on 2 cores for all five)" >&2
( cd "$TREE/.go/src/k8s.io/kubernetes" && GOPATH="$TREE/.go" CGO_ENABLED=0 GOFLAGS=-mod=vendor \
    GOCACHE="$WORK/gocache" make WHAT="${WHAT# }" >&2 )

rm -rf "$OUT.tmp"; mkdir -p "$OUT.tmp"
for bin in $BINARIES; do
    if [ -x "$OUT/$bin" ]; then cp "$OUT/$bin" "$OUT.tmp/$bin"
    else cp "$(find "$TREE/_output" -type f -name "$bin" | head -1)" "$OUT.tmp/$bin"; fi
done
gcc -Os -static -o "$OUT.tmp/pause" "$TREE/build/pause/linux/pause.c"
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
echo "$OUT"
