#!/usr/bin/env bash
# Disk use stays bounded with compaction on: three real flotilla-node
# processes take PUTs from flotilla-load for DURATION seconds, each group
# snapshotting every 200 entries on small (4 MiB) WAL segments, while the
# data directory of every node is sampled with du every second. After a
# warm-up (the first snapshots and the first reclaimed segments), no sample
# may exceed the bound (below); it is well under what the run writes.
#
#   test_cluster_disk.sh FLOTILLA_NODE FLOTILLA_LOAD TOOLS_CLUSTER WORK_DIR DURATION
#
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port, and is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") load_bin=$(realpath "$2") cluster=$(realpath "$3") work_dir=$4
duration=$5
segment_mb=4
# Live WAL segments stay around the WAL's soft limit (16): each snapshot
# writes the group's mark and hard state again, so old segments pin nothing.
# Bound: 24 segments of 4 MiB, plus 32 MiB for the snapshot files (current
# ones, and new ones being saved). 37-93 MiB were seen at 30 MB/s.
bound_mb=128
warmup_s=8
groups=8

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-disk.XXXXXX")
failed=1
load_pid=
cleanup() {
	if [ -n "$load_pid" ] && kill -0 "$load_pid" 2>/dev/null; then
		kill "$load_pid" 2>/dev/null || true
		wait "$load_pid" 2>/dev/null || true
	fi
	cluster_stop_and_show 20 "$dir"/load.out
}
trap cleanup EXIT

step "start 3 nodes, $groups groups, a snapshot every 200 entries, $segment_mb MiB segments"
cluster_start_random --groups "$groups" --nodes 3 --shards 1 \
	--bin "$node_bin" -- --snapshot-entries 200 --entry-size-max 65536 \
	--wal-segment-size $((segment_mb << 20))

step "PUTs of 1000-byte values for $duration s; du of each node every second"
"$load_bin" --cluster-dir "$dir" --groups "$groups" --mode closed --concurrency 128 \
	--read-ratio 0 --value-size 1000 --keys 4000 --duration "$duration" --warmup 0 \
	>"$dir/load.out" 2>&1 &
load_pid=$!
max_mb=0
second=0
while kill -0 "$load_pid" 2>/dev/null && [ "$second" -lt $((duration + 30)) ]; do
	sleep 1
	second=$((second + 1))
	# A file may vanish under du (a segment reclaimed): that is no error.
	sizes=$({ du -sm "$dir"/node-1 "$dir"/node-2 "$dir"/node-3 2>/dev/null || true; } |
		awk '{printf "%s ", $1}')
	echo "${second}s: $sizes(MiB, nodes 1 2 3)"
	if [ "$second" -gt "$warmup_s" ]; then
		for mb in $sizes; do
			if [ "$mb" -gt "$max_mb" ]; then max_mb=$mb; fi
		done
	fi
done
load_rc=0
wait "$load_pid" || load_rc=$?
load_pid=
grep -E "^throughput|^errors" "$dir/load.out" || true
[ "$load_rc" -eq 0 ] || {
	echo "FAIL: flotilla-load exited with status $load_rc"
	exit 1
}
written_mb=$(awk '/^throughput/ {printf "%d", $4 * '"$duration"'}' "$dir/load.out")
echo "written: about $written_mb MB of values per node; largest node after ${warmup_s}s:" \
	"$max_mb MiB (bound $bound_mb MiB)"
if [ "$max_mb" -gt "$bound_mb" ]; then
	echo "FAIL: disk use exceeded the bound"
	exit 1
fi

step "stop"
"$cluster" stop --dir "$dir"
if grep -E "AddressSanitizer|LeakSanitizer|runtime error:|failed" "$dir"/node-*.log; then
	echo "FAIL: a node reported an error (above)"
	exit 1
fi
failed=0
step "disk check passed"
