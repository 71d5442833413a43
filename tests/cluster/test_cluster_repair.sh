#!/usr/bin/env bash
# Repair from peers instead of refusing to start, on three real flotilla-node
# processes (protocol-aware recovery).
#
#   1. Acknowledged writes in every group; node 3 is stopped, a bit is flipped
#      in the payload of a WAL record in the middle of its log (later batches
#      follow it: not a torn tail) and a byte in one of its snapshot files (of
#      another group). The writes go on without it. Restarted, node 3 starts
#      (it used to refuse), the two damaged groups start as repairing members
#      and are repaired from their leaders while the cluster keeps committing,
#      no other group repairs, and then node 3 holds every acknowledged key
#      (LOCAL_GET), every key reads back through the leaders, and every
#      replica reports the same DIGEST for every group.
#      Then a record header is damaged too: its group cannot be named, so
#      every group of node 3 repairs (but those reset after that record by
#      the first repair), and the same checks hold.
#   2. All nodes stop; the snapshot of one group is damaged on nodes 2 and 3,
#      a majority. Restarted, that group elects no leader and refuses writes
#      with a clear error (logged on every node), while the other groups
#      elect and take writes.
#
#   test_cluster_repair.sh FLOTILLA_NODE KVCHECK CLUSTER_CHECK FLOTILLA_WAL TOOLS_CLUSTER WORK_DIR
#
# The cluster lives in a temporary directory under WORK_DIR, on a random base
# port, and is stopped by PID (tools/cluster stop) on every exit. Every wait
# is bounded.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") kvcheck_bin=$(realpath "$2") check_bin=$(realpath "$3")
wal_bin=$(realpath "$4") cluster=$(realpath "$5") work_dir=$6
groups=6

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-repair.XXXXXX")
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

# Flip one bit of file at offset.
flip() { # file offset
	local byte
	byte=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\%03o' $((byte ^ 16)))" |
		dd of="$1" bs=1 seek="$2" count=1 conv=notrunc status=none
}

# The data file of group g's current snapshot on node id.
snapshot_file() { # id g
	local f
	for f in "$dir/node-$1"/shard-0.snapshots/g"$(printf %016x "$2")"-*; do
		case "$f" in
		*.manifest* | *.recv | *.tmp) ;;
		*) [ -s "$f" ] && echo "$f" && return 0 ;;
		esac
	done
	return 1
}

