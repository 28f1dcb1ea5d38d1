#!/usr/bin/env bash
# soak.sh: the full soak, 60 s of TCP through the overlay while leases churn.
#
#   scripts/soak.sh                          60 s
#   RINGLAY_SOAK_SECONDS=300 scripts/soak.sh longer (10 to 600 s)
#
# Runs tests/soak.rs with an optimised build: two ringlay hosts (vxlan) and a real
# etcd in network namespaces, iperf3 TCP between two containers for the whole
# soak while a publisher in etcd's namespace puts and deletes 200 fake leases a
# second. Prints the publisher's rate, iperf3's throughput, the tables each daemon
# published and its worker switched to (`table_updates_seen`), the drops and
# errors during the soak, and each daemon's VmRSS and open descriptors sampled
# every second after a 5 s warm-up. Fails if the publisher stayed under 180
# changes/s, any packet lacked a lease, an error was counted, iperf3 failed, the
# RSS varied by more than 5 % or the open descriptors changed. `cargo test` runs
# the same test for 15 s. Needs root (namespaces, TUN), iperf3, etcd and etcdctl
# (Debian: iperf3, etcd-server, etcd-client) and protoc to build. The test ends
# the processes it started by PID and deletes its namespaces, also when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in etcd etcdctl iperf3 protoc; do
    command -v "$tool" >/dev/null || { echo "soak: $tool is required" >&2; exit 1; }
done
export RINGLAY_SOAK_SECONDS=${RINGLAY_SOAK_SECONDS:-60}
exec cargo test --release --locked --test soak -- --nocapture --test-threads 1
