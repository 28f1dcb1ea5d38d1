# shellcheck shell=bash
# testbed.sh: multi-host overlay testbeds in network namespaces, for the scripts
# beside it (sourced, not run). The same topology as tests/common/netns.rs:
#
#   host i (1-based)   $TB_PFX-h<i>   eth0 192.0.2.i/24 (underlay), ip_forward=1
#   container i        $TB_PFX-c<i>   eth0 100.96.i.2/24, fd00:100:96:i::2/64,
#                                     default routes via the host's veth-c
#                                     (100.96.i.1, fd00:100:96:i::1)
#   switch (n >= 3)    $TB_PFX-sw     bridge br0 with one veth per host; two hosts
#                                     share a single veth pair instead
#
# The caller sets TB_PFX (unique per run: include $$) and TB_TMP (a directory it
# made), and installs the cleanup:  trap tb_cleanup EXIT; trap 'exit 130' INT;
# trap 'exit 143' TERM. tb_cleanup ends exactly the processes started with
# tb_spawn (by PID) and deletes exactly the namespaces made with tb_add_ns.

# flannel's ports (vxlan, udp); the scripts sourcing this file use them too.
# shellcheck disable=SC2034
TB_VXLAN_PORT=8472
# shellcheck disable=SC2034
TB_UDP_PORT=8285

tb_created_ns=()
tb_pids=()
TB_LAST_PID=

tb_log() { printf '%s: %s\n' "${TB_NAME:-testbed}" "$*" >&2; }
tb_die() {
    tb_log "error: $*"
    exit 1
}

