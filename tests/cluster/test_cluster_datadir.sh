#!/usr/bin/env bash
# The data directory knows whose it is, and who uses it (docs/operations.md):
# with real flotilla-node processes, a second process on a live node's
# directory is refused naming the holder's PID; a restart with another shard
# count, node id or cluster id is refused naming both values; a second
# process claiming node 3 from another directory is refused by the peers
# while node 3 lives, and both sides log it; a normal restart still works.
#
#   test_cluster_datadir.sh FLOTILLA_NODE TOOLS_CLUSTER WORK_DIR
#
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port; every process is stopped by its PID on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") cluster=$(realpath "$2") work_dir=$3

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-datadir.XXXXXX")
failed=1 extra_pid=
cleanup() {
	if [ -n "$extra_pid" ] && kill -0 "$extra_pid" 2>/dev/null; then
		kill "$extra_pid" 2>/dev/null || true
		wait "$extra_pid" 2>/dev/null || true
	fi
	cluster_stop_and_show 30 "$dir"/extra.out
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	exit 1
}

# node_run ID DATA ARGS...: run a flotilla-node that must refuse to start
# within 20 s; its output goes to $dir/extra.out and its status to $status.
node_run() {
	local id=$1 data=$2 peers=() j
	shift 2
	for j in 1 2 3; do
		[ "$j" = "$id" ] || peers+=(--peer "$j=127.0.0.1:$((base + 2 * (j - 1)))")
	done
	status=0
	timeout 20 "$node_bin" --id "$id" --data "$data" --listen 127.0.0.1:0 \
		--client 127.0.0.1:0 "${peers[@]}" "$@" >"$dir/extra.out" 2>&1 </dev/null ||
		status=$?
	[ "$status" -ne 124 ] || fail "node $id on $data did not refuse to start in 20 s"
	[ "$status" -ne 0 ] || fail "node $id on $data started"
}

expect_out() { # TEXT: shown, or the test fails
	grep -F -- "$1" "$dir/extra.out" || {
		cat "$dir/extra.out"
		fail "no '$1' in the output"
	}
}

# Plaintext (--insecure): the second processes below claim node ids with
# their data directories alone; with TLS they would be refused at the
# handshake, before the identity checks this test is about.
step "start 3 nodes, 4 groups, 2 shards, plaintext"
cluster_start_random --insecure --groups 4 --nodes 3 --shards 2 --bin "$node_bin"
pid1=$(cat "$dir/node-1.pid")

step "a second process on node 1's live directory is refused, naming pid $pid1"
node_run 1 "$dir/node-1" --shards 2 --groups 4 --members 1,2,3
expect_out "data directory $dir/node-1 is in use by process $pid1"
expect_out "starting the node: the data directory is in use"
kill -0 "$pid1" || fail "node 1 died"

step "node 1 stopped: another shard count, node id or cluster id is refused"
"$cluster" stop --dir "$dir" --node 1 >/dev/null
node_run 1 "$dir/node-1" --shards 3 --groups 4 --members 1,2,3
expect_out "data directory $dir/node-1 was made with 2 shards, not 3"
node_run 4 "$dir/node-1" --shards 2
expect_out "data directory $dir/node-1 belongs to node 1 of cluster 1, not node 4"
expect_out "start node 1 on it, or give node 4 an empty directory"
node_run 1 "$dir/node-1" --cluster-id 9 --shards 2 --groups 4 --members 1,2,3
expect_out "belongs to node 1 of cluster 1, not to cluster 9"
[ ! -d "$dir/node-1/shard-2" ] || fail "a refused start made shard-2"

step "node 1 restarted on its own directory"
"$cluster" start --dir "$dir" --node 1 >/dev/null
"$cluster" status --dir "$dir" >/dev/null || fail "not every node is up"

step "a second node 3 from another directory is refused by the peers"
peers=(--peer "1=127.0.0.1:$base" --peer "2=127.0.0.1:$((base + 2))")
"$node_bin" --id 3 --data "$dir/other-3" --listen 127.0.0.1:0 --client 127.0.0.1:0 \
	"${peers[@]}" --shards 2 --groups 4 --members 1,2,3 >"$dir/extra.out" 2>&1 </dev/null &
extra_pid=$!
for _ in $(seq 1 100); do
	if grep -q "two processes claim node 3" "$dir/node-1.log" &&
		grep -q "two processes claim node 3" "$dir/node-2.log" &&
		grep -q "refuses this process as node 3" "$dir/extra.out"; then
		break
	fi
	sleep 0.1
done
grep "two processes claim node 3" "$dir/node-1.log" | head -n 1
grep -q "two processes claim node 3" "$dir/node-2.log" || fail "node 2 did not log it"
expect_out "refuses this process as node 3"
kill "$extra_pid"
wait "$extra_pid" 2>/dev/null || true
extra_pid=
"$cluster" status --dir "$dir" >/dev/null || fail "not every node is up"

step "stop"
"$cluster" stop --dir "$dir" >/dev/null
failed=0
echo "ok"
