#!/usr/bin/env bash
# capture-frames.sh: capture real overlay frames for golden tests and fuzz seeds.
#
# Builds the two-host testbed (containers cA 100.96.1.2 and cB 100.96.2.2 behind
# hosts hA 192.0.2.1 and hB 192.0.2.2, all in network namespaces created here),
# then captures on hA's underlay interface:
#
#   tests/data/kernel-vxlan.pcap  both hosts run the kernel's vxlan device set up
#                                 exactly as flannel's vxlan backend does it
#                                 (flannel.1, VNI 1, dstport 8472, nolearning,
#                                 MTU 1450), carrying IPv4 and IPv6 inner traffic
#   tests/data/flannel-udp.pcap   both hosts run a flannel-udp style forwarder
#                                 (TUN flannel0, raw inner IPv4 packet as the UDP
#                                 payload, port 8285)
#   tests/data/kernel-vxlan6.pcap both hosts run flanneld's dual-stack vxlan node
#                                 (flannel.1 over 192.0.2.N, flannel-v6.1 over
#                                 2001:db8::N, MTU 1430): inner IPv4 over the
#                                 IPv4 underlay, inner IPv6 over the IPv6 one
#
# and then extracts UDP payloads from those captures into the cargo-fuzz seed
# corpora fuzz/corpus/{decap_vxlan,decap_udp,ip_parse}/ (next to any seeds made
# by hand, which are left alone). tests/data/README.md
# describes what each capture holds.
#
# Regenerate (as root; needs iproute2, tcpdump, tshark, ping, python3, xxd, gcc):
#
#   FWD_C=path/to/fwd.c scripts/capture-frames.sh
#
# FWD_C is the naive flannel-udp forwarder used as the benchmark baseline; it is
# not part of this repository and is compiled into a temporary directory. Without
# FWD_C the flannel-udp capture is skipped and the committed flannel-udp.pcap is
# kept. `scripts/capture-frames.sh --corpus-only` only re-extracts the corpora from
# the committed captures (no root needed); `--kernel-vxlan6` captures only
# kernel-vxlan6.pcap (the others are kept), then re-extracts the corpora.
#
# Timestamps, ICMP ids, TCP sequence numbers and the kernel's outer UDP source
# ports (a hash of the inner flow; for TCP the socket's random hash) differ from
# run to run; the frame layout, addresses, MACs, VNI and ports do not. After regenerating, re-run
# `cargo test --test captures`: it pins the frame counts per kind.
#
# Every namespace is named rlcap-$$-*, so parallel runs never collide; the EXIT
# trap deletes exactly those namespaces and ends exactly the processes started
# here, by PID, also on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=$ROOT/tests/data
CORPUS=$ROOT/fuzz/corpus

PFX=rlcap-$$
NS_CA=$PFX-cA
NS_CB=$PFX-cB
NS_HA=$PFX-hA
NS_HB=$PFX-hB

# Fixed VtepMACs (locally administered) so the inner Ethernet headers are
# identical on every run.
MAC_A=0e:00:00:00:01:00
MAC_B=0e:00:00:00:02:00
# flannel-v6.1's VtepMACs (the leases' BackendV6Data), not the IPv4 ones.
MAC6_A=0e:00:00:06:01:00
MAC6_B=0e:00:00:06:02:00
# Fixed underlay MACs too (hA's and hB's eth0), for the outer Ethernet headers.
UNDERLAY_MAC_A=02:00:c0:00:02:01
UNDERLAY_MAC_B=02:00:c0:00:02:02
VNI=1
VXLAN_PORT=8472
UDP_PORT=8285

created_ns=()
pids=()
tmp=""

