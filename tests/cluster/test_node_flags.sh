#!/usr/bin/env bash
# flotilla-node refuses every flag combination that breaks a rule, before it
# starts anything, with exit status 2 and a line naming the flags, their
# values and the rule; and a combination that keeps the rules starts.
#
#   test_node_flags.sh FLOTILLA_NODE
#
# Each run is bounded (timeout); the one node started is stopped by its PID.
set -uo pipefail

node_bin=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-flags.XXXXXX")
failed=0
pid=
cleanup() {
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

# refused WANT_TEXT FLAGS...: run the node with FLAGS; it must exit 2 at once
# and say WANT_TEXT on stderr.
refused() {
	local want=$1 status=0 out
	shift
	out=$(timeout 10 "$node_bin" --id 1 --data "$dir/data" --listen 127.0.0.1:0 \
		--client 127.0.0.1:0 "$@" 2>&1 >/dev/null) || status=$?
	if [ "$status" -ne 2 ] || [[ $out != *"$want"* ]]; then
		echo "FAIL: $*: exit $status, want 2 and \"$want\"; said:"
		printf '%s\n' "$out" | head -5
		failed=1
		return
	fi
	echo "ok: $*: $(printf '%s\n' "$out" | head -1)"
}

refused "--election-ms 100 must be at least 2 x --heartbeat-ms 100 (200)" \
	--election-ms 100 --heartbeat-ms 100
refused "--election-ms 150 must be at least 2 x --heartbeat-ms 100 (200)" \
	--election-ms 150 --heartbeat-ms 100
refused "--heartbeat-ms 100 must be at least --tick-ms 1000" \
	--election-ms 50 --tick-ms 1000
refused "--election-ms 60 must be at least 5 x --tick-ms 20 (100)" \
	--election-ms 60 --heartbeat-ms 20 --tick-ms 20
refused "--entry-size-max 17000000: must be a whole number from 64 to 16777216" \
	--entry-size-max 17000000
refused "--client-idle-s 86401: must be a whole number from 0 to 86400" \
	--client-idle-s 86401
refused "--client-request-ms 1s: must be a whole number from 0 to 3600000" \
	--client-request-ms 1s
refused "--members names node 3, which is neither this node (--id 1) nor a --peer" \
	--peer 2=127.0.0.1:7000 --members 1,2,3 --groups 1
refused "--peer 2=no-such-host.invalid:7000: host 'no-such-host.invalid' does not resolve" \
	--peer 2=no-such-host.invalid:7000
refused "--peer 2=127.0.0.1:99999: port '99999' is not a number from 1 to 65535" \
	--peer 2=127.0.0.1:99999
refused "--peer 2=127.0.0.1: address '127.0.0.1' is not HOST:PORT" --peer 2=127.0.0.1
refused "--peer 1=127.0.0.1:7000: node 1 is this node" --peer 1=127.0.0.1:7000
refused "--listen 127.0.0.1:x: port 'x' is not a number from 0 to 65535" \
	--listen 127.0.0.1:x
refused "--listen 127.0.0.1:7000 and --client 127.0.0.1:7000: the peer and the client" \
	--listen 127.0.0.1:7000 --client 127.0.0.1:7000
refused "--metrics 127.0.0.1:x: port 'x' is not a number from 0 to 65535" \
	--metrics 127.0.0.1:x
refused "--join on and --groups 5 conflict" --join on --groups 5
refused "--members must include this node (--id 1) to create --groups 2" \
	--peer 2=127.0.0.1:7000 --members 2 --groups 2
refused "--quiesce maybe: must be on or off" --quiesce maybe
refused "--snapshot-ratio-percent 1001: must be a whole number from 0 to 1000" \
	--snapshot-ratio-percent 1001
refused "--log-level verbose: must be error, warn, info or debug" --log-level verbose
refused "--groups-max 0: must be a whole number from 1 to 10000000" --groups-max 0
refused "--groups 5 exceeds --groups-max 4" --groups 5 --groups-max 4
refused "--client-conns-per-source-max 0: must be a whole number from 1 to 1000000" \
	--client-conns-per-source-max 0
refused "--log-format xml: must be text, logfmt or json" --log-format xml

# The shared peer key: hex, long enough, readable by its owner only.
key=$(printf '%064x' 7)
(umask 077 && printf '%s\n' "$key" >"$dir/key.ok" && printf 'abcd\n' >"$dir/key.short" &&
	printf '%s' "${key}zz" >"$dir/key.nothex")
printf '%s\n' "$key" >"$dir/key.open"
chmod 644 "$dir/key.open"
refused "--auth-key-file $dir/key.open: must be a regular file that only its owner can read" \
	--auth-key-file "$dir/key.open"
refused "--auth-key-file $dir/key.short: must hold 64 to 256 hex digits" \
	--auth-key-file "$dir/key.short"
refused "--auth-key-file $dir/key.nothex: must hold 64 to 256 hex digits" \
	--auth-key-file "$dir/key.nothex"
refused "--auth-key-file $dir/key.none: cannot read it" --auth-key-file "$dir/key.none"

# The rules' edges are allowed: election = 2 heartbeats = 5 ticks.
"$node_bin" --id 1 --data "$dir/ok" --listen 127.0.0.1:0 --client 127.0.0.1:0 --groups 1 \
	--tick-ms 20 --heartbeat-ms 50 --election-ms 100 --auth-key-file "$dir/key.ok" \
	--snapshot-ratio-percent 1000 --groups-max 1 --client-conns-per-source-max 1 \
	>"$dir/ok.out" 2>"$dir/ok.err" &
pid=$!
status=
for _ in $(seq 100); do
	grep -q "^flotilla-node 1 ready" "$dir/ok.out" 2>/dev/null && break
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid"
		status=$?
		break
	fi
	sleep 0.1
done
if [ "$status" = 4 ]; then
	echo "io_uring is not available here: the start of a good configuration is not checked"
elif grep -q "^flotilla-node 1 ready" "$dir/ok.out"; then
	echo "ok: a configuration at the rules' edges (and with a good key file) starts"
	grep -q "shared key: peers and frames authenticated" "$dir/ok.err" ||
		{ echo "FAIL: the start line does not say the key is on"; failed=1; }
	kill -TERM "$pid"
	wait "$pid" || { echo "FAIL: exit $? after SIGTERM"; failed=1; }
else
	echo "FAIL: a configuration at the rules' edges did not start (status ${status:-none}):"
	tail -5 "$dir/ok.err"
	failed=1
fi
pid=

# --log-format json --log-level debug: every line on stderr is one JSON
# object with the fields of docs/operations.md, debug lines among them.
"$node_bin" --id 1 --data "$dir/json" --listen 127.0.0.1:0 --client 127.0.0.1:0 --groups 1 \
	--log-format json --log-level debug >"$dir/json.out" 2>"$dir/json.err" &
pid=$!
for _ in $(seq 100); do
	grep -q "^flotilla-node 1 ready" "$dir/json.out" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if grep -q "^flotilla-node 1 ready" "$dir/json.out"; then
	for _ in $(seq 100); do # The group elects itself: a leader line with its group.
		grep -q '"group":1,"msg":"leader is node 1' "$dir/json.err" && break
		sleep 0.1
	done
	kill -TERM "$pid"
	wait "$pid" || { echo "FAIL: exit $? after SIGTERM"; failed=1; }
	if python3 - "$dir/json.err" <<'PY'; then
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
recs = [json.loads(line) for line in lines]
assert recs, "no lines"
for r in recs:
    assert set(r) >= {"ts", "level", "node", "msg"}, r
    assert r["level"] in ("error", "warn", "info", "debug") and r["node"] == 1, r
assert any(r.get("group") == 1 and r["msg"].startswith("leader is node 1") for r in recs)
assert any(r["msg"] == "exiting" for r in recs)
print("ok: %d JSON lines, levels %s" % (len(recs), sorted({r["level"] for r in recs})))
PY
		:
	else
		echo "FAIL: --log-format json wrote lines that are not the JSON of the docs:"
		head -5 "$dir/json.err"
		failed=1
	fi
elif ! wait "$pid" && [ $? -eq 4 ]; then
	echo "io_uring is not available here: the JSON lines are not checked"
else
	echo "FAIL: a node with --log-format json did not start:"
	tail -5 "$dir/json.err"
	failed=1
fi
pid=
exit "$failed"
