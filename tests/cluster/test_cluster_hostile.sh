#!/usr/bin/env bash
# Hostile clients and peers against a 3-node cluster, while a well-behaved
# checked client runs: the cluster keeps serving it, each node's memory
# stays bounded, and nothing acknowledged is lost.
#
# A plaintext cluster (tools/cluster, 2 shards, one spare node id known to
# every node and never started) with the default limits, but a request
# deadline of 3 s so that the slowloris sender is closed within the run.
# flotilla-load --check runs 6 s unloaded, then hostile.py sets up its
# attacks on every node (hostile.py's comment lists them: 2,000 idle
# connections, slowloris, 2^31 bytes announced, 100,000 pipelined requests
# never read, pipelined GETs of a 900 KiB value never read, half-sent
# 64 MiB peer frames as the spare node id, a handshake a byte at a time),
# and flotilla-load --check runs 6 s again under them. Asserted:
#   - the attacked run's throughput is at least half the unloaded run's;
#   - both runs' histories are linearizable (exit 0) with no lost write;
#   - each node's VmRSS stays under baseline + the client buffer budget
#     (--client-buffer-budget-mb, 256) + 2 shards x 128 MiB of partial peer
#     frames + 160 MiB (hostile.py samples it every 100 ms);
#   - each node logs and counts the limits hit: the partial peer frames,
#     the request deadline, the per-source connection limit; and the client
#     buffer budget on the nodes whose GETs were answered (a node that
#     leads no group may get no answer to its pipelined GETs before the
#     run ends, the budget untouched: at least one node must hit it).
#
#   test_cluster_hostile.sh TOOLS_CLUSTER FLOTILLA_NODE FLOTILLA_LOAD HOSTILE_PY
#
# About 40 s alone. Every process is stopped by PID on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

cluster=$1 node_bin=$2 load_bin=$3 hostile=$4
dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-hostile.XXXXXX")
failed=1
hostile_pid=
cleanup() {
	if [ -n "$hostile_pid" ]; then
		kill "$hostile_pid" 2>/dev/null || true
		wait "$hostile_pid" 2>/dev/null || true
	fi
	cluster_stop_and_show 30 "$dir/hostile.log"
}
trap cleanup EXIT

skip_without python3
if ! python3 -c 'import ctypes; ctypes.CDLL("libxxhash.so.0")' 2>/dev/null; then
	echo "libxxhash.so.0 not loadable from python3: skipped"
	failed=0
	exit 77
fi

# Plaintext (--insecure): the attackers then reach past any handshake, into
# the request parser, the answer path and the peer frame reader, the worst
# case for memory (on a TLS cluster, without a certificate, each stops at the
# handshake; node-tls and client-tls test the handshakes' own bounds).
step "start 3 nodes, 3 groups, 2 shards, 1 spare (node 4), plaintext"
cluster_start_random --insecure --groups 3 --nodes 3 --spares 1 --shards 2 --metrics \
	--bin "$node_bin" -- \
	--client-request-ms 3000

load() { # load JSON INITIAL: flotilla-load --check for 6 s; its ops/s on stdout
	"$load_bin" --cluster-dir "$dir" --groups 3 --keys 2000 --concurrency 32 --duration 6 \
		--warmup 1 --check --check-initial "$2" --json "$1" >"$1.out" 2>&1 || {
		echo "FAIL: flotilla-load exited $? (3: not linearizable)" >&2
		tail -n 20 "$1.out" >&2
		exit 1
	}
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ops_per_s"])' "$1"
}

step "unloaded run"
unloaded=$(load "$dir/unloaded.json" absent)
echo "ok: unloaded $unloaded ops/s, history linearizable"

nodes=()
for id in 1 2 3; do
	peer_port=$((base + 2 * (id - 1)))
	nodes+=(--node "$id=127.0.0.1:$((peer_port + 1)):$peer_port:$(cat "$dir/node-$id.pid")")
