#!/usr/bin/env bash
# Recovery from a lost majority: three flotilla-node processes on 127.0.0.1,
# started with no spares (no node knows a fourth), GROUPS groups.
#   1. rounds of checked writes (flotilla-kvcheck put: every write must be
#      acknowledged, and is recorded); then every replica must have applied
#      everything (flotilla-cluster-check converge: equal DIGESTs on all three);
#   2. flotilla-admin recover while all nodes are up is refused: exit status
#      1, every group "not recovered" because it still has a quorum;
#   3. node 1 made the leader of every group (so that it commits every
#      write before it is acknowledged), a background load of checked writes
#      started, and, under it, nodes 2 and 3 killed with SIGKILL (by the PIDs
#      in their pid files, checked to be theirs) and their data directories
#      wiped: node 1 alone commits nothing;
#   4. flotilla-admin recover --node 1 --groups GROUPS brings every group back:
#      exit 0, each group's report names the index range possibly lost, and
#      node 1's log has the WARN line; every write acknowledged before the
#      loss is there, those of the load under which the nodes died included
#      (kvcheck verify through node 1 alone), and new writes commit;
#   5. node 1 restarted: the recovery survives (writes commit again);
#   6. the lost nodes 2 and 3 removed from node 1's address book
#      (flotilla-admin remove-node --force);
#   7. new nodes 4 and 5 started empty (--join on) and made known to node 1
#      at run time (flotilla-admin add-node, given node 1 alone), every
#      group grown onto them (flotilla-admin grow); writes through all
#      three; every acknowledged write is present, and nodes 1, 4, 5 end
#      with equal DIGESTs for every group;
#   8. nodes 2 and 3 removed again, now from the books of nodes 4 and 5
#      (started knowing every node ever configured): flotilla-admin status
#      through node 1 alone finds exactly nodes 1, 4, 5, all up, and no
#      book names another node.
#
#   test_cluster_recover.sh FLOTILLA_NODE KVCHECK CLUSTER_CHECK FLOTILLA_ADMIN TOOLS_CLUSTER
#                           WORK_DIR GROUPS
#
# The cluster lives in a temporary directory under WORK_DIR, on a random
# base port, and is stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") kvcheck=$(realpath "$2") check_bin=$(realpath "$3")
admin=$(realpath "$4") cluster=$(realpath "$5") work_dir=$6 groups=$7

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-recover.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 25 "$dir/out.txt"
}
trap cleanup EXIT

# kill9 ID: SIGKILL node ID by the PID in its pid file, once that PID is
# checked to be the flotilla-node of node ID in this directory.
kill9() {
	local id=$1 pid
	pid=$(cat "$dir/node-$id.pid")
	if ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--data $dir/node-$id "; then
		echo "FAIL: pid $pid is not node $id's flotilla-node"
		exit 1
	fi
	kill -KILL "$pid"
	for _ in $(seq 100); do
		[ -d "/proc/$pid" ] && [ "$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" != Z ] ||
			break
		sleep 0.1
	done
	rm -f "$dir/node-$id.pid"
	echo "node $id: killed (pid $pid)"
}

step "start 3 nodes (no spares), $groups groups"
cluster_start_random --groups "$groups" --nodes 3 \
	--bin "$node_bin" -- --election-ms 1000 --heartbeat-ms 100
survivor="1=127.0.0.1:$((base + 1))"
first3="$survivor,2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"
grown="$survivor,4=127.0.0.1:$((base + 7)),5=127.0.0.1:$((base + 9))"
kv() { "$kvcheck" --groups "$groups" --timeout-ms 20000 "$@"; }

step "checked writes, then every replica applied everything"
for round in a b c; do
	kv --nodes "$first3" put --prefix "$round" --keys 10 --ack "$dir/acked.txt"
done
"$check_bin" converge --nodes "$first3" --groups "$groups"

step "recover while every node is up: refused"
expect 1 "0 groups recovered.*$groups refused" \
	"$admin" recover --nodes "$first3" --node 1 --groups "$groups"
expect 1 "still has a quorum" "$admin" recover --nodes "$first3" --node 1 --group 1

step "node 1 leads every group"
for g in $(seq "$groups"); do
	kv --nodes "$first3" lead --group "$g" --via 1 >/dev/null
done

step "under a load of checked writes, kill -9 nodes 2 and 3, wipe their data"
kv --nodes "$first3" put --prefix load --keys 1500 --ack "$dir/load.txt" >"$dir/load.out" 2>&1 &
load_pid=$!
sleep 0.2
kill9 2
kill9 3
rm -rf "$dir/node-2" "$dir/node-3"
sleep 2 # Node 1 suspects them after 3 heartbeat intervals of silence.
# Without a majority nothing commits, however long one waits (Raft's rule):
# the writes of this round stay in doubt until the recovery.
expect 1 "put: 0 of $groups acknowledged" "$kvcheck" --nodes "$survivor" --groups "$groups" \
	--timeout-ms 2000 put --prefix none --keys 1 --ack "$dir/none.txt"

