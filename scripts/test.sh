#!/usr/bin/env bash
# ringlay's test command. On a fresh machine it first installs what the tests need
# (Debian packages, cargo-fuzz), then runs every gate: formatting, clippy, docs, the
# unit and integration tests (those needing root skip with a reason outside CI and
# fail inside it), and each fuzz target for a bounded time.
#
#   scripts/test.sh                 everything
#   FUZZ_SECONDS=60 scripts/test.sh longer fuzzing (default 20 s per target)
#   SKIP_FUZZ=1 scripts/test.sh     no fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
step() { printf '\n==> %s\n' "$*"; }

# --- what a fresh machine lacks ---------------------------------------------------
declare -A pkg_for=(
  [protoc]=protobuf-compiler [tshark]=tshark [tcpdump]=tcpdump [iperf3]=iperf3
  [etcd]=etcd-server [etcdctl]=etcd-client [ip]=iproute2 [ping]=iputils-ping
  [bridge]=iproute2 [xxd]=xxd [ethtool]=ethtool [openssl]=openssl
  [nft]=nftables [curl]=curl [python3]=python3-minimal
  # scripts/kube-apiserver.sh builds the Kubernetes tests' apiserver with these.
  [go]=golang-go [rsync]=rsync [dpkg-source]=dpkg-dev
  # The Kubernetes tests apply the manifest's RBAC objects with kubectl.
  [kubectl]=kubernetes-client [unshare]=util-linux
)
missing=()
for cmd in "${!pkg_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_for[$cmd]}")
done
# The CNI test's bridge and host-local plugins (not on PATH).
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  step "installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "not root: install these Debian packages first: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; the answer does not matter here.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }
fi
# Built once per machine, then cached (see the script).
step "kube-apiserver for the Kubernetes tests"
RINGLAY_KUBE_APISERVER=$(scripts/kube-apiserver.sh)
export RINGLAY_KUBE_APISERVER
echo "$RINGLAY_KUBE_APISERVER"
if [ -z "${SKIP_FUZZ:-}" ] && ! cargo fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Build output outside the clone, one directory per toolchain, so that a machine
# that ran the tests once rebuilds only what changed (a cold build of the
# dependencies, the Kubernetes client's among them, takes minutes on 2 cores).
# CARGO_TARGET_DIR, if set, wins; without a writable cache the clone's target/.
if [ -z "${CARGO_TARGET_DIR:-}" ] && mkdir -p /var/cache/ringlay 2>/dev/null &&
  [ -w /var/cache/ringlay ]; then
  toolchain=$(rustc -V | tr -cs 'A-Za-z0-9.' '-')
  export CARGO_TARGET_DIR="/var/cache/ringlay/cargo-target-${toolchain%-}"
fi
fuzz_target_dir="${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}"
echo "build output: ${CARGO_TARGET_DIR:-target/}"

# --- gates ---------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all --check
(cd fuzz && cargo fmt --check)

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked

step "cargo test"
cargo test --locked

# --- fuzzing -------------------------------------------------------------------------
if [ -z "${SKIP_FUZZ:-}" ]; then
  # cargo-fuzz needs nightly flags; the stable toolchain accepts them with this.
  export RUSTC_BOOTSTRAP=1
  step "cargo fuzz build"
  (cd fuzz && cargo fuzz build --release ${fuzz_target_dir:+--target-dir "$fuzz_target_dir"})
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  for target in $(cd fuzz && cargo fuzz list); do
    step "fuzz $target for ${FUZZ_SECONDS}s"
    # New inputs go to a scratch corpus; the committed seeds and regression
    # inputs are only read. A crash's input goes, once fixed, to
    # fuzz/regressions/<target>/<what-it-found>: `cargo test` replays it for good
    # (tests/fuzz_regressions.rs).
    mkdir -p "$work/$target" "fuzz/corpus/$target" "fuzz/regressions/$target"
    log="$work/$target.log"
    if ! (cd fuzz && cargo fuzz run --release ${fuzz_target_dir:+--target-dir "$fuzz_target_dir"} \
      "$target" "$work/$target" "corpus/$target" \
      "regressions/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1); then
      tail -n 80 "$log" >&2
      echo "fuzz target $target failed: see the crash above; its input is in fuzz/artifacts/$target" \
        "(once fixed, commit it as fuzz/regressions/$target/<name>)" >&2
      exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || tail -n 3 "$log"
  done
fi
step "all checks passed"
