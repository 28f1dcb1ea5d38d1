#!/usr/bin/env bash
# demo.sh: ringlay forwarding between three hosts, on this machine, in network
# namespaces.
#
#   scripts/demo.sh [--backend vxlan|udp|host-gw]      (as root; default vxlan)
#
# Builds the release binary, then a cluster: hosts h1..h3 on a switch (a bridge,
# underlay 192.0.2.0/24), each with one container behind it, and etcd in its own
# namespace on the switch (192.0.2.254:2379). Writes flannel's network config to
# etcd, runs ringlay on h1..h3 (each acquires a free subnet in etcd and writes
# subnet.env), moves each container into its host's subnet as the CNI plugin
# would. With vxlan, a fourth host is a flanneld node: its lease written as
# flanneld writes it, the kernel's vxlan device set up from the leases in etcd.
# With host-gw there is no tunnel: each ringlay routes the other hosts' subnets
# via their underlay addresses (route protocol 114), as flanneld's host-gw does.
# Shows the leases in etcd, ping between every pair of containers, a 3-second
# iperf3 from container 1 to container 2, each ringlay's counters (SIGUSR1) and
# `ringlay status` of host 1. Then it stops everything it started and deletes
# the namespaces.
#
# Environment: RINGLAY_BIN to use that binary instead of building one;
# RINGLAY_ARGS for extra `ringlay run` arguments (e.g. "--queues 2").
#
# Needs iproute2, iperf3, ping and ss; installs etcd-server, etcd-client and
# protobuf-compiler (to build) with apt-get if they are missing. Every namespace is
# named rldemo-$$-*; the EXIT trap (also on Ctrl-C and on failure) ends exactly the
# processes started here (ringlay and etcd), by PID, and deletes exactly those
# namespaces and the temporary directory holding etcd's data.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/testbed.sh
source "$ROOT/scripts/lib/testbed.sh"

TB_NAME=demo
TB_PFX=rldemo-$$
TB_TMP=
HOSTS=3  # ringlay hosts; with vxlan, host 4 is a flanneld node (the kernel's vxlan)

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

