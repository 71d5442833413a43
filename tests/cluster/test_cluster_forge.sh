#!/usr/bin/env bash
# Forged Raft messages from a process without the cluster's credentials
# change nothing. A 3-node cluster of 4 groups runs a checked write load on
# groups 1..3 (flotilla-load --check) while flotilla-forge, dialling a
# node's peer port as another node with the real node's own handshake:
#   1. sends heartbeats with rising terms to every group for 5 s;
#   2. sends an AppendEntries carrying a PUT of a key no client wrote, then
#      TIMEOUT_NOW, to a follower of group 4 (idle: the forged entry would
#      go right after its last), again and again for 5 s.
# Then: no group's term moved (flotilla-admin status --json, before and
# after), the forged key is in no node's copy and a linearizable GET does
# not find it (flotilla-kvcheck absent), the load answered requests in
# every second and its history is linearizable, the attacker was never
# accepted as a peer, and the nodes logged the refusals.
#
# The cluster's security flags are in $security, below: the attacks must
# fail against them. By default the cluster is tools/cluster's default, a
# TLS cluster; the shared-key mode passes too
# (FLOTILLA_FORGE_SECURITY="--insecure --auth-key"), and a plaintext cluster
# fails this test: FLOTILLA_FORGE_SECURITY=--insecure meson test
# cluster-forge shows it.
#
#   test_cluster_forge.sh FLOTILLA_NODE FLOTILLA_FORGE KVCHECK FLOTILLA_ADMIN FLOTILLA_LOAD
#                         TOOLS_CLUSTER WORK_DIR
set -euo pipefail

# The cluster's security flags (tools/cluster start); empty: the default (TLS).
security=${FLOTILLA_FORGE_SECURITY-}

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") forge=$(realpath "$2") kvcheck=$(realpath "$3") admin=$(realpath "$4")
load_bin=$(realpath "$5") cluster=$(realpath "$6") work_dir=$7
groups=4 attack_s=5 key=forged-key
command -v python3 >/dev/null || {
	echo "python3 is needed to read the JSON documents: skipped"
	exit 77
}

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-forge.XXXXXX")
failed=1 load_pid=
cleanup() {
	if [ -n "$load_pid" ]; then
		kill "$load_pid" 2>/dev/null || true
		wait "$load_pid" 2>/dev/null || true
	fi
	cluster_stop_and_show 30 "$dir/load.out" "$dir/forge-beats.out" "$dir/forge-append.out"
}
trap cleanup EXIT

failures=0
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# terms FILE: each group's highest term, as "group=term ...", from a status
# --json document.
terms() {
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%d=%d" % (g["group"], g["term"]) for g in d["groups"]))' "$1"
}

step "a 3-node cluster, $groups groups, security flags: '${security}'"
# shellcheck disable=SC2086 # $security is a list of flags.
cluster_start_random --groups "$groups" --nodes 3 --shards 2 --bin "$node_bin" $security -- \
	--election-ms 2000 --heartbeat-ms 100
nodes="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 3)),3=127.0.0.1:$((base + 5))"
peers="1=127.0.0.1:$base,2=127.0.0.1:$((base + 2)),3=127.0.0.1:$((base + 4))"
for i in $(seq 100); do
	"$admin" health --nodes "$nodes" --groups "$groups" >/dev/null 2>&1 && break
	[ "$i" -lt 100 ] || {
		"$admin" health --nodes "$nodes" --groups "$groups" || true
		echo "FAIL: not healthy after 20 s"
		exit 1
	}
	sleep 0.2
done
"$admin" status --nodes "$nodes" --groups "$groups" --json >"$dir/before.json"
terms_before=$(terms "$dir/before.json")
leader4=$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["groups"][3]["leader"])' "$dir/before.json")
target4=1
[ "$leader4" != 1 ] || target4=2
echo "terms before: $terms_before; group 4 led by node $leader4, attacked at node $target4"
for id in 1 2 3; do
	stat -c %s "$dir/node-$id.log" >"$dir/node-$id.offset"
done

step "a checked load on groups 1..3 throughout"
"$load_bin" --cluster-dir "$dir" --groups 3 --duration $((4 * attack_s)) --warmup 1 \
	--mode closed --concurrency 8 --threads 1 --keys 500 --value-size 64 --timeout-ms 5000 \
	--seed 16 --check --json "$dir/load.json" >"$dir/load.out" 2>&1 &
load_pid=$!
sleep 3

step "1. heartbeats with rising terms to every group of node 1, as node 2"
"$forge" --peers "$peers" --target 1 --as 2 --client "127.0.0.1:$((base + 1))" \
	--attack beats --groups "$groups" --duration "$attack_s" | tee "$dir/forge-beats.out"

step "2. AppendEntries with PUT $key, then TIMEOUT_NOW, to node $target4 (group 4)"
"$forge" --peers "$peers" --target "$target4" --client "127.0.0.1:$((base + 2 * target4 - 1))" \
	--attack append --group 4 --key "$key" --value written-by-no-client \
	--duration "$attack_s" | tee "$dir/forge-append.out"

step "the load's end"
load_rc=0
wait "$load_pid" || load_rc=$?
load_pid=
tail -n 3 "$dir/load.out"

step "what changed"
for out in forge-beats forge-append; do
	grep -q "^forge: summary: accepted 0 refused [1-9]" "$dir/$out.out" ||
		fail "$out: the node accepted the attacker as a peer, or refused nothing: $(tail -n 1 "$dir/$out.out")"
done
"$admin" status --nodes "$nodes" --groups "$groups" --json >"$dir/after.json"
terms_after=$(terms "$dir/after.json")
echo "terms after: $terms_after"
[ "$terms_after" = "$terms_before" ] ||
	fail "a group's term moved: before $terms_before, after $terms_after"
"$kvcheck" --nodes "$nodes" --groups "$groups" --timeout-ms 10000 absent --group 4 \
	--key "$key" || fail "the forged key $key is in group 4 (above)"
python3 - "$dir/load.json" "$load_rc" <<'PY' || fail "the load stopped or its check failed (above)"
import json, sys
r = json.load(open(sys.argv[1]))
samples = [s for s in r["timeline"] if not s["warmup"]]
zero = [s["t_s"] for s in samples if s["ops_per_s"] <= 0]
lin = r.get("check", {}).get("linearizable")
print("load: exit %s, %d ops, %.0f ops/s, %d seconds sampled, lowest %.0f ops/s, "
      "seconds without an answer %s, linearizable %s" % (
          sys.argv[2], r["ops"], r["ops_per_s"], len(samples),
          min([s["ops_per_s"] for s in samples] or [0]), zero, lin))
sys.exit(0 if r["ops"] > 0 and samples and not zero and lin else 1)
PY
for id in $(printf "%s\n" 1 "$target4" | sort -u); do
	lines=$(tail -c +"$(($(cat "$dir/node-$id.offset") + 1))" "$dir/node-$id.log" |
		grep -ciE "refused a peer connection|failed authentication|closing connection from node|tls" ||
		true)
	echo "node $id logged $lines refusals during the attacks"
	[ "$lines" -gt 0 ] || fail "node $id logged no refusal of the attacker"
done
[ "$failures" -eq 0 ] || exit 1

step "the nodes exit cleanly"
cluster_stop_clean 1 2 3
failed=0
echo "ok: forged heartbeats and AppendEntries/TIMEOUT_NOW changed nothing"
