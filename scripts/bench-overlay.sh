#!/usr/bin/env bash
# bench-overlay.sh: container-to-container throughput and latency through each
# overlay, on the two-host namespace testbed, all in one run.
#
#   scripts/bench-overlay.sh [--rounds N] [--configs a,b,...] [--time S] [--quick]
#
# Configs (default: all, in this order):
#   underlay       no tunnel: each host routes the other's lease to its underlay
#                  address (100.96.2.0/24 via 192.0.2.2): the ceiling
#   host-gw        `ringlay run` with the host-gw backend: ringlay installs those
#                  same routes itself (route protocol 114); expected to equal
#                  underlay within noise
#   kernel-vxlan   flannel's vxlan backend, i.e. the kernel's vxlan device on both
#                  hosts: the reference every ratio is taken against
#   naive-udp      flannel's udp backend as users run it today: the naive TUN <->
#                  UDP forwarder (one read/sendto per packet), compiled from
#                  the C file named by $RINGLAY_BASELINE_FWD_C; skipped if unset
#                  or missing
#   ringlay-udp-off      `ringlay run --offload off`, udp backend (port 8285):
#                        one TUN read, send, receive and TUN write per packet
#   ringlay-udp-tso      ... --offload tso: 64 KiB TUN reads cut in userspace,
#                        segments sent with one sendmmsg
#   ringlay-udp-tso-gso  ... --offload tso,gso: the segments leave in one
#                        UDP_SEGMENT send per peer (up to 64 KiB)
#   ringlay-udp          ... all offloads (the default): tso, gso and gro
#                        (UDP_GRO receives, TCP segments coalesced into 64 KiB
#                        TUN writes)
#   ringlay-vxlan-off    `ringlay run --offload off`, vxlan backend (port 8472)
#   ringlay-vxlan        ... all offloads (the default)
# IPv6 underlay configs: each host's eth0 also holds 2001:db8::i/64, and every
# measurement is inner IPv6 (iperf3 -6, ping -6, sockperf) from fd00:100:96:1::2
# to fd00:100:96:2::2, carried over the IPv6 underlay:
#   kernel-vxlan6  flanneld's dual-stack vxlan node on both hosts: flannel.1 and
#                  flannel-v6.1 (the kernel's vxlan device over 2001:db8::i,
#                  MTU 1430); the reference the other *6 ratios are taken against
#   ringlay-udp6   `ringlay run --public-ipv6 2001:db8::i`, dual-stack leases,
#                  udp backend (port 8285), all offloads
#   ringlay-vxlan6 ... vxlan backend (port 8472), all offloads
#
# Rounds are interleaved (round 1: every config, round 2: every config, ...), the
# testbed is rebuilt from nothing for every config, and the table holds each
# metric's median over the rounds with its ratio to kernel-vxlan (kernel-vxlan6
# for the *6 configs):
#   TCP 1 stream   iperf3 -t S, Gbit/s received
#   TCP 4 streams  iperf3 -P 4 -t S, Gbit/s received
#   UDP 64 B       4 iperf3 clients (-u -l 64 -b 0 -t S) to 4 servers; the
#                  packets the servers received per second, summed (kpps)
#   UDP 64 B loss  what the 4 clients sent that the servers did not receive, in %
#   ping           ping -c 20 -i 0.05, average RTT in ms (idle path)
#   sockperf p50, p99
#                  sockperf ping-pong, 64-byte UDP messages one at a time for S
#                  seconds: round-trip time percentiles in µs (request/response
#                  latency through both hosts' data paths; skipped without
#                  sockperf, Debian's package)
#   CPU s/Gbit     during the 1-stream TCP test: CPU time the whole machine
#                  spent busy (user, system, irq, softirq from /proc/stat: both
#                  hosts' kernels, iperf3 and the forwarders) per Gbit received
# Container veth MTUs are what flannel's CNI would give: 1500 underlay, 1450
# vxlan, 1472 udp; for ringlay, FLANNEL_MTU from the subnet file it writes. For
# kernel-vxlan6, 1430, flannel-v6.1's MTU (flanneld writes FLANNEL_MTU=1450, and
# path MTU discovery would bring TCP down to 1430 anyway).
#
# Options:
#   --rounds N     rounds (default 3)
#   --configs LIST comma-separated subset of the configs above
#   --time S       seconds per iperf3 test (default 5, at most 10)
#   --metrics LIST comma-separated subset of tcp1, tcp4, udp64, ping, rr (default all)
#   --quick        smoke run: 1 round, 2 s tests
# Environment:
#   RINGLAY_BIN             ringlay binary (default: cargo build --release --locked,
#                           then <target dir>/release/ringlay)
#   RINGLAY_ARGS            extra arguments for `ringlay run` (e.g. "--queues 2")
#   RINGLAY_BASELINE_FWD_C  the baseline forwarder's source
#   RINGLAY_BENCH_COUNTERS  if set, print each ringlay's final counters after
#                           each config (what was dropped, and why)
#
# Needs root, iproute2, iperf3, ping, ss, awk (and gcc for naive-udp). A ringlay
# config that does not come up within 10 s is skipped, with its output, for the
# rest of the run. Every namespace is named rlbench-$$-*; the EXIT trap ends
# exactly the processes started here (by PID) and deletes exactly those
# namespaces, also on failure. Every load is bounded by its duration and a timeout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/testbed.sh
source "$ROOT/scripts/lib/testbed.sh"

