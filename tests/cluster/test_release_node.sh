#!/usr/bin/env bash
# No test hook in the node program a release build makes: strings(1) finds
# no FLOTILLA_TEST_ variable name and no --allow-corrupt-for-tests flag in
# it, the flag is refused as unknown, and a started node answers the CORRUPT
# op (9) as an unknown op (BAD_REQUEST) and goes on serving.
#
#   test_release_node.sh FLOTILLA_NODE_RELEASE TOOLS_CLUSTER
#
# A test build (-Dtest_hooks=true) passes flotilla-node-release, the same
# sources compiled without FLOTILLA_TEST_HOOKS; a release build passes its
# own flotilla-node. The node is stopped by PID (tools/cluster stop).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$1 cluster=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-release.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 20
}
trap cleanup EXIT

for tool in strings python3; do
	if ! command -v "$tool" >/dev/null; then
		echo "$tool not found (binutils, python3): skipped"
		failed=0
		exit 77
	fi
done

step "strings $(basename "$node_bin")"
for want in FLOTILLA_TEST_ allow-corrupt; do
	found=$(strings -a "$node_bin" | grep -F -- "$want" || true)
	if [ -n "$found" ]; then
		echo "FAIL: the release node program holds \"$want\":"
		printf '%s\n' "$found" | head -n 5
		exit 1
	fi
	echo "ok: no \"$want\" in its strings"
done

step "--allow-corrupt-for-tests on is refused as an unknown flag"
status=0
out=$(timeout 10 "$node_bin" --id 1 --data "$dir/flag" --listen 127.0.0.1:0 \
	--client 127.0.0.1:0 --allow-corrupt-for-tests on 2>&1 >/dev/null) || status=$?
if [ "$status" -ne 2 ] || [[ $out != *"unknown option 'allow-corrupt-for-tests'"* ]]; then
	echo "FAIL: exit $status, want 2 and \"unknown option 'allow-corrupt-for-tests'\"; said:"
	printf '%s\n' "$out" | head -n 5
	exit 1
fi
echo "ok: $(printf '%s\n' "$out" | head -n 1)"

step "start 1 node, 1 group; CORRUPT (op 9) is an unknown op"
cluster_start_random --groups 1 --nodes 1 --shards 1 --bin "$node_bin"
# Plain TCP, or TLS when the cluster speaks it (flotilla_tls.py, found here).
PYTHONPATH="$(dirname "${BASH_SOURCE[0]}")${PYTHONPATH:+:$PYTHONPATH}" \
	python3 - "127.0.0.1:$((base + 1))" <<'PY'
import struct, sys, time

import flotilla_tls

host, port = sys.argv[1].rsplit(":", 1)
sock = flotilla_tls.connect(host, int(port), timeout=10)

def recv_exact(size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise SystemExit("FAIL: connection closed after %d of %d bytes" % (len(data), size))
        data += chunk
    return data

def call(op, request_id, body=b""):
    sock.sendall(struct.pack("<IIQQ", 20 + len(body), op, request_id, 1) + body)
    _, status, got_id, _, value_size = struct.unpack("<IIQQI", recv_exact(28))
    return status, got_id, recv_exact(value_size).decode(errors="replace")

key, value = b"k", b"v"
status, got_id, text = call(9, 7, struct.pack("<II", len(key), len(value)) + key + value)
if status != 5 or got_id != 7 or not text.startswith("unknown op 9"):
    raise SystemExit("FAIL: CORRUPT answered status %d id %d %r, want BAD_REQUEST (5), "
                     "\"unknown op 9 ...\"" % (status, got_id, text))
print("ok: CORRUPT answered BAD_REQUEST: %s" % text)
# The connection goes on: LEADER (op 5) of group 1 is answered OK.
deadline = time.monotonic() + 10
while True:
    status, got_id, _ = call(5, 8)
    if status == 0 and got_id == 8:
        break
    if time.monotonic() > deadline:
        raise SystemExit("FAIL: LEADER after CORRUPT: status %d id %d" % (status, got_id))
    time.sleep(0.1)
print("ok: the same connection is served after it")
PY
failed=0
