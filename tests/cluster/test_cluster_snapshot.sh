#!/usr/bin/env bash
# Snapshot catch-up and transfer faults on three real flotilla-node processes.
#
#   1. Node 3 is stopped while nodes 1 and 2 write far past their compacted
#      logs; it comes back and catches up by snapshot. The first chunk each
#      node sends is corrupted on purpose (FLOTILLA_TEST_SNAPSHOT_CORRUPT):
#      the receiver must reject that file, and the retry must install.
#   2. The receiver is killed (-9) mid-stream, restarted, and catches up.
#   3. The sender (the group's leader) is killed mid-stream; the new leader
#      sends again from the start, and the old one comes back.
# After each step every replica must report the same DIGEST for every group,
# and no node may have restored from a bad file. Chunks are paced
# (FLOTILLA_TEST_SNAPSHOT_PACE_MS) so that a transfer lasts long enough to
# be seen and interrupted: a snapshot here is 2 to 3 chunks of 1 MiB, so 600
# ms a chunk keeps a transfer open for a second or more, which a loaded
# machine's polling loop still sees (at 150 ms it was missed under load). Chunks travel LZ4-compressed (--snapshot-compress on); the
# other tests cover raw chunks.
#
#   test_cluster_snapshot.sh FLOTILLA_NODE CLUSTER_CHECK TOOLS_CLUSTER WORK_DIR WRITES
#
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port, and is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") check_bin=$(realpath "$2") cluster=$(realpath "$3") work_dir=$4
writes=$5
groups=2

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-snapshot.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 30
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	exit 1
}

export FLOTILLA_TEST_SNAPSHOT_CORRUPT=1 FLOTILLA_TEST_SNAPSHOT_PACE_MS=600

step "start 3 nodes, $groups groups, a snapshot every 500 entries, LZ4 chunks"
cluster_start_random --groups "$groups" --nodes 3 --shards 1 \
	--bin "$node_bin" -- --election-ms 1000 --heartbeat-ms 100 \
	--snapshot-entries 500 --snapshot-compress on
n1="1=127.0.0.1:$((base + 1))" n2="2=127.0.0.1:$((base + 3))" n3="3=127.0.0.1:$((base + 5))"
all="$n1,$n2,$n3"

# Nodes 1 and 2 take writes with node 3 down; prefix names the keys.
write_without_3() {
	"$check_bin" write --nodes "$n1,$n2" --groups "$groups" --proposals "$writes" --prefix "$1"
}

converge() {
	"$check_bin" converge --nodes "$all" --groups "$groups"
}

# Wait (at most 30 s) until node 3 is receiving a snapshot file; print its group.
wait_receiving() {
	local deadline=$((SECONDS + 30)) f
	while [ $SECONDS -lt $deadline ]; do
		for f in "$dir"/node-3/shard-*.snapshots/*.recv; do
			if [ -s "$f" ]; then
				f=$(basename "$f")
				echo $((16#${f:1:16}))
				return 0
			fi
		done
		sleep 0.05
	done
	return 1
}

kill9() { # id
	local pid
	pid=$(cat "$dir/node-$1.pid")
	grep -qz -- "$dir/node-$1" "/proc/$pid/cmdline" || fail "pid $pid is not node $1"
	kill -9 "$pid"
	# Gone, or a zombie that its parent has not reaped yet.
	while [ -r "/proc/$pid/status" ] &&
		! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; do
		sleep 0.05
	done
	rm -f "$dir/node-$1.pid"
}

count() { # pattern file...: matching lines over the files
	cat "${@:2}" | grep -c -- "$1" || true
}

step "writes on all nodes"
"$check_bin" write --nodes "$all" --groups "$groups" --proposals 2000 --prefix a
converge

step "1. node 3 down while nodes 1 and 2 write $writes entries and compact"
"$cluster" stop --dir "$dir" --node 3
write_without_3 b
installed=$(count "installed snapshot" "$dir/node-3.log")
"$cluster" start --dir "$dir" --node 3
converge
[ "$(count "installed snapshot" "$dir/node-3.log")" -gt "$installed" ] ||
	fail "node 3 did not catch up by snapshot"
[ "$(count "test fault: corrupted" "$dir"/node-[12].log)" -ge 1 ] ||
	fail "no chunk was corrupted"
[ "$(count "fails its checksum" "$dir/node-3.log")" -ge 1 ] ||
	fail "node 3 did not reject the corrupted snapshot"
echo "node 3 rejected $(count "fails its checksum" "$dir/node-3.log") bad file(s)," \
	"installed $(count "installed snapshot" "$dir/node-3.log") snapshot(s)"

step "2. kill the receiver mid-stream"
"$cluster" stop --dir "$dir" --node 3
write_without_3 c
"$cluster" start --dir "$dir" --node 3
group=$(wait_receiving) || fail "node 3 never received a snapshot"
kill9 3
echo "killed node 3 while it received group $group"
"$cluster" start --dir "$dir" --node 3
converge

step "3. kill the sender mid-stream"
"$cluster" stop --dir "$dir" --node 3
write_without_3 d
"$cluster" start --dir "$dir" --node 3
group=$(wait_receiving) || fail "node 3 never received a snapshot"
sender=$(grep "group $group: leader is node" "$dir/node-3.log" | tail -n 1 |
	sed 's/.*leader is node \([0-9]*\),.*/\1/')
[ "$sender" = 1 ] || [ "$sender" = 2 ] || fail "no sender known for group $group"
installed=$(count "group $group: installed snapshot" "$dir/node-3.log")
kill9 "$sender"
echo "killed node $sender while it sent group $group"
deadline=$((SECONDS + 60))
until [ "$(count "group $group: installed snapshot" "$dir/node-3.log")" -gt "$installed" ]; do
	[ $SECONDS -lt $deadline ] || fail "the new leader did not send the snapshot"
	sleep 0.1
done
"$cluster" start --dir "$dir" --node "$sender"
converge

step "stop"
"$cluster" stop --dir "$dir"
if grep -E "AddressSanitizer|LeakSanitizer|runtime error:|kv: group .* applied index|cannot install" \
	"$dir"/node-*.log; then
	fail "a node reported an error (above)"
fi
failed=0
step "snapshot check passed"