TB_NAME=bench-overlay
TB_PFX=rlbench-$$
TB_TMP=

ALL_CONFIGS=(underlay host-gw kernel-vxlan naive-udp ringlay-udp-off ringlay-udp-tso ringlay-udp-tso-gso
    ringlay-udp ringlay-vxlan-off ringlay-vxlan kernel-vxlan6 ringlay-udp6 ringlay-vxlan6)
METRICS=(tcp1 tcp4 udp64 loss ping p50 p99 cpu)
# Idle-path latency first, then the loads.
METRICS_ORDER=(ping rr tcp1 tcp4 udp64)
declare -A METRIC_TITLE=(
    [tcp1]="TCP 1 stream (Gbit/s)"
    [tcp4]="TCP 4 streams (Gbit/s)"
    [udp64]="UDP 64 B (kpps rx)"
    [loss]="UDP 64 B loss (%)"
    [ping]="ping avg (ms)"
    [rr]="sockperf RTT p50 (µs)"
    [p50]="sockperf p50 (µs)"
    [p99]="sockperf p99 (µs)"
    [cpu]="CPU s/Gbit (TCP 1)"
)
REFERENCE=kernel-vxlan
REFERENCE6=kernel-vxlan6
# is_v6 CONFIG: true for the IPv6-underlay configs (inner IPv6, ratios to
# kernel-vxlan6).
is_v6() { [[ $1 == *6 ]]; }
reference_of() { if is_v6 "$1"; then printf '%s' "$REFERENCE6"; else printf '%s' "$REFERENCE"; fi; }


rounds=3
secs=5
configs_arg=
metrics_arg=
while (($#)); do
    case $1 in
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --configs) configs_arg=${2:?--configs needs a list}; shift 2 ;;
    --time) secs=${2:?--time needs seconds}; shift 2 ;;
    --metrics) metrics_arg=${2:?--metrics needs a list}; shift 2 ;;
    --quick) rounds=1 secs=2; shift ;;
    -h | --help) tb_usage; exit 0 ;;
    *) tb_usage >&2; exit 2 ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || tb_die "--rounds: not a positive number: $rounds"
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1 || secs > 10)); then
    tb_die "--time: 1..10 seconds"
fi

if [[ -n $metrics_arg ]]; then
    IFS=, read -r -a METRICS_ORDER <<<"$metrics_arg"
    for m in "${METRICS_ORDER[@]}"; do
        [[ $m =~ ^(tcp1|tcp4|udp64|ping|rr)$ ]] || tb_die "unknown metric '$m' (known: tcp1, tcp4, udp64, ping, rr)"
    done
