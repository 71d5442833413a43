#!/usr/bin/env bash
# Cluster test: three flotilla-node processes on 127.0.0.1 with many groups.
#
#   cluster_test.sh FLOTILLA_NODE FLOTILLA_KVCHECK TOOLS_CLUSTER
#
# Writes go through the client protocol to each group's leader (following
# NOT_LEADER hints) and are read back linearizably starting from every node.
# Then node 3 is killed with SIGKILL, writes go on with two nodes, node 3 is
# restarted, and the test checks that no acknowledged write is lost and that
# node 3's own state catches up. Also checks CAS/DELETE answers, that
# malformed requests get BAD_REQUEST without harming the node, and that every
# node exits cleanly on SIGTERM. Every process it starts is stopped by PID
# (tools/cluster stop) on any exit.
set -euo pipefail

node_bin=$1
kvcheck=$2
cluster=$3
groups=${FLOTILLA_TEST_GROUPS:-24}
keys=10 # per group and phase
node_flags=(--election-ms 600 --heartbeat-ms 60 --client-threads 2)

dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-cluster.XXXXXX")
failed=1

cleanup() {
	"$cluster" stop --dir "$dir" --wait 5 >/dev/null 2>&1 || true
	if [ "$failed" -ne 0 ]; then
		for log in "$dir"/node-*.log; do
			[ -f "$log" ] || continue
			echo "---- last lines of $(basename "$log")"
			tail -n 25 "$log"
		done
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

step() {
	echo "== $(date +%T) $*"
}

check() {
	"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 20000 "$@"
}

# Ports: a random base in 20000-60000; a node that finds its port taken exits
# with status 3, and the cluster is started again elsewhere. Status 4 means
# io_uring is not available: the test is skipped (exit 77).
step "start 3 nodes, $groups groups"
for attempt in 1 2 3 4 5; do
	base=$((20000 + (RANDOM % 19990) * 2))
	rc=0
	"$cluster" start --dir "$dir" --groups "$groups" --nodes 3 --base-port "$base" \
		--bin "$node_bin" -- "${node_flags[@]}" || rc=$?
	[ "$rc" -eq 0 ] && break
	if [ "$rc" -eq 4 ]; then
		echo "io_uring is not available here: skipped"
		failed=0
		exit 77
	fi
	if [ "$rc" -ne 3 ] || [ "$attempt" -eq 5 ]; then
		echo "cluster start failed with status $rc"
		exit 1
	fi
	echo "ports near $base in use: trying others"
	rm -rf "$dir"/node-*
done
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"
acks=$dir/acked.txt

step "write through the leaders, read back from every node"
check put --prefix a --keys "$keys" --ack "$acks"
for via in 1 2 3; do
	check verify --ack "$acks" --via "$via"
done
check ops --group 5
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
"$cluster" stop --dir "$dir"
for id in 1 2 3; do
	if ! tail -n 5 "$dir/node-$id.log" | grep -q "node $id: exiting"; then
		echo "node $id did not exit cleanly"
		exit 1
	fi
done
if grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:" "$dir"/node-*.log; then
	echo "a sanitizer reported an error"
	exit 1
fi
failed=0
step "cluster test passed"
