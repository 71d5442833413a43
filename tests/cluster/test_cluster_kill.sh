#!/usr/bin/env bash
# Kill check: under a write load, SIGKILL the node leading the most groups,
# require its groups to elect leaders on the survivors within 3 election
# timeouts, restart it from its data directory, and check that no
# acknowledged write is lost and that every replica converges (DIGEST).
# Groups snapshot every 500 entries, so recovery and catch-up go through
# snapshots (flotilla-node's key-value store saves and restores its maps).
#
#   test_cluster_kill.sh FLOTILLA_NODE CLUSTER_CHECK TOOLS_CLUSTER WORK_DIR GROUPS
#
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port, and is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") check_bin=$(realpath "$2") cluster=$(realpath "$3") work_dir=$4
groups=$5
election_ms=1000

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-kill.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

step "start 3 nodes, $groups groups, election timeout $election_ms ms"
cluster_start_random 19990 --groups "$groups" --nodes 3 \
	--bin "$node_bin" -- --election-ms "$election_ms" --heartbeat-ms 100 \
	--snapshot-entries 500
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"

step "write, kill -9 the busiest leader, restart it, verify"
"$check_bin" kill --nodes "$nodes" --groups "$groups" --dir "$dir" --cluster "$cluster" \
	--election-ms "$election_ms"

step "stop"
"$cluster" stop --dir "$dir"
if grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:|kv: group .* applied index" \
	"$dir"/node-*.log; then
	echo "a node reported an error (above)"
	exit 1
fi
failed=0
step "kill check passed"
