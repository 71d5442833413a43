#!/usr/bin/env bash
# Scale check: three flotilla-node processes on 127.0.0.1 with many groups
# and many proposals; every acknowledged entry applied exactly once, in log
# order, on every replica, with identical state at the end (DIGEST).
#
#   test_cluster_scale.sh FLOTILLA_NODE CLUSTER_CHECK TOOLS_CLUSTER WORK_DIR GROUPS PROPOSALS
#
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port, and is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") check_bin=$(realpath "$2") cluster=$3 work_dir=$4
groups=$5 proposals=$6

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-scale.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

# Status 3 from tools/cluster: a port was in use, try another base; 4: no
# io_uring here, skip.
step "start 3 nodes, $groups groups"
cluster_start_random --groups "$groups" --nodes 3 \
	--bin "$node_bin" -- --election-ms 1000 --heartbeat-ms 100
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"

step "$proposals PUTs over $groups groups, then compare every replica"
"$check_bin" scale --nodes "$nodes" --groups "$groups" --proposals "$proposals" --batch 4096

step "stop"
"$cluster" stop --dir "$dir"
if grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:|kv: group .* applied index" \
	"$dir"/node-*.log; then
	echo "a node reported an error (above)"
	exit 1
fi
failed=0
step "scale check passed"