cleanup() {
    local rc=$?
    local pid ns
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${created_ns[@]}"; do
        ip netns delete "$ns" 2>/dev/null || true
    done
    if [[ -n $tmp ]]; then
        rm -rf -- "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf 'capture-frames: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# --- testbed ----------------------------------------------------------------

add_ns() {
    ip netns add "$1"
    created_ns+=("$1")
    ip -n "$1" link set lo up
}

# Waits (bounded) until FILE contains PATTERN.
wait_for() {
    local file=$1 pattern=$2 i
    for i in $(seq 1 100); do
        if grep -q -- "$pattern" "$file" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    die "timed out waiting for '$pattern' in $(basename "$file")"
}

# Starts "$@" in namespace NS in the background, stdout+stderr to LOGFILE, and
# records its PID. `ip netns exec` execs the command, so $! is the command.
spawn() {
    local ns=$1 logfile=$2
    shift 2
    ip netns exec "$ns" "$@" >"$logfile" 2>&1 &
    pids+=("$!")
}

# Stops a process started by spawn (by PID) and forgets it.
stop() {
    local pid=$1 sig=${2:-TERM} p keep=()
    kill -s "$sig" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${pids[@]}"; do
        [[ $p == "$pid" ]] || keep+=("$p")
    done
    pids=("${keep[@]}")
}

# Turns off TX checksum offload (and with it TSO/GSO) on DEV in NS through the
# SIOCETHTOOL ioctl (ETHTOOL_STXCSUM), as `ethtool -K DEV tx off` would; ethtool
# itself is not required. With offload on, veths pass CHECKSUM_PARTIAL packets
# along: the containers' inner TCP/UDP checksums and the hosts' outer UDP
# checksums stay unfinished (the pseudo-header sum only) and tcpdump records
# them so, where a real NIC would fill them in on the wire. With offload off on
# the container and underlay veths, the captures hold what the wire holds.
tx_csum_off() {
    ip netns exec "$1" python3 - "$2" <<'PY'
import ctypes, fcntl, socket, struct, sys
SIOCETHTOOL, ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM = 0x8946, 0x16, 0x17
def ethtool(name, cmd, data):
    buf = ctypes.create_string_buffer(struct.pack("II", cmd, data))
    ifr = struct.pack("16sP", name.encode(), ctypes.addressof(buf))
    ifr += bytes(40 - len(ifr))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCETHTOOL, ifr)
    return struct.unpack("II", buf.raw[:8])[1]
ethtool(sys.argv[1], ETHTOOL_STXCSUM, 0)
if ethtool(sys.argv[1], ETHTOOL_GTXCSUM, 0):
    sys.exit("tx checksum offload still on for " + sys.argv[1])
PY
}

# Four namespaces: containers and hosts, veths, addresses, forwarding. The
# container veths get the overlay MTU (as flannel's CNI config does), so the
# largest DF packet from a container is exactly what the tunnel can carry.
build_base() {
    local mtu=$1
    for ns in "$NS_CA" "$NS_CB" "$NS_HA" "$NS_HB"; do
        add_ns "$ns"
        # No DAD: a tentative link-local address would hold back NDP for ~2 s.
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.accept_dad=0
    done
    for ns in "$NS_HA" "$NS_HB"; do
        ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.forwarding=1
    done

    # underlay
    ip -n "$NS_HA" link add eth0 address "$UNDERLAY_MAC_A" type veth \
        peer name eth0 address "$UNDERLAY_MAC_B" netns "$NS_HB"
    ip -n "$NS_HA" addr add 192.0.2.1/24 dev eth0
    ip -n "$NS_HB" addr add 192.0.2.2/24 dev eth0
    ip -n "$NS_HA" link set eth0 up
    ip -n "$NS_HB" link set eth0 up
    tx_csum_off "$NS_HA" eth0
    tx_csum_off "$NS_HB" eth0

    # containers: host side veth0 carries 100.96.N.1, container side eth0 .2
    local n c h
    for n in 1 2; do
        if [[ $n == 1 ]]; then c=$NS_CA h=$NS_HA; else c=$NS_CB h=$NS_HB; fi
        ip -n "$h" link add veth0 mtu "$mtu" type veth peer name eth0 netns "$c"
        ip -n "$c" link set eth0 mtu "$mtu"
        ip -n "$h" addr add "100.96.$n.1/24" dev veth0
        ip -n "$c" addr add "100.96.$n.2/24" dev eth0
        ip -n "$h" addr add "fd00:100:96:$n::1/64" dev veth0 nodad
        ip -n "$c" addr add "fd00:100:96:$n::2/64" dev eth0 nodad
        ip -n "$h" link set veth0 up
        ip -n "$c" link set eth0 up
        tx_csum_off "$c" eth0
        ip -n "$c" route add default via "100.96.$n.1"
        ip -n "$c" -6 route add default via "fd00:100:96:$n::1"
    done
}

