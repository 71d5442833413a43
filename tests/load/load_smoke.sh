#!/usr/bin/env bash
# End-to-end check of flotilla-load against real flotilla-node processes:
# start a 3-node cluster on random high ports of 127.0.0.1 in a temporary
# directory, run ~3 s of closed-loop and ~3 s of open-loop load with --json,
# and require answered requests and no timeouts; the closed loop also checks
# that its history is linearizable (--check). The cluster is stopped on
# every exit path, through tools/cluster, which signals only the PIDs it
# started in that directory.
#
#   load_smoke.sh FLOTILLA_NODE FLOTILLA_LOAD CLUSTER_SCRIPT WORK_DIR
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../cluster/cluster_lib.sh"

node_bin=$(realpath "$1") load_bin=$(realpath "$2") cluster=$3 work_dir=$4
command -v python3 >/dev/null || {
	echo "python3 is needed to read the JSON output: skipped"
	exit 77
}

mkdir -p "$work_dir"
dir=$(mktemp -d "$work_dir/load-smoke.XXXXXX")
cleanup() {
	"$cluster" stop --dir "$dir" --wait 10 >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

# A random even base port; the cluster takes base..base+5. Exit status 3
# means a port was in use: try others, a bounded number of times.
started=0
for attempt in 1 2 3 4 5; do
	base_port=$((20000 + 2 * (RANDOM % 20000)))
	status=0
	"$cluster" start --dir "$dir" --groups 4 --nodes 3 --base-port "$base_port" \
		--bin "$node_bin" || status=$?
	if [ "$status" -eq 0 ]; then
		started=1
		break
	fi
	[ "$status" -eq 3 ] || exit "$status"
	echo "ports from $base_port in use (attempt $attempt)"
done
[ "$started" = 1 ] || {
	echo "no free ports after 5 attempts"
	exit 1
}
cluster_tls_env "$dir"

common=(--cluster-dir "$dir" --duration 3 --warmup 0.5 --keys 1000 --value-size 64
	--timeout-ms 5000 --threads 2 --seed 7)
"$load_bin" "${common[@]}" --mode closed --concurrency 16 --dist zipf:0.9 \
	--check --json "$dir/closed.json"
"$load_bin" "${common[@]}" --mode open --rate 1000 --read-ratio 0.2 \
	--json "$dir/open.json"

python3 - "$dir/closed.json" "$dir/open.json" <<'PY'
import json, sys

failed = False
for path in sys.argv[1:]:
    with open(path) as f:
        r = json.load(f)
    name = r["mode"] + " loop"
    problems = []
    if r["ops"] <= 0:
        problems.append("no request was answered")
    if r["timeout"] != 0:
        problems.append("%d timeouts" % r["timeout"])
    if r["reads"] + r["writes"] != r["ops"]:
        problems.append("reads + writes != ops")
    if not r["timeline"] or not r["latency_distribution"]:
        problems.append("no timeline or latency distribution")
    if r["mode"] == "closed" and not r.get("check", {}).get("linearizable"):
        problems.append("no linearizable history: %s" % r.get("check"))
    if r["mode"] == "open" and r["ops"] < 0.8 * r["rate"] * r["duration_s"]:
        problems.append("only %d ops at %g ops/s over %g s" % (r["ops"], r["rate"], r["duration_s"]))
    print("%s: %d ops, %.0f ops/s, p99 %.0f us, %d errors, %d timeouts%s" % (
        name, r["ops"], r["ops_per_s"], r["latency_us"]["p99"], r["errors"], r["timeout"],
        "" if not problems else ": " + "; ".join(problems)))
    failed = failed or bool(problems)
sys.exit(1 if failed else 0)
PY