# tb_usage: the calling script's header comment (from its second line up to
# `set -euo`), which is its --help.
tb_usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# tb_start: a fresh TB_TMP, and the traps that, on exit or a signal, end the
# processes this run started and delete its namespaces (tb_cleanup).
tb_start() {
    TB_TMP=$(mktemp -d)
    trap tb_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Names.
tb_host() { printf '%s-h%s' "$TB_PFX" "$1"; }
tb_ctr() { printf '%s-c%s' "$TB_PFX" "$1"; }
tb_switch() { printf '%s-sw' "$TB_PFX"; }
tb_vtep_mac() { printf '0e:00:00:00:%02x:00' "$1"; }
# Host i's IPv6 underlay address and its IPv6 VtepMAC (flannel-v6.1, the
# lease's BackendV6Data), as in tests/common/netns.rs.
tb_underlay_ip6() { printf '2001:db8::%x' "$1"; }
tb_vtep_mac6() { printf '0e:00:00:06:%02x:00' "$1"; }
tb_underlay_mac() { printf '02:00:c0:00:02:%02x' "$1"; }

tb_add_ns() {
    ip netns add "$1"
    tb_created_ns+=("$1")
    ip -n "$1" link set lo up
    # No DAD: a tentative address would hold NDP back for ~2 s.
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.accept_dad=0
    ip netns exec "$1" sysctl -qw net.ipv6.conf.default.accept_dad=0
}

# tb_spawn NS LOGFILE CMD...: runs CMD in NS in the background, stdout and stderr
# to LOGFILE, and records its PID (also in TB_LAST_PID). `ip netns exec` execs the
# command, so the PID is the command's own.
tb_spawn() {
    local ns=$1 logfile=$2
    shift 2
    ip netns exec "$ns" "$@" >"$logfile" 2>&1 </dev/null &
    TB_LAST_PID=$!
    tb_pids+=("$TB_LAST_PID")
}

# tb_wait_pid PID SECONDS: waits (bounded) for a spawned process to exit; returns
# its exit status, or 124 if it is still running after SECONDS.
tb_wait_pid() {
    local pid=$1 secs=$2 i
    for ((i = 0; i < secs * 20; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && return 124
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    tb_forget "$pid"
    return "$rc"
}

tb_forget() {
    local p keep=()
    for p in "${tb_pids[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    tb_pids=("${keep[@]}")
}

# tb_stop PID [SIG]: SIG (default TERM), SIGKILL if still running after 2 s, reap.
tb_stop() {
    local pid=$1 sig=${2:-TERM} i
    if kill -0 "$pid" 2>/dev/null; then
        kill -s "$sig" "$pid" 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -s KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    tb_forget "$pid"
}

# tb_wait_for FILE PATTERN SECONDS [PID]: waits until FILE has a line matching
# PATTERN; fails after SECONDS, or as soon as PID (if given) has exited.
tb_wait_for() {
    local file=$1 pattern=$2 secs=$3 pid=${4:-} i
    for ((i = 0; i < secs * 20; i++)); do
        if grep -q -- "$pattern" "$file" 2>/dev/null; then
            return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            grep -q -- "$pattern" "$file" 2>/dev/null
            return
        fi
        sleep 0.05
    done
    return 1
}

# tb_wait_listening NS PORT: waits (5 s at most) for a TCP listener on PORT in NS.
tb_wait_listening() {
    local i
    for ((i = 0; i < 100; i++)); do
        if [[ -n $(ip netns exec "$1" ss -Hltn "sport = :$2") ]]; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# The 64-byte UDP load of the benchmarks: one unpaced flow of 64-byte datagrams
# per port, an iperf3 client in namespace SRC to a one-shot server in DST.
TB_UDP64_PORTS=(5301 5302 5303 5304)
TB_UDP64_SERVERS=()
TB_UDP64_CLIENTS=()
# tb_udp64_start SRC DST DST_IP SECS [IPERF3_ARGS...]: starts the flows for SECS
# seconds; each client's JSON report is $TB_TMP/udp-PORT.json.
tb_udp64_start() {
    local src=$1 dst=$2 ip=$3 secs=$4 p
    shift 4
    TB_UDP64_SERVERS=() TB_UDP64_CLIENTS=()
    for p in "${TB_UDP64_PORTS[@]}"; do
        tb_spawn "$dst" "$TB_TMP/udp-server-$p.log" timeout $((secs + 15)) iperf3 -s -1 -p "$p"
        TB_UDP64_SERVERS+=("$TB_LAST_PID")
    done
    for p in "${TB_UDP64_PORTS[@]}"; do tb_wait_listening "$dst" "$p" || true; done
    for p in "${TB_UDP64_PORTS[@]}"; do
        tb_spawn "$src" "$TB_TMP/udp-$p.json" timeout $((secs + 10)) \
            iperf3 "$@" -c "$ip" -p "$p" -u -l 64 -b 0 -t "$secs" -J
        TB_UDP64_CLIENTS+=("$TB_LAST_PID")
    done
}
# tb_udp64_wait SECS: waits for the flows tb_udp64_start SECS started, ending any
# that outlive their bound.
tb_udp64_wait() {
    local p
    for p in "${TB_UDP64_CLIENTS[@]}"; do tb_wait_pid "$p" $(($1 + 12)) || tb_stop "$p"; done
    for p in "${TB_UDP64_SERVERS[@]}"; do tb_wait_pid "$p" 5 || tb_stop "$p"; done
}

# tb_median DECIMALS VALUES...: the median of the numeric values (NA ignored), or
# nothing.
tb_median() {
    local decimals=$1
    shift
    printf '%s\n' "$@" | { grep -E '^[0-9.]+$' || true; } | sort -g |
        awk -v d="$decimals" '{ v[NR] = $1 } END { if (NR) printf "%.*f", d, NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# tb_ringlay_build: which ringlay a report measured, for its header: $RINGLAY_BIN
# with its sha256 (a given binary need not be the checkout's build, so it is
# named, not the commit), else the checkout's commit; then $RINGLAY_ARGS.
tb_ringlay_build() {
    if [[ -n ${RINGLAY_BIN:-} ]]; then
        printf '%s (sha256 %s)' "$RINGLAY_BIN" "$(sha256sum "$RINGLAY_BIN" | cut -c1-12)"
    else
        git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || printf unknown
    fi
    printf '%s' "${RINGLAY_ARGS:+, args: $RINGLAY_ARGS}"
}

# Ends every recorded process and deletes every created namespace (the testbed
# only; TB_TMP stays).
tb_teardown() {
    local pid ns
    for pid in "${tb_pids[@]}"; do
        kill -s TERM "$pid" 2>/dev/null || true
    done
    for pid in "${tb_pids[@]}"; do tb_stop "$pid"; done
    for ns in "${tb_created_ns[@]}"; do
        ip netns delete "$ns" 2>/dev/null || tb_log "could not delete namespace $ns"
    done
    tb_created_ns=()
}

# The EXIT trap: tb_teardown, then TB_TMP removed; keeps the exit status.
tb_cleanup() {
    local rc=$?
    trap - EXIT
    tb_teardown
    if [[ -n ${TB_TMP:-} && -d $TB_TMP ]]; then
        rm -rf -- "$TB_TMP"
    fi
    exit "$rc"
}

# tb_ringlay_bin: $RINGLAY_BIN, else a release build of the checkout at $ROOT (cargo
# build --release --locked); prints the binary's path, or fails.
tb_ringlay_bin() {
    local bin=${RINGLAY_BIN:-}
    if [[ -z $bin ]]; then
        tb_log "building ringlay (cargo build --release --locked)"
        (cd "$ROOT" && cargo build --release --locked >&2) || return 1
        bin=${CARGO_TARGET_DIR:-$ROOT/target}/release/ringlay
        [[ $bin == /* ]] || bin=$ROOT/$bin
    fi
    [[ -x $bin ]] || { tb_log "$bin is not executable"; return 1; }
    printf '%s' "$bin"
}

# tb_build N MTU: N hosts with a container each (container veths at MTU).
tb_build() {
    local n=$1 mtu=$2 i h c
    for ((i = 1; i <= n; i++)); do
        h=$(tb_host "$i")
        tb_add_ns "$h"
        ip netns exec "$h" sysctl -qw net.ipv4.ip_forward=1
        ip netns exec "$h" sysctl -qw net.ipv6.conf.all.forwarding=1
        tb_add_ns "$(tb_ctr "$i")"
    done

    # underlay
    if ((n == 2)); then
        ip -n "$(tb_host 1)" link add eth0 address "$(tb_underlay_mac 1)" type veth \
            peer name eth0 address "$(tb_underlay_mac 2)" netns "$(tb_host 2)"
    else
        local sw
        sw=$(tb_switch)
        tb_add_ns "$sw"
        ip -n "$sw" link add br0 type bridge stp_state 0 forward_delay 0
        ip -n "$sw" link set br0 up
        for ((i = 1; i <= n; i++)); do
            ip -n "$sw" link add "p$i" type veth peer name eth0 \
                address "$(tb_underlay_mac "$i")" netns "$(tb_host "$i")"
            ip -n "$sw" link set "p$i" master br0 up
        done
    fi
    for ((i = 1; i <= n; i++)); do
        h=$(tb_host "$i")
        ip -n "$h" addr add "192.0.2.$i/24" dev eth0
        ip -n "$h" link set eth0 up
    done

    # containers: host side veth-c 100.96.i.1, container side eth0 100.96.i.2
    for ((i = 1; i <= n; i++)); do
        h=$(tb_host "$i") c=$(tb_ctr "$i")
        ip -n "$h" link add veth-c mtu "$mtu" type veth peer name eth0 netns "$c"
        ip -n "$c" link set eth0 mtu "$mtu"
        ip -n "$h" addr add "100.96.$i.1/24" dev veth-c
        ip -n "$c" addr add "100.96.$i.2/24" dev eth0
        ip -n "$h" addr add "fd00:100:96:$i::1/64" dev veth-c nodad
        ip -n "$c" addr add "fd00:100:96:$i::2/64" dev eth0 nodad
        ip -n "$h" link set veth-c up
        ip -n "$c" link set eth0 up
        ip -n "$c" route add default via "100.96.$i.1"
        ip -n "$c" -6 route add default via "fd00:100:96:$i::1"
    done
}

# tb_set_ctr_mtu I MTU: both ends of container I's veth.
tb_set_ctr_mtu() {
    ip -n "$(tb_host "$1")" link set veth-c mtu "$2"
    ip -n "$(tb_ctr "$1")" link set eth0 mtu "$2"
}

# tb_kernel_vxlan_node I N: host I as a flannel vxlan node made of the kernel's
# vxlan device (flannel.1, VNI 1, port 8472, nolearning, MTU 1450, VtepMAC
# 0e:00:00:00:0I:00), with a route, a permanent neighbour and an fdb entry for
# every other host's lease.
tb_kernel_vxlan_node() {
    local i=$1 n=$2 j h mac
    h=$(tb_host "$i")
    ip -n "$h" link add flannel.1 address "$(tb_vtep_mac "$i")" type vxlan id 1 \
        local "192.0.2.$i" dev eth0 dstport "$TB_VXLAN_PORT" nolearning
    ip -n "$h" link set flannel.1 addrgenmode none
    ip -n "$h" link set flannel.1 mtu 1450 up
    ip -n "$h" addr add "100.96.$i.0/32" dev flannel.1
    for ((j = 1; j <= n; j++)); do
        ((j == i)) && continue
        mac=$(tb_vtep_mac "$j")
        ip -n "$h" route add "100.96.$j.0/24" via "100.96.$j.0" dev flannel.1 onlink
        ip -n "$h" neigh add "100.96.$j.0" lladdr "$mac" dev flannel.1 nud permanent
        bridge -n "$h" fdb append "$mac" dev flannel.1 dst "192.0.2.$j"
    done
}

# tb_add_underlay6 N: an IPv6 underlay beside the IPv4 one: 2001:db8::i/64
# (nodad) on each of hosts 1..N's eth0 (after tb_build).
tb_add_underlay6() {
    local n=$1 i
    for ((i = 1; i <= n; i++)); do
        ip -n "$(tb_host "$i")" addr add "$(tb_underlay_ip6 "$i")/64" dev eth0 nodad
    done
}

# tb_kernel_vxlan6_node I N: host I's flannel-v6.1, as flanneld's vxlan backend
# makes it with EnableIPv6 (VNI 1, port 8472, nolearning, local 2001:db8::I, MTU
# 1430: the kernel's cap for a 1500 IPv6 underlay, which is what flanneld's 1450
# becomes; VtepMAC 0e:00:00:06:0I:00; fd00:100:96:I::/128), with a route, a
# permanent neighbour and an fdb entry for every other host's IPv6 lease.
# Offloads and checksum settings stay the kernel's (UDP checksums on over IPv6).
tb_kernel_vxlan6_node() {
    local i=$1 n=$2 j h mac
    h=$(tb_host "$i")
    ip -n "$h" link add flannel-v6.1 address "$(tb_vtep_mac6 "$i")" type vxlan id 1 \
        local "$(tb_underlay_ip6 "$i")" dev eth0 dstport "$TB_VXLAN_PORT" nolearning
    ip netns exec "$h" sh -c 'echo 0 > /proc/sys/net/ipv6/conf/flannel-v6.1/accept_ra'
    ip -n "$h" link set flannel-v6.1 mtu 1430 up
    ip -n "$h" addr add "fd00:100:96:$i::/128" dev flannel-v6.1 nodad
    for ((j = 1; j <= n; j++)); do
        ((j == i)) && continue
        mac=$(tb_vtep_mac6 "$j")
        ip -n "$h" -6 route add "fd00:100:96:$j::/64" via "fd00:100:96:$j::" dev flannel-v6.1 onlink
        ip -n "$h" -6 neigh add "fd00:100:96:$j::" lladdr "$mac" dev flannel-v6.1 nud permanent
        bridge -n "$h" fdb append "$mac" dev flannel-v6.1 dst "$(tb_underlay_ip6 "$j")"
    done
}

# tb_leases_json6 N BACKEND [FEATURES]: like tb_leases_json, for a dual-stack
# network (EnableIPv6, IPv6Network fd00:100:96::/48 in /64s): keys
# 100.96.i.0-24&fd00:100:96:i::-64, PublicIPv6 2001:db8::i, and for vxlan a
# BackendV6Data with VNI 1 and VtepMAC 0e:00:00:06:0i:00.
tb_leases_json6() {
    local n=$1 backend=$2 features=${3:-} i sep= extra= feat=
    if [[ -n $features ]]; then
        extra=", \"RinglayFeatures\": [\"$features\"]"
        feat=", \"BackendData\": {\"RinglayFeatures\": [\"$features\"]}"
    fi
    printf '{"config": {"Network": "100.96.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:100:96::/48", "IPv6SubnetLen": 64, "Backend": {"Type": "%s"}},\n "subnets": {\n' "$backend"
    for ((i = 1; i <= n; i++)); do
        printf '%s' "$sep"
        if [[ $backend == vxlan ]]; then
            printf '   "100.96.%d.0-24&fd00:100:96:%d::-64": {"PublicIP": "192.0.2.%d", "PublicIPv6": "%s", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "%s"%s}, "BackendV6Data": {"VNI": 1, "VtepMAC": "%s"}}' \
                "$i" "$i" "$i" "$(tb_underlay_ip6 "$i")" "$(tb_vtep_mac "$i")" "$extra" "$(tb_vtep_mac6 "$i")"
        else
            printf '   "100.96.%d.0-24&fd00:100:96:%d::-64": {"PublicIP": "192.0.2.%d", "PublicIPv6": "%s"%s}' \
                "$i" "$i" "$i" "$(tb_underlay_ip6 "$i")" "$feat"
        fi
        sep=$',\n'
    done
    printf '\n }}\n'
}

# tb_underlay_routes I N: host I routes every other lease straight to its host.
tb_underlay_routes() {
    local i=$1 n=$2 j
    for ((j = 1; j <= n; j++)); do
        ((j == i)) && continue
        ip -n "$(tb_host "$i")" route add "100.96.$j.0/24" via "192.0.2.$j"
    done
}

# tb_leases_json N BACKEND [FEATURES]: a static leases file (stdout) for hosts
# 1..N; vxlan leases carry VNI 1 and VtepMAC 0e:00:00:00:0i:00, udp leases are
# flannel's udp lease values, host-gw leases name their backend. FEATURES (e.g.
# partial-csum) is what ringlay nodes advertise in BackendData when they write
# their own leases (etcd, Kubernetes): listed in each vxlan or udp lease.
tb_leases_json() {
    local n=$1 backend=$2 features=${3:-} i sep= extra=
    [[ -n $features ]] && extra=", \"RinglayFeatures\": [\"$features\"]"
    printf '{"config": {"Network": "100.96.0.0/16", "Backend": {"Type": "%s"}},\n "subnets": {\n' "$backend"
    for ((i = 1; i <= n; i++)); do
        printf '%s' "$sep"
        if [[ $backend == vxlan ]]; then
            printf '   "100.96.%d.0-24": {"PublicIP": "192.0.2.%d", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "%s"%s}}' \
                "$i" "$i" "$(tb_vtep_mac "$i")" "$extra"
        elif [[ $backend == host-gw ]]; then
            printf '   "100.96.%d.0-24": {"PublicIP": "192.0.2.%d", "BackendType": "host-gw"}' "$i" "$i"
        elif [[ -n $features ]]; then
            printf '   "100.96.%d.0-24": {"PublicIP": "192.0.2.%d", "PublicIPv6": null, "BackendData": {%s}}' \
                "$i" "$i" "${extra#, }"
        else
            printf '   "100.96.%d.0-24": {"PublicIP": "192.0.2.%d", "PublicIPv6": null}' "$i" "$i"
        fi
        sep=$',\n'
    done
    printf '\n }}\n'
}

# tb_ringlay I LEASES BIN [ARGS...]: starts `BIN run` on host I (log in
# $TB_TMP/ringlay-I.log, subnet file $TB_TMP/subnet-I.env, status socket
# $TB_TMP/status-I.sock; PID in TB_LAST_PID)
# and waits up to 10 s for `ready`. Returns 1, with the log's tail on stderr, if
# it exits or times out first (the process is stopped then).
tb_ringlay() {
    local i=$1 leases=$2 bin=$3
    shift 3
    tb_ringlay_run "$i" 10 "$bin" --static-leases "$leases" "$@"
}

# tb_ringlay_run I SECS BIN ARGS...: `BIN run` on host I with the testbed's
# public IP, subnet file and status socket, then ARGS (the lease source first);
# waits SECS for `ready`.
tb_ringlay_run() {
    local i=$1 secs=$2 bin=$3
    shift 3
    local log=$TB_TMP/ringlay-$i.log
    tb_spawn "$(tb_host "$i")" "$log" "$bin" run \
        --public-ip "192.0.2.$i" --subnet-file "$TB_TMP/subnet-$i.env" \
        --status-socket "$TB_TMP/status-$i.sock" "$@"
    local pid=$TB_LAST_PID
    if ! tb_wait_for "$log" ready "$secs" "$pid"; then
        tb_stop "$pid"
        tb_log "ringlay on host $i did not come up within $secs s; its output:"
        tail -n 15 "$log" | sed 's/^/    /' >&2
        return 1
    fi
}

# tb_flannel_mtu I DEFAULT: FLANNEL_MTU from host I's subnet file, or DEFAULT.
tb_flannel_mtu() {
    local mtu
    mtu=$(sed -n 's/^FLANNEL_MTU=\([0-9]*\)$/\1/p' "$TB_TMP/subnet-$1.env" 2>/dev/null || true)
    printf '%s' "${mtu:-$2}"
}

# --- etcd ----------------------------------------------------------------------------

# tb_etcd IP: etcd in its own namespace $TB_PFX-etcd, plugged into the switch (a
# testbed of three or more hosts) as eth0 with IP/24, listening on IP:2379; its
# data in $TB_TMP/etcd, its log in $TB_TMP/etcd.log, its PID in TB_LAST_PID.
# Waits up to 20 s for it to answer.
tb_etcd() {
    local ip=$1 ns="$TB_PFX-etcd" sw i
    sw=$(tb_switch)
    tb_add_ns "$ns"
    ip -n "$sw" link add pe type veth peer name eth0 netns "$ns"
    ip -n "$sw" link set pe master br0 up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    tb_spawn "$ns" "$TB_TMP/etcd.log" etcd --name ringlay-demo \
        --data-dir "$TB_TMP/etcd" \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster ringlay-demo=http://127.0.0.1:2380 --log-level warn --logger zap
    for ((i = 0; i < 200; i++)); do
        if tb_etcdctl "$ip" endpoint health >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    tb_log "etcd did not come up within 20 s; its output:"
    tail -n 15 "$TB_TMP/etcd.log" | sed 's/^/    /' >&2
    return 1
}

# tb_etcdctl IP ARGS...: etcdctl (v3 API) against the testbed's etcd at IP.
tb_etcdctl() {
    local ip=$1
    shift
    ETCDCTL_API=3 ip netns exec "$TB_PFX-etcd" etcdctl --endpoints "http://$ip:2379" \
        --dial-timeout 2s "$@"
}

# tb_ringlay_etcd I ENDPOINT BIN [ARGS...]: like tb_ringlay, with the lease from
# etcd at ENDPOINT instead of a static leases file.
tb_ringlay_etcd() {
    local i=$1 endpoint=$2 bin=$3
    shift 3
    tb_ringlay_run "$i" 20 "$bin" --etcd-endpoints "$endpoint" "$@"
}

# tb_acquired_subnet I: the network address of the /24 in host I's subnet file
# (FLANNEL_SUBNET=100.96.X.1/24 gives 100.96.X.0).
tb_acquired_subnet() {
    sed -n 's/^FLANNEL_SUBNET=\([0-9]*\.[0-9]*\.[0-9]*\)\.[0-9]*\/24$/\1.0/p' "$TB_TMP/subnet-$1.env"
}

# tb_readdress_ctr I NET: moves container I into the /24 at NET (a.b.c.0), as a CNI
# plugin would after reading subnet.env: the host's veth-c gets a.b.c.1, the
# container a.b.c.2 with its default route via a.b.c.1.
tb_readdress_ctr() {
    local i=$1 p=${2%.0} h c
    h=$(tb_host "$i") c=$(tb_ctr "$i")
    ip -n "$h" -4 addr flush dev veth-c
    ip -n "$h" addr add "$p.1/24" dev veth-c
    ip -n "$c" -4 addr flush dev eth0
    ip -n "$c" addr add "$p.2/24" dev eth0
    ip -n "$c" route replace default via "$p.1"
}

# tb_flannel_vxlan_from_etcd I ETCD_IP: host I as a flanneld vxlan node (the
# kernel's vxlan device, as tb_kernel_vxlan_node) configured from the leases in
# etcd: its own lease must be 100.96.I.0-24 with VtepMAC 0e:00:00:00:0I:00 (write
# it first, as flanneld does); for every other lease, a route, a permanent
# neighbour and an fdb entry from its key, PublicIP and VtepMAC.
tb_flannel_vxlan_from_etcd() {
    local i=$1 etcd_ip=$2 h key value net public mac
    h=$(tb_host "$i")
    ip -n "$h" link add flannel.1 address "$(tb_vtep_mac "$i")" type vxlan id 1 \
        local "192.0.2.$i" dev eth0 dstport "$TB_VXLAN_PORT" nolearning
    ip -n "$h" link set flannel.1 addrgenmode none
    ip -n "$h" link set flannel.1 mtu 1450 up
    ip -n "$h" addr add "100.96.$i.0/32" dev flannel.1
    while read -r key && read -r value; do
        net=${key##*/}
        net=${net%-24}
        [[ $net == "100.96.$i.0" ]] && continue
        public=$(sed -n 's/.*"PublicIP":"\([0-9.]*\)".*/\1/p' <<<"$value")
        mac=$(sed -n 's/.*"VtepMAC":"\([0-9a-f:]*\)".*/\1/p' <<<"$value")
        [[ -n $public && -n $mac ]] || { tb_log "skipping lease $key: $value"; continue; }
        ip -n "$h" route add "$net/24" via "$net" dev flannel.1 onlink
        ip -n "$h" neigh add "$net" lladdr "$mac" dev flannel.1 nud permanent
        bridge -n "$h" fdb append "$mac" dev flannel.1 dst "$public"
    done < <(tb_etcdctl "$etcd_ip" get --prefix /coreos.com/network/subnets/)
}