done
step "attacks on every node"
python3 "$hostile" "${nodes[@]}" --spare-id 4 --shards 2 --budget-mb 256 \
	--ready "$dir/ready" --stop "$dir/stop" --hold-s 80 >"$dir/hostile.log" 2>&1 &
hostile_pid=$!
for _ in $(seq 600); do
	[ -f "$dir/ready" ] && break
	kill -0 "$hostile_pid" 2>/dev/null || break
	sleep 0.1
done
if [ ! -f "$dir/ready" ]; then
	cat "$dir/hostile.log"
	if kill -0 "$hostile_pid" 2>/dev/null; then
		echo "FAIL: the attacks were not set up within 60 s"
	else
		echo "FAIL: hostile.py ended before its attacks were set up (above)"
	fi
	exit 1
fi
sed 's/^/    /' "$dir/hostile.log"

step "run under attack"
attacked=$(load "$dir/attacked.json" any)
echo "ok: under attack $attacked ops/s, history linearizable"
touch "$dir/stop"
rc=0
for _ in $(seq 300); do
	kill -0 "$hostile_pid" 2>/dev/null || break
	sleep 0.1
done
wait "$hostile_pid" || rc=$?
hostile_pid=
sed 's/^/    /' "$dir/hostile.log"
if [ "$rc" -ne 0 ]; then
	echo "FAIL: hostile.py exited $rc (above)"
	exit 1
fi
if ! python3 -c 'import sys; sys.exit(0 if float(sys.argv[2]) >= 0.5 * float(sys.argv[1]) else 1)' \
	"$unloaded" "$attacked"; then
	echo "FAIL: $attacked ops/s under attack, less than half of $unloaded unloaded"
	exit 1
fi
echo "ok: $attacked ops/s under attack, at least half of $unloaded"

step "log lines"
budget_nodes=0
for id in 1 2 3; do
	log="$dir/node-$id.log"
	if grep -qF -- "(--client-buffer-budget-mb 256" "$log"; then
		budget_nodes=$((budget_nodes + 1))
		echo "ok: node $id: $(grep -F -- "(--client-buffer-budget-mb 256" "$log" | head -n 1 |
			cut -c 1-200)"
	fi
	for want in "bytes of a frame not yet whole" \
		"(--client-request-ms 3000)" "(--client-conns-per-source-max 256)"; do
		if ! grep -qF -- "$want" "$log"; then
			echo "FAIL: node $id logged no line with \"$want\""
			exit 1
		fi
		echo "ok: node $id: $(grep -F -- "$want" "$log" | head -n 1 | cut -c 1-200)"
	done
done

if [ "$budget_nodes" -lt 1 ]; then
	echo "FAIL: no node logged a hit of the client buffer budget"
	exit 1
fi

step "counters"
scrape() { # scrape ID SERIES: its value in node ID's GET /metrics
	local addr
	addr=$(cat "$dir/node-$1.metrics")
	timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2" &&
		printf "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3 && cat <&3' \
		scrape "${addr%:*}" "${addr##*:}" | grep -F -- "$2" | awk '{ s += $2 } END { print s + 0 }'
}
for id in 1 2 3; do
	for series in "flotilla_peers_over_budget_total{node=\"$id\","; do
		value=$(scrape "$id" "$series")
		if [ "$value" -lt 1 ]; then
			echo "FAIL: node $id: $series is $value, want at least 1"
			exit 1
		fi
		echo "ok: node $id: $series $value"
	done
	hits=$(scrape "$id" "flotilla_client_buffer_budget_hits_total{node=\"$id\"}")
	budget_hits=$((${budget_hits:-0} + hits))
	echo "ok: node $id: budget hits $hits, flotilla_client_buffer_bytes" \
		"$(scrape "$id" "flotilla_client_buffer_bytes{node=\"$id\"}")"
done
if [ "$budget_hits" -lt 1 ]; then
	echo "FAIL: flotilla_client_buffer_budget_hits_total is 0 on every node"
	exit 1
fi

step "stop"
cluster_stop_clean 1 2 3
failed=0
echo "PASS"
