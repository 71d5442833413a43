#!/usr/bin/env bash
# Kill check: under a write load, SIGKILL the node leading the most groups,
# require its groups to elect leaders on the survivors within 3 election
# timeouts, restart it from its data directory, and check that no
# acknowledged write is lost and that every replica converges (DIGEST).
# Groups snapshot every 500 entries, so recovery and catch-up go through
# snapshots (flotilla-node's key-value store saves and restores its maps).
#
# With --auth-key, tools/cluster start writes one shared key (mode 0600) and
# gives it to every node: each must say its key is on, every frame between
# them (snapshot chunks included) is tagged, and none may fail its tag or its
# proof on the way.
#
# With --tls, tools/cluster start makes a CA and node certificates and every
# node runs mutual TLS: each must say so, no connection between them may be
# refused or fail a frame, and SIGHUP to a node reloads its certificate
# (one log line) while the cluster goes on.
#
#   test_cluster_kill.sh FLOTILLA_NODE CLUSTER_CHECK TOOLS_CLUSTER WORK_DIR GROUPS
#                        [--auth-key | --tls]
#
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port, and is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") check_bin=$(realpath "$2") cluster=$(realpath "$3") work_dir=$4
groups=$5 auth=${6:-}
election_ms=1000
start_args=() name=kill
if [ "$auth" = --auth-key ]; then
	start_args=(--insecure --auth-key) name=auth # The shared key is for plaintext set-ups.
elif [ "$auth" = --tls ]; then
	start_args=(--tls) name=tls
fi

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-$name.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

step "start 3 nodes, $groups groups, election timeout $election_ms ms ${start_args[*]}"
cluster_start_random --groups "$groups" --nodes 3 "${start_args[@]}" \
	--bin "$node_bin" -- --election-ms "$election_ms" --heartbeat-ms 100 \
	--snapshot-entries 500
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"
if [ "$auth" = --tls ]; then
	for i in 1 2 3; do
		grep -q "mutual TLS 1.3: peers authenticated, frames sealed" "$dir/node-$i.log" ||
			{ echo "node $i does not say TLS is on"; exit 1; }
	done
	step "SIGHUP node 1: its certificate is reloaded"
	kill -HUP "$(cat "$dir/node-1.pid")"
	for _ in $(seq 1 50); do
		grep -q "TLS reload: loaded" "$dir/node-1.log" && break
		sleep 0.1
	done
	grep "TLS reload: loaded" "$dir/node-1.log" || { echo "node 1 did not reload"; exit 1; }
elif [ -n "$auth" ]; then
	mode=$(stat -c %a "$dir/auth.key")
	[ "$mode" = 600 ] || { echo "auth.key has mode $mode, not 600"; exit 1; }
	for i in 1 2 3; do
		grep -q "shared key: peers and frames authenticated" "$dir/node-$i.log" ||
			{ echo "node $i does not say its key is on"; exit 1; }
	done
fi

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
tls_bad="failed authentication|another CA|certificate expired|no certificate"
tls_bad+="|certificate is for node|plaintext connection"
if [ "$auth" = --tls ] && grep -E "$tls_bad" "$dir"/node-*.log; then
	echo "a frame or a connection failed between nodes of one CA (above)"
	exit 1
fi
if [ -n "$auth" ] && grep -E "frame [0-9]+ failed authentication|wrong proof" "$dir"/node-*.log; then
	echo "a frame or a proof failed between nodes with the same key (above)"
	exit 1
fi
failed=0
step "$name check passed"