fi

configs=()
if [[ -n $configs_arg ]]; then
    IFS=, read -r -a configs <<<"$configs_arg"
    for c in "${configs[@]}"; do
        [[ " ${ALL_CONFIGS[*]} " == *" $c "* ]] || tb_die "unknown config '$c' (known: ${ALL_CONFIGS[*]})"
    done
else
    configs=("${ALL_CONFIGS[@]}")
fi

[[ $(id -u) == 0 ]] || tb_die "must run as root (network namespaces)"
for tool in ip bridge iperf3 ping ss awk timeout; do
    command -v "$tool" >/dev/null || tb_die "$tool is required"
done
if [[ " ${METRICS_ORDER[*]} " == *" rr "* ]] && ! command -v sockperf >/dev/null; then
    tb_log "sockperf not found (Debian package sockperf): no sockperf rows"
    kept=()
    for m in "${METRICS_ORDER[@]}"; do [[ $m == rr ]] || kept+=("$m"); done
    METRICS_ORDER=("${kept[@]}")
fi

# sockperf takes IPv6 addresses from 3.8 on; older ones give no sockperf rows
# for the *6 configs.
RR6=1
if [[ " ${METRICS_ORDER[*]} " == *" rr "* ]]; then
    sp_version=$(sockperf --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -n 1)
    read -r sp_major sp_minor <<<"${sp_version:-0 0}"
    if ((sp_major < 3 || (sp_major == 3 && sp_minor < 8))); then
        RR6=
        tb_log "sockperf ${sp_major}.${sp_minor} has no IPv6 (3.8 or later has): no sockperf rows for the *6 configs"
    fi
fi

tb_start

declare -A skip=()   # config -> reason
declare -A results=() # "config|metric" -> space-separated values, one per round

wants() { [[ " ${configs[*]} " == *" $1 "* ]]; }

# --- preparation: the baseline and the ringlay binary -------------------------------

fwd_c=${RINGLAY_BASELINE_FWD_C:-}
if wants naive-udp; then
    if [[ ! -f $fwd_c ]]; then
        skip[naive-udp]="baseline source $fwd_c not found (set RINGLAY_BASELINE_FWD_C)"
    elif ! command -v gcc >/dev/null; then
        skip[naive-udp]="gcc not found"
    elif ! gcc -O2 -Wall -pthread -o "$TB_TMP/fwd" "$fwd_c" 2>"$TB_TMP/gcc.log"; then
        skip[naive-udp]="baseline does not compile: $(head -n 3 "$TB_TMP/gcc.log")"
    fi
fi

ringlay_bin=
read -r -a ringlay_args <<<"${RINGLAY_ARGS:-}"
# is_ringlay CONFIG: true for the configs that run `ringlay run`.
is_ringlay() { [[ $1 == ringlay-* || $1 == host-gw ]]; }
wants_ringlay() {
    local c
    for c in "${configs[@]}"; do is_ringlay "$c" && return 0; done
    return 1
}
ringlay_configs=()
for c in "${ALL_CONFIGS[@]}"; do is_ringlay "$c" && ringlay_configs+=("$c"); done
skip_ringlay() {
    local c
    for c in "${ringlay_configs[@]}"; do skip[$c]=$1; done
}
if wants_ringlay && ! ringlay_bin=$(tb_ringlay_bin); then
    skip_ringlay "no ringlay binary: the build failed or \$RINGLAY_BIN is not executable (see above)"
fi

for c in "${!skip[@]}"; do
    tb_log "skipping $c: ${skip[$c]}"
done

# --- configs ---------------------------------------------------------------------

# setup_<config>: builds the two-host testbed and makes it carry 100.96.0.0/16.
# Returns non-zero (after logging why) if the config cannot run.
setup_underlay() {
    tb_build 2 1500
    tb_underlay_routes 1 2
    tb_underlay_routes 2 1
}

setup_kernel-vxlan() {
    tb_build 2 1450
    tb_kernel_vxlan_node 1 2
    tb_kernel_vxlan_node 2 2
}

