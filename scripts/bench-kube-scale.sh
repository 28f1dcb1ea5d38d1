#!/usr/bin/env bash
# bench-kube-scale.sh: how a node copes with thousands of Nodes in Kubernetes.
#
#   scripts/bench-kube-scale.sh            5,000 Nodes
#   NODES=N scripts/bench-kube-scale.sh    N Nodes
#
# Runs the scale test (tests/kube_scale.rs) with an optimised build: a real
# kube-apiserver (scripts/kube-apiserver.sh builds it once) with its etcd on free
# ports of 127.0.0.1, `ringlay watch --kube-subnet-mgr` following it while N Nodes
# with podCIDRs and flannel's annotations are registered, then a second watcher
# starting with the N present. Prints how long until the node's table holds them
# all, its memory (VmRSS / VmHWM) and the server's count of its reads of nodes;
# fails if the targets (5 s after the last write, 64 MiB, no request per node) are
# missed. No root needed; the test kills its processes by PID and removes their
# directories, also when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
RINGLAY_KUBE_APISERVER=${RINGLAY_KUBE_APISERVER:-$(scripts/kube-apiserver.sh)}
export RINGLAY_KUBE_APISERVER RINGLAY_KUBE_SCALE_NODES=${NODES:-5000}
exec cargo test --release --locked --test kube_scale -- --nocapture --test-threads 1
