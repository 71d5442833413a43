#!/usr/bin/env bash
# Whole WAL segments lost on one node of three real flotilla-node processes,
# under acknowledged writes: the node detects the loss, names the segment,
# and every group of the shard repairs from its peers (never voting, never
# counting toward a commit, until it holds the leader's log) instead of
# starting as if it had never held anything. Files that are not Flotilla's
# are moved aside, never removed.
#
#   1. Node 3 stopped; its newest segment is replaced by zeros of the same
#      size (it used to be taken for a spare). flotilla-wal verify reports
#      it and exits non-zero. Writes go on without node 3; restarted, it
#      names the lost segment, every group repairs while writes go on, and
#      then node 3 holds every acknowledged key (LOCAL_GET), every key reads
#      back, and every replica reports the same DIGEST for every group.
#   2. The same with a segment in the middle (or the oldest) deleted.
#   3. A random file named like a segment: moved into damaged/, no group
#      repairs, nothing acknowledged is lost.
#
#   test_cluster_segment_loss.sh FLOTILLA_NODE KVCHECK CLUSTER_CHECK FLOTILLA_WAL FLOTILLA_LOAD TOOLS_CLUSTER WORK_DIR
#
# The cluster lives in a temporary directory under WORK_DIR, on a random base
# port, and is stopped by PID (tools/cluster stop) on every exit. Every wait
# is bounded.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") kvcheck_bin=$(realpath "$2") check_bin=$(realpath "$3")
wal_bin=$(realpath "$4") load_bin=$(realpath "$5") cluster=$(realpath "$6") work_dir=$7
groups=6

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-segloss.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 40
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	exit 1
}

count() { # pattern file...: matching lines over the files
	cat "${@:2}" | grep -c -- "$1" || true
}

