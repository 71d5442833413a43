#!/usr/bin/env bash
# The client port's bounds on hostile clients: one flotilla-node with a
# 500 ms request deadline, a 1 s idle timeout and at most 8 connections;
# client_limits.py checks that a slowloris sender and an idle connection are
# closed in time and a ninth connection is refused with an answer, while a
# well-behaved client keeps getting answers. Then each limit must have its
# log line (naming the flag; a burst of refusals makes one line and a count)
# and its counter in GET /metrics.
#
# Then a second node, with --groups 2 --groups-max 3
# --client-conns-per-source-max 4: client_bounds.py checks that a fifth
# connection from 127.0.0.2 is refused with an answer while 127.0.0.1 is
# served, and that a JOIN past --groups-max gets GROUPS_FULL while the node
# goes on serving; each has its log line and counter.
#
#   test_client_limits.sh FLOTILLA_NODE CLIENT_LIMITS_PY TOOLS_CLUSTER CLIENT_BOUNDS_PY
#
# The node is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$1 limits=$2 cluster=$3 bounds=$4
dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-limits.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

skip_without python3

# Plaintext nodes (--insecure): a connection past a limit is answered with
# an ERROR before any TLS, which a TLS client sees as a failed handshake;
# the limits are the same code with TLS on (client-tls covers the
# handshake deadline; cluster-hostile the rest, plaintext too).
step "start 1 node, 1 group: --client-request-ms 500 --client-idle-s 1 --client-conns-max 8"
cluster_start_random --insecure --groups 1 --nodes 1 --shards 1 --metrics --bin "$node_bin" -- \
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

# scrape_value SERIES: its value in node 1's GET /metrics, or nothing.
scrape_value() {
	local addr body
	addr=$(cat "$dir/node-1.metrics")
	body=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2" &&
		printf "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3 && cat <&3' \
		scrape "${addr%:*}" "${addr##*:}")
	printf '%s\n' "$body" | grep -F -- "$1 " | awk '{ print $2 }' | tr -d '\r'
}

step "a second node: --groups 2 --groups-max 3 --client-conns-per-source-max 4"
"$cluster" stop --dir "$dir" --wait 10 >/dev/null
rm -rf "$dir"
dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-limits.XXXXXX")
cluster_start_random --insecure --groups 2 --nodes 1 --shards 2 --metrics --bin "$node_bin" -- \
	--groups-max 3 --client-conns-max 64 --client-conns-per-source-max 4
step "5 connections from 127.0.0.2, 1 from 127.0.0.1; JOINs past --groups-max"
python3 "$bounds" "127.0.0.1:$((base + 1))"

step "log lines and counters"
log="$dir/node-1.log"
for want in "(--client-conns-per-source-max 4)" "JOIN refused: this node hosts 3 groups"; do
	if ! grep -qF -- "$want" "$log"; then
		echo "FAIL: no log line with \"$want\""
		exit 1
	fi
	echo "ok: $(grep -F -- "$want" "$log" | head -n 1)"
done
# 11 refusals from one source within a second: at most 2 lines and a count,
# written once their second is over (wait for it, 5 s at most).
for _ in $(seq 50); do
	grep -qE "more client connections refused at --client-conns-per-source-max" "$log" && break
	sleep 0.1
done
lines=$(grep -cF -- "(--client-conns-per-source-max 4)" "$log")
if [ "$lines" -gt 2 ] ||
	! grep -qE "[0-9]+ more client connections refused at --client-conns-per-source-max" "$log"; then
	echo "FAIL: $lines lines for the per-source refusals, or no line counting the rest:"
	grep -F -- "--client-conns-per-source-max" "$log"
	exit 1
fi
for series in 'flotilla_client_connections_refused_per_source_total{node="1"}'; do
	value=$(scrape_value "$series")
	if [ -z "$value" ] || [ "$value" -lt 11 ]; then
		echo "FAIL: $series is '${value}', want at least 11"
		exit 1
	fi
	echo "ok: $series $value"
done
total=0
for shard in 0 1; do
	value=$(scrape_value "flotilla_groups_refused_total{node=\"1\",shard=\"$shard\"}")
	total=$((total + ${value:-0}))
done
if [ "$total" -ne 2 ]; then
	echo "FAIL: flotilla_groups_refused_total sums to $total over the shards, want 2"
	exit 1
fi
echo "ok: flotilla_groups_refused_total sums to $total"
value=$(scrape_value 'flotilla_groups_max{node="1"}')
if [ "$value" != 3 ]; then
	echo "FAIL: flotilla_groups_max is '$value', want 3"
	exit 1
fi
echo "ok: flotilla_groups_max $value"
failed=0