backend=vxlan
while (($#)); do
    case $1 in
    --backend) backend=${2:?--backend needs vxlan, udp or host-gw}; shift 2 ;;
    --backend=*) backend=${1#--backend=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
[[ $backend == vxlan || $backend == udp || $backend == host-gw ]] ||
    tb_die "--backend: vxlan, udp or host-gw, not '$backend'"

[[ $(id -u) == 0 ]] || tb_die "must run as root (network namespaces)"
for tool in ip bridge iperf3 ping ss timeout; do
    command -v "$tool" >/dev/null || tb_die "$tool is required"
done
declare -A pkg_for=([etcd]=etcd-server [etcdctl]=etcd-client [protoc]=protobuf-compiler)
missing=()
for tool in "${!pkg_for[@]}"; do
    command -v "$tool" >/dev/null || missing+=("${pkg_for[$tool]}")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" ||
        { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } ||
        tb_die "could not install ${missing[*]}"
fi

step_no=0
bold='' plain=''
if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; fi
step() {
    step_no=$((step_no + 1))
    printf '\n%s[%d] %s%s\n' "$bold" "$step_no" "$*" "$plain"
}
say() { printf '    %s\n' "$@"; }
indent() { sed 's/^/    /'; }

# --- 1. the binary -----------------------------------------------------------------
step "Building ringlay (release)"
if [[ -n ${RINGLAY_BIN:-} ]]; then
    bin=$RINGLAY_BIN
    say "using RINGLAY_BIN=$bin"
else
    (cd "$ROOT" && cargo build --release --locked)
    bin=${CARGO_TARGET_DIR:-$ROOT/target}/release/ringlay
    [[ $bin == /* ]] || bin=$ROOT/$bin
fi
[[ -x $bin ]] || tb_die "$bin is not an executable"
read -r -a ringlay_args <<<"${RINGLAY_ARGS:-}"

TB_TMP=$(mktemp -d)
trap tb_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 2. the cluster ------------------------------------------------------------------
if [[ $backend == vxlan ]]; then
    mtu=1450 kernel=$((HOSTS + 1)) all=$((HOSTS + 1))
elif [[ $backend == udp ]]; then
    mtu=1472 kernel='' all=$HOSTS
else
    mtu=1500 kernel='' all=$HOSTS
fi
step "Creating $all hosts and their containers (network namespaces $TB_PFX-*)"
tb_build "$all" "$mtu"
say "switch  $(tb_switch): bridge br0, one port per host"
for ((i = 1; i <= HOSTS; i++)); do
    say "host $i  $(tb_host "$i"): eth0 192.0.2.$i/24   container $i  $(tb_ctr "$i"): addressed from its host's lease"
done
if [[ -n $kernel ]]; then
    say "host $kernel  $(tb_host "$kernel"): eth0 192.0.2.$kernel/24   container $kernel  $(tb_ctr "$kernel"): 100.96.$kernel.2 (a flanneld vxlan node)"
fi

# --- 3. etcd -------------------------------------------------------------------------
etcd_ip=192.0.2.254
endpoint=http://$etcd_ip:2379
step "Starting etcd in its own namespace on the switch ($endpoint)"
tb_etcd "$etcd_ip" || tb_die "etcd did not start"
config="{\"Network\": \"100.96.0.0/16\", \"Backend\": {\"Type\": \"$backend\"}}"
tb_etcdctl "$etcd_ip" put /coreos.com/network/config "$config" >/dev/null
say "/coreos.com/network/config = $config"
if [[ -n $kernel ]]; then
    lease="{\"PublicIP\":\"192.0.2.$kernel\",\"PublicIPv6\":null,\"BackendType\":\"vxlan\",\"BackendData\":{\"VNI\":1,\"VtepMAC\":\"$(tb_vtep_mac "$kernel")\"}}"
    tb_etcdctl "$etcd_ip" put "/coreos.com/network/subnets/100.96.$kernel.0-24" "$lease" >/dev/null
    say "host $kernel's lease, as flanneld writes it: /coreos.com/network/subnets/100.96.$kernel.0-24 = $lease"
fi

# --- 4. ringlay on every host --------------------------------------------------------
step "Starting ringlay on each host; each acquires its subnet in etcd"
declare -A ringlay_pid=() ctr_ip=()
for ((i = 1; i <= HOSTS; i++)); do
    say "host $i: $bin run --etcd-endpoints $endpoint --public-ip 192.0.2.$i${RINGLAY_ARGS:+ $RINGLAY_ARGS}"
    tb_ringlay_etcd "$i" "$endpoint" "$bin" "${ringlay_args[@]}" ||
        tb_die "ringlay did not start on host $i (its output is above)"
    ringlay_pid[$i]=$TB_LAST_PID
    subnet=$(tb_acquired_subnet "$i")
    [[ -n $subnet ]] || tb_die "host $i wrote no FLANNEL_SUBNET"
    tb_readdress_ctr "$i" "$subnet"
    ctr_ip[$i]=${subnet%.0}.2
    tb_set_ctr_mtu "$i" "$(tb_flannel_mtu "$i" "$mtu")"
    say "        ready (pid ${ringlay_pid[$i]}), lease $subnet/24; container $i is now ${ctr_ip[$i]}"
    kept=$(grep -o 'capabilities dropped.*' "$TB_TMP/ringlay-$i.log" | head -n 1 | sed 's/\x1b\[[0-9;]*m//g') || true
    [[ -z $kept ]] || say "        $kept"
done
if [[ -n $kernel ]]; then
    tb_flannel_vxlan_from_etcd "$kernel" "$etcd_ip"
    ctr_ip[$kernel]=100.96.$kernel.2
    say "host $kernel: the kernel's vxlan device flannel.1, routes, neighbours and fdb set up from the leases in etcd, as flanneld would"
fi
say "" "the leases in etcd:"
tb_etcdctl "$etcd_ip" get --prefix /coreos.com/network/subnets/ | paste - - | indent
say "" "host 1's subnet file:"
indent <"$TB_TMP/subnet-1.env" || true
say "" "host 1's routes:"
ip -n "$(tb_host 1)" route show | indent

# --- 5. ping ---------------------------------------------------------------------------
step "Ping between every pair of containers"
failures=0
for ((from = 1; from <= all; from++)); do
    for ((to = 1; to <= all; to++)); do
        ((from == to)) && continue
        if out=$(ip netns exec "$(tb_ctr "$from")" timeout 10 \
            ping -n -q -c 3 -i 0.2 -W 1 "${ctr_ip[$to]}" 2>&1); then
            say "container $from -> container $to: ok,  $(grep -o 'rtt.*' <<<"$out")"
        else
            say "container $from -> container $to: FAILED"
            grep -E 'packet loss|error' <<<"$out" | indent || true
            failures=$((failures + 1))
        fi
    done
done

# --- 6. iperf3 -------------------------------------------------------------------------
step "iperf3, 3 s TCP from container 1 to container 2"
tb_spawn "$(tb_ctr 2)" "$TB_TMP/iperf3-server.log" timeout 20 iperf3 -s -1 -p 5201
server=$TB_LAST_PID
if tb_wait_listening "$(tb_ctr 2)" 5201; then
    if ! ip netns exec "$(tb_ctr 1)" timeout 15 iperf3 -c "${ctr_ip[2]}" -p 5201 -t 3 -f g 2>&1 |
        grep -E 'sender|receiver|error' | indent; then
        failures=$((failures + 1))
    fi
else
    say "iperf3 server did not start"
    failures=$((failures + 1))
fi
tb_wait_pid "$server" 5 || tb_stop "$server"

# --- 7. counters -----------------------------------------------------------------------
step "ringlay's counters (SIGUSR1 to each)"
for ((i = 1; i <= HOSTS; i++)); do
    log=$TB_TMP/ringlay-$i.log
    before=$(stat -c %s "$log")
    say "host $i (pid ${ringlay_pid[$i]}):"
    if ! kill -USR1 "${ringlay_pid[$i]}" 2>/dev/null; then
        say "    not running any more; its output:"
        indent <"$log"
        failures=$((failures + 1))
        continue
    fi
    for _ in $(seq 1 40); do
        (($(stat -c %s "$log") > before)) && break
        sleep 0.05
    done
    sleep 0.1 # let a multi-line report finish
    if (($(stat -c %s "$log") > before)); then
        tail -c "+$((before + 1))" "$log" | indent | indent
    else
        say "    (printed nothing within 2 s)"
    fi
done

step "ringlay status on host 1 (its status socket)"
if ! "$bin" status --socket "$TB_TMP/status-1.sock" | indent; then
    failures=$((failures + 1))
fi

# --- 8. cleanup ------------------------------------------------------------------------
step "Stopping ringlay and etcd, and deleting the namespaces"
for ((i = 1; i <= HOSTS; i++)); do
    tb_stop "${ringlay_pid[$i]}"
done
tb_teardown
say "done"
if ((failures)); then
    printf '\n%d check(s) failed\n' "$failures" >&2
    exit 1
fi