# flannel's udp backend per the baseline's README: TUN flannel0, MTU 1472, the
# lease's .0 address with the network's prefix, and the forwarder on port 8285.
setup_naive-udp() {
    tb_build 2 1472
    local i peer h
    for i in 1 2; do
        peer=$((3 - i)) h=$(tb_host "$i")
        ip -n "$h" tuntap add dev flannel0 mode tun
        ip -n "$h" link set flannel0 mtu 1472 up
        ip -n "$h" addr add "100.96.$i.0/16" dev flannel0
        tb_spawn "$h" "$TB_TMP/fwd-$i.log" "$TB_TMP/fwd" -t flannel0 -l "192.0.2.$i" \
            -p "$TB_UDP_PORT" -r "100.96.$peer.0/24=192.0.2.$peer"
        if ! tb_wait_for "$TB_TMP/fwd-$i.log" ready 10 "$TB_LAST_PID"; then
            tb_log "naive forwarder on host $i did not come up: $(tail -n 3 "$TB_TMP/fwd-$i.log")"
            return 1
        fi
    done
}

setup_ringlay() {
    local backend=$1 default_mtu=$2 offload=$3 i
    tb_build 2 "$default_mtu"
    # With offloads, each node advertises partial-csum, as it would in its own
    # etcd or Kubernetes lease.
    local features=partial-csum
    [[ $offload == off ]] && features=
    tb_leases_json 2 "$backend" "$features" >"$TB_TMP/leases-$backend.json"
    for i in 1 2; do
        tb_ringlay "$i" "$TB_TMP/leases-$backend.json" "$ringlay_bin" --offload "$offload" \
            "${ringlay_args[@]}" || return 1
        tb_set_ctr_mtu "$i" "$(tb_flannel_mtu "$i" "$default_mtu")"
    done
}
# host-gw: no tunnel, FLANNEL_MTU is the underlay's 1500.
setup_host-gw() {
    local i
    tb_build 2 1500
    tb_leases_json 2 host-gw >"$TB_TMP/leases-host-gw.json"
    for i in 1 2; do
        tb_ringlay "$i" "$TB_TMP/leases-host-gw.json" "$ringlay_bin" "${ringlay_args[@]}" || return 1
        tb_set_ctr_mtu "$i" "$(tb_flannel_mtu "$i" 1500)"
    done
}
setup_ringlay-udp-off() { setup_ringlay udp 1472 off; }
setup_ringlay-udp-tso() { setup_ringlay udp 1472 tso; }
setup_ringlay-udp-tso-gso() { setup_ringlay udp 1472 tso,gso; }
setup_ringlay-udp() { setup_ringlay udp 1472 all; }
setup_ringlay-vxlan-off() { setup_ringlay vxlan 1450 off; }
setup_ringlay-vxlan() { setup_ringlay vxlan 1450 all; }

# The IPv6 underlay: the same testbed with 2001:db8::i/64 on each eth0.
setup_kernel-vxlan6() {
    tb_build 2 1430
    tb_add_underlay6 2
    tb_kernel_vxlan_node 1 2
    tb_kernel_vxlan_node 2 2
    tb_kernel_vxlan6_node 1 2
    tb_kernel_vxlan6_node 2 2
}

# ringlay over the IPv6 underlay: dual-stack leases (tb_leases_json6), each node
# given its IPv6 public address; container MTU from FLANNEL_MTU (default: the
# underlay's 1500 less the IPv6 encapsulation, 70 for vxlan, 48 for udp).
setup_ringlay6() {
    local backend=$1 default_mtu=$2 i
    tb_build 2 "$default_mtu"
    tb_add_underlay6 2
    tb_leases_json6 2 "$backend" partial-csum >"$TB_TMP/leases6-$backend.json"
    for i in 1 2; do
        tb_ringlay "$i" "$TB_TMP/leases6-$backend.json" "$ringlay_bin" \
            --public-ipv6 "$(tb_underlay_ip6 "$i")" "${ringlay_args[@]}" || return 1
        tb_set_ctr_mtu "$i" "$(tb_flannel_mtu "$i" "$default_mtu")"
    done
}
setup_ringlay-udp6() { setup_ringlay6 udp 1452; }
setup_ringlay-vxlan6() { setup_ringlay6 vxlan 1430; }