# Wait (at most $2 s) until file $3 has at least $4 lines matching $1.
wait_count() { # pattern seconds file count
	local deadline=$((SECONDS + $2))
	until [ "$(count "$1" "$3")" -ge "$4" ]; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

step "start 3 nodes, $groups groups, 1 shard, small WAL segments"
cluster_start_random --groups "$groups" --nodes 3 --shards 1 \
	--bin "$node_bin" -- --election-ms 1000 --heartbeat-ms 100 --entry-size-max 16384 \
	--wal-segment-size 524288
n1="1=127.0.0.1:$((base + 1))" n2="2=127.0.0.1:$((base + 3))" n3="3=127.0.0.1:$((base + 5))"
all="$n1,$n2,$n3"
ack="$dir/acked"
wal_dir="$dir/node-3/shard-0"
log3="$dir/node-3.log"
kv() { # nodes args...
	"$kvcheck_bin" --nodes "$1" --groups "$groups" --timeout-ms 20000 "${@:2}"
}

# The segments in use on node 3, oldest first (from flotilla-wal stat).
segments() {
	"$wal_bin" stat "$wal_dir" | awk '$1 ~ /^[0-9a-f]+\.wal$/ { print $1 }'
}

# Stop node 3, damage its WAL with $1 (a function taking the segment file),
# check that verify reports it, write without node 3, restart it, and check
# that every group repairs and nothing acknowledged is lost.
lose() { # how segment
	local how=$1 seg=$2 repaired_before starting_before
	"$wal_bin" verify "$wal_dir" >/dev/null || fail "node 3's WAL does not verify before"
	"$how" "$wal_dir/$seg"
	echo "$how $seg"
	if "$wal_bin" verify "$wal_dir" >"$dir/verify.out" 2>&1; then
		cat "$dir/verify.out"
		fail "flotilla-wal verify missed it"
	fi
	cat "$dir/verify.out"
	grep -q "segment $seg .* is lost" "$dir/verify.out" || fail "verify does not name $seg"

	step "writes go on without node 3"
	kv "$n1,$n2" put --prefix "w$RANDOM" --keys 50 --ack "$ack"

	step "restart node 3: it names the loss and every group repairs while writes go on"
	repaired_before=$(count ": repaired:" "$log3")
	starting_before=$(count "as a non-voting, non-acknowledging member" "$log3")
	"$cluster" start --dir "$dir" --node 3
	grep -q "segment $seg .* is lost" "$log3" || fail "node 3 does not name the lost segment"
	wait_count "as a non-voting, non-acknowledging member" 10 "$log3" \
		$((starting_before + groups)) || fail "not every group of node 3 repairs"
	kv "$all" put --prefix "r$RANDOM" --keys 50 --ack "$ack"
	wait_count ": repaired:" 90 "$log3" $((repaired_before + groups)) ||
		fail "not every group of node 3 repaired"
	grep "lost\|repaired\|non-voting" "$log3" | tail -n $((groups * 2 + 1))

	step "node 3 holds every acknowledged key; all replicas agree"
	kv "$all" local --ack "$ack" --via 3
	kv "$all" verify --ack "$ack"
	"$check_bin" converge --nodes "$all" --groups "$groups"
	echo "acknowledged keys checked: $(wc -l <"$ack")"
}

zero() { # file: the same size, all zeros
	local size
	size=$(stat -c %s "$1")
	truncate -s 0 "$1"
	truncate -s "$size" "$1"
}

delete() {
	rm -f "$1"
}

# Acknowledged (checked) writes and bulk (unchecked) writes until node 3's
# WAL has segments to lose, then node 3 is left stopped. A node may reclaim
# most of its segments soon after it starts (the groups' snapshots let it), so
# the count is taken with node 3 stopped and node 3 stays stopped from there.
fill() { # prefix
	local round used=0
	for round in 1 2 3 4 5 6 7 8; do
		kv "$all" put --prefix "$1$round" --keys 100 --ack "$ack"
		# A WAL segment is at least four batches of 1 MiB.
		"$load_bin" --cluster-dir "$dir" --groups "$groups" --mode closed --concurrency 32 \
			--read-ratio 0 --value-size 4000 --keys 2000 --duration 2 --warmup 0 \
			>"$dir/load.out" 2>&1 || fail "flotilla-load failed: $(tail -n 3 "$dir/load.out")"
		"$cluster" stop --dir "$dir" --node 3
		used=$(segments | wc -l)
		[ "$used" -lt 2 ] || break
		"$cluster" start --dir "$dir" --node 3
	done
	echo "node 3 uses $used segments"
	[ "$used" -ge 2 ] || fail "node 3's WAL has $used segments in use"
}

step "acknowledged writes in every group, over several segments; stop node 3"
fill a

step "1. zero node 3's newest segment"
seg=$(segments | tail -n 1)
lose zero "$seg"
[ -f "$wal_dir/damaged/$seg" ] || fail "the zeroed segment was not moved into damaged/"

step "2. more writes; stop node 3; delete a segment before its newest"
fill b
mapfile -t used < <(segments)
[ "${#used[@]}" -ge 2 ] || fail "node 3 has ${#used[@]} segments in use"
seg=${used[$((${#used[@]} - 2))]}
lose delete "$seg"

step "3. a random file named like a segment on node 3: moved aside, no repair"
"$cluster" stop --dir "$dir" --node 3
foreign=ffffffff00000000
head -c 4194304 /dev/urandom >"$wal_dir/$foreign.wal"
if "$wal_bin" verify "$wal_dir" >"$dir/verify.out" 2>&1; then
	cat "$dir/verify.out"
	fail "verify does not report the foreign file"
fi
grep -q "file $foreign.wal" "$dir/verify.out" || fail "verify does not name the foreign file"
starting_before=$(count "as a non-voting" "$log3")
"$cluster" start --dir "$dir" --node 3
grep -q "file $foreign.wal is no segment" "$log3" || fail "node 3 does not name the foreign file"
[ -f "$wal_dir/damaged/$foreign.wal" ] || fail "the foreign file was not moved into damaged/"
[ ! -e "$wal_dir/$foreign.wal" ] || fail "the foreign file is still in the WAL directory"
[ "$(count "as a non-voting" "$log3")" -eq "$starting_before" ] || fail "a group repairs"
kv "$all" put --prefix f --keys 50 --ack "$ack"
kv "$all" local --ack "$ack" --via 3
kv "$all" verify --ack "$ack"
"$check_bin" converge --nodes "$all" --groups "$groups"

step "stop"
"$cluster" stop --dir "$dir"
if grep -E "AddressSanitizer|LeakSanitizer|runtime error:|kv: group .* applied index|cannot install" \
	"$dir"/node-*.log; then
	fail "a node reported an error (above)"
fi
failed=0
step "segment loss check passed"