# The IPv4 half of flannel's vxlan node on host N (1 = hA, 2 = hB), with the
# peer's lease: flannel.1 over the IPv4 underlay, the lease subnet's .0 address,
# a route to the peer subnet via the peer's .0 onlink, a permanent neighbour for
# it (its VtepMAC) and an fdb entry sending that MAC to the peer's public IP.
# Sets ns, peer and peer_mac for the caller.
flannel_vxlan_v4() {
    local n=$1 ip mac peer_ip
    if [[ $n == 1 ]]; then
        ns=$NS_HA ip=192.0.2.1 mac=$MAC_A peer=2 peer_ip=192.0.2.2 peer_mac=$MAC_B
    else
        ns=$NS_HB ip=192.0.2.2 mac=$MAC_B peer=1 peer_ip=192.0.2.1 peer_mac=$MAC_A
    fi
    ip -n "$ns" link add flannel.1 address "$mac" type vxlan id "$VNI" local "$ip" \
        dev eth0 dstport "$VXLAN_PORT" nolearning
    # No link-local address: nothing but forwarded traffic enters the tunnel.
    ip -n "$ns" link set flannel.1 addrgenmode none
    ip -n "$ns" link set flannel.1 mtu 1450 up
    ip -n "$ns" addr add "100.96.$n.0/32" dev flannel.1
    ip -n "$ns" route add "100.96.$peer.0/24" via "100.96.$peer.0" dev flannel.1 onlink
    ip -n "$ns" neigh add "100.96.$peer.0" lladdr "$peer_mac" dev flannel.1 nud permanent
    bridge -n "$ns" fdb append "$peer_mac" dev flannel.1 dst "$peer_ip"
}

# flannel's vxlan backend on host N: flannel_vxlan_v4, and the same for IPv6
# over the same IPv4-underlay device.
flannel_vxlan() {
    local n=$1 ns peer peer_mac
    flannel_vxlan_v4 "$n"
    ip -n "$ns" addr add "fd00:100:96:$n::/128" dev flannel.1 nodad
    ip -n "$ns" -6 route add "fd00:100:96:$peer::/64" via "fd00:100:96:$peer::" dev flannel.1 onlink
    ip -n "$ns" -6 neigh add "fd00:100:96:$peer::" lladdr "$peer_mac" dev flannel.1 nud permanent
    log "$(ip -n "$ns" -d -o link show flannel.1 | sed 's/  */ /g')"
}

# flanneld's dual-stack vxlan node on host N (EnableIPv6): flannel_vxlan_v4 for
# the IPv4 lease only, and flannel-v6.1 over the IPv6 underlay (2001:db8::N,
# added here) for the IPv6 lease: VNI 1, dstport 8472, nolearning, MTU 1430
# (the kernel's cap for a 1500 IPv6 underlay; flanneld asks for 1450 and gets
# that), its own VtepMAC, fd00:100:96:N::/128, a /64 route via the peer's
# fd00:100:96:M:: onlink, a permanent neighbour with the peer's BackendV6Data
# VtepMAC and an fdb entry sending it to 2001:db8::M. Checksum settings are the
# kernel's defaults (UDP checksums over IPv6).
flannel_vxlan_dual() {
    local n=$1 ns peer peer_mac mac6 peer_mac6
    if [[ $n == 1 ]]; then
        mac6=$MAC6_A peer_mac6=$MAC6_B
    else
        mac6=$MAC6_B peer_mac6=$MAC6_A
    fi
    flannel_vxlan_v4 "$n"
    ip -n "$ns" addr add "2001:db8::$n/64" dev eth0 nodad
    ip -n "$ns" link add flannel-v6.1 address "$mac6" type vxlan id "$VNI" local "2001:db8::$n" \
        dev eth0 dstport "$VXLAN_PORT" nolearning
    # No link-local address here either: only forwarded traffic in the capture.
    ip -n "$ns" link set flannel-v6.1 addrgenmode none
    ip -n "$ns" link set flannel-v6.1 mtu 1430 up
    ip -n "$ns" addr add "fd00:100:96:$n::/128" dev flannel-v6.1 nodad
    ip -n "$ns" -6 route add "fd00:100:96:$peer::/64" via "fd00:100:96:$peer::" dev flannel-v6.1 onlink
    ip -n "$ns" -6 neigh add "fd00:100:96:$peer::" lladdr "$peer_mac6" dev flannel-v6.1 nud permanent
    bridge -n "$ns" fdb append "$peer_mac6" dev flannel-v6.1 dst "2001:db8::$peer"
    log "$(ip -n "$ns" -d -o link show flannel-v6.1 | sed 's/  */ /g')"
}

