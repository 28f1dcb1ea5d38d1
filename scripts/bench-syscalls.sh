#!/usr/bin/env bash
# bench-syscalls.sh: the syscalls and context switches ringlay's data path costs,
# per GB forwarded and per million 64-byte packets, on the two-host namespace
# testbed.
#
#   scripts/bench-syscalls.sh [--backend vxlan|udp] [--rounds N] [--time S]
#
# Each round builds the testbed anew, runs `ringlay run` (all offloads, then
# $RINGLAY_ARGS) on both hosts and counts what host 1's daemon does, all its
# threads, during two loads from container 1 to container 2:
#   TCP      one iperf3 TCP stream: host 1 reads the stream from its TUN and
#            sends it to host 2 (and takes host 2's ACKs the other way)
#   UDP 64 B 4 iperf3 flows of unpaced 64-byte datagrams (as bench-overlay.sh's
#            UDP 64 B test): one TUN read per packet, nothing coming back
# Each load runs S+3 seconds. 1 s after it starts,
#   perf stat -p PID -e raw_syscalls:sys_enter -e context-switches \
#       -e cpu-migrations -- bash -c 'SNAPSHOT; sleep S; SNAPSHOT'
# counts for S seconds (default 4). perf attaches to every thread of the process
# and, as its counters are inherited, to threads started while it counts. The
# snapshots are made with bash builtins only (no fork or exec), within a few ms
# of perf's start and stop even on a busy machine; each reads
#   - host 1's TUN counters in /proc/PID/net/dev (the daemon's network
#     namespace): the denominators, the TUN's tx_bytes for TCP (bytes ringlay
#     read from the TUN, inner IP headers included; GB = 1e9 bytes) and its
#     tx_packets for UDP 64 B (packets ringlay read). They count what ringlay's
#     own tun_rx_bytes and tun_rx_packets count, and each round checks that they
#     agree, from `ringlay status --json` before and after the loads (a command
#     that takes too long to start, on a loaded machine, to bracket the window);
#   - voluntary_ctxt_switches + nonvoluntary_ctxt_switches summed over
#     /proc/PID/task/*/status: a cross-check of perf's context switches (a
#     thread that exits meanwhile takes its count along).
# Printed per round, then the medians:
#   TCP Gbit/s      bytes read from the TUN per second of the window, for scale
#   syscalls/GB, ctx-sw/GB, ctx-sw/GB (/proc)
#   UDP kpps read   packets read from the TUN per second, for scale
#   syscalls/M pkt, ctx-sw/M pkt, ctx-sw/M pkt (/proc)
# CPU migrations, and the threads alive at the end of each window, go to the
# per-round log lines on stderr.
#
# Options:
#   --backend B   vxlan (default) or udp
#   --rounds N    rounds (default 3)
#   --time S      seconds perf counts in each load (default 4, 1..10)
# Environment:
#   RINGLAY_BIN   ringlay binary (default: cargo build --release --locked)
#   RINGLAY_ARGS  extra arguments for `ringlay run` (e.g. "--queues 2")
#
# Needs root, iproute2, iperf3, perf (Debian's linux-perf), ping, ss, awk. Every
# namespace is named rlsys-$$-*; the EXIT trap ends exactly the processes started
# here (by PID) and deletes exactly those namespaces. Every load is bounded by its
# duration and a timeout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/testbed.sh
source "$ROOT/scripts/lib/testbed.sh"

TB_NAME=bench-syscalls
TB_PFX=rlsys-$$
TB_TMP=

backend=vxlan
rounds=3
secs=4
while (($#)); do
    case $1 in
    --backend) backend=${2:?--backend needs vxlan or udp}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --time) secs=${2:?--time needs seconds}; shift 2 ;;
    -h | --help) tb_usage; exit 0 ;;
    *) tb_usage >&2; exit 2 ;;
    esac
done
[[ $backend =~ ^(vxlan|udp)$ ]] || tb_die "--backend: vxlan or udp"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || tb_die "--rounds: not a positive number: $rounds"
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1 || secs > 10)); then
    tb_die "--time: 1..10 seconds"
fi
[[ $(id -u) == 0 ]] || tb_die "must run as root (network namespaces, perf)"
for tool in ip iperf3 perf ping ss awk timeout; do
    command -v "$tool" >/dev/null || tb_die "$tool is required"
done

tb_start

ringlay_bin=$(tb_ringlay_bin) || tb_die "no ringlay binary"
read -r -a ringlay_args <<<"${RINGLAY_ARGS:-}"

C1=$(tb_ctr 1)
C2=$(tb_ctr 2)
default_mtu=1450
[[ $backend == udp ]] && default_mtu=1472

