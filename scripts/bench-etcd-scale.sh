#!/usr/bin/env bash
# bench-etcd-scale.sh: how a node copes with 10,000 leases in etcd.
#
#   scripts/bench-etcd-scale.sh
#
# Runs the scale test (tests/etcd_scale.rs) with an optimised build: a real etcd on
# a free port of 127.0.0.1 with a temporary data directory, `ringlay watch`
# following it while 10,000 flannel vxlan leases are written, then a second
# `ringlay watch` starting with the 10,000 present. Prints how long until the
# node's table holds them all, its memory (VmRSS / VmHWM), and the etcd requests it
# made (its own count and etcd's grpc_server_started_total); fails if the targets
# (2 s, 64 MiB, no request per lease) are missed. Needs etcd and etcdctl (Debian:
# etcd-server, etcd-client) and protoc to build; no root. The test kills its etcd
# and watchers by PID and removes their directories, also when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in etcd etcdctl protoc; do
    command -v "$tool" >/dev/null || { echo "bench-etcd-scale: $tool is required" >&2; exit 1; }
done
exec cargo test --release --locked --test etcd_scale -- --nocapture --test-threads 1
