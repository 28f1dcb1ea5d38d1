#!/usr/bin/env bash
# profile-overlay.sh: where the CPU goes during one TCP stream through ringlay.
#
#   scripts/profile-overlay.sh [--backend vxlan|udp] [--time S] [--top N]
#
# Builds the two-host namespace testbed with `ringlay run` (all offloads) on both
# hosts, starts iperf3 -t S+2 from container 1 to container 2, and records every
# CPU with `perf record -a -g` for S seconds (default 5) in the middle of it. Then
# prints the top N (default 25) symbols by self time, the kernel's and ringlay's
# together, and the share of samples in ringlay's own code.
#
# Environment: RINGLAY_BIN (default: cargo build --release --locked). Needs root,
# iproute2, iperf3, perf (Debian's linux-perf). Every namespace is named
# rlprof-$$-*; the EXIT trap ends exactly the processes started here (by PID) and
# deletes exactly those namespaces.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/testbed.sh
source "$ROOT/scripts/lib/testbed.sh"

TB_NAME=profile-overlay
TB_PFX=rlprof-$$
TB_TMP=


backend=vxlan
secs=5
top=25
while (($#)); do
    case $1 in
    --backend) backend=${2:?--backend needs vxlan or udp}; shift 2 ;;
    --time) secs=${2:?--time needs seconds}; shift 2 ;;
    --top) top=${2:?--top needs a number}; shift 2 ;;
    -h | --help) tb_usage; exit 0 ;;
    *) tb_usage >&2; exit 2 ;;
    esac
done
[[ $backend =~ ^(vxlan|udp)$ ]] || tb_die "--backend: vxlan or udp"
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1 || secs > 10)); then
    tb_die "--time: 1..10 seconds"
fi
[[ $top =~ ^[1-9][0-9]*$ ]] || tb_die "--top: a positive number"
[[ $(id -u) == 0 ]] || tb_die "must run as root (network namespaces, perf -a)"
for tool in ip iperf3 perf timeout; do
    command -v "$tool" >/dev/null || tb_die "$tool is required"
done

tb_start

ringlay_bin=$(tb_ringlay_bin) || tb_die "no ringlay binary"

default_mtu=1450
[[ $backend == udp ]] && default_mtu=1472
tb_build 2 "$default_mtu"
tb_leases_json 2 "$backend" partial-csum >"$TB_TMP/leases.json"
for i in 1 2; do
    tb_ringlay "$i" "$TB_TMP/leases.json" "$ringlay_bin" || tb_die "ringlay did not start"
    tb_set_ctr_mtu "$i" "$(tb_flannel_mtu "$i" "$default_mtu")"
done

C1=$(tb_ctr 1)
C2=$(tb_ctr 2)
tb_spawn "$C2" "$TB_TMP/iperf-server.log" timeout $((secs + 15)) iperf3 -s -1 -p 5201
tb_wait_listening "$C2" 5201 || tb_die "iperf3 server did not listen"
tb_spawn "$C1" "$TB_TMP/iperf.log" timeout $((secs + 10)) iperf3 -c 100.96.2.2 -p 5201 -t $((secs + 2))
client=$TB_LAST_PID
sleep 1
perf record -q -a -g -o "$TB_TMP/perf.data" -- sleep "$secs" 2>"$TB_TMP/perf-record.log" ||
    tb_die "perf record failed: $(tail -n 3 "$TB_TMP/perf-record.log")"
tb_wait_pid "$client" $((secs + 5)) || true
gbit=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i ~ /bits\/sec/) { print $(i - 1), $i; exit } }' "$TB_TMP/iperf.log")

perf report -i "$TB_TMP/perf.data" --no-children --sort sym --stdio -q 2>/dev/null |
    grep -E '^ +[0-9.]+%' >"$TB_TMP/top.txt" || true
ours=$(perf report -i "$TB_TMP/perf.data" --no-children --sort dso --stdio -q 2>/dev/null |
    awk -v bin="$(basename "$ringlay_bin")" '$2 == bin { print $1 }')

echo
echo "## Profile: one TCP stream through ringlay-$backend"
echo
echo "- kernel: $(uname -r), CPUs: $(nproc); ringlay: $(tb_ringlay_build)"
echo "- iperf3 single stream, receiver: ${gbit:-n/a}; perf record -a -g for ${secs} s"
echo "- samples in ringlay's own code: ${ours:-0%}"
echo
echo '```'
head -n "$top" "$TB_TMP/top.txt"
echo '```'