# The command perf stat runs (its life is the counting window): snapshots of
# PID's /proc/PID/net/dev and thread statuses, at its start and its end, to
# DIR/start.txt and DIR/end.txt, each headed by the time. Builtins only around
# the reads, so that no fork or exec stands between a snapshot and perf's start
# or stop. Arguments: PID, seconds, DIR.
# shellcheck disable=SC2016 # expanded by the bash that perf starts
WINDOW_CMD='
    LC_ALL=C
    pid=$1 secs=$2 dir=$3
    snap() {
        local f s=("time $EPOCHREALTIME") l=()
        mapfile -t l 2>/dev/null <"/proc/$pid/net/dev" && s+=("${l[@]}")
        for f in /proc/"$pid"/task/*/status; do
            mapfile -t l 2>/dev/null <"$f" && s+=("${l[@]}")
        done
        printf "%s\n" "${s[@]}" >"$dir/$1.txt"
    }
    snap start
    sleep "$secs"
    snap end
'

# snap_time FILE: the time a snapshot was taken (seconds since the epoch).
snap_time() { awk '$1 == "time" { print $2; exit }' "$1" 2>/dev/null || true; }

# snap_tun FILE TUN COLUMN: a /proc/net/dev column of TUN in a snapshot (9:
# tx_bytes, 10: tx_packets), or nothing.
snap_tun() {
    awk -v tun="$2" -v col="$3" '
        { line = $0; sub(/^ +/, "", line); i = index(line, ":") }
        i && substr(line, 1, i - 1) == tun { split(substr(line, i + 1), f, " "); print f[col]; exit }
    ' "$1" 2>/dev/null || true
}

# snap_ctxt FILE: voluntary + nonvoluntary context switches summed over the
# threads in a snapshot, or nothing.
snap_ctxt() {
    awk '/^(non)?voluntary_ctxt_switches:/ { s += $2; n++ } END { if (n) print s }' "$1" 2>/dev/null || true
}

# snap_threads FILE...: the threads in a snapshot (or in thread statuses) by
# name ("ringlay-w0×1, ...").
snap_threads() {
    awk '$1 == "Name:" { n[$2]++ } END { for (k in n) printf "%s×%d\n", k, n[k] }' "$@" 2>/dev/null |
        sort | paste -sd, - | sed 's/,/, /g'
}

# perf_count FILE EVENT: EVENT's count in perf stat -x, output FILE (empty if
# not counted).
perf_count() { awk -F, -v e="$2" '$3 == e && $1 ~ /^[0-9]+$/ { print $1; exit }' "$1" 2>/dev/null || true; }

# window PID NAME COLUMN: perf stat on PID for $secs seconds (WINDOW_CMD); leaves
# SYSCALLS, CTXSW, MIGRATIONS, PROC_CTXSW, the change of host 1's TUN counter
# COLUMN (see snap_tun) in DELTA, the window's length in WSECS and the threads at
# its end in WTHREADS (each empty on failure).
SYSCALLS="" CTXSW="" MIGRATIONS="" PROC_CTXSW="" DELTA="" WSECS="" WTHREADS=""
window() {
    local pid=$1 col=$3 dir=$TB_TMP/window-$2 a b
    SYSCALLS='' CTXSW='' MIGRATIONS='' PROC_CTXSW='' DELTA='' WSECS='' WTHREADS=''
    rm -rf -- "$dir"
    mkdir "$dir"
    perf stat -x, -o "$dir/perf.txt" -e raw_syscalls:sys_enter -e context-switches \
        -e cpu-migrations -p "$pid" -- bash -c "$WINDOW_CMD" window "$pid" "$secs" "$dir" \
        2>"$dir/perf.log" || tb_log "perf stat failed: $(tail -n 3 "$dir/perf.log")"
    SYSCALLS=$(perf_count "$dir/perf.txt" raw_syscalls:sys_enter)
    CTXSW=$(perf_count "$dir/perf.txt" context-switches)
    MIGRATIONS=$(perf_count "$dir/perf.txt" cpu-migrations)
    a=$(snap_ctxt "$dir/start.txt") b=$(snap_ctxt "$dir/end.txt")
    [[ -n $a && -n $b ]] && PROC_CTXSW=$((b - a))
    a=$(snap_tun "$dir/start.txt" "$TUN" "$col") b=$(snap_tun "$dir/end.txt" "$TUN" "$col")
    [[ -n $a && -n $b ]] && DELTA=$((b - a))
    a=$(snap_time "$dir/start.txt") b=$(snap_time "$dir/end.txt")
    [[ -n $a && -n $b ]] && WSECS=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b - a }')
    WTHREADS=$(snap_threads "$dir/end.txt")
    return 0
}

# ringlay_tun_rx: host 1's ringlay's tun_rx_packets and tun_rx_bytes, then the
# kernel's count of the same (its TUN's tx_packets and tx_bytes), read together
# while nothing is sent.
ringlay_tun_rx() {
    local json=$TB_TMP/status.json
    timeout 5 "$ringlay_bin" status --socket "$TB_TMP/status-1.sock" --json >"$json" 2>/dev/null || true
    printf '%s %s %s %s\n' \
        "$(awk -F: '$1 ~ /"tun_rx_packets"/ { gsub(/[ \t,]/, "", $2); print $2; exit }' "$json")" \
        "$(awk -F: '$1 ~ /"tun_rx_bytes"/ { gsub(/[ \t,]/, "", $2); print $2; exit }' "$json")" \
        "$(snap_tun "/proc/$1/net/dev" "$TUN" 10)" "$(snap_tun "/proc/$1/net/dev" "$TUN" 9)"
}

# per COUNT DELTA SCALE: COUNT / (DELTA / SCALE), no decimals; NA if either is missing.
per() {
    awk -v c="${1:-}" -v d="${2:-}" -v s="$3" \
        'BEGIN { if (c != "" && d != "" && d > 0) printf "%.0f", c / (d / s); else printf "NA" }'
}

# results[metric] -> space-separated values, one per round.
METRICS=(gbit sys_gb cs_gb pcs_gb kpps sys_mp cs_mp pcs_mp)
declare -A results=()
keep() { results[$1]+="${2:-NA} "; }

# rate DELTA SCALE DECIMALS: DELTA / SCALE per second of the last window.
rate() {
    awk -v d="${1:-}" -v w="${WSECS:-}" -v s="$2" -v p="$3" \
        'BEGIN { if (d != "" && w > 0) printf "%.*f", p, d / s / w; else printf "NA" }'
}

# window_log WHAT UNIT: the last window's counts, on stderr.
window_log() {
    tb_log "  $1: ${DELTA:-?} $2 read from the TUN in ${WSECS:-?} s; ${SYSCALLS:-?} syscalls," \
        "${CTXSW:-?} context switches (/proc: ${PROC_CTXSW:-?}), ${MIGRATIONS:-?} CPU migrations;" \
        "threads at the end: ${WTHREADS:-?}"
}

# tcp_round PID: one iperf3 TCP stream from container 1 to container 2.
tcp_round() {
    local pid=$1 srv client
    SYSCALLS='' CTXSW='' MIGRATIONS='' PROC_CTXSW='' DELTA='' WSECS='' WTHREADS=''
    tb_spawn "$C2" "$TB_TMP/tcp-server.log" timeout $((secs + 15)) iperf3 -s -1 -p 5201
    srv=$TB_LAST_PID
    if tb_wait_listening "$C2" 5201; then
        tb_spawn "$C1" "$TB_TMP/tcp.json" timeout $((secs + 10)) \
            iperf3 -c 100.96.2.2 -p 5201 -t $((secs + 3)) -J
        client=$TB_LAST_PID
        sleep 1
        window "$pid" tcp 9
        tb_wait_pid "$client" $((secs + 12)) || tb_stop "$client"
        tb_wait_pid "$srv" 5 || tb_stop "$srv"
    else
        tb_log "  TCP: the iperf3 server did not listen"
        tb_stop "$srv"
    fi
    keep gbit "$(rate "$DELTA" 1.25e8 2)"
    keep sys_gb "$(per "$SYSCALLS" "$DELTA" 1e9)"
    keep cs_gb "$(per "$CTXSW" "$DELTA" 1e9)"
    keep pcs_gb "$(per "$PROC_CTXSW" "$DELTA" 1e9)"
    window_log TCP bytes
}

# udp_round PID: unpaced 64-byte datagrams from container 1 to container 2, one
# flow to each of TB_UDP64_PORTS.
udp_round() {
    local pid=$1
    tb_udp64_start "$C1" "$C2" 100.96.2.2 $((secs + 3))
    sleep 1
    window "$pid" udp 10
    tb_udp64_wait $((secs + 3))
    keep kpps "$(rate "$DELTA" 1e3 1)"
    keep sys_mp "$(per "$SYSCALLS" "$DELTA" 1e6)"
    keep cs_mp "$(per "$CTXSW" "$DELTA" 1e6)"
    keep pcs_mp "$(per "$PROC_CTXSW" "$DELTA" 1e6)"
    window_log "UDP 64 B" packets
}

THREADS=
TUN=ringlay0
disagree=()
for ((round = 1; round <= rounds; round++)); do
    tb_log "round $round/$rounds: ringlay-$backend"
    tb_build 2 "$default_mtu"
    tb_leases_json 2 "$backend" partial-csum >"$TB_TMP/leases.json"
    pids=()
    for i in 1 2; do
        tb_ringlay "$i" "$TB_TMP/leases.json" "$ringlay_bin" "${ringlay_args[@]}" ||
            tb_die "ringlay did not start on host $i"
        pids+=("$TB_LAST_PID")
        tb_set_ctr_mtu "$i" "$(tb_flannel_mtu "$i" "$default_mtu")"
    done
    ip netns exec "$C1" timeout 10 ping -n -q -c 3 -i 0.2 -W 1 100.96.2.2 >/dev/null ||
        tb_die "container 1 cannot reach container 2"
    pid=${pids[0]}
    TUN=$(timeout 5 "$ringlay_bin" status --socket "$TB_TMP/status-1.sock" --json 2>/dev/null |
        awk -F'"' '$2 == "tun" { print $4; exit }' || true)
    TUN=${TUN:-ringlay0}
    THREADS=$({ cat "/proc/$pid"/task/*/status 2>/dev/null || true; } | snap_threads -)
    tb_log "  host 1's daemon: PID $pid, TUN $TUN, threads $THREADS"
    read -r rl_p0 rl_b0 k_p0 k_b0 < <(ringlay_tun_rx "$pid")
    tcp_round "$pid"
    udp_round "$pid"
    sleep 0.5
    read -r rl_p1 rl_b1 k_p1 k_b1 < <(ringlay_tun_rx "$pid")
    if ! [[ "$rl_p0 $rl_b0 $k_p0 $k_b0 $rl_p1 $rl_b1 $k_p1 $k_b1" =~ ^[0-9]+( [0-9]+){7}$ ]]; then
        disagree+=("round $round: could not read ringlay's or the TUN's counters")
        tb_log "  ${disagree[-1]}"
    elif (((rl_p1 - rl_p0) != (k_p1 - k_p0) || (rl_b1 - rl_b0) != (k_b1 - k_b0))); then
        disagree+=("round $round: ringlay read $((rl_p1 - rl_p0)) packets, $((rl_b1 - rl_b0)) bytes from the TUN; the TUN's counters say $((k_p1 - k_p0)), $((k_b1 - k_b0))")
        tb_log "  ${disagree[-1]}"
    else
        tb_log "  ringlay's tun_rx counters agree with the TUN's tx counters: $((rl_p1 - rl_p0)) packets, $((rl_b1 - rl_b0)) bytes"
    fi
    tb_teardown