step "recover every group on node 1"
expect 0 "recover on node 1: $groups groups recovered \(0 not yet committed\), 0 refused, 0 failed" \
	"$admin" recover --nodes "$first3" --node 1 --groups "$groups"
cp "$dir/out.txt" "$dir/recover.txt"
lines=$(grep -cE "^group [0-9]+: recovered on node 1, single voter in term [0-9]+ .*index range possibly lost: [0-9]+ and up; .*dropped: [23],[23]$" "$dir/recover.txt" || true)
if [ "$lines" -ne "$groups" ]; then
	echo "FAIL: $lines of $groups groups report a recovery with the range possibly lost"
	exit 1
fi
if ! grep -qE "RECOVERED from a lost majority: single voter in term [0-9]+ .*index range possibly lost: [0-9]+ and up" \
	"$dir/node-1.log"; then
	echo "FAIL: node 1 logged no WARN line of a recovery"
	exit 1
fi
expect 1 '"recovered": 0, .*"refused": 1' \
	"$admin" recover --nodes "$first3" --node 1 --group 1 --json

step "every acknowledged write is on node 1; new writes commit"
wait "$load_pid" || true # Writes in doubt at the kill may fail; each acknowledged one counts.
sed 's/^/    /' "$dir/load.out"
kv --nodes "$survivor" verify --ack "$dir/acked.txt" --via 1
kv --nodes "$survivor" verify --ack "$dir/load.txt" --via 1
cat "$dir/load.txt" >>"$dir/acked.txt"
kv --nodes "$survivor" put --prefix d --keys 5 --ack "$dir/acked.txt"

step "restart node 1: it is still the single voter"
"$cluster" stop --dir "$dir" --node 1
"$cluster" start --dir "$dir" --node 1
kv --nodes "$survivor" put --prefix e --keys 5 --ack "$dir/acked.txt"
kv --nodes "$survivor" verify --ack "$dir/acked.txt" --via 1

step "node 1 forgets the lost nodes 2 and 3"
for id in 2 3; do
	expect 0 "remove-node $id: done" "$admin" remove-node --nodes "$survivor" --id "$id" --force
done

step "start new nodes 4 and 5 empty; node 1 learns them at run time; grow every group onto them"
for id in 4 5; do
	"$cluster" start --dir "$dir" --node "$id"
	expect 0 "add-node $id: done" "$admin" add-node --nodes "$survivor" --id "$id" \
		--peer-addr "127.0.0.1:$((base + 2 * (id - 1)))"
done
expect 0 "grow onto 4: $groups groups grown" "$admin" grow --nodes "$survivor" --to 4 --groups "$groups"
expect 0 "grow onto 5: $groups groups grown" "$admin" grow --nodes "$survivor" --to 5 --groups "$groups"
expect 0 "grow onto 5: 0 groups grown, $groups already" \
	"$admin" grow --nodes "$survivor" --to 5 --groups "$groups"

step "writes through the grown groups; nothing acknowledged lost; replicas equal"
kv --nodes "$grown" put --prefix f --keys 5 --ack "$dir/acked.txt"
kv --nodes "$grown" verify --ack "$dir/acked.txt"
"$check_bin" converge --nodes "$grown" --groups "$groups"

step "nodes 4 and 5 forget nodes 2 and 3 too; the books hold exactly nodes 1, 4, 5"
# tools/cluster started 4 and 5 with every node ever configured as --peer.
for id in 2 3; do
	expect 0 "remove-node $id: done" "$admin" remove-node --nodes "$survivor" --id "$id" --force
done
"$admin" status --nodes "$survivor" --groups "$groups" >"$dir/status.txt" 2>"$dir/status.err"
head -n 6 "$dir/status.txt" | sed 's/^/    /'
sed 's/^/    /' "$dir/status.err"
listed=$(awk '$1 ~ /^[0-9]+$/ { print $1 }' "$dir/status.txt" | sort | xargs)
listed_up=$(awk '$1 ~ /^[0-9]+$/ && $3 == "up" { print $1 }' "$dir/status.txt" | sort | xargs)
if [ "$listed" != "1 4 5" ] || [ "$listed_up" != "1 4 5" ]; then
	echo "FAIL: status through node 1 lists nodes '$listed' (up: '$listed_up'), not '1 4 5'"
	exit 1
fi
if [ -s "$dir/status.err" ]; then
	echo "FAIL: some node's address book names a node other than 1, 4, 5 (above)"
	exit 1
fi

if grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:|kv: group .* applied index" \
	"$dir"/node-*.log; then
	echo "a node reported an error (above)"
	exit 1
fi
failed=0
step "recover check passed"
