#!/usr/bin/env bash
# A bit flipped in the last batch of a node's tail WAL segment, after that
# batch was durable, on three real flotilla-node processes. A crash tears a
# write only as a prefix, and every batch ends with an END record: a record
# of the batch that verifies after the bad one proves the bad one was
# written whole and damaged later. So the node does not cut it as a torn
# write (which would drop entries it acknowledged without a word): the
# group it belongs to repairs from its peers.
#
#   Acknowledged writes in every group; node 3 is stopped (SIGTERM, its
#   writes durable). A bit is flipped in the payload of the last ENTRIES
#   record of the last batch of its tail segment. flotilla-wal verify
#   reports damage at that segment and offset and exits 1. Writes go on
#   without node 3; restarted, it says the record's group is damaged and
#   repairs it from its leader while writes go on, and then node 3 holds
#   every acknowledged key (LOCAL_GET), every key reads back through the
#   leaders, and every replica reports the same DIGEST for every group.
#
#   test_cluster_tail_flip.sh FLOTILLA_NODE KVCHECK CLUSTER_CHECK FLOTILLA_WAL TOOLS_CLUSTER WORK_DIR
#
# The cluster lives in a temporary directory under WORK_DIR, on a random base
# port, and is stopped by PID (tools/cluster stop) on every exit. Every wait
# is bounded.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") kvcheck_bin=$(realpath "$2") check_bin=$(realpath "$3")
wal_bin=$(realpath "$4") cluster=$(realpath "$5") work_dir=$6
groups=4

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-tailflip.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 40 "$dir/verify.out" "$dir/last-batch"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	exit 1
}

# Flip one bit of file at offset.
flip() { # file offset
	local byte
	byte=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\%03o' $((byte ^ 16)))" |
		dd of="$1" bs=1 seek="$2" count=1 conv=notrunc status=none
}

# Wait (at most $2 s) until file $3 says pattern $1.
wait_log() { # pattern seconds file
	local deadline=$((SECONDS + $2))
	until grep -q -- "$1" "$3"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

step "start 3 nodes, $groups groups, 1 shard"
cluster_start_random --groups "$groups" --nodes 3 --shards 1 \
	--bin "$node_bin" -- --election-ms 1000 --heartbeat-ms 100
n1="1=127.0.0.1:$((base + 1))" n2="2=127.0.0.1:$((base + 3))" n3="3=127.0.0.1:$((base + 5))"
all="$n1,$n2,$n3"
ack="$dir/acked"
wal_dir="$dir/node-3/shard-0"
log3="$dir/node-3.log"
kv() { # nodes args...
	"$kvcheck_bin" --nodes "$1" --groups "$groups" --timeout-ms 20000 "${@:2}"
}

step "acknowledged writes in every group; stop node 3"
kv "$all" put --prefix a --keys 200 --ack "$ack"
"$check_bin" converge --nodes "$all" --groups "$groups"
# The last batch holds entries only if the last thing node 3 wrote was an
# append: a few writes right before the stop make that likely; try again
# (bounded) when its last batch holds no entries.
found=
for try in 1 2 3 4 5; do
	kv "$all" put --prefix "t$try" --keys 20 --ack "$ack"
	"$cluster" stop --dir "$dir" --node 3
	# Records in log order: "<segment> +<offset> batch <n> <type> group <g> ...".
	"$wal_bin" dump --records "$wal_dir" >"$dir/dump"
	last=$(awk '$3 == "batch" { b = $4 } END { print b }' "$dir/dump")
	awk -v b="$last" '$3 == "batch" && $4 == b' "$dir/dump" >"$dir/last-batch"
	if grep -q " entries " "$dir/last-batch"; then
		found=1
		break
	fi
	"$cluster" start --dir "$dir" --node 3
	"$check_bin" converge --nodes "$all" --groups "$groups"
done
[ -n "$found" ] || fail "node 3's last batch never held entries"
cat "$dir/last-batch"
grep -q " end$" "$dir/last-batch" || fail "the last batch has no END record"
read -r seg offset group < <(awk '$5 == "entries" { r = $1 " " substr($2, 2) " " $7 }
	END { print r }' "$dir/last-batch")

step "flip a bit in the last entries record of the last batch (batch $last)"
"$wal_bin" verify "$wal_dir" >/dev/null || fail "node 3's WAL does not verify before"
flip "$wal_dir/$seg.wal" $((offset + 48 + 12)) # The first entry's type.
echo "flipped a bit of $seg.wal +$offset (group $group)"
rc=0
"$wal_bin" verify "$wal_dir" >"$dir/verify.out" 2>&1 || rc=$?
cat "$dir/verify.out"
[ "$rc" -eq 1 ] || fail "flotilla-wal verify exits $rc, not 1"
grep -q "CORRUPT: .*segment $seg.wal offset $offset .*not a torn write" "$dir/verify.out" ||
	fail "verify does not report damage at $seg.wal offset $offset"
grep -q "repairs from its peers: group $group " "$dir/verify.out" ||
	fail "verify does not name group $group"

step "writes go on without node 3"
kv "$n1,$n2" put --prefix b --keys 100 --ack "$ack"

step "restart node 3: group $group repairs from its peers while writes go on"
"$cluster" start --dir "$dir" --node 3
grep -q "group $group: WAL records damaged" "$log3" || fail "no damage reported for $group"
grep -q "group $group: .*as a non-voting, non-acknowledging member" "$log3" ||
	fail "group $group does not repair"
kv "$all" put --prefix c --keys 100 --ack "$ack"
wait_log "group $group: repaired" 40 "$log3" || fail "group $group did not repair"
grep "damaged\|non-voting\|repaired" "$log3"

step "node 3 holds every acknowledged key; all replicas agree"
kv "$all" local --ack "$ack" --via 3
kv "$all" verify --ack "$ack"
"$check_bin" converge --nodes "$all" --groups "$groups"
echo "acknowledged keys checked: $(wc -l <"$ack")"

step "stop"
"$cluster" stop --dir "$dir"
if grep -E "AddressSanitizer|LeakSanitizer|runtime error:|kv: group .* applied index|cannot install" \
	"$dir"/node-*.log; then
	fail "a node reported an error (above)"
fi
failed=0
step "tail flip check passed"
