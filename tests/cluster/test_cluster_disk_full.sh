#!/usr/bin/env bash
# A full disk on a real file system: three flotilla-node processes, node 2's
# data directory on a 16 MiB tmpfs that a filler file leaves too small for
# more than its first two 4 MiB WAL segments, compaction off so that the
# disk fills. Node 2 leads group 1 and follows in group 2, so both cases
# happen at once:
#   1. PUTs at a fixed rate (flotilla-load --check, linearizability
#      checked) go on until node 2 logs that its WAL is out of space
#      (ENOSPC); the rate keeps the whole log small enough to catch up on;
#   2. it hands group 1 to another node and leads no group; every PUT of
#      both groups is acknowledged through nodes 1 and 3 meanwhile;
#   3. the filler is deleted and the tmpfs grown to 64 MiB (room for the
#      log it missed, compaction being off): node 2 says it has space again,
#      takes more PUTs, catches up, and every node holds every acknowledged
#      key with its value, with the same DIGEST for every group.
# Then a one-node cluster on its own full tmpfs: its leader has no one to
# hand over to, so flotilla-load sees its writes refused as no_space, and
# none once the space returns.
# No node may report a failed WAL or a sanitizer error.
#
#   test_cluster_disk_full.sh FLOTILLA_NODE KVCHECK CLUSTER_CHECK FLOTILLA_LOAD TOOLS_CLUSTER
#                             WORK_DIR
#
# Needs root (mount); skipped (77) otherwise or when the mount fails. The
# cluster lives in a temporary directory under WORK_DIR on a random base
# port, is stopped by PID (tools/cluster stop) and the tmpfs unmounted on
# every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") kvcheck=$(realpath "$2") cluster_check=$(realpath "$3")
load_bin=$(realpath "$4") cluster=$(realpath "$5") work_dir=$6
groups=2
tmpfs_mb=16
segment_mb=4
filler_mb=6 # 16 - 6 leaves room for two segments and a little, not three.
wait_s=15

if [ "$(id -u)" -ne 0 ]; then
	echo "not root: cannot mount a small tmpfs: skipped"
	exit 77
fi
mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-disk-full.XXXXXX")
small=$dir/node-2 solo=$dir/solo
mkdir -p "$small" "$solo/node-1"
if ! mount -t tmpfs -o size=${tmpfs_mb}m tmpfs "$small"; then
	echo "mount -t tmpfs failed here: skipped"
	rm -rf "$dir"
	exit 77