done

declare -A DECIMALS=([gbit]=2 [kpps]=1)

echo
echo "## Syscalls and context switches of host 1's ringlay ($backend, all offloads)"
echo
echo "- kernel: $(uname -r), CPUs: $(nproc); $(iperf3 --version | head -n 1 | cut -d' ' -f1-2); $(perf --version)"
echo "- ringlay: $(tb_ringlay_build)"
echo "- host 1's daemon, all its threads (${THREADS:-?}); perf stat -p for ${secs} s inside each load; rounds: $rounds"
echo "- TCP: iperf3, 1 stream 1→2, per GB read from the TUN; UDP 64 B: ${#TB_UDP64_PORTS[@]} unpaced iperf3 flows 1→2, per million packets read from the TUN (the TUN's tx counters)"
if ((${#disagree[@]})); then
    printf -- "- ringlay's tun_rx counters and the TUN's tx counters disagree: %s\n" "${disagree[@]}"
else
    echo "- ringlay's tun_rx_packets and tun_rx_bytes agreed with the TUN's tx counters in every round"
fi
echo
echo "| round | TCP Gbit/s | syscalls/GB | ctx-sw/GB | ctx-sw/GB (/proc) | UDP kpps read | syscalls/M pkt | ctx-sw/M pkt | ctx-sw/M pkt (/proc) |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for ((round = 1; round <= rounds; round++)); do
    printf '| %d |' "$round"
    for m in "${METRICS[@]}"; do
        read -r -a values <<<"${results[$m]:-}"
        printf ' %s |' "${values[round - 1]:-NA}"
    done
    printf '\n'
done
printf '| median |'
for m in "${METRICS[@]}"; do
    # shellcheck disable=SC2086 # one word per round
    v=$(tb_median "${DECIMALS[$m]:-0}" ${results[$m]:-})
    printf ' %s |' "${v:-n/a}"
done
printf '\n'
