#!/usr/bin/env bash
# flotilla-admin status, health and verify against real clusters, each case
# asserting the exit status and the reason's text:
#   1. three healthy nodes, 4 groups: health 0, status lists 3 nodes up
#      (and its --json parses), verify 0; transfer and snapshot work, as
#      text and as JSON;
#   2. node 3 killed with SIGKILL (by the PID in its pid file): health 1
#      naming node 3 as down, verify 1 naming it; once node 3 is started
#      again, health 0 again (bounded wait); node 1 stopped (SIGSTOP):
#      health 1 naming node 1, then 0 again once it goes on;
#   3. a follower of group 2 diverged (CORRUPT, a test hook: this case is
#      skipped on a build without test hooks): health 0 before any check,
#      then verify 1 naming group 2 and the node, and health 1 naming them;
#   4. node 2 on a 16 MiB tmpfs that a filler leaves room for two WAL
#      segments (as test_cluster_disk_full.sh), filled by writes until it
#      logs ENOSPC: health 1 with node 2's disk reason (root only: skipped
#      otherwise).
#
#   test_cluster_admin.sh FLOTILLA_NODE KVCHECK FLOTILLA_ADMIN FLOTILLA_LOAD TOOLS_CLUSTER
#                         WORK_DIR
#
# Clusters live in temporary directories under WORK_DIR on random base
# ports and are stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") kvcheck=$(realpath "$2") admin=$(realpath "$3")
load_bin=$(realpath "$4") cluster=$(realpath "$5") work_dir=$6
groups=4
wait_s=20

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-admin.XXXXXX")
small=
failed=1
cleanup() {
	if [ -n "$small" ]; then
		"$cluster" stop --dir "$dir" --wait 10 >/dev/null 2>&1 || true
		umount "$small" 2>/dev/null || umount -l "$small" 2>/dev/null || true
	fi
	cluster_stop_and_show 25 "$dir/out.txt"
}
trap cleanup EXIT

# wait_healthy: health until it exits 0 (bounded).
wait_healthy() {
	local i
	for ((i = 0; i < wait_s * 5; i++)); do
		"$admin" health --nodes "$nodes" --groups "$groups" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	"$admin" health --nodes "$nodes" --groups "$groups" || true
	echo "FAIL: not healthy after $wait_s s"
	exit 1
}

hooks=
if "$node_bin" --help | grep -q -- '--allow-corrupt-for-tests'; then
	hooks=(--allow-corrupt-for-tests on)
fi

step "1. three healthy nodes, $groups groups"
cluster_start_random --groups "$groups" --nodes 3 --bin "$node_bin" -- \
	--election-ms 600 --heartbeat-ms 60 --check-entries 0 ${hooks:+"${hooks[@]}"}
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"
"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 10000 put --prefix a --keys 10 \
	--ack "$dir/acked.txt"
wait_healthy
expect 0 "^healthy: 3 nodes up; $groups groups" \
	"$admin" health --nodes "$nodes" --groups "$groups"
expect 0 "groups: $groups, with a leader $groups, without 0" \
	"$admin" status --nodes "$nodes" --groups "$groups"
if [ "$(grep -cE '^[123] +127\.0\.0\.1:[0-9]+ +up +4 ' "$dir/out.txt")" -ne 3 ]; then
	echo "FAIL: status does not list the 3 nodes up with 4 groups each"
	exit 1
fi
expect 0 '"healthy":true' "$admin" status --nodes "$nodes" --groups "$groups" --json
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d["healthy"] and len(d["nodes"]) == 3 and all(n["up"] for n in d["nodes"]), d
assert sorted(g["group"] for g in d["groups"]) == [1, 2, 3, 4] and all(g["leader"] for g in d["groups"]), d
' "$dir/out.txt"
expect 0 "^verify: $groups of $groups groups checked, 12 replicas compared, 0 diverged: consistent" \
	"$admin" verify --nodes "$nodes" --groups "$groups"
expect 0 "^group 1: node 2 leads" "$admin" transfer --nodes "$nodes" --group 1 --to 2
expect 0 "^group 1: node 3: snapshot at index [1-9]" \
	"$admin" snapshot --nodes "$nodes" --group 1
if [ "$(grep -c "snapshot at index" "$dir/out.txt")" -ne 3 ]; then
	echo "FAIL: snapshot did not answer for each of the 3 nodes"
	exit 1
fi
# --json: one document each, with the same facts.
expect 0 '"ok":true' "$admin" transfer --nodes "$nodes" --group 1 --to 3 --json
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d["command"] == "transfer" and d["group"] == 1 and d["to"] == 3, d
assert d["ok"] and d["leader"] == 3 and d["term"] > 0 and "error" not in d, d
' "$dir/out.txt"
expect 1 '"ok":false' "$admin" transfer --nodes "$nodes" --group 1 --to 9 --json --timeout-s 5
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert not d["ok"] and d["to"] == 9 and d["leader"] in (1, 2, 3), d
assert "not a voter" in d["error"], d
' "$dir/out.txt"
expect 0 '"ok":true' "$admin" snapshot --nodes "$nodes" --group 2 --json
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d["command"] == "snapshot" and d["group"] == 2 and d["ok"], d
assert d["taken"] == 3 and d["failed"] == 0 and d["absent"] == 0, d
assert sorted(n["node"] for n in d["nodes"]) == [1, 2, 3], d
assert all(n["outcome"] == "taken" and n["index"] > 0 for n in d["nodes"]), d
' "$dir/out.txt"
expect 0 '"ok":true' "$admin" snapshot --nodes "$nodes" --group 2 --node 2 --json
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d["taken"] == 1 and [n["node"] for n in d["nodes"]] == [2], d
' "$dir/out.txt"
expect 2 "--groups is required" "$admin" health --nodes "$nodes"

