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

node_bin=$(realpath "$1") check_bin=$(realpath "$2") cluster=$(realpath "$3") work_dir=$4
groups=$5
election_ms=1000

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-kill.XXXXXX")
failed=1
cleanup() {
	"$cluster" stop --dir "$dir" --wait 10 >/dev/null 2>&1 || true
	if [ "$failed" -ne 0 ]; then
		for log in "$dir"/node-*.log; do
			[ -f "$log" ] || continue
			echo "---- last lines of $(basename "$log")"
			tail -n 20 "$log"
		done
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

step() {
	echo "== $(date +%T) $*"
}

step "start 3 nodes, $groups groups, election timeout $election_ms ms"
for attempt in 1 2 3 4 5; do
	base=$((20000 + 2 * (RANDOM % 19990)))
	rc=0
	"$cluster" start --dir "$dir" --groups "$groups" --nodes 3 --base-port "$base" \
		--bin "$node_bin" -- --election-ms "$election_ms" --heartbeat-ms 100 \
		--snapshot-entries 500 || rc=$?
	[ "$rc" -eq 0 ] && break
	if [ "$rc" -eq 4 ]; then
		echo "io_uring is not available here: skipped"
		failed=0
		exit 77
	fi
	if [ "$rc" -ne 3 ] || [ "$attempt" -eq 5 ]; then
		echo "cluster start failed with status $rc"
		exit 1
	fi
	rm -rf "$dir"/node-*
done
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
