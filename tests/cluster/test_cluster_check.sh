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
# CORRUPT is a test hook: a node built without FLOTILLA_TEST_HOOKS has no
# --allow-corrupt-for-tests, and the test skips (exit 77).
#
#   test_cluster_check.sh FLOTILLA_NODE FLOTILLA_KVCHECK TOOLS_CLUSTER
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$1
kvcheck=$2
cluster=$3
if ! "$node_bin" --help | grep -q -- '--allow-corrupt-for-tests'; then
	echo "skip: flotilla-node was built without test hooks (FLOTILLA_TEST_HOOKS)"
	exit 77
fi
groups=4
interval=20
node_flags=(--election-ms 600 --heartbeat-ms 60 --client-threads 1
	--check-entries "$interval" --allow-corrupt-for-tests on)

dir=$(mktemp -d -t flotilla-check.XXXXXX)
failed=1

cleanup() {
	stop_wait=5 cluster_stop_and_show 25
}
trap cleanup EXIT

check() {
	"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 10000 "$@"
}

step "start 3 nodes, $groups groups, a check every $interval entries"
cluster_start_random --groups "$groups" --nodes 3 \
	--bin "$node_bin" -- "${node_flags[@]}"
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
cluster_stop_clean 1 2 3
failed=0
step "consistency check test passed"
