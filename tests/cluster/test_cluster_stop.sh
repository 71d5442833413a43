#!/usr/bin/env bash
# Stop check: quiesced groups whose leader's node is stopped (SIGSTOP, as a
# frozen or cut-off host that keeps its connections open) must take writes
# through the majority within 3 heartbeat intervals (host liveness suspects
# the node) + 1 s. Before host liveness such groups never elected while the
# stop lasted: their followers believed in the quiet leader.
#
#   test_cluster_stop.sh FLOTILLA_NODE CLUSTER_CHECK TOOLS_CLUSTER WORK_DIR GROUPS
#
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port, and is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") check_bin=$(realpath "$2") cluster=$(realpath "$3") work_dir=$4
groups=$5
election_ms=1000 heartbeat_ms=100

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-stop.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

step "start 3 nodes, $groups groups, quiescence on, election timeout $election_ms ms"
cluster_start_random --groups "$groups" --nodes 3 \
	--bin "$node_bin" -- --election-ms "$election_ms" --heartbeat-ms "$heartbeat_ms" \
	--quiesce on
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"

step "let the groups quiesce, SIGSTOP the busiest leader, write through the others"
"$check_bin" stop --nodes "$nodes" --groups "$groups" --dir "$dir" \
	--election-ms "$election_ms" --heartbeat-ms "$heartbeat_ms"

step "stop"
"$cluster" stop --dir "$dir"
failed=0
step "stop check passed"
