#!/usr/bin/env bash
# Add-node check: three flotilla-node processes on 127.0.0.1, started with no
# spares (no node knows a fourth), many groups under a checked write load.
# Node 4 starts (--join on, knowing nodes 1..3); `flotilla-admin add-node`
# tells the running nodes about it without restarting any; `flotilla-admin
# move` moves every group of node 1 onto it, both given node 1's client
# address alone. No acknowledged write may be lost, the cluster keeps
# committing (the longest gap stays under a bound), and nodes 2, 3 and 4
# end with identical replicas (DIGEST). Then node 1, now in no group, is
# removed from the others' address books (`flotilla-admin remove-node`),
# and `flotilla-admin status` through node 2 finds exactly nodes 2, 3, 4.
# Between the two, add-node, move and grow run again with --json (nothing
# left to do) and remove-node of node 2 is refused, each document asserted.
#
#   test_cluster_add_node.sh FLOTILLA_NODE CLUSTER_CHECK FLOTILLA_ADMIN TOOLS_CLUSTER WORK_DIR GROUPS
#
# FLOTILLA_ADD_NODE_GROUPS overrides GROUPS (say 1000 for the full run),
# FLOTILLA_ADD_NODE_PARALLEL the groups moved at a time (8), and
# FLOTILLA_ADD_NODE_MAX_GAP_MS the longest stall allowed (5000). The cluster
# lives in a temporary directory under WORK_DIR, on a random base port, and
# is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") check_bin=$(realpath "$2") admin_bin=$(realpath "$3")
cluster=$(realpath "$4") work_dir=$5
groups=${FLOTILLA_ADD_NODE_GROUPS:-$6}
max_gap_ms=${FLOTILLA_ADD_NODE_MAX_GAP_MS:-5000}
parallel=${FLOTILLA_ADD_NODE_PARALLEL:-8}

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-add-node.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

step "start 3 nodes (no spares), $groups groups"
cluster_start_random --groups "$groups" --nodes 3 \
	--bin "$node_bin" -- --election-ms 1000 --heartbeat-ms 100 \
	--snapshot-entries 500
nodes=
for id in 1 2 3 4; do
	nodes="$nodes${nodes:+,}$id=127.0.0.1:$((base + 2 * (id - 1) + 1))"
done
peer4=127.0.0.1:$((base + 6))

step "add node 4 and move node 1's groups onto it, under load"
"$check_bin" addnode --nodes "$nodes" --groups "$groups" --dir "$dir" --cluster "$cluster" \
	--admin "$admin_bin" --peer-addr "$peer4" --parallel "$parallel" \
	--max-gap-ms "$max_gap_ms"

# json_check FILE PYTHON [ARG...]: assert PYTHON, with d the JSON document
# of FILE and the ARGs from sys.argv[2].
json_check() {
	if ! python3 -c "import json, sys
d = json.load(open(sys.argv[1]))
$2" "$1" "${@:3}"; then
		echo "FAIL: $(head -c 2000 "$1")"
		exit 1
	fi
}

step "--json: add-node, move and grow again (nothing left to do), remove-node refused"
out=$dir/admin.json
"$admin_bin" add-node --nodes "127.0.0.1:$((base + 1))" --id 4 --peer-addr "$peer4" \
	--json >"$out"
json_check "$out" 'assert d["command"] == "add-node" and d["id"] == 4 and d["ok"], d
assert d["peer_addr"] == sys.argv[2] and d["client_addr"] and "error" not in d, d
assert sorted(n["node"] for n in d["nodes"]) == [1, 2, 3], d
assert all(n["result"] == "connected" for n in d["nodes"]), d' "$peer4"
"$admin_bin" move --nodes "127.0.0.1:$((base + 1))" --from 1 --to 4 --groups "$groups" \
	--json >"$out"
json_check "$out" "assert d['command'] == 'move' and d['from'] == 1 and d['to'] == 4, d
assert d['ok'] and d['moved'] == 0 and d['failed'] == 0, d
assert d['already'] + d['absent'] == $groups and len(d['groups']) == $groups, d
assert [g['group'] for g in d['groups']] == list(range(1, $groups + 1)), d
assert all(g['outcome'] in ('already', 'absent') for g in d['groups']), d"
"$admin_bin" grow --nodes "127.0.0.1:$((base + 1))" --to 4 --groups "$groups" --json >"$out"
json_check "$out" "assert d['command'] == 'grow' and d['to'] == 4 and d['ok'], d
assert d['already'] == $groups and d['grown'] == 0 and 'absent' not in d, d
assert all(g['outcome'] == 'already' for g in d['groups']), d"
rc=0
"$admin_bin" remove-node --nodes "127.0.0.1:$((base + 1))" --id 2 --groups "$groups" \
	--json >"$out" || rc=$?
json_check "$out" "assert $rc == 1 and d['command'] == 'remove-node' and d['id'] == 2, d
assert not d['ok'] and d['refused'] and d['member_of'] == $groups, d
assert d['groups'] == list(range(1, min($groups, 5) + 1)), d"

step "node 1 hosts no group now: remove it from the address books"
"$admin_bin" remove-node --nodes "127.0.0.1:$((base + 3))" --id 1 --groups "$groups" \
	--json >"$out"
json_check "$out" 'assert d["command"] == "remove-node" and d["id"] == 1, d
assert d["ok"] and not d["refused"] and d["forgot"] == 3 and d["failed"] == 0, d
assert sorted(n["node"] for n in d["nodes"]) == [2, 3, 4], d
assert all(n["result"] == "forgot" for n in d["nodes"]), d'
"$cluster" stop --dir "$dir" --node 1
status_out=$("$admin_bin" status --nodes "127.0.0.1:$((base + 3))" --groups "$groups")
echo "$status_out" | head -n 6
listed=$(echo "$status_out" | awk '$1 ~ /^[0-9]+$/ && $3 == "up" { print $1 }' | sort | xargs)
if [ "$listed" != "2 3 4" ]; then
	echo "status through node 2 lists nodes up '$listed', not '2 3 4'"
	exit 1
fi
if ! "$admin_bin" health --nodes "127.0.0.1:$((base + 7))" --groups "$groups" >/dev/null; then
	echo "the cluster of nodes 2, 3, 4 is not healthy"
	"$admin_bin" health --nodes "127.0.0.1:$((base + 7))" --groups "$groups" | head -n 10
	exit 1
fi

step "stop: every node exits cleanly on SIGTERM"
cluster_stop_clean 1 2 3 4
failed=0
step "add-node check passed"
