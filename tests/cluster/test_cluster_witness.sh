#!/usr/bin/env bash
# Witness check: flotilla-node processes on 127.0.0.1, groups of two voters
# (nodes 1 and 2), a third node that hosts no group (node 3) and a spare
# (node 4). flotilla-admin add-witness makes node 4 a witness of every group
# (JOIN on it, ADD_WITNESS at each leader, until it has caught up); run
# again it finds nothing to do; `status` shows the witnesses. Then voter 1
# is killed with SIGKILL: every group still commits (node 2 and the
# witness are a majority), reads sent to the witness are redirected to the
# leader, and no acknowledged write is lost. Node 1 comes back and the
# cluster is healthy again; a voter cannot be made a witness.
#
#   test_cluster_witness.sh FLOTILLA_NODE KVCHECK FLOTILLA_ADMIN TOOLS_CLUSTER WORK_DIR GROUPS
#
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port, and is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") kvcheck=$(realpath "$2") admin=$(realpath "$3")
cluster=$(realpath "$4") work_dir=$5 groups=$6
wait_s=30

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-witness.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 25 "$dir/out.txt"
}
trap cleanup EXIT

# json PYTHON_ASSERTIONS: check the JSON document in $dir/out.txt (as d).
json() {
	python3 -c "import json, sys
d = json.load(open(sys.argv[1]))
$1" "$dir/out.txt"
}

# wait_healthy: health until it exits 0 (bounded).
wait_healthy() {
	local i
	for ((i = 0; i < wait_s * 5; i++)); do
		"$admin" health --nodes "$nodes" --groups "$groups" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	"$admin" health --nodes "$nodes" --groups "$groups" || true
	echo "FAIL: not healthy after $wait_s s"
	exit 1
}

step "start voters 1 and 2 with $groups groups, node 3 (no group) and spare 4"
cluster_start_random --groups "$groups" --nodes 2 --spares 2 --bin "$node_bin" -- \
	--election-ms 1000 --heartbeat-ms 100 --snapshot-entries 200
"$cluster" start --dir "$dir" --node 3 >/dev/null
"$cluster" start --dir "$dir" --node 4 >/dev/null
nodes=
for id in 1 2 3 4; do
	nodes="$nodes${nodes:+,}$id=127.0.0.1:$((base + 2 * (id - 1) + 1))"
done
# Enough writes that the leaders compact: node 4 catches up from a snapshot.
"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 20000 put --prefix a --keys 300 \
	--ack "$dir/acked.txt"

step "add-witness: node 4 becomes a witness of every group"
expect 0 '"ok":true' "$admin" add-witness --nodes "$nodes" --node 4 --groups "$groups" --json
json "assert d['added'] == $groups and d['failed'] == 0, d
assert all(g['outcome'] == 'added' for g in d['groups']), d"
expect 0 "^add-witness 4: 0 groups added, $groups already a witness, 0 failed" \
	"$admin" add-witness --nodes "$nodes" --node 4 --groups "$groups"
expect 1 "node 2 is a voter of the group" \
	"$admin" add-witness --nodes "$nodes" --node 2 --group 1 --group-timeout-s 10
expect 2 "add-witness: --node and one of --group and --groups are required" \
	"$admin" add-witness --nodes "$nodes" --groups "$groups"
expect 0 "^4 +127\.0\.0\.1:[0-9]+ +up +$groups +0 +$groups " \
	"$admin" status --nodes "$nodes" --groups "$groups"
expect 0 '"healthy":true' "$admin" status --nodes "$nodes" --groups "$groups" --json
json "n = {x['id']: x for x in d['nodes']}
assert n[4]['witnesses'] == $groups and n[4]['leads'] == 0, n[4]
assert n[1]['witnesses'] == 0 and n[2]['witnesses'] == 0, d
assert all(g['witnesses'] == [4] for g in d['groups']), d['groups']"
wait_healthy

step "kill -9 voter 1: the groups commit with node 2 and the witness"
kill -9 "$(cat "$dir/node-1.pid")"
"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 30000 put --prefix b --keys 50 \
	--ack "$dir/acked.txt"
# Every acknowledged write, read through the witness (redirected to the leader).
"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 20000 verify \
	--ack "$dir/acked.txt" --via 4
expect 0 "^1 +127\.0\.0\.1:[0-9]+ +down " "$admin" status --nodes "$nodes" --groups "$groups"
expect 0 "^4 +127\.0\.0\.1:[0-9]+ +up +$groups +0 +$groups " \
	"$admin" status --nodes "$nodes" --groups "$groups"
expect 0 '"id":2,[^}]*"leads":'"$groups"',' \
	"$admin" status --nodes "$nodes" --groups "$groups" --json
json "assert all(g['leader'] == 2 and g['witnesses'] == [4] for g in d['groups']), d['groups']"

step "node 1 comes back: healthy, nothing lost, the witness never led"
"$cluster" start --dir "$dir" --node 1 >/dev/null
wait_healthy
"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 20000 put --prefix c --keys 10 \
	--ack "$dir/acked.txt"
"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 20000 local \
	--ack "$dir/acked.txt" --via 1
"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 20000 verify \
	--ack "$dir/acked.txt"
if grep -E "node 4: .*(leader is node 4|became leader|campaign)" "$dir/node-4.log"; then
	echo "FAIL: the witness campaigned or led (above)"
	exit 1
fi

step "stop: every node exits cleanly on SIGTERM"
cluster_stop_clean 1 2 3 4
failed=0
step "witness check passed"