# flannel's udp backend on host N: TUN flannel0 with the lease's .0 address and
# a /16 route for the whole network, and the forwarder on port 8285.
flannel_udp() {
    local n=$1 ns ip peer peer_ip
    if [[ $n == 1 ]]; then
        ns=$NS_HA ip=192.0.2.1 peer=2 peer_ip=192.0.2.2
    else
        ns=$NS_HB ip=192.0.2.2 peer=1 peer_ip=192.0.2.1
    fi
    ip -n "$ns" tuntap add dev flannel0 mode tun
    ip -n "$ns" link set flannel0 mtu 1472 up
    ip -n "$ns" addr add "100.96.$n.0/16" dev flannel0
    spawn "$ns" "$tmp/fwd-$n.log" "$tmp/fwd" -t flannel0 -l "$ip" -p "$UDP_PORT" \
        -r "100.96.$peer.0/24=$peer_ip"
    wait_for "$tmp/fwd-$n.log" ready
}

teardown() {
    local pid ns
    for pid in "${pids[@]}"; do stop "$pid"; done
    for ns in "${created_ns[@]}"; do ip netns delete "$ns"; done
    created_ns=()
}

# --- traffic ----------------------------------------------------------------

# A tiny bounded peer: a TCP server that reads to EOF then answers once, a UDP
# server that echoes a fixed number of datagrams, and their clients. Ports 5999
# (TCP), 7777 (UDP) and 41000 (clients) have no dissector in tshark, so the
# inner payloads dissect as plain data.
write_peer() {
    cat >"$tmp/peer.py" <<'EOF'
import socket, sys

# Fixed client port: reproducible frames, and no ephemeral port that tshark
# would decode as some registered protocol.
CLIENT_PORT = 41000

def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET

def main():
    mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "tcp-server":
        s = socket.socket(socket.AF_INET6)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.listen(1)
        s.settimeout(5)
        print("ready", flush=True)
        c, _ = s.accept()
        c.settimeout(5)
        got = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            got += d
        c.sendall(b"ringlay capture: received %d bytes\n" % len(got))
        c.close()
    elif mode == "tcp-client":
        size = int(sys.argv[4])
        c = socket.create_connection((addr, port), timeout=5, source_address=("", CLIENT_PORT))
        c.sendall(bytes(range(32, 127)) * (size // 95) + b"\n")
        c.shutdown(socket.SHUT_WR)
        while c.recv(4096):
            pass
        c.close()
    elif mode == "udp-server":
        count = int(sys.argv[4])
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.settimeout(5)
        print("ready", flush=True)
        for _ in range(count):
            d, peer = s.recvfrom(2048)
            s.sendto(d, peer)
    elif mode == "udp-client":
        msg = sys.argv[4].encode()
        s = socket.socket(family(addr), socket.SOCK_DGRAM)
        s.bind(("", CLIENT_PORT))
        s.settimeout(5)
        s.sendto(msg, (addr, port))
        s.recvfrom(2048)
    else:
        sys.exit("unknown mode " + mode)

main()
EOF
}

# Runs the traffic from cA to cB; every step is bounded by a count and a timeout.
run_traffic() {
    local max_v4=$1 max_v6=$2 pid
    local ping=(timeout 10 ping -n -q -W 2)
    ip netns exec "$NS_CA" "${ping[@]}" -c 2 -i 0.2 100.96.2.2 >/dev/null
    ip netns exec "$NS_CA" "${ping[@]}" -c 1 -M do -s "$max_v4" 100.96.2.2 >/dev/null
    if [[ $max_v6 != none ]]; then
        ip netns exec "$NS_CA" "${ping[@]}" -6 -c 2 -i 0.2 fd00:100:96:2::2 >/dev/null
        ip netns exec "$NS_CA" "${ping[@]}" -6 -c 1 -M do -s "$max_v6" fd00:100:96:2::2 >/dev/null
    fi

    spawn "$NS_CB" "$tmp/tcp-server.log" timeout 10 python3 "$tmp/peer.py" tcp-server :: 5999
    pid=${pids[-1]}
    wait_for "$tmp/tcp-server.log" ready
    ip netns exec "$NS_CA" timeout 10 python3 "$tmp/peer.py" tcp-client 100.96.2.2 5999 950
    wait "$pid"

    local count=1
    [[ $max_v6 != none ]] && count=2
    spawn "$NS_CB" "$tmp/udp-server.log" timeout 10 python3 "$tmp/peer.py" udp-server :: 7777 "$count"
    pid=${pids[-1]}
    wait_for "$tmp/udp-server.log" ready
    ip netns exec "$NS_CA" timeout 10 python3 "$tmp/peer.py" udp-client 100.96.2.2 7777 "ringlay udp v4"
    if [[ $max_v6 != none ]]; then
        ip netns exec "$NS_CA" timeout 10 python3 "$tmp/peer.py" udp-client fd00:100:96:2::2 7777 "ringlay udp v6"
    fi
    wait "$pid"
}

# capture OUT PORT MAX_V4 MAX_V6: tcpdump on hA's underlay (Ethernet link type,
# full snaplen, bounded by -c and timeout) around run_traffic.
capture() {
    local out=$1 port=$2 max_v4=$3 max_v6=$4 pid
    spawn "$NS_HA" "$tmp/tcpdump.log" timeout 30 \
        tcpdump -i eth0 -n -s 0 -U --immediate-mode -c 60 -w "$tmp/cap.pcap" "udp port $port"
    pid=${pids[-1]}
    wait_for "$tmp/tcpdump.log" "listening on"
    run_traffic "$max_v4" "$max_v6"
    sleep 0.5
    stop "$pid" INT
    local frames
    frames=$(tshark -r "$tmp/cap.pcap" 2>/dev/null | wc -l)
    [[ $frames -gt 0 && $frames -le 40 ]] || die "unexpected frame count $frames in $(basename "$out")"
    cp "$tmp/cap.pcap" "$out"
    log "wrote $out ($frames frames, $(stat -c %s "$out") bytes)"
}

# --- fuzz seed corpora --------------------------------------------------------

# seed OUT PCAP FILTER [SKIP]: the UDP payload of the first frame matching the
# display FILTER, minus SKIP leading bytes, written as raw bytes to OUT.
seed() {
    local out=$1 pcap=$2 filter=$3 skip=${4:-0} hex
    hex=$(tshark -r "$pcap" -d "udp.port==$VXLAN_PORT,vxlan" -d "udp.port==$UDP_PORT,ip" -Y "$filter" \
        -T fields -e udp.payload 2>/dev/null | head -n 1)
    [[ -n $hex ]] || die "no frame matches '$filter' in $(basename "$pcap")"
    printf '%s' "${hex//:/}" | xxd -r -p | tail -c "+$((skip + 1))" >"$out"
}

extract_corpora() {
    local vx=$DATA/kernel-vxlan.pcap udp=$DATA/flannel-udp.pcap d
    # Each extracted seed is written over by name; seeds written by hand in the
    # same directories (e.g. ip_parse's IPv6 extension-header cases) are kept.
    for d in decap_vxlan decap_udp ip_parse; do
        mkdir -p "$CORPUS/$d"
    done

    # VXLAN payload: 8-byte VXLAN header + inner Ethernet + inner IP.
    d=$CORPUS/decap_vxlan
    seed "$d/icmp-echo-request-v4" "$vx" 'icmp.type == 8 && ip.len < 200'
    seed "$d/icmp-echo-reply-v4" "$vx" 'icmp.type == 0 && ip.len < 200'
    seed "$d/icmp-echo-request-v4-mtu-1450-df" "$vx" 'icmp.type == 8 && ip.len == 1450'
    seed "$d/icmpv6-echo-request" "$vx" 'icmpv6.type == 128 && ipv6.plen < 200'
    seed "$d/icmpv6-echo-reply-mtu-1450" "$vx" 'icmpv6.type == 129 && ipv6.plen == 1410'
    seed "$d/tcp-syn-v4" "$vx" 'tcp.flags.syn == 1 && tcp.flags.ack == 0'
    seed "$d/tcp-data-v4" "$vx" 'tcp.len > 0'
    seed "$d/udp-datagram-v4" "$vx" 'udp.dstport == 7777 && ip.version == 4'
    seed "$d/udp-datagram-v6" "$vx" 'udp.dstport == 7777 && ipv6'
    # From the dual-stack capture: frames over the IPv6 underlay, whose inner
    # destination is flannel-v6.1's VtepMAC.
    local vx6=$DATA/kernel-vxlan6.pcap
    if [[ -f $vx6 ]]; then
        seed "$d/v6-underlay-icmpv6-echo-request" "$vx6" 'ipv6.dst == 2001:db8::2 && icmpv6.type == 128 && ipv6.plen < 200'
        seed "$d/v6-underlay-icmpv6-echo-request-mtu-1430" "$vx6" 'ipv6.dst == 2001:db8::2 && icmpv6.type == 128 && ipv6.plen == 1390'
        seed "$d/v6-underlay-udp-datagram-v6" "$vx6" 'udp.dstport == 7777 && ipv6.dst == fd00:100:96:2::2'
    fi

    # flannel udp payload: the raw inner IPv4 packet.
    d=$CORPUS/decap_udp
    seed "$d/icmp-echo-request" "$udp" 'icmp.type == 8 && ip.len < 200 && ip.src == 100.96.1.2'
    seed "$d/icmp-echo-reply" "$udp" 'icmp.type == 0 && ip.len < 200 && ip.src == 100.96.2.2'
    seed "$d/icmp-echo-request-mtu-1472-df" "$udp" 'icmp.type == 8 && ip.len == 1472'
    seed "$d/tcp-syn" "$udp" 'tcp.flags.syn == 1 && tcp.flags.ack == 0'
    seed "$d/tcp-syn-ack" "$udp" 'tcp.flags.syn == 1 && tcp.flags.ack == 1'
    seed "$d/tcp-data" "$udp" 'tcp.len > 0'
    seed "$d/udp-datagram" "$udp" 'udp.dstport == 7777'

    # Inner IP packets: VXLAN payload minus VXLAN (8) and Ethernet (14) headers,
    # and flannel-udp payloads as they are.
    d=$CORPUS/ip_parse
    seed "$d/ipv4-icmp-echo-request" "$vx" 'icmp.type == 8 && ip.len < 200' 22
    seed "$d/ipv4-tcp-syn-options" "$vx" 'tcp.flags.syn == 1 && tcp.flags.ack == 0' 22
    seed "$d/ipv4-udp" "$vx" 'udp.dstport == 7777 && ip.version == 4' 22
    seed "$d/ipv6-icmpv6-echo-request" "$vx" 'icmpv6.type == 128 && ipv6.plen < 200' 22
    seed "$d/ipv6-udp" "$vx" 'udp.dstport == 7777 && ipv6' 22
    seed "$d/ipv4-tcp-data" "$udp" 'tcp.len > 0'
    log "wrote seed corpora under $CORPUS"
}

# --- main -------------------------------------------------------------------

for tool in tshark xxd; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
tmp=$(mktemp -d)

if [[ ${1:-} == --kernel-vxlan6 ]]; then
    [[ $(id -u) == 0 ]] || die "must run as root (network namespaces)"
    for tool in ip bridge tcpdump ping python3 timeout; do
        command -v "$tool" >/dev/null || die "$tool is required"
    done
    write_peer
    mkdir -p "$DATA"
    log "flanneld dual-stack vxlan node (flannel.1 + flannel-v6.1) on both hosts"
    build_base 1430
    flannel_vxlan_dual 1
    flannel_vxlan_dual 2
    # Largest DF pings: 1430 - 20 - 8 over flannel.1, 1430 - 40 - 8 over flannel-v6.1.
    capture "$DATA/kernel-vxlan6.pcap" "$VXLAN_PORT" 1402 1382
    teardown
elif [[ ${1:-} != --corpus-only ]]; then
    [[ $(id -u) == 0 ]] || die "must run as root (network namespaces)"
    for tool in ip bridge tcpdump ping python3 timeout; do
        command -v "$tool" >/dev/null || die "$tool is required"
    done
    write_peer
    mkdir -p "$DATA"

    log "kernel vxlan (flannel vxlan backend) on both hosts"
    build_base 1450
    flannel_vxlan 1
    flannel_vxlan 2
    # Largest DF pings through MTU 1450: 1450 - 20 - 8 and 1450 - 40 - 8.
    capture "$DATA/kernel-vxlan.pcap" "$VXLAN_PORT" 1422 1402
    teardown

    if [[ -n ${FWD_C:-} ]]; then
        log "flannel-udp forwarder on both hosts"
        command -v gcc >/dev/null || die "gcc is required"
        gcc -O2 -Wall -pthread -o "$tmp/fwd" "$FWD_C"
        build_base 1472
        flannel_udp 1
        flannel_udp 2
        # The forwarder carries IPv4 only. Largest DF ping: 1472 - 20 - 8.
        capture "$DATA/flannel-udp.pcap" "$UDP_PORT" 1444 none
        teardown
    else
        log "FWD_C not set: keeping the committed flannel-udp.pcap"
    fi
fi

extract_corpora
