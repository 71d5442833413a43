#!/usr/bin/env bash
# Shared-key cluster: tools/cluster start --auth-key writes one key (mode
# 0600) and gives it to three real flotilla-node processes, which then
# commit, lose a node to SIGKILL, and bring it back through snapshot
# catch-up (flotilla-cluster-check kill: no acknowledged write lost, every
# replica's digest the same), every frame between them tagged. No frame may
# fail its tag on the way.
#
#   test_cluster_auth.sh FLOTILLA_NODE CLUSTER_CHECK TOOLS_CLUSTER WORK_DIR GROUPS
#
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port, and is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") check_bin=$(realpath "$2") cluster=$(realpath "$3") work_dir=$4
groups=$5
election_ms=1000

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-auth.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

step "start 3 nodes with one shared key, $groups groups"
cluster_start_random 19990 --groups "$groups" --nodes 3 --auth-key \
	--bin "$node_bin" -- --election-ms "$election_ms" --heartbeat-ms 100 \
	--snapshot-entries 500
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"
mode=$(stat -c %a "$dir/auth.key")
[ "$mode" = 600 ] || { echo "auth.key has mode $mode, not 600"; exit 1; }
for i in 1 2 3; do
	grep -q "shared key: peers and frames authenticated" "$dir/node-$i.log" ||
		{ echo "node $i does not say its key is on"; exit 1; }
done

step "write, kill -9 the busiest leader, restart it, verify"
"$check_bin" kill --nodes "$nodes" --groups "$groups" --dir "$dir" --cluster "$cluster" \
	--election-ms "$election_ms"

step "stop"
"$cluster" stop --dir "$dir"
if grep -E "frame [0-9]+ failed authentication|wrong proof" "$dir"/node-*.log; then
	echo "a frame or a proof failed between nodes with the same key (above)"
	exit 1
fi
if grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:|kv: group .* applied index" \
	"$dir"/node-*.log; then
	echo "a node reported an error (above)"
	exit 1
fi
failed=0
step "shared-key cluster check passed"