step "2. node 3 killed (SIGKILL)"
kill -9 "$(cat "$dir/node-3.pid")"
expect 1 "^node 3: down: " "$admin" health --nodes "$nodes" --groups "$groups"
expect 1 "^node 3: down: its replicas were not compared" \
	"$admin" verify --nodes "$nodes" --groups "$groups"
expect 0 "^3 +127\.0\.0\.1:[0-9]+ +down " "$admin" status --nodes "$nodes" --groups "$groups"
expect 0 '"id":3,"address":"127.0.0.1:[0-9]+","up":false' \
	"$admin" status --nodes "$nodes" --groups "$groups" --json
"$cluster" start --dir "$dir" --node 3 >/dev/null
wait_healthy
expect 0 "^healthy: 3 nodes up" "$admin" health --nodes "$nodes" --groups "$groups"
# A node that takes connections but answers nothing (SIGSTOP) is down too,
# after a bounded wait, and the others are still looked at.
kill -STOP "$(cat "$dir/node-1.pid")"
expect 1 "^node 1: down: " "$admin" health --nodes "$nodes" --groups "$groups"
kill -CONT "$(cat "$dir/node-1.pid")"
wait_healthy

if [ -n "$hooks" ]; then
	step "3. a follower of group 2 diverged (CORRUPT)"
	leader=$("$kvcheck" --nodes "$nodes" --groups "$groups" leaders |
		sed -n 's/^group 2: leader \([0-9]\).*/\1/p')
	follower=$((leader % 3 + 1))
	"$kvcheck" --nodes "$nodes" --groups "$groups" corrupt --group 2 --via "$follower"
	# No check has run since (--check-entries 0): nothing is known yet.
	expect 0 "^healthy:" "$admin" health --nodes "$nodes" --groups "$groups"
	expect 1 "^group 2: replica on node $follower diverged from its leader \(node $leader\)" \
		"$admin" verify --nodes "$nodes" --groups "$groups"
	grep -q "1 diverged: NOT verified consistent" "$dir/out.txt" ||
		{ echo "FAIL: verify's summary"; exit 1; }
	expect 1 '"consistent":false' "$admin" verify --nodes "$nodes" --groups "$groups" --json
	expect 1 "^group 2: replica on node $follower diverged" \
		"$admin" health --nodes "$nodes" --groups "$groups"
else
	step "3. skipped: flotilla-node was built without test hooks (no CORRUPT)"
fi
"$cluster" stop --dir "$dir" >/dev/null

step "4. node 2's WAL disk full"
if [ "$(id -u)" -ne 0 ]; then
	step "4. skipped: not root, cannot mount a small tmpfs"
	failed=0
	exit 0
fi
rm -rf "$dir"/node-*
small=$dir/node-2
mkdir -p "$small"
if ! mount -t tmpfs -o size=16m tmpfs "$small"; then
	step "4. skipped: mount -t tmpfs failed here"
	small=
	failed=0
	exit 0
fi
for attempt in 1 2 3 4 5; do
	base=$("$cluster" pick-port)
	rc=0
	"$cluster" start --dir "$dir" --base-port "$base" --groups 2 --nodes 3 --shards 1 \
		--bin "$node_bin" -- --snapshot-entries 0 --check-entries 0 \
		--entry-size-max 65536 --wal-segment-size $((4 << 20)) || rc=$?
	[ "$rc" -eq 0 ] && break
	if [ "$rc" -ne 3 ] || [ "$attempt" -eq 5 ]; then
		echo "cluster start failed with status $rc"
		exit 1
	fi
	find "$dir" -maxdepth 1 -name 'node-*' ! -path "$small" -exec rm -rf {} +
	find "$small" -mindepth 1 -delete
done
cluster_tls_env "$dir"
dd if=/dev/zero of="$small/filler" bs=1M count=6 status=none
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"
groups=2
for ((round = 1; ; round++)); do
	grep -q "out of space (ENOSPC)" "$dir/node-2.log" && break
	if [ "$round" -gt 10 ]; then
		echo "FAIL: node 2 never ran out of space"
		exit 1
	fi
	"$load_bin" --cluster-dir "$dir" --groups 2 --mode open --rate 1000 --read-ratio 0.2 \
		--value-size 4000 --keys 500 --duration 1 --warmup 0 >"$dir/load.out" 2>&1 || true
done
for ((i = 0; i < wait_s * 5; i++)); do
	"$admin" health --nodes "$nodes" --groups 2 2>&1 | grep -q "disk full" && break
	sleep 0.2
done
expect 1 "^node 2: disk full: the WAL file system of 1 of 1 shards is full" \
	"$admin" health --nodes "$nodes" --groups 2
expect 0 '"id":2,[^}]*"disk_full":true' "$admin" status --nodes "$nodes" --groups 2 --json
failed=0
step "admin check passed"