# --- measurements ----------------------------------------------------------------

C1=$(tb_ctr 1)
C2=$(tb_ctr 2)
# The server container's address, and the family flag of iperf3 and ping: set
# per config by use_family (inner IPv4 with no flag, as before; IPv6 and -6 for
# the *6 configs).
DST=100.96.2.2
FAMILY=
use_family() {
    if is_v6 "$1"; then
        DST=fd00:100:96:2::2 FAMILY=-6
    else
        DST=100.96.2.2 FAMILY=
    fi
}

# json_sum FILE OBJECT KEY: the first value of KEY inside OBJECT ("sum_received"
# or "sum_sent", which only iperf3 -J's "end" holds) in FILE.
json_sum() {
    awk -F: -v obj="\"$2\"" -v key="\"$3\"" '
        $1 ~ obj { inside = 1 }
        inside && $1 ~ key { gsub(/[ \t,]/, "", $2); print $2; exit }
    ' "$1"
}

# Each measure_* leaves its value in MEASURED (empty on failure). They run in the
# main shell, not in command substitutions, so that every process they start is
# in tb_pids when a signal or a failure runs the cleanup.
MEASURED=
CPU_PER_GBIT=

# cpu_busy: jiffies every CPU spent in user, nice, system, irq and softirq.
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
HZ=$(getconf CLK_TCK)

# iperf3 TCP with P streams from c1 to c2: Gbit/s received.
measure_tcp() {
    local streams=$1 out=$TB_TMP/tcp-$1.json srv bps bytes busy0 busy1
    MEASURED='' CPU_PER_GBIT=''
    tb_spawn "$C2" "$TB_TMP/iperf-server.log" timeout $((secs + 15)) iperf3 -s -1 -p 5201
    srv=$TB_LAST_PID
    tb_wait_listening "$C2" 5201 || { tb_stop "$srv"; return 0; }
    busy0=$(cpu_busy)
    ip netns exec "$C1" timeout $((secs + 10)) iperf3 ${FAMILY:+"$FAMILY"} -c "$DST" -p 5201 -t "$secs" \
        -P "$streams" -J >"$out" 2>&1 || true
    busy1=$(cpu_busy)
    tb_wait_pid "$srv" 5 || tb_stop "$srv"
    bps=$(json_sum "$out" sum_received bits_per_second)
    bytes=$(json_sum "$out" sum_received bytes)
    if [[ -n $bps ]]; then
        MEASURED=$(awk -v b="$bps" 'BEGIN { printf "%.2f", b / 1e9 }')
    fi
    if [[ -n $bytes ]]; then
        CPU_PER_GBIT=$(awk -v j=$((busy1 - busy0)) -v hz="$HZ" -v b="$bytes" \
            'BEGIN { if (b > 0) printf "%.3f", (j / hz) / (b * 8 / 1e9) }')
    fi
}