fi
mount -t tmpfs -o size=${tmpfs_mb}m tmpfs "$solo/node-1"
failed=1
load_pid=
cleanup() {
	if [ -n "$load_pid" ] && kill -0 "$load_pid" 2>/dev/null; then
		kill "$load_pid" 2>/dev/null || true
		wait "$load_pid" 2>/dev/null || true
	fi
	"$cluster" stop --dir "$dir" --wait 10 >/dev/null 2>&1 || true
	"$cluster" stop --dir "$solo" --wait 10 >/dev/null 2>&1 || true
	if [ "$failed" -ne 0 ]; then
		for log in "$dir"/node-*.log "$solo"/node-*.log "$dir"/load.out; do
			[ -f "$log" ] || continue
			echo "---- last lines of $(basename "$log")"
			tail -n 30 "$log"
		done
	fi
	for mnt in "$small" "$solo/node-1"; do
		umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT

# wait_log SECONDS PATTERN [LOG]: until LOG (node 2's) has PATTERN (bounded).
wait_log() {
	local i log=${3:-$dir/node-2.log}
	for ((i = 0; i < $1 * 10; i++)); do
		grep -q "$2" "$log" && return 0
		sleep 0.1
	done
	echo "FAIL: $(basename "$log") has no '$2' after $1 s"
	exit 1
}

# start_cluster DIR TMPFS ARGS...: like cluster_start_random, but a retry
# keeps the node whose data is TMPFS on it (and its filler). Sets base and
# the TLS variables (cluster_tls_env).
start_cluster() {
	local cdir=$1 mnt=$2 attempt rc
	shift 2
	for attempt in 1 2 3 4 5; do
		base=$("$cluster" pick-port)
		rc=0
		"$cluster" start --dir "$cdir" --base-port "$base" "$@" || rc=$?
		if [ "$rc" -eq 0 ]; then
			cluster_tls_env "$cdir"
			return 0
		fi
		if [ "$rc" -eq 4 ]; then
			echo "io_uring is not available here: skipped"
			failed=0
			exit 77
		fi
		if [ "$rc" -ne 3 ] || [ "$attempt" -eq 5 ]; then
			echo "cluster start failed with status $rc"
			exit 1
		fi
		echo "ports near $base in use: trying others"
		find "$cdir" -maxdepth 1 -name 'node-*' ! -path "$mnt" -exec rm -rf {} +
		find "$mnt" -mindepth 1 ! -name filler -delete
	done
}

step "node 2 on a ${tmpfs_mb} MiB tmpfs with a ${filler_mb} MiB filler; ${segment_mb} MiB segments"
# The filler goes in once the node has made its directory (a directory
# without a manifest that holds other files is refused); the writes that
# fill the disk come later.
start_cluster "$dir" "$small" --groups "$groups" --nodes 3 --shards 1 --bin "$node_bin" -- \
	--snapshot-entries 0 --check-entries 0 --entry-size-max 65536 \
	--wal-segment-size $((segment_mb << 20))
dd if=/dev/zero of="$small/filler" bs=1M count="$filler_mb" status=none
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"
acks=$dir/acks
"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 10000 lead --group 1 --via 2
"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 10000 lead --group 2 --via 1
"$kvcheck" --nodes "$nodes" --groups "$groups" put --prefix before --keys 20 --ack "$acks"

# load_round DIR GROUPS: one second of 1000 requests/s, 80% PUTs of 4000
# bytes, linearizability checked; shows the counts.
load_round() {
	"$load_bin" --cluster-dir "$1" --groups "$2" --mode open --rate 1000 \
		--read-ratio 0.2 --value-size 4000 --keys 500 --duration 1 --warmup 0 \
		--check --check-initial any >"$dir/load.out" 2>&1 || {
		echo "FAIL: flotilla-load failed"
		cat "$dir/load.out"
		exit 1
	}
	grep -E "^throughput|^errors|^check" "$dir/load.out" || true
}

# fill DIR GROUPS TMPFS LOG: load rounds until LOG says out of space (bounded).
fill() {
	local rounds=0
	until grep -q "out of space (ENOSPC)" "$4"; do
		rounds=$((rounds + 1))
		if [ "$rounds" -gt 10 ]; then
			echo "FAIL: $(basename "$4") never ran out of space"
			exit 1
		fi
		load_round "$1" "$2"
		df -m "$3" | tail -n 1
	done
	grep -h "out of space (ENOSPC)" "$4" | head -n 1 | cut -c 1-240
}

step "fill node 2's disk: 1000 requests/s, 80% PUTs of 4000 bytes (checked), until it is full"
fill "$dir" "$groups" "$small" "$dir/node-2.log"

step "node 2 leads no group; groups keep committing through nodes 1 and 3"
wait_log "$wait_s" "handing leadership of"
for ((i = 0; i < wait_s * 10; i++)); do
	leaders=$("$kvcheck" --nodes "$nodes" --groups "$groups" --via 1 leaders)
	grep -q "leader 2 " <<<"$leaders" || break
	sleep 0.1
done
echo "$leaders"
if grep -q "leader [02] " <<<"$leaders"; then
	echo "FAIL: node 2 still leads a group (or a group has no leader)"
	exit 1
fi
"$kvcheck" --nodes "$nodes" --groups "$groups" put --prefix during --keys 50 --ack "$acks"
wait_log "$wait_s" "disk full: the WAL of 1 of 1 shards is out of space"

step "free space: delete the filler, grow the tmpfs; node 2 resumes by itself and catches up"
rm "$small/filler"
mount -o remount,size=64m "$small"
wait_log "$wait_s" "has space again: accepting writes"
"$kvcheck" --nodes "$nodes" --groups "$groups" put --prefix after --keys 50 --ack "$acks"
for id in 1 2 3; do
	"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 20000 local --ack "$acks" \
		--via "$id"
done
"$kvcheck" --nodes "$nodes" --groups "$groups" verify --ack "$acks"
"$cluster_check" converge --nodes "$nodes" --groups "$groups"
df -m "$small" | tail -n 1

"$cluster" stop --dir "$dir"

step "one node alone on a full tmpfs: its writes are refused (no_space), then taken again"
start_cluster "$solo" "$solo/node-1" --groups 1 --nodes 1 --shards 1 --bin "$node_bin" -- \
	--snapshot-entries 0 --check-entries 0 --entry-size-max 65536 \
	--wal-segment-size $((segment_mb << 20))
dd if=/dev/zero of="$solo/node-1/filler" bs=1M count="$filler_mb" status=none
fill "$solo" 1 "$solo/node-1" "$solo/node-1.log"
load_round "$solo" 1
if ! grep -qE "^errors .*no_space [1-9]" "$dir/load.out"; then
	echo "FAIL: flotilla-load saw no write refused as no_space"
	exit 1
fi
rm "$solo/node-1/filler"
mount -o remount,size=64m "$solo/node-1"
wait_log "$wait_s" "has space again: accepting writes" "$solo/node-1.log"
load_round "$solo" 1
if ! grep -qE "^errors +0 " "$dir/load.out"; then
	echo "FAIL: writes still refused after the space returned"
	exit 1
fi
"$cluster" stop --dir "$solo"

step "logs"
if grep -E "AddressSanitizer|LeakSanitizer|runtime error:|WAL failed|reserve is spent" \
	"$dir"/node-*.log "$solo"/node-*.log; then
	echo "FAIL: a node reported an error (above)"
	exit 1
fi
failed=0
step "disk-full check passed: $(wc -l <"$acks") acknowledged keys on every node"
