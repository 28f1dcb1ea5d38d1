#!/usr/bin/env bash
# Prints the path of a kube-apiserver binary for ringlay's Kubernetes tests, building
# it once if no cached copy exists.
#
# No package registry ships a kube-apiserver binary, but Debian 12's `kubernetes`
# source package (1.20.2, dependencies vendored) builds one with Debian's Go. The
# source is fetched with `apt-get source` through a private apt configuration that
# adds deb-src for the archive the machine already uses (the machine's own apt
# configuration is only read), built in GOPATH mode the way the package's
# debian/rules does, and the binary is cached outside the repository:
#
#   ${RINGLAY_CACHE:-/var/cache/ringlay}/kube-apiserver-<version>-<recipe>/kube-apiserver
#
# so a machine that built it once never builds it again. Only the path goes to stdout;
# progress goes to stderr.
set -euo pipefail

VERSION=1.20.2
# Bump when the build recipe changes, so an old cached binary is not reused.
RECIPE=r1
CACHE_ROOT=${RINGLAY_CACHE:-/var/cache/ringlay}
DEST_DIR="$CACHE_ROOT/kube-apiserver-$VERSION-$RECIPE"
BIN="$DEST_DIR/kube-apiserver"

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

log() { printf 'kube-apiserver.sh: %s\n' "$*" >&2; }
start=$(date +%s)

# --- build tools ------------------------------------------------------------------
# reflect2 1.0.2 replaces the vendored 1.0.1: built with Go >= 1.18, 1.0.1's map
# access through runtime internals crashes the server (in aeshashbody) on its first
# API writes.
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
declare -A pkg_for=([go]=golang-go [rsync]=rsync [dpkg-source]=dpkg-dev)
missing=()
for cmd in "${!pkg_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_for[$cmd]}")
done
[ -d "$REFLECT2" ] || missing+=(golang-github-modern-go-reflect2-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "not root: install these Debian packages first: ${missing[*]}"
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
fi

# --- private apt configuration with deb-src ----------------------------------------
mkdir -p "$CACHE_ROOT"
work=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The Debian archive and suite the machine already uses: the first `Types: deb` stanza
# of a deb822 .sources file, else the first one-line `deb` entry.
archive_and_suite() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      /^[[:space:]]*$/ { if (deb && uri != "" && suite != "") { print uri, suite; exit }
                         deb = 0; uri = ""; suite = ""; next }
      /^Types:/  { deb = ($0 ~ /[[:space:]]deb([[:space:]]|$)/) }
      /^URIs:/   { uri = $2 }
      /^Suites:/ { suite = $2 }
      END        { if (deb && uri != "" && suite != "") print uri, suite }
    ' "$f" | grep -E 'debian/?[[:space:]]' | head -n1
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" && $2 !~ /^\[/ { print $2, $3 } $1 == "deb" && $2 ~ /^\[/ { print $3, $4 }' |
    grep -E 'debian/?[[:space:]]' | head -n1
}
read -r archive suite < <(archive_and_suite | head -n1) || true
if [ -z "${archive:-}" ] || [ -z "${suite:-}" ]; then
  log "no Debian archive found in /etc/apt/sources.list{,.d}"
  exit 1
fi
log "source archive: $archive $suite"

apt_dir="$work/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb-src [signed-by=$keyring] $archive $suite main" >"$apt_dir/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o Dir::Etc::SourceParts=/nonexistent
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
)
log "apt-get update (private lists)"
apt-get "${apt_opts[@]}" update -q >&2
log "apt-get source kubernetes"
src="$work/src"
mkdir -p "$src"
(cd "$src" && apt-get "${apt_opts[@]}" source -q kubernetes >&2)
tree=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name "kubernetes-*$VERSION*" | head -n1)
[ -n "$tree" ] || { log "apt-get source produced no kubernetes-$VERSION tree"; exit 1; }

# --- build in GOPATH mode, as debian/rules does -------------------------------------
rm -rf "$tree/vendor/github.com/modern-go/reflect2"
cp -a "$REFLECT2" "$tree/vendor/github.com/modern-go/reflect2"

gopath="$work/gopath"
mkdir -p "$gopath/src/k8s.io"
ln -s "$tree" "$gopath/src/k8s.io/kubernetes"
log "building kube-apiserver (nice -n 19; a few minutes)"
(
  cd "$gopath/src/k8s.io/kubernetes"
  export GOPATH="$gopath" GO111MODULE=off GOFLAGS= GOCACHE="$work/gocache" \
    KUBE_GIT_TREE_STATE=clean KUBE_GIT_VERSION="v$VERSION" \
    KUBE_BUILD_PLATFORMS=linux/amd64
  nice -n 10 make WHAT=cmd/kube-apiserver >&2
)
built=$(find "$tree/_output" -type f -name kube-apiserver -perm -u+x | head -n1)
[ -n "$built" ] || { log "the build produced no kube-apiserver binary"; exit 1; }

# Atomic publish: copy next to the destination, then rename over it.
mkdir -p "$DEST_DIR"
cp "$built" "$DEST_DIR/.kube-apiserver.tmp.$$"
chmod 0755 "$DEST_DIR/.kube-apiserver.tmp.$$"
mv -f "$DEST_DIR/.kube-apiserver.tmp.$$" "$BIN"
log "built in $(($(date +%s) - start)) s: $BIN"
echo "$BIN"
