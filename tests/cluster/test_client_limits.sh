#!/usr/bin/env bash
# The client port's bounds on hostile clients: one flotilla-node with a
# 500 ms request deadline, a 1 s idle timeout and at most 8 connections;
# client_limits.py checks that a slowloris sender and an idle connection are
# closed in time and a ninth connection is refused with an answer, while a
# well-behaved client keeps getting answers. Then each limit must have its
# log line (naming the flag; a burst of refusals makes one line and a count)
# and its counter in GET /metrics.
#
#   test_client_limits.sh FLOTILLA_NODE CLIENT_LIMITS_PY TOOLS_CLUSTER
#
# The node is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$1 limits=$2 cluster=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-limits.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

command -v python3 >/dev/null || {
	echo "python3 not found: skipped"
	failed=0
	exit 77
}

step "start 1 node, 1 group: --client-request-ms 500 --client-idle-s 1 --client-conns-max 8"
cluster_start_random --groups 1 --nodes 1 --shards 1 --metrics --bin "$node_bin" -- \
	--client-request-ms 500 --client-idle-s 1 --client-conns-max 8
step "slowloris, idle, over the limit; a good client throughout"
python3 "$limits" "127.0.0.1:$((base + 1))"

step "log lines"
log="$dir/node-1.log"
for want in "(--client-request-ms 500)" "(--client-idle-s 1)" "(--client-conns-max 8)"; do
	if ! grep -qF -- "$want" "$log"; then
		echo "FAIL: no log line with \"$want\""
		exit 1
	fi
	echo "ok: $(grep -F -- "$want" "$log" | head -n 1)"
done

# The burst of 21 refusals within a second: one line, then a count.
lines=$(grep -cF -- "(--client-conns-max 8)" "$log")
if [ "$lines" -gt 2 ] || ! grep -qE "[0-9]+ more client connections refused at --client-conns-max" "$log"; then
	echo "FAIL: $lines lines for the refusals, or no line counting the rest:"
	grep -F -- "--client-conns-max" "$log"
	exit 1
fi
echo "ok: $(grep -E "more client connections refused at --client-conns-max" "$log" | head -n 1)"

step "counters"
addr=$(cat "$dir/node-1.metrics")
body=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2" &&
	printf "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3 && cat <&3' \
	scrape "${addr%:*}" "${addr##*:}")
for series in 'flotilla_client_connections_refused_total{node="1"}' \
	'flotilla_client_timeouts_total{node="1",kind="idle"}' \
	'flotilla_client_timeouts_total{node="1",kind="request"}'; do
	value=$(printf '%s\n' "$body" | grep -F -- "$series " | awk '{ print $2 }' | tr -d '\r')
	if [ -z "$value" ] || [ "$value" -lt 1 ]; then
		echo "FAIL: $series is '${value}', want at least 1"
		exit 1
	fi
	echo "ok: $series $value"
done
failed=0