# Wait (at most $2 s) until node 3's log says pattern $1.
wait_log() { # pattern seconds file
	local deadline=$((SECONDS + $2))
	until grep -q -- "$1" "$3"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

step "start 3 nodes, $groups groups, 1 shard, a snapshot every 200 entries"
cluster_start_random --groups "$groups" --nodes 3 --shards 1 \
	--bin "$node_bin" -- --election-ms 1000 --heartbeat-ms 100 --snapshot-entries 200
n1="1=127.0.0.1:$((base + 1))" n2="2=127.0.0.1:$((base + 3))" n3="3=127.0.0.1:$((base + 5))"
all="$n1,$n2,$n3"
ack="$dir/acked"
kv() { # nodes args...
	"$kvcheck_bin" --nodes "$1" --groups "$groups" --timeout-ms 20000 "${@:2}"
}

step "acknowledged writes in every group"
kv "$all" put --prefix a --keys 300 --ack "$ack"
"$check_bin" converge --nodes "$all" --groups "$groups"

step "1. stop node 3; damage a WAL record in the middle of its log and a snapshot file"
"$cluster" stop --dir "$dir" --node 3
wal_dir="$dir/node-3/shard-0"
# The ENTRIES records, in log order: "<segment> +<offset> batch <n> entries group <g> ...".
"$wal_bin" dump --records "$wal_dir" | awk '$5 == "entries" { print $1, substr($2, 2), $7 }' \
	>"$dir/records"
total=$(wc -l <"$dir/records")
[ "$total" -ge 6 ] || fail "only $total entries records in node 3's WAL"
read -r seg offset wal_group < <(sed -n "$((total / 2))p" "$dir/records")
flip "$wal_dir/$seg.wal" $((offset + 48 + 8)) # The payload's first entry size.
snap_group=$((wal_group % groups + 1))
snap=$(snapshot_file 3 "$snap_group") || fail "node 3 has no snapshot of group $snap_group"
flip "$snap" $(($(stat -c %s "$snap") / 2))
echo "damaged record $seg +$offset of group $wal_group (record $((total / 2)) of $total)," \
	"and $(basename "$snap") of group $snap_group"
"$wal_bin" verify "$wal_dir" >"$dir/verify.out" 2>&1 && fail "flotilla-wal verify missed it"
grep -q "repairs from its peers: group $wal_group " "$dir/verify.out" ||
	fail "verify does not name group $wal_group"
"$wal_bin" stat "$wal_dir" | grep -q "DAMAGED: 1 record" || fail "stat does not report the damage"

step "writes go on without node 3"
kv "$n1,$n2" put --prefix b --keys 100 --ack "$ack"

step "restart node 3: it starts and repairs the two groups while writes go on"
"$cluster" start --dir "$dir" --node 3
log3="$dir/node-3.log"
grep -q "group $wal_group: WAL records damaged" "$log3" || fail "no damage reported for $wal_group"
grep -q "group $snap_group: its snapshot fails verification" "$log3" ||
	fail "no damaged snapshot reported for group $snap_group"
repairing=$(count "as a non-voting, non-acknowledging member" "$log3")
[ "$repairing" -eq 2 ] || fail "$repairing groups repair, not 2"
kv "$all" put --prefix c --keys 100 --ack "$ack"
for g in "$wal_group" "$snap_group"; do
	wait_log "group $g: repaired" 60 "$log3" || fail "group $g did not repair"
done
grep "repaired\|damaged\|non-voting" "$log3"

step "node 3 holds every acknowledged key; all replicas agree"
kv "$all" local --ack "$ack" --via 3
kv "$all" verify --ack "$ack"
"$check_bin" converge --nodes "$all" --groups "$groups"
echo "acknowledged keys checked: $(wc -l <"$ack")"

step "1b. damage a record header in node 3's WAL: no group can be named, all repair"
"$cluster" stop --dir "$dir" --node 3
"$wal_bin" dump --records "$wal_dir" | awk '$5 == "entries" { print $1, substr($2, 2), $7 }' \
	>"$dir/records"
total=$(wc -l <"$dir/records")
read -r seg offset wal_group < <(sed -n "$((total / 2))p" "$dir/records")
flip "$wal_dir/$seg.wal" $((offset + 9)) # The record's group id.
repaired_before=$(count ": repaired:" "$log3")
starting_before=$(count "as a non-voting" "$log3")
"$cluster" start --dir "$dir" --node 3
grep -q "every group of this WAL is damaged" "$log3" || fail "the bad header was not reported"
# Repairs that ended are not resumed: the WAL recorded their end.
[ "$(count "repair from peers was interrupted" "$log3")" -eq 0 ] || fail "a finished repair resumed"
# Every group with records after the bad one repairs; a group reset after it
# (by the repair above) is whole.
damaged=$(($(count "as a non-voting" "$log3") - starting_before))
echo "$damaged groups repair"
[ "$damaged" -ge $((groups - 2)) ] || fail "only $damaged groups repair"
kv "$all" put --prefix f --keys 50 --ack "$ack"
deadline=$((SECONDS + 60))
until [ "$(count ": repaired:" "$log3")" -ge $((repaired_before + damaged)) ]; do
	[ $SECONDS -lt $deadline ] || fail "not every damaged group of node 3 repaired"
	sleep 0.1
done
kv "$all" local --ack "$ack" --via 3
"$check_bin" converge --nodes "$all" --groups "$groups"

step "2. damage one group's snapshot on nodes 2 and 3 (a majority) with every node down"
"$cluster" stop --dir "$dir"
halt_group=$groups
for id in 2 3; do
	snap=$(snapshot_file "$id" "$halt_group") || fail "node $id has no snapshot of $halt_group"
	flip "$snap" $(($(stat -c %s "$snap") / 2))
done
leaders_before=$(count "group $halt_group: leader is node" "$dir"/node-*.log)
"$cluster" start --dir "$dir"
kv "$all" --groups $((groups - 1)) put --prefix d --keys 50 --ack "$dir/acked-d" ||
	fail "the other groups do not take writes"
for id in 1 2 3; do
	wait_log "group $halt_group: " 30 "$dir/node-$id.log" || true
done
wait_log "group $halt_group: unavailable: too many of its members repair" 30 "$dir/node-1.log" ||
	fail "node 1 does not say why group $halt_group is unavailable"
set +e
"$kvcheck_bin" --nodes "$all" --groups "$halt_group" --timeout-ms 3000 put --prefix e --keys 1 \
	--ack "$dir/acked-e" >"$dir/halted.out" 2>&1
rc=$?
set -e
tail -n 5 "$dir/halted.out"
[ "$rc" -ne 0 ] || fail "group $halt_group took a write with a majority repairing"
# A PUT is retried until the timeout; a CAS is not, and shows the error.
set +e
"$kvcheck_bin" --nodes "$all" --groups "$halt_group" --timeout-ms 3000 ops \
	--group "$halt_group" >"$dir/halted-cas.out" 2>&1
rc=$?
set -e
tail -n 5 "$dir/halted-cas.out"
[ "$rc" -ne 0 ] || fail "group $halt_group took a CAS with a majority repairing"
grep -q "repairing" "$dir/halted-cas.out" || fail "the refusal does not say the group is repairing"
[ "$(count "group $halt_group: leader is node" "$dir"/node-*.log)" -eq "$leaders_before" ] ||
	fail "group $halt_group elected a leader with a majority repairing"

step "stop"
"$cluster" stop --dir "$dir"
if grep -E "AddressSanitizer|LeakSanitizer|runtime error:|kv: group .* applied index|cannot install" \
	"$dir"/node-*.log; then
	fail "a node reported an error (above)"
fi
failed=0
step "repair check passed"