# 4 UDP flows of 64-byte datagrams, unpaced; packets received per second by the
# servers (bytes received / 64 / receiver seconds), summed, in kpps. What the
# clients sent goes to UDP_SENT (kpps), to tell a slow path from a slow generator.
UDP_SENT=
UDP_LOSS=
measure_udp64() {
    local p total=0 sent=0 bytes rsecs
    MEASURED='' UDP_SENT='' UDP_LOSS=''
    tb_udp64_start "$C1" "$C2" "$DST" "$secs" ${FAMILY:+"$FAMILY"}
    tb_udp64_wait "$secs"
    for p in "${TB_UDP64_PORTS[@]}"; do
        bytes=$(json_sum "$TB_TMP/udp-$p.json" sum_received bytes)
        rsecs=$(json_sum "$TB_TMP/udp-$p.json" sum_received seconds)
        [[ -n $bytes && -n $rsecs ]] || return 0
        total=$(awk -v t="$total" -v b="$bytes" -v s="$rsecs" 'BEGIN { printf "%.3f", t + (s > 0 ? b / 64 / s : 0) }')
        bytes=$(json_sum "$TB_TMP/udp-$p.json" sum_sent bytes)
        rsecs=$(json_sum "$TB_TMP/udp-$p.json" sum_sent seconds)
        sent=$(awk -v t="$sent" -v b="${bytes:-0}" -v s="${rsecs:-0}" 'BEGIN { printf "%.3f", t + (s > 0 ? b / 64 / s : 0) }')
    done
    MEASURED=$(awk -v t="$total" 'BEGIN { printf "%.1f", t / 1000 }')
    UDP_SENT=$(awk -v t="$sent" 'BEGIN { printf "%.1f", t / 1000 }')
    UDP_LOSS=$(awk -v r="$total" -v s="$sent" 'BEGIN { if (s > 0) printf "%.1f", (s > r ? s - r : 0) * 100 / s }')
}

# sockperf ping-pong: 64-byte UDP messages, one outstanding at a time, for $secs
# seconds; leaves the round-trip percentiles in µs in RR_P50 and RR_P99.
RR_P50= RR_P99=
measure_rr() {
    local srv out=$TB_TMP/sockperf.log
    MEASURED='' RR_P50='' RR_P99=''
    tb_spawn "$C2" "$TB_TMP/sockperf-server.log" timeout $((secs + 15)) \
        sockperf server -i "$DST" -p 11111
    srv=$TB_LAST_PID
    sleep 0.5
    ip netns exec "$C1" timeout $((secs + 10)) sockperf ping-pong -i "$DST" -p 11111 \
        -m 64 -t "$secs" --full-rtt >"$out" 2>&1 || true
    tb_stop "$srv"
    RR_P50=$(awk '/percentile 50.000 =/ { print $NF; exit }' "$out")
    RR_P99=$(awk '/percentile 99.000 =/ { print $NF; exit }' "$out")
    MEASURED=$RR_P50
}

# Average RTT over 20 pings at 50 ms on the idle path, in ms.
measure_ping() {
    MEASURED=$(ip netns exec "$C1" timeout 10 ping ${FAMILY:+"$FAMILY"} -n -q -c 20 -i 0.05 -W 1 "$DST" 2>/dev/null |
        awk -F'[/ ]+' '/^rtt|^round-trip/ { for (i = 1; i <= NF; i++) if ($i == "=") { print $(i + 2); exit } }' || true)
}

# record CONFIG METRIC: runs measure_METRIC and keeps its value for this round.
record() {
    local cfg=$1 metric=$2 value
    case $metric in
    tcp1) measure_tcp 1 ;;
    tcp4) measure_tcp 4 ;;
    *) "measure_$metric" ;;
    esac
    value=$MEASURED
    results[$cfg|$metric]+="${value:-NA} "
    local note=
    [[ $metric == udp64 && -n $value ]] && note=" (clients sent $UDP_SENT kpps, ${UDP_LOSS:-?} % lost)"
    [[ $metric == rr && -n $value ]] && note=" (p99 ${RR_P99:-?} µs)"
    [[ $metric == tcp1 && -n $CPU_PER_GBIT ]] && note=" ($CPU_PER_GBIT CPU s/Gbit)"
    printf '  %-20s %-24s %s%s\n' "$cfg" "${METRIC_TITLE[$metric]}" "${value:-failed}" "$note" >&2
    if [[ $metric == tcp1 ]]; then
        results[$cfg|cpu]+="${CPU_PER_GBIT:-NA} "
    fi
    if [[ $metric == udp64 ]]; then
        results[$cfg|loss]+="${UDP_LOSS:-NA} "
    fi
    if [[ $metric == rr ]]; then
        results[$cfg|p50]+="${RR_P50:-NA} "
        results[$cfg|p99]+="${RR_P99:-NA} "
    fi
}

