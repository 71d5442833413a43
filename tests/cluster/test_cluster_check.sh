#!/usr/bin/env bash
# Consistency check test: three flotilla-node processes on 127.0.0.1 that
# check every group every 20 log entries and accept CORRUPT requests. One
# follower of a group has a key set behind the log's back; after one check
# interval of writes it must count a divergence, log it, and refuse GET of
# that group, while the leader keeps serving it and runs a CHECK on demand.
# Then REBUILD restores that follower from the leader's snapshot: the
# corruption is gone and later checks find nothing.
# Every process it starts is stopped by PID (tools/cluster stop) on any exit.
#
#   test_cluster_check.sh FLOTILLA_NODE FLOTILLA_KVCHECK TOOLS_CLUSTER
set -euo pipefail

node_bin=$1
kvcheck=$2
cluster=$3
groups=4
interval=20
node_flags=(--election-ms 600 --heartbeat-ms 60 --client-threads 1
	--check-entries "$interval" --allow-corrupt-for-tests on)

dir=$(mktemp -d -t flotilla-check.XXXXXX)
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
	"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 10000 "$@"
}

step "start 3 nodes, $groups groups, a check every $interval entries"
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

step "healthy replicas: several checks, no divergence"
check put --prefix a --keys $((2 * interval)) --ack "$dir/acked.txt"
if grep -l "DIVERGED" "$dir"/node-*.log; then
	echo "a healthy replica reported a divergence"
	exit 1
fi

step "corrupt one follower of group 2, write one interval, rebuild it"
check diverge --group 2 --keys "$interval"
if ! grep -q "group 2: DIVERGED" "$dir"/node-*.log; then
	echo "no node logged the divergence"
	exit 1
fi
grep -h "DIVERGED\|rebuil" "$dir"/node-*.log | head -n 6

step "the cluster keeps taking writes in every group"
check put --prefix b --keys 5 --ack "$dir/acked-b.txt"

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
step "consistency check test passed"
