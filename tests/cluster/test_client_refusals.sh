#!/usr/bin/env bash
# The client port's refusals: one flotilla-node leading its groups, and
# flotilla-refusals sending each request the node must refuse (group 0, a key
# over 64 KiB, a write over --entry-size-max, REBUILD on the leader, an
# unknown op, a body one byte too long, sizes out of range); each must get
# its own text and keep or close the connection as docs/client-protocol.md
# says.
#
#   test_client_refusals.sh FLOTILLA_NODE FLOTILLA_REFUSALS TOOLS_CLUSTER
#
# The node is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$1 refusals=$2 cluster=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-refusals.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

step "start 1 node, 2 groups"
cluster_start_random --groups 2 --nodes 1 --shards 1 --bin "$node_bin" -- \
	--client-threads 1
step "send each refused request"
"$refusals" "127.0.0.1:$((base + 1))"
failed=0
