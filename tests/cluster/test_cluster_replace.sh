#!/usr/bin/env bash
# Replace check: three flotilla-node processes on 127.0.0.1 with many groups,
# under a continuous write load, have every node replaced in turn by a new,
# empty one: start node 4, move every replica of node 1 to it
# (flotilla-admin move), stop node 1; then 2 -> 5 and 3 -> 6. No acknowledged
# write may be lost, the cluster must keep committing throughout (the longest
# time with no acknowledged write stays under a bound), and the new nodes
# must end with identical replicas (DIGEST). Prints the time each move took.
#
#   test_cluster_replace.sh FLOTILLA_NODE CLUSTER_CHECK FLOTILLA_ADMIN TOOLS_CLUSTER WORK_DIR GROUPS
#
# FLOTILLA_REPLACE_GROUPS overrides GROUPS (say 1000 for the full run by hand),
# FLOTILLA_REPLACE_PARALLEL the groups moved at a time (8), and
# FLOTILLA_REPLACE_MAX_GAP_MS the longest stall allowed (5000).
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port, and is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") check_bin=$(realpath "$2") admin_bin=$(realpath "$3")
cluster=$(realpath "$4") work_dir=$5
groups=${FLOTILLA_REPLACE_GROUPS:-$6}
max_gap_ms=${FLOTILLA_REPLACE_MAX_GAP_MS:-5000}
parallel=${FLOTILLA_REPLACE_PARALLEL:-8}

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-replace.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

# Status 3 from tools/cluster: a port was in use, try another base; 4: no
# io_uring here, skip. Nodes 4..6 are spares: known to all, started later.
step "start 3 nodes (and 3 spares to come), $groups groups"
# The spares bind their ports only later: cluster_start_random keeps all
# six below the kernel's ephemeral range, where no connect() takes them.
cluster_start_random --groups "$groups" --nodes 3 --spares 3 \
	--bin "$node_bin" -- --election-ms 1000 --heartbeat-ms 100 \
	--snapshot-entries 500
nodes=
for id in 1 2 3 4 5 6; do
	nodes="$nodes${nodes:+,}$id=127.0.0.1:$((base + 2 * (id - 1) + 1))"
done

step "replace nodes 1, 2, 3 by 4, 5, 6 under load"
"$check_bin" replace --nodes "$nodes" --groups "$groups" --dir "$dir" --cluster "$cluster" \
	--admin "$admin_bin" --voters 3 --parallel "$parallel" --max-gap-ms "$max_gap_ms"

step "stop: every node, replaced or new, exits cleanly on SIGTERM"
cluster_stop_clean 1 2 3 4 5 6
failed=0
step "replace check passed"