run_config() {
    local cfg=$1
    use_family "$cfg"
    if ! "setup_$cfg"; then
        if is_ringlay "$cfg"; then
            skip[$cfg]="\`ringlay run\` did not print \`ready\` within 10 s (see its output above)"
        else
            skip[$cfg]="setup failed (see above)"
        fi
        tb_log "skipping $cfg: ${skip[$cfg]}"
        tb_teardown
        return 0
    fi
    if ! ip netns exec "$C1" timeout 10 ping ${FAMILY:+"$FAMILY"} -n -q -c 3 -i 0.2 -W 1 "$DST" >/dev/null; then
        tb_log "$cfg: container 1 cannot reach container 2; no measurements this round"
        tb_teardown
        return 0
    fi
    local m
    for m in "${METRICS_ORDER[@]}"; do
        [[ $m == rr && -z $RR6 ]] && is_v6 "$cfg" && continue
        record "$cfg" "$m"
    done
    tb_teardown
    if [[ -n ${RINGLAY_BENCH_COUNTERS:-} ]] && is_ringlay "$cfg"; then
        grep -h "final \(route \)\?counters" "$TB_TMP"/ringlay-*.log |
            sed 's/^.*final \(route \)\?counters: /    /' >&2 || true
    fi
}

for ((round = 1; round <= rounds; round++)); do
    for cfg in "${configs[@]}"; do
        [[ -n ${skip[$cfg]:-} ]] && continue
        tb_log "round $round/$rounds: $cfg"
        run_config "$cfg"
    done
done

# --- report ----------------------------------------------------------------------

declare -A DECIMALS=([tcp1]=2 [tcp4]=2 [udp64]=1 [loss]=1 [ping]=3 [p50]=1 [p99]=1 [cpu]=3)

declare -A med=()
for cfg in "${configs[@]}"; do
    for m in "${METRICS[@]}"; do
        # shellcheck disable=SC2086 # one word per round
        med[$cfg|$m]=$(tb_median "${DECIMALS[$m]}" ${results[$cfg|$m]:-})
    done
done

cell() {
    local v=${med[$1|$2]:-} ref
    ref=${med[$(reference_of "$1")|$2]:-}
    if [[ -z $v ]]; then
        printf 'n/a'
    elif [[ -n $ref ]] && awk -v r="$ref" 'BEGIN { exit !(r > 0) }'; then
        awk -v v="$v" -v r="$ref" 'BEGIN { printf "%s (%.2f×)", v, v / r }'
    else
        printf '%s' "$v"
    fi
}

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "## Overlay benchmark"
echo
echo "- kernel: $(uname -r), CPUs: $(nproc) (${cpu_model:-unknown model})"
echo "- $(iperf3 --version | head -n 1 | cut -d' ' -f1-2); rounds: $rounds (medians), ${secs} s per iperf3 test, interleaved"
echo "- ringlay: $(tb_ringlay_build)"
echo "- ratios are to $REFERENCE (the *6 configs, inner IPv6 over the IPv6 underlay: to $REFERENCE6); for loss, ping, sockperf and CPU s/Gbit lower is better"
echo
printf '| config |'
for m in "${METRICS[@]}"; do printf ' %s |' "${METRIC_TITLE[$m]}"; done
printf '\n|---|'
for m in "${METRICS[@]}"; do printf -- '---:|'; done
printf '\n'
for cfg in "${configs[@]}"; do
    printf '| %s |' "$cfg"
    if [[ -n ${skip[$cfg]:-} && -z ${results[$cfg|${METRICS[0]}]:-} ]]; then
        for m in "${METRICS[@]}"; do printf ' skipped |'; done
    else
        for m in "${METRICS[@]}"; do printf ' %s |' "$(cell "$cfg" "$m")"; done
    fi
    printf '\n'
done
for cfg in "${configs[@]}"; do
    if [[ -n ${skip[$cfg]:-} ]]; then
        printf '\n%s skipped (from then on): %s\n' "$cfg" "${skip[$cfg]}"
    fi
done
