#!/usr/bin/env bash
# bench-memory.sh: ringlay's resident memory by worker count, idle and under load,
# on the two-host namespace testbed.
#
#   scripts/bench-memory.sh [--queues LIST] [--backend vxlan|udp] [--time S]
#
# For each queue count (default 1,2,8,16) both hosts run `ringlay run --queues Q`
# with all offloads, and host 1's daemon is read from /proc:
#   idle        VmRSS 2 s after `ready`, nothing forwarded yet
#   load peak   the highest VmRSS sampled every 0.2 s while both containers send
#               to each other: iperf3 TCP 8 streams each way (--bidir) and 8 flows
#               of unpaced 64-byte UDP datagrams, S seconds (default 5)
#   VmHWM       the kernel's high-water mark at the end of the load
#   after       VmRSS 2 s after the load ended
#   TCP         Gbit/s received each way during the load (so that a memory saving
#               that costs throughput shows)
# Flows are spread over the TUN queues by the kernel's flow hash, so with 16
# queues most, not all, workers carry traffic.
#
# Environment: RINGLAY_BIN (default: cargo build --release --locked). Needs root,
# iproute2, iperf3, ss, awk. Every namespace is named rlmem-$$-*; the EXIT trap ends
# exactly the processes started here (by PID) and deletes exactly those namespaces.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/testbed.sh
source "$ROOT/scripts/lib/testbed.sh"

TB_NAME=bench-memory
TB_PFX=rlmem-$$
TB_TMP=


queues_arg=1,2,8,16
backend=vxlan
secs=5
while (($#)); do
    case $1 in
    --queues) queues_arg=${2:?--queues needs a list}; shift 2 ;;
    --backend) backend=${2:?--backend needs vxlan or udp}; shift 2 ;;
    --time) secs=${2:?--time needs seconds}; shift 2 ;;
    -h | --help) tb_usage; exit 0 ;;
    *) tb_usage >&2; exit 2 ;;
    esac
done
IFS=, read -r -a queue_counts <<<"$queues_arg"
for q in "${queue_counts[@]}"; do
    [[ $q =~ ^[1-9][0-9]*$ ]] || tb_die "--queues: not a positive number: $q"
done
[[ $backend =~ ^(vxlan|udp)$ ]] || tb_die "--backend: vxlan or udp"
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1 || secs > 10)); then
    tb_die "--time: 1..10 seconds"
fi
[[ $(id -u) == 0 ]] || tb_die "must run as root (network namespaces)"
for tool in ip iperf3 ss awk timeout; do
    command -v "$tool" >/dev/null || tb_die "$tool is required"
done

tb_start

ringlay_bin=$(tb_ringlay_bin) || tb_die "no ringlay binary"

C1=$(tb_ctr 1)
C2=$(tb_ctr 2)
default_mtu=1450
[[ $backend == udp ]] && default_mtu=1472

# kib PID FIELD: a /proc/PID/status field (VmRSS, VmHWM) in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# json_gbit FILE OBJECT: bits_per_second of OBJECT (sum_received,
# sum_received_bidir_reverse) in iperf3 -J's "end", in Gbit/s.
json_gbit() {
    awk -F: -v obj="\"$2\"" '
        $1 ~ obj { inside = 1 }
        inside && $1 ~ /"bits_per_second"/ { gsub(/[ \t,]/, "", $2); printf "%.2f", $2 / 1e9; exit }
    ' "$1"
}

# load: TCP both ways and 64-byte UDP from container 1 to container 2 for $secs
# seconds, sampling PID's VmRSS; leaves PEAK_KIB and TCP ("a→b / b→a").
PEAK_KIB=0
TCP=
load() {
    local pid=$1 p srv clients=() rss end
    PEAK_KIB=0 TCP=
    tb_spawn "$C2" "$TB_TMP/tcp-server.log" timeout $((secs + 15)) iperf3 -s -1 -p 5201
    srv=$TB_LAST_PID
    for p in 5301 5302 5303 5304 5305 5306 5307 5308; do
        tb_spawn "$C2" "$TB_TMP/udp-server-$p.log" timeout $((secs + 15)) iperf3 -s -1 -p "$p"
    done
    tb_wait_listening "$C2" 5201 || return 0
    for p in 5301 5302 5303 5304 5305 5306 5307 5308; do tb_wait_listening "$C2" "$p" || true; done
    tb_spawn "$C1" "$TB_TMP/tcp.json" timeout $((secs + 10)) \
        iperf3 -c 100.96.2.2 -p 5201 -t "$secs" -P 8 --bidir -J
    clients+=("$TB_LAST_PID")
    for p in 5301 5302 5303 5304 5305 5306 5307 5308; do
        tb_spawn "$C1" "$TB_TMP/udp-$p.json" timeout $((secs + 10)) \
            iperf3 -c 100.96.2.2 -p "$p" -u -l 64 -b 0 -t "$secs" -J
        clients+=("$TB_LAST_PID")
    done
    end=$((SECONDS + secs + 2))
    while ((SECONDS < end)); do
        rss=$(kib "$pid" VmRSS)
        ((rss > PEAK_KIB)) && PEAK_KIB=$rss
        sleep 0.2
    done
    for p in "${clients[@]}"; do tb_wait_pid "$p" $((secs + 12)) || tb_stop "$p"; done
    tb_wait_pid "$srv" 5 || tb_stop "$srv"
    TCP="$(json_gbit "$TB_TMP/tcp.json" sum_received) / $(json_gbit "$TB_TMP/tcp.json" sum_received_bidir_reverse)"
}

rows=()
for q in "${queue_counts[@]}"; do
    tb_log "--queues $q"
    tb_build 2 "$default_mtu"
    tb_leases_json 2 "$backend" partial-csum >"$TB_TMP/leases.json"
    pids=()
    for i in 1 2; do
        tb_ringlay "$i" "$TB_TMP/leases.json" "$ringlay_bin" --queues "$q" ||
            tb_die "ringlay --queues $q did not start"
        pids+=("$TB_LAST_PID")
        tb_set_ctr_mtu "$i" "$(tb_flannel_mtu "$i" "$default_mtu")"
    done
    sleep 2
    idle=$(kib "${pids[0]}" VmRSS)
    load "${pids[0]}"
    hwm=$(kib "${pids[0]}" VmHWM)
    sleep 2
    after=$(kib "${pids[0]}" VmRSS)
    rows+=("| $q | $(mib "$idle") | $(mib "$PEAK_KIB") | $(mib "$hwm") | $(mib "$after") | ${TCP:-n/a} |")
    tb_log "  idle $(mib "$idle") MiB, load peak $(mib "$PEAK_KIB") MiB, VmHWM $(mib "$hwm") MiB, after $(mib "$after") MiB, TCP ${TCP:-n/a} Gbit/s"
    tb_teardown
done

echo
echo "## Memory by queue count ($backend, all offloads)"
echo
echo "- kernel: $(uname -r), CPUs: $(nproc); ringlay: $(tb_ringlay_build)"
echo "- host 1's daemon; load: iperf3 -P 8 --bidir TCP and 8 unpaced 64 B UDP flows for ${secs} s"
echo
echo "| --queues | idle (MiB) | load peak (MiB) | VmHWM (MiB) | after (MiB) | TCP Gbit/s (1→2 / 2→1) |"
echo "|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
