#!/usr/bin/env bash
# Cluster test: three flotilla-node processes on 127.0.0.1 with many groups.
#
#   cluster_test.sh FLOTILLA_NODE FLOTILLA_KVCHECK TOOLS_CLUSTER
#
# Writes go through the client protocol to each group's leader (following
# NOT_LEADER hints) and are read back linearizably starting from every node.
# Then node 3 is killed with SIGKILL, writes go on with two nodes, node 3 is
# restarted, and the test checks that no acknowledged write is lost and that
# node 3's own state catches up. Also checks CAS/DELETE answers, STALE_GET
# (served by a follower with its figures, refused past a bound), that
# malformed requests get BAD_REQUEST without harming the node, and that every
# node exits cleanly on SIGTERM. Every process it starts is stopped by PID
# (tools/cluster stop) on any exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$1
kvcheck=$2
cluster=$3
groups=${FLOTILLA_TEST_GROUPS:-24}
keys=10 # per group and phase
node_flags=(--election-ms 600 --heartbeat-ms 60 --client-threads 2)

dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-cluster.XXXXXX")
failed=1

cleanup() {
	stop_wait=5 cluster_stop_and_show 25
}
trap cleanup EXIT

check() {
	"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 20000 "$@"
}

step "start 3 nodes, $groups groups"
cluster_start_random --groups "$groups" --nodes 3 \
	--bin "$node_bin" -- "${node_flags[@]}"
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"
acks=$dir/acked.txt

step "write through the leaders, read back from every node"
check put --prefix a --keys "$keys" --ack "$acks"
for via in 1 2 3; do
	check verify --ack "$acks" --via "$via"
done
check ops --group 5
check stale --group 5 --via 2
check garbage --via 2
"$cluster" status --dir "$dir"

step "kill -9 node 3, keep writing"
pid3=$(cat "$dir/node-3.pid")
kill -KILL "$pid3"
for _ in $(seq 100); do
	[ -d "/proc/$pid3" ] && [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid3/status" 2>/dev/null)" != Z ] || break
	sleep 0.05
done
check put --prefix b --keys "$keys" --ack "$acks"
for via in 1 2; do
	check verify --ack "$acks" --via "$via"
done
check ops --group 7

step "restart node 3: no acknowledged write lost, node 3 catches up"
"$cluster" start --dir "$dir"
check local --ack "$acks" --via 3
check put --prefix c --keys "$keys" --ack "$acks"
for via in 3 1 2; do
	check verify --ack "$acks" --via "$via"
done
check local --ack "$acks" --via 3
"$cluster" status --dir "$dir"

step "stop: every node exits cleanly on SIGTERM"
cluster_stop_clean 1 2 3
failed=0
step "cluster test passed"
