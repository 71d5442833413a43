#!/usr/bin/env bash
# Metrics check: 3 nodes serve GET /metrics (flotilla-node --metrics, ports
# the kernel picks); every scrape passes `promtool check metrics` with no
# lint finding; a load of PUTs moves the commit counter, the commit latency
# histogram and the fsync histogram; killing (SIGKILL) the node that leads
# the most groups makes the survivors' groups_led gauges rise as they elect.
#
#   test_cluster_metrics.sh FLOTILLA_NODE FLOTILLA_LOAD TOOLS_CLUSTER WORK_DIR GROUPS
#
# Skipped (77) without promtool (Debian: prometheus). The cluster lives in a
# temporary directory under WORK_DIR, on a random base port, and is stopped
# by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") load_bin=$(realpath "$2") cluster=$(realpath "$3") work_dir=$4
groups=$5

if ! command -v promtool >/dev/null 2>&1; then
	echo "promtool not found (Debian: prometheus): skipped"
	exit 77
fi

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-metrics.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

# scrape ID FILE: GET /metrics of node ID into FILE (the body only), over
# bash's /dev/tcp, in at most 10 s.
scrape() {
	local id=$1 out=$2 addr host port
	addr=$(cat "$dir/node-$id.metrics")
	host=${addr%:*} port=${addr##*:}
	timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2" &&
		printf "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3 && cat <&3' \
		scrape "$host" "$port" >"$out.http"
	head -n 1 "$out.http" | grep -q "^HTTP/1\.[01] 200" || {
		echo "FAIL: node $id answered: $(head -n 1 "$out.http")"
		exit 1
	}
	# The body starts after the first empty line (CR LF).
	awk 'body { print } /^\r?$/ { body = 1 }' "$out.http" >"$out"
}

# check ID FILE: promtool must accept FILE with nothing to say.
check() {
	local lint rc=0
	lint=$(promtool check metrics <"$2" 2>&1) || rc=$?
	if [ "$rc" -ne 0 ] || [ -n "$lint" ]; then
		echo "FAIL: promtool check metrics on node $1's scrape (status $rc):"
		echo "$lint"
		exit 1
	fi
}

# value FILE NAME: the sum of NAME's samples in FILE (over shards).
value() {
	awk -v name="$2" '$1 ~ "^" name "[{ ]" || $1 == name { sum += $2 } END { printf "%d\n", sum }' "$1"
}

step "start 3 nodes, $groups groups, metrics on kernel-chosen ports"
cluster_start_random --groups "$groups" --nodes 3 --shards 2 --metrics --bin "$node_bin"
"$cluster" status --dir "$dir"

step "scrape each node; promtool check metrics"
for id in 1 2 3; do
	scrape "$id" "$dir/before-$id.prom"
	check "$id" "$dir/before-$id.prom"
	echo "node $id: $(grep -c -v '^#' "$dir/before-$id.prom") samples, promtool clean"
done

step "PUTs for 5 s"
"$load_bin" --cluster-dir "$dir" --groups "$groups" --mode closed --concurrency 32 \
	--read-ratio 0 --duration 5 --warmup 0 >"$dir/load.out" 2>&1 || {
	echo "FAIL: flotilla-load failed"
	cat "$dir/load.out"
	exit 1
}
tail -n 3 "$dir/load.out"

step "scrape again: the commit counter and the commit and fsync histograms moved"
commits_before=0 commits_after=0 latency_before=0 latency_after=0
for id in 1 2 3; do
	scrape "$id" "$dir/after-$id.prom"
	check "$id" "$dir/after-$id.prom"
	commits_before=$((commits_before + $(value "$dir/before-$id.prom" flotilla_commits_total)))
	commits_after=$((commits_after + $(value "$dir/after-$id.prom" flotilla_commits_total)))
	latency_before=$((latency_before +
		$(value "$dir/before-$id.prom" flotilla_commit_latency_seconds_count)))
	latency_after=$((latency_after +
		$(value "$dir/after-$id.prom" flotilla_commit_latency_seconds_count)))
	fsync_before=$(value "$dir/before-$id.prom" flotilla_wal_fsync_latency_seconds_count)
	fsync_after=$(value "$dir/after-$id.prom" flotilla_wal_fsync_latency_seconds_count)
	echo "node $id: fsyncs measured $fsync_before -> $fsync_after"
	# The census: every group is led or followed here, each with a leader
	# known; the WAL holds segment files.
	hosted=$(value "$dir/after-$id.prom" flotilla_groups)
	led=$(value "$dir/after-$id.prom" flotilla_groups_led)
	following=$(value "$dir/after-$id.prom" flotilla_groups_following)
	leaderless=$(value "$dir/after-$id.prom" flotilla_groups_without_leader)
	disk=$(value "$dir/after-$id.prom" flotilla_wal_disk_bytes)
	echo "node $id: $hosted groups, $led led, $following followed, $leaderless without a" \
		"leader, $disk WAL bytes on disk"
	[ "$hosted" -eq "$groups" ] && [ $((led + following)) -eq "$groups" ] &&
		[ "$leaderless" -eq 0 ] && [ "$disk" -gt 0 ] || {
		echo "FAIL: node $id's group gauges do not add up"
		exit 1
	}
	[ "$fsync_after" -gt "$fsync_before" ] || {
		echo "FAIL: node $id's fsync histogram did not move"
		exit 1
	}
done
echo "commits $commits_before -> $commits_after; commit latency count $latency_before -> $latency_after"
[ "$commits_after" -gt "$commits_before" ] || {
	echo "FAIL: flotilla_commits_total did not grow under load"
	exit 1
}
[ "$latency_after" -gt "$latency_before" ] || {
	echo "FAIL: flotilla_commit_latency_seconds_count did not grow under load"
	exit 1
}

step "kill -9 the node leading the most groups; the survivors' groups_led rise"
busiest=0 most=-1
for id in 1 2 3; do
	led=$(value "$dir/after-$id.prom" flotilla_groups_led)
	echo "node $id leads $led groups"
	if [ "$led" -gt "$most" ]; then
		busiest=$id most=$led
	fi
done
survivors=() led_before=0
for id in 1 2 3; do
	if [ "$id" -ne "$busiest" ]; then
		survivors+=("$id")
		led_before=$((led_before + $(value "$dir/after-$id.prom" flotilla_groups_led)))
	fi
done
pid=$(cat "$dir/node-$busiest.pid")
kill -KILL "$pid"
echo "node $busiest (pid $pid) killed"
led_after=$led_before
for second in $(seq 1 30); do
	sleep 1
	led_after=0 leaderless=0
	for id in "${survivors[@]}"; do
		scrape "$id" "$dir/failover-$id.prom"
		led_after=$((led_after + $(value "$dir/failover-$id.prom" flotilla_groups_led)))
		leaderless=$((leaderless +
			$(value "$dir/failover-$id.prom" flotilla_groups_without_leader)))
	done
	echo "${second}s: survivors ${survivors[*]} lead $led_after groups (were $led_before);" \
		"$leaderless replicas see no leader"
	[ "$led_after" -lt "$groups" ] || break
done
for id in "${survivors[@]}"; do
	check "$id" "$dir/failover-$id.prom"
done
[ "$led_after" -gt "$led_before" ] || {
	echo "FAIL: the survivors' flotilla_groups_led did not rise"
	exit 1
}

step "stop"
"$cluster" stop --dir "$dir"
failed=0
step "metrics check passed"
